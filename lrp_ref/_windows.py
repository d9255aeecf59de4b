"""Sliding windows over NCHW images, and their adjoint (fold).

Convolution and pooling are both "look at every window, combine its values".
``windows`` returns a strided *view* of shape (N, C, OH, OW, kh, kw) without
copying; ``fold`` is its exact adjoint: it adds each window's values back to
the pixels the window came from.  Both loop only over the kh*kw kernel
offsets, never over output positions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

Pair = tuple[int, int]


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Number of window positions along one axis (PyTorch's formula, floor mode)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def windows(x: NDArray[Any], kernel: Pair, stride: Pair, dilation: Pair) -> NDArray[Any]:
    """View (N, C, OH, OW, kh, kw) of the windows of an already padded ``x``."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    extent = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    view = sliding_window_view(x, extent, axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


def fold(cols: NDArray[Any], padded_shape: tuple[int, ...], stride: Pair, dilation: Pair) -> NDArray[Any]:
    """Adjoint of :func:`windows`: sum window values (N, C, OH, OW, kh, kw) back onto pixels."""
    _, _, oh, ow, kh, kw = cols.shape
    (sh, sw), (dh, dw) = stride, dilation
    out = np.zeros(padded_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
            columns = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
            out[:, :, rows, columns] += cols[:, :, :, :, i, j]
    return out


def pad(x: NDArray[Any], padding: Pair, value: float = 0.0) -> NDArray[Any]:
    """Pad the two spatial axes of an NCHW array (no copy when padding is zero)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def crop(x: NDArray[Any], padding: Pair) -> NDArray[Any]:
    """Inverse of :func:`pad` on the spatial axes."""
    ph, pw = padding
    h, w = x.shape[2], x.shape[3]
    return x[:, :, ph : h - ph, pw : w - pw]
