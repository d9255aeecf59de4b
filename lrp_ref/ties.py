"""Near-ties in max pooling: where float32 and float64 may pick different winners, and how much that moves.

Winner-takes-all max pooling is discontinuous where two inputs of a window
tie: one ulp decides which takes the window's relevance.  An implementation
computing in float32 can break a tie that the float64 oracle keeps (or the
other way round), and its relevance then differs by far more than rounding.
:func:`find_near_ties` finds the windows of a :class:`~lrp_ref.graph.Sequential`
whose top inputs lie within the rounding error of the sums that produced
them, and :meth:`TieAnalysis.fit` says whether re-routing their relevance
explains a difference.  :func:`lrp_ref.testing.assert_relevance_close` uses it
(``model=..., ties="report" | "allow"``); the names are importable from
:mod:`lrp_ref.testing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _windows
from ._checks import check_dtype, real_array, real_number
from .errors import ArgumentError, RelevanceMismatchError, ShapeError
from .explain import Explanation
from .graph import Sequential
from .layers import Flatten, LinearLayer, MaxPool2d, ReLU
from .rules import WinnerTakesAll

__all__ = ["NearTie", "TieAnalysis", "TieFit", "find_near_ties"]

Array = NDArray[Any]


def _relevance_array(x: Any, what: str) -> Array:
    """A real array as float64; bools, strings, complex values and objects are refused."""
    return real_array(x, what).astype(np.float64)


@dataclass(frozen=True)
class NearTie:
    """A max-pool window whose maximum is tied within the precision of a floating type.

    Attributes
    ----------
    layer : int
        Index of the ``MaxPool2d`` layer in the model.
    sample, channel : int
    window : (int, int)
        Position (row, column) of the window in the layer's output.
    inputs : tuple of (int, int)
        Positions (row, column) in the layer's input of the window's near-tied
        inputs, the float64 maximum first.
    values : tuple of float
        Their float64 values.
    gap : float
        Largest float64 gap between the maximum and a near-tied input, in
        units of the float type's precision of the computation (see
        :func:`find_near_ties`); 0 for an exact tie.
    relevance : float
        The relevance the oracle routes through the window.
    """

    layer: int
    sample: int
    channel: int
    window: tuple[int, int]
    inputs: tuple[tuple[int, int], ...]
    values: tuple[float, ...]
    gap: float
    relevance: float

    def describe(self) -> str:
        """``sample 0, channel 3, window (5, 7): inputs (10, 14) (10, 15) tied (gap 0 ulp)``."""
        where = " ".join(f"({i}, {j})" for i, j in self.inputs)
        return (f"sample {self.sample}, channel {self.channel}, window {self.window}: inputs {where} "
                f"tied (gap {self.gap:.2g} ulp, relevance {self.relevance:.3g})")


@dataclass(frozen=True)
class TieFit:
    """How well re-routing the near-tied windows explains a candidate relevance (see :meth:`TieAnalysis.fit`).

    Attributes
    ----------
    relevance : array, shape of the input relevance
        The oracle's input relevance with each near-tied window's relevance
        routed as fitted: the float64 result a computation that broke the
        ties that way would give.
    residual : float
        ``max |actual - relevance|``, what re-routing does not explain.
    moved : tuple of NearTie
        The windows whose fitted routing differs from the oracle's by more
        than a tenth of the tolerance anywhere, most influential first.
    routing : tuple of tuple of float
        Per near-tied window (in the order of ``TieAnalysis.ties``), the
        fitted share of its relevance for each of its inputs.
    affected : array of bool, shape of the input relevance
        Input positions whose relevance the ``moved`` windows change.
    """

    relevance: Array
    residual: float
    moved: tuple[NearTie, ...]
    routing: tuple[tuple[float, ...], ...]
    affected: Array


@dataclass(frozen=True)
class TieAnalysis:
    """The near-tied max-pool windows of an explanation, and the relevance their routing controls.

    Made by :func:`find_near_ties`.

    Attributes
    ----------
    dtype : numpy dtype
        The precision the ties are judged in.
    ulps : float
        The margin, in units of that precision.
    ties : tuple of NearTie
        Every near-tied window that carries relevance, by layer, sample, channel, window.
    affected : array of bool, shape of the input relevance
        Input positions whose relevance some routing of these windows changes.
    """

    dtype: np.dtype[Any]
    ulps: float
    ties: tuple[NearTie, ...]
    affected: Array
    # for each tie, the input relevance obtained by routing all its relevance to each of its
    # inputs: (n_inputs, *input relevance shape) arrays; and the oracle's share of each input
    _routes: tuple[Array, ...] = field(repr=False)
    _oracle: tuple[Array, ...] = field(repr=False)
    _desired: Array = field(repr=False)

    def __len__(self) -> int:
        return len(self.ties)

    def layers(self) -> tuple[int, ...]:
        """The max-pool layers that hold near-ties."""
        return tuple(sorted({t.layer for t in self.ties}))

    def fit(self, actual: ArrayLike, tolerance: float = 0.0, max_windows: int = 64) -> TieFit:
        """Route near-tied windows' relevance among their tied inputs to come closest to ``actual``.

        Every routing a computation could choose is allowed for a window: all
        to one of its near-tied inputs, or any split (shares >= 0 summing to 1).
        The fit looks for the *fewest* windows that explain the difference:
        greedily, it adds the window whose re-routing reduces the squared
        error most, then re-fits the routing of all chosen windows together
        (bounded least squares), until ``max |actual - re-routed|`` is within a
        tenth of ``tolerance`` (absolute) or nothing improves.  If
        ``max_windows`` windows do not get within ``tolerance``, every window
        is fitted at once.  The residual reported is exact for the routing returned.
        """
        a = _relevance_array(actual, "actual")
        if a.shape != self._desired.shape:
            raise RelevanceMismatchError(f"relevance shapes differ: actual {a.shape}, desired {self._desired.shape}")
        tolerance = real_number(tolerance, "tolerance", ArgumentError, 0.0)
        target = (a - self._desired).ravel()
        flats = [r.reshape(len(r), -1) for r in self._routes]
        # moving window t's relevance from the oracle's routing entirely onto its input c changes the input
        # relevance by D_tc = P_tc - sum_c' pi_c' P_tc'
        moves = np.concatenate([f - pi @ f for f, pi in zip(flats, self._oracle)]) if flats else np.zeros((0, 0))
        owner = np.repeat(np.arange(len(flats)), [len(f) for f in flats])
        dd = np.einsum("ij,ij->i", moves, moves)
        chosen: list[int] = []
        shares, residual = self._solve(chosen, flats, target)
        while len(chosen) < min(max_windows, len(flats)) and np.max(np.abs(residual), initial=0.0) > tolerance / 10:
            # the squared error saved by moving a share (clipped to [0, 1]) of one window onto one input
            g = moves @ residual
            step = np.clip(np.divide(g, dd, out=np.zeros_like(g), where=dd > 0), 0.0, 1.0)
            gain = 2 * step * g - step**2 * dd
            gain[np.isin(owner, chosen)] = 0.0
            best = int(np.argmax(gain))
            if gain[best] <= 1e-30 * max(float(target @ target), 1e-300):
                break
            chosen.append(int(owner[best]))
            shares, residual = self._solve(chosen, flats, target)
        if np.max(np.abs(residual), initial=0.0) > tolerance and len(chosen) < len(flats):
            every = list(range(len(flats)))
            all_shares, all_residual = self._solve(every, flats, target)
            if np.max(np.abs(all_residual), initial=0.0) < np.max(np.abs(residual), initial=0.0):
                chosen, shares, residual = every, all_shares, all_residual
        routing = [pi.copy() for pi in self._oracle]
        influence = np.zeros(len(flats))
        for t, share in zip(chosen, shares):
            routing[t] = share
            influence[t] = float(np.max(np.abs((share - self._oracle[t]) @ flats[t])))
        order = [int(t) for t in np.argsort(-influence, kind="stable") if influence[t] > tolerance / 10]
        affected = np.zeros(self._desired.shape, bool)
        for t in order:
            affected |= np.any(self._routes[t] != 0, axis=0)
        rerouted = a - residual.reshape(a.shape)
        return TieFit(rerouted, float(np.max(np.abs(residual), initial=0.0)), tuple(self.ties[t] for t in order),
                      tuple(tuple(float(v) for v in r) for r in routing), affected)

    def _solve(self, chosen: list[int], flats: list[Array], target: Array) -> tuple[list[Array], Array]:
        """Best routing of the ``chosen`` windows (bounded least squares); the others keep the oracle's.

        Returns the shares per chosen window and the exact residual ``target - shift``.
        """
        # a routing theta of window t shifts the relevance by sum_c (theta_c - pi_c) P_tc.  With
        # theta_0 = 1 - sum_{c>0} theta_c this is (P_t0 - pi P_t) + sum_{c>0} theta_c (P_tc - P_t0).
        base = np.zeros_like(target)
        columns, owners = [], []
        for t in chosen:
            f, pi = flats[t], self._oracle[t]
            base += f[0] - pi @ f
            for c in range(1, len(f)):
                columns.append(f[c] - f[0])
                owners.append((t, c))
        theta = np.zeros(len(columns))
        if columns:
            from scipy.optimize import lsq_linear  # type: ignore[import-untyped]

            A = np.stack(columns, axis=1)
            scale = float(np.max(np.abs(A))) or 1.0
            theta = lsq_linear(A / scale, (target - base) / scale, bounds=(0.0, 1.0), method="bvls",
                               tol=1e-12, max_iter=200 + 10 * len(columns)).x
        found = {t: np.zeros(len(flats[t])) for t in chosen}
        for (t, c), value in zip(owners, theta):
            found[t][c] = value
        shares, shift = [], np.zeros_like(target)
        for t in chosen:
            share = np.clip(found[t], 0.0, 1.0)
            if share[1:].sum() > 1.0:  # the bounds alone allow a sum above 1: back onto the simplex
                share[1:] /= share[1:].sum()
            share[0] = 1.0 - share[1:].sum()
            shares.append(share)
            shift += (share - self._oracle[t]) @ flats[t]
        return shares, target - shift

    def describe(self, ties: tuple[NearTie, ...] | None = None, limit: int = 6) -> str:
        """One line per layer: how many windows are near-tied there, and the first few of them."""
        chosen = self.ties if ties is None else ties
        if not chosen:
            return f"no max-pool window is tied within {self.ulps:g} ulp of {self.dtype} precision"
        lines = []
        for layer in sorted({t.layer for t in chosen}):
            here = [t for t in chosen if t.layer == layer]
            shown = "; ".join(t.describe() for t in here[:limit]) + ("; ..." if len(here) > limit else "")
            lines.append(f"layer {layer}: {len(here)} window(s): {shown}")
        return "\n".join(lines)


def _magnitudes(model: Sequential, activations: tuple[Array, ...], margin: float) -> list[Array]:
    """First-order scale of the rounding error of every activation, in units of the unit roundoff.

    ``M_0 = |x|`` (the input rounded once); a linear layer gives
    ``|W| M_in + |W| |a| + |b|`` (errors carried in, plus one rounding of
    every term and of the bias), or 0 where ``|W| M_in + |W| |a| = 0``: a sum
    whose terms are all exactly zero is the bias, exactly, in any precision
    (the background of an image).  Flatten passes ``M`` on, max pooling takes
    the window's largest ``M``, and ReLU passes it on except where its input
    is below ``-margin * M``: there the output is exactly 0 in any precision.
    A computation in a floating type with machine epsilon ``eps`` then has
    errors of about ``eps * M`` (measured on the shipped CNN: at most 2.1
    times ``eps/2 * M``).  Other layer types restart from ``|a|``.
    """
    M = np.abs(activations[0]).astype(np.float64)
    out = [M]
    for layer, a, z in zip(model, activations[:-1], activations[1:]):
        if isinstance(layer, LinearLayer):
            wide = layer.astype(np.float64)
            assert isinstance(wide, LinearLayer)
            wide = wide.for_input(a.shape[1:])  # pools whose weights depend on the input size: explicit
            magnitude = wide.with_weight(np.abs(wide.weight))
            bias = np.abs(layer.bias_term()).astype(np.float64)
            M = magnitude.linear(M) + magnitude.linear(np.abs(a).astype(np.float64))
            M = np.where(M > 0, M + bias, 0.0)
        elif isinstance(layer, MaxPool2d):
            M = layer.astype(np.float64).forward(M)
        elif isinstance(layer, ReLU):
            M = np.where(a < -margin * M, 0.0, M)
        elif isinstance(layer, Flatten):
            M = M.reshape(z.shape)
        else:
            M = np.abs(z).astype(np.float64)
        out.append(M)
    return out


def _tiled(a: Array, k: int) -> Array:
    return np.concatenate([a] * k, axis=0) if k > 1 else a


def _chunk(n_items: int, item_bytes: int, budget: int = 64 * 2**20) -> int:
    return max(1, min(n_items, budget // max(item_bytes, 1)))


def _propagate(model: Sequential, oracle: Explanation, start: int, deltas: Array) -> Array:
    """Relevance at the input for ``deltas`` (K, N, ...) placed at boundary ``start``, with the oracle's rules.

    Each delta is a whole batch: the rules see the oracle's activations, tiled
    K times along the batch axis (so that batch-wide statistics such as the
    RMS of the tutorial's epsilon are those of the original batch).
    """
    k, n = deltas.shape[:2]
    R = deltas.reshape(k * n, *deltas.shape[2:])
    try:
        for i in reversed(range(start)):
            layer, rule = model[i], oracle.rules[i]
            a, z = _tiled(oracle.activations[i], k), _tiled(oracle.activations[i + 1], k)
            R = rule.relevance(layer, a, R, z=z).relevance
    except ShapeError:
        if k == 1:
            raise
        # a rule parameter shaped like the batch (per-sample zB bounds) does not tile: one delta at a time
        return np.concatenate([_propagate(model, oracle, start, deltas[j : j + 1]) for j in range(k)])
    return R.reshape(k, n, *R.shape[1:]).astype(np.float64)


def _window_ties(layer: MaxPool2d, a: Array, M: Array, R: Array, eps: float, ulps: float
                 ) -> list[tuple[int, int, int, int, list[tuple[int, int]], float]]:
    """The near-tied windows of one max-pool layer that carry relevance.

    Returns ``(n, c, y, x, inputs, gap)`` per window, ``inputs`` the
    positions of its near-tied inputs in the unpadded layer input (the maximum first).
    """
    kh, kw = layer.kernel_size  # type: ignore[misc]
    sh, sw = layer.stride  # type: ignore[misc]
    ph, _, pw, _ = sides = layer.padding_sides
    oh, ow = R.shape[2:]
    ap = _windows.pad(a.astype(np.float64), sides, value=-np.inf)
    Mp = _windows.pad(M, sides, value=0.0)
    slices = [(i, j, rows, cols) for i, j, rows, cols in _windows.offsets((kh, kw), (sh, sw), (1, 1), (0, oh), ow)]
    values = np.stack([ap[:, :, rows, cols] for _, _, rows, cols in slices])   # (k, N, C, OH, OW)
    scales = np.stack([Mp[:, :, rows, cols] for _, _, rows, cols in slices])
    peak = values.max(axis=0)
    unit = eps * (scales.max(axis=0) + scales)           # the precision of the two computations compared
    gap = peak - values
    # values computed exactly (error scale 0, such as ReLU zeros of clearly negative inputs) cannot be
    # told apart by rounding: their ties are ties in every precision
    near = (gap <= ulps * unit) & (unit > 0) & np.isfinite(values)
    tied = (near.sum(axis=0) >= 2) & (R != 0)
    found = []
    for n, c, y, x in zip(*np.nonzero(tied)):
        members = [k for k in range(len(slices)) if near[k, n, c, y, x]]
        members.sort(key=lambda k: (-values[k, n, c, y, x], k))
        inputs = [(int(y * sh + slices[k][0] - ph), int(x * sw + slices[k][1] - pw)) for k in members]
        gaps = [gap[k, n, c, y, x] / unit[k, n, c, y, x] if gap[k, n, c, y, x] > 0 else 0.0 for k in members]
        found.append((int(n), int(c), int(y), int(x), inputs, float(max(gaps))))
    return found


def find_near_ties(
    model: Sequential, explanation: Explanation, dtype: DTypeLike = np.float32, ulps: float = 4.0
) -> TieAnalysis:
    """Max-pool windows whose maximum is tied within the precision of ``dtype``, and what they control.

    A window is *near-tied* when another of its inputs lies within
    ``ulps * eps * (M_max + M_p)`` of its float64 maximum, where ``eps`` is the
    machine epsilon of ``dtype`` and ``M`` the magnitude of the computation
    that produced each value: ``|x|`` at the input, then ``|W| M_in + |W| |a| + |b|``
    through every linear layer.  That is, the gap is smaller than ``ulps``
    rounding errors of the sums behind the two values, not of the values
    themselves: a value obtained by cancellation carries errors far larger
    than its own ulp.  Exact float64 ties (gap 0) are always near-ties.
    Only windows whose layer takes winner-takes-all and that carry
    relevance are listed.

    Parameters
    ----------
    model : Sequential
        The model ``explanation`` was computed with.
    explanation : Explanation
        The oracle's (float64) explanation: its activations and per-layer relevance.
    dtype : float32 (default) or float64
        The precision of the computation being checked.
    ulps : float > 0, default 4
        Margin in units of that precision (measured float32 deviations stay
        below about 1.1 units on the shipped CNN).

    Returns
    -------
    TieAnalysis
        The windows, the input positions their routing affects, and :meth:`TieAnalysis.fit`.
    """
    if not isinstance(model, Sequential):
        raise ArgumentError(f"model must be an lrp_ref.Sequential; got {type(model).__name__}")
    if not isinstance(explanation, Explanation):
        raise ArgumentError(f"explanation must be the oracle's lrp_ref.Explanation; got {type(explanation).__name__}")
    if len(explanation.rules) != len(model) or any(
        tuple(act.shape[1:]) != shape for act, shape in zip(explanation.activations, model.shapes(
            explanation.activations[0].shape[1:]))
    ):
        raise ShapeError(f"explanation does not belong to model: {len(explanation.rules)} rules for "
                         f"{len(model)} layers, or activation shapes differ")
    dt = check_dtype(dtype, "dtype")
    ulps = real_number(ulps, "ulps", ArgumentError, 0.0)
    eps = float(np.finfo(dt).eps)
    M = _magnitudes(model, explanation.activations, ulps * eps)
    desired = np.asarray(explanation.relevance, dtype=np.float64)
    ties: list[NearTie] = []
    routes: list[Array] = []
    oracle: list[Array] = []
    for L_index, layer in enumerate(model):
        rule = explanation.rules[L_index]
        if not isinstance(layer, MaxPool2d) or not isinstance(rule, WinnerTakesAll):
            continue
        a, R = explanation.activations[L_index], explanation.layers[L_index + 1]
        found = _window_ties(layer, a, M[L_index], R, eps, ulps)
        if not found:
            continue
        n_batch = a.shape[0]
        # the oracle's routing of each window alone: the rule applied to that window's relevance only
        kh, kw = layer.kernel_size  # type: ignore[misc]
        largest = max(act.nbytes for act in explanation.activations[: L_index + 1])
        step = _chunk(len(found), 3 * largest * kh * kw)
        for start in range(0, len(found), step):
            part = found[start : start + step]
            k = len(part)
            R_one = np.zeros((k, *R.shape), R.dtype)
            for j, (n, c, y, x, _, _) in enumerate(part):
                R_one[j, n, c, y, x] = R[n, c, y, x]
            routed = rule.relevance(layer, _tiled(a, k), R_one.reshape(k * n_batch, *R.shape[1:]),
                                    z=_tiled(explanation.activations[L_index + 1], k)).relevance
            routed = routed.reshape(k, *a.shape).astype(np.float64)
            # every alternative: the routed amount s_t all on one input, for each near-tied input
            unit = []
            shares = []
            for j, (n, c, y, x, inputs, gap) in enumerate(part):
                s_t = float(routed[j].sum())
                pi = np.array([routed[j][n, c, yi, xi] / s_t if s_t else 0.0 for yi, xi in inputs])
                for yi, xi in inputs:
                    e = np.zeros(a.shape)
                    e[n, c, yi, xi] = s_t
                    unit.append(e)
                shares.append(pi)
                ties.append(NearTie(L_index, n, c, (y, x), tuple(inputs),
                                    tuple(float(a[n, c, yi, xi]) for yi, xi in inputs), gap, float(R[n, c, y, x])))
            below = _propagate(model, explanation, L_index, np.stack(unit))
            offset = 0
            for pi in shares:
                routes.append(below[offset : offset + len(pi)])
                oracle.append(pi)
                offset += len(pi)
    affected = np.zeros(desired.shape, bool)
    for r in routes:
        affected |= np.any(r != 0, axis=0)
    return TieAnalysis(dt, ulps, tuple(ties), affected, tuple(routes), tuple(oracle), desired)
