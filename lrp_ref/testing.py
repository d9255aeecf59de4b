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

**Max-pool ties: what to expect in float32.**  Max pooling is not continuous
where a window's maximum is tied: winner-takes-all hands the whole relevance
of the window to the winner, so moving one input by one ulp can move all of
it to another input.  Two inputs that are exactly equal in float64 are often
equal only because they were computed from equal numbers (flat regions of an
image); in float32 a different summation order, which depends on the BLAS
kernel and even on the CPU, can make them differ by one ulp.  The float64
oracle then splits the window's relevance (or gives it to the first arg-max)
while the float32 computation gives it to one winner, and the relevance
maps differ by far more than rounding: on the shipped digit ``images[1]``
with ``weights/mnist_cnn.h5`` and OpenBLAS's Haswell kernel, two such
windows at layer 2 give errors of 4.4e-4 (LRP-epsilon 0.25) to 1.4e-2 (z+)
of max|R|, for every rule.  That is not a bug on either side, and no tie
convention removes it (with ``ties="first"`` on both sides the float32 run
may pick the other winner).  So:

* :func:`find_near_ties` lists the max-pool windows whose maximum is tied
  *within the precision of* ``dtype``: inputs whose float64 gap is smaller
  than a few rounding errors of the computation that produced them, and
  the input positions whose relevance their routing can change;
* :func:`assert_relevance_close` with the oracle's :class:`~lrp_ref.Explanation`
  as ``desired`` and ``model=`` explains a failure by those windows
  ("the difference is confined to the receptive fields of N max-pool windows
  whose maximum is tied within float32 precision at layer L ..."), and with
  ``ties="allow"`` passes when some routing of the near-tied windows' relevance
  among their tied inputs reproduces ``actual`` within the tolerance.  The
  check is exact for ties at one max-pool layer (the relevance below a layer
  is linear in the relevance routed into it); ties at several layers are
  combined to first order.

Example::

    oracle = lrp_ref.explain(model, x, rules)                     # float64
    mine = my_float32_lrp(model, x, rules)
    assert_relevance_close(mine, oracle, dtype="float32", model=model, ties="allow")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from ._checks import check_dtype, describe_value, real_number, require_finite
from .errors import ArgumentError, RelevanceMismatchError
from .explain import Explanation
from .graph import Sequential
from .ties import NearTie, TieAnalysis, TieFit, _relevance_array, find_near_ties

__all__ = [
    "TOLERANCES",
    "NearTie",
    "TieAnalysis",
    "TieFit",
    "Tolerance",
    "assert_relevance_close",
    "find_near_ties",
    "relevance_error",
    "tolerance_for",
]

Array = NDArray[Any]


@dataclass(frozen=True)
class Tolerance:
    """``|actual - desired| <= atol + rtol * max|desired|``, element-wise."""

    rtol: float
    atol: float = 0.0


#: Tolerance of :func:`assert_relevance_close` by ``dtype`` name, relative to max|desired|.
TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-10),
    "float32": Tolerance(rtol=1e-4),
}


def tolerance_for(dtype: DTypeLike) -> Tolerance:
    """The default :class:`Tolerance` for a consumer computing in ``dtype`` (float32 or float64)."""
    name = check_dtype(dtype).name
    return TOLERANCES[name]


def relevance_error(actual: ArrayLike, desired: ArrayLike) -> tuple[float, float]:
    """``(max absolute error, max absolute error / max|desired|)``; shapes must match."""
    a = _relevance_array(actual, "actual")
    d = _relevance_array(desired, "desired")
    if a.shape != d.shape:
        raise RelevanceMismatchError(f"relevance shapes differ: actual {a.shape}, desired {d.shape}")
    require_finite(d, "desired")
    if a.size == 0:
        return 0.0, 0.0
    err = float(np.max(np.abs(a - d)))
    scale = float(np.max(np.abs(d)))
    return err, (err / scale if scale > 0 else (0.0 if err == 0 else np.inf))


# ----------------------------------------------------------------------------- the assertion


def assert_relevance_close(
    actual: ArrayLike,
    desired: ArrayLike | Explanation,
    dtype: DTypeLike = np.float64,
    rtol: float | None = None,
    atol: float | None = None,
    what: str = "relevance",
    *,
    model: Sequential | None = None,
    ties: Literal["report", "allow"] = "report",
    ulps: float = 4.0,
) -> None:
    """Raise :class:`~lrp_ref.errors.RelevanceMismatchError` unless ``actual`` matches ``desired``.

    The test is ``|actual - desired| <= atol + rtol * max|desired|`` element-wise.

    Parameters
    ----------
    actual : array-like
        The relevance to check (any real dtype).
    desired : array-like of the same shape, or Explanation
        The oracle's relevance, or its whole :class:`~lrp_ref.Explanation`
        (then its ``relevance`` is compared, and with ``model`` a failure is
        analysed for max-pool near-ties).
    dtype : float64 (default) or float32
        The floating type ``actual`` was computed in; picks the default
        tolerance and the precision near-ties are judged in.
    rtol, atol : float >= 0, optional
        Override the default tolerance.
    what : str
        Name used in the message.
    model : Sequential, optional
        The model of ``desired`` (an Explanation): enables the near-tie analysis.
    ties : "report" (default) or "allow"
        On a failure with ``model`` given, "report" explains it by the
        near-tied max-pool windows (see :func:`find_near_ties`) when they
        account for it; "allow" passes instead when some routing of the
        near-tied windows' relevance reproduces ``actual`` within the tolerance.
    ulps : float > 0, default 4
        Margin of the near-tie test, in units of ``dtype`` precision.

    Raises
    ------
    RelevanceMismatchError
        (an ``AssertionError``) if the relevances differ, with the largest
        difference, where it is, and what near-ties explain of it.
    ShapeError, NonFiniteError, LayerParameterError, ArgumentError
        On invalid arguments: complex, bool, string or object arrays, a NaN
        in ``desired``, an unknown dtype, a negative tolerance.
    """
    if not isinstance(what, str):
        raise ArgumentError(f"what must be a str; got {describe_value(what)}")
    tol = tolerance_for(dtype)
    rtol = tol.rtol if rtol is None else real_number(rtol, "rtol", ArgumentError, 0.0)
    atol = tol.atol if atol is None else real_number(atol, "atol", ArgumentError, 0.0)
    if not isinstance(ties, str) or ties not in ("report", "allow"):
        raise ArgumentError(f"ties must be 'report' or 'allow'; got {describe_value(ties)}")
    if model is not None and not isinstance(model, Sequential):
        raise ArgumentError(f"model must be an lrp_ref.Sequential or None; got {type(model).__name__}")
    oracle = desired if isinstance(desired, Explanation) else None
    if ties == "allow" and (oracle is None or model is None):
        raise ArgumentError("ties='allow' needs the oracle's Explanation as desired and model=")
    a = _relevance_array(actual, "actual")
    d = _relevance_array(oracle.relevance if oracle is not None else desired, "desired")
    if a.shape != d.shape:
        raise RelevanceMismatchError(f"{what}: relevance shapes differ: actual {a.shape}, desired {d.shape}")
    require_finite(d, "desired")
    if not np.all(np.isfinite(a)):
        raise RelevanceMismatchError(f"{what}: actual holds {int((~np.isfinite(a)).sum())} non-finite value(s)")
    err, rel = relevance_error(a, d)
    scale = float(np.max(np.abs(d))) if d.size else 0.0
    bound = atol + rtol * scale
    if err <= bound:
        return
    worst: Any = np.unravel_index(int(np.argmax(np.abs(a - d))), d.shape)
    message = (
        f"{what} differs: max |actual - desired| = {err:.3e} at index {tuple(int(i) for i in worst)} "
        f"(actual {a[worst]:.10g}, desired {d[worst]:.10g}); that is {rel:.3e} of max|desired| = {scale:.3e}, "
        f"allowed {bound:.3e} (rtol {rtol:g}, atol {atol:g})"
    )
    if oracle is not None and model is not None:
        analysis = find_near_ties(model, oracle, dtype, ulps)
        verdict, explained = _tie_verdict(analysis, a, d, bound, scale)
        if explained and ties == "allow":
            return
        message += "\n" + verdict
    else:
        message += ("\n(if the model has max pooling, pass the oracle's Explanation as desired and model= "
                    "to check whether max-pool ties explain the difference)")
    raise RelevanceMismatchError(message)


def _tie_verdict(analysis: TieAnalysis, a: Array, d: Array, bound: float, scale: float) -> tuple[str, bool]:
    """The near-tie paragraph of a failure message, and whether re-routing explains the difference."""
    name = analysis.dtype.name
    if not analysis.ties:
        return (f"no max-pool window is tied within {analysis.ulps:g} ulp of {name} precision, "
                "so max-pool ties do not explain this difference", False)
    fit = analysis.fit(a, bound)
    excess = np.abs(a - d) > bound
    confined = bool(np.all(fit.affected[excess])) if fit.moved else False
    outside = float(np.max(np.abs(a - d)[~analysis.affected])) if np.any(~analysis.affected) else 0.0
    rel = fit.residual / scale if scale > 0 else 0.0
    layers = sorted({t.layer for t in fit.moved})
    where = ", ".join(f"layer {L}" for L in layers)
    windows = analysis.describe(fit.moved)
    if fit.residual <= bound and fit.moved:
        head = (f"the difference is confined to the receptive fields of {len(fit.moved)} max-pool window(s) whose "
                f"maximum is tied within {name} precision at {where}" if confined else
                f"the difference is explained by {len(fit.moved)} max-pool window(s) whose maximum is tied within "
                f"{name} precision at {where}")
        return (f"{head} ({len(analysis.ties)} near-tied window(s) in all):\n{windows}\n"
                f"routing their relevance among their tied inputs reproduces actual to {rel:.3e} of max|desired| "
                f"(allowed {bound / scale if scale else 0.0:.3e}): the {name} computation broke a tie that float64 "
                "keeps, or the reverse. No tie convention removes this (with ties='first' on both sides the "
                f"{name} run may pick the other winner); pass ties='allow' to accept it, or exclude these "
                "positions (find_near_ties(model, oracle).affected)", True)
    return (f"{len(analysis.ties)} max-pool window(s) are tied within {name} precision "
            f"({', '.join(f'layer {L}' for L in analysis.layers())}), but the best routing of their relevance "
            f"still leaves {rel:.3e} of max|desired|, and the difference outside the positions they affect is "
            f"{outside / scale if scale else 0.0:.3e} of max|desired|: max-pool ties do not explain it", False)
