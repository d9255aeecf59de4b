"""Composites: which rule each layer gets, printed and resolved."""

from __future__ import annotations

import numpy as np
import pytest

import lrp_ref as L
from lrp_ref import composites as C
from lrp_ref import rules as R


def mnist_like() -> L.Sequential:
    rng = np.random.default_rng(0)
    return L.Sequential([
        L.Conv2d(rng.normal(size=(4, 1, 3, 3)), np.zeros(4)), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(rng.normal(size=(4, 4, 3, 3)), np.zeros(4)), L.ReLU(), L.AvgPool2d(2),
        L.Flatten(), L.Dense(rng.normal(size=(5, 16))), L.ReLU(), L.Dense(rng.normal(size=(3, 5))),
    ])


def names(rules):
    return [type(r).__name__ for r in rules]


NONLINEAR = {1: "Pass", 2: "WinnerTakesAll", 4: "Pass", 6: "Pass", 8: "Pass"}


def expect(**linear):
    idx = {"conv1": 0, "conv2": 3, "avg": 5, "dense1": 7, "dense2": 9}
    out = dict(NONLINEAR)
    out.update({idx[k]: v for k, v in linear.items()})
    return [out[i] for i in range(10)]


@pytest.mark.parametrize("composite, expected", [
    (C.epsilon_plus(), expect(conv1="ZPlus", conv2="ZPlus", avg="Epsilon", dense1="Epsilon", dense2="Epsilon")),
    (C.epsilon_plus_flat(), expect(conv1="Flat", conv2="ZPlus", avg="Epsilon", dense1="Epsilon", dense2="Epsilon")),
    (C.epsilon_alpha2_beta1(),
     expect(conv1="AlphaBeta", conv2="AlphaBeta", avg="Epsilon", dense1="Epsilon", dense2="Epsilon")),
    (C.epsilon_alpha2_beta1_flat(),
     expect(conv1="Flat", conv2="AlphaBeta", avg="Epsilon", dense1="Epsilon", dense2="Epsilon")),
    (C.epsilon_gamma_box(0.0, 1.0),
     expect(conv1="ZBox", conv2="Gamma", avg="Epsilon", dense1="Epsilon", dense2="Epsilon")),
    (C.depth_based(0.0, 1.0), expect(conv1="ZBox", conv2="Gamma", avg="Gamma", dense1="Epsilon", dense2="LRP0")),
    (C.depth_based(), expect(conv1="WSquare", conv2="Gamma", avg="Gamma", dense1="Epsilon", dense2="LRP0")),
    (C.depth_based(0.0, 1.0, n_upper=2, n_lower=0),
     expect(conv1="ZBox", conv2="Epsilon", avg="Epsilon", dense1="LRP0", dense2="LRP0")),
], ids=["epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat",
        "epsilon_gamma_box", "depth_based_zb", "depth_based_wsquare", "depth_based_custom_split"])
def test_layer_assignment(composite, expected):
    assert names(composite.rules_for(mnist_like())) == expected


def test_first_layer_is_first_dense_when_no_conv():
    model = L.Sequential([L.Flatten(), L.Dense(np.ones((3, 4))), L.ReLU(), L.Dense(np.ones((2, 3)))])
    assert names(C.epsilon_plus_flat().rules_for(model)) == ["Pass", "Flat", "Pass", "Epsilon"]


def test_epsilon_gamma_box_puts_the_box_on_the_first_convolution_only():
    """As zennit's EpsilonGammaBox: its first-layer map matches convolutions only."""
    mlp = L.Sequential([L.Flatten(), L.Dense(np.ones((3, 4))), L.ReLU(), L.Dense(np.ones((2, 3)))])
    assert names(C.epsilon_gamma_box(0.0, 1.0).rules_for(mlp)) == ["Pass", "Epsilon", "Pass", "Epsilon"]
    dense_first = L.Sequential([L.Dense(np.ones((16, 4))), L.ReLU(), L.layers.Flatten(),
                                L.Dense(np.ones((2, 16)))])
    assert names(C.epsilon_gamma_box(0.0, 1.0).rules_for(dense_first))[0] == "Epsilon"


def test_preset_parameters_reach_the_rules():
    rules = C.epsilon_gamma_box(-1.0, 2.0, epsilon=0.5, gamma=0.75, stabilizer=1e-3).rules_for(mnist_like())
    box = rules[0]
    assert isinstance(box, R.ZBox)
    assert (float(box.low), float(box.high), box.stabilizer) == (-1.0, 2.0, 1e-3)
    assert rules[3] == R.Gamma(0.75, 1e-3)
    assert rules[9] == R.Epsilon(0.5)


def test_describe_prints_every_layer():
    model = mnist_like()
    text = C.epsilon_gamma_box(0.0, 1.0).describe(model)
    lines = text.splitlines()
    assert lines[0].startswith("LayerTypeComposite(name='epsilon_gamma_box'")
    assert len(lines) == 1 + len(model)
    assert "Conv2d(1 -> 4, 3x3, bias)" in lines[1] and "ZBox(low=0.0, high=1.0, stabilizer=1e-06)" in lines[1]
    assert "Gamma(gamma=0.25, stabilizer=1e-06)" in lines[4]


def test_depth_based_split_that_does_not_fit():
    with pytest.raises(L.RuleAssignmentError, match="do not fit in the 4 linear layers above the input"):
        C.depth_based(0.0, 1.0, n_upper=3, n_lower=2).rules_for(mnist_like())
    with pytest.raises(L.RuleAssignmentError, match="both low and high"):
        C.depth_based(0.0)


def test_single_rule_and_list_resolve_like_a_composite():
    model = mnist_like()
    single = C.resolve_rules(R.Epsilon(0.1), model)
    assert names(single) == expect(conv1="Epsilon", conv2="Epsilon", avg="Epsilon", dense1="Epsilon",
                                   dense2="Epsilon")
    listed = C.resolve_rules([R.Flat(), None, None, R.ZPlus(), None, R.LRP0(), None, R.Epsilon(), None,
                              R.LRP0()], model)
    assert names(listed) == expect(conv1="Flat", conv2="ZPlus", avg="LRP0", dense1="Epsilon", dense2="LRP0")
