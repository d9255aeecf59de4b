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
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")
innvestigate = pytest.importorskip("innvestigate")

import keras_nets  # noqa: E402
from analyzers import ANALYZERS, lrp_ref_rules  # noqa: E402

import lrp_ref  # noqa: E402
from lrp_ref.testing import assert_relevance_close, relevance_error  # noqa: E402

RTOL = 1e-10

INPUTS = keras_nets.INPUTS
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


@pytest.mark.parametrize("input_kind", INPUTS)
@pytest.mark.parametrize("kind", keras_nets.NETS)
@pytest.mark.parametrize("key", list(ANALYZERS))
def test_analyzer_as_a_user_writes_it(key: str, kind: str, input_kind: str) -> None:
    model, shape, _ = _net(kind)
    x = keras_nets.explained_inputs(kind, shape, input_kind, model)
    assert len(x) > 0
    theirs = keras_nets.to_nchw(_analyzer(kind, key).analyze(keras_nets.to_nhwc(x)))
    ours = lrp_ref.explain(model, x, lrp_ref_rules(key, model), profile="innvestigate")
    err = relevance_error(theirs, ours.relevance)[1]
    _RESIDUALS[key] = max(_RESIDUALS.get(key, 0.0), err)
    assert_relevance_close(theirs, ours.relevance, rtol=RTOL)


@pytest.mark.parametrize("kind", keras_nets.NETS)
def test_keras_twin_computes_the_same_function(kind: str) -> None:
    model, shape, net = _net(kind)
    x = keras_nets.random_input(shape, "mixed", n=3, seed=5)
    np.testing.assert_allclose(net.predict(keras_nets.to_nhwc(x), verbose=0), model.forward(x), rtol=1e-12, atol=1e-12)
