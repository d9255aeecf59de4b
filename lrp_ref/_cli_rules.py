"""``--rule`` on the command line: check a specification before :mod:`lrp_ref.catalog` builds it.

The catalog builds rules; this module makes sure the command line never
answers a different question than the one asked, and that every mistake is
one line naming the rule, the parameter and the valid choices:

* unknown names and parameters, with the known ones listed (and the nearest
  one suggested);
* parameters given twice, non-numbers, and non-integers where an integer is
  needed (``depth_based:n_upper=1.5`` is refused, not truncated);
* ``zbox`` anywhere but the input layer (``zbox+REST``);
* a composite whose characteristic rules would reach no layer of this model
  (``epsilon_gamma_box`` puts zB on the first *convolution*, as zennit's
  ``EpsilonGammaBox`` does; on an MLP it would be plain LRP-epsilon).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from typing import Any

from . import catalog
from ._cli_inputs import CliError
from .composites import Composite, LayerTypeComposite
from .errors import LrpRefError
from .layers import AvgPool2d, Conv2d, Dense
from .rules import Rule
from .sequential import Sequential

_INTEGER_PARAMETERS = {"n_upper", "n_lower"}


def parameters(factory: Callable[..., Any]) -> list[str]:
    """The numeric parameters a rule class or composite function takes (what ``key=value`` can set).

    String conventions (``form``, ``variant``, ``bias``, ...) are left out: the
    command line sets numbers, and ``--profile`` sets conventions.
    """
    if dataclasses.is_dataclass(factory):
        typed = [(f.name, str(f.type)) for f in dataclasses.fields(factory) if f.init]
    else:
        typed = [(p.name, str(p.annotation)) for p in inspect.signature(factory).parameters.values()]
    return [name for name, annotation in typed if "str" not in annotation and not name.startswith("_")]


def _nearest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known() -> str:
    return (f"rules: {', '.join(catalog.RULES)}; composites: {', '.join(catalog.COMPOSITES)}; "
            "FIRST+REST puts rule FIRST on the first linear layer and REST on the others, e.g. zbox+epsilon")


def _check_part(part: str, spec: str, position: str) -> str:
    """Check ``NAME[:key=value,...]``; return NAME.  ``position`` is 'alone', 'first' or 'rest'."""
    where = f"--rule {spec!r}"
    name, _, params = part.strip().partition(":")
    name = name.strip().lower()
    table: dict[str, Callable[..., Any]] = {**catalog.RULES, **catalog.COMPOSITES}
    if name not in table:
        what = f"unknown rule or composite {name!r}" if name else "a rule name is missing"
        raise CliError(f"{where}: {what}{_nearest(name, list(table))}; {_known()}")
    allowed = parameters(table[name])
    seen: set[str] = set()
    for item in (p.strip() for p in params.split(",")):
        if not item:
            continue
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key:
            raise CliError(f"{where}: expected key=value after '{name}:', got {item!r}; "
                           f"{name}'s parameters: {', '.join(allowed) or 'none'}")
        if key not in allowed:
            listing = f"its parameters: {', '.join(allowed)}" if allowed else "it takes no parameters"
            raise CliError(f"{where}: {'rule' if name in catalog.RULES else 'composite'} {name!r} has no parameter "
                           f"{key!r}{_nearest(key, allowed)}; {listing}")
        if key in seen:
            raise CliError(f"{where}: parameter {key!r} of {name!r} is given twice")
        seen.add(key)
        try:
            number = float(value)
        except ValueError:
            hint = " (write 1e3, not 1e+3: '+' separates FIRST+REST)" if value.lower().endswith("e") else ""
            raise CliError(f"{where}: {key}={value!r} is not a number{hint}") from None
        if key in _INTEGER_PARAMETERS and not number.is_integer():
            raise CliError(f"{where}: {key}={value!r} must be a whole number (a count of layers)")
    if name in catalog.COMPOSITES and position != "alone":
        raise CliError(f"{where}: {name!r} is a composite; both sides of FIRST+REST must be single rules "
                       f"({', '.join(catalog.RULES)})")
    if name in catalog.INPUT_ONLY and position != "first":
        raise CliError(f"{where}: {name} (zB) is an input-layer rule: it needs the layer's inputs to lie in "
                       f"low..high, which holds for the model input, not for hidden layers; put it first, as in "
                       f"{name}+epsilon or {name}+gamma, or use a composite with zB (epsilon_gamma_box, depth_based)")
    return name


def check_spec(spec: str) -> None:
    """Refuse a malformed ``--rule`` specification with one line (see the module docstring)."""
    parts = spec.split("+")
    if len(parts) > 2:
        raise CliError(f"--rule {spec!r}: at most one '+' (FIRST+REST); found {len(parts) - 1}")
    if len(parts) == 2:
        _check_part(parts[0], spec, "first")
        _check_part(parts[1], spec, "rest")
    else:
        _check_part(spec, spec, "alone")


def _spec_of(rule: Rule) -> str | None:
    """A specification that builds ``rule``, if the catalog can (numbers only, conventions unset)."""
    names = [name for name, cls in catalog.RULES.items() if type(rule) is cls]
    if not names:
        return None
    settable = parameters(type(rule))
    params = []
    for f in dataclasses.fields(rule):  # type: ignore[arg-type]
        value = getattr(rule, f.name)
        if f.name not in settable and value is not None:
            return None  # a convention set by the composite: not expressible as key=value
        if f.name in settable and value is not None:
            params.append(f"{f.name}={value!r}")
    return names[0] + (":" + ",".join(params) if params else "")


def unused_parts(composite: Composite, model: Sequential) -> str | None:
    """Why ``composite`` would not be what its name says on ``model`` (None when it is)."""
    if not isinstance(composite, LayerTypeComposite):
        return None
    assigned = composite.assign(model)
    first_kind = "/".join(t.__name__ for t in composite.first_types)
    first_may_be_conv = composite.first is not None and Conv2d in composite.first_types
    others = "the other Conv2d layers" if first_may_be_conv else "Conv2d layers"
    roles = [(composite.first, f"the first {first_kind} layer"), (composite.conv, others)]
    idle = [(rule, where) for rule, where in roles if rule is not None and not any(a is rule for a in assigned)]
    if not idle:
        return None
    puts = " and ".join(f"{rule!r} on {where}" for rule, where in idle)
    used = [a for a, layer in zip(assigned, model) if a is not None and isinstance(layer, (Dense, Conv2d, AvgPool2d))]
    effective = sorted({repr(a) for a in used})
    message = (f"{composite.name} puts {puts} (as zennit does), but this model has no such layer, so its linear "
               f"layers would get only {' and '.join(effective)}")
    same: str | None = None
    if len(effective) == 1:
        same = _spec_of(used[0])
    elif len(used) > 1 and len({repr(a) for a in used[1:]}) == 1:
        first, rest = _spec_of(used[0]), _spec_of(used[1])
        same = f"{first}+{rest}" if first is not None and rest is not None else None
    if same is not None:
        message += f", the same as --rule {same}"
    return message


def build(spec: str, model: Sequential, bounds: Any) -> Rule | Composite:
    """The rule or composite for ``--rule spec`` on ``model``, or a one-line :class:`CliError`."""
    check_spec(spec)
    try:
        built = catalog.from_spec(spec, bounds)
    except LrpRefError as exc:
        raise CliError(f"--rule {spec!r}: {exc}") from None
    if isinstance(built, Composite):
        why = unused_parts(built, model)
        if why is not None:
            raise CliError(f"--rule {spec!r}: {why}; say what you mean instead: zbox+epsilon (zB on the input "
                           f"layer, LRP-epsilon above), depth_based, or another FIRST+REST pair")
    return built
