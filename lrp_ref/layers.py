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

Constructors refuse what they cannot compute with, naming the parameter:
empty or non-real (complex, bool, string) weights, bools or floats for sizes,
and sizes beyond fixed limits: stride, padding and dilation at most
:data:`MAX_EXTENT` (2**16), a pooling window's side at most :data:`MAX_KERNEL`
(2**12).  Output sizes are computed in Python ints, and a layer refuses
(:class:`~lrp_ref.errors.ShapeError`) an input for which one sample's output,
or its padded input, would exceed :data:`MAX_ELEMENTS` (2**31) elements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import DTypeLike, NDArray

from . import _windows
from ._checks import MAX_ELEMENTS, MAX_EXTENT, MAX_KERNEL, as_float_array, check_dtype, check_int, element_count, pair
from .errors import LayerParameterError, ShapeError

__all__ = [
    "MAX_ELEMENTS",
    "MAX_EXTENT",
    "MAX_KERNEL",
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
Block = tuple[int, int, int, int]


def _pair_text(p: Any) -> str:
    """``2`` for (2, 2), ``(2, 1)`` otherwise: short layer descriptions."""
    return str(p[0]) if p[0] == p[1] else f"({p[0]}, {p[1]})"


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
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "iuf":
            found = f"dtype {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ShapeError(f"{self.describe()} expects a real (int or float) array; got {found}")
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
        w = _frozen(as_float_array(self.weight, "Dense weight (out, in)", dt, ndim=2, nonempty=True))
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
        w = _frozen(as_float_array(self.weight, "Conv2d weight (out, in/groups, kh, kw)", dt, ndim=4, nonempty=True))
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "stride", pair(self.stride, "Conv2d stride", 1))
        object.__setattr__(self, "padding", pair(self.padding, "Conv2d padding", 0))
        object.__setattr__(self, "dilation", pair(self.dilation, "Conv2d dilation", 1))
        groups = check_int(self.groups, "Conv2d groups", 1)
        if w.shape[0] % groups:
            raise LayerParameterError(
                f"Conv2d groups must be a positive int dividing out_channels={w.shape[0]}; got {groups}"
            )
        object.__setattr__(self, "groups", groups)
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
        _check_sizes(self, input_shape, self.padding, (self.out_channels, *sizes))  # type: ignore[arg-type]
        return (self.out_channels, sizes[0], sizes[1])

    def _weight_matrix(self) -> Array:
        """The weight as one matrix per group: (G, out/G, in/G * kh * kw), a view.

        Its columns are ordered ``(c, i, j)``, like the rows of
        :func:`~lrp_ref._windows.im2col`'s window matrix.
        """
        g = self.groups
        return self.weight.reshape(g, self.out_channels // g, -1)

    def _blocks(self, n: int, out_rows: int, out_cols: int, dtype: np.dtype[Any]) -> tuple[list[Block], Array]:
        """Blocks of (samples, output rows) fitting in ``_windows.BLOCK_BYTES``, and a buffer for them."""
        k = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]  # rows of one group's window matrix
        row_bytes = k * out_cols * dtype.itemsize
        blocks = list(_windows.blocks(n, out_rows, row_bytes))
        return blocks, np.empty(_windows.block_size(n, out_rows, row_bytes) * k * out_cols, dtype)

    def linear(self, a: Array) -> Array:
        # The convolution as matrix products (im2col): for a block of samples and
        # output rows, gather the windows into a matrix (C/G * kh * kw, rows * OW)
        # and multiply it by the weight matrix (O/G, C/G * kh * kw) of each group;
        # the product is the output block in NCHW order, written in place.
        self.check_input(a)
        n = a.shape[0]
        _, oh, ow = self.output_shape(tuple(a.shape[1:]))
        g, cg, og = self.groups, self.weight.shape[1], self.out_channels // self.groups
        dtype = np.result_type(a.dtype, self.weight.dtype)
        ap = _windows.pad(a, self.padding)  # type: ignore[arg-type]
        w = self._weight_matrix()
        out = np.empty((n, self.out_channels, oh, ow), dtype)
        out_rows = out.reshape(n, g, og, oh * ow)  # a view: out is contiguous
        blocks, buffer = self._blocks(n, oh, ow, ap.dtype)
        for n0, n1, y0, y1 in blocks:
            for gi in range(g):
                cols = _windows.im2col(ap[n0:n1, gi * cg : (gi + 1) * cg], self.kernel_size, self.stride,  # type: ignore[arg-type]
                                       self.dilation, (y0, y1), ow, buffer)  # type: ignore[arg-type]
                np.matmul(w[gi], cols, out=out_rows[n0:n1, gi, :, y0 * ow : y1 * ow])
        return out

    def vjp(self, s: Array, input_shape: Shape) -> Array:
        # The adjoint, block by block: the transposed weight matrix times the
        # output block gives W^T s for every window (C/G * kh * kw, rows * OW);
        # col2im adds each window's values back onto the pixels it came from.
        self.check_output(s, input_shape)
        n, _, oh, ow = s.shape
        g, cg, og = self.groups, self.weight.shape[1], self.out_channels // self.groups
        dtype = np.result_type(s.dtype, self.weight.dtype)
        ph, pw = self.padding  # type: ignore[misc]
        grad = np.zeros((n, self.in_channels, input_shape[1] + 2 * ph, input_shape[2] + 2 * pw), dtype)
        w_t = self._weight_matrix().transpose(0, 2, 1)  # (G, C/G * kh * kw, O/G), a view
        s_rows = s.reshape(n, g, og, oh * ow)
        k = w_t.shape[1]
        blocks, buffer = self._blocks(n, oh, ow, dtype)
        for n0, n1, y0, y1 in blocks:
            for gi in range(g):
                cols = buffer[: (n1 - n0) * k * (y1 - y0) * ow].reshape(n1 - n0, k, (y1 - y0) * ow)
                np.matmul(w_t[gi], s_rows[n0:n1, gi, :, y0 * ow : y1 * ow], out=cols)
                _windows.col2im(cols, grad[n0:n1, gi * cg : (gi + 1) * cg], self.kernel_size, self.stride,  # type: ignore[arg-type]
                                self.dilation, (y0, y1), ow)  # type: ignore[arg-type]
        return _windows.crop(grad, self.padding)  # type: ignore[arg-type]

    def with_weight(self, weight: Array) -> Conv2d:
        return replace(self, weight=self._checked_weight(weight), bias=None)

    def bias_term(self) -> Array:
        b = self.bias if self.bias is not None else np.zeros(self.out_channels, self.dtype)
        return b[:, None, None]

    def describe(self) -> str:
        extra = []
        if self.stride != (1, 1):
            extra.append(f"stride={_pair_text(self.stride)}")
        if self.padding != (0, 0):
            extra.append(f"padding={_pair_text(self.padding)}")
        if self.dilation != (1, 1):
            extra.append(f"dilation={_pair_text(self.dilation)}")
        if self.groups != 1:
            extra.append(f"groups={self.groups}")
        if self.bias is not None:
            extra.append("bias")
        kh, kw = self.kernel_size
        tail = ", " + ", ".join(extra) if extra else ""
        return f"Conv2d({self.in_channels} -> {self.out_channels}, {kh}x{kw}{tail})"


# ----------------------------------------------------------------------------- pooling


def _check_sizes(layer: Layer, input_shape: Shape, padding: tuple[int, int], output_shape: Shape) -> None:
    """ShapeError if one sample's padded input or output would exceed :data:`MAX_ELEMENTS` elements."""
    c, h, w = (int(n) for n in input_shape)
    ph, pw = padding
    if (ph, pw) != (0, 0):
        element_count((c, h + 2 * ph, w + 2 * pw), f"{layer.describe()}: the input padded by padding={padding}")
    element_count(output_shape, f"{layer.describe()}: the output for input {tuple(int(n) for n in input_shape)}")


def _pool_output_shape(layer: Layer, input_shape: Shape, kernel: tuple[int, int], stride: tuple[int, int],
                       padding: tuple[int, int]) -> Shape:
    if len(input_shape) != 3:
        raise ShapeError(
            f"{layer.describe()} expects input of shape (N, C, H, W); got (N, {', '.join(map(str, input_shape))})"
        )
    sizes = [_windows.output_size(n, k, s, p, 1) for n, k, s, p in zip(input_shape[1:], kernel, stride, padding)]
    if min(sizes) < 1:
        raise ShapeError(f"{layer.describe()} cannot pool an image of size {tuple(input_shape[1:])}")
    _check_sizes(layer, input_shape, padding, (input_shape[0], *sizes))
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
        k = pair(self.kernel_size, "AvgPool2d kernel_size", 1, MAX_KERNEL)
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
        # a weighted sum of the kh * kw shifted slices of the image (see _windows.offsets)
        self.check_input(a)
        _, oh, ow = self.output_shape(tuple(a.shape[1:]))
        out = np.zeros((a.shape[0], a.shape[1], oh, ow), np.result_type(a.dtype, self.weight.dtype))
        for i, j, rows, cols in _windows.offsets(self.kernel_size, self.stride, (1, 1), (0, oh), ow):  # type: ignore[arg-type]
            out += self.weight[i, j] * a[:, :, rows, cols]
        return out

    def vjp(self, s: Array, input_shape: Shape) -> Array:
        # the adjoint: each output value, times the window weight, goes back to its kh * kw pixels
        self.check_output(s, input_shape)
        _, _, oh, ow = s.shape
        grad = np.zeros((s.shape[0], *input_shape), np.result_type(s.dtype, self.weight.dtype))
        for i, j, rows, cols in _windows.offsets(self.kernel_size, self.stride, (1, 1), (0, oh), ow):  # type: ignore[arg-type]
            grad[:, :, rows, cols] += self.weight[i, j] * s
        return grad

    def with_weight(self, weight: Array) -> AvgPool2d:
        return replace(self, window_weight=self._checked_weight(weight))

    def bias_term(self) -> Array:
        return np.zeros((1, 1, 1), self.dtype)

    def describe(self) -> str:
        kh, kw = self.kernel_size  # type: ignore[misc]
        uniform = bool(np.all(self.weight == self.weight.flat[0])) and math.isclose(
            float(self.weight.flat[0]) * kh * kw, 1.0
        )
        tail = "" if uniform else ", modified weights"
        stride = "" if self.stride == self.kernel_size else f", stride={_pair_text(self.stride)}"
        return f"AvgPool2d({kh}x{kw}{stride}{tail})"


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
        k = pair(self.kernel_size, "MaxPool2d kernel_size", 1, MAX_KERNEL)
        object.__setattr__(self, "kernel_size", k)
        object.__setattr__(self, "stride", pair(self.stride if self.stride is not None else k, "MaxPool2d stride", 1))
        p = pair(self.padding, "MaxPool2d padding", 0)
        if p[0] > k[0] // 2 or p[1] > k[1] // 2:
            raise LayerParameterError(f"MaxPool2d padding must be at most half the kernel {k}; got {p}")
        object.__setattr__(self, "padding", p)

    def output_shape(self, input_shape: Shape) -> Shape:
        return _pool_output_shape(self, input_shape, self.kernel_size, self.stride, self.padding)  # type: ignore[arg-type]

    def _shifted(self, a: Array) -> tuple[Array, list[tuple[slice, slice]], tuple[int, int]]:
        """The -inf padded input, the slices of its kh * kw window offsets, and the output size."""
        _, oh, ow = self.output_shape(tuple(a.shape[1:]))
        ap = _windows.pad(a, self.padding, value=-np.inf)  # type: ignore[arg-type]
        slices = [(rows, cols) for _, _, rows, cols in
                  _windows.offsets(self.kernel_size, self.stride, (1, 1), (0, oh), ow)]  # type: ignore[arg-type]
        return ap, slices, (oh, ow)

    @staticmethod
    def _max(ap: Array, slices: list[tuple[slice, slice]]) -> Array:
        # the element-wise maximum of the kh * kw shifted slices (see _windows.offsets)
        out = ap[:, :, slices[0][0], slices[0][1]].copy()
        for rows, cols in slices[1:]:
            np.maximum(out, ap[:, :, rows, cols], out=out)
        return out

    def forward(self, a: Array) -> Array:
        self.check_input(a)
        ap, slices, _ = self._shifted(a)
        return self._max(ap, slices)

    def route(self, a: Array, r: Array, ties: Ties = "split") -> Array:
        """Send each output value ``r`` to the input that won its window.

        ``ties="split"`` shares ``r`` evenly among all inputs equal to the
        window's maximum; ``ties="first"`` gives it all to the first arg-max in
        row-major order (how PyTorch routes gradients).  With ``r`` the upper
        gradient this is the gradient of max pooling; with ``r`` the upper
        relevance it is the winner-takes-all rule.  Overlapping windows add up.
        """
        self.check_input(a)
        ap, slices, (oh, ow) = self._shifted(a)
        if r.shape != (a.shape[0], a.shape[1], oh, ow):
            raise ShapeError(f"{self.describe()}.route expects r of shape {(a.shape[0], a.shape[1], oh, ow)}; "
                             f"got {r.shape}")
        if not isinstance(ties, str) or ties not in ("split", "first"):
            raise LayerParameterError(f"ties must be 'split' or 'first'; got {ties!r}")
        # where does each window's maximum sit?  one boolean map (N, C, OH, OW) per kernel offset
        peak = self._max(ap, slices)
        winners = [ap[:, :, rows, cols] == peak for rows, cols in slices]
        if ties == "split":
            # each of the c tied winners of a window takes r / c
            count = winners[0].astype(a.dtype)
            for won in winners[1:]:
                count += won
            share = r / count
        else:
            # only the first winner in row-major order (i, then j) takes r
            taken = np.zeros_like(winners[0])
            for won in winners:
                won &= ~taken
                taken |= won
            share = r
        # the adjoint of the offsets: each winner's share goes back onto its pixel
        routed = np.zeros(ap.shape, a.dtype)
        kh, kw = self.kernel_size  # type: ignore[misc]
        sh, sw = self.stride  # type: ignore[misc]
        for won, (rows, cols) in zip(winners, slices):
            if sh >= kh and sw >= kw:  # windows do not overlap: every pixel is written at most once
                np.multiply(won, share, out=routed[:, :, rows, cols], casting="same_kind")
            else:  # overlapping windows: a pixel collects the shares of every window it wins
                routed[:, :, rows, cols] += won * share
        return _windows.crop(routed, self.padding)  # type: ignore[arg-type]

    def describe(self) -> str:
        kh, kw = self.kernel_size  # type: ignore[misc]
        stride = "" if self.stride == self.kernel_size else f", stride={_pair_text(self.stride)}"
        pad_txt = f", padding={_pair_text(self.padding)}" if self.padding != (0, 0) else ""
        return f"MaxPool2d({kh}x{kw}{stride}{pad_txt})"


# ----------------------------------------------------------------------------- element-wise and reshaping


@dataclass(frozen=True, eq=False, repr=False)
class ReLU(Layer):
    """Rectified linear unit ``max(a, 0)``, element-wise."""

    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", check_dtype(self.dtype))

    def output_shape(self, input_shape: Shape) -> Shape:
        element_count(input_shape, f"{self.describe()}: the input")
        return tuple(input_shape)

    def forward(self, a: Array) -> Array:
        self.check_input(a)
        return np.maximum(a, 0)


@dataclass(frozen=True, eq=False, repr=False)
class Flatten(Layer):
    """Reshape (N, d1, d2, ...) to (N, d1 * d2 * ...), in C order as ``torch.nn.Flatten``."""

    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", check_dtype(self.dtype))

    def output_shape(self, input_shape: Shape) -> Shape:
        return (element_count(input_shape, f"{self.describe()}: the input"),)

    def forward(self, a: Array) -> Array:
        self.check_input(a)
        return a.reshape(a.shape[0], -1)
