"""Import an ONNX model: :func:`from_onnx` (optional extra ``onnx``: ``pip install lrp_ref[onnx]``).

The ``onnx`` package parses the file (protobuf) and ``onnx.numpy_helper``
reads the tensors; nothing is run by ONNX Runtime.  Every node of the graph
becomes a node of an :class:`lrp_ref.Graph` (a :class:`lrp_ref.Sequential`
where they form a chain), or a constant:

==============================================  ====================================================
ONNX operator                                   lrp_ref
==============================================  ====================================================
``Gemm`` (``alpha``, ``beta``, ``transB``)      :class:`~lrp_ref.Dense`, weight ``alpha B`` (out, in),
                                                bias ``beta C``; ``transA=1`` is refused
``MatMul`` by a constant, + ``Add`` constant    :class:`~lrp_ref.Dense` with that bias
``Conv`` (2-D: pads, strides, dilations,        :class:`~lrp_ref.Conv2d`; ``SAME_UPPER`` pads the larger
``group``, ``auto_pad``)                        half after, ``SAME_LOWER`` before (four-sided padding)
``MaxPool`` (dilations 1)                       :class:`~lrp_ref.MaxPool2d` (padding -inf)
``AveragePool`` (``count_include_pad``)         :class:`~lrp_ref.AvgPool2d`
``GlobalAveragePool``; ``ReduceMean`` over      :class:`~lrp_ref.GlobalAvgPool2d` (then :class:`~lrp_ref.Flatten`
H and W                                         for ``keepdims=0``)
``Relu``                                        :class:`~lrp_ref.ReLU`
``Flatten`` (``axis=1``); ``Reshape`` to        :class:`~lrp_ref.Flatten` (a reshape to the same shape: nothing)
(N, -1)
``BatchNormalization`` (inference)              :class:`~lrp_ref.BatchNorm1d` / :class:`~lrp_ref.BatchNorm2d`
``Add`` / ``Sum`` of computed tensors           :class:`~lrp_ref.Add`
``Concat`` (``axis=1``)                         :class:`~lrp_ref.Concat`
``Dropout``, ``Identity``                       nothing (inference passes the input on)
``Softmax`` ending the model                    dropped, noted in ``metadata["import_notes"]``
==============================================  ====================================================

Constants are folded: initializers, ``Constant`` nodes, and the shape
arithmetic exporters write (``Shape``, ``Gather``, ``Unsqueeze``, ``Concat``,
``Slice``, ``Cast``, arithmetic...; see :mod:`lrp_ref._onnx_ops`) are
evaluated with NumPy.  Initializers listed among the graph inputs (older
exporters) are constants; the one other input is the model's input.  A
batch size fixed in the file (``torch.onnx.export``'s dynamo exporter writes
the example's) is not a restriction: the imported model takes any batch.

Anything else is refused with a one-line :class:`~lrp_ref.errors.ModelFormatError`
naming the node, its operator and the supported operators: lrp_ref never
skips an operation silently.  Opsets 11 to 21 of the default domain.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from . import _onnx_ops as ops
from ._checks import check_dtype
from ._import_graph import GraphBuilder
from .errors import ArgumentError, LrpRefError, ModelFormatError
from .graph import Graph, Sequential
from .layers import Layer
from .merge import MergeLayer

__all__ = ["MAX_OPSET", "MIN_OPSET", "SUPPORTED_OPS", "from_onnx"]

#: The opsets of the default ONNX domain :func:`from_onnx` reads.
MIN_OPSET, MAX_OPSET = 11, 21

#: Operators that compute on the model input (constants may use :data:`lrp_ref._onnx_ops.CONSTANT_OPS` too).
SUPPORTED_OPS = ("Add", "AveragePool", "BatchNormalization", "Concat", "Conv", "Dropout", "Flatten", "Gemm",
                 "GlobalAveragePool", "Identity", "MatMul", "MaxPool", "ReduceMean", "Relu", "Reshape",
                 "Softmax (last)", "Sum")

_SOURCE = "from_onnx"


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError("from_onnx needs the onnx package: pip install 'lrp_ref[onnx]' (or: pip install onnx)"
                          ) from None
    return onnx


def from_onnx(path_or_model: Any, dtype: DTypeLike = np.float64, input_shape: Any = None) -> Sequential | Graph:
    """The lrp_ref model of an ONNX file (see the module docstring for the operators).

    Parameters
    ----------
    path_or_model : str, path-like or ``onnx.ModelProto``
        A ``.onnx`` file (weights stored beside it as external data are read
        too) or a model already loaded with ``onnx.load``.
    dtype : float64 (default) or float32
        The dtype of the imported layers; the file's weights are cast to it.
    input_shape : tuple of int, optional
        One sample's input shape, e.g. ``(3, 224, 224)``, for files whose
        input has symbolic sizes other than the batch; by default the file's.

    Returns
    -------
    Sequential or Graph
        ``metadata`` holds ``input_shape``, ``imported_from`` (producer and
        opset) and, if anything was dropped, ``import_notes``.

    Raises
    ------
    ModelFormatError
        The file is not ONNX, is truncated, uses an operator or option lrp_ref
        does not support (the message names the node), has a weight of the
        wrong shape, more than one input or output, or an opset outside 11..21.
    ImportError
        The ``onnx`` package is missing.
    """
    onnx = _import_onnx()
    dt = check_dtype(dtype)
    model, label = _read(onnx, path_or_model)
    opset = _opset(model, label)
    graph = model.graph
    constants: dict[str, ops.Const] = {}
    for init in graph.initializer:
        constants[init.name] = ops.Const.fixed(_tensor(onnx, init, f"{label}: initializer {init.name!r}"))
    inputs = [v for v in graph.input if v.name not in constants]
    if len(inputs) != 1:
        found = ", ".join(repr(v.name) for v in inputs) or "none"
        raise ModelFormatError(f"{_SOURCE}: {label}: expected one model input (besides the initializers); "
                               f"found {len(inputs)}: {found}")
    if len(graph.output) != 1:
        raise ModelFormatError(f"{_SOURCE}: {label}: expected one model output; found {len(graph.output)}: "
                               f"{', '.join(repr(v.name) for v in graph.output)}")
    shape, static_batch = _input_shape(onnx, inputs[0], input_shape, label)
    importer = _Importer(onnx, dt, opset, constants, static_batch)
    importer.run(inputs[0].name, shape, graph)
    meta = {"input_shape": shape, "imported_from": f"ONNX ({label}; producer {model.producer_name or 'unknown'} "
                                                    f"{model.producer_version}; opset {opset})".replace(" )", ")")}
    try:
        return importer.builder.build(graph.output[0].name, meta)
    except ModelFormatError:
        raise
    except LrpRefError as exc:  # the nodes do not make a graph (e.g. a computed tensor that feeds nothing)
        raise ModelFormatError(f"{_SOURCE}: {label}: {' '.join(str(exc).split())}") from None


# ----------------------------------------------------------------------------- the file


def _read(onnx: Any, source: Any) -> tuple[Any, str]:
    """The ModelProto and a label for messages; any parse failure is a ModelFormatError."""
    if isinstance(source, onnx.ModelProto):
        model, label = source, "ModelProto"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"No such ONNX file: {label!r}")
        with path.open("rb") as f:
            head = f.read(8)
        if head.startswith(b"\x89HDF\r\n\x1a\n"):
            raise ModelFormatError(f"{_SOURCE}: {label}: an HDF5 file, not ONNX (an lrp_ref model? use lrp_ref.load; "
                                   "a Keras .h5? use lrp_ref.keras.from_keras)")
        if head.startswith(b"PK\x03\x04"):
            raise ModelFormatError(f"{_SOURCE}: {label}: a zip archive, not ONNX (a Keras .keras file? use "
                                   "lrp_ref.keras.from_keras)")
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # protobuf's DecodeError, a missing external-data file, ...
            raise ModelFormatError(f"{_SOURCE}: {label}: not a readable ONNX file ({type(exc).__name__}: "
                                   f"{' '.join(str(exc).split()) or 'protobuf could not parse it'})") from None
    else:
        raise ArgumentError(f"from_onnx takes a path or an onnx.ModelProto; got {type(source).__name__}")
    if not model.HasField("graph") or not model.graph.node:
        raise ModelFormatError(f"{_SOURCE}: {label}: not an ONNX model, or a truncated one (no graph nodes)")
    g = model.graph
    names = [*(n.name for n in g.node), *(t for n in g.node for t in (*n.input, *n.output)),
             *(v.name for v in (*g.input, *g.output, *g.initializer))]
    if not all(isinstance(name, str) for name in names):
        raise ModelFormatError(f"{_SOURCE}: {label}: holds a name that is not valid UTF-8 (a corrupt file?)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ModelFormatError(f"{_SOURCE}: {label}: not a valid ONNX model (onnx.checker: {first})") from None
    return model, label


def _opset(model: Any, label: str) -> int:
    versions = [int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise ModelFormatError(f"{_SOURCE}: {label}: the model imports no opset of the default ONNX domain")
    if not MIN_OPSET <= versions[0] <= MAX_OPSET:
        raise ModelFormatError(f"{_SOURCE}: {label}: opset {versions[0]} is not supported; lrp_ref reads opsets "
                               f"{MIN_OPSET} to {MAX_OPSET} (convert with onnx.version_converter.convert_version)")
    return versions[0]


def _tensor(onnx: Any, proto: Any, what: str) -> Any:
    from onnx import numpy_helper

    try:
        return numpy_helper.to_array(proto)
    except Exception as exc:
        raise ModelFormatError(f"{_SOURCE}: {what}: cannot be read ({type(exc).__name__}: {exc})") from None


def _input_shape(onnx: Any, value: Any, given: Any, label: str) -> tuple[tuple[int, ...], int | None]:
    """One sample's input shape and the batch size the file fixes (None if symbolic)."""
    where = f"{_SOURCE}: {label}: input {value.name!r}"
    tensor_type = value.type.tensor_type if value.type.HasField("tensor_type") else None
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    if tensor_type is None or tensor_type.elem_type not in floats:
        found = "a non-tensor" if tensor_type is None else onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise ModelFormatError(f"{where}: expected a float tensor; found {found}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    if not tensor_type.HasField("shape") or not dims:
        raise ModelFormatError(f"{where}: expected a shape (N, ...); found none")
    batch = dims[0]
    if given is not None:
        if isinstance(given, (str, bytes)) or not all(isinstance(n, (int, np.integer)) and n > 0 for n in given):
            raise ArgumentError(f"from_onnx input_shape must be positive ints, e.g. (3, 224, 224); got {given!r}")
        shape = tuple(int(n) for n in given)
        fixed = dims[1:]
        if len(shape) != len(fixed) or any(f is not None and f != s for f, s in zip(fixed, shape)):
            raise ModelFormatError(f"{where}: input_shape {shape} does not fit the file's (N, "
                                   f"{', '.join('?' if n is None else str(n) for n in fixed)})")
        return shape, batch
    if any(n is None for n in dims[1:]):
        text = ", ".join("?" if n is None else str(n) for n in dims)
        raise ModelFormatError(f"{where}: has symbolic sizes ({text}) besides the batch; give from_onnx "
                               "input_shape=(C, H, W) (lrp-ref convert --input-shape C,H,W)")
    return tuple(int(n) for n in dims[1:] if n is not None), batch


# ----------------------------------------------------------------------------- the graph


class _Importer:
    """Walks the nodes in order: constants are evaluated, the rest become lrp_ref nodes."""

    def __init__(self, onnx: Any, dtype: np.dtype[Any], opset: int, constants: dict[str, ops.Const],
                 static_batch: int | None) -> None:
        self.onnx, self.dtype, self.opset = onnx, dtype, opset
        self.constants = constants
        self.static_batch = static_batch
        self.shapes: dict[str, tuple[int, ...]] = {}  # computed tensor -> one sample's shape
        self.builder = GraphBuilder(_SOURCE, error=ModelFormatError)
        self.fused: set[str] = set()  # outputs of Add nodes folded into the MatMul before them
        self.consumers: dict[str, list[Any]] = {}

    def run(self, input_name: str, input_shape: tuple[int, ...], graph: Any) -> None:
        from ._onnx_convert import convert

        self.builder.input(input_name)
        self.shapes[input_name] = input_shape
        for node in graph.node:
            for t in node.input:
                self.consumers.setdefault(t, []).append(node)
        for i, node in enumerate(graph.node):
            where = f"node {node.name!r} ({node.op_type})" if node.name else f"node #{i} ({node.op_type})"
            if node.domain not in ("", "ai.onnx"):
                raise self.builder.refuse(where, f"operator {node.domain}.{node.op_type} of a custom domain is not "
                                                 f"supported; supported: {', '.join(SUPPORTED_OPS)}")
            if not node.output or not node.output[0]:
                raise self.builder.refuse(where, "has no output")
            if node.output[0] in self.fused:
                continue
            attrs = ops.attributes(node)
            computed = [t for t in node.input if t and t in self.shapes]
            try:
                if node.op_type == "Shape" and node.input[0] in self.constants:  # the shape of a constant
                    shape = np.asarray(self.constants[node.input[0]].small.shape, dtype=np.int64)
                    self.constants[node.output[0]] = ops.Const.fixed(shape[attrs.get("start", 0):attrs.get("end")])
                elif not computed and node.op_type != "Shape":
                    self._constant(node, attrs)
                elif node.op_type == "Shape":
                    self.constants[node.output[0]] = ops.shape_of(self._shape(node.input[0], where), attrs)
                else:
                    convert(self, node, attrs, where)
            except ops.ConstantError as exc:
                raise self.builder.refuse(where, str(exc)) from None
            except ModelFormatError:
                raise
            except LrpRefError as exc:  # a layer refused its parameters or its input shape
                raise self.builder.refuse(where, " ".join(str(exc).split())) from None

    def _constant(self, node: Any, attrs: dict[str, Any]) -> None:
        inputs = [self.constants.get(t) if t else None for t in node.input]
        missing = [t for t, c in zip(node.input, inputs) if t and c is None]
        if missing:
            raise ops.ConstantError(f"reads {', '.join(map(repr, missing))}, which no earlier node or initializer "
                                    "computes")
        out = ops.evaluate(node.op_type, inputs, attrs)
        self.constants[node.output[0]] = out

    # ------------------------------------------------------------------ helpers for the converters

    def _shape(self, tensor: str, where: str) -> tuple[int, ...]:
        if tensor not in self.shapes:
            raise self.builder.refuse(where, f"reads {tensor!r}, which is not computed by an earlier node")
        return self.shapes[tensor]

    def constant(self, node: Any, i: int, where: str, what: str, optional: bool = False) -> Any:
        """Input ``i`` of ``node`` as a constant array that does not depend on the batch (None if omitted)."""
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            if optional:
                return None
            raise self.builder.refuse(where, f"has no {what} (input {i})")
        if name in self.shapes:
            raise self.builder.refuse(where, f"its {what} {name!r} is computed from the model input; lrp_ref needs a "
                                             "constant (an initializer)")
        if name not in self.constants:
            raise self.builder.refuse(where, f"reads {name!r}, which no earlier node or initializer computes")
        c = self.constants[name]
        if c.batch_dependent:
            raise self.builder.refuse(where, f"its {what} {name!r} depends on the batch size")
        return c.small

    def weight(self, where: str, what: str, value: Any, expected: list[int | None]) -> Any:
        return self.builder.weight(where, what, value, expected)

    def emit(self, where: str, node: Any, layer: Layer, inputs: list[str], output: str | None = None,
             name: str | None = None) -> None:
        """Add ``layer`` reading the computed tensors ``inputs``; it computes ``output`` (default: the node's)."""
        shapes = [self._shape(t, where) for t in inputs]
        packed = layer.packed_shape(shapes) if isinstance(layer, MergeLayer) else shapes[0]
        out_shape = layer.output_shape(packed)
        out = output if output is not None else node.output[0]
        self.builder.layer(where, name if name is not None else (node.name or out), layer, inputs, out)
        self.shapes[out] = out_shape

    def alias(self, where: str, node: Any, input_tensor: str) -> None:
        """The node's output is ``input_tensor``."""
        self.builder.alias(where, node.output[0], input_tensor)
        self.shapes[node.output[0]] = self._shape(input_tensor, where)

    def unused(self, node: Any, where: str, first: int = 1) -> None:
        """Refuse if an output after the ``first`` is read by a later node (MaxPool indices, Dropout mask...)."""
        for t in node.output[first:]:
            if t and self.consumers.get(t):
                raise self.builder.refuse(where, f"its output {t!r} (not the first) is read by a later node; only "
                                                 "the first output is supported")

