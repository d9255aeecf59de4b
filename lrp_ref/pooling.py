"""Pooling layers: average pooling (fixed, padded, adaptive, global) as linear layers, and max pooling.

Average pooling is linear, so the rules of :mod:`lrp_ref.rules` apply to it
like to any linear layer (see :mod:`lrp_ref.layers` for the interface);
adaptive and global average pooling, whose weights ``1 / |bin|`` depend on the
input size, show the rules a :class:`BinSum2d` made for that size.  Max
pooling is not linear: its relevance is routed by :meth:`MaxPool2d.route`.
Windows are handled by :mod:`lrp_ref._windows`.  Import these names from
:mod:`lrp_ref.layers` or :mod:`lrp_ref`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from . import _threads, _windows
from ._checks import (
    MAX_ELEMENTS,
    MAX_KERNEL,
    as_float_array,
    check_dtype,
    describe_value,
    element_count,
    pair,
)
from .errors import LayerParameterError, ShapeError
from .layers import (
    Array,
    Layer,
    LinearLayer,
    Shape,
    Ties,
    _check_sizes,
    _frozen,
    _padding_text,
    _pair_text,
    _pool_padding,
)


def _pool_output_shape(layer: Layer, input_shape: Shape, kernel: tuple[int, int], stride: tuple[int, int],
                       padding: _windows.Padding) -> Shape:
    if len(input_shape) != 3:
        raise ShapeError(
            f"{layer.describe()} expects input of shape (N, C, H, W); got (N, {', '.join(map(str, input_shape))})"
        )
    top, bottom, left, right = _windows.sides(padding)
    sizes = [_windows.output_size(n, k, s, p, 1)
             for n, k, s, p in zip(input_shape[1:], kernel, stride, ((top, bottom), (left, right)))]
    if min(sizes) < 1:
        raise ShapeError(f"{layer.describe()} cannot pool an image of size {tuple(input_shape[1:])}")
    _check_sizes(layer, input_shape, padding, (input_shape[0], *sizes))
    return (input_shape[0], sizes[0], sizes[1])


@dataclass(frozen=True, eq=False, repr=False)
class AvgPool2d(LinearLayer):
    """Average pooling, a linear layer: ``z_{c,y,x} = sum_{i,j} w_{ij} a_{c, y s_h + i - p_t, x s_w + j - p_l}``.

    The window weights ``w_ij`` are ``1 / (kh kw)`` and shared by all channels;
    rules that modify weights (gamma, flat, w-square) act on them, so average
    pooling takes rules like any linear layer.  No bias.

    Padding adds zeros around the image (``p_t`` rows on top, ``p_l`` columns
    on the left, and so on).  ``count_include_pad=True`` (PyTorch's default)
    divides every window by ``kh kw``, padded positions included: that is the
    formula above on the zero-padded image.  ``count_include_pad=False``
    (Keras/TensorFlow) averages over the pixels of the window that lie in the
    image only, ``z_{c,y,x} = mean of a over window(y, x) ∩ image``: each
    output then has its own divisor, which depends on the input size, so the
    rules see this layer through :meth:`for_input` (a :class:`BinSum2d` with
    one weight ``1 / count`` per output).  Either way padded positions are
    not inputs: they take no relevance, and the flat rule does not count them.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), default ``kernel_size``
    window_weight : array (kh, kw) or None
        The shared window weights; ``None`` means the average ``1 / (kh kw)``.
        Rules set it through :meth:`with_weight`; users rarely need it.  With
        ``count_include_pad=False`` and padding it must be the average.
    dtype : float64 (default) or float32
    padding : int, (int, int) or (top, bottom, left, right), keyword only
        At most half the kernel on each side (PyTorch's rule; TensorFlow's
        ``'same'`` always fits, see :func:`same_padding`).
    count_include_pad : bool, keyword only, default True
    """

    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    window_weight: Array | None = None
    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))
    padding: int | tuple[int, int] | tuple[int, int, int, int] = field(default=0, kw_only=True)
    count_include_pad: bool = field(default=True, kw_only=True)

    def __post_init__(self) -> None:
        dt = check_dtype(self.dtype)
        object.__setattr__(self, "dtype", dt)
        k = pair(self.kernel_size, "AvgPool2d kernel_size", 1, MAX_KERNEL)
        object.__setattr__(self, "kernel_size", k)
        object.__setattr__(self, "stride", pair(self.stride if self.stride is not None else k, "AvgPool2d stride", 1))
        object.__setattr__(self, "padding", _pool_padding(self.padding, "AvgPool2d padding", k))
        if not isinstance(self.count_include_pad, (bool, np.bool_)):
            raise LayerParameterError(f"AvgPool2d count_include_pad must be True or False; "
                                      f"got {describe_value(self.count_include_pad)}")
        object.__setattr__(self, "count_include_pad", bool(self.count_include_pad))
        average = np.full(k, 1.0 / (k[0] * k[1]))
        ww = average if self.window_weight is None else self.window_weight
        w = _frozen(as_float_array(ww, "AvgPool2d window_weight (kh, kw)", dt, ndim=2))
        if w.shape != k:
            raise ShapeError(f"AvgPool2d window_weight must have shape {k}; got {w.shape}")
        if self._excludes_padding and not np.array_equal(w, average.astype(dt)):
            raise LayerParameterError(
                "AvgPool2d with count_include_pad=False averages the window's pixels inside the image: its "
                "window_weight must be the average 1 / (kh kw); rules modify the weights of for_input(input_shape)"
            )
        object.__setattr__(self, "window_weight", w)

    @property
    def _excludes_padding(self) -> bool:
        """True if the divisor is the count of in-image pixels, and that differs from kh * kw somewhere."""
        return not self.count_include_pad and self.padding != (0, 0)

    @property
    def weight(self) -> Array:  # type: ignore[override]
        """The shared window weights (kh, kw)."""
        assert self.window_weight is not None
        return self.window_weight

    @property
    def bias(self) -> None:  # type: ignore[override]
        return None

    @property
    def padding_sides(self) -> tuple[int, int, int, int]:
        """The padding as ``(top, bottom, left, right)``."""
        return _windows.sides(self.padding)  # type: ignore[arg-type]

    def n_parameters(self) -> int:
        return 0

    def output_shape(self, input_shape: Shape) -> Shape:
        return _pool_output_shape(self, input_shape, self.kernel_size, self.stride, self.padding)  # type: ignore[arg-type]

    def for_input(self, input_shape: Shape) -> LinearLayer:
        """Itself; with ``count_include_pad=False`` and padding, the :class:`BinSum2d` of its windows.

        Window ``(y, x)`` clipped to the image is the bin ``rows [y s_h - p_t,
        y s_h - p_t + kh) ∩ [0, H)`` by the columns likewise, weighted by
        ``1 / (number of its pixels)``.
        """
        if not self._excludes_padding:
            return self
        _, oh, ow = self.output_shape(tuple(input_shape))
        top, _, left, _ = self.padding_sides
        rows = _windows.window_bins(input_shape[1], oh, self.kernel_size[0], self.stride[0], top)  # type: ignore[index]
        cols = _windows.window_bins(input_shape[2], ow, self.kernel_size[1], self.stride[1], left)  # type: ignore[index]
        return BinSum2d.averaging((int(input_shape[1]), int(input_shape[2])), rows, cols, self.dtype)

    def linear(self, a: Array) -> Array:
        # a weighted sum of the kh * kw shifted slices of the zero-padded image (see _windows.offsets)
        self.check_input(a)
        if self._excludes_padding:
            return self.for_input(tuple(a.shape[1:])).linear(a)
        _, oh, ow = self.output_shape(tuple(a.shape[1:]))
        ap = _windows.pad(a, self.padding)  # type: ignore[arg-type]
        out = np.zeros((a.shape[0], a.shape[1], oh, ow), np.result_type(a.dtype, self.weight.dtype))
        for i, j, rows, cols in _windows.offsets(self.kernel_size, self.stride, (1, 1), (0, oh), ow):  # type: ignore[arg-type]
            out += self.weight[i, j] * ap[:, :, rows, cols]
        return out

    def vjp(self, s: Array, input_shape: Shape) -> Array:
        # the adjoint: each output value, times the window weight, goes back to its kh * kw pixels
        self.check_output(s, input_shape)
        if self._excludes_padding:
            return self.for_input(tuple(input_shape)).vjp(s, input_shape)
        _, _, oh, ow = s.shape
        top, bottom, left, right = self.padding_sides
        grad = np.zeros((s.shape[0], input_shape[0], input_shape[1] + top + bottom, input_shape[2] + left + right),
                        np.result_type(s.dtype, self.weight.dtype))
        for i, j, rows, cols in _windows.offsets(self.kernel_size, self.stride, (1, 1), (0, oh), ow):  # type: ignore[arg-type]
            grad[:, :, rows, cols] += self.weight[i, j] * s
        return _windows.crop(grad, self.padding)  # type: ignore[arg-type]

    def with_weight(self, weight: Array) -> AvgPool2d:
        if self._excludes_padding:
            raise LayerParameterError(
                f"{self.describe()}: the weights of its (input, output) pairs, 1 / count, depend on the input "
                "size; modify those of for_input(input_shape) instead"
            )
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
        if self.padding != (0, 0):
            stride += f", padding={_padding_text(self.padding)}"
            if not self.count_include_pad:
                stride += ", count_include_pad=False"
        return f"AvgPool2d({kh}x{kw}{stride}{tail})"


@dataclass(frozen=True, eq=False, repr=False)
class BinSum2d(LinearLayer):
    r"""Weighted sums over rectangular bins, for one input size: a linear layer.

    .. math:: z_{c,y,x} = w_{y,x} \sum_{r \in \mathrm{rows}_y} \sum_{q \in \mathrm{cols}_x} a_{c,r,q}

    where ``rows_y = [start, stop)`` is the ``y``-th row bin and ``cols_x`` the
    ``x``-th column bin; bins may overlap (an input then feeds several
    outputs) and need not cover the image.  Every (input, output) pair of bin
    ``(y, x)`` has the same weight ``w_{y,x}``, shared by the channels, so a
    rule that modifies weights element-wise (:meth:`with_weight`) modifies
    every pair exactly: flat gives each bin's relevance uniformly to its
    pixels.  The sums are ``P a Q^T`` with ``P`` (OH, H) and ``Q`` (OW, W) the
    0/1 membership matrices of the row and column bins; the adjoint is
    ``P^T s Q``.

    This is the explicit form, for one input size, of the average pools whose
    weights ``1 / |bin|`` depend on that size (:class:`AdaptiveAvgPool2d`,
    :class:`GlobalAvgPool2d`, :class:`AvgPool2d` with
    ``count_include_pad=False``): their :meth:`~LinearLayer.for_input`.

    Parameters
    ----------
    input_size : (int, int)
        ``(H, W)``, the only image size the layer takes.
    row_bins, col_bins : sequences of (start, stop)
        One half-open interval per output row (column), ``0 <= start < stop <= H`` (``W``).
    weight : array (OH, OW)
        ``w_{y,x}``, one weight per bin.
    dtype : float64 (default) or float32
    """

    input_size: tuple[int, int]
    row_bins: tuple[tuple[int, int], ...]
    col_bins: tuple[tuple[int, int], ...]
    weight: Array
    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def __post_init__(self) -> None:
        dt = check_dtype(self.dtype)
        object.__setattr__(self, "dtype", dt)
        size = pair(self.input_size, "BinSum2d input_size", 1, MAX_ELEMENTS)
        object.__setattr__(self, "input_size", size)
        for name, n in (("row_bins", size[0]), ("col_bins", size[1])):
            object.__setattr__(self, name, _bins(getattr(self, name), f"BinSum2d {name}", n))
        shape = (len(self.row_bins), len(self.col_bins))
        w = _frozen(as_float_array(self.weight, "BinSum2d weight (OH, OW)", dt, ndim=2))
        if w.shape != shape:
            raise ShapeError(f"BinSum2d weight must have shape {shape}, one per (row bin, column bin); got {w.shape}")
        object.__setattr__(self, "weight", w)

    @classmethod
    def averaging(cls, input_size: tuple[int, int], row_bins: Any, col_bins: Any,
                  dtype: DTypeLike = np.float64) -> BinSum2d:
        """The bin averages: ``w_{y,x} = 1 / (|rows_y| |cols_x|)``."""
        n_rows = np.array([stop - start for start, stop in row_bins], dtype=np.float64)
        n_cols = np.array([stop - start for start, stop in col_bins], dtype=np.float64)
        return cls(input_size, row_bins, col_bins, 1.0 / np.outer(n_rows, n_cols), dtype=check_dtype(dtype))

    @property
    def bias(self) -> None:  # type: ignore[override]
        return None

    def n_parameters(self) -> int:
        return 0

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w = self.input_size
        if len(input_shape) != 3 or tuple(input_shape[1:]) != (h, w):
            raise ShapeError(f"{self.describe()} expects input of shape (N, C, {h}, {w}); "
                             f"got (N, {', '.join(map(str, input_shape))})")
        shape = (int(input_shape[0]), len(self.row_bins), len(self.col_bins))
        element_count(shape, f"{self.describe()}: the output")
        return shape

    def _membership(self, dtype: np.dtype[Any]) -> tuple[Array, Array]:
        """``P`` (OH, H) and ``Q`` (OW, W): ``P[y, r] = 1`` if row ``r`` lies in row bin ``y``, else 0."""
        h, w = self.input_size
        return _windows.bin_matrix(self.row_bins, h, dtype), _windows.bin_matrix(self.col_bins, w, dtype)

    def linear(self, a: Array) -> Array:
        # the bin sums P a Q^T for every sample and channel, times each bin's weight
        self.check_input(a)
        P, Q = self._membership(np.result_type(a.dtype, self.weight.dtype))
        return np.matmul(np.matmul(P, a), Q.T) * self.weight

    def vjp(self, s: Array, input_shape: Shape) -> Array:
        # the adjoint: each output value, times its bin's weight, goes back to every pixel of its bin
        self.check_output(s, input_shape)
        P, Q = self._membership(np.result_type(s.dtype, self.weight.dtype))
        return np.matmul(np.matmul(P.T, s * self.weight), Q)

    def with_weight(self, weight: Array) -> BinSum2d:
        return replace(self, weight=self._checked_weight(weight))

    def bias_term(self) -> Array:
        return np.zeros((1, 1, 1), self.dtype)

    def describe(self) -> str:
        h, w = self.input_size
        return f"BinSum2d({h}x{w} -> {len(self.row_bins)}x{len(self.col_bins)} bins)"


def _bins(value: Any, what: str, size: int) -> tuple[tuple[int, int], ...]:
    """A non-empty sequence of half-open intervals ``(start, stop)``, ``0 <= start < stop <= size``."""
    if not isinstance(value, (tuple, list)) or not value:
        raise LayerParameterError(f"{what} must be a non-empty sequence of (start, stop) pairs; "
                                  f"got {describe_value(value)}")
    out = []
    for i, interval in enumerate(value):
        start, stop = pair(interval, f"{what}[{i}]", 0, size)
        if start >= stop:
            raise LayerParameterError(f"{what}[{i}] must satisfy start < stop; got ({start}, {stop})")
        out.append((start, stop))
    return tuple(out)


@dataclass(frozen=True, eq=False, repr=False)
class AdaptiveAvgPool2d(LinearLayer):
    r"""Adaptive average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool2d``: a linear layer.

    .. math:: z_{c,y,x} = \frac{1}{|\mathrm{rows}_y|\,|\mathrm{cols}_x|}
              \sum_{r \in \mathrm{rows}_y} \sum_{q \in \mathrm{cols}_x} a_{c,r,q}

    with PyTorch's bins: for ``n`` inputs and ``m`` outputs along an axis, bin
    ``i`` is ``[floor(i n / m), ceil((i + 1) n / m))``.  Bins overlap when ``m``
    does not divide ``n``; when ``m > n`` they up-sample (torchvision's VGG
    pools a 2x2 map of a 64x64 image to 7x7: every bin is one pixel, copied).

    The weights ``1 / |bin|`` depend on the input size, so the rules see this
    layer through :meth:`for_input`, a :class:`BinSum2d` with one weight per
    bin: flat then spreads each bin's relevance uniformly over its pixels, and
    the rules that keep positive weights (gamma, alpha-beta, z+) equal LRP-0
    up to their stabilisers.  No bias, no parameters.

    Parameters
    ----------
    output_size : int or (int, int)
        ``(OH, OW)``; an int for both.
    dtype : float64 (default) or float32
    """

    output_size: int | tuple[int, int]
    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        object.__setattr__(self, "output_size", pair(self.output_size, f"{type(self).__name__} output_size", 1))

    @property
    def weight(self) -> Array:  # type: ignore[override]
        """Not defined: the weights ``1 / |bin|`` depend on the input size; see :meth:`for_input`."""
        raise LayerParameterError(f"{self.describe()}: its weights 1 / |bin| depend on the input size; "
                                  "use for_input(input_shape).weight")

    @property
    def bias(self) -> None:  # type: ignore[override]
        return None

    def n_parameters(self) -> int:
        return 0

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise ShapeError(f"{self.describe()} expects input of shape (N, C, H, W); "
                             f"got (N, {', '.join(map(str, input_shape))})")
        oh, ow = self.output_size  # type: ignore[misc]
        shape = (int(input_shape[0]), oh, ow)
        element_count(shape, f"{self.describe()}: the output")
        return shape

    def for_input(self, input_shape: Shape) -> BinSum2d:
        """The explicit :class:`BinSum2d` for inputs of shape (C, H, W): PyTorch's bins, weights ``1 / |bin|``."""
        self.output_shape(tuple(input_shape))
        h, w = int(input_shape[1]), int(input_shape[2])
        oh, ow = self.output_size  # type: ignore[misc]
        return BinSum2d.averaging((h, w), _windows.adaptive_bins(h, oh), _windows.adaptive_bins(w, ow), self.dtype)

    def linear(self, a: Array) -> Array:
        self.check_input(a)
        return self.for_input(tuple(a.shape[1:])).linear(a)

    def vjp(self, s: Array, input_shape: Shape) -> Array:
        self.check_output(s, input_shape)
        return self.for_input(tuple(input_shape)).vjp(s, input_shape)

    def with_weight(self, weight: Array) -> LinearLayer:
        raise LayerParameterError(f"{self.describe()}: its weights 1 / |bin| depend on the input size; "
                                  "modify those of for_input(input_shape) instead")

    def bias_term(self) -> Array:
        return np.zeros((1, 1, 1), self.dtype)

    def describe(self) -> str:
        return f"AdaptiveAvgPool2d({_pair_text(self.output_size)})"


@dataclass(frozen=True, eq=False, repr=False)
class GlobalAvgPool2d(AdaptiveAvgPool2d):
    r"""Global average pooling: ``z_{c,0,0} = mean_{r,q} a_{c,r,q}``, output (N, C, 1, 1).

    :class:`AdaptiveAvgPool2d` with output size 1, under its own name.  The
    output keeps its two unit axes, as ``torch.nn.AdaptiveAvgPool2d(1)`` and
    ONNX's ``GlobalAveragePool`` do, so that a :class:`Flatten` after it gives
    (N, C) as in torchvision's ResNet; Keras's ``GlobalAveragePooling2D``
    (output (N, C)) is this layer followed by :class:`Flatten`.

    Parameters
    ----------
    dtype : float64 (default) or float32
    """

    output_size: int | tuple[int, int] = field(default=(1, 1), init=False)

    def describe(self) -> str:
        return "GlobalAvgPool2d()"


@dataclass(frozen=True, eq=False, repr=False)
class MaxPool2d(Layer):
    """Max pooling: ``z_{c,y,x} = max_{i,j} a_{c, y s_h + i - p_h, x s_w + j - p_w}`` (padding is -inf).

    Its relevance is routed by :meth:`route`: winner takes all.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), default ``kernel_size``
    padding : int, (int, int) or (top, bottom, left, right)
        At most half the kernel on each side (PyTorch's rule), so that every
        window holds a pixel of the image; TensorFlow's ``'same'`` always fits
        (see :func:`same_padding`).
    """

    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] | tuple[int, int, int, int] = 0
    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        k = pair(self.kernel_size, "MaxPool2d kernel_size", 1, MAX_KERNEL)
        object.__setattr__(self, "kernel_size", k)
        object.__setattr__(self, "stride", pair(self.stride if self.stride is not None else k, "MaxPool2d stride", 1))
        object.__setattr__(self, "padding", _pool_padding(self.padding, "MaxPool2d padding", k))

    @property
    def padding_sides(self) -> tuple[int, int, int, int]:
        """The padding as ``(top, bottom, left, right)``."""
        return _windows.sides(self.padding)  # type: ignore[arg-type]

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
        first = ap[:, :, slices[0][0], slices[0][1]]
        out = np.empty(first.shape, ap.dtype)

        def block(index: tuple[slice, ...]) -> None:  # blocks of samples (or channels) on the threads of _threads
            src, dst = ap[index], out[index]
            dst[...] = src[:, :, slices[0][0], slices[0][1]]
            for rows, cols in slices[1:]:
                np.maximum(dst, src[:, :, rows, cols], out=dst)

        _threads.run_blocks(block, out.shape)
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
        return self._route(a, r, ties)

    def _route(self, a: Array, r: Array, ties: Ties = "split", peak: Array | None = None) -> Array:
        """:meth:`route`; ``peak``, if given, is this layer's output for ``a`` (the forward sweep's), not recomputed."""
        self.check_input(a)
        ap, slices, (oh, ow) = self._shifted(a)
        if r.shape != (a.shape[0], a.shape[1], oh, ow):
            raise ShapeError(f"{self.describe()}.route expects r of shape {(a.shape[0], a.shape[1], oh, ow)}; "
                             f"got {r.shape}")
        if not isinstance(ties, str) or ties not in ("split", "first"):
            raise LayerParameterError(f"ties must be 'split' or 'first'; got {ties!r}")
        routed = np.zeros(ap.shape, a.dtype)
        kh, kw = self.kernel_size  # type: ignore[misc]
        sh, sw = self.stride  # type: ignore[misc]
        apart = sh >= kh and sw >= kw  # windows do not overlap: every pixel is written at most once

        def block(index: tuple[slice, ...]) -> None:  # samples (or channels) are independent: blocks on threads
            ap_b, r_b, routed_b = ap[index], r[index], routed[index]
            # where does each window's maximum sit?  one boolean map (N, C, OH, OW) per kernel offset
            peak_b = self._max(ap_b, slices) if peak is None else peak[index]
            winners = [ap_b[:, :, rows, cols] == peak_b for rows, cols in slices]
            if ties == "split":
                # each of the c tied winners of a window takes r / c
                count = winners[0].astype(a.dtype)
                for won in winners[1:]:
                    count += won
                share = r_b / count
            else:
                # only the first winner in row-major order (i, then j) takes r
                taken = np.zeros_like(winners[0])
                for won in winners:
                    won &= ~taken
                    taken |= won
                share = r_b
            # the adjoint of the offsets: each winner's share goes back onto its pixel
            for won, (rows, cols) in zip(winners, slices):
                if apart:
                    np.multiply(won, share, out=routed_b[:, :, rows, cols], casting="same_kind")
                else:  # overlapping windows: a pixel collects the shares of every window it wins
                    routed_b[:, :, rows, cols] += won * share

        _threads.run_blocks(block, r.shape)
        return _windows.crop(routed, self.padding)  # type: ignore[arg-type]

    def describe(self) -> str:
        kh, kw = self.kernel_size  # type: ignore[misc]
        stride = "" if self.stride == self.kernel_size else f", stride={_pair_text(self.stride)}"
        pad_txt = f", padding={_padding_text(self.padding)}" if self.padding != (0, 0) else ""
        return f"MaxPool2d({kh}x{kw}{stride}{pad_txt})"
