"""Small validation helpers shared by layers, rules and the explain driver."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .errors import LayerParameterError, NonFiniteError, ShapeError

__all__ = ["as_float_array", "check_dtype", "pair", "require_finite"]

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype: DTypeLike) -> np.dtype[Any]:
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise."""
    dt = np.dtype(dtype)
    if dt not in SUPPORTED_DTYPES:
        raise LayerParameterError(f"lrp_ref computes in float32 or float64; got dtype {dt}")
    return dt


def require_finite(x: NDArray[Any], what: str) -> None:
    """Raise :class:`NonFiniteError` naming ``what`` if ``x`` holds NaN or inf."""
    if not np.all(np.isfinite(x)):
        n_nan = int(np.isnan(x).sum())
        n_inf = int(np.isinf(x).sum())
        raise NonFiniteError(
            f"{what} must be finite; found {n_nan} NaN and {n_inf} inf value(s) "
            f"among {x.size}"
        )


def as_float_array(x: Any, what: str, dtype: DTypeLike, ndim: int | None = None) -> NDArray[Any]:
    """Convert ``x`` to a finite array of ``dtype`` (optionally of rank ``ndim``)."""
    try:
        arr = np.array(x, dtype=check_dtype(dtype), copy=True)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{what} must be a numeric array; got {type(x).__name__}: {exc}") from exc
    if ndim is not None and arr.ndim != ndim:
        raise ShapeError(f"{what} must have {ndim} dimensions; got shape {arr.shape}")
    require_finite(arr, what)
    return arr


def pair(value: int | tuple[int, int] | list[int], what: str, minimum: int) -> tuple[int, int]:
    """Normalise an int or a pair of ints to a pair, each at least ``minimum``."""
    def is_int(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if is_int(value):
        out = (int(value), int(value))  # type: ignore[arg-type]
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        out = (int(value[0]), int(value[1]))
    else:
        raise LayerParameterError(f"{what} must be an int or a pair of ints; got {value!r}")
    if min(out) < minimum:
        raise LayerParameterError(f"{what} must be >= {minimum}; got {value!r}")
    return out
