"""The ONNX operators :func:`lrp_ref.from_onnx` maps to lrp_ref layers, one converter each.

Each converter reads the node's attributes (ONNX defaults where absent), its
constant inputs through the importer (weights checked for shape by
:meth:`lrp_ref._import_graph.GraphBuilder.weight`), and emits layers or an
alias.  Options lrp_ref cannot compute exactly are refused, naming them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _onnx_ops as ops
from .layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dense,
    Flatten,
    GlobalAvgPool2d,
    MaxPool2d,
    ReLU,
    same_padding,
)
from .merge import Add, Concat

Importer = Any  # lrp_ref.onnx._Importer (not imported: it imports this module)
Converter = Callable[[Importer, Any, dict[str, Any], str], None]


def convert(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    """Map one node that computes on the model input (see :data:`lrp_ref.onnx.SUPPORTED_OPS`)."""
    from .onnx import SUPPORTED_OPS

    run = _CONVERTERS.get(node.op_type)
    if run is None:
        raise imp.builder.refuse(where, f"operator {node.op_type} is not supported; supported: "
                                        f"{', '.join(SUPPORTED_OPS)}")
    run(imp, node, attrs, where)


# ----------------------------------------------------------------------------- attribute helpers


def _refuse(imp: Importer, where: str, why: str) -> Exception:
    return imp.builder.refuse(where, why)


def _image(imp: Importer, node: Any, where: str) -> tuple[str, tuple[int, ...]]:
    """The node's computed input and its shape, which must be an image (C, H, W)."""
    x = node.input[0]
    s = imp._shape(x, where)
    if len(s) != 3:
        raise _refuse(imp, where, f"only 2-D images (N, C, H, W) are supported; the input is "
                                  f"(N, {', '.join(map(str, s))})")
    return x, s


def _pair(imp: Importer, where: str, attrs: dict[str, Any], name: str) -> tuple[int, int]:
    value = attrs.get(name)
    if value is None:
        return 1, 1
    if len(value) != 2:
        raise _refuse(imp, where, f"{name} must have 2 entries (H, W); got {list(value)}")
    return int(value[0]), int(value[1])


def _padding(imp: Importer, where: str, attrs: dict[str, Any], hw: Sequence[int], kernel: Sequence[int],
             stride: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` from ``pads`` ``[top, left, bottom, right]`` or ``auto_pad``."""
    auto = attrs.get("auto_pad", "NOTSET")
    if auto == "NOTSET":
        pads = attrs.get("pads", [0, 0, 0, 0])
        if len(pads) != 4 or any(int(p) < 0 for p in pads):
            raise _refuse(imp, where, f"pads must be 4 non-negative ints [top, left, bottom, right]; got {list(pads)}")
        return int(pads[0]), int(pads[2]), int(pads[1]), int(pads[3])
    if auto == "VALID":
        return 0, 0, 0, 0
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        top, bottom, left, right = same_padding(tuple(hw), tuple(kernel), stride, dilation)
        # SAME_UPPER puts the odd pixel after (bottom, right), SAME_LOWER before
        return (top, bottom, left, right) if auto == "SAME_UPPER" else (bottom, top, right, left)
    raise _refuse(imp, where, f"auto_pad {auto!r} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")


def _vector(imp: Importer, where: str, what: str, value: Any, n: int) -> Any:
    """A per-output vector (n,) from a constant of shape (n,), (1, n) or a scalar."""
    arr = np.asarray(value)
    if arr.size == 1 and n != 1:
        return np.full(n, arr.reshape(-1)[0])
    if arr.shape == (1, n):
        arr = arr.reshape(n)
    return imp.weight(where, what, arr, [n])


def _axis(imp: Importer, where: str, value: int, rank: int, what: str) -> int:
    if not -rank <= value < rank:
        raise _refuse(imp, where, f"{what} {value} is out of range for a tensor of rank {rank}")
    return value % rank


# ----------------------------------------------------------------------------- linear layers


def _gemm(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    x = node.input[0]
    s = imp._shape(x, where)
    if attrs.get("transA", 0):
        raise _refuse(imp, where, "transA=1 (the input transposed) is not supported")
    if len(s) != 1:
        raise _refuse(imp, where, f"expects a flat input (N, features); got (N, {', '.join(map(str, s))})")
    b = imp.constant(node, 1, where, "weight B")
    if attrs.get("transB", 0):
        w = np.asarray(imp.weight(where, "weight B", b, [None, s[0]]))
    else:
        w = np.asarray(imp.weight(where, "weight B", b, [s[0], None])).T
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    c = imp.constant(node, 2, where, "bias C", optional=True)
    bias = None if c is None or beta == 0 else beta * _vector(imp, where, "bias C", c, w.shape[0]).astype(w.dtype)
    imp.emit(where, node, Dense(w if alpha == 1 else alpha * w, bias, dtype=imp.dtype), [x])


def _matmul(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    x = node.input[0]
    s = imp._shape(x, where)
    if len(s) != 1:
        raise _refuse(imp, where, f"only a flat input (N, features) times a constant matrix is supported; the input "
                                  f"is (N, {', '.join(map(str, s))})")
    w = np.asarray(imp.weight(where, "weight B", imp.constant(node, 1, where, "weight B"), [s[0], None])).T
    bias, output = None, None
    readers = imp.consumers.get(node.output[0], [])
    if len(readers) == 1 and readers[0].op_type == "Add" and len(readers[0].input) == 2:
        add = readers[0]
        other = [t for t in add.input if t != node.output[0]]
        const = imp.constants.get(other[0]) if len(other) == 1 else None
        if const is not None and not const.batch_dependent:  # MatMul + Add of a constant: a Dense layer with bias
            bias = _vector(imp, f"{where} + Add {add.name!r}", "bias", const.small, w.shape[0])
            output = add.output[0]
            imp.fused.add(output)
    imp.emit(where, node, Dense(w, bias, dtype=imp.dtype), [x], output=output)


def _conv(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    x, s = _image(imp, node, where)
    group = int(attrs.get("group", 1))
    if group < 1 or s[0] % group:
        raise _refuse(imp, where, f"group={group} does not divide the {s[0]} input channels")
    w = imp.weight(where, "weight W", imp.constant(node, 1, where, "weight W"), [None, s[0] // group, None, None])
    kernel = attrs.get("kernel_shape")
    if kernel is not None and tuple(kernel) != tuple(w.shape[2:]):
        raise _refuse(imp, where, f"kernel_shape {list(kernel)} does not match weight W of shape {w.shape}")
    stride, dilation = _pair(imp, where, attrs, "strides"), _pair(imp, where, attrs, "dilations")
    padding = _padding(imp, where, attrs, s[1:], w.shape[2:], stride, dilation)
    b = imp.constant(node, 2, where, "bias B", optional=True)
    bias = None if b is None else imp.weight(where, "bias B", b, [w.shape[0]])
    layer = Conv2d(w, bias, stride=stride, padding=padding, dilation=dilation, groups=group, dtype=imp.dtype)
    imp.emit(where, node, layer, [x])


def _batch_norm(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    x = node.input[0]
    s = imp._shape(x, where)
    if attrs.get("training_mode", 0):
        raise _refuse(imp, where, "training_mode=1 (batch statistics) is not supported; export the model in eval mode")
    imp.unused(node, where)
    if len(s) not in (1, 3):
        raise _refuse(imp, where, f"expects (N, C) or (N, C, H, W); got (N, {', '.join(map(str, s))})")
    names = ("scale", "bias B", "input_mean", "input_var")
    gamma, beta, mean, var = (imp.weight(where, n, imp.constant(node, i, where, n), [s[0]])
                              for i, n in enumerate(names, 1))
    cls = BatchNorm1d if len(s) == 1 else BatchNorm2d
    imp.emit(where, node, cls(gamma, beta, mean, var, float(attrs.get("epsilon", 1e-5)), dtype=imp.dtype), [x])


# ----------------------------------------------------------------------------- pooling


def _pool_window(imp: Importer, node: Any, attrs: dict[str, Any], where: str,
                 s: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
    """Kernel, stride and padding of MaxPool / AveragePool (dilations 1; ceil_mode only where it changes nothing)."""
    kernel = attrs.get("kernel_shape")
    if kernel is None or len(kernel) != 2:
        raise _refuse(imp, where, f"kernel_shape must have 2 entries (H, W); got {kernel}")
    k = (int(kernel[0]), int(kernel[1]))
    stride = _pair(imp, where, attrs, "strides")
    if _pair(imp, where, attrs, "dilations") != (1, 1):
        raise _refuse(imp, where, f"dilations {attrs['dilations']} are not supported (only 1)")
    padding = _padding(imp, where, attrs, s[1:], k, stride, (1, 1))
    if attrs.get("ceil_mode", 0):
        top, bottom, left, right = padding
        for n, kk, st, p in zip(s[1:], k, stride, (top + bottom, left + right)):
            if (n + p - kk) % st:  # the last window would start inside the image: ceil and floor differ
                raise _refuse(imp, where, "ceil_mode=1 adds a partial window here; only ceil_mode=0 is supported")
    return k, stride, padding


def _max_pool(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    x, s = _image(imp, node, where)
    imp.unused(node, where)
    k, stride, padding = _pool_window(imp, node, attrs, where, s)
    imp.emit(where, node, MaxPool2d(k, stride, padding, dtype=imp.dtype), [x])


def _average_pool(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    x, s = _image(imp, node, where)
    k, stride, padding = _pool_window(imp, node, attrs, where, s)
    include = bool(attrs.get("count_include_pad", 0))
    imp.emit(where, node, AvgPool2d(k, stride, dtype=imp.dtype, padding=padding, count_include_pad=include), [x])


def _global_average_pool(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    x, _ = _image(imp, node, where)
    imp.emit(where, node, GlobalAvgPool2d(dtype=imp.dtype), [x])


def _reduce_mean(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    x = node.input[0]
    s = imp._shape(x, where)
    axes = attrs.get("axes")
    if len(node.input) > 1 and node.input[1]:
        axes = imp.constant(node, 1, where, "axes")
    axes_list = [] if axes is None else [_axis(imp, where, int(a), len(s) + 1, "axis")
                                         for a in np.asarray(axes).reshape(-1)]
    if len(s) != 3 or sorted(axes_list) != [2, 3]:
        raise _refuse(imp, where, f"only the mean over H and W (axes [2, 3]) of an image (N, C, H, W) is supported; "
                                  f"got axes {axes_list or 'all'} of (N, {', '.join(map(str, s))})")
    if attrs.get("keepdims", 1):
        imp.emit(where, node, GlobalAvgPool2d(dtype=imp.dtype), [x])
        return
    pooled = f"{node.output[0]}/pooled"
    name = node.name or node.output[0]
    imp.emit(where, node, GlobalAvgPool2d(dtype=imp.dtype), [x], output=pooled)
    imp.emit(where, node, Flatten(dtype=imp.dtype), [pooled], name=f"{name}/flatten")


# ----------------------------------------------------------------------------- element-wise, reshaping, merging


def _relu(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    imp.emit(where, node, ReLU(dtype=imp.dtype), [node.input[0]])


def _flatten_to(imp: Importer, node: Any, where: str, x: str) -> None:
    if len(imp._shape(x, where)) == 1:
        imp.alias(where, node, x)  # already (N, features)
    else:
        imp.emit(where, node, Flatten(dtype=imp.dtype), [x])


def _flatten(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    x = node.input[0]
    s = imp._shape(x, where)
    axis = int(attrs.get("axis", 1))
    if axis != 1 and not (axis < 0 and axis + len(s) + 1 == 1):
        raise _refuse(imp, where, f"only axis=1 (keep the batch axis) is supported; got axis={axis}")
    _flatten_to(imp, node, where, x)


def _reshape(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    x = node.input[0]
    s = imp._shape(x, where)
    target_name = node.input[1] if len(node.input) > 1 else ""
    if target_name in imp.shapes or target_name not in imp.constants:
        raise _refuse(imp, where, f"its target shape {target_name!r} is not a constant")
    const = imp.constants[target_name]
    allowzero = int(attrs.get("allowzero", 0))
    kinds = set()
    for probe, value in zip(ops.PROBES, (const.small, const.large)):
        target = [int(v) for v in np.asarray(value).reshape(-1)]
        if imp.static_batch is not None and target and target[0] == imp.static_batch:
            target[0] = probe  # the batch size the file was exported with stands for any batch
        try:
            out = ops.reshape_target(target, (probe, *s), allowzero)
        except ops.ConstantError as exc:
            raise _refuse(imp, where, str(exc)) from None
        kinds.add("same" if out == (probe, *s) else "flat" if out == (probe, math.prod(s)) else "other")
    if kinds == {"same"}:
        imp.alias(where, node, x)
    elif "other" not in kinds:
        _flatten_to(imp, node, where, x)
    else:
        shown = tuple(int(v) for v in np.asarray(const.small).reshape(-1))
        raise _refuse(imp, where, f"reshapes (N, {', '.join(map(str, s))}) to {shown}; only a reshape to (N, -1) "
                                  "(a flatten) is supported")


def _merge_inputs(imp: Importer, node: Any, where: str) -> list[str]:
    inputs = [t for t in node.input if t]
    for t in inputs:
        if t not in imp.shapes:
            raise _refuse(imp, where, f"combines the constant {t!r} with a computed tensor; constants are supported "
                                      "only as parameters (the bias of MatMul + Add, Gemm, Conv)")
    return inputs


def _add(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    inputs = _merge_inputs(imp, node, where)
    if len(inputs) == 1:
        imp.alias(where, node, inputs[0])  # Sum of one tensor
    else:
        imp.emit(where, node, Add(len(inputs), dtype=imp.dtype), inputs)


def _concat(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    inputs = _merge_inputs(imp, node, where)
    rank = len(imp._shape(inputs[0], where)) + 1
    axis = _axis(imp, where, int(attrs.get("axis", 1)), rank, "axis")
    if axis != 1:
        raise _refuse(imp, where, f"only the concatenation of channels (axis=1) is supported; got axis={attrs['axis']}")
    if len(inputs) == 1:
        imp.alias(where, node, inputs[0])
    else:
        imp.emit(where, node, Concat(len(inputs), dtype=imp.dtype), inputs)


def _identity(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    if node.op_type == "Dropout":
        imp.unused(node, where)
        training = imp.constant(node, 2, where, "training_mode", optional=True)
        if training is not None and bool(np.asarray(training).reshape(-1)[0]):
            raise _refuse(imp, where, "training_mode=True drops values at random; export the model in eval mode")
    imp.alias(where, node, node.input[0])


def _softmax(imp: Importer, node: Any, attrs: dict[str, Any], where: str) -> None:
    imp.builder.softmax(where, node.output[0], node.input[0])
    imp.shapes[node.output[0]] = imp._shape(node.input[0], where)


_CONVERTERS: dict[str, Converter] = {
    "Gemm": _gemm, "MatMul": _matmul, "Conv": _conv, "BatchNormalization": _batch_norm,
    "MaxPool": _max_pool, "AveragePool": _average_pool, "GlobalAveragePool": _global_average_pool,
    "ReduceMean": _reduce_mean, "Relu": _relu, "Flatten": _flatten, "Reshape": _reshape,
    "Add": _add, "Sum": _add, "Concat": _concat, "Dropout": _identity, "Identity": _identity, "Softmax": _softmax,
}
