"""The one representation every importer builds: named tensors, nodes, notes.

An importer (``torch.fx`` tracing, ONNX, Keras) walks its source's operations
in topological order and tells a :class:`GraphBuilder` what each one becomes:

* :meth:`GraphBuilder.input` - the model's one input tensor;
* :meth:`GraphBuilder.layer` - an lrp_ref layer reading earlier tensors;
* :meth:`GraphBuilder.alias` - an operation that is the identity at inference
  (Dropout, Identity, a reshape lrp_ref does not need): its output is its input;
* :meth:`GraphBuilder.softmax` - a softmax, allowed only as the last operation:
  dropped with a note (LRP explains the logits);
* :meth:`GraphBuilder.build` - the :class:`~lrp_ref.graph.Sequential` when the
  nodes form a chain, else the :class:`~lrp_ref.graph.Graph`, after checking
  that the declared output is the last node.

Every refusal names the importer and the source's operation, so the three
importers word their errors the same way and share one set of checks.  It is
a :class:`~lrp_ref.errors.LayerParameterError` by default (``from_torch``:
a module is not a file); importers of files pass
``error=ModelFormatError``.  :meth:`GraphBuilder.weight` is the one check of
a parameter read from the source: a real, finite array of the expected shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import LayerParameterError, LrpRefError
from .graph import INPUT, Graph, Node, Sequential
from .layers import Layer

__all__ = ["GraphBuilder"]


class GraphBuilder:
    """Collects the nodes of an imported model (see the module docstring).

    Parameters
    ----------
    source : str
        What is being imported, for messages: ``"from_onnx"``, ``"from_keras"``...
    error : subclass of LrpRefError, default LayerParameterError
        The class of every refusal (importers of files: ``ModelFormatError``).
    """

    def __init__(self, source: str, error: type[LrpRefError] = LayerParameterError) -> None:
        self.source = source
        self.error = error
        self.nodes: list[Node] = []
        self.notes: list[str] = []
        self._alias: dict[str, str] = {}  # source tensor name -> lrp_ref node name (or INPUT)
        self._softmax: str | None = None  # a dropped softmax: nothing may follow it
        self._has_input = False

    def refuse(self, where: str, why: str) -> LrpRefError:
        """The error for an operation that cannot be imported (raise it)."""
        return self.error(f"{self.source}: {where}: {why}")

    def weight(self, where: str, what: str, value: Any, expected: Sequence[int | None]) -> NDArray[Any]:
        """``value`` (a parameter read from the source) as a real, finite array of shape ``expected``.

        ``expected`` has one entry per axis: its size, or None for any size.
        Anything else is refused, naming ``what`` and the shape found, e.g.
        ``node 'fc' (Gemm): weight B has shape (10, 31); expected (any, 32)``.
        """
        arr = np.asarray(value)
        sizes = ["any" if n is None else str(n) for n in expected]
        want = f"({', '.join(sizes)}{',' if len(sizes) == 1 else ''})"
        if arr.dtype.kind not in "iuf":
            raise self.refuse(where, f"{what} has dtype {arr.dtype}; expected a real array of shape {want}")
        if arr.ndim != len(expected) or any(n is not None and n != m for n, m in zip(expected, arr.shape)):
            raise self.refuse(where, f"{what} has shape {tuple(arr.shape)}; expected {want}")
        if not np.all(np.isfinite(arr)):
            raise self.refuse(where, f"{what} holds NaN or infinity")
        return arr

    def known(self, tensor: str) -> bool:
        """Whether ``tensor`` is the input or the output of an imported operation."""
        return tensor in self._alias

    def resolve(self, tensor: str, where: str) -> str:
        """The lrp_ref node (or ``"input"``) that computes the source's ``tensor``."""
        if tensor not in self._alias:
            raise self.refuse(where, f"reads {tensor!r}, which is not a tensor computed from the model input "
                                     "(constants are supported only as the weights of a layer)")
        return self._alias[tensor]

    def _check_open(self, where: str) -> None:
        if self._softmax is not None:
            raise self.refuse(where, f"follows the softmax {self._softmax!r}; lrp_ref explains logits, "
                                     "so a softmax may only end the model")

    def input(self, tensor: str) -> None:
        """Declare the model's input tensor (exactly one)."""
        if self._has_input:
            raise self.refuse(f"input {tensor!r}", "a second model input; lrp_ref models take one input")
        self._has_input = True
        self._alias[tensor] = INPUT

    def layer(self, where: str, name: str, layer: Layer, inputs: Iterable[str], output: str | None = None) -> None:
        """Add ``layer`` as node ``name`` reading the source tensors ``inputs``; it computes ``output``."""
        self._check_open(where)
        sources = tuple(self.resolve(t, where) for t in inputs)
        node_name = name if name and name != INPUT else f"node{len(self.nodes)}"
        taken = {n.name for n in self.nodes}
        if node_name in taken:  # source names need not be unique (Keras layers reused, empty ONNX names)
            k = 1
            while f"{node_name}_{k}" in taken:
                k += 1
            node_name = f"{node_name}_{k}"
        self.nodes.append(Node(node_name, layer, sources))
        self._alias[output if output is not None else name] = node_name

    def alias(self, where: str, output: str, input_tensor: str) -> None:
        """``output`` is ``input_tensor`` at inference (Dropout, Identity, a no-op reshape)."""
        self._check_open(where)
        self._alias[output] = self.resolve(input_tensor, where)

    def softmax(self, where: str, output: str, input_tensor: str) -> None:
        """A softmax: dropped with a note; only the model's last operation may be one."""
        self._check_open(where)
        self._alias[output] = self.resolve(input_tensor, where)
        self._softmax = where
        self.notes.append(f"dropped the final softmax ({output!r}): LRP explains the logits")

    def build(self, output: str, metadata: Mapping[str, Any] | None = None) -> Sequential | Graph:
        """The model whose output is the source's tensor ``output``.

        A :class:`~lrp_ref.graph.Sequential` when every node reads the one
        before it, else a :class:`~lrp_ref.graph.Graph`.  Notes go into
        ``metadata["import_notes"]``.
        """
        if not self.nodes:
            raise self.error(f"{self.source}: the model computes nothing lrp_ref can explain")
        computed = self.resolve(output, f"output {output!r}")
        if computed != self.nodes[-1].name:
            raise self.error(f"{self.source}: the model's output is {computed!r}, not its last operation "
                             f"{self.nodes[-1].name!r}; lrp_ref explains one output tensor")
        meta = dict(metadata or {})
        if self.notes:
            meta["import_notes"] = list(self.notes)
        nodes = self.nodes
        chain = all(node.inputs == ((INPUT,) if i == 0 else (nodes[i - 1].name,)) for i, node in enumerate(nodes))
        if chain:
            return Sequential([node.layer for node in nodes], meta)
        return Graph(nodes, meta)
