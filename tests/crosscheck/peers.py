"""Shared helpers for the live cross-checks against zennit and Captum, and for ``scripts/record_peers.py``.

* :func:`random_net` builds the small random float64 networks the cross-checks use;
  :func:`lrp_ref.to_torch` turns any lrp_ref model into the ``torch.nn.Sequential`` a peer runs.
* zennit: :func:`zennit_rule` maps a (resolved) lrp_ref rule to the zennit rule that computes
  the same thing; :func:`zennit_named` / :func:`zennit_layer_map` build zennit composites;
  :func:`zennit_plan` turns any lrp_ref rule or composite into the zennit composite that
  reproduces it under the "zennit" profile; :func:`run_zennit` runs it.
* Captum: :func:`captum_rule` / :func:`captum_plan` / :func:`run_captum` do the same for
  Captum's ``LRP`` (``EpsilonRule``, ``GammaRule``, ``Alpha1_Beta0_Rule``), under the
  "captum" profile.

zennit (LGPL) and Captum are called as libraries; nothing of theirs is copied here.
torch is imported at module level (callers skip first when it is missing); zennit and
Captum only inside the functions that need them, so either suite runs without the other.

Facts the helpers rely on (established by experiment with zennit 0.5.1 and Captum 0.9.0):

* zennit imports torchvision; :func:`ensure_torchvision` imports the installed one despite its
  C operators, or puts the stand-in of ``stubs/`` on ``sys.path`` where torchvision is missing
  (:mod:`tolerant_torchvision`, as ``conftest.py`` does for the tests).
* zennit's attributor takes the start relevance itself (``attr_output``): one-hot is the
  "zennit" profile's start, and any other start can be passed to both sides.
* Captum refuses ``nn.Flatten`` modules (:class:`CaptumNet` flattens functionally), deletes
  every ``.rule`` attribute after ``attribute()`` and leaves the model's ReLUs hooked after a
  failed call: :func:`run_captum` therefore builds a fresh torch model for every call.
  Captum starts from the target output's value (logit x one-hot, the "captum" profile's start)
  and its input must require grad.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tolerant_torchvision import import_torchvision

import lrp_ref
from lrp_ref import composites as C
from lrp_ref import layers as L
from lrp_ref import rules as R
from lrp_ref.profiles import get_profile
from lrp_ref.sequential import Sequential

CAPTUM_RULES = "captum.attr._utils.lrp_rules."

#: Captum's stabiliser in every rule but EpsilonRule (``PropagationRule.STABILITY_FACTOR``)
CAPTUM_STABILIZER = 1e-9


class NotExpressible(Exception):
    """The peer has no rule or call that reproduces this lrp_ref configuration."""


def ensure_torchvision() -> None:
    """Make ``import zennit`` work: import torchvision tolerantly, or put its stand-in on sys.path if it is missing."""
    import_torchvision()


# ----------------------------------------------------------------------------- networks and inputs


def _normal(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return rng.normal(scale=scale, size=shape)


def random_net(name: str, seed: int = 0) -> tuple[Sequential, tuple[int, ...]]:
    """A small random float64 network and its input shape (without the batch axis).

    dense    three Dense layers with biases and ReLUs
    conv     Conv2d stride (2, 1) padding (1, 0); Conv2d dilation 2 padding 2 groups 2 with no ReLU
             after it (the next Conv2d sees mixed-sign inputs); Conv2d 2x2; Dense
    maxpool  Conv2d, MaxPool2d 2x2; Conv2d without bias, MaxPool2d 3x3 stride 2 padding 1; Dense
    avgpool  Conv2d, AvgPool2d 2x2; Conv2d; AvgPool2d 2x2 stride 1; Dense without bias
    """
    rng = np.random.default_rng(seed)

    def n(*shape: int, scale: float = 1.0) -> np.ndarray:
        return _normal(rng, *shape, scale=scale)

    if name == "dense":
        return Sequential([
            L.Dense(n(12, 8, scale=0.5), n(12, scale=0.3)), L.ReLU(),
            L.Dense(n(10, 12, scale=0.4), n(10, scale=0.3)), L.ReLU(),
            L.Dense(n(5, 10, scale=0.4), n(5, scale=0.3)),
        ]), (8,)
    if name == "conv":
        return Sequential([
            L.Conv2d(n(4, 2, 3, 3, scale=0.5), n(4, scale=0.2), stride=(2, 1), padding=(1, 0)), L.ReLU(),
            L.Conv2d(n(6, 2, 3, 3, scale=0.5), n(6, scale=0.2), padding=2, dilation=2, groups=2),
            L.Conv2d(n(4, 6, 2, 2, scale=0.5), n(4, scale=0.2)), L.ReLU(),
            L.Flatten(), L.Dense(n(3, 80, scale=0.3), n(3, scale=0.2)),
        ]), (2, 9, 8)
    if name == "maxpool":
        return Sequential([
            L.Conv2d(n(4, 2, 3, 3, scale=0.5), n(4, scale=0.2), padding=1), L.ReLU(), L.MaxPool2d(2),
            L.Conv2d(n(4, 4, 3, 3, scale=0.5), None, padding=1), L.ReLU(), L.MaxPool2d(3, stride=2, padding=1),
            L.Flatten(), L.Dense(n(3, 16, scale=0.3), n(3, scale=0.2)),
        ]), (2, 8, 8)
    if name == "avgpool":
        return Sequential([
            L.Conv2d(n(4, 2, 3, 3, scale=0.5), n(4, scale=0.2), padding=1), L.ReLU(), L.AvgPool2d(2),
            L.Conv2d(n(4, 4, 3, 3, scale=0.5), n(4, scale=0.2)), L.ReLU(), L.AvgPool2d(2, stride=1),
            L.Flatten(), L.Dense(n(3, 16, scale=0.3), None),
        ]), (2, 10, 10)
    raise ValueError(f"unknown network {name!r}")


NETS = ("dense", "conv", "maxpool", "avgpool")


def random_input(shape: tuple[int, ...], kind: str, seed: int = 1, batch: int = 3) -> np.ndarray:
    """``kind="pos"``: U(0, 1) (inside the zB box [0, 1]); ``kind="mixed"``: N(0, 1)."""
    rng = np.random.default_rng(seed)
    if kind == "pos":
        return rng.uniform(0.0, 1.0, size=(batch, *shape))
    if kind == "mixed":
        return rng.normal(size=(batch, *shape))
    raise ValueError(f"unknown input kind {kind!r}")


def box_bounds(x: np.ndarray, kind: str) -> tuple[Any, Any]:
    """zB bounds that contain ``x``: the scalars (0, 1) for U(0, 1) inputs, per-element arrays (1, ...) otherwise."""
    if kind == "pos":
        return 0.0, 1.0
    return x.min(axis=0, keepdims=True) - 0.1, x.max(axis=0, keepdims=True) + 0.2


def one_hot(output: np.ndarray, target: np.ndarray) -> np.ndarray:
    start = np.zeros_like(output)
    start[np.arange(output.shape[0]), target] = 1.0
    return start


def per_layer(model: Sequential, linear: R.Rule, avgpool: R.Rule, maxpool: R.Rule | None = None,
              first: R.Rule | None = None, first_types: tuple[type, ...] = (L.Dense, L.Conv2d)) -> list[R.Rule | None]:
    """An explicit lrp_ref rule list: Dense/Conv2d ``linear`` (the first of ``first_types`` ``first``),
    AvgPool2d ``avgpool``, MaxPool2d ``maxpool`` (None: the profile's), everything else its default."""
    out: list[R.Rule | None] = []
    seen = first is None
    for layer in model:
        if isinstance(layer, (L.Dense, L.Conv2d)):
            if not seen and isinstance(layer, first_types):
                out.append(first)
                seen = True
            else:
                out.append(linear)
        elif isinstance(layer, L.AvgPool2d):
            out.append(avgpool)
        elif isinstance(layer, L.MaxPool2d):
            out.append(maxpool)
        else:
            out.append(None)
    return out


# ----------------------------------------------------------------------------- peer calls as data


def _fmt(value: Any) -> str:
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return repr(value)


@dataclass(frozen=True)
class Made:
    """A peer object described by its qualified name and keyword arguments (so the call can be printed)."""

    name: str           # e.g. "zennit.rules.ZPlus"
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    def text(self) -> str:
        return f"{self.name}({', '.join(f'{k}={_fmt(v)}' for k, v in self.kwargs.items())})"

    def build(self, **extra: Any) -> Any:
        """The peer object; ``extra`` keyword arguments are passed on as they are (e.g. zennit's canonizers)."""
        module, _, cls = self.name.rpartition(".")
        kwargs = {k: (torch.tensor(v, dtype=torch.float64) if isinstance(v, np.ndarray) else v)
                  for k, v in self.kwargs.items()}
        return getattr(importlib.import_module(module), cls)(**kwargs, **extra)

    def same_as(self, name: str, **kwargs: Any) -> bool:
        """True if this is ``name(**kwargs)`` (name unqualified; arrays compared by value)."""
        if self.short != name or set(self.kwargs) != set(kwargs):
            return False
        return all(np.array_equal(np.asarray(self.kwargs[k]), np.asarray(v)) for k, v in kwargs.items())


def _require(rule: R.Rule, **conventions: Any) -> None:
    for key, want in conventions.items():
        have = getattr(rule, key)
        if have != want:
            raise NotExpressible(f"{rule!r}: {key}={have!r}, but the peer only does {key}={want!r}")


# ----------------------------------------------------------------------------- zennit


ZENNIT_COMPOSITES = {
    "epsilon_plus": "EpsilonPlus",
    "epsilon_plus_flat": "EpsilonPlusFlat",
    "epsilon_alpha2_beta1": "EpsilonAlpha2Beta1",
    "epsilon_alpha2_beta1_flat": "EpsilonAlpha2Beta1Flat",
    "epsilon_gamma_box": "EpsilonGammaBox",
}


def zennit_bound(value: Any, shape: tuple[int, ...]) -> Any:
    """A zB bound for zennit: a float, or an array expanded to the full input shape.

    zennit expands a bound with fewer dimensions by appending axes (left-aligned), NumPy by
    prepending them: a full-shape tensor means the same thing to both.
    """
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return float(arr)
    return np.ascontiguousarray(np.broadcast_to(arr, shape))


def zennit_rule(rule: R.Rule, x_shape: tuple[int, ...] | None = None) -> Made:
    """The zennit rule computing what ``rule`` (resolved under the "zennit" profile) computes on Dense/Conv2d."""
    rule = rule.resolved(get_profile("zennit").defaults)
    if isinstance(rule, (R.LRP0,)):
        raise NotExpressible("zennit has no LRP-0 rule")
    if isinstance(rule, R.Epsilon):
        _require(rule, scale="absolute", form="sign")
        return Made("zennit.rules.Epsilon", {"epsilon": float(rule.epsilon) + float(rule.stabilizer)})
    if isinstance(rule, (R.ZPlus, R.AlphaBeta)):
        _require(rule, form="sign", bias="split", split="contributions")
        if isinstance(rule, R.ZPlus):
            return Made("zennit.rules.ZPlus", {"stabilizer": float(rule.stabilizer)})
        return Made("zennit.rules.AlphaBeta",
                    {"alpha": float(rule.alpha), "beta": float(rule.beta), "stabilizer": float(rule.stabilizer)})
    if isinstance(rule, R.Gamma):
        _require(rule, form="sign", variant="generalized")
        return Made("zennit.rules.Gamma", {"gamma": float(rule.gamma), "stabilizer": float(rule.stabilizer)})
    if isinstance(rule, R.ZBox):
        _require(rule, form="sign")
        if x_shape is None and (np.ndim(rule.low) or np.ndim(rule.high)):
            raise NotExpressible("ZBox with array bounds needs the input shape")
        shape = x_shape or ()
        return Made("zennit.rules.ZBox", {"low": zennit_bound(rule.low, shape), "high": zennit_bound(rule.high, shape),
                                          "stabilizer": float(rule.stabilizer)})
    if isinstance(rule, R.WSquare):
        _require(rule, form="sign")
        kwargs: dict[str, Any] = {"stabilizer": float(rule.stabilizer)}
        if rule.bias == "ignore":
            kwargs["zero_params"] = ["bias"]
        return Made("zennit.rules.WSquare", kwargs)
    if isinstance(rule, R.Flat):
        _require(rule, form="sign")
        return Made("zennit.rules.Flat", {"stabilizer": float(rule.stabilizer)})
    raise NotExpressible(f"no zennit rule for {rule!r} on a Dense/Conv2d layer")


def zennit_norm(rule: R.Rule) -> Made:
    """zennit's rule for average pooling: ``Norm(stabilizer)`` is lrp_ref's ``Epsilon(stabilizer)`` there."""
    rule = rule.resolved(get_profile("zennit").defaults)
    if not isinstance(rule, R.Epsilon):
        raise NotExpressible(f"zennit explains average pooling with Norm (epsilon); not {rule!r}")
    _require(rule, scale="absolute", form="sign")
    return Made("zennit.rules.Norm", {"stabilizer": float(rule.epsilon) + float(rule.stabilizer)})


@dataclass(frozen=True)
class ZennitComposite:
    """A zennit composite as data: a named composite, or a (special-first) layer map."""

    named: Made | None = None
    linear: Made | None = None
    avgpool: Made | None = None
    first: Made | None = None

    def build(self, canonizers: Sequence[Any] = ()) -> Any:
        """The zennit composite, with zennit's ``canonizers`` (instances, e.g. ``ResNetCanonizer()``) if given."""
        ensure_torchvision()
        extra = {"canonizers": list(canonizers)} if canonizers else {}
        if self.named is not None:
            return self.named.build(**extra)
        from zennit.composites import LayerMapComposite, SpecialFirstLayerMapComposite
        from zennit.rules import Pass
        from zennit.types import Activation, AvgPool
        from zennit.types import Linear as ZLinear

        assert self.linear is not None and self.avgpool is not None
        layer_map = [(Activation, Pass()), (AvgPool, self.avgpool.build()), (ZLinear, self.linear.build())]
        if self.first is None:
            return LayerMapComposite(layer_map, **extra)
        return SpecialFirstLayerMapComposite(layer_map, [(ZLinear, self.first.build())], **extra)

    def text(self) -> str:
        if self.named is not None:
            return self.named.text()
        parts = ["(Activation, zennit.rules.Pass())", f"(AvgPool, {self.avgpool.text()})",  # type: ignore[union-attr]
                 f"(Linear, {self.linear.text()})"]  # type: ignore[union-attr]
        if self.first is None:
            return f"zennit.composites.LayerMapComposite([{', '.join(parts)}])"
        return (f"zennit.composites.SpecialFirstLayerMapComposite([{', '.join(parts)}], "
                f"first_map=[(Linear, {self.first.text()})])")


def zennit_named(name: str, x_shape: tuple[int, ...] | None = None, **kwargs: Any) -> ZennitComposite:
    """zennit's composite ``name`` (e.g. "EpsilonPlus") with keyword arguments; zB bounds as floats or arrays."""
    if "low" in kwargs:
        kwargs["low"] = zennit_bound(kwargs["low"], x_shape or ())
        kwargs["high"] = zennit_bound(kwargs["high"], x_shape or ())
    return ZennitComposite(named=Made(f"zennit.composites.{name}", kwargs))


def zennit_layer_map(rule: R.Rule, avgpool: R.Rule, first: R.Rule | None = None,
                     x_shape: tuple[int, ...] | None = None) -> ZennitComposite:
    """Activations Pass, AvgPool ``Norm`` (from ``avgpool``, an Epsilon), Linear/Conv ``rule``, optionally
    ``first`` on the first Linear/Conv (zennit's ``SpecialFirstLayerMapComposite``)."""
    return ZennitComposite(linear=zennit_rule(rule, x_shape), avgpool=zennit_norm(avgpool),
                           first=None if first is None else zennit_rule(first, x_shape))


def _composite_kwargs(composite: C.LayerTypeComposite) -> dict[str, Any]:
    """The zennit keyword arguments of one of lrp_ref's named composites, read from its rules."""
    kwargs: dict[str, Any] = {}
    if composite.name == "epsilon_gamma_box":
        assert isinstance(composite.first, R.ZBox) and isinstance(composite.conv, R.Gamma)
        kwargs["low"], kwargs["high"] = composite.first.low, composite.first.high
        kwargs["gamma"] = composite.conv.gamma
    assert isinstance(composite.dense, R.Epsilon) and isinstance(composite.avgpool, R.Epsilon)
    kwargs["epsilon"] = composite.dense.epsilon
    kwargs["stabilizer"] = composite.avgpool.epsilon
    return kwargs


def zennit_plan(model: lrp_ref.Graph, rules: R.Rule | C.Composite, x_shape: tuple[int, ...]) -> ZennitComposite:
    """The zennit composite that reproduces ``rules`` on ``model`` under the "zennit" profile.

    lrp_ref's named composites become zennit's; a single rule becomes a layer map (average
    pooling takes the rule lrp_ref's profile gives it, as ``Norm``); a ``FIRST+REST``
    composite a special-first layer map.  Raises :class:`NotExpressible` otherwise.
    """
    profile = get_profile("zennit")
    resolved = C.resolve_rules(rules, model, profile.default_rule)
    resolved = [profile.resolve(rule, layer) for rule, layer in zip(resolved, model)]
    for layer, rule in zip(model, resolved):
        if isinstance(layer, L.MaxPool2d) and rule != profile.maxpool.resolved(profile.defaults):
            raise NotExpressible(f"zennit routes max pooling by gradient (first arg-max); not {rule!r}")
        if isinstance(layer, (L.ReLU, L.Flatten)) and not isinstance(rule, R.Pass):
            raise NotExpressible(f"{rule!r} on {layer.describe()}")
    avg = next((r for layer, r in zip(model, resolved) if isinstance(layer, L.AvgPool2d)), R.Epsilon(1e-6))
    if isinstance(rules, C.LayerTypeComposite) and rules.name in ZENNIT_COMPOSITES:
        plan = zennit_named(ZENNIT_COMPOSITES[rules.name], x_shape, **_composite_kwargs(rules))
    elif isinstance(rules, R.Rule):
        plan = zennit_layer_map(rules, avg, x_shape=x_shape)
    elif isinstance(rules, C.LayerTypeComposite) and rules.conv == rules.dense and \
            rules.first_types == (L.Dense, L.Conv2d):
        plan = zennit_layer_map(rules.conv, avg, rules.first, x_shape)
    else:
        raise NotExpressible(f"zennit has no composite for {rules!r}")
    # a plan is only as good as its rules: every layer's rule must map as the plan says
    for layer, rule in zip(model, resolved):
        if isinstance(layer, L.AvgPool2d) and zennit_norm(rule) != plan.avgpool and plan.named is None:
            raise NotExpressible(f"average pooling layers take different rules ({rule!r})")
    return plan


def run_zennit(model: Sequential, x: np.ndarray, composite: ZennitComposite, start: np.ndarray) -> np.ndarray:
    """zennit's input relevance for ``model`` (via ``to_torch``), in float64, from the start relevance ``start``."""
    return run_zennit_module(lrp_ref.to_torch(model), x, composite, start)


def run_zennit_module(module: torch.nn.Module, x: np.ndarray, composite: ZennitComposite, start: np.ndarray,
                      canonizers: Sequence[Any] = ()) -> np.ndarray:
    """zennit's input relevance for a torch ``module`` (float64), from ``start``, with zennit's ``canonizers``.

    zennit applies the canonizers to ``module`` in place for the call and undoes them after it.
    """
    ensure_torchvision()
    from zennit.attribution import Gradient

    with Gradient(model=module, composite=composite.build(canonizers)) as attributor:
        _, relevance = attributor(torch.tensor(x, dtype=torch.float64), torch.tensor(start, dtype=torch.float64))
    return relevance.detach().numpy()


def zennit_call(composite: ZennitComposite, start: str) -> str:
    """A one-line description of the zennit call (for the vectors' ``call`` attribute)."""
    return (f"zennit.attribution.Gradient(model=lrp_ref.to_torch(model), composite={composite.text()})"
            f"(x, attr_output={start}) in float64")


# ----------------------------------------------------------------------------- Captum


class CaptumNet(torch.nn.Module):
    """The layers of a ``torch.nn.Sequential``, with ``nn.Flatten`` done functionally (Captum refuses the module)."""

    def __init__(self, seq: torch.nn.Sequential) -> None:
        super().__init__()
        children = list(seq)
        self.layers = torch.nn.ModuleList([m for m in children if not isinstance(m, torch.nn.Flatten)])
        self.flatten_before = set()
        kept = 0
        for m in children:
            if isinstance(m, torch.nn.Flatten):
                self.flatten_before.add(kept)
            else:
                kept += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, m in enumerate(self.layers):
            if i in self.flatten_before:
                x = torch.flatten(x, 1)
            x = m(x)
        return x


def captum_rule(rule: R.Rule, layer: L.Layer) -> Made | None:
    """The Captum rule computing what ``rule`` (resolved under the "captum" profile) computes on ``layer``.

    None for layers Captum handles without a rule (ReLU, Flatten).
    """
    rule = rule.resolved(get_profile("captum").defaults)
    if isinstance(layer, (L.ReLU, L.Flatten)):
        if not isinstance(rule, R.Pass):
            raise NotExpressible(f"{rule!r} on {layer.describe()}")
        return None
    if isinstance(layer, L.MaxPool2d):
        if not isinstance(rule, R.WinnerTakesAll):
            raise NotExpressible(f"Captum explains max pooling with EpsilonRule; not {rule!r}")
        _require(rule, ties="first", form="sign")
        return Made(CAPTUM_RULES + "EpsilonRule", {"epsilon": float(rule.epsilon)})
    if isinstance(rule, R.Epsilon):
        _require(rule, scale="absolute", form="sign")
        return Made(CAPTUM_RULES + "EpsilonRule", {"epsilon": float(rule.epsilon) + float(rule.stabilizer)})
    if isinstance(layer, L.AvgPool2d):
        raise NotExpressible(f"Captum's other rules change weights, which average pooling lacks ({rule!r})")
    if isinstance(rule, R.Gamma):
        _require(rule, form="sign", variant="weights", stabilizer=CAPTUM_STABILIZER)
        return Made(CAPTUM_RULES + "GammaRule", {"gamma": float(rule.gamma)})
    if isinstance(rule, R.ZPlus) or (isinstance(rule, R.AlphaBeta) and rule.alpha == 1 and rule.beta == 0):
        _require(rule, form="sign", split="weights", bias="both", stabilizer=CAPTUM_STABILIZER)
        return Made(CAPTUM_RULES + "Alpha1_Beta0_Rule", {})
    raise NotExpressible(f"Captum has no rule for {rule!r}")


def captum_plan(model: Sequential, rules: R.Rule | C.Composite | Sequence[R.Rule | None]) -> dict[int, Made]:
    """Captum rule per layer index that reproduces ``rules`` under the "captum" profile."""
    profile = get_profile("captum")
    resolved = C.resolve_rules(rules, model, profile.default_rule)
    plan: dict[int, Made] = {}
    for i, (layer, rule) in enumerate(zip(model, resolved)):
        made = captum_rule(profile.resolve(rule, layer), layer)
        if made is not None:
            plan[i] = made
    return plan


def run_captum(model: Sequential, x: np.ndarray, target: np.ndarray, plan: dict[int, Made]) -> np.ndarray:
    """Captum's input relevance for ``model`` (a fresh ``to_torch`` copy each call), float64, rules by layer index.

    Layers without an entry keep Captum's default (EpsilonRule(1e-9) on Linear, Conv2d and pooling).
    """
    from captum.attr import LRP

    seq = lrp_ref.to_torch(model)
    for i, made in plan.items():
        seq[i].rule = made.build()
    xt = torch.tensor(x, dtype=torch.float64).requires_grad_()
    relevance = LRP(CaptumNet(seq)).attribute(xt, target=torch.tensor(np.asarray(target, dtype=np.int64)))
    return relevance.detach().numpy()


def captum_call(model: Sequential, plan: dict[int, Made]) -> str:
    """A one-line description of the Captum call (for the vectors' ``call`` attribute)."""
    groups: dict[str, list[str]] = {}
    for i, made in plan.items():
        groups.setdefault(made.text(), []).append(f"{i} ({type(model[i]).__name__})")
    rules = "; ".join(f"{text} on module {', '.join(where)}" for text, where in groups.items()) or "Captum's defaults"
    return (f"captum.attr.LRP(net).attribute(x.requires_grad_(), target=target) in float64, "
            f"net = lrp_ref.to_torch(model) with nn.Flatten applied functionally; rules: {rules}")


# ----------------------------------------------------------------------------- residuals


#: worst relative residual seen per label (written out by the test modules when LRP_REF_RESIDUALS is set)
RESIDUALS: dict[str, float] = {}


def check(peer: np.ndarray, oracle: np.ndarray, label: str, what: str) -> None:
    """``assert_relevance_close(peer, oracle, rtol=1e-12)``, remembering the residual under ``label``."""
    _, rel = lrp_ref.testing.relevance_error(peer, oracle)
    RESIDUALS[label] = max(RESIDUALS.get(label, 0.0), rel)
    lrp_ref.testing.assert_relevance_close(peer, oracle, rtol=1e-12, what=what)


def dump_residuals(path: str, library: str) -> None:
    import json

    target = Path(path)
    data = json.loads(target.read_text()) if target.exists() else {}
    data.setdefault(library, {}).update({k: max(v, data.get(library, {}).get(k, 0.0)) for k, v in RESIDUALS.items()})
    target.write_text(json.dumps(data, indent=1, sort_keys=True))
    RESIDUALS.clear()


