"""Slow, obviously correct references for the layers and rules of lrp_ref.

Nothing here shares code with lrp_ref's fast path: no ``lrp_ref._windows``, no
``layer.forward`` / ``layer.linear`` / ``layer.vjp`` / ``layer.route``.  Layers
are only *read* (their weight, bias, stride, padding, dilation, groups, kernel
size and window weights).

* Layers are written as explicit Python loops over output positions and kernel
  offsets (PyTorch's cross-correlation semantics, zero padding handled by a
  bounds check rather than by padding an array).  Only the batch axis is
  vectorised, so that probing all unit vectors at once stays cheap.  Padding
  is an int, a pair (rows, cols) or four sides (top, bottom, left, right).
  Batch norm is written as PyTorch documents it, ``(x - mean) / sqrt(var + eps)
  * gamma + beta``, channel by channel; adaptive average pooling finds each
  bin with exact rational arithmetic (``fractions.Fraction``).
* :func:`dense_matrix` turns any linear layer into an explicit matrix
  ``W`` (in_size, out_size) and bias ``b`` (out_size,) with ``z = a @ W + b``
  (``a`` flattened per sample in C order), by pushing unit vectors through
  those loops.
* Every LRP rule for linear layers is then written from its docstring formula
  in :mod:`lrp_ref.rules`, with the explicit contribution tensor
  ``Z[n, j, k]`` (``= a_j w_jk`` or the rule's modified version).

Notation: ``j`` indexes the flattened layer input, ``k`` the flattened output,
``n`` the sample.  Every rule returns ``(R_in (N, J), absorbed (N,))`` where

    absorbed_n = sum_k R_nk * (extra_k + stab_nk) / den_nk     (den_nk != 0)
               + sum_k R_nk                                     (den_nk == 0)

``extra_k`` is the part of the denominator that does not come from the inputs
(the rule's bias term, 0 for the rules that ignore the bias) and ``stab_nk =
eps * sign(z_nk)`` with ``sign(0) = +1`` the stabiliser; ``den = z + stab``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lrp_ref.layers import AdaptiveAvgPool2d, AvgPool2d, BatchNorm, BinSum2d, Conv2d, Dense
from lrp_ref.rules import LRP0, AlphaBeta, Epsilon, Flat, Gamma, WSquare, ZBox, ZPlus

Array = NDArray[Any]

__all__ = [
    "adaptive_bin",
    "batchnorm_scale",
    "connectivity_matrix",
    "conv2d_matrix",
    "dense_matrix",
    "naive_adaptive_avgpool2d",
    "naive_avgpool2d",
    "naive_batchnorm",
    "naive_binsum2d",
    "naive_channel_affine",
    "naive_conv2d",
    "naive_dense",
    "naive_maxpool2d",
    "ref_absolute_influence",
    "ref_alphabeta",
    "ref_beyond_lrp",
    "ref_contrastive_excitation",
    "ref_epsilon",
    "ref_excitation",
    "ref_flat",
    "ref_gamma",
    "ref_lrp0",
    "ref_maxpool_route",
    "ref_rap",
    "ref_rule",
    "ref_wsquare",
    "ref_zbox",
    "ref_zplus",
]


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def _sides(v: Any) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from an int, a pair (rows, cols) or four sides."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v), int(v), int(v)
    if len(v) == 2:
        return int(v[0]), int(v[0]), int(v[1]), int(v[1])
    top, bottom, left, right = v
    return int(top), int(bottom), int(left), int(right)


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int, after: int | None = None) -> int:
    # the number of valid window starts, counted rather than computed by formula;
    # ``padding`` before the image, ``after`` (default: the same) after it
    after = padding if after is None else after
    count = 0
    start = -padding
    while start + dilation * (kernel - 1) <= size - 1 + after:
        count += 1
        start += stride
    return count


# ----------------------------------------------------------------------------- naive layers


def naive_dense(x: Array, weight: Array, bias: Array | None) -> Array:
    """``z[n, k] = sum_j x[n, j] * weight[k, j] + bias[k]`` with explicit loops."""
    n_out, n_in = weight.shape
    out = np.zeros((x.shape[0], n_out), dtype=np.result_type(x, weight))
    for k in range(n_out):
        for j in range(n_in):
            out[:, k] += x[:, j] * weight[k, j]
        if bias is not None:
            out[:, k] += bias[k]
    return out


def naive_conv2d(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Array:
    """PyTorch ``conv2d`` (cross-correlation, zero padding) as explicit loops.

    ``out[n, o, y, x] = bias[o] + sum_{c, i, j} weight[o, c, i, j] *
    x[n, g*Cg + c, y*sh + i*dh - ph, x*sw + j*dw - pw]`` where ``g = o // (O/G)``
    is the group of output channel ``o``, ``ph``/``pw`` the top/left padding and
    out-of-image pixels are zero.
    """
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    ph, pb, pw, pr = _sides(padding)
    n_batch, _, height, width = x.shape
    n_out, cg, kh, kw = weight.shape
    out_per_group = n_out // groups
    oh = _out_size(height, kh, sh, ph, dh, pb)
    ow = _out_size(width, kw, sw, pw, dw, pr)
    out = np.zeros((n_batch, n_out, oh, ow), dtype=np.result_type(x, weight))
    for o in range(n_out):
        g = o // out_per_group
        for y in range(oh):
            for xx in range(ow):
                acc = np.zeros(n_batch, dtype=out.dtype)
                for c in range(cg):
                    for i in range(kh):
                        for j in range(kw):
                            row = y * sh + i * dh - ph
                            col = xx * sw + j * dw - pw
                            if 0 <= row < height and 0 <= col < width:
                                acc += weight[o, c, i, j] * x[:, g * cg + c, row, col]
                if bias is not None:
                    acc += bias[o]
                out[:, o, y, xx] = acc
    return out


def naive_avgpool2d(x: Array, kernel_size: Any, stride: Any = None, window_weight: Array | None = None,
                    padding: Any = 0, count_include_pad: bool = True) -> Array:
    """Average pooling (floor mode, zero padding) as loops; ``window_weight`` (kh, kw) replaces 1/(kh kw).

    ``count_include_pad=False`` (only with the default weights): each window's
    in-image pixels summed and divided by their number, as PyTorch and
    TensorFlow compute it.
    """
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride if stride is not None else (kh, kw))
    ph, pb, pw, pr = _sides(padding)
    if window_weight is None:
        window_weight = np.full((kh, kw), 1.0 / (kh * kw))
    elif not count_include_pad:
        raise ValueError("count_include_pad=False takes the default weights only")
    n_batch, n_chan, height, width = x.shape
    oh = _out_size(height, kh, sh, ph, 1, pb)
    ow = _out_size(width, kw, sw, pw, 1, pr)
    out = np.zeros((n_batch, n_chan, oh, ow), dtype=np.result_type(x, window_weight))
    for c in range(n_chan):
        for y in range(oh):
            for xx in range(ow):
                count = 0
                for i in range(kh):
                    for j in range(kw):
                        row, col = y * sh + i - ph, xx * sw + j - pw
                        if 0 <= row < height and 0 <= col < width:
                            count += 1
                            if count_include_pad:
                                out[:, c, y, xx] += window_weight[i, j] * x[:, c, row, col]
                            else:
                                out[:, c, y, xx] += x[:, c, row, col]
                if not count_include_pad:
                    out[:, c, y, xx] /= count
    return out


def adaptive_bin(i: int, n_in: int, n_out: int) -> range:
    """Input positions of output ``i`` along one axis: ``floor(i n_in / n_out) <= r < ceil((i + 1) n_in / n_out)``."""
    return range(math.floor(Fraction(i * n_in, n_out)), math.ceil(Fraction((i + 1) * n_in, n_out)))


def naive_adaptive_avgpool2d(x: Array, output_size: Any, bin_weight: Array | None = None) -> Array:
    """PyTorch's adaptive average pooling as loops: each output the mean of its bin.

    ``bin_weight`` (OH, OW) replaces each bin's ``1 / |bin|``: output ``(y, x)``
    is then ``bin_weight[y, x]`` times the sum of its bin (the weight of every
    (input, output) pair of that bin).
    """
    oh, ow = _pair(output_size)
    n_batch, n_chan, height, width = x.shape
    out = np.zeros((n_batch, n_chan, oh, ow), dtype=np.float64)
    for c in range(n_chan):
        for y in range(oh):
            for xx in range(ow):
                pixels = [(r, q) for r in adaptive_bin(y, height, oh) for q in adaptive_bin(xx, width, ow)]
                total = np.zeros(n_batch)
                for r, q in pixels:
                    total += x[:, c, r, q]
                out[:, c, y, xx] = total / len(pixels) if bin_weight is None else bin_weight[y, xx] * total
    return out


def naive_binsum2d(x: Array, row_bins: Any, col_bins: Any, weight: Array) -> Array:
    """``out[n, c, y, x] = weight[y, x] * sum of x[n, c, r, q] over r in row bin y, q in column bin x``, as loops."""
    n_batch, n_chan = x.shape[:2]
    out = np.zeros((n_batch, n_chan, len(row_bins), len(col_bins)), dtype=np.float64)
    for c in range(n_chan):
        for y, (r0, r1) in enumerate(row_bins):
            for xx, (q0, q1) in enumerate(col_bins):
                for r in range(r0, r1):
                    for q in range(q0, q1):
                        out[:, c, y, xx] += weight[y, xx] * x[:, c, r, q]
    return out


def naive_batchnorm(x: Array, gamma: Array, beta: Array, mean: Array, var: Array, eps: float) -> Array:
    """``(x - mean_c) / sqrt(var_c + eps) * gamma_c + beta_c``, channel by channel, as PyTorch documents it."""
    out = np.zeros(x.shape, dtype=np.float64)
    for c in range(x.shape[1]):
        out[:, c] = (x[:, c] - mean[c]) / math.sqrt(float(var[c]) + eps) * gamma[c] + beta[c]
    return out


def batchnorm_scale(layer: Any) -> tuple[Array, Array]:
    """A batch norm's affine map in Python floats, per channel: ``(gamma / sqrt(var + eps), beta - mean * scale)``."""
    scale = [float(g) / math.sqrt(float(v) + layer.eps) for g, v in zip(layer.gamma, layer.running_var)]
    shift = [float(b) - float(m) * s for b, m, s in zip(layer.beta, layer.running_mean, scale)]
    return np.array(scale), np.array(shift)


def naive_channel_affine(x: Array, scale: Array, shift: Array | None) -> Array:
    """``x[:, c, ...] * scale[c] + shift[c]`` with a loop over channels and positions."""
    out = np.zeros(x.shape, dtype=np.float64)
    for c in range(x.shape[1]):
        for idx in np.ndindex(x.shape[2:]):
            out[(slice(None), c, *idx)] = x[(slice(None), c, *idx)] * scale[c] + (0.0 if shift is None else shift[c])
    return out


def _maxpool_window(height: int, width: int, y: int, xx: int, kernel: tuple[int, int], stride: tuple[int, int],
                    padding: Any) -> list[tuple[int, int]]:
    """In-image pixels of one max-pool window, in row-major kernel order (padding is -inf: skipped)."""
    (kh, kw), (sh, sw) = kernel, stride
    ph, _, pw, _ = _sides(padding)
    pixels = []
    for i in range(kh):
        for j in range(kw):
            row, col = y * sh + i - ph, xx * sw + j - pw
            if 0 <= row < height and 0 <= col < width:
                pixels.append((row, col))
    return pixels


def naive_maxpool2d(x: Array, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Array:
    """Max pooling with implicit -inf padding, as loops over every sample and window."""
    kernel = _pair(kernel_size)
    strides = _pair(stride if stride is not None else kernel)
    pads = _sides(padding)
    n_batch, n_chan, height, width = x.shape
    oh = _out_size(height, kernel[0], strides[0], pads[0], 1, pads[1])
    ow = _out_size(width, kernel[1], strides[1], pads[2], 1, pads[3])
    out = np.zeros((n_batch, n_chan, oh, ow), dtype=x.dtype)
    for n in range(n_batch):
        for c in range(n_chan):
            for y in range(oh):
                for xx in range(ow):
                    out[n, c, y, xx] = max(x[n, c, r, q] for r, q in _maxpool_window(height, width, y, xx, kernel,
                                                                                       strides, pads))
    return out


def ref_maxpool_route(a: Array, R: Array, kernel_size: Any, stride: Any = None, padding: Any = 0,
                      ties: str = "split") -> Array:
    """Winner takes all, as loops: each window's ``R`` goes to its maximum.

    ``ties="split"``: shared evenly among every in-image pixel equal to the max;
    ``ties="first"``: all of it to the first arg-max in row-major window order.
    Overlapping windows add up.
    """
    kernel = _pair(kernel_size)
    strides = _pair(stride if stride is not None else kernel)
    pads = _sides(padding)
    n_batch, n_chan, height, width = a.shape
    out = np.zeros(a.shape, dtype=np.float64)
    for n in range(n_batch):
        for c in range(n_chan):
            for y in range(R.shape[2]):
                for xx in range(R.shape[3]):
                    pixels = _maxpool_window(height, width, y, xx, kernel, strides, pads)
                    best = max(a[n, c, r, q] for r, q in pixels)
                    winners = [(r, q) for r, q in pixels if a[n, c, r, q] == best]
                    if ties == "first":
                        winners = winners[:1]
                    for r, q in winners:
                        out[n, c, r, q] += R[n, c, y, xx] / len(winners)
    return out


def ref_maxpool_epsilon(a: Array, R: Array, kernel_size: Any, epsilon: float, stride: Any = None,
                        padding: Any = 0, ties: str = "first") -> tuple[Array, Array]:
    """The epsilon rule on max pooling (Captum), as loops: the winner j of window k gets
    ``a_j / (z_k + eps sign(z_k)) R_k`` with ``z_k = a_j`` the window's maximum; the rest is absorbed."""
    kernel = _pair(kernel_size)
    strides = _pair(stride if stride is not None else kernel)
    pads = _sides(padding)
    out = np.zeros(a.shape, dtype=np.float64)
    absorbed = np.zeros(a.shape[0])
    for n in range(a.shape[0]):
        for c in range(a.shape[1]):
            for y in range(R.shape[2]):
                for xx in range(R.shape[3]):
                    pixels = _maxpool_window(a.shape[2], a.shape[3], y, xx, kernel, strides, pads)
                    best = max(a[n, c, r, q] for r, q in pixels)
                    winners = [(r, q) for r, q in pixels if a[n, c, r, q] == best]
                    if ties == "first":
                        winners = winners[:1]
                    den = best + epsilon * (1.0 if best >= 0 else -1.0)
                    share = best / den * R[n, c, y, xx] if den != 0 else 0.0
                    for r, q in winners:
                        out[n, c, r, q] += share / len(winners)
                    absorbed[n] += R[n, c, y, xx] - share
    return out, absorbed


# ----------------------------------------------------------------------------- layers as matrices


def _naive_apply(layer: Any, x: Array, weight: Array | None = None, with_bias: bool = True) -> Array:
    """The layer's map on a batch, through the naive loops; ``weight`` overrides the layer's weight."""
    if isinstance(layer, Dense):
        w = np.asarray(layer.weight, dtype=np.float64) if weight is None else weight
        b = None if (layer.bias is None or not with_bias) else np.asarray(layer.bias, dtype=np.float64)
        return naive_dense(x, w, b)
    if isinstance(layer, Conv2d):
        w = np.asarray(layer.weight, dtype=np.float64) if weight is None else weight
        b = None if (layer.bias is None or not with_bias) else np.asarray(layer.bias, dtype=np.float64)
        return naive_conv2d(x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)
    if isinstance(layer, AvgPool2d):
        if weight is None and not layer.count_include_pad:
            return naive_avgpool2d(x, layer.kernel_size, layer.stride, None, layer.padding, count_include_pad=False)
        w = np.asarray(layer.window_weight, dtype=np.float64) if weight is None else weight
        return naive_avgpool2d(x, layer.kernel_size, layer.stride, w, layer.padding)
    if isinstance(layer, AdaptiveAvgPool2d):
        return naive_adaptive_avgpool2d(x, layer.output_size, weight)
    if isinstance(layer, BinSum2d):
        return naive_binsum2d(x, layer.row_bins, layer.col_bins, layer.weight if weight is None else weight)
    if isinstance(layer, BatchNorm):
        scale, shift = batchnorm_scale(layer)
        return naive_channel_affine(x, scale if weight is None else weight, shift if with_bias else None)
    raise TypeError(f"no naive reference for {type(layer).__name__}")


def _probe(layer: Any, input_shape: tuple[int, ...], weight: Array | None) -> Array:
    n_in = int(np.prod(input_shape))
    units = np.eye(n_in).reshape(n_in, *input_shape)  # row j is the unit vector e_j
    columns = _naive_apply(layer, units, weight, with_bias=False)  # (J, *output_shape): the image of e_j
    return columns.reshape(n_in, -1)


def dense_matrix(layer: Any, input_shape: tuple[int, ...]) -> tuple[Array, Array]:
    """``(W, b)`` with ``z = a.reshape(N, -1) @ W + b`` for a Dense, Conv2d, AvgPool2d, AdaptiveAvgPool2d or BatchNorm.

    ``W[j, k]`` (in_size, out_size) is output ``k`` of the bias-free naive layer
    applied to the unit vector ``e_j``; ``b`` (out_size,) is the naive layer's
    output for a zero input.  float64.
    """
    input_shape = tuple(int(s) for s in input_shape)
    W = _probe(layer, input_shape, None)
    b = _naive_apply(layer, np.zeros((1, *input_shape)), None, with_bias=True).reshape(-1)
    return W, b


def connectivity_matrix(layer: Any, input_shape: tuple[int, ...]) -> Array:
    """``C[j, k] = 1`` if input ``j`` lies in the receptive field of output ``k`` (padding excluded), else 0.

    Probed like :func:`dense_matrix` with every weight replaced by 1, so that
    a weight that happens to be zero still counts as a connection (an average
    pool's window or bin pixels, a batch norm's diagonal).
    """
    input_shape = tuple(int(s) for s in input_shape)
    if isinstance(layer, AdaptiveAvgPool2d):
        ones = np.ones(_pair(layer.output_size))
    elif isinstance(layer, AvgPool2d):
        ones = np.ones(np.shape(layer.window_weight))
    elif isinstance(layer, BatchNorm):
        ones = np.ones(len(layer.gamma))
    elif isinstance(layer, BinSum2d):
        ones = np.ones((len(layer.row_bins), len(layer.col_bins)))
    else:
        ones = np.ones(np.shape(layer.weight))
    return _probe(layer, input_shape, ones)


# ----------------------------------------------------------------------------- the rules


def _sign0(z: Array) -> Array:
    """sign with sign(0) = +1."""
    return np.where(z >= 0, 1.0, -1.0)


def _stabilizer_term(z: Array, eps: float, form: str) -> Array:
    """What each stabiliser form adds to the denominator ``z``."""
    if form == "sign":
        return eps * _sign0(z)
    if form == "add":
        return np.full_like(z, eps)
    if form == "zeros":
        return np.where(z == 0, eps, 0.0)
    raise ValueError(form)


def _distribute(Z: Array, extra: Array, R: Array, eps: float, form: str = "sign") -> tuple[Array, Array]:
    """``R_j = sum_k Z_jk / den_k * R_k`` with ``den_k = sum_j Z_jk + extra_k + stab(.)``.

    Z (N, J, K) contributions; extra (K,) or (N, K) the non-input part of the
    denominator.  Returns (R_in (N, J), absorbed (N,)) as in the module docstring.
    """
    z = np.einsum("njk->nk", Z) + extra
    stab = _stabilizer_term(z, eps, form)
    den = z + stab
    zero = den == 0
    ratio = np.divide(R, den, out=np.zeros_like(den), where=~zero)  # R_k / den_k, 0 where den_k == 0
    R_in = np.einsum("njk,nk->nj", Z, ratio)
    extra_nk = np.broadcast_to(extra, den.shape)
    absorbed = np.einsum("nk,nk->n", ratio, extra_nk + stab) + np.where(zero, R, 0.0).sum(axis=1)
    return R_in, absorbed


def _contributions(a: Array, W: Array) -> Array:
    """``Z[n, j, k] = a[n, j] * W[j, k]``."""
    return np.einsum("nj,jk->njk", a, W)


def ref_lrp0(W: Array, b: Array, a: Array, R: Array, stabilizer: float = 0.0, form: str = "sign"
             ) -> tuple[Array, Array]:
    """R_j = sum_k a_j w_jk / z_k R_k,  z_k = sum_j a_j w_jk + b_k; bias share absorbed; z_k == 0 absorbs."""
    return _distribute(_contributions(a, W), b, R, stabilizer, form)


def ref_epsilon(W: Array, b: Array, a: Array, R: Array, epsilon: float, stabilizer: float = 0.0,
                scale: str = "absolute", form: str = "sign") -> tuple[Array, Array]:
    """R_j = sum_k a_j w_jk / (z_k + eps sign(z_k)) R_k; bias and stabiliser shares absorbed.

    ``scale="rms"``: eps = epsilon * sqrt(mean z^2) over the whole batch (the tutorial), plus ``stabilizer``.
    """
    eps = epsilon
    if scale == "rms":
        eps = epsilon * float(np.sqrt(np.mean((a @ W + b) ** 2)))
    return _distribute(_contributions(a, W), b, R, eps + stabilizer, form)


def ref_gamma(W: Array, b: Array, a: Array, R: Array, gamma: float, stabilizer: float = 0.0,
              variant: str = "plain", form: str = "sign") -> tuple[Array, Array]:
    """Gamma in its three variants (see lrp_ref.rules.Gamma).

    plain:       R_j = sum_k a_j (w + g w+)_jk / (sum_j' a_j' (w + g w+)_j'k + b_k + g b_k+) R_k
    weights:     the same with the bias b_k unchanged
    generalized: for z_k > 0 the contributions a+_j (w + g w+)_jk + a-_j (w + g w-)_jk and bias b + g b+,
                 for z_k < 0 a+_j (w + g w-)_jk + a-_j (w + g w+)_jk and b + g b-; z_k == 0 absorbs R_k
    """
    up, down = W + gamma * np.maximum(W, 0.0), W + gamma * np.minimum(W, 0.0)
    if variant == "plain":
        return _distribute(_contributions(a, up), b + gamma * np.maximum(b, 0.0), R, stabilizer, form)
    if variant == "weights":
        return _distribute(_contributions(a, up), b, R, stabilizer, form)
    a_pos, a_neg = np.maximum(a, 0.0), np.minimum(a, 0.0)
    z = a @ W + b
    Z_pos = _contributions(a_pos, up) + _contributions(a_neg, down)
    Z_neg = _contributions(a_pos, down) + _contributions(a_neg, up)
    positive = (z > 0)[:, None, :]
    Z = np.where(positive, Z_pos, Z_neg)
    extra = np.where(z > 0, b + gamma * np.maximum(b, 0.0), b + gamma * np.minimum(b, 0.0))
    R_in, absorbed = _distribute(Z, extra, np.where(z == 0, 0.0, R), stabilizer, form)
    return R_in, absorbed + np.where(z == 0, R, 0.0).sum(axis=1)


def _signed_parts(a: Array, W: Array, b: Array, split: str, bias: str) -> tuple[Array, Array, Array, Array]:
    """(Z+, extra+, Z-, extra-): the contributions of each sign and the bias in each denominator."""
    if split == "contributions":
        Z = _contributions(a, W)
        Z_pos, Z_neg = np.maximum(Z, 0.0), np.minimum(Z, 0.0)
    else:  # weights only: a_j w_jk+ and a_j w_jk-, inputs as they are
        Z_pos, Z_neg = _contributions(a, np.maximum(W, 0.0)), _contributions(a, np.minimum(W, 0.0))
    b_pos, b_neg = {"split": (np.maximum(b, 0.0), np.minimum(b, 0.0)), "both": (b, b),
                    "none": (0 * b, 0 * b)}[bias]
    return Z_pos, b_pos, Z_neg, b_neg


def ref_alphabeta(W: Array, b: Array, a: Array, R: Array, alpha: float, beta: float, stabilizer: float = 0.0,
                  bias: str = "split", split: str = "contributions", form: str = "sign") -> tuple[Array, Array]:
    """R_j = sum_k (alpha (a w)+_jk / (sum (a w)+ + b+) - beta (a w)-_jk / (sum (a w)- + b-)) R_k.

    Each denominator has its own stabiliser; absorbed = alpha * (positive share) - beta * (negative share).
    """
    Z_pos, b_pos, Z_neg, b_neg = _signed_parts(a, W, b, split, bias)
    pos, pos_absorbed = _distribute(Z_pos, b_pos, R, stabilizer, form)
    neg, neg_absorbed = _distribute(Z_neg, b_neg, R, stabilizer, form)
    return alpha * pos - beta * neg, alpha * pos_absorbed - beta * neg_absorbed


def ref_zplus(W: Array, b: Array, a: Array, R: Array, stabilizer: float = 0.0, bias: str = "split",
              split: str = "contributions", form: str = "sign") -> tuple[Array, Array]:
    """R_j = sum_k (a_j w_jk)+ / (sum_j' (a_j' w_j'k)+ + b_k+) R_k."""
    Z_pos, b_pos, _, _ = _signed_parts(a, W, b, split, bias)
    return _distribute(Z_pos, b_pos, R, stabilizer, form)


def ref_zbox(W: Array, b: Array, a: Array, R: Array, low: Array, high: Array,
             stabilizer: float = 0.0, form: str = "sign") -> tuple[Array, Array]:
    """R_i = sum_k (x_i w_ik - l_i w_ik+ - h_i w_ik-) / sum_i'(same) R_k; bias ignored.

    ``low``/``high`` are already broadcast to ``a`` (N, J).
    """
    low = np.broadcast_to(low, a.shape)
    high = np.broadcast_to(high, a.shape)
    Z = (np.einsum("nj,jk->njk", a, W)
         - np.einsum("nj,jk->njk", low, np.maximum(W, 0.0))
         - np.einsum("nj,jk->njk", high, np.minimum(W, 0.0)))
    return _distribute(Z, np.zeros(W.shape[1]), R, stabilizer, form)


def ref_wsquare(W: Array, b: Array, a: Array, R: Array, stabilizer: float = 0.0, bias: str = "ignore",
                form: str = "sign") -> tuple[Array, Array]:
    """R_i = sum_k w_ik^2 / (sum_i' w_i'k^2 [+ b_k^2]) R_k; independent of ``a``."""
    Z = np.broadcast_to(W**2, (a.shape[0], *W.shape))
    extra = b**2 if bias == "square" else np.zeros(W.shape[1])
    return _distribute(Z, extra, R, stabilizer, form)


def ref_flat(C: Array, b: Array, a: Array, R: Array, stabilizer: float = 0.0, form: str = "sign"
             ) -> tuple[Array, Array]:
    """R_i = sum_k [i -> k] / #{i' -> k} R_k over the receptive field; ``C`` is the 0/1 connectivity matrix."""
    Z = np.broadcast_to(C, (a.shape[0], *C.shape))
    return _distribute(Z, np.zeros(C.shape[1]), R, stabilizer, form)


def ref_rule(rule: Any, layer: Any, a: Array, R: Array, matrices: tuple[Array, Array, Array] | None = None
             ) -> tuple[Array, Array]:
    """Reference relevance of ``rule`` on ``layer``: returns (R_in shaped like ``a``, absorbed (N,)).

    ``matrices`` optionally passes ``(W, b, C)`` already computed by
    :func:`dense_matrix` and :func:`connectivity_matrix` for this layer and input shape.
    The rule's unset conventions are lrp_ref's defaults (``rule.resolved()``).
    """
    rule = rule.resolved()
    input_shape = a.shape[1:]
    if matrices is None:
        W, b = dense_matrix(layer, input_shape)
        C = connectivity_matrix(layer, input_shape)
    else:
        W, b, C = matrices
    a2 = a.reshape(a.shape[0], -1).astype(np.float64)
    R2 = R.reshape(R.shape[0], -1).astype(np.float64)
    eps, form = getattr(rule, "stabilizer", 0.0), getattr(rule, "form", "sign")
    if isinstance(rule, LRP0):
        out = ref_lrp0(W, b, a2, R2, eps, form)
    elif isinstance(rule, Epsilon):
        out = ref_epsilon(W, b, a2, R2, rule.epsilon, eps, rule.scale, form)
    elif isinstance(rule, Gamma):
        out = ref_gamma(W, b, a2, R2, rule.gamma, eps, rule.variant, form)
    elif isinstance(rule, AlphaBeta):
        out = ref_alphabeta(W, b, a2, R2, rule.alpha, rule.beta, eps, rule.bias, rule.split, form)
    elif isinstance(rule, ZPlus):
        out = ref_zplus(W, b, a2, R2, eps, rule.bias, rule.split, form)
    elif isinstance(rule, ZBox):
        low = np.broadcast_to(np.asarray(rule.low, dtype=np.float64), a.shape).reshape(a2.shape)
        high = np.broadcast_to(np.asarray(rule.high, dtype=np.float64), a.shape).reshape(a2.shape)
        out = ref_zbox(W, b, a2, R2, low, high, eps, form)
    elif isinstance(rule, WSquare):
        out = ref_wsquare(W, b, a2, R2, eps, rule.bias, form)
    elif isinstance(rule, Flat):
        out = ref_flat(C, b, a2, R2, eps, form)
    else:
        raise TypeError(f"no reference for rule {rule!r}")
    R_in, absorbed = out
    return R_in.reshape(a.shape), absorbed


# ----------------------------------------------------------------------------- beyond LRP: Excitation Backprop, RAP


def ref_excitation(W: Array, a: Array, R: Array) -> tuple[Array, Array]:
    """MWP (Zhang et al. 2016): P_j = sum_k P(j|k) P_k with P(j|k) = a_j w_jk+ / sum_j' a_j' w_j'k+.

    The conditional probability matrix is built explicitly; a parent without
    excitatory input (column sum 0) has no conditional distribution and its
    probability is dropped (returned as absorbed).  ``a`` must be >= 0.
    """
    excitatory = np.einsum("nj,jk->njk", a, np.maximum(W, 0.0))
    column = excitatory.sum(axis=1)  # (N, K): sum_j a_j w_jk+
    has_children = column > 0
    conditional = np.where(has_children[:, None, :], excitatory / np.where(has_children, column, 1.0)[:, None, :],
                           0.0)  # P(j|k), each column sums to 1 or is all zero
    P_in = np.einsum("njk,nk->nj", conditional, R)
    dropped = np.where(has_children, 0.0, R).sum(axis=1)
    return P_in, dropped


def ref_contrastive_excitation(W: Array, a: Array, R: Array) -> tuple[Array, Array]:
    """c-MWP's top layer: MWP through W minus MWP through the dual unit's weights -W.

    absorbed = what the target's map drops + the dual map's total (which is subtracted).
    """
    target, target_dropped = ref_excitation(W, a, R)
    dual, dual_dropped = ref_excitation(-W, a, R)
    return target - dual, target_dropped + (R.sum(axis=1) - dual_dropped)


def ref_absolute_influence(W: Array, a: Array, R: Array) -> tuple[Array, Array]:
    """RAP's output layer: R_j = sum_k |a_j w_jk| / sum_j' |a_j' w_j'k| R_k; bias unused."""
    return _distribute(np.abs(np.einsum("nj,jk->njk", a, W)), np.zeros(W.shape[1]), R, 0.0)


def ref_rap(W: Array, a: Array, R: Array) -> tuple[Array, Array]:
    """RAP on a hidden layer (Nam et al. 2020), from the message tensors.

    M1_jk = z+_jk / sum_j z+_jk R+_k,  M2_jk = |z-_jk| / sum_j |z-_jk| R-_k,  M3_jk = |z-_jk| / sum_j |z_jk| R_k;
    R~_j = sum_k (M1 + M2 + M3)_jk; S = the j with a non-zero message (by the signs of z_jk and R_k);
    R_j = R~_j - (sum R~ - sum R) / |S| on S (the authors' shift, which restores conservation), 0 elsewhere.
    Absorbed: all of R if S is empty, else nothing.
    """
    Z = np.einsum("nj,jk->njk", a, W)
    Z_pos, Z_neg_abs = np.maximum(Z, 0.0), -np.minimum(Z, 0.0)

    def per_unit(r: Array, total: Array) -> Array:
        """r_k / total_k where total_k > 0, else 0 (N, K): each message is a contribution times this."""
        return np.where(total > 0, r / np.where(total > 0, total, 1.0), 0.0)

    P, N = Z_pos.sum(axis=1), Z_neg_abs.sum(axis=1)
    f1 = per_unit(np.maximum(R, 0.0), P)        # M1_jk = z+_jk R+_k / P_k
    f2 = per_unit(np.minimum(R, 0.0), N)        # M2_jk = |z-_jk| R-_k / N_k
    f3 = per_unit(R, np.abs(Z).sum(axis=1))     # M3_jk = |z-_jk| R_k / sum_j |z_jk|
    R_tilde = np.einsum("njk,nk->nj", Z_pos, f1) + np.einsum("njk,nk->nj", Z_neg_abs, f2 + f3)
    message = ((Z_pos > 0) & (R[:, None, :] > 0)) | ((Z_neg_abs > 0) & (R[:, None, :] != 0))
    in_S = message.any(axis=2)  # (N, J)
    count = in_S.sum(axis=1)
    R_in = np.zeros_like(R_tilde)
    absorbed = np.zeros(a.shape[0])
    for n in range(a.shape[0]):
        if count[n] == 0:
            absorbed[n] = R[n].sum()
            continue
        shift = (R_tilde[n].sum() - R[n].sum()) / count[n]
        R_in[n] = np.where(in_S[n], R_tilde[n] - shift, 0.0)
    return R_in, absorbed


def ref_beyond_lrp(rule: Any, layer: Any, a: Array, R: Array, matrices: tuple[Array, Array] | None = None
                   ) -> tuple[Array, Array]:
    """Reference of an Excitation Backprop or RAP rule on ``layer``: (R_in shaped like ``a``, absorbed (N,))."""
    from lrp_ref.excitation import ContrastiveExcitation, ExcitationBackprop
    from lrp_ref.rap import RAP, AbsoluteInfluence

    W = dense_matrix(layer, a.shape[1:])[0] if matrices is None else matrices[0]
    a2 = a.reshape(a.shape[0], -1).astype(np.float64)
    R2 = R.reshape(R.shape[0], -1).astype(np.float64)
    table = {ExcitationBackprop: ref_excitation, ContrastiveExcitation: ref_contrastive_excitation,
             AbsoluteInfluence: ref_absolute_influence, RAP: ref_rap}
    R_in, absorbed = table[type(rule)](W, a2, R2)
    return R_in.reshape(a.shape), absorbed


def conv2d_matrix(layer: Conv2d, input_shape: tuple[int, ...]) -> Array:
    """``W`` (in_size, out_size) of a Conv2d by scattering its weights with explicit index arithmetic.

    Faster than :func:`dense_matrix`'s probing for large layers (the shipped CNN), and written
    independently of it: ``W[(g Cg + c, y sh + i dh - ph, x sw + j dw - pw), (o, y, x)] = weight[o, c, i, j]``
    for the positions inside the image.  Bias-free.
    """
    (sh, sw), (dh, dw) = _pair(layer.stride), _pair(layer.dilation)
    ph, pb, pw, pr = _sides(layer.padding)
    cin, height, width = (int(s) for s in input_shape)
    weight = np.asarray(layer.weight, dtype=np.float64)
    n_out, cg, kh, kw = weight.shape
    per_group = n_out // layer.groups
    oh, ow = _out_size(height, kh, sh, ph, dh, pb), _out_size(width, kw, sw, pw, dw, pr)
    W = np.zeros((cin, height, width, n_out, oh, ow))
    for o in range(n_out):
        g = o // per_group
        for y in range(oh):
            for xx in range(ow):
                for i in range(kh):
                    for j in range(kw):
                        row, col = y * sh + i * dh - ph, xx * sw + j * dw - pw
                        if 0 <= row < height and 0 <= col < width:
                            W[g * cg:(g + 1) * cg, row, col, o, y, xx] += weight[o, :, i, j]
    return W.reshape(cin * height * width, n_out * oh * ow)
