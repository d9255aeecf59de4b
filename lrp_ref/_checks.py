"""Validation helpers shared by layers, rules, the explain driver and :mod:`lrp_ref.testing`.

Every public constructor and function checks its arguments with these, so
that a bad argument is refused the same way everywhere: an
:class:`~lrp_ref.errors.LrpRefError` subclass whose message names the
parameter, says what was expected and what was found.  Nothing is converted
silently: a bool is not taken as 1, a string is not parsed as a number, a
complex value is refused instead of losing its imaginary part, and sizes are
Python ints checked against the limits below, so no shape product can wrap
around int64.

Limits (generous for real networks, small enough that no shape arithmetic
or allocation can go astray):

* :data:`MAX_EXTENT`: stride, padding and dilation along one axis, 2**16;
* :data:`MAX_KERNEL`: a pooling window's side, 2**12;
* :data:`MAX_ELEMENTS`: elements of one sample at any layer boundary (and of
  a padded image), 2**31.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .errors import LayerParameterError, LrpRefError, NonFiniteError, ShapeError

__all__ = [
    "MAX_ELEMENTS",
    "MAX_EXTENT",
    "MAX_KERNEL",
    "as_float_array",
    "check_dtype",
    "check_int",
    "describe_value",
    "element_count",
    "is_int",
    "pair",
    "real_array",
    "real_number",
    "require_finite",
]

#: Largest stride, padding or dilation along one axis.
MAX_EXTENT = 2**16
#: Largest side of a pooling window (kernel_size).
MAX_KERNEL = 2**12
#: Largest number of elements of one sample at a layer boundary, or of one padded image.
MAX_ELEMENTS = 2**31

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

ErrorClass = type[LrpRefError]


def describe_value(value: Any) -> str:
    """A short description of ``value`` for error messages: ``'a' (str)``, ``array of complex128, shape (3,)``."""
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype} with shape {value.shape}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers; False for bools (``True`` is not the size 1)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(value: Any, what: str, minimum: int, maximum: int | None = None,
              error: ErrorClass = LayerParameterError) -> int:
    """``int(value)`` if ``value`` is an integer (not a bool) in ``[minimum, maximum]``, else raise ``error``."""
    if not is_int(value):
        raise error(f"{what} must be an int; got {describe_value(value)}")
    v = int(value)
    if v < minimum or (maximum is not None and v > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise error(f"{what} must be {bound}; got {v}")
    return v


def real_number(value: Any, what: str, error: ErrorClass, minimum: float | None = None) -> float:
    """``float(value)`` for a finite real number (not a bool, str or complex) at least ``minimum``."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise error(f"{what} must be a real number; got {describe_value(value)}")
    try:
        v = float(value)
    except (OverflowError, ValueError, TypeError):
        v = math.inf
    if not math.isfinite(v) or (minimum is not None and v < minimum):
        bound = "" if minimum is None else f" >= {minimum:g}"
        raise error(f"{what} must be a finite number{bound}; got {value!r}")
    return v


def check_dtype(dtype: DTypeLike, what: str = "dtype") -> np.dtype[Any]:
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise :class:`LayerParameterError`."""
    if dtype is None:
        raise LayerParameterError(f"lrp_ref computes in float32 or float64; got {what} None")
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise LayerParameterError(
            f"lrp_ref computes in float32 or float64; got {what} {describe_value(dtype)}, not a NumPy dtype: {exc}"
        ) from None
    if dt not in SUPPORTED_DTYPES:
        raise LayerParameterError(f"lrp_ref computes in float32 or float64; got {what} {dt}")
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


def real_array(x: Any, what: str, error: ErrorClass = ShapeError) -> NDArray[Any]:
    """``x`` as an array of real numbers (ints or floats), not yet cast; anything else raises ``error``.

    Refused: bools, complex numbers (their imaginary part would be lost),
    strings (they would be parsed), ``None``, object arrays (mixed types, or
    integers beyond int64) and ragged nested lists.
    """
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError, OverflowError) as exc:
        raise error(f"{what} must be a real numeric array; got {type(x).__name__}: {exc}") from None
    if arr.dtype.kind not in "iuf":
        kinds = {"b": "bools", "c": "complex numbers (the imaginary part would be lost)", "U": "strings",
                 "S": "bytes", "O": "Python objects (None, mixed types, or ints beyond int64)"}
        found = kinds.get(arr.dtype.kind, f"dtype {arr.dtype}")
        shown = describe_value(x) if not isinstance(x, np.ndarray) else f"dtype {arr.dtype}, shape {arr.shape}"
        raise error(f"{what} must be a real numeric array (ints or floats); got {found}: {shown}")
    return arr


def as_float_array(x: Any, what: str, dtype: DTypeLike, ndim: int | None = None, nonempty: bool = False,
                   error: ErrorClass = ShapeError) -> NDArray[Any]:
    """Convert ``x`` to a finite array of ``dtype``, a copy (optionally of rank ``ndim``, and not empty).

    Values that are finite but overflow ``dtype`` (beyond the float32 range)
    are refused with :class:`NonFiniteError`, never turned into inf.
    """
    dt = check_dtype(dtype)
    src = real_array(x, what, error)
    if ndim is not None and src.ndim != ndim:
        raise error(f"{what} must have {ndim} dimensions; got shape {src.shape}")
    if nonempty and src.size == 0:
        raise error(f"{what} must not be empty; got shape {src.shape}")
    require_finite(src, what)
    with np.errstate(over="ignore"):
        arr = np.array(src, dtype=dt, copy=True)
    if not np.all(np.isfinite(arr)):
        big = float(np.max(np.abs(src.astype(np.float64))))
        raise NonFiniteError(f"{what} has {int((~np.isfinite(arr)).sum())} value(s) beyond the {dt} range "
                             f"(largest magnitude {big:.3g}, {dt} holds up to {float(np.finfo(dt).max):.3g})")
    return arr


def pair(value: Any, what: str, minimum: int, maximum: int = MAX_EXTENT) -> tuple[int, int]:
    """Normalise an int or a pair of ints to a pair of Python ints, each in ``[minimum, maximum]``."""
    if is_int(value):
        out = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        out = (int(value[0]), int(value[1]))
    else:
        raise LayerParameterError(f"{what} must be an int or a pair of ints; got {describe_value(value)}")
    if min(out) < minimum:
        raise LayerParameterError(f"{what} must be >= {minimum}; got {value!r}")
    if max(out) > maximum:
        raise LayerParameterError(f"{what} must be at most {maximum}; got {value!r}")
    return out


def element_count(shape: Iterable[int], what: str) -> int:
    """The number of elements of ``shape`` as a Python int; :class:`ShapeError` beyond :data:`MAX_ELEMENTS`."""
    dims = tuple(int(n) for n in shape)
    n = math.prod(dims)
    if n > MAX_ELEMENTS:
        raise ShapeError(f"{what} would have shape {dims} = {n:.3g} elements per sample, "
                         f"beyond the limit of {MAX_ELEMENTS} (2**31)")
    return n
