"""Keras layers to lrp_ref layers: one converter per Keras class (used by :mod:`lrp_ref.keras`).

Keras computes on channels-last tensors ``(N, H, W, C)`` with kernels
``(kh, kw, in, out)`` and Dense kernels ``(in, out)``; lrp_ref on ``(N, C, H,
W)`` with PyTorch's layout.  Images therefore convert exactly by transposing
the parameters; the one place where the two layouts compute different
numbers is the order of a flattened image.  Keras's ``Flatten`` of ``(H, W,
C)`` lists pixel by pixel, lrp_ref's ``Flatten`` of ``(C, H, W)`` channel by
channel.  Every flat tensor therefore carries ``order``: Keras's feature
``m`` is lrp_ref's feature ``order[m]`` (``None``: the same order).  The next
Dense takes it into its weight (``W[:, order] = K.T``), a BatchNormalization
on the features into its parameters, a Concatenate concatenates the orders;
the model's output must be in Keras's order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ._import_graph import GraphBuilder
from .errors import ModelFormatError
from .layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dense,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    MaxPool2d,
    ReLU,
    same_padding,
)
from .merge import Add, Concat, MergeLayer

Array = NDArray[Any]

#: Layers that are the identity at inference.
_IDENTITY = ("Dropout", "SpatialDropout2D", "GaussianDropout", "GaussianNoise", "AlphaDropout")

#: Every Keras class from_keras imports (the InputLayer is handled by the caller).
SUPPORTED = ("InputLayer", "Dense", "Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
             "GlobalMaxPooling2D", "Flatten", "ReLU", "Activation", "Softmax", "BatchNormalization", "Add",
             "Concatenate", "ZeroPadding2D", *_IDENTITY)
#: The layers a ZeroPadding2D is folded into (lrp_ref has no padding layer of its own).
_TAKES_PADDING = ("Conv2D", "MaxPooling2D", "AveragePooling2D", "ZeroPadding2D")
_NO_PAD = (0, 0, 0, 0)


class Weights(Protocol):
    """Where the converters get a layer's variables (see :mod:`lrp_ref.keras`)."""

    def arrays(self, name: str, cls: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, Array]:
        """The variables of layer ``name`` by role (kernel, bias, gamma...), each checked to have its shape."""


@dataclass(frozen=True)
class Tensor:
    """What the importer knows of one Keras tensor.

    Its lrp_ref shape (one sample), its flat order (see the module docstring), the zero padding
    ``(top, bottom, left, right)`` of ZeroPadding2D layers still to be applied by the layer that
    reads it, and whether it is non-negative (a ReLU's output).
    """

    shape: tuple[int, ...]
    order: Array | None = None
    pad: tuple[int, int, int, int] = _NO_PAD
    nonnegative: bool = False


@dataclass(frozen=True)
class Call:
    """One call of a Keras layer: its name, class and config, the tensors it reads and the one it computes."""

    name: str
    cls: str
    config: dict[str, Any]
    inputs: tuple[str, ...]
    output: str

    @property
    def where(self) -> str:
        return f"layer {self.name!r} ({self.cls})"


class Converter:
    """Adds the lrp_ref nodes of each Keras call to a :class:`GraphBuilder`, tracking shapes and orders."""

    def __init__(self, builder: GraphBuilder, weights: Weights, dtype: np.dtype[Any], channels_last: bool) -> None:
        self.builder, self.weights, self.dtype, self.channels_last = builder, weights, dtype, channels_last
        self.tensors: dict[str, Tensor] = {}
        self._table: dict[str, Callable[[Call, list[Tensor]], None]] = {
            "Dense": self._dense, "Conv2D": self._conv, "MaxPooling2D": self._pool, "AveragePooling2D": self._pool,
            "GlobalAveragePooling2D": self._global_pool, "GlobalMaxPooling2D": self._global_pool,
            "Flatten": self._flatten, "ReLU": self._relu, "Activation": self._activation_layer,
            "Softmax": self._softmax, "BatchNormalization": self._batch_norm, "Add": self._add,
            "Concatenate": self._concatenate, "ZeroPadding2D": self._zero_padding,
        }

    # ------------------------------------------------------------------ plumbing

    def refuse(self, call: Call, why: str) -> ModelFormatError:
        return ModelFormatError(f"from_keras: {call.where}: {why}")

    def input(self, tensor: str, shape: tuple[int, ...]) -> None:
        self.builder.input(tensor)
        self.tensors[tensor] = Tensor(shape)

    def add(self, call: Call) -> None:
        """Convert one call (raises ModelFormatError naming it if it cannot be imported)."""
        ins = [self.tensors[t] for t in call.inputs]
        if call.cls in _IDENTITY:
            self._one(call, ins)
            self.builder.alias(call.where, call.output, call.inputs[0])
            self.tensors[call.output] = ins[0]
            return
        convert = self._table.get(call.cls)
        if convert is None:
            raise self.refuse(call, f"the Keras class {call.cls!r} is not supported; from_keras imports "
                                    f"{', '.join(SUPPORTED)}")
        if call.cls not in ("Add", "Concatenate"):
            self._one(call, ins)
        if call.cls not in _TAKES_PADDING and any(t.pad != _NO_PAD for t in ins):
            raise self.refuse(call, "reads the output of a ZeroPadding2D; lrp_ref has no padding layer: the zero "
                                    "padding is folded into a Conv2D, MaxPooling2D or AveragePooling2D after it")
        convert(call, ins)

    def _node(self, call: Call, name: str, layer: Layer, inputs: Sequence[str], output: str,
              order: Array | None = None, nonnegative: bool = False) -> None:
        shapes = [self.tensors[t].shape for t in inputs]
        try:
            shape = (layer.output_shape(layer.packed_shape(shapes)) if isinstance(layer, MergeLayer)
                     else layer.output_shape(shapes[0]))
        except ValueError as exc:
            raise self.refuse(call, f"does not fit its input of lrp_ref shape {', '.join(map(str, shapes))}: {exc}"
                              ) from None
        self.builder.layer(call.where, name, layer, inputs, output)
        self.tensors[output] = Tensor(shape, order, nonnegative=nonnegative)

    def _one(self, call: Call, ins: list[Tensor]) -> None:
        if len(ins) != 1:
            raise self.refuse(call, f"expected one input tensor; got {len(ins)}")

    def _image(self, call: Call, t: Tensor) -> tuple[int, int, int]:
        if len(t.shape) != 3:
            raise self.refuse(call, f"expects an image (H, W, C); got a tensor of shape {self._keras_shape(t.shape)}")
        if call.cls != "Flatten" and (fmt := call.config.get("data_format", None)) is not None:
            if fmt not in ("channels_last", "channels_first"):
                raise self.refuse(call, f"data_format must be 'channels_last' or 'channels_first'; got {fmt!r}")
            if (fmt == "channels_last") != self.channels_last:
                raise self.refuse(call, f"data_format {fmt!r} differs from the model's other layers; from_keras "
                                        "imports models with one data_format")
        c, h, w = t.shape
        return c, h, w

    def _keras_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*shape[1:], shape[0]) if len(shape) == 3 and self.channels_last else shape

    def _ints(self, call: Call, key: str, n: int = 2, default: Any = None) -> tuple[int, ...]:
        value = call.config.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value] * n
        if not (isinstance(value, list) and len(value) == n and all(isinstance(v, int) and not isinstance(v, bool)
                                                                    and 1 <= v <= 2**16 for v in value)):
            raise self.refuse(call, f"{key} must be {n} positive ints; got {value!r}")
        return tuple(value)

    def _flag(self, call: Call, key: str, default: bool) -> bool:
        value = call.config.get(key, default)
        if not isinstance(value, bool):
            raise self.refuse(call, f"{key} must be true or false; got {value!r}")
        return value

    def _pair(self, call: Call, key: str, default: Any = None) -> tuple[int, int]:
        a, b = self._ints(call, key, 2, default)
        return a, b

    def _padding(self, call: Call, hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int] = (1, 1)) -> int | tuple[int, int, int, int]:
        padding = call.config.get("padding", "valid")
        padding = padding.lower() if isinstance(padding, str) else padding
        if padding == "valid":
            return 0
        if padding == "same":  # TensorFlow's: the odd pixel at the bottom / right
            return same_padding(hw, kernel, stride, dilation)
        raise self.refuse(call, f"padding must be 'valid' or 'same'; got {padding!r}")

    def _activation(self, call: Call, value: Any, linear_output: str) -> None:
        """The activation fused into ``call``, applied to ``linear_output``, computing ``call.output``."""
        if value in ("linear", None):
            self.builder.alias(call.where, call.output, linear_output)
            self.tensors[call.output] = self.tensors[linear_output]
        elif value == "relu":
            self._node(call, f"{call.name}_relu", ReLU(dtype=self.dtype), [linear_output], call.output,
                       self.tensors[linear_output].order, nonnegative=True)
        elif value == "softmax":
            self._final_softmax(call, linear_output)
        else:
            raise self.refuse(call, f"activation {value!r} is not supported; from_keras imports 'relu', 'linear' "
                                    "and a final 'softmax' (LRP rules for other activations are not defined)")

    def _final_softmax(self, call: Call, tensor: str) -> None:
        t = self.tensors[tensor]
        if len(t.shape) != 1:
            raise self.refuse(call, "a softmax is supported only over the features of a flat (N, F) output")
        self.builder.softmax(call.where, call.output, tensor)
        self.tensors[call.output] = t

    # ------------------------------------------------------------------ layers

    def _dense(self, call: Call, ins: list[Tensor]) -> None:
        t = ins[0]
        if len(t.shape) != 1:
            raise self.refuse(call, f"Dense on a tensor of shape {self._keras_shape(t.shape)} acts on its last axis "
                                    "only; lrp_ref's Dense takes flat vectors (put a Flatten before it)")
        if call.config.get("lora_rank") or call.config.get("quantization_config"):
            raise self.refuse(call, "LoRA and quantized Dense layers are not supported")
        units = self._ints(call, "units", 1)[0]
        bias = self._flag(call, "use_bias", True)
        shapes = {"kernel": (t.shape[0], units), **({"bias": (units,)} if bias else {})}
        v = self.weights.arrays(call.name, call.cls, shapes)
        w = np.ascontiguousarray(v["kernel"].T)  # C order: the layer computes as a model re-loaded from a file
        if t.order is not None:  # Keras's input feature m is lrp_ref's feature order[m]
            w[:, t.order] = v["kernel"].T
        layer = Dense(w, v.get("bias"), dtype=self.dtype)
        self._node(call, call.name, layer, call.inputs, f"{call.output}/linear")
        self._activation(call, call.config.get("activation", "linear"), f"{call.output}/linear")

    @staticmethod
    def _sides(padding: int | tuple[int, int, int, int], pad: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """The layer's own padding (0 or four sides) plus the zero padding folded into it."""
        own = _NO_PAD if isinstance(padding, int) else padding
        top, bottom, left, right = (a + b for a, b in zip(own, pad))
        return top, bottom, left, right

    def _zero_padding(self, call: Call, ins: list[Tensor]) -> None:
        t = ins[0]
        self._image(call, t)
        value = call.config.get("padding", 1)

        def ok(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2**16

        if ok(value):
            sides = (value,) * 4
        elif isinstance(value, list) and len(value) == 2 and all(ok(v) for v in value):
            sides = (value[0], value[0], value[1], value[1])
        elif (isinstance(value, list) and len(value) == 2 and all(isinstance(v, list) and len(v) == 2 for v in value)
              and all(ok(v) for pair in value for v in pair)):
            sides = (value[0][0], value[0][1], value[1][0], value[1][1])
        else:
            raise self.refuse(call, f"padding must be an int, (rows, cols) or ((top, bottom), (left, right)); "
                                    f"got {value!r}")
        self.builder.alias(call.where, call.output, call.inputs[0])
        top, bottom, left, right = (a + b for a, b in zip(t.pad, sides))
        self.tensors[call.output] = replace(t, pad=(top, bottom, left, right))

    def _conv(self, call: Call, ins: list[Tensor]) -> None:
        c, h, w = self._image(call, ins[0])
        pad = ins[0].pad
        filters = self._ints(call, "filters", 1)[0]
        kernel = self._pair(call, "kernel_size")
        stride = self._pair(call, "strides", default=[1, 1])
        dilation = self._pair(call, "dilation_rate", default=[1, 1])
        groups = self._ints(call, "groups", 1, default=1)[0]
        if c % groups or filters % groups:
            raise self.refuse(call, f"groups={groups} must divide the input channels {c} and the filters {filters}")
        bias = self._flag(call, "use_bias", True)
        shapes = {"kernel": (*kernel, c // groups, filters), **({"bias": (filters,)} if bias else {})}
        v = self.weights.arrays(call.name, call.cls, shapes)
        hw = (h + pad[0] + pad[1], w + pad[2] + pad[3])  # Keras's input: after any ZeroPadding2D
        layer = Conv2d(np.ascontiguousarray(v["kernel"].transpose(3, 2, 0, 1)), v.get("bias"), stride=stride,
                       padding=self._sides(self._padding(call, hw, kernel, stride, dilation), pad), dilation=dilation,
                       groups=groups, dtype=self.dtype)
        self._node(call, call.name, layer, call.inputs, f"{call.output}/linear")
        self._activation(call, call.config.get("activation", "linear"), f"{call.output}/linear")

    def _pool(self, call: Call, ins: list[Tensor]) -> None:
        t = ins[0]
        _, h, w = self._image(call, t)
        kernel = self._pair(call, "pool_size")
        stride = kernel if call.config.get("strides") is None else self._pair(call, "strides")
        hw = (h + t.pad[0] + t.pad[1], w + t.pad[2] + t.pad[3])  # Keras's input: after any ZeroPadding2D
        padding = self._padding(call, hw, kernel, stride)
        layer: Layer
        if call.cls == "MaxPooling2D":
            if t.pad != _NO_PAD and not t.nonnegative:
                raise self.refuse(call, "max pooling over ZeroPadding2D's zeros equals lrp_ref's max pooling (which "
                                        "pads with -inf) only on non-negative input, such as a ReLU's output")
            layer = MaxPool2d(kernel, stride, self._sides(padding, t.pad), dtype=self.dtype)
        elif t.pad != _NO_PAD:  # ZeroPadding2D's zeros are pixels of Keras's input: counted in the average
            if padding != 0:
                raise self.refuse(call, "'same' average pooling after ZeroPadding2D is not supported")
            layer = AvgPool2d(kernel, stride, dtype=self.dtype, padding=t.pad, count_include_pad=True)
        else:  # TensorFlow averages over the pixels inside the image only
            layer = AvgPool2d(kernel, stride, dtype=self.dtype, padding=padding, count_include_pad=padding == 0)
        self._node(call, call.name, layer, call.inputs, call.output, nonnegative=t.nonnegative)

    def _global_pool(self, call: Call, ins: list[Tensor]) -> None:
        _, h, w = self._image(call, ins[0])
        keepdims = self._flag(call, "keepdims", False)
        out = call.output if keepdims else f"{call.output}/pooled"
        pool = (GlobalAvgPool2d(dtype=self.dtype) if call.cls == "GlobalAveragePooling2D"
                else MaxPool2d((h, w), dtype=self.dtype))
        self._node(call, call.name, pool, call.inputs, out)
        if not keepdims:  # (C, 1, 1) -> (C,): the same order in both layouts
            self._node(call, f"{call.name}_flatten", Flatten(dtype=self.dtype), [out], call.output)

    def _flatten(self, call: Call, ins: list[Tensor]) -> None:
        t = ins[0]
        if len(t.shape) <= 1:
            self.builder.alias(call.where, call.output, call.inputs[0])
            self.tensors[call.output] = t
            return
        # the Keras tensor's axes, as axes of lrp_ref's tensor; Flatten(channels_first) moves axis 1 last first
        axes = (1, 2, 0) if len(t.shape) == 3 and self.channels_last else tuple(range(len(t.shape)))
        fmt = call.config.get("data_format", "channels_last")
        if fmt == "channels_first" and len(axes) >= 2:
            axes = (*axes[1:], axes[0])
        elif fmt not in ("channels_last", "channels_first", None):
            raise self.refuse(call, f"data_format must be 'channels_last' or 'channels_first'; got {fmt!r}")
        order = np.arange(int(np.prod(t.shape))).reshape(t.shape).transpose(axes).ravel()
        self._node(call, call.name, Flatten(dtype=self.dtype), call.inputs, call.output,
                   None if np.array_equal(order, np.arange(order.size)) else order)

    def _relu(self, call: Call, ins: list[Tensor]) -> None:
        cfg = call.config
        if cfg.get("max_value") is not None or cfg.get("negative_slope", 0) != 0 or cfg.get("threshold", 0) != 0:
            raise self.refuse(call, f"only the plain ReLU is supported; got max_value={cfg.get('max_value')!r}, "
                                    f"negative_slope={cfg.get('negative_slope')!r}, threshold={cfg.get('threshold')!r}")
        self._node(call, call.name, ReLU(dtype=self.dtype), call.inputs, call.output, ins[0].order,
                   nonnegative=True)

    def _activation_layer(self, call: Call, ins: list[Tensor]) -> None:
        self._activation(call, call.config.get("activation"), call.inputs[0])

    def _softmax(self, call: Call, ins: list[Tensor]) -> None:
        self._final_softmax(call, call.inputs[0])

    def _channel_axis(self, call: Call, t: Tensor, key: str, default: Any) -> None:
        axis = call.config.get(key, default)
        if isinstance(axis, list) and len(axis) == 1:
            axis = axis[0]
        rank = len(t.shape) + 1  # with the batch axis
        allowed = (-1, rank - 1) if rank == 2 or self.channels_last else (1, 1 - rank)
        if axis not in allowed:
            raise self.refuse(call, f"{key} must be the channel axis {allowed[0]} (or {allowed[1]}); got {axis!r}")

    def _batch_norm(self, call: Call, ins: list[Tensor]) -> None:
        t = ins[0]
        if len(t.shape) not in (1, 3):
            raise self.refuse(call, f"expects (N, F) or an image; got a tensor of shape {self._keras_shape(t.shape)}")
        self._channel_axis(call, t, "axis", -1)
        center, scale = self._flag(call, "center", True), self._flag(call, "scale", True)
        eps = call.config.get("epsilon", 1e-3)
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
            raise self.refuse(call, f"epsilon must be a number >= 0; got {eps!r}")
        c = t.shape[0]
        shapes: dict[str, tuple[int, ...]] = {**({"gamma": (c,)} if scale else {}),
                                              **({"beta": (c,)} if center else {}),
                                              "moving_mean": (c,), "moving_variance": (c,)}
        v = self.weights.arrays(call.name, call.cls, shapes)
        params = [v.get("gamma", np.ones(c)), v.get("beta", np.zeros(c)), v["moving_mean"], v["moving_variance"]]
        if t.order is not None:  # per-feature parameters of a flattened image: into lrp_ref's order
            moved = [np.empty_like(p) for p in params]
            for p, q in zip(params, moved):
                q[t.order] = p
            params = moved
        kind = BatchNorm1d if len(t.shape) == 1 else BatchNorm2d
        layer = kind(params[0], params[1], params[2], params[3], eps=float(eps), dtype=self.dtype)
        self._node(call, call.name, layer, call.inputs, call.output, t.order)

    def _add(self, call: Call, ins: list[Tensor]) -> None:
        if len(ins) < 2:
            raise self.refuse(call, f"expected two or more input tensors; got {len(ins)}")
        orders = [t.order for t in ins]
        first = orders[0]
        if any(o is not first and (o is None or first is None or not np.array_equal(o, first)) for o in orders):
            raise self.refuse(call, "adds flat tensors whose features come in different orders (flattened images "
                                    "of different shapes); not supported")
        self._node(call, call.name, Add(len(ins), dtype=self.dtype), call.inputs, call.output, orders[0])

    def _concatenate(self, call: Call, ins: list[Tensor]) -> None:
        if len(ins) < 2:
            raise self.refuse(call, f"expected two or more input tensors; got {len(ins)}")
        if len({len(t.shape) for t in ins}) != 1:
            raise self.refuse(call, "concatenates tensors of different ranks")
        self._channel_axis(call, ins[0], "axis", -1)
        order = None
        if any(t.order is not None for t in ins):
            parts, offset = [], 0
            for t in ins:
                n = t.shape[0]
                parts.append((np.arange(n) if t.order is None else t.order) + offset)
                offset += n
            order = np.concatenate(parts)
        self._node(call, call.name, Concat(len(ins), dtype=self.dtype), call.inputs, call.output, order)
