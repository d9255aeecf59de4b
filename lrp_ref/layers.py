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

import copy
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import DTypeLike, NDArray

from . import _threads, _windows
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
    require_finite,
)
from .errors import LayerParameterError, ShapeError

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

    def _derived(self, weight: Array) -> LinearLayer:
        """``with_weight(weight)`` for a weight a rule computed element-wise from this layer's own.

        The rules' modified weights (``max(w, 0)``, ``w + gamma w+``, ``w ** 2``,
        ...) are fresh arrays of the layer's shape and dtype that nothing else
        holds: this freezes and uses ``weight`` itself instead of copying it
        twice, as :meth:`with_weight` does for arrays a caller may still hold.
        The check that matters for such a weight stays: it must be finite
        (``w + gamma w+`` or ``w ** 2`` can overflow).  Any other array goes
        through :meth:`with_weight`.
        """
        own = (type(self) in (Dense, Conv2d) and isinstance(weight, np.ndarray) and weight.base is None
               and weight.flags.writeable and weight.shape == self.weight.shape and weight.dtype == self.dtype)
        if not own:
            return self.with_weight(weight)
        require_finite(weight, f"{type(self).__name__} weight (modified by a rule)")
        layer = copy.copy(self)  # the frozen dataclass without __post_init__'s copy of the weight
        object.__setattr__(layer, "weight", _frozen(weight))
        object.__setattr__(layer, "bias", None)
        return layer

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
        z = self.linear(a)
        b = self.bias_term()
        if (z.flags.writeable and z.dtype == np.result_type(z, b) and z.shape == np.broadcast_shapes(z.shape, b.shape)
                and not np.may_share_memory(z, a)):
            return _threads.elementwise(np.add, z, b, out=z)  # z is linear's own new array: the bias added in place
        return _threads.elementwise(np.add, z, b)

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


def _check_sizes(layer: Layer, input_shape: Shape, padding: _windows.Padding, output_shape: Shape) -> None:
    """ShapeError if one sample's padded input or output would exceed :data:`MAX_ELEMENTS` elements."""
    c, h, w = (int(n) for n in input_shape)
    top, bottom, left, right = _windows.sides(padding)
    if (top, bottom, left, right) != (0, 0, 0, 0):
        element_count((c, h + top + bottom, w + left + right),
                      f"{layer.describe()}: the input padded by padding={padding}")
    element_count(output_shape, f"{layer.describe()}: the output for input {tuple(int(n) for n in input_shape)}")


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
        return _threads.elementwise(np.maximum, a, 0)


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


# the layers of the other modules, importable from here as ever (imported last: they build on the classes above)
from .norm import BatchNorm, BatchNorm1d, BatchNorm2d  # noqa: E402
from .pooling import AdaptiveAvgPool2d, AvgPool2d, BinSum2d, GlobalAvgPool2d, MaxPool2d  # noqa: E402
