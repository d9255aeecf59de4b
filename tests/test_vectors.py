"""The published hand-computed cases of ../shared/guide/VECTORS.md (Captum's LRP tests, re-derived by hand)."""

import numpy as np
from numpy.testing import assert_allclose

import lrp_ref as L
from lrp_ref import rules as R


def two_dense(first_w00: float = 2.0) -> L.Sequential:
    w1 = np.full((3, 3), 2.0)
    w1[0, 0] = first_w00
    return L.Sequential([L.Dense(w1), L.ReLU(), L.Dense(np.full((1, 3), 3.0))])


def test_case1_epsilon_two_dense_layers():
    e = L.explain(two_dense(), np.array([[1.0, 2.0, 3.0]]), R.Epsilon(1e-9))
    assert_allclose(e.output, [[108.0]], rtol=0, atol=0)
    assert_allclose(e.relevance, [[18.0, 36.0, 54.0]], rtol=1e-9)
    assert_allclose(e.relevance.sum(), 108.0, rtol=1e-9)


def test_case1_batch():
    x = np.array([[1.0, 2.0, 3.0], [3.0, 6.0, 9.0]])
    e = L.explain(two_dense(), x, R.Epsilon(1e-9))
    assert_allclose(e.relevance, [[18, 36, 54], [54, 108, 162]], rtol=1e-9)


def test_case2_gamma_per_layer():
    e = L.explain(two_dense(-2.0), np.array([[1.0, 2.0, 3.0]]), [R.Gamma(1.0), None, R.Gamma(0.25)])
    assert_allclose(e.relevance, [[28 / 3, 104 / 3, 52]], rtol=1e-12)


def test_case2_alpha1_beta0():
    x = np.array([[1.0, 2.0, 3.0]])
    for rule in (R.AlphaBeta(1, 0), R.ZPlus()):
        e = L.explain(two_dense(-2.0), x, rule)
        assert_allclose(e.relevance, [[12.0, 33.6, 50.4]], rtol=1e-12)


def test_case3_conv_epsilon():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    model = L.Sequential([
        L.Conv2d(np.ones((2, 1, 3, 3)), np.array([-50.0, -75.0])),
        L.ReLU(),
        L.Flatten(),
        L.Dense(np.tile([1.0, 1, 1, 1, 1, -1, -1, -1], (4, 1))),
    ])
    e = L.explain(model, x, R.Epsilon(1e-9))
    assert_allclose(e.output, [[54.0] * 4], rtol=0, atol=0)
    expected = [[0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11], [0, 0, 0, 0]]
    assert_allclose(e.relevance[0, 0], expected, rtol=0, atol=1e-7)
    assert_allclose(e.relevance.sum(), 54.0, rtol=1e-9)


def test_case4_maxpool_winner_takes_all():
    model = L.Sequential([L.MaxPool2d(2), L.Flatten()])
    x = np.array([[[[1.0, 2.0], [5.0, 6.0]]]])
    e = L.explain(model, x, R.Pass())
    assert_allclose(e.relevance[0, 0], [[0, 0], [0, 6.0]], rtol=0, atol=0)


def test_case5_alpha_beta_with_bias():
    model = L.Sequential([L.Dense(np.array([[1.0, -1.0]]), np.array([-1.0]))])
    x = np.array([[1.0, 1.0]])
    e10 = L.explain(model, x, R.AlphaBeta(1, 0))
    assert_allclose(e10.output, [[-1.0]], rtol=0, atol=0)
    assert_allclose(e10.relevance, [[-1.0, 0.0]], rtol=1e-12)
    e21 = L.explain(model, x, R.AlphaBeta(2, 1))
    assert_allclose(e21.relevance, [[-2.0, 0.5]], rtol=1e-12)
    # the ledger: b- = -1 takes half of the negative part, beta * 0.5 = 0.5 is absorbed
    assert_allclose(e21.ledger.absorbed, [0.5], rtol=1e-12)
    e21.ledger.check_balance()
