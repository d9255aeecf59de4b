"""The constant side of :func:`lrp_ref.from_onnx`: attributes, and a small evaluator of constant sub-graphs.

Exporters write shape arithmetic into ONNX files: ``torch.onnx.export`` turns
``x.view(x.size(0), -1)`` into ``Shape -> Gather -> Unsqueeze -> Concat ->
Reshape``.  :func:`evaluate` computes such operations with NumPy when all
their inputs are constants (initializers, ``Constant`` nodes, earlier results)
or, for ``Shape``, when the shape of the computed tensor is known.

The batch size is not known in advance, so every constant is a pair
:class:`Const`: its value when the batch holds ``PROBES[0]`` samples and its
value when it holds ``PROBES[1]``.  Weights are the same in both; a value
that differs depends on the batch (a reshape target such as ``(N, -1)``), and
only ``Reshape`` may read one.

Every operation the evaluator knows is in :data:`CONSTANT_OPS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[Any]

#: The two batch sizes the constants are evaluated for (unlikely to equal any other size in a model).
PROBES = (7919, 7927)

#: Largest constant (elements) the evaluator makes: a ConstantOfShape cannot exhaust memory.
MAX_CONSTANT = 2**26


class ConstantError(Exception):
    """A constant sub-graph cannot be evaluated (turned into the importer's error naming the node)."""


@dataclass(frozen=True)
class Const:
    """A constant tensor: its value for a batch of ``PROBES[0]`` and of ``PROBES[1]`` samples."""

    small: Array
    large: Array

    @staticmethod
    def fixed(value: Array) -> Const:
        """A constant that does not depend on the batch size."""
        return Const(value, value)

    @property
    def batch_dependent(self) -> bool:
        return self.small.shape != self.large.shape or not np.array_equal(self.small, self.large)


def attributes(node: Any) -> dict[str, Any]:
    """The node's attributes as Python values (ints, floats, bytes decoded to str, lists, tensors as arrays)."""
    from onnx import helper, numpy_helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif hasattr(value, "dims") and hasattr(value, "data_type"):  # a TensorProto
            value = numpy_helper.to_array(value)
        elif isinstance(value, list):
            value = list(value)
        out[a.name] = value
    return out


def _axes(values: Any, rank: int) -> list[int]:
    axes = [int(v) for v in np.asarray(values).reshape(-1)]
    if any(not -rank <= v < rank for v in axes):
        raise ConstantError(f"axes {axes} out of range for rank {rank}")
    return sorted(v % rank for v in axes)


def _optional(inputs: Sequence[Array | None], i: int) -> Array | None:
    return inputs[i] if i < len(inputs) else None


def _attr_or_input(attrs: dict[str, Any], name: str, inputs: Sequence[Array | None], i: int) -> Any:
    """An operand given as an attribute (older opsets) or as input ``i`` (newer ones)."""
    value = _optional(inputs, i)
    return value if value is not None else attrs.get(name)


def _unsqueeze(x: Array, axes: Any) -> Array:
    for axis in _axes(axes, x.ndim + len(np.asarray(axes).reshape(-1))):
        x = np.expand_dims(x, axis)
    return x


def _squeeze(x: Array, axes: Any) -> Array:
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(_axes(axes, x.ndim)))


def _slice(x: Array, starts: Array, ends: Array, axes: Array | None, steps: Array | None) -> Array:
    axes_list = list(range(len(starts))) if axes is None else _axes(axes, x.ndim)
    steps_list = [1] * len(starts) if steps is None else [int(s) for s in steps]
    index = [slice(None)] * x.ndim
    for axis, start, end, step in zip(axes_list, starts, ends, steps_list):
        if step == 0:
            raise ConstantError("Slice step 0")
        index[axis] = slice(int(start), int(end), step)
    return x[tuple(index)]


def reshape_target(shape: Sequence[int], data_shape: Sequence[int], allowzero: int) -> tuple[int, ...]:
    """ONNX Reshape's output shape: 0 copies the input's size on that axis (unless ``allowzero``), -1 is inferred."""
    target = [int(n) for n in shape]
    if not allowzero:
        target = [int(data_shape[i]) if n == 0 and i < len(data_shape) else n for i, n in enumerate(target)]
    size = int(np.prod(data_shape, dtype=np.int64))
    if target.count(-1) > 1 or any(n < -1 for n in target):
        raise ConstantError(f"Reshape target {tuple(shape)} is not a shape")
    if -1 in target:
        rest = int(np.prod([n for n in target if n != -1], dtype=np.int64))
        if rest == 0 or size % rest:
            raise ConstantError(f"cannot reshape {tuple(data_shape)} to {tuple(shape)}")
        target[target.index(-1)] = size // rest
    if int(np.prod(target, dtype=np.int64)) != size:
        raise ConstantError(f"cannot reshape {tuple(data_shape)} to {tuple(shape)}")
    return tuple(target)


def _div(a: Array, b: Array) -> Array:
    if np.issubdtype(np.result_type(a, b), np.integer):  # ONNX integer division truncates toward zero
        if np.any(b == 0):
            raise ConstantError("integer division by zero")
        return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(np.result_type(a, b))
    return np.asarray(np.divide(a, b))


def _np_dtype(to: int) -> Any:
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(to)


def _constant_node(attrs: dict[str, Any]) -> Array:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attrs:
            return np.asarray(attrs[key], dtype=np.int64 if "int" in key else None)
    raise ConstantError(f"Constant with attributes {sorted(attrs)} (supported: value, value_float(s), value_int(s))")


def _constant_of_shape(shape: Array, attrs: dict[str, Any]) -> Array:
    dims = [int(n) for n in np.asarray(shape).reshape(-1)]
    if any(n < 0 for n in dims) or int(np.prod(dims, dtype=np.float64)) > MAX_CONSTANT:
        raise ConstantError(f"ConstantOfShape of shape {tuple(dims)}")
    value = attrs.get("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return np.full(dims, fill[0], dtype=fill.dtype)


def _range(start: Array, limit: Array, delta: Array) -> Array:
    if float(delta) == 0 or (float(limit) - float(start)) / float(delta) > MAX_CONSTANT:
        raise ConstantError(f"Range({start}, {limit}, {delta}) is empty-stepped or too long")
    return np.arange(start.item(), limit.item(), delta.item()).astype(np.result_type(start, limit, delta))


# each entry: (inputs, attributes) -> output; inputs may hold None for an omitted optional input
_OPS: dict[str, Callable[[list[Any], dict[str, Any]], Array]] = {
    "Constant": lambda x, at: _constant_node(at),
    "Identity": lambda x, at: x[0],
    "Cast": lambda x, at: x[0].astype(_np_dtype(at["to"])),
    "Gather": lambda x, at: np.take(x[0], x[1], axis=at.get("axis", 0)),
    "Unsqueeze": lambda x, at: _unsqueeze(x[0], _attr_or_input(at, "axes", x, 1)),
    "Squeeze": lambda x, at: _squeeze(x[0], _attr_or_input(at, "axes", x, 1)),
    "Concat": lambda x, at: np.concatenate(x, axis=at["axis"]),
    "Slice": lambda x, at: _slice(x[0], x[1], x[2], _optional(x, 3), _optional(x, 4)),
    "Reshape": lambda x, at: x[0].reshape(reshape_target(x[1], x[0].shape, at.get("allowzero", 0))),
    "Transpose": lambda x, at: np.transpose(x[0], at.get("perm")),
    "Add": lambda x, at: np.asarray(x[0] + x[1]),
    "Sub": lambda x, at: np.asarray(x[0] - x[1]),
    "Mul": lambda x, at: np.asarray(x[0] * x[1]),
    "Div": lambda x, at: _div(x[0], x[1]),
    "Neg": lambda x, at: np.asarray(-x[0]),
    "Min": lambda x, at: np.asarray(np.minimum.reduce(x)),
    "Max": lambda x, at: np.asarray(np.maximum.reduce(x)),
    "Equal": lambda x, at: np.asarray(x[0] == x[1]),
    "Where": lambda x, at: np.asarray(np.where(x[0], x[1], x[2])),
    "ConstantOfShape": lambda x, at: _constant_of_shape(x[0], at),
    "Range": lambda x, at: _range(x[0], x[1], x[2]),
    "Size": lambda x, at: np.asarray(x[0].size, dtype=np.int64),
}

#: Operations :func:`evaluate` computes on constants (``Shape`` also on computed tensors of known shape).
CONSTANT_OPS = ("Shape", *sorted(_OPS))


def shape_of(shape: Sequence[int], attrs: dict[str, Any]) -> Const:
    """``Shape`` of a computed tensor whose one sample has ``shape``: the batch size is each probe."""
    start, end = attrs.get("start", 0), attrs.get("end")
    return Const(*(np.asarray((probe, *shape), dtype=np.int64)[start:end] for probe in PROBES))


def evaluate(op: str, inputs: Sequence[Const | None], attrs: dict[str, Any]) -> Const:
    """The constant output of ``op`` on constant inputs (None: an omitted optional input)."""
    run = _OPS.get(op)
    if run is None:
        raise ConstantError(f"{op} on constants is not evaluated (evaluated: {', '.join(CONSTANT_OPS)})")
    fixed = all(c is None or not c.batch_dependent for c in inputs)
    results = []
    for which in ("small",) if fixed else ("small", "large"):
        args = [None if c is None else getattr(c, which) for c in inputs]
        try:
            value = np.asarray(run(args, attrs))
        except ConstantError:
            raise
        except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
            raise ConstantError(f"{op} on constants failed: {type(exc).__name__}: {exc}") from None
        if value.size > MAX_CONSTANT:
            raise ConstantError(f"{op} makes a constant of {value.size} elements (at most {MAX_CONSTANT})")
        results.append(value)
    return Const.fixed(results[0]) if fixed else Const(results[0], results[1])
