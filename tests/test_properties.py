"""Hypothesis properties of the whole engine on random ReLU / pooling networks (float64).

Conservation identities, LRP-0 = gradient x input, special cases of the
rules, and batch independence.  Weights come from a seeded generator drawn by
hypothesis, inputs from bounded float strategies.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from nets import random_cnn, random_mlp
from numpy.testing import assert_allclose

import lrp_ref as L
from lrp_ref import composites as C
from lrp_ref import rules as R

seeds = st.integers(0, 2**32 - 1)
# Inputs are 0 or of magnitude >= 1e-3: with stabilizer 0, a denominator near the
# subnormal range overflows R / z; that regime raises NonFiniteError (test_explain.py).
values = st.one_of(st.just(0.0), st.floats(1e-3, 3.0), st.floats(-3.0, -1e-3))
mlp_inputs = arrays(np.float64, (3, 6), elements=values)
cnn_inputs = arrays(np.float64, (2, 2, 8, 8), elements=values)

RULES = {
    "LRP0": R.LRP0(),
    "Epsilon": R.Epsilon(0.1),
    "Gamma": R.Gamma(0.25),
    "AlphaBeta21": R.AlphaBeta(2, 1),
    "AlphaBeta32": R.AlphaBeta(3, 2, stabilizer=1e-9),
    "ZPlus": R.ZPlus(),
    "WSquare": R.WSquare(),
    "Flat": R.Flat(),
}


def first_layer(rule: R.Rule, model: L.Sequential, rest: R.Rule) -> list[R.Rule | None]:
    return [rule if i == 0 else (rest if isinstance(layer, L.layers.LinearLayer) else None)
            for i, layer in enumerate(model)]


@pytest.mark.parametrize("name", list(RULES))
@given(seed=seeds, x=mlp_inputs)
def test_every_rule_balances_on_mlp(name, seed, x):
    model = random_mlp(np.random.default_rng(seed))
    e = L.explain(model, x, RULES[name])
    e.ledger.check_balance()
    e.ledger.check_conservation()


@pytest.mark.parametrize("name", list(RULES))
@given(seed=seeds, x=cnn_inputs, pool=st.sampled_from(["max", "avg"]))
def test_every_rule_balances_on_cnn(name, seed, x, pool):
    model = random_cnn(np.random.default_rng(seed), pool=pool)
    e = L.explain(model, x, RULES[name])
    e.ledger.check_balance()
    e.ledger.check_conservation()


@given(seed=seeds, x=cnn_inputs)
def test_zbox_first_layer_balances(seed, x):
    model = random_cnn(np.random.default_rng(seed))
    low = np.full(x.shape[1:], -3.0)
    e = L.explain(model, x, first_layer(R.ZBox(low, 3.0), model, R.Epsilon(0.01)))
    e.ledger.check_balance()
    e.ledger.check_conservation()
    # zB drops the bias: the first layer absorbs nothing unless a denominator is zero
    assert_allclose(e.ledger.entries[0].absorbed, 0.0, atol=0)


@pytest.mark.parametrize("make", [C.epsilon_plus, C.epsilon_plus_flat, C.epsilon_alpha2_beta1,
                                  C.epsilon_alpha2_beta1_flat, lambda: C.epsilon_gamma_box(-3.0, 3.0),
                                  lambda: C.depth_based(-3.0, 3.0), lambda: C.depth_based()],
                         ids=["epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
                              "epsilon_alpha2_beta1_flat", "epsilon_gamma_box", "depth_based_zb",
                              "depth_based_wsquare"])
@given(seed=seeds, x=cnn_inputs)
def test_composites_balance(make, seed, x):
    model = random_cnn(np.random.default_rng(seed), pool="avg")
    e = L.explain(model, x, make())
    e.ledger.check_balance()
    e.ledger.check_conservation()


@given(seed=seeds, x=mlp_inputs)
def test_bias_free_lrp0_conserves_exactly(seed, x):
    model = random_mlp(np.random.default_rng(seed), bias=False)
    e = L.explain(model, x, R.LRP0())
    e.ledger.check_exact()
    assert_allclose(e.relevance.sum(axis=1), e.output[np.arange(3), e.target], rtol=1e-10, atol=1e-12)


@given(seed=seeds, x=cnn_inputs)
def test_bias_free_cnn_lrp0_conserves_exactly(seed, x):
    model = random_cnn(np.random.default_rng(seed), bias=False)
    L.explain(model, x, R.LRP0()).ledger.check_exact()


def test_check_exact_fails_when_bias_absorbs():
    model = L.Sequential([L.Dense(np.array([[1.0, 1.0]]), np.array([2.0]))])
    e = L.explain(model, np.array([[1.0, 1.0]]), R.LRP0())
    assert_allclose(e.ledger.absorbed, [2.0], rtol=1e-15)
    e.ledger.check_conservation()
    with pytest.raises(L.ConservationError, match=r"layer 0 \(Dense"):
        e.ledger.check_exact()


def numerical_gradient(model: L.Sequential, x: np.ndarray, target: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of f_target(x): exact up to rounding on piecewise-linear nets away from kinks."""
    grad = np.zeros_like(x)
    rows = np.arange(x.shape[0])
    flat = grad.reshape(x.shape[0], -1)
    for i in range(flat.shape[1]):
        step = np.zeros_like(x).reshape(x.shape[0], -1)
        step[:, i] = h
        step = step.reshape(x.shape)
        up = model.forward(x + step)[rows, target]
        down = model.forward(x - step)[rows, target]
        flat[:, i] = (up - down) / (2 * h)
    return grad


def kink_margin(model: L.Sequential, x: np.ndarray) -> float:
    """How far x is from a kink: the smallest |pre-activation| of a ReLU and the smallest gap between
    the largest and second-largest value of a max-pool window.  Central differences with step h are
    exact on a piecewise-linear net only where this margin is well above h times the gradient."""
    activations = model.forward_all(x)
    margins = [np.inf]
    for layer, a_in in zip(model, activations[:-1]):
        if isinstance(layer, L.ReLU):
            margins.append(float(np.abs(a_in).min()))
        elif isinstance(layer, L.MaxPool2d):
            k = layer.kernel_size[0]
            windows = np.lib.stride_tricks.sliding_window_view(a_in, (k, k), axis=(2, 3))[:, :, ::k, ::k]
            top2 = np.sort(windows.reshape(*windows.shape[:4], -1), axis=-1)[..., -2:]
            live = top2[..., 1] > 0  # windows that carry relevance
            if np.any(live):
                margins.append(float((top2[..., 1] - top2[..., 0])[live].min()))
    return min(margins)


@given(seed=seeds, x=mlp_inputs)
def test_lrp0_is_gradient_times_input_mlp(seed, x):
    rng = np.random.default_rng(seed)
    model = random_mlp(rng)
    x = x + 1e-2 * rng.normal(size=x.shape)  # a generic point: no ReLU kinks
    assume(kink_margin(model, x) > 1e-4)
    e = L.explain(model, x, R.LRP0())
    expected = x * numerical_gradient(model, x, e.target)
    assert_allclose(e.relevance, expected, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(expected).max()))


@given(seed=seeds, x=cnn_inputs)
def test_lrp0_is_gradient_times_input_cnn_maxpool(seed, x):
    rng = np.random.default_rng(seed)
    model = random_cnn(rng, pool="max")
    x = x + 1e-2 * rng.normal(size=x.shape)  # a generic point: no max-pool ties, no ReLU kinks
    assume(kink_margin(model, x) > 1e-4)
    e = L.explain(model, x, R.LRP0())
    expected = x * numerical_gradient(model, x, e.target)
    assert_allclose(e.relevance, expected, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(expected).max()))


@given(seed=seeds, x=cnn_inputs)
def test_gamma_zero_is_lrp0(seed, x):
    model = random_cnn(np.random.default_rng(seed), pool="avg")
    a, b = L.explain(model, x, R.Gamma(0.0)), L.explain(model, x, R.LRP0())
    for ra, rb in zip(a.layers, b.layers):
        assert_allclose(ra, rb, rtol=1e-12, atol=1e-12 * np.abs(rb).max())


@given(seed=seeds, x=cnn_inputs)
def test_epsilon_zero_is_lrp0(seed, x):
    model = random_cnn(np.random.default_rng(seed))
    a, b = L.explain(model, x, R.Epsilon(0.0)), L.explain(model, x, R.LRP0())
    assert_allclose(a.relevance, b.relevance, rtol=0, atol=0)


@given(seed=seeds, x=cnn_inputs)
def test_alpha1_beta0_is_zplus(seed, x):
    model = random_cnn(np.random.default_rng(seed))
    a, b = L.explain(model, x, R.AlphaBeta(1, 0)), L.explain(model, x, R.ZPlus())
    for ra, rb in zip(a.layers, b.layers):
        assert_allclose(ra, rb, rtol=1e-12, atol=1e-12 * np.abs(rb).max())


@given(seed=seeds, n_in=st.integers(1, 9), n_out=st.integers(1, 5),
       x=arrays(np.float64, (2, 9), elements=values))
def test_flat_is_uniform_on_dense(seed, n_in, n_out, x):
    rng = np.random.default_rng(seed)
    layer = L.Dense(rng.normal(size=(n_out, n_in)), rng.normal(size=n_out))
    upper = rng.normal(size=(2, n_out))
    step = R.Flat().relevance(layer, x[:, :n_in], upper)
    expected = np.repeat(upper.sum(axis=1, keepdims=True) / n_in, n_in, axis=1)
    assert_allclose(step.relevance, expected, rtol=1e-12, atol=1e-14)
    assert_allclose(step.absorbed, 0.0, atol=0)


@pytest.mark.parametrize("rule", [R.LRP0(), R.Epsilon(0.1), R.Gamma(0.25), R.AlphaBeta(2, 1), R.Flat()],
                         ids=lambda r: type(r).__name__)
@given(seed=seeds, x=cnn_inputs)
def test_batch_explains_like_single_samples(rule, seed, x):
    model = random_cnn(np.random.default_rng(seed))
    batch = L.explain(model, x, rule)
    for n in range(x.shape[0]):
        single = L.explain(model, x[n : n + 1], rule, target=batch.target[n : n + 1])
        assert_allclose(batch.relevance[n : n + 1], single.relevance, rtol=1e-12,
                        atol=1e-13 * max(1.0, np.abs(single.relevance).max()))
