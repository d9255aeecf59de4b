"""``--rule`` on the command line: build a specification with :mod:`lrp_ref.catalog`, checked against the model.

:func:`lrp_ref.catalog.from_spec` refuses malformed specifications (unknown
names and parameters, with the choices; ``zbox`` anywhere but first; ...).
This module adds what needs the model, so that the command line never
answers a different question than the one asked:

* a composite whose characteristic rules would reach no layer of this model
  (``epsilon_gamma_box`` puts zB on the first *convolution*, as zennit's
  ``EpsilonGammaBox`` does; on an MLP it would be plain LRP-epsilon).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from . import catalog
from ._cli_inputs import CliError
from .composites import Composite, LayerTypeComposite
from .errors import LrpRefError
from .graph import Graph
from .layers import AvgPool2d, Conv2d, Dense
from .rules import Rule


def _spec_of(rule: Rule) -> str | None:
    """A specification that builds ``rule``, if the catalog can (numbers only, conventions unset)."""
    names = [name for name, cls in catalog.RULES.items() if type(rule) is cls]
    if not names:
        return None
    settable = catalog.parameters(type(rule))
    params = []
    for f in dataclasses.fields(rule):  # type: ignore[arg-type]
        value = getattr(rule, f.name)
        if f.name not in settable and value is not None:
            return None  # a convention set by the composite: not expressible as key=value
        if f.name in settable and value is not None:
            number = _number(value)
            if number is None:
                return None  # per-channel bounds (arrays): no key=value for them
            params.append(f"{f.name}={number}")
    return names[0] + (":" + ",".join(params) if params else "")


def _number(value: Any) -> str | None:
    """A parameter as ``--rule`` reads it (``0.0``, ``1e-06``, ``2``; a 0-d array as its number), else None."""
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "iuf":
        return None
    return repr(arr.item()).replace("e+", "e")  # the catalog reads 1e20, not 1e+20


def unused_parts(composite: Composite, model: Graph) -> str | None:
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


def build(spec: str, model: Graph, bounds: Any) -> Rule | Composite:
    """The rule or composite for ``--rule spec`` on ``model``, or a one-line :class:`CliError`."""
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
