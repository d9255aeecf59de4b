"""Composites: an explicit rule for every layer of a model.

A composite is a recipe ``model -> [rule for layer 0, rule for layer 1, ...]``.
:func:`resolve_rules` turns whatever :func:`lrp_ref.explain` was given (one
rule, a composite, or a list with one entry per layer) into that list, and
``composite.describe(model)`` prints it.

Non-linear layers take fixed rules unless told otherwise: ReLU and Flatten
:class:`~lrp_ref.rules.Pass`, max pooling
:class:`~lrp_ref.rules.WinnerTakesAll` (ties split evenly).

Named presets follow zennit's layer assignment: the first linear layer (the
first Dense or Conv2d) may take a special rule, every other Conv2d one rule,
every other Dense the epsilon rule, and average pooling the epsilon rule with
the stabiliser as epsilon (zennit's "Norm").  :func:`depth_based` is the
composite of Montavon et al. 2019, Sec. 10.3 (the seed's recipe): LRP-0 on the
upper layers, LRP-epsilon in the middle, LRP-gamma on the lower layers and zB
or w-square on the input layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._checks import check_int
from .errors import RuleAssignmentError, RuleParameterError
from .excitation import ContrastiveExcitation, ExcitationBackprop
from .graph import Graph
from .layers import AdaptiveAvgPool2d, AvgPool2d, BatchNorm, Conv2d, Dense, Layer, LinearLayer, MaxPool2d
from .merge import Add, MergeLayer
from .rap import RAP, AbsoluteInfluence
from .rules import LRP0, AlphaBeta, AverageInstead, Epsilon, Flat, Gamma, Rule, WSquare, ZBox, ZPlus

__all__ = [
    "Composite",
    "DepthComposite",
    "LayerTypeComposite",
    "TopLayerComposite",
    "TutorialComposite",
    "depth_based",
    "describe_rules",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
    "epsilon_gamma_box",
    "epsilon_plus",
    "epsilon_plus_flat",
    "excitation_backprop",
    "innvestigate_deep_taylor",
    "innvestigate_preset",
    "rap",
    "resolve_rules",
    "tutorial_vgg",
]


#: ``default_for(layer, given)``: the rule a layer takes when the caller gave none for it
#: (``given`` is the single rule passed to explain, or None); see :meth:`lrp_ref.profiles.Profile.default_rule`
DefaultFor = Callable[[Layer, "Rule | None"], "Rule | None"]


def describe_rules(model: Graph, rules: Sequence[Rule]) -> str:
    """A table: one line per layer with the rule it takes."""
    lines = [f"  {i:>2}  {layer.describe():<44} {rule!r}" for i, (layer, rule) in enumerate(zip(model, rules))]
    return "\n".join(lines)


class Composite:
    """Base class: subclasses implement :meth:`assign` (rules for linear layers)."""

    def assign(self, model: Graph) -> list[Rule | None]:
        """One entry per layer: a rule, or None for the layer's default."""
        raise NotImplementedError

    def rules_for(self, model: Graph, default_for: DefaultFor | None = None) -> list[Rule]:
        """The explicit rule of every layer of ``model`` (``default_for`` gives the rules of layers it leaves open)."""
        return resolve_rules(self.assign(model), model, default_for)

    def describe(self, model: Graph) -> str:
        """Printable assignment of rules to the layers of ``model``."""
        return f"{self!r}\n" + describe_rules(model, self.rules_for(model))


@dataclass(frozen=True)
class LayerTypeComposite(Composite):
    """Rules by layer type, with an optional special rule for the first Dense/Conv2d layer."""

    name: str
    conv: Rule
    dense: Rule
    avgpool: Rule
    first: Rule | None = None
    #: which layers can be "the first layer": zennit's EpsilonGammaBox looks for a convolution only
    first_types: tuple[type[Layer], ...] = (Dense, Conv2d)
    #: the rule of residual sums (:class:`~lrp_ref.merge.Add`); None: the profile's (``Epsilon()``)
    merge: Rule | None = None

    def assign(self, model: Graph) -> list[Rule | None]:
        rules: list[Rule | None] = []
        first_seen = False
        for layer in model:
            rule: Rule | None = None
            if isinstance(layer, (Dense, Conv2d)):
                if not first_seen and self.first is not None and isinstance(layer, self.first_types):
                    rule = self.first
                    first_seen = True
                else:
                    rule = self.conv if isinstance(layer, Conv2d) else self.dense
            elif isinstance(layer, (AvgPool2d, AdaptiveAvgPool2d)):
                rule = self.avgpool
            elif isinstance(layer, Add):
                rule = self.merge
            rules.append(rule)
        return rules


@dataclass(frozen=True)
class DepthComposite(Composite):
    """Rules by depth among the linear layers (see :func:`depth_based`)."""

    name: str
    input_rule: Rule
    lower: Rule
    middle: Rule
    upper: Rule
    n_upper: int
    n_lower: int | None

    def __post_init__(self) -> None:
        # counts of layers: ints, not bools or floats (1.5 layers, True layers), checked at construction
        object.__setattr__(self, "n_upper", _count(self.n_upper, "n_upper"))
        if self.n_lower is not None:
            object.__setattr__(self, "n_lower", _count(self.n_lower, "n_lower"))

    def assign(self, model: Graph) -> list[Rule | None]:
        # depth of a linear layer: how many linear layers (itself included) the longest path from the input
        # crosses; in a chain, its position among the linear layers plus one
        depth = linear_depths(model)
        n = max(depth, default=0)
        if n == 0:
            raise RuleAssignmentError("depth_based needs at least one linear layer (Dense, Conv2d, AvgPool2d)")
        rest = n - 1 - self.n_upper
        n_lower = (max(rest, 0) + 1) // 2 if self.n_lower is None else self.n_lower
        if self.n_upper < 0 or n_lower < 0 or self.n_upper + n_lower > n - 1:
            raise RuleAssignmentError(
                f"depth_based: n_upper={self.n_upper} upper and n_lower={n_lower} lower layers do not fit "
                f"in the {n - 1} linear layers above the input layer"
            )
        rules: list[Rule | None] = [None] * len(model)
        for i, d in enumerate(depth):
            if d == 0:
                continue  # not a linear layer: its default rule
            if d == 1:
                rules[i] = self.input_rule
            elif d <= 1 + n_lower:
                rules[i] = self.lower
            elif d > n - self.n_upper:
                rules[i] = self.upper
            else:
                rules[i] = self.middle
        return rules


def linear_depths(model: Graph) -> list[int]:
    """Per node: 0 unless its layer is linear (merges and batch norms excluded), else its depth along the longest path.

    The depth of a linear layer is the number of linear layers the longest
    path from the input to it crosses, itself included: 1 for the layers that
    see the input, and in a chain its position among the linear layers plus one.
    """
    reached = [0]  # per tensor: the most linear layers on a path from the input to it
    depths = []
    for i, layer in enumerate(model):
        counts = isinstance(layer, LinearLayer) and not isinstance(layer, (MergeLayer, BatchNorm))
        d = max(reached[t] for t in model.sources(i)) + counts
        reached.append(d)
        depths.append(d if counts else 0)
    return depths


# ----------------------------------------------------------------------------- named presets


def epsilon_plus(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> LayerTypeComposite:
    """Dense: Epsilon(epsilon); Conv2d: ZPlus; AvgPool2d: Epsilon(stabilizer)."""
    return LayerTypeComposite(
        "epsilon_plus", conv=ZPlus(stabilizer), dense=Epsilon(epsilon), avgpool=Epsilon(stabilizer),
        merge=Epsilon(stabilizer),
    )


def epsilon_plus_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> LayerTypeComposite:
    """As :func:`epsilon_plus`, with Flat on the first linear layer."""
    return LayerTypeComposite(
        "epsilon_plus_flat", conv=ZPlus(stabilizer), dense=Epsilon(epsilon), avgpool=Epsilon(stabilizer),
        first=Flat(stabilizer), merge=Epsilon(stabilizer),
    )


def epsilon_alpha2_beta1(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> LayerTypeComposite:
    """Dense: Epsilon(epsilon); Conv2d: AlphaBeta(2, 1); AvgPool2d: Epsilon(stabilizer)."""
    return LayerTypeComposite(
        "epsilon_alpha2_beta1", conv=AlphaBeta(2.0, 1.0, stabilizer), dense=Epsilon(epsilon),
        avgpool=Epsilon(stabilizer), merge=Epsilon(stabilizer),
    )


def epsilon_alpha2_beta1_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> LayerTypeComposite:
    """As :func:`epsilon_alpha2_beta1`, with Flat on the first linear layer."""
    return LayerTypeComposite(
        "epsilon_alpha2_beta1_flat", conv=AlphaBeta(2.0, 1.0, stabilizer), dense=Epsilon(epsilon),
        avgpool=Epsilon(stabilizer), first=Flat(stabilizer), merge=Epsilon(stabilizer),
    )


def epsilon_gamma_box(
    low: Any, high: Any, epsilon: float = 1e-6, gamma: float = 0.25, stabilizer: float = 1e-6
) -> LayerTypeComposite:
    """First Conv2d: ZBox(low, high); other Conv2d: Gamma(gamma); Dense: Epsilon(epsilon).

    As in zennit, only a convolution can be the box layer: a model without
    Conv2d layers gets no ZBox (use ``depth_based`` or a list for an MLP).
    """
    return LayerTypeComposite(
        "epsilon_gamma_box", conv=Gamma(gamma, stabilizer), dense=Epsilon(epsilon), avgpool=Epsilon(stabilizer),
        first=ZBox(low, high, stabilizer), first_types=(Conv2d,), merge=Epsilon(stabilizer),
    )


def innvestigate_preset(letter: str, epsilon: float = 0.1, flat: bool = False) -> LayerTypeComposite:
    """iNNvestigate's ``lrp.sequential_preset_a`` / ``_b`` (``flat=True``: ``..._a_flat`` / ``_b_flat``).

    Dense: ``Epsilon(epsilon)``; Conv2d: ``AlphaBeta(1, 0)`` (preset A) or
    ``AlphaBeta(2, 1)`` (preset B); average pooling: ``LRP0()`` (iNNvestigate
    explains average pooling with its Z rule whatever the analyzer);
    ``flat=True``: ``Flat()`` on the first Dense or Conv2d layer.  Note that
    iNNvestigate's alpha-beta keeps the bias (``Alpha1Beta0Rule``, not z+): under
    ``profile="innvestigate"`` the full bias enters both denominators.
    """
    if not isinstance(letter, str) or letter not in ("A", "B"):
        raise RuleAssignmentError(f"innvestigate_preset: letter must be 'A' or 'B'; got {letter!r}")
    if not isinstance(flat, bool):
        raise RuleAssignmentError(f"innvestigate_preset: flat must be True or False; got {flat!r}")
    conv = AlphaBeta(1.0, 0.0) if letter == "A" else AlphaBeta(2.0, 1.0)
    return LayerTypeComposite(
        f"innvestigate_preset_{letter.lower()}{'_flat' if flat else ''}", conv=conv, dense=Epsilon(epsilon),
        avgpool=LRP0(), first=Flat() if flat else None, merge=LRP0(),
    )


def innvestigate_deep_taylor(low: Any = None, high: Any = None) -> LayerTypeComposite:
    """iNNvestigate's ``deep_taylor`` analyzer (``deep_taylor.bounded`` given ``low``, ``high``), as it assigns rules.

    * every Dense and Conv2d layer: ``ZPlus(bias="none")`` (its
      ``Alpha1Beta0IgnoreBiasRule``), the output layer included: iNNvestigate's
      "has an activation" check is ``hasattr(layer, "activation")``, which every
      Keras Dense and Conv2D layer passes, so the rule meant for layers without
      ReLU (w-square) is never chosen;
    * average pooling: by gradient, which for average pooling is ``Flat()``;
    * max pooling: by gradient (winner takes all; the profile's default);
    * bounded: ``ZBox(low, high)`` on the first Dense or Conv2d layer.

    iNNvestigate also appends a ReLU to the model output, so the start
    relevance is ``max(f(x), 0)``: the same as lrp_ref's wherever the explained
    output is positive.
    Reference: Montavon et al. 2017, "Explaining nonlinear classification
    decisions with deep Taylor decomposition", Pattern Recognition 65.
    """
    if (low is None) != (high is None):
        raise RuleAssignmentError("innvestigate_deep_taylor: give both low and high (bounded) or neither")
    z_plus = ZPlus(bias="none")
    return LayerTypeComposite(
        "innvestigate_deep_taylor" + ("_bounded" if low is not None else ""), conv=z_plus, dense=z_plus,
        avgpool=Flat(), first=None if low is None else ZBox(low, high),
    )


def _count(value: Any, name: str) -> int:
    return check_int(value, f"depth_based: {name} (a number of layers)", 0, error=RuleAssignmentError)


def depth_based(
    low: Any = None,
    high: Any = None,
    *,
    n_upper: int = 1,
    n_lower: int | None = None,
    epsilon: float = 0.25,
    gamma: float = 0.25,
    stabilizer: float = 0.0,
) -> DepthComposite:
    """The seed's composite (Montavon et al. 2019, Sec. 10.3), by depth among the linear layers.

    * input layer: ``ZBox(low, high)`` for bounded inputs such as pixels, or
      ``WSquare()`` when no bounds are given (unbounded real inputs);
    * the next ``n_lower`` linear layers: ``Gamma(gamma)``;
    * the top ``n_upper`` linear layers: ``LRP0()``;
    * the layers in between: ``Epsilon(epsilon)``.

    ``n_lower`` defaults to half (rounded up) of the layers between the input
    layer and the upper block.

    Raises
    ------
    RuleAssignmentError
        If ``n_upper`` or ``n_lower`` is not a non-negative int, or only one
        of ``low`` and ``high`` is given.
    RuleParameterError
        If a rule parameter (``epsilon``, ``gamma``, ``stabilizer``, the bounds) is invalid.
    """
    n_upper = _count(n_upper, "n_upper")
    n_lower = None if n_lower is None else _count(n_lower, "n_lower")
    if (low is None) != (high is None):
        raise RuleAssignmentError("depth_based: give both low and high (zB input rule) or neither (w-square)")
    input_rule: Rule = WSquare(stabilizer) if low is None else ZBox(low, high, stabilizer)
    return DepthComposite(
        "depth_based", input_rule=input_rule, lower=Gamma(gamma, stabilizer), middle=Epsilon(epsilon),
        upper=LRP0(), n_upper=n_upper, n_lower=n_lower,
    )


# ----------------------------------------------------------------------------- beyond LRP: Excitation Backprop, RAP


@dataclass(frozen=True)
class TopLayerComposite(Composite):
    """One rule for the output layer (the last Dense or Conv2d node), one for the other Dense/Conv2d, one for pooling.

    Average pooling (``AvgPool2d``, ``AdaptiveAvgPool2d``) takes ``pooling``;
    an ``input_rule``, if given, replaces ``rest`` on the layers that read the
    model input.  Every other node (ReLU, Flatten, max pooling, batch norm,
    merges) takes the profile's default.
    """

    name: str
    top: Rule
    rest: Rule
    pooling: Rule
    input_rule: Rule | None = None

    def assign(self, model: Graph) -> list[Rule | None]:
        linear = [i for i, layer in enumerate(model) if isinstance(layer, (Dense, Conv2d))]
        if not linear:
            raise RuleAssignmentError(f"{self.name} needs a Dense or Conv2d output layer; the model has none")
        depth = linear_depths(model)
        rules: list[Rule | None] = []
        for i, layer in enumerate(model):
            rule: Rule | None = None
            if i == linear[-1]:
                rule = self.top
            elif isinstance(layer, (Dense, Conv2d)):
                rule = self.input_rule if self.input_rule is not None and depth[i] == 1 else self.rest
            elif isinstance(layer, (AvgPool2d, AdaptiveAvgPool2d)):
                rule = self.pooling
            rules.append(rule)
        return rules


def excitation_backprop(contrastive: bool = False) -> TopLayerComposite:
    """Excitation Backprop (Zhang et al. 2016): the MWP rule on every Dense, Conv2d and average pooling layer.

    ``contrastive=True``: c-MWP, the output layer subtracts the map of the
    target's dual unit (:class:`~lrp_ref.excitation.ContrastiveExcitation`).
    With :func:`lrp_ref.explain` the start is ``f_t(x)``, so the maps are
    ``f_t(x)`` times the winning probabilities;
    :func:`lrp_ref.excitation.explain_excitation` starts from probability 1.
    See :mod:`lrp_ref.excitation` for the formulas and the relation to z+.
    """
    if not isinstance(contrastive, bool):
        raise RuleParameterError(f"excitation_backprop: contrastive must be True or False; got {contrastive!r}")
    mwp = ExcitationBackprop()
    top: Rule = ContrastiveExcitation() if contrastive else mwp
    return TopLayerComposite("excitation_backprop" + ("_contrastive" if contrastive else ""), top=top, rest=mwp,
                             pooling=mwp)


def rap(input_rule: Rule | None = None) -> TopLayerComposite:
    """Relative Attributing Propagation (Nam et al. 2020): absolute influence on the output layer, RAP below.

    Output layer: :class:`~lrp_ref.rap.AbsoluteInfluence`; every other Dense
    and Conv2d: :class:`~lrp_ref.rap.RAP`; average pooling: ``LRP0()``
    (proportional, as the authors' implementation); ``input_rule`` (e.g.
    ``ZBox(low, high)``), if given, on the layers that read the model input.
    See :mod:`lrp_ref.rap`.
    """
    if input_rule is not None and not isinstance(input_rule, Rule):
        raise RuleParameterError(f"rap: input_rule must be a Rule or None; got {type(input_rule).__name__}")
    return TopLayerComposite("rap", top=AbsoluteInfluence(), rest=RAP(), pooling=LRP0(), input_rule=input_rule)


# ----------------------------------------------------------------------------- resolution


def resolve_rules(
    rules: Rule | Composite | Sequence[Rule | None],
    model: Graph,
    default_for: DefaultFor | None = None,
) -> list[Rule]:
    """One explicit rule per layer of ``model``.

    ``rules`` may be

    * a single rule: it is the rule of every Dense and Conv2d layer; every
      other layer (pooling, ReLU, Flatten) takes ``default_for(layer, rule)``,
      so that the convention profile decides what a rule "means" for pooling
      (lrp_ref: average pooling takes the rule too, max pooling winner takes
      all; iNNvestigate: average pooling always takes LRP-0; ...);
    * a :class:`Composite`;
    * a sequence with one entry per layer, each a rule for that layer or None
      for ``default_for(layer, None)``.  Rules named in a composite or a list
      are followed as written.
    """
    if default_for is None:  # lrp_ref's own conventions
        from .profiles import PROFILES

        default_for = PROFILES["lrp_ref"].default_rule
    if isinstance(rules, Composite):
        return rules.rules_for(model, default_for)
    if isinstance(rules, Rule):
        single = rules
        resolved: list[Rule] = []
        for i, layer in enumerate(model):
            rule = single if isinstance(layer, (Dense, Conv2d)) else default_for(layer, single)
            if rule is None or not rule.applies_to(layer):
                raise RuleAssignmentError(
                    f"rule {single!r} cannot handle layer {i} ({layer.describe()}); give a composite or a list"
                )
            resolved.append(rule)
        return resolved
    if isinstance(rules, (list, tuple)):
        if len(rules) != len(model):
            names = ", ".join(type(layer).__name__ for layer in model)
            raise RuleAssignmentError(
                f"expected {len(model)} rules, one per layer ({names}); got {len(rules)}. "
                "Use None for a layer's default rule"
            )
        resolved = []
        for i, (layer, rule) in enumerate(zip(model, rules)):
            chosen = default_for(layer, None) if rule is None else rule
            if chosen is None:
                raise RuleAssignmentError(f"layer {i} ({layer.describe()}) is linear and needs a rule; got None")
            if not isinstance(chosen, Rule):
                raise RuleAssignmentError(f"entry {i} must be a Rule or None; got {type(chosen).__name__}")
            if not chosen.applies_to(layer):
                raise RuleAssignmentError(f"rule {chosen!r} cannot handle layer {i} ({layer.describe()})")
            resolved.append(chosen)
        return resolved
    raise RuleAssignmentError(
        f"rules must be a Rule, a Composite or a list of rules (one per layer); got {type(rules).__name__}"
    )


# ----------------------------------------------------------------------------- the Montavon et al. tutorial


@dataclass(frozen=True)
class TutorialComposite(Composite):
    """Rules by layer index, as the Montavon et al. tutorial assigns them (see :func:`tutorial_vgg`)."""

    name: str
    input_rule: Rule
    gamma_until: int
    epsilon_until: int
    gamma: float
    epsilon: float

    def assign(self, model: Graph) -> list[Rule | None]:
        first = next((i for i, layer in enumerate(model) if isinstance(layer, (Dense, Conv2d))), None)
        if first is None:
            raise RuleAssignmentError(f"{self.name} needs a Dense or Conv2d layer for the zB input rule")
        rules: list[Rule | None] = []
        for i, layer in enumerate(model):
            # the tutorial's rho (gamma) changes weights only: pooling in the gamma range takes LRP-0
            middle = self.gamma_until < i <= self.epsilon_until
            pooled: Rule = Epsilon(self.epsilon, scale="rms") if middle else LRP0()
            rule: Rule | None = None
            if i == first:
                rule = self.input_rule
            elif isinstance(layer, (Dense, Conv2d)):
                rule = Gamma(self.gamma) if i <= self.gamma_until else pooled
            elif isinstance(layer, MaxPool2d):
                rule = AverageInstead(pooled)
            elif isinstance(layer, AvgPool2d):
                rule = pooled
            rules.append(rule)
        return rules


def tutorial_vgg(
    low: Any, high: Any, *, gamma_until: int = 16, epsilon_until: int = 30, gamma: float = 0.25, epsilon: float = 0.25
) -> TutorialComposite:
    """The layer assignment of the Montavon et al. LRP tutorial's VGG-16 loop, by layer index ``l``.

    ==========================================  ===========================  ==================================
    layers                                      Dense, Conv2d                max pooling (average pooling)
    ==========================================  ===========================  ==================================
    the first Dense or Conv2d layer             ``ZBox(low, high)``
    ``l <= gamma_until``                        ``Gamma(gamma)``             ``AverageInstead(LRP0())``
    ``gamma_until < l <= epsilon_until``        ``Epsilon(epsilon, "rms")``  ``AverageInstead(Epsilon(...))``
    ``l > epsilon_until``                       ``LRP0()``                   ``AverageInstead(LRP0())``
    ==========================================  ===========================  ==================================

    ``Epsilon(epsilon, scale="rms")`` adds ``epsilon * sqrt(mean(z**2))`` over
    the whole batch tensor (the tutorial's ``0.25 * std``); gamma modifies
    weights and bias, ``p + gamma p+``.  The tutorial turns every max pool
    into an average pool, which has no weights, so only its range's stabiliser
    (``incr``) applies to it: LRP-0 in the gamma range.  Average pooling takes
    the rule inside the brackets.  ReLU and Flatten pass.

    Use with ``profile="tutorial"``, which adds the tutorial's ``1e-9`` to
    every denominator, without a sign.  The epsilon layers make the relevance
    of a sample depend on the rest of its batch, as in the tutorial.

    Parameters
    ----------
    low, high : float or array broadcastable to the input (N, ...)
        zB bounds: the normalised images of the pixel values 0 and 1.
    gamma_until, epsilon_until : int >= 0, default 16 and 30
        Last layer index of the gamma and of the epsilon range.  16 and 30 are
        VGG-16's third and fifth max pool in ``features``, whose indices an
        lrp_ref VGG-16 keeps.  The tutorial's MLP (``Dense, ReLU`` three times)
        is ``tutorial_vgg(-1, 1, gamma_until=2, epsilon_until=4, gamma=0.1, epsilon=0.1)``.
    gamma, epsilon : float >= 0, default 0.25

    Reference: Montavon et al. 2019, "Layer-Wise Relevance Propagation: An
    Overview", Sec. 10.2-10.3, and its tutorial (heatmapping.org).
    """
    for key, value in (("gamma_until", gamma_until), ("epsilon_until", epsilon_until)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RuleParameterError(f"tutorial_vgg: {key} must be an int >= 0 (a layer index); got {value!r}")
    if gamma_until > epsilon_until:
        raise RuleParameterError(
            f"tutorial_vgg: gamma_until={gamma_until} must not exceed epsilon_until={epsilon_until}"
        )
    Gamma(gamma)  # refuse bad values now, not at explain time
    Epsilon(epsilon)
    return TutorialComposite("tutorial_vgg", ZBox(low, high), gamma_until, epsilon_until, float(gamma), float(epsilon))
