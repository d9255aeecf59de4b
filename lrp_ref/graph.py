"""Graph: a model whose layers form a directed acyclic graph of named nodes (residual sums, concatenations).

A :class:`Graph` is a list of :class:`Node` s in topological order: each node
applies its layer to the outputs of earlier nodes, or to the graph's input
(named ``"input"``); the last node's output is the model output.  Tensors are
numbered like the activations of the forward sweep: tensor 0 is the input,
tensor ``i + 1`` the output of node ``i``.

Where a node has several inputs its layer is a merge layer
(:mod:`lrp_ref.merge`): the graph packs the inputs into one array for it, and
unpacks the relevance of that array into one relevance per input.  The
backward sweep of :func:`lrp_ref.explain` visits the nodes in reverse order;
where a tensor feeds several nodes, the relevance arriving from each is added.

A :class:`Sequential` is the chain-shaped graph: node ``i`` is named ``"i"``
and takes the output of node ``i - 1``.  There is one forward sweep and one
backward sweep for both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from ._checks import check_dtype, check_int, real_array
from .errors import LayerParameterError, ShapeError
from .layers import Layer
from .merge import MergeLayer

__all__ = ["INPUT", "Graph", "Node", "Sequential"]

Array = NDArray[Any]
Shape = tuple[int, ...]

#: The name by which nodes refer to the graph's input.
INPUT = "input"

_NO_METADATA: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Node:
    """One step of a graph: ``layer`` applied to the outputs of ``inputs``.

    Parameters
    ----------
    name : str
        Unique within the graph; not ``"input"``.
    layer : Layer
    inputs : tuple of str
        Names of earlier nodes, or ``"input"``; one per input of the layer
        (a merge layer has several, every other layer one).
    """

    name: str
    layer: Layer
    inputs: tuple[str, ...]


def _as_node(item: Any, i: int) -> Node:
    if isinstance(item, Node):
        node = item
    elif isinstance(item, tuple) and len(item) == 3:
        name, layer, inputs = item
        node = Node(name, layer, (inputs,) if isinstance(inputs, str) else tuple(inputs))
    else:
        raise LayerParameterError(f"Graph nodes[{i}] must be a Node or a tuple (name, layer, inputs); "
                                  f"got {type(item).__name__}")
    if not isinstance(node.name, str) or not node.name or node.name == INPUT:
        raise LayerParameterError(f"Graph nodes[{i}]: name must be a non-empty str other than {INPUT!r}; "
                                  f"got {node.name!r}")
    if not isinstance(node.layer, Layer):
        raise LayerParameterError(f"Graph node {node.name!r}: layer must be an lrp_ref layer; "
                                  f"got {type(node.layer).__name__}")
    if not isinstance(node.inputs, tuple) or not all(isinstance(s, str) for s in node.inputs):
        raise LayerParameterError(f"Graph node {node.name!r}: inputs must be node names (str); got {node.inputs!r}")
    return node


class Graph:
    """A model whose layers form a directed acyclic graph (see the module docstring).

    Parameters
    ----------
    nodes : sequence of :class:`Node` or (name, layer, inputs) tuples
        In topological order: a node's inputs are earlier nodes or ``"input"``.
        The last node is the output; every other node must feed a later one.
    metadata : mapping, optional
        Free-form facts about the model, as for :class:`Sequential`.

    Examples
    --------
    A residual block::

        Graph([
            ("conv1", Conv2d(w1, b1, padding=1), "input"),
            ("relu1", ReLU(), "conv1"),
            ("conv2", Conv2d(w2, b2, padding=1), "relu1"),
            ("sum", Add(), ("conv2", "input")),
            ("relu2", ReLU(), "sum"),
        ])
    """

    def __init__(self, nodes: Sequence[Node | tuple[str, Layer, Any]], metadata: Mapping[str, Any] = _NO_METADATA):
        if isinstance(nodes, (str, bytes, Node)) or not isinstance(nodes, Iterable):
            raise LayerParameterError(f"Graph nodes must be a list of nodes; got {type(nodes).__name__}")
        if not isinstance(metadata, Mapping):
            raise LayerParameterError(f"Graph metadata must be a mapping (a dict); got {type(metadata).__name__}")
        checked = tuple(_as_node(item, i) for i, item in enumerate(nodes))
        if not checked:
            raise LayerParameterError("Graph nodes: needs at least one node; got none")
        position = {INPUT: 0}
        sources = []
        for i, node in enumerate(checked):
            if node.name in position:
                raise LayerParameterError(f"Graph node names must be unique; {node.name!r} appears twice")
            arity = node.layer.n_inputs if isinstance(node.layer, MergeLayer) else 1
            if len(node.inputs) != arity:
                raise LayerParameterError(f"Graph node {node.name!r} ({node.layer.describe()}) takes {arity} "
                                          f"input(s); got {len(node.inputs)}: {node.inputs}")
            unknown = [s for s in node.inputs if s not in position]
            if unknown:
                raise LayerParameterError(f"Graph node {node.name!r} reads {', '.join(map(repr, unknown))}, which is "
                                          f"not an earlier node nor {INPUT!r}; nodes must be in topological order")
            sources.append(tuple(position[s] for s in node.inputs))
            position[node.name] = i + 1
        used = {t for srcs in sources for t in srcs}
        unused = [INPUT] if 0 not in used else []
        unused += [node.name for i, node in enumerate(checked[:-1]) if i + 1 not in used]
        if unused:
            raise LayerParameterError(f"Graph: {', '.join(map(repr, unused))} feed(s) no later node; every tensor but "
                                      f"the output (the last node, {checked[-1].name!r}) must be used")
        dtypes = {node.layer.dtype for node in checked}
        if len(dtypes) != 1:
            found = ", ".join(f"{node.name}: {node.layer.dtype}" for node in checked)
            raise LayerParameterError(f"all layers must share one dtype; found {found}. Use model.astype(dtype)")
        self._nodes = checked
        self._sources = tuple(sources)
        self._metadata = dict(metadata)

    # ------------------------------------------------------------------ structure

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes, in topological order."""
        return self._nodes

    @property
    def metadata(self) -> dict[str, Any]:
        """Free-form facts about the model (kept by :func:`lrp_ref.save`)."""
        return self._metadata

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layer of every node, in topological order."""
        return tuple(node.layer for node in self._nodes)

    def sources(self, i: int) -> tuple[int, ...]:
        """The tensors node ``i`` reads: 0 is the input, ``j + 1`` the output of node ``j``."""
        return self._sources[i]

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of every parameter and of the computation."""
        return self._nodes[0].layer.dtype

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self._nodes[index].layer

    def astype(self, dtype: DTypeLike) -> Graph:
        """A copy whose parameters and computation use ``dtype`` (float32 or float64)."""
        dt = check_dtype(dtype)
        return Graph([Node(n.name, n.layer.astype(dt), n.inputs) for n in self._nodes], self._metadata)

    def n_parameters(self) -> int:
        """Total number of scalar parameters."""
        return sum(layer.n_parameters() for layer in self.layers)

    def label(self, i: int) -> str:
        """How node ``i`` is named in descriptions and the ledger."""
        node = self._nodes[i]
        return f"{node.name}: {node.layer.describe()}"

    # ------------------------------------------------------------------ the forward sweep

    def pack(self, i: int, tensors: Sequence[Array]) -> Array:
        """The input node ``i``'s layer computes on, from the tensors of the forward sweep (packed if it merges)."""
        layer = self._nodes[i].layer
        inputs = [tensors[t] for t in self._sources[i]]
        return layer.pack(inputs) if isinstance(layer, MergeLayer) else inputs[0]

    def unpack(self, i: int, packed: Array, tensors: Sequence[Array]) -> list[Array]:
        """A batch of node ``i``'s (packed) input shape, such as its input relevance, split per input tensor."""
        layer = self._nodes[i].layer
        if not isinstance(layer, MergeLayer):
            return [packed]
        return layer.unpack(packed, [tuple(tensors[t].shape[1:]) for t in self._sources[i]])

    def shapes(self, input_shape: Sequence[int]) -> list[Shape]:
        """Per-sample shapes of every tensor: the input, then each node's output."""
        shapes: list[Shape] = [tuple(check_int(n, "input_shape entry", 1, error=ShapeError) for n in input_shape)]
        for i, node in enumerate(self._nodes):
            ins = [shapes[t] for t in self._sources[i]]
            try:
                packed = node.layer.packed_shape(ins) if isinstance(node.layer, MergeLayer) else ins[0]
                shapes.append(node.layer.output_shape(packed))
            except ShapeError as exc:
                raise ShapeError(f"{self._where(i)}: {exc}") from None
        return shapes

    def _where(self, i: int) -> str:
        return f"node {self._nodes[i].name!r} ({type(self._nodes[i].layer).__name__})"

    def forward_all(self, x: Array) -> list[Array]:
        """Every tensor of the forward sweep: ``[x, output of node 0, ..., output of the last node]``."""
        x = real_array(x, "x (the input batch)")
        if x.ndim < 1:
            raise ShapeError(f"x must be a batch of shape (N, ...); got shape {x.shape}")
        self.shapes(x.shape[1:])  # validates every node before any work is done
        tensors = [x]
        for i, node in enumerate(self._nodes):
            tensors.append(node.layer.forward(self.pack(i, tensors)))
        return tensors

    def forward(self, x: Array) -> Array:
        """The model output for a batch ``x`` of shape (N, *input_shape)."""
        return self.forward_all(x)[-1]

    def describe(self) -> str:
        """One line per node: its name, layer and inputs."""
        width = max(len(n.name) for n in self._nodes)
        lines = [f"Graph ({len(self)} nodes, {self.n_parameters()} parameters, {self.dtype})"]
        lines += [f"  {i:>2}  {n.name:<{width}}  {n.layer.describe():<44} <- {', '.join(n.inputs)}"
                  for i, n in enumerate(self._nodes)]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()


class Sequential(Graph):
    """A feed-forward chain of layers: the chain-shaped :class:`Graph` (node ``i`` is named ``"i"``).

    Parameters
    ----------
    layers : sequence of :class:`~lrp_ref.layers.Layer`
        Applied in order; all must share one dtype; none may be a merge layer.
    metadata : mapping, optional
        Free-form facts about the model (input shape, class names,
        preprocessing, provenance) kept by :func:`lrp_ref.save`.
    """

    def __init__(self, layers: Sequence[Layer], metadata: Mapping[str, Any] = _NO_METADATA):
        if isinstance(layers, (Layer, str, bytes)) or not isinstance(layers, Iterable):
            raise LayerParameterError(f"Sequential layers must be a list of lrp_ref layers; got "
                                      f"{type(layers).__name__}")
        if not isinstance(metadata, Mapping):
            raise LayerParameterError(f"Sequential metadata must be a mapping (a dict); got "
                                      f"{type(metadata).__name__}")
        chain = tuple(layers)
        if not chain:
            raise LayerParameterError("Sequential layers: needs at least one layer; got none")
        for i, layer in enumerate(chain):
            if not isinstance(layer, Layer):
                raise LayerParameterError(f"Sequential layers[{i}] must be an lrp_ref layer; "
                                          f"got {type(layer).__name__}")
            if isinstance(layer, MergeLayer):
                raise LayerParameterError(f"Sequential layers[{i}] ({layer.describe()}) merges several inputs; "
                                          "a chain has one: build a Graph")
        dtypes = {layer.dtype for layer in chain}
        if len(dtypes) != 1:
            found = ", ".join(f"{i}: {layer.dtype}" for i, layer in enumerate(chain))
            raise LayerParameterError(f"all layers must share one dtype; found {found}. Use model.astype(dtype)")
        super().__init__([Node(str(i), layer, (INPUT if i == 0 else str(i - 1),)) for i, layer in enumerate(chain)],
                         metadata)

    def astype(self, dtype: DTypeLike) -> Sequential:
        """A copy whose parameters and computation use ``dtype`` (float32 or float64)."""
        dt = check_dtype(dtype)
        return Sequential([layer.astype(dt) for layer in self.layers], self.metadata)

    def label(self, i: int) -> str:
        return self[i].describe()

    def _where(self, i: int) -> str:
        return f"layer {i} ({type(self[i]).__name__})"

    def describe(self) -> str:
        """One line per layer."""
        lines = [f"Sequential ({len(self)} layers, {self.n_parameters()} parameters, {self.dtype})"]
        lines += [f"  {i:>2}  {layer.describe()}" for i, layer in enumerate(self.layers)]
        return "\n".join(lines)
