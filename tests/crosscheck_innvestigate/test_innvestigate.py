"""lrp_ref under the "innvestigate" profile against iNNvestigate 2.1.2 itself, live, in float64.

Every LRP analyzer of iNNvestigate is written the way a user of lrp_ref writes it: one rule
(``lrp.epsilon`` is ``Epsilon()``, ``lrp.z_plus`` is ``ZPlus()``, ...) or the named composite
(``lrp.sequential_preset_a`` is ``composites.innvestigate_preset("A")``, ``deep_taylor`` is
``composites.innvestigate_deep_taylor()``).  Networks with biases: an MLP, CNNs with max
pooling, average pooling, overlapping 3x3/2 max pooling and 'same' padding; inputs U(0, 1),
U(-1, 1) and quantised ones with exact ties in the max-pooling windows.  Both sides explain
the arg-max output from its value (iNNvestigate's ``max_activation``).  Agreement:
``assert_relevance_close(innvestigate, lrp_ref, rtol=1e-10)``, relative to max|R|.

Set LRP_REF_RESIDUALS=path to write the worst residual per analyzer into a JSON file.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")
innvestigate = pytest.importorskip("innvestigate")

import keras_nets  # noqa: E402

import lrp_ref  # noqa: E402
from lrp_ref import composites as C  # noqa: E402
from lrp_ref import rules as R  # noqa: E402
from lrp_ref.testing import assert_relevance_close, relevance_error  # noqa: E402

RTOL = 1e-10
LOW, HIGH = -1.0, 1.0  # bounds of every input kind below

#: iNNvestigate analyzer (name, keyword arguments) -> what an lrp_ref user writes for it
ANALYZERS: dict[str, tuple[str, dict[str, Any], Callable[[], Any]]] = {
    "z": ("lrp.z", {}, R.LRP0),
    "epsilon": ("lrp.epsilon", {}, R.Epsilon),
    "epsilon_0.1": ("lrp.epsilon", {"epsilon": 0.1}, lambda: R.Epsilon(0.1)),
    "w_square": ("lrp.w_square", {}, R.WSquare),
    "flat": ("lrp.flat", {}, R.Flat),
    "alpha_beta_3_2": ("lrp.alpha_beta", {"alpha": 3, "beta": 2}, lambda: R.AlphaBeta(3, 2)),
    "alpha_2_beta_1": ("lrp.alpha_2_beta_1", {}, lambda: R.AlphaBeta(2, 1)),
    "alpha_2_beta_1_IB": ("lrp.alpha_2_beta_1_IB", {}, lambda: R.AlphaBeta(2, 1, bias="none")),
    "alpha_1_beta_0": ("lrp.alpha_1_beta_0", {}, lambda: R.AlphaBeta(1, 0)),
    "alpha_1_beta_0_IB": ("lrp.alpha_1_beta_0_IB", {}, lambda: R.AlphaBeta(1, 0, bias="none")),
    "z_plus": ("lrp.z_plus", {}, R.ZPlus),
    "z_plus_fast": ("lrp.z_plus_fast", {}, lambda: R.ZPlus(split="weights", bias="none")),
    "preset_a": ("lrp.sequential_preset_a", {}, lambda: C.innvestigate_preset("A")),
    "preset_b": ("lrp.sequential_preset_b", {}, lambda: C.innvestigate_preset("B")),
    "preset_a_flat": ("lrp.sequential_preset_a_flat", {}, lambda: C.innvestigate_preset("A", flat=True)),
    "preset_b_flat": ("lrp.sequential_preset_b_flat", {"epsilon": 0.5},
                      lambda: C.innvestigate_preset("B", epsilon=0.5, flat=True)),
    "deep_taylor": ("deep_taylor", {}, C.innvestigate_deep_taylor),
    "deep_taylor_bounded": ("deep_taylor.bounded", {"low": LOW, "high": HIGH},
                            lambda: C.innvestigate_deep_taylor(LOW, HIGH)),
    "epsilon_bounded_input": ("lrp", {"rule": "Epsilon", "input_layer_rule": (LOW, HIGH)},
                              None),  # a list: ZBox on the first layer, Epsilon above (see _lrp_ref_rules)
}

INPUTS = ("pos", "mixed", "ties")
_RESIDUALS: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _residuals():
    yield
    if os.environ.get("LRP_REF_RESIDUALS"):
        with open(os.environ["LRP_REF_RESIDUALS"], "w", encoding="utf-8") as f:
            json.dump({"innvestigate": _RESIDUALS}, f, indent=1, sort_keys=True)


@functools.cache
def _net(kind: str) -> tuple[lrp_ref.Sequential, tuple[int, ...], Any]:
    model, shape = keras_nets.random_net(kind, seed=sum(map(ord, kind)))
    return model, shape, keras_nets.to_keras(model, shape)


@functools.cache
def _analyzer(kind: str, key: str) -> Any:
    name, kwargs, _ = ANALYZERS[key]
    return innvestigate.create_analyzer(name, _net(kind)[2], **kwargs)


def _lrp_ref_rules(key: str, model: lrp_ref.Sequential) -> Any:
    make = ANALYZERS[key][2]
    if make is not None:
        return make()
    # LRP(rule="Epsilon", input_layer_rule=(low, high)): ZBox on the first Dense/Conv2d, Epsilon on the others
    first = next(i for i, layer in enumerate(model) if isinstance(layer, (lrp_ref.Dense, lrp_ref.Conv2d)))
    return [R.ZBox(LOW, HIGH) if i == first else R.Epsilon() if isinstance(layer, (lrp_ref.Dense, lrp_ref.Conv2d))
            else None for i, layer in enumerate(model)]


def _inputs(kind: str, shape: tuple[int, ...], input_kind: str, model: lrp_ref.Sequential) -> np.ndarray:
    x = keras_nets.random_input(shape, input_kind, n=4, seed=len(kind) * 31 + INPUTS.index(input_kind))
    # deep Taylor explains max(f(x), 0): keep samples whose predicted output is positive
    out = model.forward(x)
    return x[out.max(axis=1) > 0]


@pytest.mark.parametrize("input_kind", INPUTS)
@pytest.mark.parametrize("kind", keras_nets.NETS)
@pytest.mark.parametrize("key", list(ANALYZERS))
def test_analyzer_as_a_user_writes_it(key: str, kind: str, input_kind: str) -> None:
    model, shape, _ = _net(kind)
    x = _inputs(kind, shape, input_kind, model)
    assert len(x) > 0
    theirs = keras_nets.to_nchw(_analyzer(kind, key).analyze(keras_nets.to_nhwc(x)))
    ours = lrp_ref.explain(model, x, _lrp_ref_rules(key, model), profile="innvestigate")
    err = relevance_error(theirs, ours.relevance)[1]
    _RESIDUALS[key] = max(_RESIDUALS.get(key, 0.0), err)
    assert_relevance_close(theirs, ours.relevance, rtol=RTOL)


@pytest.mark.parametrize("kind", keras_nets.NETS)
def test_keras_twin_computes_the_same_function(kind: str) -> None:
    model, shape, net = _net(kind)
    x = keras_nets.random_input(shape, "mixed", n=3, seed=5)
    np.testing.assert_allclose(net.predict(keras_nets.to_nhwc(x), verbose=0), model.forward(x), rtol=1e-12, atol=1e-12)
