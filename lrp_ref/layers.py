"""Layers: the mathematics of each layer, and nothing about LRP.

Activations are batch-first; images are NCHW; parameters use PyTorch's layout
(Dense weight (out, in), Conv2d weight (out, in/groups, kh, kw)).

A *linear* layer (:class:`Dense`, :class:`Conv2d`, :class:`AvgPool2d`,
:class:`AdaptiveAvgPool2d`, :class:`GlobalAvgPool2d`, :class:`BatchNorm1d`,
:class:`BatchNorm2d`) computes ``z = linear(a) + bias`` and exposes three
things the rules need:

* ``linear(a)``   the bias-free linear map ``a -> W a``;
* ``vjp(s, input_shape)`` its exact adjoint ``s -> W^T s`` (vector-Jacobian product);
* ``with_weight(w)`` a copy whose weight is replaced (the tutorial's
  ``newlayer(layer, rho)``), used for the modified forward passes of the rules;

plus ``bias_term()``, the bias in a shape that broadcasts against one sample's
output, and ``for_input(input_shape)``, the layer with weights made explicit
for one input size (the average pools whose weights ``1 / |bin|`` depend on
it become a :class:`BinSum2d`; every other layer is itself).  Every rule in
:mod:`lrp_ref.rules` is written once against these methods.  Layers hold
only their parameters: they are frozen, their arrays read-only, and
activations live in the list returned by the forward sweep.

Constructors refuse what they cannot compute with, naming the parameter:
empty or non-real (complex, bool, string) weights, bools or floats for sizes,
and sizes beyond fixed limits: stride, padding and dilation at most
:data:`MAX_EXTENT` (2**16), a pooling window's side at most :data:`MAX_KERNEL`
(2**12).  Padding is an int, a pair ``(rows, cols)`` or four sides ``(top,
bottom, left, right)`` (see :func:`same_padding` for TensorFlow's ``'same'``).
Output sizes are computed in Python ints, and a layer refuses
(:class:`~lrp_ref.errors.ShapeError`) an input for which one sample's output,
or its padded input, would exceed :data:`MAX_ELEMENTS` (2**31) elements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import DTypeLike, NDArray

from . import _windows
from ._checks import (
    MAX_ELEMENTS,
    MAX_EXTENT,
    MAX_KERNEL,
    as_float_array,
    check_dtype,
    check_int,
    describe_value,
    element_count,
    is_int,
    pair,
    real_number,
)
from .errors import LayerParameterError, NonFiniteError, ShapeError

__all__ = [
    "MAX_ELEMENTS",
    "MAX_EXTENT",
    "MAX_KERNEL",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm",
    "BatchNorm1d",
    "BatchNorm2d",
    "BinSum2d",
    "Conv2d",
    "Dense",
    "Flatten",
    "GlobalAvgPool2d",
    "Layer",
    "LinearLayer",
    "MaxPool2d",
    "ReLU",
    "same_padding",
]

Array = NDArray[Any]
Shape = tuple[int, ...]
Ties = Literal["split", "first"]
Block = tuple[int, int, int, int]


def _pair_text(p: Any) -> str:
    """``2`` for (2, 2), ``(2, 1)`` otherwise: short layer descriptions."""
    return str(p[0]) if p[0] == p[1] else f"({p[0]}, {p[1]})"


def _padding_text(p: Any) -> str:
    """``1``, ``(1, 2)`` or ``(0, 1, 0, 1)`` (top, bottom, left, right): short layer descriptions."""
    return _pair_text(p) if len(p) == 2 else str(tuple(p))


def _frozen(a: Array) -> Array:
    a.setflags(write=False)
    return a


def _padding(value: Any, what: str) -> _windows.Padding:
    """An int, a pair ``(rows, cols)`` or four sides ``(top, bottom, left, right)`` of ints in [0, MAX_EXTENT].

    Symmetric padding is returned as the pair (so layers, files and numbers
    are those of symmetric padding, whatever way it was written), asymmetric
    padding as the four sides.
    """
    if isinstance(value, (tuple, list)) and len(value) == 4:
        if not all(is_int(v) for v in value):
            raise LayerParameterError(f"{what} must be an int, a pair of ints or four ints (top, bottom, left, right); "
                                      f"got {describe_value(value)}")
        top, bottom, left, right = (check_int(v, f"{what} {side}", 0, MAX_EXTENT)
                                    for v, side in zip(value, ("top", "bottom", "left", "right")))
        return (top, left) if top == bottom and left == right else (top, bottom, left, right)
    if not (is_int(value) or (isinstance(value, (tuple, list)) and len(value) == 2)):
        raise LayerParameterError(f"{what} must be an int, a pair of ints or four ints (top, bottom, left, right); "
                                  f"got {describe_value(value)}")
    return pair(value, what, 0)


def _pool_padding(value: Any, what: str, kernel: tuple[int, int]) -> _windows.Padding:
    """Pooling padding: as :func:`_padding`, and at most half the kernel on each side (PyTorch's rule).

    Then every window holds at least one pixel of the image.  TensorFlow's
    ``'same'`` padding always fits: it pads ``k - 1`` at most in all, the larger
    half ``ceil((k - 1) / 2) = floor(k / 2)`` at the bottom or right.
    """
    p = _padding(value, what)
    top, bottom, left, right = _windows.sides(p)
    if max(top, bottom) > kernel[0] // 2 or max(left, right) > kernel[1] // 2:
        raise LayerParameterError(f"{what} must be at most half the kernel {kernel} on each side; got {p}")
    return p


def same_padding(input_hw: Any, kernel: Any, stride: Any = 1, dilation: Any = 1) -> tuple[int, int, int, int]:
    r"""TensorFlow's ``padding='same'`` as explicit sides ``(top, bottom, left, right)``.

    Along each axis of size ``n``, with kernel ``k``, stride ``s`` and dilation ``d``,
    TensorFlow makes ``ceil(n / s)`` outputs and pads

    .. math:: p = \max((\lceil n / s \rceil - 1)\, s + (k - 1)\, d + 1 - n,\; 0),

    ``floor(p / 2)`` before and the rest, ``ceil(p / 2)``, after: at stride 2 on
    an even size one more row (column) at the bottom (right) than at the top
    (left).  PyTorch's ``padding='same'`` (stride 1 only) pads the same way.

    Parameters
    ----------
    input_hw : (int, int)
        Height and width of the input image.
    kernel, stride, dilation : int or (int, int)
    """
    if not (isinstance(input_hw, (tuple, list)) and len(input_hw) == 2):
        raise LayerParameterError(f"same_padding input_hw must be a pair of ints (height, width); "
                                  f"got {describe_value(input_hw)}")
    sizes = pair(input_hw, "same_padding input_hw", 1, MAX_ELEMENTS)
    ks = pair(kernel, "same_padding kernel", 1)
    ss = pair(stride, "same_padding stride", 1)
    ds = pair(dilation, "same_padding dilation", 1)
    out: list[int] = []
    for n, k, s, d in zip(sizes, ks, ss, ds):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        out += [total // 2, total - total // 2]
    return out[0], out[1], out[2], out[3]


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

    def relevance(self, a: Array, R: Array, rule: Any = None) -> Array:
        """One step of LRP: the relevance of the input ``a`` given the relevance ``R`` of the output.

        ``rule`` is a rule of :mod:`lrp_ref.rules`, e.g.
        ``dense.relevance(a, R, rules.Epsilon(0.25))``; None means the layer's
        default under lrp_ref's conventions (max pooling winner-takes-all,
        ReLU and Flatten pass, a residual sum epsilon; LRP-0, the basic rule,
        for Dense, Conv2d and pooling).  Unset conventions take lrp_ref's
        defaults.  The result is what :func:`lrp_ref.explain` computes for this
        layer with that rule (``explanation.layers``); ``rule.relevance`` also
        returns the share absorbed by the bias and the stabiliser.

        Parameters
        ----------
        a : array (N, *input_shape)
            The layer input from the forward pass.
        R : array (N, *output_shape)
            The relevance of the layer output.
        rule : Rule or None

        Returns
        -------
        array (N, *input_shape)
        """
        return self._step(a, R, rule).relevance

    def _step(self, a: Array, R: Array, rule: Any) -> Any:
        from .profiles import PROFILES
        from .rules import LRP0, Rule

        if rule is None:
            rule = PROFILES["lrp_ref"].default_rule(self) or LRP0()
        if not isinstance(rule, Rule):
            raise LayerParameterError(f"{self.describe()}.relevance: rule must be an lrp_ref rule or None; "
                                      f"got {type(rule).__name__}")
        if not rule.applies_to(self):
            raise LayerParameterError(f"{self.describe()}.relevance: rule {rule!r} cannot handle this layer")
        return rule.relevance(self, a, R)

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

    def for_input(self, input_shape: Shape) -> LinearLayer:
        """The layer as the rules see it for inputs of one sample's shape ``input_shape``.

        A rule modifies weights element-wise, ``with_weight(rho(weight))``,
        which modifies every (input, output) pair of the linear map exactly
        when each stored weight is the weight of its pairs.  That is so for
        most layers: they return themselves.  The average pools whose pair
        weights ``1 / |bin|`` depend on the input size (:class:`AdaptiveAvgPool2d`,
        :class:`GlobalAvgPool2d`, :class:`AvgPool2d` with ``count_include_pad=False``
        and padding) return their explicit form for that size, a :class:`BinSum2d`.
        :meth:`lrp_ref.rules.Rule.relevance` calls this before a rule runs.
        """
        return self

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

    with zero padding outside the image: ``p_h`` rows above, ``p_w`` columns
    on the left (and as many or, with four sides, other amounts below and on the right).

    Parameters
    ----------
    weight : array (out_channels, in_channels / groups, kh, kw)
    bias : array (out_channels,) or None
    stride, dilation : int or (int, int)
    padding : int, (int, int) or (top, bottom, left, right)
        An int or a pair pads both sides alike, as PyTorch; four sides pad
        asymmetrically, as TensorFlow's ``'same'`` needs at stride 2 on even
        sizes (see :func:`same_padding`).  Stored as a pair when symmetric.
    groups : int, dividing both channel counts
    dtype : float64 (default) or float32
    """

    weight: Array
    bias: Array | None = None
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] | tuple[int, int, int, int] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    def __post_init__(self) -> None:
        dt = check_dtype(self.dtype)
        object.__setattr__(self, "dtype", dt)
        w = _frozen(as_float_array(self.weight, "Conv2d weight (out, in/groups, kh, kw)", dt, ndim=4, nonempty=True))
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "stride", pair(self.stride, "Conv2d stride", 1))
        object.__setattr__(self, "padding", _padding(self.padding, "Conv2d padding"))
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

    @property
    def padding_sides(self) -> tuple[int, int, int, int]:
        """The padding as ``(top, bottom, left, right)``."""
        return _windows.sides(self.padding)  # type: ignore[arg-type]

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3 or input_shape[0] != self.in_channels:
            raise ShapeError(
                f"{self.describe()} expects input of shape (N, {self.in_channels}, H, W); "
                f"got (N, {', '.join(map(str, input_shape))})"
            )
        top, bottom, left, right = self.padding_sides
        stride, dilation = self.stride, self.dilation
        assert isinstance(stride, tuple) and isinstance(dilation, tuple)  # pairs since __post_init__
        sizes = [
            _windows.output_size(n, k, s, p, d)
            for n, k, s, p, d in zip(input_shape[1:], self.kernel_size, stride, [(top, bottom), (left, right)],
                                     dilation)
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
        top, bottom, left, right = self.padding_sides
        grad = np.zeros((n, self.in_channels, input_shape[1] + top + bottom, input_shape[2] + left + right), dtype)
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
            extra.append(f"padding={_padding_text(self.padding)}")
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


def _check_sizes(layer: Layer, input_shape: Shape, padding: _windows.Padding, output_shape: Shape) -> None:
    """ShapeError if one sample's padded input or output would exceed :data:`MAX_ELEMENTS` elements."""
    c, h, w = (int(n) for n in input_shape)
    top, bottom, left, right = _windows.sides(padding)
    if (top, bottom, left, right) != (0, 0, 0, 0):
        element_count((c, h + top + bottom, w + left + right),
                      f"{layer.describe()}: the input padded by padding={padding}")
    element_count(output_shape, f"{layer.describe()}: the output for input {tuple(int(n) for n in input_shape)}")


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
        pad_txt = f", padding={_padding_text(self.padding)}" if self.padding != (0, 0) else ""
        return f"MaxPool2d({kh}x{kw}{stride}{pad_txt})"


# ----------------------------------------------------------------------------- batch normalisation


@dataclass(frozen=True, eq=False, repr=False)
class BatchNorm(LinearLayer):
    r"""Batch normalisation in inference mode, a per-channel affine map (:class:`BatchNorm1d`, :class:`BatchNorm2d`).

    .. math:: z_{c,\dots} = \frac{a_{c,\dots} - \mu_c}{\sqrt{\sigma^2_c + \epsilon}}\, \gamma_c + \beta_c
              = w_c\, a_{c,\dots} + b_c, \qquad
              w_c = \frac{\gamma_c}{\sqrt{\sigma^2_c + \epsilon}}, \quad b_c = \beta_c - \mu_c w_c

    as PyTorch computes it with the running statistics (``module.eval()``).
    As a linear layer its weight is the per-channel scale ``w`` (C,), the
    diagonal of its matrix: input ``(c, ...)`` feeds output ``(c, ...)`` only,
    with weight ``w_c``.  So every rule for linear layers applies, element
    by element: LRP-0 gives ``R_j = a_j w_c / z_j R_j`` (the bias share
    ``b_c / z_j`` absorbed), flat passes each output's relevance to its one
    input.  :meth:`with_weight` returns a batch norm of scale ``w`` and no
    bias (mean 0, variance 1, ``eps = 0``: exactly ``a w``).  Merge a batch
    norm into the Dense or Conv2d layer before it with :func:`lrp_ref.canonize`.

    PyTorch's ``weight`` and ``bias`` are ``gamma`` and ``beta`` here: the
    attributes ``weight`` and ``bias`` are the scale ``w`` and shift ``b`` of
    the affine map, as for every linear layer.

    Parameters
    ----------
    gamma, beta : array (C,)
        PyTorch's ``weight`` and ``bias`` (ones and zeros when ``affine=False``).
    running_mean, running_var : array (C,)
        The running statistics; the variance must be >= 0.
    eps : float >= 0, default 1e-5
        Added to the variance; ``running_var + eps`` must be > 0.
    dtype : float64 (default) or float32
    """

    gamma: Array
    beta: Array
    running_mean: Array
    running_var: Array
    eps: float = 1e-5
    dtype: np.dtype[Any] = field(default=np.dtype(np.float64))

    #: the rank of one sample's input: (C,) or (C, H, W)
    _rank: ClassVar[int] = 0

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self._rank == 0:
            raise LayerParameterError("BatchNorm is the base class: use BatchNorm1d (N, C) or BatchNorm2d (N, C, H, W)")
        dt = check_dtype(self.dtype)
        object.__setattr__(self, "dtype", dt)
        shapes = {}
        for key in ("gamma", "beta", "running_mean", "running_var"):
            arr = _frozen(as_float_array(getattr(self, key), f"{name} {key} (C,)", dt, ndim=1, nonempty=True))
            object.__setattr__(self, key, arr)
            shapes[key] = arr.shape
        if len(set(shapes.values())) != 1:
            found = ", ".join(f"{key} {shape}" for key, shape in shapes.items())
            raise ShapeError(f"{name} gamma, beta, running_mean and running_var must have one shape (C,); got {found}")
        eps = real_number(self.eps, f"{name} eps", LayerParameterError, 0.0)
        object.__setattr__(self, "eps", eps)
        var = self.running_var
        if np.any(var < 0):
            raise LayerParameterError(f"{name} running_var must be >= 0; found {int((var < 0).sum())} negative "
                                      f"value(s), the smallest {float(var.min()):.6g}")
        if np.any(var + dt.type(eps) <= 0):
            zero = np.flatnonzero(var + dt.type(eps) <= 0).tolist()
            raise LayerParameterError(f"{name} needs running_var + eps > 0; channel(s) {zero[:8]} have running_var = 0 "
                                      f"and eps = {eps:g}")
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.all(np.isfinite(self.weight)) and np.all(np.isfinite(self.bias))
        if not finite:
            raise NonFiniteError(f"{name}: the scale gamma / sqrt(running_var + eps) or the shift beta - mean * scale "
                                 f"overflows {dt}")

    @property
    def num_features(self) -> int:
        """C, the number of channels."""
        return int(self.gamma.shape[0])

    @property
    def weight(self) -> Array:  # type: ignore[override]
        """The per-channel scale ``w_c = gamma_c / sqrt(running_var_c + eps)`` (C,)."""
        with np.errstate(over="ignore"):
            return self.gamma / np.sqrt(self.running_var + self.dtype.type(self.eps))

    @property
    def bias(self) -> Array:  # type: ignore[override]
        """The per-channel shift ``b_c = beta_c - running_mean_c w_c`` (C,)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self.beta - self.running_mean * self.weight

    def _per_channel(self, v: Array) -> Array:
        """``v`` (C,) shaped to broadcast against one sample (C, ...)."""
        return v.reshape(-1, *(1,) * (self._rank - 1))

    def n_parameters(self) -> int:
        """``2 C`` (gamma and beta), as PyTorch counts them; the running statistics are buffers."""
        return 2 * self.num_features

    def output_shape(self, input_shape: Shape) -> Shape:
        c = self.num_features
        if len(input_shape) != self._rank or input_shape[0] != c:
            expected = ", ".join([str(c), "H", "W"][: self._rank])
            raise ShapeError(f"{self.describe()} expects input of shape (N, {expected}); "
                             f"got (N, {', '.join(map(str, input_shape))})")
        element_count(input_shape, f"{self.describe()}: the input")
        return tuple(input_shape)

    def linear(self, a: Array) -> Array:
        self.check_input(a)
        return a * self._per_channel(self.weight)

    def vjp(self, s: Array, input_shape: Shape) -> Array:
        # a diagonal map is its own transpose
        self.check_output(s, input_shape)
        return s * self._per_channel(self.weight)

    def with_weight(self, weight: Array) -> BatchNorm:
        w = self._checked_weight(weight)
        zeros, ones = np.zeros_like(w), np.ones_like(w)
        return type(self)(w, zeros, zeros, ones, eps=0.0, dtype=self.dtype)

    def bias_term(self) -> Array:
        return self._per_channel(self.bias)

    def describe(self) -> str:
        return f"{type(self).__name__}({self.num_features}, eps={self.eps:g})"


@dataclass(frozen=True, eq=False, repr=False)
class BatchNorm1d(BatchNorm):
    """:class:`BatchNorm` of inputs (N, C), as ``torch.nn.BatchNorm1d`` after a ``Linear`` layer."""

    _rank: ClassVar[int] = 1


@dataclass(frozen=True, eq=False, repr=False)
class BatchNorm2d(BatchNorm):
    """:class:`BatchNorm` of images (N, C, H, W), as ``torch.nn.BatchNorm2d``."""

    _rank: ClassVar[int] = 3


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
