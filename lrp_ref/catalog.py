"""Rules and composites by name, for the command line and for configuration files.

A specification is ``NAME`` or ``NAME:key=value,key=value``; for example
``epsilon:epsilon=0.25``, ``alpha_beta:alpha=3,beta=2``, ``epsilon_gamma_box``.
``FIRST+REST`` gives the first linear layer (Dense or Conv2d) the rule FIRST
and every other linear layer the rule REST, e.g. ``zbox+epsilon:epsilon=0.25``
or ``wsquare+alpha_beta``.

The box rules (``zbox``, ``epsilon_gamma_box``, ``depth_based``) take ``low``
and ``high`` from the specification or, if absent, from the bounds passed in
(for a saved model, its ``input_low`` and ``input_high``).

Methods beyond LRP's rules are named like composites, without parameters:
``excitation_backprop`` (MWP), ``excitation_backprop_contrastive`` (c-MWP)
and ``rap`` (:data:`METHODS`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from typing import Any

from . import composites as C
from . import rules as R
from .errors import RuleParameterError

__all__ = ["COMPOSITES", "INPUT_ONLY", "METHODS", "MORE_COMPARISON", "RULES", "SEED_COMPARISON", "check_spec",
           "from_spec", "parameters"]

#: The named rules of the catalog (``lrp-ref --rule NAME``) and their constructors.
RULES: dict[str, Callable[..., R.Rule]] = {
    "lrp0": R.LRP0,
    "epsilon": R.Epsilon,
    "gamma": R.Gamma,
    "alpha_beta": R.AlphaBeta,
    "zplus": R.ZPlus,
    "zbox": R.ZBox,
    "wsquare": R.WSquare,
    "flat": R.Flat,
}

#: The named composites of the catalog and their constructors.
COMPOSITES: dict[str, Callable[..., C.Composite]] = {
    "epsilon_plus": C.epsilon_plus,
    "epsilon_plus_flat": C.epsilon_plus_flat,
    "epsilon_alpha2_beta1": C.epsilon_alpha2_beta1,
    "epsilon_alpha2_beta1_flat": C.epsilon_alpha2_beta1_flat,
    "epsilon_gamma_box": C.epsilon_gamma_box,
    "depth_based": C.depth_based,
}

#: Propagation methods beyond LRP's rules, named like composites (whole-model assignments without parameters).
#: Kept apart from COMPOSITES: they are not LRP presets (the conformance vectors and ``check`` cover those),
#: and Excitation Backprop refuses models whose layers see negative inputs.
METHODS: dict[str, Callable[..., C.Composite]] = {
    "excitation_backprop": C.excitation_backprop,
    "excitation_backprop_contrastive": lambda: C.excitation_backprop(contrastive=True),
    "rap": C.rap,
}

_NEEDS_BOUNDS = {"zbox", "epsilon_gamma_box"}

#: Rules meant for the input layer only (their assumptions hold for bounded inputs, not hidden layers).
INPUT_ONLY = frozenset({"zbox"})

#: The rule comparison of the seed (Montavon et al. 2019, Fig. 10.2 and Sec. 10.3): (label, specification).
SEED_COMPARISON: tuple[tuple[str, str], ...] = (
    ("LRP-0", "lrp0"),
    ("LRP-\u03b5 (\u03b5=0.25)", "epsilon:epsilon=0.25"),
    ("LRP-\u03b3 (\u03b3=0.25)", "gamma:gamma=0.25"),
    ("LRP-\u03b1\u03b2 (\u03b1=2, \u03b2=1)", "alpha_beta:alpha=2,beta=1"),
    ("zB input, LRP-\u03b5 above", "zbox+epsilon:epsilon=0.25"),
    ("w\u00b2 input, LRP-\u03b5 above", "wsquare+epsilon:epsilon=0.25"),
    ("composite flat (\u03b5 + z+)", "epsilon_plus_flat"),
    ("depth-based composite", "depth_based"),
    ("\u03b1\u03b2 + w\u00b2 input", "wsquare+alpha_beta:alpha=2,beta=1"),
)


#: The optional second row of the comparison (``compare-rules --more``): methods the seed cites beyond LRP.
MORE_COMPARISON: tuple[tuple[str, str], ...] = (
    ("Excitation Backprop (MWP)", "excitation_backprop"),
    ("contrastive MWP (c-MWP)", "excitation_backprop_contrastive"),
    ("RAP", "rap"),
)


_INTEGER_PARAMETERS = {"n_upper", "n_lower"}


def parameters(factory: Callable[..., Any]) -> list[str]:
    """The numeric parameters a rule class or composite function takes (what ``key=value`` can set).

    String conventions (``form``, ``variant``, ``bias``, ...) are left out: a
    specification sets numbers, and the profile sets conventions.
    """
    if dataclasses.is_dataclass(factory):
        typed = [(f.name, str(f.type)) for f in dataclasses.fields(factory) if f.init]
    else:
        typed = [(p.name, str(p.annotation)) for p in inspect.signature(factory).parameters.values()]
    return [name for name, annotation in typed
            if not any(word in annotation for word in ("str", "bool", "Rule")) and not name.startswith("_")]


def _nearest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known() -> str:
    return (f"rules: {', '.join(RULES)}; composites: {', '.join(COMPOSITES)}; methods: {', '.join(METHODS)}; "
            "FIRST+REST puts rule FIRST on the first linear layer and REST on the others, e.g. zbox+epsilon")


def _check_part(part: str, position: str) -> None:
    """Check ``NAME[:key=value,...]``.  ``position`` is 'alone', 'first' or 'rest'."""
    name, _, params = part.strip().partition(":")
    name = name.strip().lower()
    table: dict[str, Callable[..., Any]] = {**RULES, **COMPOSITES, **METHODS}
    if name not in table:
        what = f"unknown rule or composite {name!r}" if name else "a rule name is missing"
        raise RuleParameterError(f"{what}{_nearest(name, list(table))}; {_known()}")
    allowed = parameters(table[name])
    seen: set[str] = set()
    for item in (p.strip() for p in params.split(",")):
        if not item:
            continue
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key:
            raise RuleParameterError(f"expected key=value after '{name}:', got {item!r}; "
                                     f"{name}'s parameters: {', '.join(allowed) or 'none'}")
        if key not in allowed:
            listing = f"its parameters: {', '.join(allowed)}" if allowed else "it takes no parameters"
            if f"{name}_{key}" in table:
                listing += f"; for that variant write {name}_{key}"
            kind = "rule" if name in RULES else "composite" if name in COMPOSITES else "method"
            raise RuleParameterError(f"{kind} {name!r} has no parameter "
                                     f"{key!r}{_nearest(key, allowed)}; {listing}")
        if key in seen:
            raise RuleParameterError(f"parameter {key!r} of {name!r} is given twice")
        seen.add(key)
        try:
            number = float(value)
        except ValueError:
            hint = " (write 1e3, not 1e+3: '+' separates FIRST+REST)" if value.lower().endswith("e") else ""
            raise RuleParameterError(f"{key}={value!r} is not a number{hint}") from None
        if key in _INTEGER_PARAMETERS and not number.is_integer():
            raise RuleParameterError(f"{key}={value!r} must be a whole number (a count of layers)")
    if (name in COMPOSITES or name in METHODS) and position != "alone":
        kind = "composite" if name in COMPOSITES else "method"
        raise RuleParameterError(f"{name!r} is a {kind}; both sides of FIRST+REST must be single rules "
                                 f"({', '.join(RULES)})")
    if name in INPUT_ONLY and position != "first":
        raise RuleParameterError(
            f"{name} (zB) is an input-layer rule: it needs the layer's inputs to lie in low..high, which holds "
            f"for the model input, not for hidden layers; put it first, as in {name}+epsilon or {name}+gamma, "
            "or use a composite with zB (epsilon_gamma_box, depth_based)")


def check_spec(spec: str) -> None:
    """Refuse a malformed specification with a :class:`RuleParameterError` naming the rule, parameter and choices.

    Unknown names and parameters (the known ones listed, the nearest one
    suggested), parameters given twice, non-numbers, non-integers where a
    count is needed (``depth_based:n_upper=1.5`` is refused, not truncated),
    composites beside '+', and ``zbox`` anywhere but the input layer.
    """
    parts = spec.split("+")
    if len(parts) > 2:
        raise RuleParameterError(f"at most one '+' (FIRST+REST); found {len(parts) - 1}")
    if len(parts) == 2:
        _check_part(parts[0], "first")
        _check_part(parts[1], "rest")
    else:
        _check_part(spec, "alone")


def _parse_value(key: str, text: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise RuleParameterError(f"in {spec!r}: {key}={text!r} is not a number") from None


def _parse(spec: str) -> tuple[str, dict[str, Any]]:
    name, _, params = spec.strip().partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise RuleParameterError(f"in {spec!r}: expected key=value, got {item!r}")
        kwargs[key.strip()] = _parse_value(key.strip(), value.strip(), spec)
    return name.strip().lower(), kwargs


def _build(spec: str, bounds: tuple[Any, Any] | None) -> R.Rule | C.Composite:
    name, kwargs = _parse(spec)
    table: dict[str, Callable[..., Any]] = {**RULES, **COMPOSITES, **METHODS}
    if name not in table:
        known = ", ".join(sorted(table))
        raise RuleParameterError(f"unknown rule or composite {name!r}; known: {known}")
    if (name in _NEEDS_BOUNDS or name == "depth_based") and "low" not in kwargs and bounds is not None:
        kwargs["low"], kwargs["high"] = bounds
    if name in _NEEDS_BOUNDS and "low" not in kwargs:
        raise RuleParameterError(f"{name} needs input bounds: give low=..,high=.. or a model with input_low/input_high")
    if name == "depth_based":
        for key in ("n_upper", "n_lower"):
            if key in kwargs:
                kwargs[key] = int(kwargs[key])
    try:
        built: R.Rule | C.Composite = table[name](**kwargs)
        return built
    except TypeError as exc:
        raise RuleParameterError(f"bad parameters for {name!r}: {exc}") from None


def from_spec(spec: str, bounds: tuple[Any, Any] | None = None) -> R.Rule | C.Composite:
    """The rule or composite named by ``spec`` (see the module docstring); checked first by :func:`check_spec`."""
    check_spec(spec)
    if "+" in spec:
        first_spec, _, rest_spec = spec.partition("+")
        first, rest = _build(first_spec, bounds), _build(rest_spec, bounds)
        if not isinstance(first, R.Rule) or not isinstance(rest, R.Rule):
            raise RuleParameterError(f"in {spec!r}: both sides of '+' must be single rules, not composites")
        return C.LayerTypeComposite(spec, conv=rest, dense=rest, avgpool=rest, first=first)
    return _build(spec, bounds)
