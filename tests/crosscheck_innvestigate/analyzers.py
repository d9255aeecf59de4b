"""iNNvestigate's LRP analyzers and what an lrp_ref user writes for each (no TensorFlow needed).

Shared by the live cross-check (test_innvestigate.py), the recorder
(scripts/record_innvestigate.py) and the check of the recorded numbers in ``make test``
(tests/test_innvestigate_golden.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lrp_ref
from lrp_ref import composites as C
from lrp_ref import rules as R

LOW, HIGH = -1.0, 1.0  # bounds of every input kind of keras_nets.random_input

#: key -> (iNNvestigate analyzer name, its keyword arguments, what an lrp_ref user writes: model -> rules)
ANALYZERS: dict[str, tuple[str, dict[str, Any], Callable[[lrp_ref.Sequential], Any]]] = {
    "z": ("lrp.z", {}, lambda m: R.LRP0()),
    "epsilon": ("lrp.epsilon", {}, lambda m: R.Epsilon()),
    "epsilon_0.1": ("lrp.epsilon", {"epsilon": 0.1}, lambda m: R.Epsilon(0.1)),
    "w_square": ("lrp.w_square", {}, lambda m: R.WSquare()),
    "flat": ("lrp.flat", {}, lambda m: R.Flat()),
    "alpha_beta_3_2": ("lrp.alpha_beta", {"alpha": 3, "beta": 2}, lambda m: R.AlphaBeta(3, 2)),
    "alpha_2_beta_1": ("lrp.alpha_2_beta_1", {}, lambda m: R.AlphaBeta(2, 1)),
    "alpha_2_beta_1_IB": ("lrp.alpha_2_beta_1_IB", {}, lambda m: R.AlphaBeta(2, 1, bias="none")),
    "alpha_1_beta_0": ("lrp.alpha_1_beta_0", {}, lambda m: R.AlphaBeta(1, 0)),
    "alpha_1_beta_0_IB": ("lrp.alpha_1_beta_0_IB", {}, lambda m: R.AlphaBeta(1, 0, bias="none")),
    "z_plus": ("lrp.z_plus", {}, lambda m: R.ZPlus()),
    "z_plus_fast": ("lrp.z_plus_fast", {}, lambda m: R.ZPlus(split="weights", bias="none")),
    "preset_a": ("lrp.sequential_preset_a", {}, lambda m: C.innvestigate_preset("A")),
    "preset_b": ("lrp.sequential_preset_b", {}, lambda m: C.innvestigate_preset("B")),
    "preset_a_flat": ("lrp.sequential_preset_a_flat", {}, lambda m: C.innvestigate_preset("A", flat=True)),
    "preset_b_flat": ("lrp.sequential_preset_b_flat", {"epsilon": 0.5},
                      lambda m: C.innvestigate_preset("B", epsilon=0.5, flat=True)),
    "deep_taylor": ("deep_taylor", {}, lambda m: C.innvestigate_deep_taylor()),
    "deep_taylor_bounded": ("deep_taylor.bounded", {"low": LOW, "high": HIGH},
                            lambda m: C.innvestigate_deep_taylor(LOW, HIGH)),
    # LRP(rule="Epsilon", input_layer_rule=(low, high)): ZBox on the first Dense/Conv2d, Epsilon on the others
    "epsilon_bounded_input": ("lrp", {"rule": "Epsilon", "input_layer_rule": (LOW, HIGH)},
                              lambda m: _first_and_rest(m, R.ZBox(LOW, HIGH), R.Epsilon())),
}


def _first_and_rest(model: lrp_ref.Sequential, first: R.Rule, rest: R.Rule) -> list[R.Rule | None]:
    linear = [i for i, layer in enumerate(model) if isinstance(layer, (lrp_ref.Dense, lrp_ref.Conv2d))]
    return [first if i == linear[0] else rest if i in linear else None for i in range(len(model))]


def lrp_ref_rules(key: str, model: lrp_ref.Sequential) -> Any:
    """What an lrp_ref user passes to ``explain(..., profile="innvestigate")`` for analyzer ``key``."""
    return ANALYZERS[key][2](model)
