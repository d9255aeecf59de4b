"""Compare another implementation's relevances with the oracle's, layer by layer.

Give the relevance your implementation computed at the input, or at several
layer boundaries (boundary ``i`` is the input of layer ``i``; boundary ``L``
the start relevance).  :func:`compare` reports the maximum absolute and
relative error at each boundary, the first layer (scanning from the output
down, the direction relevance flows) whose result departs from the oracle,
and, if the numbers match another convention profile, which one: most
differences between LRP implementations are conventions, not bugs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .composites import Composite
from .explain import Explanation, explain
from .graph import Graph
from .rules import Rule
from .testing import relevance_error, tolerance_for

__all__ = ["BoundaryDiff", "Comparison", "compare"]

Array = NDArray[Any]


@dataclass(frozen=True)
class BoundaryDiff:
    """How the candidate's relevance at one layer boundary compares with the oracle's."""

    boundary: int
    shape_ok: bool
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`; ``str(comparison)`` is a readable report."""

    diffs: tuple[BoundaryDiff, ...]
    layer_names: tuple[str, ...]
    rtol: float
    first_divergence: int | None
    matching_profile: str | None
    profile_note: str | None
    profile: str

    @property
    def ok(self) -> bool:
        """True when every given boundary matches the oracle."""
        return all(d.ok for d in self.diffs)

    def report(self) -> str:
        lines = [f"{'boundary':>8}  {'entering layer':<34} {'max |diff|':>11} {'relative':>10}  status"]
        for d in sorted(self.diffs, key=lambda d: -d.boundary):
            name = self.layer_names[d.boundary] if d.boundary < len(self.layer_names) else "(start relevance)"
            status = "ok" if d.ok else ("SHAPE" if not d.shape_ok else "DIFFERS")
            lines.append(f"{d.boundary:>8}  {name[:34]:<34} {d.max_abs:>11.3e} {d.max_rel:>10.3e}  {status} {d.note}")
        if self.ok:
            lines.append(f"all {len(self.diffs)} boundaries match the oracle (profile {self.profile}) "
                         f"within {self.rtol:g} of max|R|")
            return "\n".join(lines)
        if self.first_divergence is not None:
            k = self.first_divergence
            if k == len(self.layer_names):
                lines.append("the start relevance differs: check the target, the model output (forward pass) "
                             "and the start convention (logit * one-hot or one-hot)")
            else:
                lines.append(f"first divergence: layer {k} ({self.layer_names[k]}): its input relevance differs "
                             f"while the relevance it received matches, so look at this layer's backward pass")
        if self.matching_profile is not None:
            lines.append(f"matches profile {self.matching_profile}: {self.profile_note}")
        else:
            lines.append("no convention profile explains the difference")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


def _diff(boundary: int, candidate: Array, oracle: Array, rtol: float) -> BoundaryDiff:
    candidate = np.asarray(candidate)
    if candidate.shape != oracle.shape:
        note = f"shape {candidate.shape}, oracle {oracle.shape} (a stride, padding or kernel size differs?)"
        return BoundaryDiff(boundary, False, np.inf, np.inf, False, note)
    if not np.all(np.isfinite(candidate)):
        return BoundaryDiff(boundary, True, np.inf, np.inf, False, "non-finite values")
    err, rel = relevance_error(candidate, oracle)
    return BoundaryDiff(boundary, True, err, rel, rel <= rtol)


def _matches(candidate: Mapping[int, Array], oracle: Explanation, rtol: float) -> bool:
    return all(_diff(k, v, oracle.layers[k], rtol).ok for k, v in candidate.items())


def compare(
    model: Graph,
    x: Any,
    rules: Rule | Composite | Sequence[Rule | None],
    candidate: Mapping[int, Any] | Any,
    target: Any = None,
    profile: str = "lrp_ref",
    rtol: float | None = None,
    dtype: Any = np.float64,
) -> Comparison:
    """Compare a candidate's relevances with the oracle's.

    Parameters
    ----------
    model, x, rules, target, profile
        As for :func:`lrp_ref.explain`: the configuration the candidate claims to compute.
    candidate : array or mapping {boundary index: array}
        The candidate's relevance at the input (an array), or at several boundaries.
    rtol : float, optional
        Allowed error relative to the oracle's max|R| at each boundary; default from
        :func:`lrp_ref.testing.tolerance_for` and ``dtype`` (the candidate's precision).
    """
    given: dict[int, Array] = (
        {int(k): np.asarray(v) for k, v in candidate.items()} if isinstance(candidate, Mapping)
        else {0: np.asarray(candidate)}
    )
    n_layers = len(model)
    bad = [k for k in given if not 0 <= k <= n_layers]
    if bad:
        raise ValueError(f"candidate boundaries must lie in 0..{n_layers} (0 = input, {n_layers} = start); got {bad}")
    tol = tolerance_for(dtype).rtol if rtol is None else rtol
    oracle = explain(model, x, rules, target=target, profile=profile)
    diffs = tuple(_diff(k, v, oracle.layers[k], tol) for k, v in sorted(given.items()))
    first = None
    wrong = sorted((d.boundary for d in diffs if not d.ok), reverse=True)
    if wrong:
        first = wrong[0]
    matching = note = None
    if wrong:
        from .profiles import PROFILES  # the alternatives a difference may come from

        for name, prof in PROFILES.items():
            if name == profile:
                continue
            if _matches(given, explain(model, x, rules, target=target, profile=name), tol):
                matching, note = name, prof.summary
                break
    names = tuple(f"{i} {layer.describe()}" for i, layer in enumerate(model))
    return Comparison(diffs, names, tol, first, matching, note, profile)
