"""Layers: the mathematics of each layer, and nothing about LRP.

Activations are batch-first; images are NCHW; parameters use PyTorch's layout
(Dense weight (out, in), Conv2d weight (out, in/groups, kh, kw)).

A *linear* layer (:class:`Dense`, :class:`Conv2d`, :class:`AvgPool2d`) computes
``z = linear(a) + bias`` and exposes three things the rules need:

* ``linear(a)``   the bias-free linear map ``a -> W a``;
* ``vjp(s, input_shape)`` its exact adjoint ``s -> W^T s`` (vector-Jacobian product);
* ``with_weight(w)`` a copy whose weight is replaced (the tutorial's
  ``newlayer(layer, rho)``), used for the modified forward passes of the rules;

plus ``bias_term()``, the bias in a shape that broadcasts against one sample's
output.  Every rule in :mod:`lrp_ref.rules` is written once against these
methods.  Layers hold only their parameters: they are frozen, their arrays
read-only, and activations live in the list returned by the forward sweep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import DTypeLike, NDArray

from . import _windows
from ._checks import as_float_array, check_dtype, pair
from .errors import LayerParameterError, ShapeError

__all__ = [
    "AvgPool2d",
    "Conv2d",
    "Dense",
    "Flatten",
    "Layer",
    "LinearLayer",
    "MaxPool2d",
    "ReLU",
]

Array = NDArray[Any]
Shape = tuple[int, ...]
Ties = Literal["split", "first"]


def _frozen(a: Array) -> Array:
    a.setflags(write=False)
    return a


class Layer:
    """Base class: a map from a batch of inputs to a batch of outputs."""

    #: dtype of the parameters; computation follows it.
    dtype: np.dtype[Any]

    def output_shape(self, input_shape: Shape) -> Shape:
        """Shape of one sample's output for one sample's ``input_shape`` (no batch axis).

        Raises :class:`ShapeError` if the layer cannot take that input.
        """
        raise NotImplementedError

    def forward(self, a: Array) -> Array:
        """Apply the layer to a batch ``a`` of shape (N, *input_shape)."""
        raise NotImplementedError

    def astype(self, dtype: DTypeLike) -> Layer:
        """A copy whose parameters (and hence computation) use ``dtype``."""
        return replace(self, dtype=check_dtype(dtype))  # type: ignore[type-var]

    def n_parameters(self) -> int:
        """Number of scalar parameters (weights and biases)."""
        return 0

    def check_input(self, a: Array) -> None:
        """Raise :class:`ShapeError` unless ``a`` is a batch this layer accepts."""
        if a.ndim < 1:
            raise ShapeError(f"{self.describe()} expects a batch (N, ...); got a scalar")
        self.output_shape(tuple(a.shape[1:]))

    def describe(self) -> str:
        """One-line description, e.g. ``Dense(784 -> 300, bias)``."""
        return type(self).__name__ + "()"

    def __repr__(self) -> str:
        return self.describe()


class LinearLayer(Layer):
    """A layer ``z = W a + b``: the rules of :mod:`lrp_ref.rules` apply to it."""

    weight: Array
    bias: Array | None

    def linear(self, a: Array) -> Array:
        """Bias-free linear map ``W a`` on a batch."""
        raise NotImplementedError

    def vjp(self, s: Array, input_shape: Shape) -> Array:
        """Adjoint of :meth:`linear`: ``W^T s`` for a batch ``s`` of output shape.

        Defined by ``<linear(a), s> == <a, vjp(s, a.shape[1:])>`` for every ``a``
        and ``s``.  ``input_shape`` is one sample's input shape: a strided
        convolution cannot recover it from its output shape.
        """
        raise NotImplementedError

    def with_weight(self, weight: Array) -> LinearLayer:
        """A copy of this layer with ``weight`` replaced (same shape)."""
        raise NotImplementedError

    def bias_term(self) -> Array:
        """Bias broadcastable against one sample's output; zeros if the layer has none."""
        raise NotImplementedError

    def forward(self, a: Array) -> Array:
        return self.linear(a) + self.bias_term()

    def check_output(self, s: Array, input_shape: Shape) -> None:
        """Raise :class:`ShapeError` unless ``s`` is a batch of this layer's outputs for ``input_shape``."""
        expected = self.output_shape(tuple(input_shape))
        if s.ndim < 1 or tuple(s.shape[1:]) != expected:
            raise ShapeError(
                f"{self.describe()}: the adjoint expects (N, {', '.join(map(str, expected))}) for inputs "
                f"{tuple(input_shape)}; got {s.shape}"
            )

    def n_parameters(self) -> int:
        return int(self.weight.size + (0 if self.bias is None else self.bias.size))

    def _checked_weight(self, weight: Array) -> Array:
        w = as_float_array(weight, f"{type(self).__name__} weight", self.dtype)
        if w.shape != self.weight.shape:
            raise ShapeError(
                f"{type(self).__name__}.with_weight expects shape {self.weight.shape}; got {w.shape}"
            )
        return w


# ----------------------------------------------------------------------------- Dense


@dataclass(frozen=True, eq=False, repr=False)
class Dense(LinearLayer):
    """Fully connected layer: ``z_k = sum_j a_j w_kj + b_k``.

    Parameters
    ----------
    weight : array (out_features, in_features)
        PyTorch layout.
    bias : array (out_features,) or None
    dtype : float64 (default) or float32
    """

    weight: Array
    bias: Array | None = None
    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def __post_init__(self) -> None:
        dt = check_dtype(self.dtype)
        object.__setattr__(self, "dtype", dt)
        w = _frozen(as_float_array(self.weight, "Dense weight (out, in)", dt, ndim=2))
        object.__setattr__(self, "weight", w)
        if self.bias is not None:
            b = _frozen(as_float_array(self.bias, "Dense bias (out,)", dt, ndim=1))
            if b.shape != (w.shape[0],):
                raise ShapeError(f"Dense bias must have shape ({w.shape[0]},) to match weight {w.shape}; got {b.shape}")
            object.__setattr__(self, "bias", b)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def output_shape(self, input_shape: Shape) -> Shape:
        if tuple(input_shape) != (self.in_features,):
            raise ShapeError(
                f"{self.describe()} expects input of shape (N, {self.in_features}); "
                f"got (N, {', '.join(map(str, input_shape))})"
            )
        return (self.out_features,)

    def linear(self, a: Array) -> Array:
        self.check_input(a)
        return a @ self.weight.T

    def vjp(self, s: Array, input_shape: Shape) -> Array:
        self.check_output(s, input_shape)
        return s @ self.weight

    def with_weight(self, weight: Array) -> Dense:
        return Dense(self._checked_weight(weight), None, dtype=self.dtype)

    def bias_term(self) -> Array:
        return self.bias if self.bias is not None else np.zeros(self.out_features, self.dtype)

    def astype(self, dtype: DTypeLike) -> Dense:
        return Dense(self.weight, self.bias, dtype=check_dtype(dtype))

    def describe(self) -> str:
        return f"Dense({self.in_features} -> {self.out_features}{', bias' if self.bias is not None else ''})"


# ----------------------------------------------------------------------------- Conv2d


@dataclass(frozen=True, eq=False, repr=False)
class Conv2d(LinearLayer):
    """2-D cross-correlation, exactly as ``torch.nn.Conv2d`` computes it.

    .. math:: z_{o,y,x} = b_o + \\sum_{c,i,j} w_{o,c,i,j}\\, a_{g(o) c,\\; y s_h + i d_h - p_h,\\; x s_w + j d_w - p_w}

    with zero padding outside the image.

    Parameters
    ----------
    weight : array (out_channels, in_channels / groups, kh, kw)
    bias : array (out_channels,) or None
    stride, padding, dilation : int or (int, int)
    groups : int, dividing both channel counts
    dtype : float64 (default) or float32
    """

    weight: Array
    bias: Array | None = None
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def __post_init__(self) -> None:
        dt = check_dtype(self.dtype)
        object.__setattr__(self, "dtype", dt)
        w = _frozen(as_float_array(self.weight, "Conv2d weight (out, in/groups, kh, kw)", dt, ndim=4))
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "stride", pair(self.stride, "Conv2d stride", 1))
        object.__setattr__(self, "padding", pair(self.padding, "Conv2d padding", 0))
        object.__setattr__(self, "dilation", pair(self.dilation, "Conv2d dilation", 1))
        if not isinstance(self.groups, (int, np.integer)) or self.groups < 1 or w.shape[0] % self.groups:
            raise LayerParameterError(
                f"Conv2d groups must be a positive int dividing out_channels={w.shape[0]}; got {self.groups!r}"
            )
        object.__setattr__(self, "groups", int(self.groups))
        if self.bias is not None:
            b = _frozen(as_float_array(self.bias, "Conv2d bias (out,)", dt, ndim=1))
            if b.shape != (w.shape[0],):
                raise ShapeError(
                    f"Conv2d bias must have shape ({w.shape[0]},) to match weight {w.shape}; got {b.shape}"
                )
            object.__setattr__(self, "bias", b)

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1] * self.groups)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def kernel_size(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3 or input_shape[0] != self.in_channels:
            raise ShapeError(
                f"{self.describe()} expects input of shape (N, {self.in_channels}, H, W); "
                f"got (N, {', '.join(map(str, input_shape))})"
            )
        sizes = [
            _windows.output_size(n, k, s, p, d)
            for n, k, s, p, d in zip(input_shape[1:], self.kernel_size, self.stride, self.padding, self.dilation)  # type: ignore[arg-type]
        ]
        if min(sizes) < 1:
            raise ShapeError(
                f"{self.describe()} cannot slide over an image of size {tuple(input_shape[1:])}: "
                f"output would be {tuple(sizes)}"
            )
        return (self.out_channels, sizes[0], sizes[1])

    def _grouped_weight(self) -> Array:
        g = self.groups
        return self.weight.reshape(g, self.out_channels // g, *self.weight.shape[1:])

    def linear(self, a: Array) -> Array:
        self.check_input(a)
        ap = _windows.pad(a, self.padding)  # type: ignore[arg-type]
        cols = _windows.windows(ap, self.kernel_size, self.stride, self.dilation)  # type: ignore[arg-type]
        n, _, oh, ow = cols.shape[:4]
        g, cg = self.groups, self.weight.shape[1]
        cols = cols.reshape(n, g, cg, oh, ow, *self.kernel_size)
        w = self._grouped_weight()
        # one BLAS matmul per group: contract (channel, ki, kj) of windows and kernels
        out = np.stack([np.tensordot(cols[:, gi], w[gi], axes=([1, 4, 5], [1, 2, 3])) for gi in range(g)], axis=1)
        # out: (N, G, OH, OW, O/G) -> (N, O, OH, OW)
        return np.ascontiguousarray(out.transpose(0, 1, 4, 2, 3).reshape(n, self.out_channels, oh, ow))

    def vjp(self, s: Array, input_shape: Shape) -> Array:
        self.check_output(s, input_shape)
        n, _, oh, ow = s.shape
        g = self.groups
        cg, (kh, kw) = self.weight.shape[1], self.kernel_size
        sg = s.reshape(n, g, self.out_channels // g, oh, ow)
        w = self._grouped_weight()
        # W^T s for every window: (N, OH, OW, C/G, kh, kw) per group
        cols = np.stack([np.tensordot(sg[:, gi], w[gi], axes=([1], [0])) for gi in range(g)], axis=1)
        cols = cols.transpose(0, 1, 4, 2, 3, 5, 6).reshape(n, g * cg, oh, ow, kh, kw)
        ph, pw = self.padding  # type: ignore[misc]
        padded = (n, g * cg, input_shape[1] + 2 * ph, input_shape[2] + 2 * pw)
        return _windows.crop(_windows.fold(cols, padded, self.stride, self.dilation), self.padding)  # type: ignore[arg-type]

    def with_weight(self, weight: Array) -> Conv2d:
        return replace(self, weight=self._checked_weight(weight), bias=None)

    def bias_term(self) -> Array:
        b = self.bias if self.bias is not None else np.zeros(self.out_channels, self.dtype)
        return b[:, None, None]

    def astype(self, dtype: DTypeLike) -> Conv2d:
        return replace(self, dtype=check_dtype(dtype))

    def describe(self) -> str:
        extra = []
        if self.stride != (1, 1):
            extra.append(f"stride={self.stride}")
        if self.padding != (0, 0):
            extra.append(f"padding={self.padding}")
        if self.dilation != (1, 1):
            extra.append(f"dilation={self.dilation}")
        if self.groups != 1:
            extra.append(f"groups={self.groups}")
        if self.bias is not None:
            extra.append("bias")
        kh, kw = self.kernel_size
        tail = ", " + ", ".join(extra) if extra else ""
        return f"Conv2d({self.in_channels} -> {self.out_channels}, {kh}x{kw}{tail})"


# ----------------------------------------------------------------------------- pooling


def _pool_output_shape(layer: Layer, input_shape: Shape, kernel: tuple[int, int], stride: tuple[int, int],
                       padding: tuple[int, int]) -> Shape:
    if len(input_shape) != 3:
        raise ShapeError(
            f"{layer.describe()} expects input of shape (N, C, H, W); got (N, {', '.join(map(str, input_shape))})"
        )
    sizes = [_windows.output_size(n, k, s, p, 1) for n, k, s, p in zip(input_shape[1:], kernel, stride, padding)]
    if min(sizes) < 1:
        raise ShapeError(f"{layer.describe()} cannot pool an image of size {tuple(input_shape[1:])}")
    return (input_shape[0], sizes[0], sizes[1])


@dataclass(frozen=True, eq=False, repr=False)
class AvgPool2d(LinearLayer):
    """Average pooling, a linear layer: ``z_{c,y,x} = sum_{i,j} w_{ij} a_{c, y s_h + i, x s_w + j}``.

    The window weights ``w_ij`` are ``1 / (kh kw)`` and shared by all channels;
    rules that modify weights (gamma, flat, w-square) act on them, so average
    pooling takes rules like any linear layer.  No bias, no padding.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), default ``kernel_size``
    window_weight : array (kh, kw) or None
        The shared window weights; ``None`` means the average ``1 / (kh kw)``.
        Rules set it through :meth:`with_weight`; users rarely need it.
    dtype : float64 (default) or float32
    """

    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    window_weight: Array | None = None
    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def __post_init__(self) -> None:
        dt = check_dtype(self.dtype)
        object.__setattr__(self, "dtype", dt)
        k = pair(self.kernel_size, "AvgPool2d kernel_size", 1)
        object.__setattr__(self, "kernel_size", k)
        object.__setattr__(self, "stride", pair(self.stride if self.stride is not None else k, "AvgPool2d stride", 1))
        ww = np.full(k, 1.0 / (k[0] * k[1])) if self.window_weight is None else self.window_weight
        w = _frozen(as_float_array(ww, "AvgPool2d window_weight (kh, kw)", dt, ndim=2))
        if w.shape != k:
            raise ShapeError(f"AvgPool2d window_weight must have shape {k}; got {w.shape}")
        object.__setattr__(self, "window_weight", w)

    @property
    def weight(self) -> Array:  # type: ignore[override]
        """The shared window weights (kh, kw)."""
        assert self.window_weight is not None
        return self.window_weight

    @property
    def bias(self) -> None:  # type: ignore[override]
        return None

    def n_parameters(self) -> int:
        return 0

    def output_shape(self, input_shape: Shape) -> Shape:
        return _pool_output_shape(self, input_shape, self.kernel_size, self.stride, (0, 0))  # type: ignore[arg-type]

    def linear(self, a: Array) -> Array:
        self.check_input(a)
        cols = _windows.windows(a, self.kernel_size, self.stride, (1, 1))  # type: ignore[arg-type]
        return np.tensordot(cols, self.weight, axes=([4, 5], [0, 1]))

    def vjp(self, s: Array, input_shape: Shape) -> Array:
        self.check_output(s, input_shape)
        cols = s[:, :, :, :, None, None] * self.weight
        return _windows.fold(cols, (s.shape[0], *input_shape), self.stride, (1, 1))  # type: ignore[arg-type]

    def with_weight(self, weight: Array) -> AvgPool2d:
        return replace(self, window_weight=self._checked_weight(weight))

    def bias_term(self) -> Array:
        return np.zeros((1, 1, 1), self.dtype)

    def astype(self, dtype: DTypeLike) -> AvgPool2d:
        return replace(self, dtype=check_dtype(dtype))

    def describe(self) -> str:
        kh, kw = self.kernel_size  # type: ignore[misc]
        uniform = bool(np.all(self.weight == self.weight.flat[0])) and math.isclose(
            float(self.weight.flat[0]) * kh * kw, 1.0
        )
        tail = "" if uniform else ", modified weights"
        return f"AvgPool2d({kh}x{kw}, stride={self.stride}{tail})"


@dataclass(frozen=True, eq=False, repr=False)
class MaxPool2d(Layer):
    """Max pooling: ``z_{c,y,x} = max_{i,j} a_{c, y s_h + i - p_h, x s_w + j - p_w}`` (padding is -inf).

    Its relevance is routed by :meth:`route`: winner takes all.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), default ``kernel_size``
    padding : int or (int, int), at most half the kernel (as in PyTorch)
    """

    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0
    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        k = pair(self.kernel_size, "MaxPool2d kernel_size", 1)
        object.__setattr__(self, "kernel_size", k)
        object.__setattr__(self, "stride", pair(self.stride if self.stride is not None else k, "MaxPool2d stride", 1))
        p = pair(self.padding, "MaxPool2d padding", 0)
        if p[0] > k[0] // 2 or p[1] > k[1] // 2:
            raise LayerParameterError(f"MaxPool2d padding must be at most half the kernel {k}; got {p}")
        object.__setattr__(self, "padding", p)

    def output_shape(self, input_shape: Shape) -> Shape:
        return _pool_output_shape(self, input_shape, self.kernel_size, self.stride, self.padding)  # type: ignore[arg-type]

    def _windows(self, a: Array) -> Array:
        ap = _windows.pad(a, self.padding, value=-np.inf)  # type: ignore[arg-type]
        return _windows.windows(ap, self.kernel_size, self.stride, (1, 1))  # type: ignore[arg-type]

    def forward(self, a: Array) -> Array:
        self.check_input(a)
        return self._windows(a).max(axis=(4, 5))

    def route(self, a: Array, r: Array, ties: Ties = "split") -> Array:
        """Send each output value ``r`` to the input that won its window.

        ``ties="split"`` shares ``r`` evenly among all inputs equal to the
        window's maximum; ``ties="first"`` gives it all to the first arg-max in
        row-major order (how PyTorch routes gradients).  With ``r`` the upper
        gradient this is the gradient of max pooling; with ``r`` the upper
        relevance it is the winner-takes-all rule.  Overlapping windows add up.
        """
        self.check_input(a)
        cols = self._windows(a)
        if r.shape != cols.shape[:4]:
            raise ShapeError(f"{self.describe()}.route expects r of shape {cols.shape[:4]}; got {r.shape}")
        n, c, oh, ow, kh, kw = cols.shape
        if ties == "split":
            winners = cols == cols.max(axis=(4, 5), keepdims=True)
            share = winners / winners.sum(axis=(4, 5), keepdims=True)
        elif ties == "first":
            flat = cols.reshape(n, c, oh, ow, kh * kw).argmax(axis=4)
            share = (np.arange(kh * kw) == flat[..., None]).reshape(cols.shape)
        else:
            raise LayerParameterError(f"ties must be 'split' or 'first'; got {ties!r}")
        routed = share * r[:, :, :, :, None, None]
        ph, pw = self.padding  # type: ignore[misc]
        padded = (n, c, a.shape[2] + 2 * ph, a.shape[3] + 2 * pw)
        return _windows.crop(_windows.fold(routed.astype(a.dtype), padded, self.stride, (1, 1)), self.padding)  # type: ignore[arg-type]

    def describe(self) -> str:
        kh, kw = self.kernel_size  # type: ignore[misc]
        pad_txt = f", padding={self.padding}" if self.padding != (0, 0) else ""
        return f"MaxPool2d({kh}x{kw}, stride={self.stride}{pad_txt})"


# ----------------------------------------------------------------------------- element-wise and reshaping


@dataclass(frozen=True, eq=False, repr=False)
class ReLU(Layer):
    """Rectified linear unit ``max(a, 0)``, element-wise."""

    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def forward(self, a: Array) -> Array:
        self.check_input(a)
        return np.maximum(a, 0)


@dataclass(frozen=True, eq=False, repr=False)
class Flatten(Layer):
    """Reshape (N, d1, d2, ...) to (N, d1 * d2 * ...), in C order as ``torch.nn.Flatten``."""

    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape, dtype=np.int64)),)

    def forward(self, a: Array) -> Array:
        self.check_input(a)
        return a.reshape(a.shape[0], -1)
