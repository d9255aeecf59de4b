"""Sliding windows over NCHW images, and their adjoint.

Convolution and pooling are both "look at every window, combine its values".
All of them are written here with one idea: a window of ``kh x kw`` values
seen at every output position is ``kh * kw`` *shifted copies* of the image.
For the kernel offset ``(i, j)``, the values that sit at that offset of every
window are one strided slice of the (padded) image::

    x[:, :, i*dh : ... : sh,  j*dw : ... : sw]      shape (N, C, OH, OW)

(:func:`offsets` gives these slices).  So every loop below runs over the
``kh * kw`` kernel offsets and handles all windows, channels and samples of
an offset with one array operation; nothing loops over output positions.

* :func:`im2col` stacks the shifted slices into the window matrix of a
  convolution, in the layout that makes the convolution one matrix product;
  :func:`col2im` is its exact adjoint (it adds each window's values back to
  the pixels they came from).
* Pooling combines the shifted slices element-wise (maximum, weighted sum)
  without building any window matrix (see :mod:`lrp_ref.layers`).

The window matrix of a large image is big (for a 3x3 convolution, nine times
the input), so convolutions build it in blocks of samples and output rows
(:func:`blocks`) that hold at most :data:`BLOCK_BYTES` each, reusing one
buffer: memory stays bounded whatever the batch and image size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _threads

Pair = tuple[int, int]
#: Padding of the two spatial axes: ``(rows, cols)`` on both sides, or ``(top, bottom, left, right)``.
Padding = tuple[int, int] | tuple[int, int, int, int]
Array = NDArray[Any]

#: Upper bound of the window matrix (im2col) held at once, in bytes.  Measured on
#: VGG-16 layers (2 cores, OpenBLAS): 8 to 32 MiB blocks run as fast as the whole
#: matrix or faster (they stay closer to the caches); 64 MiB and more is slower.
BLOCK_BYTES = 16 * 2**20


def output_size(size: int, kernel: int, stride: int, padding: int | Pair, dilation: int) -> int:
    """Number of window positions along one axis (PyTorch's formula, floor mode).

    ``padding`` is added on both sides (an int) or is ``(before, after)``.
    """
    before, after = (padding, padding) if isinstance(padding, int) else padding
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


def sides(padding: Padding) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of a padding given as ``(rows, cols)`` or already as four sides."""
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    top, bottom, left, right = padding
    return top, bottom, left, right


def offsets(
    kernel: Pair, stride: Pair, dilation: Pair, rows: Pair, n_cols: int
) -> Iterator[tuple[int, int, slice, slice]]:
    """For every kernel offset ``(i, j)``: the slices of a padded image holding that offset of each window.

    ``rows = (y0, y1)`` selects the output rows ``y0 <= y < y1``; ``n_cols``
    is the number of output columns.  ``x[:, :, row_slice, col_slice]`` then
    has shape (N, C, y1 - y0, n_cols): element ``[n, c, y - y0, x]`` is the
    value at offset ``(i, j)`` of window ``(y, x)``.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    y0, y1 = rows
    for i in range(kh):
        row_slice = slice(y0 * sh + i * dh, (y1 - 1) * sh + i * dh + 1, sh)
        for j in range(kw):
            yield i, j, row_slice, slice(j * dw, (n_cols - 1) * sw + j * dw + 1, sw)


def blocks(n: int, n_rows: int, row_bytes: int, budget: int | None = None) -> Iterator[tuple[int, int, int, int]]:
    """Split (samples, output rows) into blocks ``(n0, n1, y0, y1)`` of at most ``budget`` bytes.

    ``row_bytes`` is the size of the window matrix of one output row of one
    sample.  Whole samples are grouped while they fit (small images, large
    batches); a sample too large for the budget is cut into blocks of rows.
    A block holds at least one row, whatever the budget (default :data:`BLOCK_BYTES`).
    """
    budget = BLOCK_BYTES if budget is None else budget
    sample_bytes = n_rows * row_bytes
    if sample_bytes <= budget:
        step = max(1, budget // sample_bytes)
        for n0 in range(0, n, step):
            yield n0, min(n, n0 + step), 0, n_rows
    else:
        step = max(1, budget // row_bytes)
        for k in range(n):
            for y0 in range(0, n_rows, step):
                yield k, k + 1, y0, min(n_rows, y0 + step)


def block_size(n: int, n_rows: int, row_bytes: int, budget: int | None = None) -> int:
    """Largest number of (sample, row) pairs in one block of :func:`blocks`."""
    return max((n1 - n0) * (y1 - y0) for n0, n1, y0, y1 in blocks(n, n_rows, row_bytes, budget))


def im2col(xp: Array, kernel: Pair, stride: Pair, dilation: Pair, rows: Pair, n_cols: int, buffer: Array) -> Array:
    """Window matrix of the output rows ``rows`` of an already padded ``xp`` (N, C, H, W).

    Returns (N, C * kh * kw, R * OW) with ``R = y1 - y0``: column ``y * OW + x``
    holds window ``(y0 + y, x)``, its rows are ordered ``(c, i, j)`` like a
    Conv2d weight (out, C, kh, kw) reshaped to (out, C * kh * kw), so the
    convolution of these rows is ``weight.reshape(out, -1) @ im2col(...)``.
    ``buffer`` is flat scratch space of at least that size (overwritten; the
    result is a view of it).
    """
    n, c = xp.shape[:2]
    kh, kw = kernel
    n_rows = rows[1] - rows[0]
    if (kh, kw) == (1, 1) and stride == (1, 1) and n_cols == xp.shape[3]:
        # a 1x1 window with stride 1 is the image itself: no copy
        return xp[:, :, rows[0] : rows[1], :].reshape(n, c, n_rows * n_cols)
    cols = buffer[: n * c * kh * kw * n_rows * n_cols].reshape(n, c, kh, kw, n_rows, n_cols)
    # every window at once: a read-only strided view (N, C, kh, kw, R, OW) of xp whose element
    # [n, c, i, j, y, x] is xp[n, c, (y0 + y) sh + i dh, x sw + j dw] (the slices of offsets(), stacked)
    (sh, sw), (dh, dw) = stride, dilation
    s_n, s_c, s_h, s_w = xp.strides
    start = xp[:, :, rows[0] * sh :, :]
    windows = np.lib.stride_tricks.as_strided(
        start, (n, c, kh, kw, n_rows, n_cols), (s_n, s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w), writeable=False)

    def copy(index: tuple[slice, ...]) -> None:  # blocks of samples (or channels) on the threads of _threads
        np.copyto(cols[index], windows[index])

    _threads.run_blocks(copy, cols.shape)
    return cols.reshape(n, c * kh * kw, n_rows * n_cols)


def col2im(cols: Array, grad: Array, kernel: Pair, stride: Pair, dilation: Pair, rows: Pair, n_cols: int) -> None:
    """Adjoint of :func:`im2col`: add the window values ``cols`` (N, C * kh * kw, R * OW) onto ``grad``.

    ``grad`` (N, C, H, W) is the padded image the windows were taken from; it
    is updated in place.  Pixels shared by overlapping windows add up.
    """
    n, c = grad.shape[:2]
    kh, kw = kernel
    n_rows = rows[1] - rows[0]
    cols6 = cols.reshape(n, c, kh, kw, n_rows, n_cols)
    shifts = list(offsets(kernel, stride, dilation, rows, n_cols))

    def add(index: tuple[slice, ...]) -> None:  # blocks of samples (or channels): disjoint parts of grad
        dst, src = grad[index], cols6[index]
        for i, j, row_slice, col_slice in shifts:
            dst[:, :, row_slice, col_slice] += src[:, :, i, j]

    _threads.run_blocks(add, cols6.shape)


def pad(x: Array, padding: Padding, value: float = 0.0) -> Array:
    """Pad the two spatial axes of an NCHW array (no copy when padding is zero).

    ``padding`` is ``(rows, cols)`` (both sides alike) or ``(top, bottom, left, right)``.
    """
    top, bottom, left, right = sides(padding)
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def crop(x: Array, padding: Padding) -> Array:
    """Inverse of :func:`pad` on the spatial axes."""
    top, bottom, left, right = sides(padding)
    h, w = x.shape[2], x.shape[3]
    return x[:, :, top : h - bottom, left : w - right]


# ----------------------------------------------------------------------------- rectangular bins
#
# Pools whose windows are not one kernel slid at one stride (adaptive pooling), or
# whose windows are clipped to the image (average pooling that does not count the
# padding) are written with bins: along each axis, output i sums the half-open
# interval [start_i, stop_i) of the input.  The bins of the two axes make the
# rectangle of each output.


def adaptive_bins(size: int, n_out: int) -> tuple[tuple[int, int], ...]:
    """PyTorch's adaptive pooling bins: ``[floor(i size / n_out), ceil((i + 1) size / n_out))`` for every output i."""
    return tuple(((i * size) // n_out, -((-(i + 1) * size) // n_out)) for i in range(n_out))


def window_bins(size: int, n_out: int, kernel: int, stride: int, before: int) -> tuple[tuple[int, int], ...]:
    """The windows of a pooling along one axis, clipped to the image: ``[i s - p, i s - p + k) ∩ [0, size)``.

    ``before`` is the padding before the image (top or left).  Every window
    must hold a pixel of the image (padding at most ``kernel - 1`` per side).
    """
    return tuple((max(i * stride - before, 0), min(i * stride - before + kernel, size)) for i in range(n_out))


def bin_matrix(bins: tuple[tuple[int, int], ...], size: int, dtype: Any) -> Array:
    """The 0/1 membership matrix (n_bins, size) of the bins: entry ``[i, r]`` is 1 if ``start_i <= r < stop_i``."""
    m = np.zeros((len(bins), size), dtype)
    for i, (start, stop) in enumerate(bins):
        m[i, start:stop] = 1
    return m
