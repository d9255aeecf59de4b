r"""LRP as Deep Taylor Decomposition (DTD), checked numerically for one neuron.

Deep Taylor Decomposition (Montavon et al. 2017, "Explaining nonlinear
classification decisions with deep Taylor decomposition", Pattern Recognition
65; Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview",
Sec. 10.2) reads an LRP rule as a first-order Taylor expansion.  Take neuron
``k`` of a Dense or Conv2d layer followed by a ReLU, with input ``a`` and
relevance ``R_k``.  DTD models the relevance *locally* as

.. math:: \hat R_k(a) = \max\Big(0, \sum_j a_j w_{jk} + b_k\Big)\, c_k,
          \qquad c_k = R_k / z_k \text{ constant},

expands it at a root point ``ã`` (``\hat R_k(ã) = 0``) found on the line
``ã = a - t v`` along a *search direction* ``v``,

.. math:: R_k = \hat R_k(ã) + \sum_j \frac{\partial \hat R_k}{\partial a_j}\Big|_{ã} (a_j - ã_j) + 0
          = \sum_j \underbrace{c_k w_{jk}\, t\, v_j}_{R_{j \leftarrow k}},

and reads the Taylor terms as the messages ``R_{j<-k}`` (the relevance model
is linear between ``ã`` and ``a``, so there is no remainder).  With the root
condition ``z_k(a - t v) = 0``, i.e. ``t = z_k / \sum_j v_j w_{jk}``,

.. math:: R_{j \leftarrow k} = \frac{v_j w_{jk}}{\sum_{j'} v_{j'} w_{j'k}} R_k .

Each rule is one choice of ``v`` (the derivations, each checked by :func:`check`):

=============  ==========================================================  ======================  ================
rule           search direction ``v_j``                                    bias neuron ``v_0``     domain of ``a``
=============  ==========================================================  ======================  ================
z+             ``a_j 1[w_jk > 0]`` (lrp_ref splits contributions:          ``1[b_k > 0]``          ``a >= 0`` (ReLU)
               ``a_j 1[a_j w_jk > 0]``, the same for ``a >= 0``)
zB             ``a_j - l_j`` where ``w_jk > 0``, ``a_j - h_j`` where       0                       ``l <= a <= h``
               ``w_jk < 0``
w²             ``w_jk``                                                    0                       all of R^d
γ              ``a_j (1 + γ 1[w_jk > 0])``                                 ``1 + γ 1[b_k > 0]``    ``a >= 0``
ε, LRP-0       ``a_j``                                                     1                       ``a >= 0``
=============  ==========================================================  ======================  ================

**The bias and the stabiliser as inputs.**  The bias is the weight of a
neuron ``a_0 = 1`` (the Overview's sums run over ``0, j``).  Where a rule has
the bias in its denominator, that neuron moves along the search direction too
(``v_0`` above), and its Taylor term ``c_k b_k t v_0`` is exactly the share the
rule absorbs.  A stabiliser ``ε`` is one more such neuron, ``a_ε = 1`` with
weight ``ε`` (sign-aligned with the rule's denominator), that moves with
``v_ε = 1``: then the neuron's *stabilised* output ``z_k + ε`` is the one
whose root is searched, ``c_k = R_k / (z_k + ε)``, and:

* LRP-ε: ``v = a``, ``v_0 = v_ε = 1``; the root of ``z_k(ã) + ε ã_ε`` is
  ``t = 1``, ``ã = 0``; the terms ``c_k a_j w_jk = a_j w_jk R_k / (z_k + ε)`` are
  the ε-rule's messages, the bias neuron's term ``b_k R_k / (z_k + ε)`` and the
  stabiliser's ``ε R_k / (z_k + ε)`` are what it absorbs.  ``ε = 0`` is LRP-0.
* LRP-γ (Overview, Sec. 10.2.4): ``t = z_k / \sum_{0,j} a_j (w_jk + γ w_jk^+)``
  and ``c_k t v_j w_jk = a_j (w_jk + γ w_jk^+) R_k / \sum_{0,j} a_j (w_jk + γ w_jk^+)``,
  the γ rule with ``b_k + γ b_k^+`` in the denominator.  As γ grows the root
  moves to that of z+.

**What the check measures.**  The root is found numerically, with
:func:`scipy.optimize.brentq` on the stabilised pre-activation along the line
(a bracket grown from ``[0, 1]``), independently of the closed form ``t``.
The gradient comes from the layer (its adjoint applied to the one-hot of
``k``, times ``c_k`` and the ReLU's slope on the side of ``a``), not from
the rule's formula, and the rule's messages from :mod:`lrp_ref.rules` with the
start relevance one-hot at ``k``.  :func:`check` compares them (default
``1e-10`` of ``R_k``) and reports where the DTD assumptions fail: a root
outside the input domain, no root on the line, a root behind ``a``
(``t < 0``), a point that is not a root, or a relevance model that is not
linear along the segment (the ReLU's kink crossed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._checks import is_int, real_number, require_finite
from .errors import ArgumentError, LrpRefError, ShapeError
from .graph import Graph
from .layers import Conv2d, Dense, ReLU
from .rules import LRP0, AlphaBeta, Epsilon, Gamma, Rule, WSquare, ZBox, ZPlus

__all__ = [
    "Direction",
    "Failure",
    "TaylorCheck",
    "TaylorExpansion",
    "check",
    "check_model",
    "expand",
    "rule_from_spec",
    "search_direction",
    "summary_table",
]

Array = NDArray[Any]

#: rules with a DTD derivation
DTD_RULES = (ZPlus, ZBox, WSquare, Gamma, Epsilon, LRP0)


@dataclass(frozen=True)
class Direction:
    """The search direction a rule implies for one neuron.

    Attributes
    ----------
    v : array, shape of one layer input
        ``v_j``; the root is searched on ``ã = a - t v``.
    bias : float
        ``v_0``, how the bias neuron ``a_0 = 1`` moves (0: it stays).
    stabilizer : float
        Weight of the stabiliser neuron ``a_ε = 1`` (0: none); it moves with ``v_ε = 1``.
    formula : str
        ``v_j`` as a formula, for tables.
    domain : str
        "relu" (a >= 0), "box" (l <= a <= h) or "real".
    """

    v: Array
    bias: float
    stabilizer: float
    formula: str
    domain: str


@dataclass(frozen=True)
class Failure:
    """A DTD assumption that does not hold, or a mismatch with the rule.

    ``kind`` is one of ``"inactive"``, ``"inputs_outside_domain"``,
    ``"outside_domain"``, ``"no_root"``, ``"root_behind"``, ``"not_a_root"``,
    ``"not_linear"``, ``"rule_refused"``, ``"mismatch"``; ``detail`` says what was found.
    """

    kind: str
    detail: str


@dataclass(frozen=True)
class TaylorExpansion:
    """The first-order Taylor expansion of one neuron's relevance model at a root.

    Attributes
    ----------
    rule : Rule
        The rule whose direction was used (conventions resolved).
    neuron : tuple of int
        ``(k,)`` for Dense, ``(channel, y, x)`` for Conv2d.
    a : array, shape of one layer input
    z : float
        ``z_k = sum_j a_j w_jk + b_k`` at ``a``.
    bias : float
        ``b_k``.
    relevance : float
        ``R_k``, the relevance the model reproduces at ``a``.
    c : float
        ``c_k = R_k / (z_k + ε)``, the constant of the relevance model.
    direction : Direction
    t : float or None
        The root parameter found by brentq (or given); None if there is no root.
    t_closed : float or None
        The closed form ``(z_k + ε) / (sum_j v_j w_jk + b_k v_0 + ε)``, for comparison.
    root : array or None
        ``ã = a - t v``.
    weights : array, shape of one layer input
        ``w_jk`` laid out over the input (the layer's adjoint of the one-hot at k).
    gradient : array, shape of one layer input
        ``dR_k/da_j`` at the root, on the side of ``a``.
    gradient_bias, gradient_stabilizer : float
        ``dR_k/da_0`` and ``dR_k/da_ε`` there (the bias and stabiliser neurons).
    terms : array, shape of one layer input
        ``(dR_k/da_j) (a_j - ã_j)``; zeros without a root.
    bias_term, stabilizer_term : float
        The Taylor terms of the bias and stabiliser neurons.
    value_at_root : float
        ``R̂_k(ã)``, the zero-order term (0 at a root).
    failures : tuple of Failure
    """

    rule: Rule
    neuron: tuple[int, ...]
    a: Array
    z: float
    bias: float
    relevance: float
    c: float
    direction: Direction
    t: float | None
    t_closed: float | None
    root: Array | None
    weights: Array
    gradient: Array
    gradient_bias: float
    gradient_stabilizer: float
    terms: Array
    bias_term: float
    stabilizer_term: float
    value_at_root: float
    failures: tuple[Failure, ...]

    def pre_activation(self, t: Any) -> Array:
        """The stabilised pre-activation ``z_k + ε`` at the points ``a - t v`` (array of ``t``)."""
        d = self.direction
        t = np.asarray(t, dtype=np.float64)
        return (float(np.sum(self.weights * self.a)) - t * float(np.sum(self.weights * d.v))
                + self.bias * (1 - t * d.bias) + d.stabilizer * (1 - t))

    def tangent(self, t: Any) -> Array:
        """The first-order Taylor model at the root, at the points ``a - t v``."""
        assert self.t is not None, "no root, no tangent"
        d = self.direction
        slope = float(np.sum(self.gradient * d.v)) + self.gradient_bias * d.bias + self.gradient_stabilizer
        return self.value_at_root + (self.t - np.asarray(t, dtype=np.float64)) * slope


@dataclass(frozen=True)
class TaylorCheck:
    """Taylor terms against the rule's messages for one neuron (:func:`check`).

    Attributes
    ----------
    expansion : TaylorExpansion
    messages : array, shape of one layer input
        ``R_{j<-k}`` from the rule with the start relevance one-hot at ``k`` (times ``R_k``).
    absorbed : float
        What the rule absorbs (bias and stabiliser).
    max_error : float
        Largest ``|term - message|``, the bias and stabiliser terms against ``absorbed`` included.
    tolerance : float
    failures : tuple of Failure
        The expansion's, and a ``"mismatch"`` if ``max_error > tolerance``.
    """

    expansion: TaylorExpansion
    messages: Array
    absorbed: float
    max_error: float
    tolerance: float
    failures: tuple[Failure, ...]

    @property
    def ok(self) -> bool:
        """True when every DTD assumption holds and the terms equal the messages."""
        return not self.failures

    def table(self, rows: int = 8) -> str:
        """The check as text: the neuron, the root, and the ``rows`` inputs with the largest messages."""
        e = self.expansion
        lines = [
            f"neuron {e.neuron}, rule {e.rule!r}: z_k = {e.z:.6g}, R_k = {e.relevance:.6g}, c_k = {e.c:.6g}",
            f"search direction v_j = {e.direction.formula}; bias neuron v_0 = {e.direction.bias:.6g}"
            + (f"; stabiliser neuron weight {e.direction.stabilizer:.3g}" if e.direction.stabilizer else ""),
            "root: none" if e.t is None else
            f"root: t = {e.t:.12g} (brentq), closed form {e.t_closed:.12g}; R̂_k(root) = {e.value_at_root:.3g}",
            f"sum of Taylor terms {e.terms.sum() + e.bias_term + e.stabilizer_term:.12g} "
            f"(inputs {e.terms.sum():.6g}, bias {e.bias_term:.6g}, stabiliser {e.stabilizer_term:.6g})",
            f"rule: sum of messages {self.messages.sum():.6g}, absorbed {self.absorbed:.6g}",
            f"{'input j':<16} {'a_j':>10} {'root ã_j':>10} {'v_j':>10} {'w_jk':>10} {'Taylor term':>13} "
            f"{'message':>13} {'|diff|':>9}",
        ]
        order = np.argsort(-np.abs(self.messages).ravel(), kind="stable")[:rows]
        root = e.root if e.root is not None else np.full_like(e.a, np.nan)
        for flat in order:
            j = np.unravel_index(flat, e.a.shape)
            idx = str(tuple(int(i) for i in j)) if len(j) > 1 else str(int(j[0]))
            lines.append(f"{idx:<16} {e.a[j]:>10.4g} {root[j]:>10.4g} {e.direction.v[j]:>10.4g} "
                         f"{e.weights[j]:>10.4g} {e.terms[j]:>13.6g} {self.messages[j]:>13.6g} "
                         f"{abs(e.terms[j] - self.messages[j]):>9.1e}")
        lines.append(f"max |Taylor term - message| = {self.max_error:.2e} (tolerance {self.tolerance:.0e}): "
                     + ("ok" if self.ok else "; ".join(f"{f.kind}: {f.detail}" for f in self.failures)))
        return "\n".join(lines)


# ----------------------------------------------------------------------------- the search directions


def _neuron(layer: Dense | Conv2d, a: Array, neuron: Any) -> tuple[tuple[int, ...], Array]:
    """The neuron index as a tuple checked against the layer output, and its one-hot (1, *out_shape)."""
    out_shape = layer.output_shape(tuple(a.shape))
    want = "k" if len(out_shape) == 1 else "(channel, y, x)"
    index = (neuron,) if is_int(neuron) else tuple(neuron) if isinstance(neuron, (tuple, list, np.ndarray)) else ()
    if len(index) != len(out_shape) or not all(is_int(i) for i in index) \
            or not all(0 <= i < n for i, n in zip(index, out_shape)):
        raise ArgumentError(f"neuron must be {want} within the output shape {out_shape} of {layer.describe()}; "
                            f"got {neuron!r}")
    onehot = np.zeros((1, *out_shape), dtype=np.float64)
    where = (0, *index)
    onehot[where] = 1.0
    return tuple(int(i) for i in index), onehot


def _stabilizer_weight(eps: float, form: str, denominator: float) -> float:
    """The stabiliser neuron's weight: the rule's ε applied to its denominator as the rule's ``form`` does."""
    if eps == 0:
        return 0.0
    if form == "sign":
        return eps if denominator >= 0 else -eps
    if form == "add":
        return eps
    return eps if denominator == 0 else 0.0  # "zeros"


def search_direction(layer: Dense | Conv2d, a: Array, neuron: Any, rule: Rule) -> Direction:
    """The search direction ``v`` that ``rule`` implies for ``neuron`` at input ``a`` (one sample).

    See the module docstring for each rule's derivation.  Raises
    :class:`~lrp_ref.errors.ArgumentError` for a rule without a DTD
    derivation (alpha-beta with beta > 0, flat; ``AlphaBeta(1, 0)`` is z+) or a convention that breaks it
    (epsilon scaled by the RMS of the batch).
    """
    if isinstance(rule, AlphaBeta) and rule.beta == 0:  # AlphaBeta(1, 0) is z+
        rule = ZPlus(stabilizer=rule.stabilizer, form=rule.form, bias=rule.bias, split=rule.split)
    if not isinstance(rule, DTD_RULES):
        raise ArgumentError(f"rule {rule!r} has no deep Taylor derivation here; DTD rules: "
                            "ZPlus (= AlphaBeta(1, 0)), ZBox, WSquare, Gamma, Epsilon, LRP0")
    r = rule.resolved()
    index, onehot = _neuron(layer, a, neuron)
    w = layer.vjp(onehot, tuple(a.shape))[0]          # w_jk over the input (0 outside the receptive field)
    b = float(np.broadcast_to(layer.bias_term(), onehot.shape[1:])[index])
    form = str(getattr(r, "form", "sign"))
    if isinstance(r, (Epsilon, LRP0)):
        if isinstance(r, Epsilon) and r.scale != "absolute":
            raise ArgumentError(f"{r!r}: an epsilon scaled by the RMS of the batch is no constant; "
                                "use scale='absolute'")
        v, v0, domain, formula = a.copy(), 1.0, "relu", "a_j"
        eps = float(r.epsilon) + float(r.stabilizer) if isinstance(r, Epsilon) else float(r.stabilizer)  # type: ignore[arg-type]
    elif isinstance(r, Gamma):
        g = r.gamma
        if r.variant == "generalized":  # for z_k > 0: a+ (w + g w+) + a- (w + g w-)
            v = a * (1 + g * np.where(a >= 0, w > 0, w < 0))
        else:
            v = a * (1 + g * (w > 0))
        v0 = 1.0 + (g * (b > 0) if r.variant != "weights" else 0.0)
        domain, formula, eps = "relu", f"a_j (1 + {g:g} 1[w_jk > 0])", float(r.stabilizer)  # type: ignore[arg-type]
    elif isinstance(r, ZPlus):
        if r.split == "weights":
            v, formula = a * (w > 0), "a_j 1[w_jk > 0]"
        else:
            v, formula = a * (a * w > 0), "a_j 1[a_j w_jk > 0]"
        v0 = {"split": float(b > 0), "both": 1.0, "none": 0.0}[str(r.bias)]
        domain, eps = "relu", float(r.stabilizer)  # type: ignore[arg-type]
    elif isinstance(r, ZBox):
        low = np.broadcast_to(r.low, (1, *a.shape))[0]
        high = np.broadcast_to(r.high, (1, *a.shape))[0]
        v = np.where(w > 0, a - low, np.where(w < 0, a - high, 0.0))
        v0, domain, formula, eps = 0.0, "box", "a_j - l_j (w_jk > 0), a_j - h_j (w_jk < 0)", float(r.stabilizer)  # type: ignore[arg-type]
    else:
        assert isinstance(r, WSquare)
        v, v0, domain, formula = w.copy(), (b if r.bias == "square" else 0.0), "real", "w_jk"
        eps = float(r.stabilizer)  # type: ignore[arg-type]
    denominator = float(np.sum(v * w) + b * v0)
    return Direction(np.asarray(v, dtype=np.float64), float(v0), _stabilizer_weight(eps, form, denominator),
                     formula, domain)


_SPECS = {"zplus": "zplus", "zb": "zbox", "zbox": "zbox", "wsquare": "wsquare", "gamma": "gamma",
          "epsilon": "epsilon", "lrp0": "lrp0"}


def rule_from_spec(text: str, bounds: tuple[Any, Any] | None = None) -> Rule:
    """A DTD rule by name: ``zplus``, ``zb``, ``wsquare``, ``gamma:0.25``, ``epsilon:0.1``, ``lrp0``.

    Parameters may also be written as the catalog does (``gamma:gamma=0.5``).
    ``zb`` takes its box from ``bounds = (low, high)`` (for a saved model, its
    ``input_low`` and ``input_high``).
    """
    from . import catalog

    if not isinstance(text, str):
        raise ArgumentError(f"a rule name must be a str; got {type(text).__name__}")
    name, _, value = text.partition(":")
    if name not in _SPECS:
        raise ArgumentError(f"rule {text!r}: the DTD view knows {', '.join(sorted(set(_SPECS) - {'zbox'}))}")
    spec = _SPECS[name]
    if spec == "zbox":
        if bounds is None:
            raise ArgumentError(f"rule {text!r}: zB needs the input bounds (low, high); the model declares none")
        return ZBox(*bounds)
    if value:
        try:
            spec += f":{name}={float(value)!r}" if name in ("gamma", "epsilon") else f":{value}"
        except ValueError:
            spec += f":{value}"
    rule = catalog.from_spec(spec, bounds)
    assert isinstance(rule, Rule)
    return rule


def _as_rule(rule: Rule | str, bounds: tuple[Any, Any] | None = None) -> Rule:
    if isinstance(rule, str):
        return rule_from_spec(rule, bounds)
    if not isinstance(rule, Rule):
        raise ArgumentError(f"rule must be an lrp_ref rule or a name such as 'zplus'; got {type(rule).__name__}")
    return rule


# ----------------------------------------------------------------------------- the expansion


def _bracket_root(f: Any) -> tuple[float | None, str]:
    """A root of ``f`` (f(0) > 0) by brentq in a bracket grown from [0, ±1]: (t, "ahead"/"behind") or (None, "")."""
    from scipy import optimize  # type: ignore[import-untyped]  # here, not at import: scipy.optimize takes 0.3 s
    for sign, side in ((1.0, "ahead"), (-1.0, "behind")):
        T = sign
        for _ in range(80):  # up to 2**80
            value = f(T)
            if value == 0:
                return T, side
            if value < 0:
                lo, hi = (0.0, T) if sign > 0 else (T, 0.0)
                return float(optimize.brentq(f, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=2000)), side
            T *= 2.0
    return None, ""


def _domain_failures(direction: Direction, rule: Rule, a: Array, point: Array, what: str,
                     kind: str) -> list[Failure]:
    scale = max(float(np.max(np.abs(a))), 1.0)
    tol = 1e-9 * scale
    if direction.domain == "relu":
        bad = point < -tol
        if np.any(bad):
            return [Failure(kind, f"{int(bad.sum())} {what} negative (min {point.min():.4g}); "
                                  "the rule assumes ReLU outputs a >= 0")]
    elif direction.domain == "box":
        assert isinstance(rule, ZBox)
        low = np.broadcast_to(rule.low, (1, *a.shape))[0]
        high = np.broadcast_to(rule.high, (1, *a.shape))[0]
        bad = (point < low - tol) | (point > high + tol)
        if np.any(bad):
            return [Failure(kind, f"{int(bad.sum())} {what} outside the box [l, h] "
                                  f"(range {point.min():.4g} .. {point.max():.4g})")]
    return []


def expand(layer: Dense | Conv2d, a: Array, neuron: Any, rule: Rule | str, *, relevance: float = 1.0,
           t: float | None = None, direction: Direction | None = None) -> TaylorExpansion:
    """The Taylor expansion of ``neuron``'s relevance model at the root the rule's direction finds.

    Parameters
    ----------
    layer : Dense or Conv2d
    a : array, shape of one layer input (or a batch of one)
    neuron : int (Dense) or (channel, y, x) (Conv2d)
    rule : a DTD rule of :mod:`lrp_ref.rules` (ZPlus, ZBox, WSquare, Gamma, Epsilon, LRP0), or its name
        (:func:`rule_from_spec`)
    relevance : float, default 1
        ``R_k``.
    t : float, optional
        Use the point ``a - t v`` instead of the root brentq finds (to plant a wrong root).
    direction : Direction, optional
        Search along this direction instead of the rule's.

    Raises
    ------
    ArgumentError
        If the layer is not Dense or Conv2d, or the neuron is not active (``z_k + ε <= 0``).
    """
    if not isinstance(layer, (Dense, Conv2d)):
        raise ArgumentError(f"the DTD view takes a Dense or Conv2d layer; got {type(layer).__name__}")
    relevance = real_number(relevance, "relevance", ArgumentError)
    if t is not None:
        t = real_number(t, "t", ArgumentError)
    a = _one_input(layer, a)
    index, onehot = _neuron(layer, a, neuron)
    rule = _as_rule(rule).resolved()
    d = search_direction(layer, a, index, rule) if direction is None else direction
    w = layer.vjp(onehot, tuple(a.shape))[0]
    b = float(np.broadcast_to(layer.bias_term(), onehot.shape[1:])[index])

    def pre(points: Array, bias_in: Array, stab_in: Array) -> Array:
        """The stabilised pre-activation z_k + ε a_ε of a batch of points, from the layer's forward map."""
        column: tuple[Any, ...] = (slice(None), *index)
        return layer.linear(points)[column] + b * bias_in + d.stabilizer * stab_in

    def line(ts: Array) -> Array:
        ts = np.asarray(ts, dtype=np.float64).reshape(-1)
        shape = (-1,) + (1,) * a.ndim
        return pre(a[None] - ts.reshape(shape) * d.v[None], 1 - ts * d.bias, 1 - ts)

    first = (0, *index)
    z = float(layer.linear(a[None])[first] + b)
    z_stab = float(line(np.zeros(1))[0])
    if not z_stab > 0:
        active = layer.forward(a[None])[0] + 0.0
        best = np.unravel_index(int(np.argmax(active)), active.shape)
        raise ArgumentError(f"neuron {index} of {layer.describe()} is not active at this input (z_k = {z:.6g}): "
                            f"its ReLU output and relevance are 0, so there is nothing to expand; "
                            f"{int(np.sum(active > 0))} of {active.size} neurons are active, the most active is "
                            f"{tuple(int(i) for i in best)}")
    c = relevance / z_stab
    failures = _domain_failures(d, rule, a, a, "inputs are", "inputs_outside_domain")
    slope = float(np.sum(d.v * w) + b * d.bias + d.stabilizer)  # -d/dt of the pre-activation (closed form)
    t_closed = z_stab / slope if slope != 0 else None
    side = "given"
    if t is None:
        t, side = _bracket_root(lambda s: float(line(np.array([s]))[0]))
    if t is None:
        failures.append(Failure("no_root", "the neuron's pre-activation keeps its sign along a - t v "
                                           "(sum_j v_j w_jk = 0): no root on the line"))
        zeros = np.zeros_like(a)
        return TaylorExpansion(rule, index, a, z, b, relevance, c, d, None, t_closed, None, w, zeros, 0.0, 0.0,
                               zeros, 0.0, 0.0, z_stab * c, tuple(failures))
    if side == "behind":
        failures.append(Failure("root_behind", f"the root lies behind a (t = {t:.4g} < 0): the search climbs "
                                               "the function instead of descending to its zero level"))
    root = a - t * d.v
    # rounding of the layer's sums, in relevance units: a neuron with a tiny z_k has a large c_k
    sums = float(np.sum(np.abs(w * a)) + abs(t) * np.sum(np.abs(w * d.v)))
    noise = 1e-12 * abs(c) * (sums + abs(b) * (1 + abs(t * d.bias)) + abs(d.stabilizer) * (1 + abs(t)))
    tol = 1e-10 * abs(relevance) + noise
    value_at_root = c * max(0.0, float(line(np.array([t]))[0]))
    if value_at_root > tol:
        failures.append(Failure("not_a_root", f"R̂_k(ã) = {value_at_root:.4g}, not 0"))
    # linearity along the segment from the root to a (the relevance model with its ReLU)
    s = np.linspace(0.0, 1.0, 17)
    model_values = c * np.maximum(0.0, line(t * (1 - s)))
    chord = value_at_root + s * (relevance - value_at_root)
    bend = float(np.max(np.abs(model_values - chord)))
    if bend > tol:
        failures.append(Failure("not_linear", f"R̂_k departs from a straight line by {bend:.3g} between the root "
                                              "and a: the ReLU's kink is crossed"))
    # the gradient at the root, on the side of a: the layer's adjoint of the one-hot, times c_k and the ReLU slope
    near = t * (1 - 1e-3)
    relu_slope = 1.0 if float(line(np.array([near]))[0]) > 0 else 0.0
    gradient = c * relu_slope * w
    failures += _domain_failures(d, rule, a, root, "root entries are", "outside_domain")
    terms = gradient * (a - root)
    g_bias, g_stab = c * relu_slope * b, c * relu_slope * d.stabilizer
    return TaylorExpansion(rule, index, a, z, b, relevance, c, d, t, t_closed, root, w, gradient, g_bias, g_stab,
                           terms, g_bias * t * d.bias, g_stab * t, value_at_root, tuple(failures))


def _one_input(layer: Dense | Conv2d, a: Any) -> Array:
    """``a`` as one layer input (float64): one sample, or a batch of one."""
    a = np.asarray(a, dtype=np.float64)
    require_finite(a, "the DTD view's layer input a")
    if _fits(layer, a.shape):
        return a
    if a.ndim > 1 and a.shape[0] == 1 and _fits(layer, a.shape[1:]):
        return a[0]
    raise ShapeError(f"a must be one input of {layer.describe()} (no batch axis, or a batch of one); "
                     f"got shape {a.shape}")


def _fits(layer: Dense | Conv2d, shape: tuple[int, ...]) -> bool:
    try:
        layer.output_shape(tuple(shape))
    except (LrpRefError, ValueError, IndexError):
        return False
    return True


def check(layer: Dense | Conv2d, a: Array, neuron: Any, rule: Rule | str, *, relevance: float = 1.0,
          t: float | None = None, direction: Direction | None = None, rtol: float = 1e-10) -> TaylorCheck:
    """Check that the Taylor terms at the root equal the rule's messages ``R_{j<-k}``.

    The messages come from ``rule.relevance(layer, a, R)`` with ``R`` one-hot at
    ``neuron`` (times ``relevance``); the bias and stabiliser terms are compared
    with the share the rule absorbs.  A mismatch beyond ``rtol * |R_k|`` is a
    ``"mismatch"`` failure.  Parameters as :func:`expand`.
    """
    rtol = real_number(rtol, "rtol", ArgumentError, minimum=0.0)
    e = expand(layer, a, neuron, rule, relevance=relevance, t=t, direction=direction)
    _, onehot = _neuron(layer, e.a, e.neuron)
    failures = list(e.failures)
    try:
        step = e.rule.relevance(layer, e.a[None], relevance * onehot)
        messages, absorbed = np.asarray(step.relevance[0], dtype=np.float64), float(step.absorbed[0])
    except LrpRefError as exc:
        failures.append(Failure("rule_refused", str(exc)))
        messages, absorbed = np.full_like(e.a, np.nan), float("nan")
    tolerance = rtol * abs(relevance)
    if np.all(np.isfinite(messages)):
        errors = [float(np.max(np.abs(e.terms - messages))), abs(e.bias_term + e.stabilizer_term - absorbed)]
        max_error = max(errors)
        if not max_error <= tolerance:  # a NaN is a mismatch too
            failures.append(Failure("mismatch", f"max |Taylor term - message| = {max_error:.3g} > {tolerance:.0e}"))
    else:
        max_error = float("inf")
        if not any(f.kind == "rule_refused" for f in failures):
            failures.append(Failure("mismatch", "the rule's messages are not finite"))
    return TaylorCheck(e, messages, absorbed, max_error, tolerance, tuple(failures))


def check_model(model: Graph, x: Array, layer: int | str, neuron: Any, rule: Rule | str,
                **kwargs: Any) -> TaylorCheck:
    """:func:`check` for ``neuron`` of node ``layer`` (index, or name in a graph) at the model input ``x``.

    ``x`` is one model input (or a batch of one); a rule given by name takes
    zB's box from the model's ``input_low`` and ``input_high``.
    """
    from ._cli_inputs import bounds

    rule = _as_rule(rule, bounds(model))
    i = _node_index(model, layer)
    x = np.asarray(x, dtype=np.float64)
    if _fits_model(model, x.shape):
        x = x[None]
    elif not (x.ndim > 1 and x.shape[0] == 1 and _fits_model(model, x.shape[1:])):
        raise ShapeError(f"x must be one model input (or a batch of one); got shape {x.shape}")
    acts = model.forward_all(x)
    lay = model[i]
    if not isinstance(lay, (Dense, Conv2d)):
        raise ArgumentError(f"layer {layer!r} is {lay.describe()}; the DTD view takes a Dense or Conv2d layer")
    return check(lay, model.pack(i, acts)[0], neuron, rule, **kwargs)


def _fits_model(model: Graph, shape: tuple[int, ...]) -> bool:
    try:
        model.shapes(shape)
    except (LrpRefError, ValueError):
        return False
    return True


def _node_index(model: Graph, layer: int | str) -> int:
    names = [n.name for n in model.nodes]
    if isinstance(layer, str) and not layer.lstrip("-").isdigit():
        if layer not in names:
            raise ArgumentError(f"no node named {layer!r}; nodes: {', '.join(names)}")
        return names.index(layer)
    i = int(layer)
    if not 0 <= i < len(model):
        raise ArgumentError(f"layer {i} does not exist: the model has layers 0..{len(model) - 1}")
    return i


def followed_by_relu(model: Graph, i: int) -> bool:
    """True if node ``i``'s output feeds a ReLU (the DTD relevance model's max(0, .))."""
    return any(isinstance(model[j], ReLU) and i + 1 in model.sources(j) for j in range(i + 1, len(model)))


def summary_table(checks: Sequence[TaylorCheck]) -> str:
    """One row per check: rule, root parameter (numeric and closed form), domain, max error, status."""
    head = (f"{'rule':<24} {'v_j':<42} {'t (brentq)':>12} {'t closed':>12} {'R̂(root)':>9} "
            f"{'max|term-msg|':>13}  status")
    rows = [head, "-" * len(head)]
    for c in checks:
        e = c.expansion
        t = "-" if e.t is None else f"{e.t:.6g}"
        tc = "-" if e.t_closed is None else f"{e.t_closed:.6g}"
        status = "ok" if c.ok else ", ".join(dict.fromkeys(f.kind for f in c.failures))
        rows.append(f"{e.rule!r:<24} {e.direction.formula[:42]:<42} {t:>12} {tc:>12} {e.value_at_root:>9.1e} "
                    f"{c.max_error:>13.1e}  {status}")
    return "\n".join(rows)
