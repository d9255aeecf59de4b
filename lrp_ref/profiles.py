"""Convention profiles: one named set of choices per LRP implementation.

LRP libraries agree on the rules' names but not on every detail: the form and
default of the stabiliser, where the bias goes, how inputs are split by sign,
the gamma variant, what max pooling does, what the start relevance is.  A
profile fixes all of these, so that ``explain(..., profile="zennit")``
reproduces zennit's numbers and a difference between two implementations can
be traced to a named convention.  Explicit rule parameters always win over the
profile; the profile fills in what you left unset.

=============  =================================================================
profile        what it reproduces
=============  =================================================================
lrp_ref        the papers (Bach et al. 2015; Montavon et al. 2019): the default
zennit         zennit 0.5 (PyTorch)
captum         Captum's ``LRP`` (PyTorch)
innvestigate   iNNvestigate 2 (Keras)
toolbox        lrp_toolbox (NumPy/Caffe)
tutorial       the Montavon et al. LRP tutorial (heatmapping.org)
=============  =================================================================

:func:`table` prints every profile's choices (the docs carry the same table).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from .layers import AdaptiveAvgPool2d, AvgPool2d, BatchNorm, Flatten, Layer, MaxPool2d, ReLU
from .merge import Add, Concat
from .rules import (
    DEFAULTS,
    LRP0,
    AverageInstead,
    Epsilon,
    Flat,
    Pass,
    Rule,
    WinnerTakesAll,
    WSquare,
)

__all__ = ["PROFILES", "Profile", "get_profile", "table"]

Array = NDArray[Any]


@dataclass(frozen=True)
class Profile:
    """A named set of conventions.

    Attributes
    ----------
    name, summary : str
    defaults : mapping
        Rule fields the profile sets (``"field"`` or ``"Class.field"``), over
        lrp_ref's :data:`lrp_ref.rules.DEFAULTS`.
    maxpool : Rule
        The rule max pooling takes unless told otherwise.
    maxpool_flat_for : tuple of rule classes
        A single rule of one of these classes sends max pooling's relevance
        uniformly over each window, ``AverageInstead(Flat())`` (lrp_toolbox:
        its max pooling has no weights for the flat and w-square rules).
    maxpool_as_average : bool
        A single ``Epsilon`` rule reaches max pooling as
        ``AverageInstead(Epsilon(...))`` (the tutorial turns max pooling into
        average pooling, which takes the rule of its depth).
    avgpool : Rule or None
        The rule average pooling takes when a single rule is given for the
        model; None: that rule itself (iNNvestigate's analyzers explain
        average pooling with their Z rule whatever rule they name).
    add : Rule
        The rule a residual sum (:class:`~lrp_ref.merge.Add`) takes unless a
        composite or list names one: the proportional rule with the profile's
        epsilon, ``Epsilon()`` (zennit's ``Norm``; iNNvestigate: its Z rule).
    batchnorm_pass : bool
        A batch norm left un-canonized (:func:`lrp_ref.canonize` merges it)
        takes ``Pass()`` even when a single rule is given (zennit's ``Pass``);
        otherwise a single rule reaches it as a linear layer.  Where a
        composite or list names no rule for it, it takes ``Pass()`` under
        every profile.
    avgpool_epsilon : bool
        Average pooling takes the epsilon rule: an ``Epsilon`` assigned to it
        is kept, any other rule becomes ``Epsilon(stabiliser)`` (zennit's
        ``Norm``; Captum applies its epsilon rule to every layer without weights).
    window_sum_epsilon : float or None
        On pooling with uniform window weight ``w`` (average pooling ``1/n``,
        lrp_toolbox's ``SumPool`` ``1/sqrt(n)``) every stabiliser is measured on
        the plain window sum ``z / w``, so on ``z`` it is ``w`` times the rule's
        (``Epsilon(eps)`` acts as ``Epsilon(w * eps)``); this value is LRP-0's
        stabiliser there (lrp_toolbox's ``SumPool``: 1e-12).  None: off.
    start : "value" or "one"
        Default start relevance: the target output's value (logit x one-hot),
        or 1 (one-hot).  Every rule is linear in the start relevance, so the
        two differ only by a per-sample factor.
    """

    name: str
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)
    maxpool: Rule = field(default_factory=WinnerTakesAll)
    maxpool_flat_for: tuple[type[Rule], ...] = ()
    maxpool_as_average: bool = False
    avgpool: Rule | None = None
    add: Rule = field(default_factory=Epsilon)
    batchnorm_pass: bool = False
    avgpool_epsilon: bool = False
    window_sum_epsilon: float | None = None
    start: Literal["value", "one"] = "value"

    def default_rule(self, layer: Layer, given: Rule | None = None) -> Rule | None:
        """The rule ``layer`` takes when the caller named none for it.

        ``given`` is the single rule passed to :func:`lrp_ref.explain` (None
        for a composite's or a list's open entries).  None for Dense and
        Conv2d layers, which always need a rule.
        """
        if isinstance(layer, MaxPool2d):
            if isinstance(given, self.maxpool_flat_for):
                return AverageInstead(Flat())
            if self.maxpool_as_average and isinstance(given, Epsilon):
                return AverageInstead(given)
            return self.maxpool
        if isinstance(layer, (AvgPool2d, AdaptiveAvgPool2d)):
            return self.avgpool if self.avgpool is not None else given
        if isinstance(layer, Add):
            return self.add
        if isinstance(layer, BatchNorm):
            return given if given is not None and not self.batchnorm_pass else Pass()
        if isinstance(layer, (ReLU, Flatten, Concat)):
            return Pass()
        return None

    def resolve(self, rule: Rule, layer: Layer) -> Rule:
        """The rule ``layer`` takes under this profile, every unset convention filled in."""
        if isinstance(layer, (AvgPool2d, AdaptiveAvgPool2d)):
            if self.avgpool_epsilon and not isinstance(rule, Epsilon):
                rule = Epsilon(self.choice("stabilizer"))
            if self.window_sum_epsilon is not None and isinstance(layer, AvgPool2d):
                return self._on_window_sum(rule.resolved(self.defaults), layer)
        return rule.resolved(self.defaults)

    def _on_window_sum(self, rule: Rule, layer: AvgPool2d) -> Rule:
        """``rule`` with its stabilisers measured on the plain window sum ``z / w`` (see ``window_sum_epsilon``)."""
        w = layer.weight
        if not np.all(w == w.flat[0]):
            return rule
        if isinstance(rule, LRP0):
            rule = dataclasses.replace(rule, stabilizer=self.window_sum_epsilon)
        # eps on the window sum is w * eps on z = w * sum; an epsilon relative to RMS(z) needs no scaling
        scaled = ["stabilizer", "negative_stabilizer"] + ([] if getattr(rule, "scale", None) == "rms" else ["epsilon"])
        changes = {name: getattr(rule, name) * float(w.flat[0]) for name in scaled
                   if getattr(rule, name, None) is not None}
        return dataclasses.replace(rule, **changes)  # type: ignore[type-var]

    def start_relevance(self, output: Array, target: Array) -> Array:
        """The start relevance for ``target``: one-hot times the output value, or one-hot."""
        R = np.zeros_like(output)
        rows = np.arange(output.shape[0])
        R[rows, target] = output[rows, target] if self.start == "value" else 1
        return R

    def choice(self, key: str) -> Any:
        """The value this profile uses for a convention key of :data:`lrp_ref.rules.DEFAULTS`.

        ``"Class.field"`` falls back to ``"field"``, as :meth:`lrp_ref.rules.Rule.resolved` does.
        """
        table = {**DEFAULTS, **self.defaults}
        keys = (key, key.split(".", 1)[1]) if "." in key else (key,)
        return next((table[k] for k in keys if k in table), None)


#: Every convention profile by name: what ``explain(..., profile=NAME)`` accepts.
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "lrp_ref",
            "the papers: stabiliser z + eps sign(z) (Epsilon eps 1e-6, others none), plain gamma, "
            "alpha-beta with b+/b- split, w-square without bias, max-pool ties split, start = logit",
        ),
        Profile(
            "zennit",
            "stabiliser 1e-6 in every rule, generalised gamma (per-output sign), w-square with b^2 in the "
            "denominator, max pooling by gradient (first arg-max), average pooling by epsilon, start = one-hot",
            defaults={"stabilizer": 1e-6, "epsilon": 1e-6, "variant": "generalized", "WSquare.bias": "square",
                      "ties": "first"},
            maxpool=WinnerTakesAll(ties="first"),
            start="one",
            avgpool_epsilon=True,
            batchnorm_pass=True,
        ),
        Profile(
            "captum",
            "stabiliser 1e-9, gamma and z+ clamp the weights only (inputs not split, bias unchanged in the "
            "denominator), the epsilon rule on max and average pooling, start = logit",
            defaults={"stabilizer": 1e-9, "epsilon": 1e-9, "variant": "weights", "split": "weights",
                      "bias": "both", "ties": "first"},
            maxpool=WinnerTakesAll(ties="first", epsilon=1e-9),
            avgpool_epsilon=True,
        ),
        Profile(
            "innvestigate",
            "iNNvestigate 2.1's LRP analyzers: alpha-beta bias in both denominators, z+ without bias, epsilon 1e-7 "
            "sign-aligned, other rules only replace exact zeros by 1e-7, average pooling always by its Z rule, "
            "max pooling by gradient (first arg-max), start = logit",
            defaults={"epsilon": 1e-7, "stabilizer": 1e-7, "form": "zeros", "Epsilon.form": "sign",
                      "bias": "both", "ZPlus.bias": "none", "ties": "first"},
            maxpool=WinnerTakesAll(ties="first"),
            avgpool=LRP0(),
            add=LRP0(),
        ),
        Profile(
            "toolbox",
            "lrp_toolbox: LRP-0 ('simple') with stabiliser 1e-16, alpha-beta b+/b- split with stabilisers +1e-16 "
            "(positive) and -2e-16 (negative denominator, as its fast code computes it), sum pooling stabilised "
            "on the plain window sum (LRP-0: 1e-12), max pooling winner takes all with ties split, uniform under "
            "flat and w-square, start = logit",
            defaults={"LRP0.stabilizer": 1e-16, "AlphaBeta.stabilizer": 1e-16, "ZPlus.stabilizer": 1e-16,
                      "AlphaBeta.negative_stabilizer": 2e-16},
            maxpool_flat_for=(Flat, WSquare),
            window_sum_epsilon=1e-12,
        ),
        Profile(
            "tutorial",
            "the Montavon et al. tutorial: stabiliser z + eps without sign (1e-9), epsilon relative to the RMS "
            "of z over the batch, max pooling as average pooling, start = logit",
            defaults={"form": "add", "stabilizer": 1e-9, "Epsilon.stabilizer": 1e-9, "scale": "rms", "epsilon": 0.25},
            maxpool=AverageInstead(),
            maxpool_as_average=True,
        ),
    )
}


def get_profile(profile: str | Profile) -> Profile:
    """The profile named ``profile`` (or ``profile`` itself)."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        from .errors import RuleParameterError

        raise RuleParameterError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    return PROFILES[profile]


_BIAS = {"split": "b+ / b-", "both": "full b in both", "none": "none"}

_TABLE_ROWS: list[tuple[str, Callable[[Profile], str]]] = [
    ("stabiliser form", lambda p: {"sign": "z + eps sign(z)", "add": "z + eps", "zeros": "eps where z = 0"}[
        p.choice("form")] + (" (epsilon: z + eps sign(z))" if "Epsilon.form" in p.defaults else "")),
    ("Epsilon default eps", lambda p: f"{p.choice('epsilon'):g}" + (" x RMS(z)" if p.choice("scale") == "rms" else "")),
    ("other rules' stabiliser", lambda p: f"{p.choice('stabilizer'):g}"
     + (f" (LRP-0: {p.defaults['LRP0.stabilizer']:g})" if "LRP0.stabilizer" in p.defaults else "")),
    ("gamma", lambda p: {"plain": "w + g w+, b + g b+", "weights": "w + g w+, bias unchanged",
                         "generalized": "generalised, by sign of z"}[p.choice("variant")]),
    ("alpha-beta / z+ split", lambda p: {"contributions": "contributions a_j w_jk by sign",
                                         "weights": "weights only"}[p.choice("split")]),
    ("alpha-beta bias", lambda p: _BIAS[p.choice("AlphaBeta.bias")]),
    ("z+ bias", lambda p: _BIAS[p.choice("ZPlus.bias")]),
    ("alpha-beta / z+ stabiliser", lambda p: f"{p.choice('AlphaBeta.stabilizer'):g}"),
    ("w-square bias", lambda p: {"ignore": "none", "square": "b^2 in the denominator"}[p.choice("WSquare.bias")]),
    ("max pooling", lambda p: repr(p.maxpool)
     + "".join(f"; {r.__name__} given: AverageInstead(Flat())" for r in p.maxpool_flat_for)
     + ("; Epsilon given: AverageInstead(Epsilon)" if p.maxpool_as_average else "")),
    ("average pooling", lambda p: "an Epsilon given is kept, any other rule becomes Epsilon(stabiliser)"
     if p.avgpool_epsilon
     else f"{p.avgpool!r} whatever single rule is given" if p.avgpool is not None
     else f"the rule given, stabilisers on the plain window sum (LRP-0: {p.window_sum_epsilon:g})"
     if p.window_sum_epsilon is not None
     else "the rule given (a linear layer)"),
    ("batch norm (un-canonized)", lambda p: "Pass()" if p.batchnorm_pass
     else "the single rule given, as a linear layer; Pass() if none"),
    ("residual sum (Add)", lambda p: repr(p.add) + " unless a composite names one"),
    ("start relevance", lambda p: {"value": "logit x one-hot", "one": "one-hot"}[p.start]),
]


def table() -> str:
    """A Markdown table of every profile's choices."""
    names = list(PROFILES)
    lines = ["| convention | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, show in _TABLE_ROWS:
        lines.append(f"| {label} | " + " | ".join(show(PROFILES[n]) for n in names) + " |")
    return "\n".join(lines)
