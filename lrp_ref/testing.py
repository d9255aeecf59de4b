"""Helpers for implementers who check their LRP numbers against lrp_ref.

Relevance maps are compared *relative to their largest magnitude*: an error
of 1e-12 on a map whose largest entry is 1e-3 means something different from
the same error on a map whose largest entry is 1e3, and individual entries can
be exactly zero.  So the test is

.. math:: |actual - desired| \\le atol + rtol \\cdot \\max|desired|

element-wise, with tolerances chosen by the consumer's floating-point type:

=========  ======  ======================================================
dtype      rtol    meaning
=========  ======  ======================================================
float64    1e-10   same model, same rule, float64 (the oracle's claim is
                   ~1e-12; 1e-10 leaves room for a different BLAS and
                   summation order)
float32    1e-4    an implementation computing in float32 against the
                   float64 oracle
=========  ======  ======================================================

Example::

    from lrp_ref.testing import assert_relevance_close
    assert_relevance_close(my_relevance, oracle.relevance, dtype="float32")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = ["TOLERANCES", "Tolerance", "assert_relevance_close", "relevance_error", "tolerance_for"]


@dataclass(frozen=True)
class Tolerance:
    """``|actual - desired| <= atol + rtol * max|desired|``, element-wise."""

    rtol: float
    atol: float = 0.0


TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-10),
    "float32": Tolerance(rtol=1e-4),
}


def tolerance_for(dtype: DTypeLike) -> Tolerance:
    """The default :class:`Tolerance` for a consumer computing in ``dtype``."""
    name = np.dtype(dtype).name
    if name not in TOLERANCES:
        raise ValueError(f"no default tolerance for dtype {name}; known: {', '.join(TOLERANCES)}")
    return TOLERANCES[name]


def relevance_error(actual: ArrayLike, desired: ArrayLike) -> tuple[float, float]:
    """``(max absolute error, max absolute error / max|desired|)``; shapes must match."""
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    if a.shape != d.shape:
        raise AssertionError(f"relevance shapes differ: actual {a.shape}, desired {d.shape}")
    if a.size == 0:
        return 0.0, 0.0
    err = float(np.max(np.abs(a - d)))
    scale = float(np.max(np.abs(d)))
    return err, (err / scale if scale > 0 else (0.0 if err == 0 else np.inf))


def assert_relevance_close(
    actual: ArrayLike,
    desired: ArrayLike,
    dtype: DTypeLike = np.float64,
    rtol: float | None = None,
    atol: float | None = None,
    what: str = "relevance",
) -> None:
    """Raise ``AssertionError`` unless ``actual`` matches ``desired`` relative to ``max|desired|``.

    Parameters
    ----------
    actual, desired : array-like of one shape
    dtype : the floating type ``actual`` was computed in; picks the default tolerance
    rtol, atol : override the default tolerance
    what : name used in the message
    """
    tol = tolerance_for(dtype)
    rtol = tol.rtol if rtol is None else rtol
    atol = tol.atol if atol is None else atol
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise AssertionError(f"{what}: actual holds {int((~np.isfinite(a)).sum())} non-finite value(s)")
    err, rel = relevance_error(a, d)
    scale = float(np.max(np.abs(d))) if d.size else 0.0
    bound = atol + rtol * scale
    if err > bound:
        worst: Any = np.unravel_index(int(np.argmax(np.abs(a - d))), d.shape)
        raise AssertionError(
            f"{what} differs: max |actual - desired| = {err:.3e} at index {tuple(int(i) for i in worst)} "
            f"(actual {a[worst]:.10g}, desired {d[worst]:.10g}); that is {rel:.3e} of max|desired| = {scale:.3e}, "
            f"allowed {bound:.3e} (rtol {rtol:g}, atol {atol:g})"
        )
