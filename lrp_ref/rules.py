r"""LRP rules: how a layer hands the relevance it receives down to its inputs.

Notation (Montavon et al. 2019, "Layer-Wise Relevance Propagation: An
Overview"): ``a_j`` is the layer input, ``w_jk`` the weight from input ``j`` to
output ``k``, ``b_k`` the bias, ``z_k = sum_j a_j w_jk + b_k`` the
pre-activation, ``R_k`` the relevance arriving from above and ``R_j`` the
relevance passed below.  ``x+ = max(x, 0)``, ``x- = min(x, 0)``.

Every rule for linear layers is the four-step recipe of :mod:`lrp_ref.recipe`
applied to one or more modified copies of the layer; each rule returns the
relevance it passes down and the share its bias terms and stabilisers absorb.

**Conventions.** Where LRP implementations disagree (the stabiliser's form,
where the bias goes, how inputs are split by sign, ...), a rule has a field
whose default ``None`` means "as the convention profile says"
(:mod:`lrp_ref.profiles`).  :data:`DEFAULTS` holds lrp_ref's own choices,
which follow the papers; :meth:`Rule.resolved` fills the fields in.  A value
you pass explicitly always wins over the profile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
from numpy.typing import NDArray

from ._checks import describe_value, real_array, real_number
from .errors import RuleParameterError, ShapeError
from .layers import AvgPool2d, BatchNorm, Conv2d, Flatten, Layer, LinearLayer, MaxPool2d, ReLU
from .merge import Concat
from .recipe import Propagation, per_sample_sum, propagate, sign_terms, stabilize

__all__ = [
    "DEFAULTS",
    "LRP0",
    "AlphaBeta",
    "AverageInstead",
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
RuleT = TypeVar("RuleT", bound="Rule")

#: lrp_ref's own conventions (the "lrp_ref" profile).  Keys are field names,
#: or ``"Class.field"`` for a choice that applies to one rule only.
DEFAULTS: dict[str, Any] = {
    "form": "sign",              # stabiliser z + eps * sign(z), sign(0) = +1
    "stabilizer": 0.0,           # no stabiliser: exact formulas, zero denominators absorbed
    "epsilon": 1e-6,             # Epsilon rule
    "Epsilon.stabilizer": 0.0,   # Epsilon: nothing added to epsilon (the tutorial adds 1e-9)
    "scale": "absolute",         # Epsilon: eps as given (not relative to the RMS of z)
    "variant": "plain",          # Gamma: w + gamma w+ and b + gamma b+, inputs as they are
    "bias": "split",             # AlphaBeta / ZPlus: b+ in the positive, b- in the negative denominator
    "split": "contributions",    # AlphaBeta / ZPlus: split the contributions a_j w_jk by sign
    "WSquare.bias": "ignore",    # w-square: the bias is not in the denominator
    "ties": "split",             # max pooling: ties share the relevance evenly
    "WinnerTakesAll.epsilon": 0.0,
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "form": ("sign", "add", "zeros"),
    "scale": ("absolute", "rms"),
    "variant": ("plain", "weights", "generalized"),
    "bias": ("split", "both", "none"),
    "WSquare.bias": ("ignore", "square"),
    "split": ("contributions", "weights"),
    "ties": ("split", "first"),
}


def _check_number(value: Any, name: str, rule: str, minimum: float = 0.0) -> float:
    """A finite real number >= ``minimum``: bools, strings and complex numbers are refused, not converted."""
    return real_number(value, f"{rule}: {name}", RuleParameterError, minimum)


def _bounds_array(value: Any, name: str) -> Array:
    """ZBox's ``low`` or ``high`` as a float64 array (NaN and inf are checked by the caller)."""
    arr = real_array(value, f"ZBox: {name}", RuleParameterError)
    if arr.size == 0:
        raise RuleParameterError(f"ZBox: {name} must not be empty; got shape {arr.shape}")
    with np.errstate(over="ignore"):
        return np.array(arr, dtype=np.float64, copy=True)


class Rule:
    """Base class of all rules.  Subclasses implement ``_relevance`` on a resolved rule."""

    #: layer types the rule can handle (checked when rules are assigned)
    layer_types: ClassVar[tuple[type[Layer], ...]] = (LinearLayer,)
    #: parameters always shown by repr; convention fields are shown when they differ from DEFAULTS
    _shown: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        # Every field is checked by its declared type: a convention (default None) may be left unset;
        # a choice must be one of its strings; a number (annotated float) must be a finite real >= 0 and
        # is stored as a Python float.  Bools, strings and complex numbers are refused, never converted.
        name = type(self).__name__
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None:
                if f.default is None:
                    continue  # a convention left to the profile
                if "Any" in str(f.type):
                    raise RuleParameterError(f"{name}: {f.name} must be given; got None")
            choices = _CHOICES.get(f"{name}.{f.name}", _CHOICES.get(f.name))
            if choices is not None:
                if not isinstance(value, str) or value not in choices:
                    got = repr(value) if isinstance(value, str) else describe_value(value)
                    raise RuleParameterError(f"{name}: {f.name} must be one of {', '.join(map(repr, choices))}; "
                                             f"got {got}")
            elif "float" in str(f.type) or f.name in ("epsilon", "stabilizer", "negative_stabilizer", "gamma", "alpha",
                                                       "beta"):
                object.__setattr__(self, f.name, _check_number(value, f.name, name))
            elif "str" in str(f.type) and not isinstance(value, str):
                raise RuleParameterError(f"{name}: {f.name} must be a str; got {describe_value(value)}")

    def applies_to(self, layer: Layer) -> bool:
        """True if this rule can propagate relevance through ``layer``."""
        return isinstance(layer, self.layer_types)

    def resolved(self: RuleT, defaults: Mapping[str, Any] | None = None) -> RuleT:
        """A copy with every unset (None) field taken from ``defaults``, then from :data:`DEFAULTS`."""
        table = {**DEFAULTS, **(defaults or {})}
        name = type(self).__name__
        changes = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if getattr(self, f.name) is None:
                for key in (f"{name}.{f.name}", f.name):
                    if key in table:
                        changes[f.name] = table[key]
                        break
        return dataclasses.replace(self, **changes) if changes else self  # type: ignore[type-var]

    def relevance(self, layer: Any, a: Array, R: Array, z: Array | None = None) -> Propagation:
        """Relevance ``R_j`` of the layer input ``a`` given the upper relevance ``R``.

        ``z`` is optionally the layer's output from the forward sweep (its
        pre-activation), which rules that need it reuse instead of a second
        forward pass.  Unset conventions take lrp_ref's defaults;
        :func:`lrp_ref.explain` resolves them with the chosen profile first.
        """
        if isinstance(layer, LinearLayer):
            layer = layer.for_input(tuple(a.shape[1:]))  # weights that depend on the input size made explicit
        if z is None and isinstance(layer, LinearLayer) and self._uses_z:
            z = layer.forward(a)
        return self.resolved()._relevance(layer, a, R, z)

    #: whether _relevance needs the layer's ordinary output z
    _uses_z: ClassVar[bool] = False

    def _relevance(self, layer: Any, a: Array, R: Array, z: Array | None) -> Propagation:
        raise NotImplementedError

    def __repr__(self) -> str:
        name = type(self).__name__
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            default = DEFAULTS.get(f"{name}.{f.name}", DEFAULTS.get(f.name))
            if value is not None and (f.name in self._shown or value != default):
                parts.append(f"{f.name}={_short(value)}")
        return f"{name}({', '.join(parts)})"


def _short(value: Any) -> str:
    arr = np.asarray(value)
    if isinstance(value, np.ndarray) and arr.ndim > 0:
        return f"array{arr.shape}"
    if isinstance(value, np.ndarray):
        return repr(float(arr))
    return repr(value)


# ----------------------------------------------------------------------------- rules for linear layers


@dataclass(frozen=True, repr=False)
class LRP0(Rule):
    r"""LRP-0 (basic rule).

    .. math:: R_j = \sum_k \frac{a_j w_{jk}}{z_k} R_k, \qquad z_k = \sum_j a_j w_{jk} + b_k

    Bias: in the denominator; its share ``R_k b_k / z_k`` is absorbed.
    Stabiliser: none by default; where ``z_k == 0`` exactly, ``R_k`` is absorbed
    (profiles may set a tiny ``stabilizer``, e.g. lrp_toolbox's 1e-16).
    On ReLU networks LRP-0 equals gradient x input.
    Reference: Bach et al. 2015, PLoS ONE 10(7) e0130140, eq. (56) with
    eps = 0; Montavon et al. 2019, "Layer-Wise Relevance Propagation: An
    Overview", eq. (1).
    """

    stabilizer: float | None = None
    form: str | None = None
    _uses_z: ClassVar[bool] = True

    def _relevance(self, layer: LinearLayer, a: Array, R: Array, z: Array | None) -> Propagation:
        # the denominator is the forward pre-activation itself: step 1 reuses it
        return propagate([(layer, a)], layer.bias_term(), R, self.stabilizer, self.form, z=z)  # type: ignore[arg-type]


@dataclass(frozen=True, repr=False)
class Epsilon(Rule):
    r"""LRP-epsilon.

    .. math:: R_j = \sum_k \frac{a_j w_{jk}}{z_k + \epsilon\,\mathrm{sign}(z_k)} R_k,
              \qquad z_k = \sum_j a_j w_{jk} + b_k

    Bias: in the denominator; its share is absorbed.  Stabiliser: ``epsilon``,
    sign-aligned with ``sign(0) = +1`` (``form``); the stabiliser absorbs
    ``R_k eps sign(z_k) / (z_k + eps sign(z_k))``, so weak or contradictory
    contributions lose relevance.  With ``scale="rms"`` the added amount is
    ``epsilon * sqrt(mean(z**2))`` over the whole batch tensor, plus
    ``stabilizer`` (the Montavon et al. tutorial's ``0.25 * std``).
    Reference: Bach et al. 2015, eq. (58); Montavon et al. 2019, eq. (2).

    Parameters
    ----------
    epsilon : float >= 0, default 1e-6 (lrp_ref profile)
    stabilizer : float >= 0, default 0; added to epsilon
    scale : "absolute" or "rms"
    form : "sign", "add" or "zeros" (see :func:`lrp_ref.recipe.stabilize`)
    """

    epsilon: float | None = None
    stabilizer: float | None = None
    scale: str | None = None
    form: str | None = None
    _shown: ClassVar[tuple[str, ...]] = ("epsilon",)
    _uses_z: ClassVar[bool] = True

    def _relevance(self, layer: LinearLayer, a: Array, R: Array, z: Array | None) -> Propagation:
        assert z is not None
        eps = float(self.epsilon)  # type: ignore[arg-type]
        if self.scale == "rms":
            eps *= float(np.sqrt(np.mean(z.astype(np.float64) ** 2)))
        # the denominator is the forward pre-activation itself: step 1 reuses it
        return propagate([(layer, a)], layer.bias_term(), R, eps + self.stabilizer, self.form, z=z)  # type: ignore[operator, arg-type]


@dataclass(frozen=True, repr=False)
class Gamma(Rule):
    r"""LRP-gamma: favour positive contributions.

    ``variant="plain"`` (lrp_ref; Montavon et al. 2019, eq. 4):

    .. math:: R_j = \sum_k \frac{a_j (w_{jk} + \gamma w_{jk}^+)}
              {\sum_{j'} a_{j'} (w_{j'k} + \gamma w_{j'k}^+) + b_k + \gamma b_k^+} R_k

    The bias is modified like a weight (it is neuron 0 with ``a_0 = 1``) and its
    share is absorbed; inputs are used as they are (the rule is meant for the
    non-negative inputs after a ReLU).  ``Gamma(0)`` is LRP-0.

    ``variant="weights"``: weights ``w + gamma w+``, bias unchanged (Captum).

    ``variant="generalized"`` (zennit; Andéol et al. 2021): outputs with
    ``z_k > 0`` use the denominator
    ``a+ (w + gamma w+) + a- (w + gamma w-) + b + gamma b+``, outputs with
    ``z_k < 0`` the mirror image ``a+ (w + gamma w-) + a- (w + gamma w+) + b + gamma b-``;
    outputs with ``z_k == 0`` pass nothing down (their relevance is absorbed).
    For non-negative inputs and ``z_k > 0`` it equals the plain form.

    Stabiliser: ``stabilizer`` (lrp_ref default 0), of the given ``form``; zero
    denominators absorb.

    Parameters
    ----------
    gamma : float >= 0, default 0.25
    stabilizer : float >= 0
    form, variant : conventions, see above
    """

    gamma: float = 0.25
    stabilizer: float | None = None
    form: str | None = None
    variant: str | None = None
    _shown: ClassVar[tuple[str, ...]] = ("gamma",)
    _uses_z: ClassVar[bool] = True  # the generalised variant branches on the sign of z

    def _relevance(self, layer: LinearLayer, a: Array, R: Array, z: Array | None) -> Propagation:
        w, b, g = layer.weight, layer.bias_term(), self.gamma
        eps, form = float(self.stabilizer), self.form  # type: ignore[arg-type]
        up = layer._derived(w + g * np.maximum(w, 0))
        if self.variant == "plain":
            return propagate([(up, a)], b + g * np.maximum(b, 0), R, eps, form)  # type: ignore[arg-type]
        if self.variant == "weights":
            return propagate([(up, a)], b, R, eps, form)  # type: ignore[arg-type]
        # generalized: the sign of the ordinary pre-activation z picks the branch
        down = layer._derived(w + g * np.minimum(w, 0))
        assert z is not None
        a_pos, a_neg = np.maximum(a, 0), np.minimum(a, 0)
        pos_terms = [(up, a_pos)] + ([(down, a_neg)] if np.any(a_neg) else [])
        neg_terms = [(down, a_pos)] + ([(up, a_neg)] if np.any(a_neg) else [])
        pos = propagate(pos_terms, b + g * np.maximum(b, 0), R, eps, form, mask=z > 0)  # type: ignore[arg-type]
        neg = propagate(neg_terms, b + g * np.minimum(b, 0), R, eps, form, mask=z < 0)  # type: ignore[arg-type]
        dropped = Propagation(np.zeros_like(a), per_sample_sum(np.where(z == 0, R, 0)))
        return pos + neg + dropped


@dataclass(frozen=True, repr=False)
class AlphaBeta(Rule):
    r"""LRP-alpha-beta: positive and negative contributions propagated separately.

    .. math:: R_j = \sum_k \left( \alpha \frac{(a_j w_{jk})^+}{\sum_{j'} (a_{j'} w_{j'k})^+ + b_k^+}
              - \beta \frac{(a_j w_{jk})^-}{\sum_{j'} (a_{j'} w_{j'k})^- + b_k^-} \right) R_k

    ``split="contributions"`` (lrp_ref, zennit): the contributions ``a_j w_jk``
    are split by sign, ``(a w)+ = a+ w+ + a- w-`` and ``(a w)- = a+ w- + a- w+``;
    ``split="weights"``: only the weights, ``a w+`` and ``a w-`` (Captum).
    ``bias="split"`` (lrp_ref, zennit): ``b+`` in the positive, ``b-`` in the
    negative denominator; ``"both"``: the full ``b`` in both (iNNvestigate);
    ``"none"``: no bias.  The bias shares are absorbed.  Stabiliser:
    ``stabilizer`` on each denominator (``negative_stabilizer``, if set, on the
    negative one; lrp_toolbox's fast alpha-beta subtracts 2e-16 there and adds
    1e-16 to the positive one); a zero denominator absorbs its part
    (``alpha R_k`` or ``-beta R_k``).  Parameters must satisfy
    ``alpha - beta = 1`` and ``alpha, beta >= 0``, so that the rule conserves.
    ``AlphaBeta(1, 0)`` is :class:`ZPlus`.
    Reference: Bach et al. 2015, eq. (60); Montavon et al. 2019, Sec. 10.2.3.

    Parameters
    ----------
    alpha : float >= 1, default 2
    beta : float >= 0, default 1
    stabilizer : float >= 0
    form, bias, split : conventions, see above
    negative_stabilizer : float >= 0 or None
        The negative denominator's stabiliser; None: ``stabilizer``.
    """

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float | None = None
    form: str | None = None
    bias: str | None = None
    split: str | None = None
    negative_stabilizer: float | None = None
    _shown: ClassVar[tuple[str, ...]] = ("alpha", "beta")

    def __post_init__(self) -> None:
        super().__post_init__()
        if abs(self.alpha - self.beta - 1.0) > 1e-12:
            raise RuleParameterError(
                f"AlphaBeta needs alpha - beta = 1 (so that relevance is conserved); "
                f"got alpha={self.alpha!r}, beta={self.beta!r}, alpha - beta = {self.alpha - self.beta!r}"
            )

    def _relevance(self, layer: LinearLayer, a: Array, R: Array, z: Array | None) -> Propagation:
        pos = _one_sign(layer, a, R, True, self)
        if self.beta == 0:
            return pos.scaled(self.alpha)
        return pos.scaled(self.alpha) + _one_sign(layer, a, R, False, self).scaled(-self.beta)


def _one_sign(layer: LinearLayer, a: Array, R: Array, positive: bool, rule: Any) -> Propagation:
    """Relevance through the contributions of one sign, with the bias as ``rule.bias`` says."""
    b = layer.bias_term()
    bias = {"split": np.maximum(b, 0) if positive else np.minimum(b, 0), "both": b, "none": np.zeros_like(b)}
    terms = sign_terms(layer, a, positive, rule.split)
    eps = getattr(rule, "negative_stabilizer", None)
    eps = rule.stabilizer if positive or eps is None else eps
    return propagate(terms, bias[rule.bias], R, float(eps), rule.form)


@dataclass(frozen=True, repr=False)
class ZPlus(Rule):
    r"""LRP-z+: only positive contributions.

    .. math:: R_j = \sum_k \frac{(a_j w_{jk})^+}{\sum_{j'} (a_{j'} w_{j'k})^+ + b_k^+} R_k

    For non-negative inputs this is ``a_j w_jk+ / sum a w+``.  Bias, split and
    stabiliser as the positive part of :class:`AlphaBeta` (lrp_ref: ``b+`` in
    the denominator, so that ``ZPlus`` equals ``AlphaBeta(1, 0)``); the bias
    share is absorbed, and where no contribution is positive so is the relevance.
    Reference: Montavon et al. 2017, "Explaining nonlinear classification
    decisions with deep Taylor decomposition", Pattern Recognition 65, eq. (z+);
    Bach et al. 2015 eq. (60) with alpha = 1, beta = 0.

    Parameters
    ----------
    stabilizer : float >= 0
    form, bias, split : conventions, as for AlphaBeta
    """

    stabilizer: float | None = None
    form: str | None = None
    bias: str | None = None
    split: str | None = None

    def _relevance(self, layer: LinearLayer, a: Array, R: Array, z: Array | None) -> Propagation:
        return _one_sign(layer, a, R, True, self)


@dataclass(frozen=True, repr=False)
class ZBox(Rule):
    r"""LRP-zB (box rule) for inputs bounded by ``low <= x <= high``, e.g. pixels.

    .. math:: R_i = \sum_k \frac{x_i w_{ik} - l_i w_{ik}^+ - h_i w_{ik}^-}
              {\sum_{i'} x_{i'} w_{i'k} - l_{i'} w_{i'k}^+ - h_{i'} w_{i'k}^-} R_k

    Every term of the denominator is >= 0 when ``l <= x <= h``, so the rule
    is well behaved; an input outside its bounds is refused.
    Bias: not in the denominator (in zennit's form ``b - b+ - b-`` cancels);
    nothing is absorbed except by the stabiliser and zero denominators.
    Meant for the first layer.
    Reference: Montavon et al. 2017 (deep Taylor decomposition), eq. (zB);
    Montavon et al. 2019, Sec. 10.2.4.

    Parameters
    ----------
    low, high : float or array broadcastable to the layer input (N, ...)
        Lowest and highest admissible input value, per element if arrays.
    stabilizer : float >= 0
    form : convention
    """

    low: Any
    high: Any
    stabilizer: float | None = None
    form: str | None = None
    _shown: ClassVar[tuple[str, ...]] = ("low", "high")

    def __post_init__(self) -> None:
        super().__post_init__()
        low, high = _bounds_array(self.low, "low"), _bounds_array(self.high, "high")
        for name, arr in (("low", low), ("high", high)):
            if not np.all(np.isfinite(arr)):
                raise RuleParameterError(f"ZBox: {name} must be finite; got {_short(arr)} with NaN/inf")
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

    def _relevance(self, layer: LinearLayer, a: Array, R: Array, z: Array | None) -> Propagation:
        try:
            low = np.broadcast_to(self.low.astype(a.dtype), a.shape)
            high = np.broadcast_to(self.high.astype(a.dtype), a.shape)
        except ValueError as exc:
            raise ShapeError(
                f"ZBox bounds of shape low {self.low.shape}, high {self.high.shape} "
                f"do not broadcast to the layer input {a.shape}"
            ) from exc
        if self.low.size == 1 and self.high.size == 1:
            # scalar bounds (the usual case): the extremes of x decide, without an (N, ...) mask; low and high are
            # this call's casts, computed once and used by the check and by both terms below
            lo, hi = low.flat[0], high.flat[0]
            inside = not (a.size and (a.min() < lo or a.max() > hi))
        else:
            inside = not np.any((a < low) | (a > high))
        if not inside:
            outside = (a < low) | (a > high)
            raise RuleParameterError(
                f"ZBox needs low <= x <= high, but {int(outside.sum())} input value(s) lie outside "
                f"(x in [{a.min():.6g}, {a.max():.6g}]); pass the bounds of the model input"
            )
        w = layer.weight
        # x w - l w+ - h w-, written as (x - l) w+ + (x - h) w-: every product has a factor of known sign, so a
        # window whose terms are all exactly zero has a denominator of exactly zero (absorbed), not rounding noise
        terms = [
            (layer._derived(np.maximum(w, 0)), a - low),       # (x - l) w+ >= 0
            (layer._derived(np.minimum(w, 0)), a - high),      # (x - h) w- >= 0
        ]
        return propagate(terms, np.zeros_like(layer.bias_term()), R, float(self.stabilizer), self.form)  # type: ignore[arg-type]


@dataclass(frozen=True, repr=False)
class WSquare(Rule):
    r"""LRP-w^2: relevance by squared weights, independent of the input.

    .. math:: R_i = \sum_k \frac{w_{ik}^2}{\sum_{i'} w_{i'k}^2} R_k

    Meant for the first layer with unbounded real inputs.  Bias:
    ``bias="ignore"`` (lrp_ref, iNNvestigate) leaves it out;
    ``bias="square"`` (zennit) adds ``b_k^2`` to the denominator, and that
    share is absorbed.  Positions that are zero padding are not inputs and
    take no share.  Stabiliser: ``stabilizer``; a zero column absorbs its relevance.
    Reference: Montavon et al. 2017 (deep Taylor decomposition), eq. (w^2).

    Parameters
    ----------
    stabilizer : float >= 0
    form, bias : conventions
    """

    stabilizer: float | None = None
    form: str | None = None
    bias: str | None = None

    def _relevance(self, layer: LinearLayer, a: Array, R: Array, z: Array | None) -> Propagation:
        squared = layer._derived(layer.weight**2)
        b = layer.bias_term()
        bias = b**2 if self.bias == "square" else np.zeros_like(b)
        return propagate([(squared, _ones(a))], bias, R, float(self.stabilizer), self.form)  # type: ignore[arg-type]


@dataclass(frozen=True, repr=False)
class Flat(Rule):
    r"""Flat rule: relevance spread uniformly over each output's receptive field.

    .. math:: R_i = \sum_k \frac{1}{\sum_{i'} 1} R_k

    where both sums run over the inputs connected to ``k`` (zero-padding
    positions are not inputs).  Bias: ignored.  Stabiliser: ``stabilizer``.
    Reference: Lapuschkin et al. 2019, "Unmasking Clever Hans predictors",
    Nature Communications 10:1096 (methods, "flat" rule).

    Parameters
    ----------
    stabilizer : float >= 0
    form : convention
    """

    stabilizer: float | None = None
    form: str | None = None

    def _relevance(self, layer: LinearLayer, a: Array, R: Array, z: Array | None) -> Propagation:
        flat = layer._derived(np.ones_like(layer.weight))
        zero_bias = np.zeros_like(layer.bias_term())
        z_one = None
        if flat.weight[0].size < 2**24:
            # the denominator counts the inputs of each output: whole numbers, exact in any order of summation and
            # the same for every sample, so one sample's is computed (plus the zero bias, as propagate would)
            z_one = flat.linear(np.ones((1, *a.shape[1:]), a.dtype)) + zero_bias
        if isinstance(flat, Conv2d):
            flat = _ChannelSum(flat)  # the adjoint of all-ones weights: sum s over the output channels first
        return propagate([(flat, _ones(a))], zero_bias, R, float(self.stabilizer), self.form, z=z_one)  # type: ignore[arg-type]


def _ones(a: Array) -> Array:
    """An array of ones shaped like ``a``, in its dtype (a read-only broadcast view: no memory)."""
    return np.broadcast_to(np.ones((), a.dtype), a.shape)


class _ChannelSum(LinearLayer):
    r"""The all-ones convolution of the flat rule, whose adjoint is a sum over the output channels.

    With every weight 1, ``c_j = sum_k s_k`` over the outputs ``k`` connected to
    ``j``: ``S = sum_o s_o`` (per group), spread over each window by the adjoint
    of a one-channel all-ones convolution, is the same for every input channel
    of the group.  That is O/G times fewer products than the full adjoint, and
    the sum over ``o`` runs in the order the full adjoint's matrix product
    takes (one output channel after the other), so the result is the same.
    Everything else is the wrapped layer's.
    """

    def __init__(self, layer: Conv2d):
        self.layer = layer
        self.weight = layer.weight
        self.bias = None
        self.dtype = layer.dtype

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.layer.output_shape(input_shape)

    def linear(self, a: Array) -> Array:
        return self.layer.linear(a)

    def bias_term(self) -> Array:
        return self.layer.bias_term()

    def describe(self) -> str:
        return self.layer.describe()

    def vjp(self, s: Array, input_shape: tuple[int, ...]) -> Array:
        layer = self.layer
        layer.check_output(s, input_shape)
        n, g = s.shape[0], layer.groups
        per_group = s.reshape(n, g, layer.out_channels // g, *s.shape[2:])
        sums = per_group[:, :, 0].copy()  # (N, G, OH, OW): S = s_0 + s_1 + ..., one channel after the other
        for o in range(1, per_group.shape[2]):
            sums += per_group[:, :, o]
        kh, kw = layer.kernel_size
        spread = dataclasses.replace(layer, weight=np.ones((g, 1, kh, kw), layer.dtype), bias=None, groups=g)
        c = spread.vjp(sums, (g, *input_shape[1:]))  # (N, G, H, W): one input channel's c per group
        return np.repeat(c, layer.in_channels // g, axis=1)


# ----------------------------------------------------------------------------- rules for the other layers


@dataclass(frozen=True, repr=False)
class Pass(Rule):
    """Pass relevance through unchanged (reshaped to the input): for ReLU, Flatten, Concat and batch norm.

    .. math:: R_j = R_j^{above}

    An element-wise activation keeps each neuron's relevance (Montavon et al.
    2019, Sec. 10.2: relevance is propagated through the linear layers; the
    activation only decides which neurons carry it).  A concatenation hands
    each input the relevance of its own slice.  Nothing is absorbed.
    On a :class:`~lrp_ref.layers.BatchNorm` left un-canonized it is zennit's
    ``Pass`` (each channel's relevance kept, the shift ignored).
    """

    layer_types = (ReLU, Flatten, Concat, BatchNorm)

    def _relevance(self, layer: Layer, a: Array, R: Array, z: Array | None) -> Propagation:
        return Propagation(R.reshape(a.shape), np.zeros(a.shape[0], dtype=R.dtype))


@dataclass(frozen=True, repr=False)
class WinnerTakesAll(Rule):
    r"""Max pooling: each window's relevance goes to the input that was its maximum.

    .. math:: R_j = \sum_k \frac{[a_j = \max_{j' \in k} a_{j'}]}{\#\{\text{ties in } k\}}
              \frac{z_k}{z_k + \epsilon\,\mathrm{sign}(z_k)} R_k, \qquad z_k = \max_{j' \in k} a_{j'}

    ``ties="split"`` (lrp_ref) shares a window's relevance evenly among inputs
    tied for the maximum; ``ties="first"`` gives it to the first arg-max in
    row-major order, which is how PyTorch routes the gradient (zennit).
    ``epsilon > 0`` is the epsilon rule applied to the pooling (Captum): the
    stabiliser absorbs ``R_k eps / (z_k + eps)``.  With the lrp_ref default
    ``epsilon = 0`` nothing is absorbed.
    Reference: Bach et al. 2015, Sec. 3.3 ("winner takes all").
    """

    ties: str | None = None
    epsilon: float | None = None
    form: str | None = None
    layer_types = (MaxPool2d,)

    def _relevance(self, layer: MaxPool2d, a: Array, R: Array, z: Array | None) -> Propagation:
        if self.epsilon:
            z = layer.forward(a) if z is None else z
            with np.errstate(over="ignore", invalid="ignore"):
                kept = R * np.divide(z, stabilize(z, self.epsilon, self.form), out=np.zeros_like(z),  # type: ignore[arg-type]
                                     where=stabilize(z, self.epsilon, self.form) != 0)  # type: ignore[arg-type]
        else:
            kept = R
        # the forward sweep's z is the windows' maximum: route() need not find it again
        peak = z if z is not None and z.shape == R.shape and z.dtype == a.dtype else None
        routed = layer._route(a, kept, self.ties, peak)  # type: ignore[arg-type]
        return Propagation(routed, per_sample_sum(R - kept))


@dataclass(frozen=True, repr=False)
class AverageInstead(Rule):
    r"""Max pooling treated as average pooling in the backward pass, with a linear rule on it.

    The max-pooling layer is replaced, for the relevance pass only, by the
    average pooling of the same window and stride (weights ``1 / n``), and
    ``rule`` propagates the relevance through that linear layer:

    * ``AverageInstead()`` or ``AverageInstead(LRP0())``: each window's relevance
      is shared in proportion to the inputs,

      .. math:: R_j = \sum_k \frac{a_j / n}{\sum_{j' \in k} a_{j'} / n + \epsilon} R_k

      (the Montavon et al. tutorial, which turns every max pool into an average
      pool; its ``1e-9`` comes from the profile's stabiliser);
    * ``AverageInstead(Epsilon(0.25, scale="rms"))``: the tutorial's epsilon
      rule, with ``z`` the *average* pooling's output;
    * ``AverageInstead(Flat())``: each window's relevance spread uniformly over
      its ``n`` inputs, overlapping windows adding up (lrp_toolbox's max pooling
      under its flat and w-square rules).

    Bias: none (pooling has none).  Stabiliser and absorbed share: those of
    ``rule``.  Only for max pooling without padding.
    Reference: Montavon et al. 2019, Sec. 10.1 (max pooling replaced by
    average pooling for explanation); lrp_toolbox ``MaxPool._flat_lrp``.

    Parameters
    ----------
    rule : Rule for linear layers, default LRP0()
    """

    rule: Rule | None = None
    layer_types = (MaxPool2d,)

    def __post_init__(self) -> None:
        super().__post_init__()
        inner = LRP0() if self.rule is None else self.rule
        if not isinstance(inner, Rule) or not issubclass(AvgPool2d, inner.layer_types):
            raise RuleParameterError(
                f"AverageInstead: rule must be a rule for linear layers (LRP0, Epsilon, Flat, ...); got {inner!r}"
            )
        object.__setattr__(self, "rule", inner)

    def resolved(self, defaults: Mapping[str, Any] | None = None) -> AverageInstead:
        """A copy whose inner rule has every unset convention filled in."""
        assert self.rule is not None
        return AverageInstead(self.rule.resolved(defaults))

    def _relevance(self, layer: MaxPool2d, a: Array, R: Array, z: Array | None) -> Propagation:
        assert self.rule is not None
        if layer.padding != (0, 0):
            raise RuleParameterError(f"AverageInstead needs max pooling without padding; got {layer.describe()}")
        avg = AvgPool2d(layer.kernel_size, layer.stride, dtype=layer.dtype)
        # the max pool's output z is not the average pool's: the inner rule recomputes its own
        avg_z = avg.forward(a) if self.rule._uses_z else None
        return self.rule._relevance(avg, a, R, avg_z)

    def __repr__(self) -> str:
        return f"AverageInstead({self.rule!r})"
