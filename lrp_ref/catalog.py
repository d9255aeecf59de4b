"""Rules and composites by name, for the command line and for configuration files.

A specification is ``NAME`` or ``NAME:key=value,key=value``; for example
``epsilon:epsilon=0.25``, ``alpha_beta:alpha=3,beta=2``, ``epsilon_gamma_box``.
``FIRST+REST`` gives the first linear layer (Dense or Conv2d) the rule FIRST
and every other linear layer the rule REST, e.g. ``zbox+epsilon:epsilon=0.25``
or ``wsquare+alpha_beta``.

The box rules (``zbox``, ``epsilon_gamma_box``, ``depth_based``) take ``low``
and ``high`` from the specification or, if absent, from the bounds passed in
(for a saved model, its ``input_low`` and ``input_high``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import composites as C
from . import rules as R
from .errors import RuleParameterError

__all__ = ["COMPOSITES", "INPUT_ONLY", "RULES", "SEED_COMPARISON", "from_spec"]

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

COMPOSITES: dict[str, Callable[..., C.Composite]] = {
    "epsilon_plus": C.epsilon_plus,
    "epsilon_plus_flat": C.epsilon_plus_flat,
    "epsilon_alpha2_beta1": C.epsilon_alpha2_beta1,
    "epsilon_alpha2_beta1_flat": C.epsilon_alpha2_beta1_flat,
    "epsilon_gamma_box": C.epsilon_gamma_box,
    "depth_based": C.depth_based,
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
    table: dict[str, Callable[..., Any]] = {**RULES, **COMPOSITES}
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
    """The rule or composite named by ``spec`` (see the module docstring)."""
    if "+" in spec:
        first_spec, _, rest_spec = spec.partition("+")
        first, rest = _build(first_spec, bounds), _build(rest_spec, bounds)
        if not isinstance(first, R.Rule) or not isinstance(rest, R.Rule):
            raise RuleParameterError(f"in {spec!r}: both sides of '+' must be single rules, not composites")
        return C.LayerTypeComposite(spec, conv=rest, dense=rest, avgpool=rest, first=first)
    return _build(spec, bounds)
