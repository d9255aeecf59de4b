r"""LRP rules: how a layer hands the relevance it receives down to its inputs.

Notation (Montavon et al. 2019, "Layer-Wise Relevance Propagation: An
Overview"): ``a_j`` is the layer input, ``w_jk`` the weight from input ``j`` to
output ``k``, ``b_k`` the bias, ``z_k = sum_j a_j w_jk + b_k`` the
pre-activation, ``R_k`` the relevance arriving from above and ``R_j`` the
relevance passed below.  ``x+ = max(x, 0)``, ``x- = min(x, 0)``.

Every rule for linear layers is the same four steps (the tutorial's recipe),
applied to one or more modified copies of the layer:

.. code-block:: text

    z = sum_t linear_t(a_t) + b'      step 1: modified forward pass
    s = R / stabilize(z)              step 2: element-wise division
    c_t = vjp_t(s)                    step 3: backward pass of each modified layer
    R_in = sum_t a_t * c_t            step 4: element-wise product

**Stabiliser.** ``stabilize(z) = z + eps * sign(z)`` with ``sign(0) = +1``, so
the denominator moves away from zero without changing sign.  Where a
denominator is exactly zero (only possible with ``eps = 0``) the quotient is
defined as 0: that relevance is *absorbed*, never turned into NaN.

**Absorbed relevance.** Whatever part of a denominator does not come from the
inputs (the bias term ``b'`` and the stabiliser) takes its share of ``R_k``
with it: ``absorbed = sum_k s_k (b'_k + stab_k)`` plus every ``R_k`` whose
denominator is zero.  Each rule returns this share per sample, computed from
its own denominators and not from ``R_in``, so the ledger
(:mod:`lrp_ref.ledger`) can check ``sum R_out == sum R_in + absorbed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from .errors import RuleParameterError, ShapeError
from .layers import Flatten, Layer, LinearLayer, MaxPool2d, ReLU, Ties

__all__ = [
    "LRP0",
    "AlphaBeta",
    "Epsilon",
    "Flat",
    "Gamma",
    "Pass",
    "Propagation",
    "Rule",
    "WSquare",
    "WinnerTakesAll",
    "ZBox",
    "ZPlus",
    "stabilize",
]

Array = NDArray[Any]


def stabilize(z: Array, eps: float) -> Array:
    """``z + eps * sign(z)`` with ``sign(0) = +1``: moves ``z`` away from 0, keeping its sign."""
    if eps == 0:
        return z
    return z + np.where(z >= 0, eps, -eps).astype(z.dtype)


@dataclass(frozen=True)
class Propagation:
    """What a rule returns for one layer.

    Attributes
    ----------
    relevance : array, shape of the layer input (N, ...)
        ``R_j``, the relevance passed to the layer below.
    absorbed : array (N,)
        Relevance taken by bias terms, stabilisers and zero denominators,
        computed from the rule's denominators (not as ``R_out - R_in``).
    """

    relevance: Array
    absorbed: Array


def _per_sample_sum(x: Array) -> Array:
    return x.reshape(x.shape[0], -1).sum(axis=1)


def _propagate(terms: list[tuple[LinearLayer, Array]], bias: Array, R: Array, eps: float) -> Propagation:
    """The four LRP steps for the denominator ``sum_t linear_t(a_t) + bias``.

    ``terms`` pairs a (modified) layer with the (modified) input it sees; all
    inputs have the shape of the layer input.
    """
    input_shape = terms[0][1].shape[1:]
    # step 1: modified forward pass, z_k = sum_t sum_j a_tj w_tjk + b'_k
    z_inputs = sum(layer.linear(a) for layer, a in terms)
    z = z_inputs + bias
    zs = stabilize(z, eps)
    # step 2: element-wise division s_k = R_k / z_k (0 where the denominator is exactly 0)
    # (a subnormal denominator can overflow s; explain() reports that as NonFiniteError)
    zero = zs == 0
    with np.errstate(over="ignore", invalid="ignore"):
        s = np.divide(R, zs, out=np.zeros_like(zs), where=~zero)
    # step 3: backward pass c_tj = sum_k w_tjk s_k;  step 4: R_j = sum_t a_tj c_tj
    with np.errstate(over="ignore", invalid="ignore"):
        R_in = sum(a * layer.vjp(s, input_shape) for layer, a in terms)
        # ledger: the share of the bias and stabiliser terms, and of the zero denominators
        absorbed = _per_sample_sum(s * (bias + (zs - z))) + _per_sample_sum(np.where(zero, R, 0))
    return Propagation(np.asarray(R_in), absorbed)


def _check_number(value: Any, name: str, rule: str, minimum: float = 0.0) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise RuleParameterError(f"{rule}: {name} must be a real number; got {value!r}") from exc
    if not np.isfinite(v) or v < minimum:
        raise RuleParameterError(f"{rule}: {name} must be a finite number >= {minimum}; got {value!r}")
    return v


class Rule:
    """Base class of all rules.  Subclasses implement :meth:`relevance`."""

    #: layer types the rule can handle (checked when rules are assigned)
    layer_types: ClassVar[tuple[type[Layer], ...]] = (LinearLayer,)

    def applies_to(self, layer: Layer) -> bool:
        """True if this rule can propagate relevance through ``layer``."""
        return isinstance(layer, self.layer_types)

    def relevance(self, layer: Any, a: Array, R: Array) -> Propagation:
        """Relevance ``R_j`` of the layer input ``a`` given the upper relevance ``R``."""
        raise NotImplementedError


class _LinearRule(Rule):
    layer_types = (LinearLayer,)


def _split_terms(layer: LinearLayer, a: Array, positive: bool) -> list[tuple[LinearLayer, Array]]:
    """Contributions of one sign: ``a+ w+ + a- w-`` (positive) or ``a+ w- + a- w+`` (negative).

    Terms whose input is identically zero (e.g. ``a-`` after a ReLU) are left out.
    """
    w = layer.weight
    w_pos, w_neg = layer.with_weight(np.maximum(w, 0)), layer.with_weight(np.minimum(w, 0))
    a_pos, a_neg = np.maximum(a, 0), np.minimum(a, 0)
    pairs = [(w_pos, a_pos), (w_neg, a_neg)] if positive else [(w_neg, a_pos), (w_pos, a_neg)]
    kept = [(lay, inp) for lay, inp in pairs if np.any(inp)]
    return kept or [pairs[0]]


# ----------------------------------------------------------------------------- rules for linear layers


@dataclass(frozen=True)
class LRP0(_LinearRule):
    r"""LRP-0 (basic rule).

    .. math:: R_j = \sum_k \frac{a_j w_{jk}}{z_k} R_k, \qquad z_k = \sum_j a_j w_{jk} + b_k

    Bias: in the denominator; its share ``R_k b_k / z_k`` is absorbed.
    Stabiliser: none; where ``z_k == 0`` exactly, ``R_k`` is absorbed.
    On ReLU networks LRP-0 equals gradient x input.
    Reference: Bach et al. 2015, PLoS ONE 10(7) e0130140, eq. (56) with
    eps = 0; Montavon et al. 2019, "Layer-Wise Relevance Propagation: An
    Overview", eq. (1).
    """

    def relevance(self, layer: LinearLayer, a: Array, R: Array) -> Propagation:
        return _propagate([(layer, a)], layer.bias_term(), R, 0.0)


@dataclass(frozen=True)
class Epsilon(_LinearRule):
    r"""LRP-epsilon.

    .. math:: R_j = \sum_k \frac{a_j w_{jk}}{z_k + \epsilon\,\mathrm{sign}(z_k)} R_k,
              \qquad z_k = \sum_j a_j w_{jk} + b_k

    Bias: in the denominator; its share is absorbed.  Stabiliser: ``epsilon``,
    sign-aligned, ``sign(0) = +1``; the stabiliser absorbs
    ``R_k eps sign(z_k) / (z_k + eps sign(z_k))``, so weak or contradictory
    contributions lose relevance.
    Reference: Bach et al. 2015, eq. (58); Montavon et al. 2019, eq. (2).

    Parameters
    ----------
    epsilon : float >= 0, default 1e-6
    """

    epsilon: float = 1e-6

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _check_number(self.epsilon, "epsilon", "Epsilon"))

    def relevance(self, layer: LinearLayer, a: Array, R: Array) -> Propagation:
        return _propagate([(layer, a)], layer.bias_term(), R, self.epsilon)


@dataclass(frozen=True)
class Gamma(_LinearRule):
    r"""LRP-gamma: favour positive contributions.

    .. math:: R_j = \sum_k \frac{a_j (w_{jk} + \gamma w_{jk}^+)}
              {\sum_{j'} a_{j'} (w_{j'k} + \gamma w_{j'k}^+) + b_k + \gamma b_k^+} R_k

    Bias: modified like a weight (the bias is neuron 0 with ``a_0 = 1``):
    ``b + gamma b+`` is in the denominator and its share is absorbed.  Inputs
    are used as they are (not split by sign): this is the plain form of the
    overview chapter, meant for the non-negative inputs after a ReLU.
    Stabiliser: ``stabilizer`` (default 0), sign-aligned; zero denominators absorb.
    ``Gamma(0)`` is LRP-0.
    Reference: Montavon et al. 2019, eq. (4).

    Parameters
    ----------
    gamma : float >= 0, default 0.25
    stabilizer : float >= 0, default 0
    """

    gamma: float = 0.25
    stabilizer: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", _check_number(self.gamma, "gamma", "Gamma"))
        object.__setattr__(self, "stabilizer", _check_number(self.stabilizer, "stabilizer", "Gamma"))

    def relevance(self, layer: LinearLayer, a: Array, R: Array) -> Propagation:
        w, b = layer.weight, layer.bias_term()
        modified = layer.with_weight(w + self.gamma * np.maximum(w, 0))
        bias = b + self.gamma * np.maximum(b, 0)
        return _propagate([(modified, a)], bias, R, self.stabilizer)


@dataclass(frozen=True)
class AlphaBeta(_LinearRule):
    r"""LRP-alpha-beta: positive and negative contributions propagated separately.

    .. math:: R_j = \sum_k \left( \alpha \frac{(a_j w_{jk})^+}{\sum_{j'} (a_{j'} w_{j'k})^+ + b_k^+}
              - \beta \frac{(a_j w_{jk})^-}{\sum_{j'} (a_{j'} w_{j'k})^- + b_k^-} \right) R_k

    The contributions ``a_j w_jk`` are split by their sign, so inputs of
    either sign are handled: ``(a w)+ = a+ w+ + a- w-`` and
    ``(a w)- = a+ w- + a- w+``.
    Bias: ``b+`` in the positive denominator, ``b-`` in the negative one; their
    shares are absorbed.  Stabiliser: ``stabilizer`` (default 0) on each
    denominator, sign-aligned; a zero denominator absorbs its part
    (``alpha R_k`` or ``-beta R_k``).
    Parameters must satisfy ``alpha - beta = 1`` and ``alpha, beta >= 0``, so
    that the rule conserves.  ``AlphaBeta(1, 0)`` is :class:`ZPlus`.
    Reference: Bach et al. 2015, eq. (60); Montavon et al. 2019, Sec. 10.2.3.

    Parameters
    ----------
    alpha : float >= 1, default 2
    beta : float >= 0, default 1
    stabilizer : float >= 0, default 0
    """

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 0.0

    def __post_init__(self) -> None:
        alpha = _check_number(self.alpha, "alpha", "AlphaBeta")
        beta = _check_number(self.beta, "beta", "AlphaBeta")
        if abs(alpha - beta - 1.0) > 1e-12:
            raise RuleParameterError(
                f"AlphaBeta needs alpha - beta = 1 (so that relevance is conserved); "
                f"got alpha={self.alpha!r}, beta={self.beta!r}, alpha - beta = {alpha - beta!r}"
            )
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "stabilizer", _check_number(self.stabilizer, "stabilizer", "AlphaBeta"))

    def relevance(self, layer: LinearLayer, a: Array, R: Array) -> Propagation:
        b = layer.bias_term()
        pos = _propagate(_split_terms(layer, a, positive=True), np.maximum(b, 0), R, self.stabilizer)
        if self.beta == 0:
            return Propagation(self.alpha * pos.relevance, self.alpha * pos.absorbed)
        neg = _propagate(_split_terms(layer, a, positive=False), np.minimum(b, 0), R, self.stabilizer)
        return Propagation(
            self.alpha * pos.relevance - self.beta * neg.relevance,
            self.alpha * pos.absorbed - self.beta * neg.absorbed,
        )


@dataclass(frozen=True)
class ZPlus(_LinearRule):
    r"""LRP-z+: only positive contributions.

    .. math:: R_j = \sum_k \frac{(a_j w_{jk})^+}{\sum_{j'} (a_{j'} w_{j'k})^+ + b_k^+} R_k

    For non-negative inputs this is ``a_j w_jk+ / sum a w+``.  Bias: ``b+`` in
    the denominator (so that ``ZPlus`` equals ``AlphaBeta(1, 0)``); its share
    is absorbed.  Stabiliser: ``stabilizer`` (default 0), sign-aligned; where
    no contribution is positive the relevance is absorbed.
    Reference: Montavon et al. 2017, "Explaining nonlinear classification
    decisions with deep Taylor decomposition", Pattern Recognition 65, eq. (z+);
    Bach et al. 2015 eq. (60) with alpha = 1, beta = 0.

    Parameters
    ----------
    stabilizer : float >= 0, default 0
    """

    stabilizer: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stabilizer", _check_number(self.stabilizer, "stabilizer", "ZPlus"))

    def relevance(self, layer: LinearLayer, a: Array, R: Array) -> Propagation:
        b = layer.bias_term()
        return _propagate(_split_terms(layer, a, positive=True), np.maximum(b, 0), R, self.stabilizer)


def _bound_repr(x: Any) -> str:
    arr = np.asarray(x)
    return repr(float(arr)) if arr.ndim == 0 else f"array{arr.shape}"


@dataclass(frozen=True, repr=False)
class ZBox(_LinearRule):
    r"""LRP-zB (box rule) for inputs bounded by ``low <= x <= high``, e.g. pixels.

    .. math:: R_i = \sum_k \frac{x_i w_{ik} - l_i w_{ik}^+ - h_i w_{ik}^-}
              {\sum_{i'} x_{i'} w_{i'k} - l_{i'} w_{i'k}^+ - h_{i'} w_{i'k}^-} R_k

    Every term of the denominator is >= 0 when ``l <= x <= h``, so the rule
    is well behaved; an input outside its bounds is refused.
    Bias: ignored (not in the denominator); nothing is absorbed except at
    zero denominators.  Stabiliser: ``stabilizer`` (default 0), sign-aligned.
    Meant for the first layer.
    Reference: Montavon et al. 2017 (deep Taylor decomposition), eq. (zB);
    Montavon et al. 2019, Sec. 10.2.4.

    Parameters
    ----------
    low, high : float or array broadcastable to the layer input (N, ...)
        Lowest and highest admissible input value, per element if arrays.
    stabilizer : float >= 0, default 0
    """

    low: Any
    high: Any
    stabilizer: float = 0.0

    def __post_init__(self) -> None:
        low, high = np.array(self.low, dtype=np.float64), np.array(self.high, dtype=np.float64)
        for name, arr in (("low", low), ("high", high)):
            if not np.all(np.isfinite(arr)):
                raise RuleParameterError(f"ZBox: {name} must be finite; got {_bound_repr(arr)} with NaN/inf")
        try:
            gap = high - low
        except ValueError as exc:
            raise RuleParameterError(f"ZBox: low {low.shape} and high {high.shape} do not broadcast") from exc
        if np.any(gap < 0):
            raise RuleParameterError(f"ZBox needs low <= high; found {int((gap < 0).sum())} element(s) with low > high")
        low.setflags(write=False)
        high.setflags(write=False)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "stabilizer", _check_number(self.stabilizer, "stabilizer", "ZBox"))

    def __repr__(self) -> str:
        return f"ZBox(low={_bound_repr(self.low)}, high={_bound_repr(self.high)})"

    def relevance(self, layer: LinearLayer, a: Array, R: Array) -> Propagation:
        try:
            low = np.broadcast_to(self.low.astype(a.dtype), a.shape)
            high = np.broadcast_to(self.high.astype(a.dtype), a.shape)
        except ValueError as exc:
            raise ShapeError(
                f"ZBox bounds of shape low {self.low.shape}, high {self.high.shape} "
                f"do not broadcast to the layer input {a.shape}"
            ) from exc
        outside = (a < low) | (a > high)
        if np.any(outside):
            raise RuleParameterError(
                f"ZBox needs low <= x <= high, but {int(outside.sum())} input value(s) lie outside "
                f"(x in [{a.min():.6g}, {a.max():.6g}]); pass the bounds of the model input"
            )
        w = layer.weight
        terms = [
            (layer, a),                                           # x w
            (layer.with_weight(np.maximum(w, 0)), -low),          # - l w+
            (layer.with_weight(np.minimum(w, 0)), -high),         # - h w-
        ]
        return _propagate(terms, np.zeros_like(layer.bias_term()), R, self.stabilizer)


@dataclass(frozen=True)
class WSquare(_LinearRule):
    r"""LRP-w^2: relevance by squared weights, independent of the input.

    .. math:: R_i = \sum_k \frac{w_{ik}^2}{\sum_{i'} w_{i'k}^2} R_k

    Meant for the first layer with unbounded real inputs.  Bias: ignored.
    Positions that are zero padding are not inputs and take no share.
    Stabiliser: ``stabilizer`` (default 0); a zero column absorbs its relevance.
    Reference: Montavon et al. 2017 (deep Taylor decomposition), eq. (w^2).

    Parameters
    ----------
    stabilizer : float >= 0, default 0
    """

    stabilizer: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stabilizer", _check_number(self.stabilizer, "stabilizer", "WSquare"))

    def relevance(self, layer: LinearLayer, a: Array, R: Array) -> Propagation:
        squared = layer.with_weight(layer.weight**2)
        return _propagate([(squared, np.ones_like(a))], np.zeros_like(layer.bias_term()), R, self.stabilizer)


@dataclass(frozen=True)
class Flat(_LinearRule):
    r"""Flat rule: relevance spread uniformly over each output's receptive field.

    .. math:: R_i = \sum_k \frac{1}{\sum_{i'} 1} R_k

    where both sums run over the inputs connected to ``k`` (zero-padding
    positions are not inputs).  Bias: ignored.  Stabiliser: ``stabilizer``
    (default 0).
    Reference: Lapuschkin et al. 2019, "Unmasking Clever Hans predictors",
    Nature Communications 10:1096 (methods, "flat" rule).

    Parameters
    ----------
    stabilizer : float >= 0, default 0
    """

    stabilizer: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stabilizer", _check_number(self.stabilizer, "stabilizer", "Flat"))

    def relevance(self, layer: LinearLayer, a: Array, R: Array) -> Propagation:
        flat = layer.with_weight(np.ones_like(layer.weight))
        return _propagate([(flat, np.ones_like(a))], np.zeros_like(layer.bias_term()), R, self.stabilizer)


# ----------------------------------------------------------------------------- rules for the other layers


@dataclass(frozen=True)
class Pass(Rule):
    """Pass relevance through unchanged (reshaped to the input): for ReLU and Flatten.

    .. math:: R_j = R_j^{above}

    An element-wise activation keeps each neuron's relevance (Montavon et al.
    2019, Sec. 10.2: relevance is propagated through the linear layers; the
    activation only decides which neurons carry it).  Nothing is absorbed.
    """

    layer_types = (ReLU, Flatten)

    def relevance(self, layer: Layer, a: Array, R: Array) -> Propagation:
        return Propagation(R.reshape(a.shape), np.zeros(a.shape[0], dtype=R.dtype))


@dataclass(frozen=True)
class WinnerTakesAll(Rule):
    """Max pooling: each window's relevance goes to the input that was its maximum.

    .. math:: R_j = \\sum_k \\frac{[a_j = \\max_{j' \\in k} a_{j'}]}{\\#\\{\\text{ties in } k\\}} R_k

    ``ties="split"`` (default) shares a window's relevance evenly among inputs
    tied for the maximum; ``ties="first"`` gives it to the first arg-max in
    row-major order, which is how PyTorch routes the gradient.  Nothing is
    absorbed.  Reference: Bach et al. 2015, Sec. 3.3 ("winner takes all").
    """

    ties: Ties = "split"
    layer_types = (MaxPool2d,)

    def __post_init__(self) -> None:
        if self.ties not in ("split", "first"):
            raise RuleParameterError(f"WinnerTakesAll: ties must be 'split' or 'first'; got {self.ties!r}")

    def relevance(self, layer: MaxPool2d, a: Array, R: Array) -> Propagation:
        return Propagation(layer.route(a, R, self.ties), np.zeros(a.shape[0], dtype=R.dtype))


def default_rule(layer: Layer) -> Rule | None:
    """The rule a non-linear layer takes unless told otherwise; None for linear layers."""
    if isinstance(layer, MaxPool2d):
        return WinnerTakesAll()
    if isinstance(layer, (ReLU, Flatten)):
        return Pass()
    return None
