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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from .layers import AvgPool2d, Flatten, Layer, MaxPool2d, ReLU
from .rules import DEFAULTS, AverageInstead, Epsilon, Pass, Rule, WinnerTakesAll

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
    start : "value" or "one"
        Default start relevance: the target output's value (logit x one-hot),
        or 1 (one-hot).  Every rule is linear in the start relevance, so the
        two differ only by a per-sample factor.
    avgpool_epsilon : bool
        Average pooling takes the epsilon rule: an ``Epsilon`` given for it
        is kept, any other rule becomes ``Epsilon(stabiliser)`` (zennit's
        ``Norm``; Captum applies its epsilon rule to every layer without weights).
    """

    name: str
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)
    maxpool: Rule = field(default_factory=WinnerTakesAll)
    start: Literal["value", "one"] = "value"
    avgpool_epsilon: bool = False

    def default_rule(self, layer: Layer) -> Rule | None:
        """The rule a non-linear layer takes under this profile; None for linear layers."""
        if isinstance(layer, MaxPool2d):
            return self.maxpool
        if isinstance(layer, (ReLU, Flatten)):
            return Pass()
        return None

    def resolve(self, rule: Rule, layer: Layer) -> Rule:
        """The rule ``layer`` takes under this profile, every unset convention filled in."""
        if self.avgpool_epsilon and isinstance(layer, AvgPool2d) and not isinstance(rule, Epsilon):
            rule = Epsilon(self.choice("stabilizer"))
        return rule.resolved(self.defaults)

    def start_relevance(self, output: Array, target: Array) -> Array:
        """The start relevance for ``target``: one-hot times the output value, or one-hot."""
        R = np.zeros_like(output)
        rows = np.arange(output.shape[0])
        R[rows, target] = output[rows, target] if self.start == "value" else 1
        return R

    def choice(self, key: str) -> Any:
        """The value this profile uses for a convention key of :data:`lrp_ref.rules.DEFAULTS`."""
        return self.defaults.get(key, DEFAULTS.get(key))


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
            "alpha-beta bias in both denominators, epsilon 1e-7 sign-aligned, other rules only replace exact "
            "zeros by 1e-7, max pooling by gradient (first arg-max), start = logit",
            defaults={"epsilon": 1e-7, "stabilizer": 1e-7, "form": "zeros", "Epsilon.form": "sign",
                      "bias": "both", "ties": "first"},
            maxpool=WinnerTakesAll(ties="first"),
        ),
        Profile(
            "toolbox",
            "lrp_toolbox: LRP-0 ('simple') with stabiliser 1e-16, alpha-beta b+/b- split, max pooling "
            "winner takes all with ties split, start = logit",
            defaults={"LRP0.stabilizer": 1e-16},
        ),
        Profile(
            "tutorial",
            "the Montavon et al. tutorial: stabiliser z + eps without sign (1e-9), epsilon relative to the RMS "
            "of z over the batch, max pooling as average pooling, start = logit",
            defaults={"form": "add", "stabilizer": 1e-9, "Epsilon.stabilizer": 1e-9, "scale": "rms", "epsilon": 0.25},
            maxpool=AverageInstead(),
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
    ("alpha-beta / z+ bias", lambda p: {"split": "b+ / b-", "both": "full b in both", "none": "none"}[
        p.choice("bias")]),
    ("w-square bias", lambda p: {"ignore": "none", "square": "b^2 in the denominator"}[p.choice("WSquare.bias")]),
    ("max pooling", lambda p: repr(p.maxpool)),
    ("average pooling", lambda p: "an Epsilon given is kept, any other rule becomes Epsilon(stabiliser)"
     if p.avgpool_epsilon
     else "the rule given (a linear layer)"),
    ("start relevance", lambda p: {"value": "logit x one-hot", "one": "one-hot"}[p.start]),
]


def table() -> str:
    """A Markdown table of every profile's choices."""
    names = list(PROFILES)
    lines = ["| convention | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, show in _TABLE_ROWS:
        lines.append(f"| {label} | " + " | ".join(show(PROFILES[n]) for n in names) + " |")
    return "\n".join(lines)
