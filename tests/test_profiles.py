"""Convention profiles: each choice does what the conventions table says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nets import random_cnn
from numpy.testing import assert_allclose

import lrp_ref as L
from lrp_ref import profiles
from lrp_ref import rules as R

ROOT = Path(__file__).resolve().parent.parent


def one_dense(w: list[float], b: float) -> L.Sequential:
    return L.Sequential([L.Dense(np.array([w]), np.array([b]))])


def test_worked_disagreement_alpha_beta_bias():
    """CONVENTIONS.md: W = (1, -1), b = -1, a = (1, 1), R = z = -1."""
    model, x = one_dense([1.0, -1.0], -1.0), np.array([[1.0, 1.0]])
    assert_allclose(L.explain(model, x, R.AlphaBeta(1, 0)).relevance, [[-1.0, 0.0]], rtol=1e-12)
    assert_allclose(L.explain(model, x, R.AlphaBeta(2, 1)).relevance, [[-2.0, 0.5]], rtol=1e-12)
    # iNNvestigate: the full bias in the positive denominator: 1 - 1 = 0, exact zero replaced by 1e-7
    inn = L.explain(model, x, R.AlphaBeta(1, 0), profile="innvestigate")
    assert_allclose(inn.relevance, [[-1e7, 0.0]], rtol=1e-9)
    # Captum: weights clamped, full bias, sign-aligned 1e-9
    cap = L.explain(model, x, R.ZPlus(), profile="captum")
    assert_allclose(cap.relevance, [[-1e9, 0.0]], rtol=1e-9)
    for e in (inn, cap):  # the books still balance: the stabiliser absorbed the rest
        e.ledger.check_balance()


def test_explicit_parameters_win_over_the_profile():
    model, x = one_dense([1.0, -1.0], -1.0), np.array([[1.0, 1.0]])
    e = L.explain(model, x, R.AlphaBeta(1, 0, bias="split"), profile="innvestigate")
    assert_allclose(e.relevance, [[-1.0, 0.0]], rtol=1e-12)
    assert e.rules[0].bias == "split" and e.rules[0].form == "zeros" and e.rules[0].stabilizer == 1e-7


@pytest.mark.parametrize("name, eps", [("lrp_ref", 1e-6), ("zennit", 1e-6), ("captum", 1e-9), ("innvestigate", 1e-7)])
def test_default_epsilon_per_profile(name, eps):
    model, x = one_dense([1.0, 1.0], 0.0), np.array([[1.0, 2.0]])
    e = L.explain(model, x, R.Epsilon(), profile=name, output_relevance=np.array([[3.0]]))
    assert e.rules[0].epsilon == eps
    assert e.rules[0].stabilizer == 0.0
    assert_allclose(e.relevance, [[3 / (3 + eps), 6 / (3 + eps)]], rtol=1e-14)


def test_start_relevance_per_profile():
    model, x = one_dense([1.0, 1.0], 0.0), np.array([[1.0, 2.0]])
    assert_allclose(L.explain(model, x, R.LRP0()).layers[-1], [[3.0]], rtol=0)
    assert_allclose(L.explain(model, x, R.LRP0(), profile="zennit").layers[-1], [[1.0]], rtol=0)


def test_zennit_generalized_gamma_differs_only_where_z_is_negative():
    """For non-negative inputs and z > 0 the generalised gamma is the plain one; for z < 0 it mirrors."""
    layer = L.Dense(np.array([[2.0, -1.0], [-2.0, 1.0]]), np.array([0.5, -0.5]))
    a = np.array([[1.0, 1.0]])  # z = (1.5, -1.5)
    upper = np.array([[1.0, 1.0]])
    plain = R.Gamma(0.5).relevance(layer, a, upper).relevance
    general = R.Gamma(0.5, variant="generalized").relevance(layer, a, upper).relevance
    # output 0 (z > 0): both use w + g w+ = (3, -1), b + g b+ = 0.75: shares 3/2.75, -1/2.75
    # output 1 (z < 0): plain uses (-2, 1.5), b = -0.5 -> den -1.0; generalised uses w + g w- = (-3, 1),
    # b + g b- = -0.75 -> den -2.75
    assert_allclose(plain, [[3 / 2.75 + (-2) / -1.0, -1 / 2.75 + 1.5 / -1.0]], rtol=1e-14)
    assert_allclose(general, [[3 / 2.75 + (-3) / -2.75, -1 / 2.75 + 1 / -2.75]], rtol=1e-14)


def test_zennit_wsquare_puts_the_squared_bias_in_the_denominator():
    model = one_dense([1.0, 2.0], 1.0)
    e = L.explain(model, np.array([[0.3, 0.4]]), R.WSquare(), profile="zennit", output_relevance=np.array([[6.0]]))
    den = 1 + 4 + 1 + 1e-6
    assert_allclose(e.relevance, [[6 / den, 24 / den]], rtol=1e-14)
    assert_allclose(e.ledger.absorbed, [6 * (1 + 1e-6) / den], rtol=1e-14)


def test_captum_maxpool_epsilon_and_tutorial_average_pooling():
    model = L.Sequential([L.MaxPool2d(2), L.Flatten()])
    x = np.array([[[[1.0, 2.0], [5.0, 6.0]]]])
    cap = L.explain(model, x, R.Pass(), profile="captum")
    assert_allclose(cap.relevance[0, 0], [[0, 0], [0, 6 * 6 / (6 + 1e-9)]], rtol=1e-15)
    tut = L.explain(model, x, R.Pass(), profile="tutorial")
    assert_allclose(tut.relevance[0, 0], np.array([[1, 2], [5, 6]]) * 6 / (14 + 4e-9), rtol=1e-12)
    assert type(tut.rules[0]).__name__ == "AverageInstead"


def test_tutorial_epsilon_is_relative_to_rms():
    model, x = one_dense([1.0, 1.0], 0.0), np.array([[1.0, 2.0], [3.0, 1.0]])  # z = 3, 4: RMS = sqrt(12.5)
    e = L.explain(model, x, R.Epsilon(), profile="tutorial")
    eps = 0.25 * np.sqrt(12.5) + 1e-9
    assert_allclose(e.relevance, [[3 / (3 + eps), 6 / (3 + eps)], [12 / (4 + eps), 4 / (4 + eps)]], rtol=1e-14)


@pytest.mark.parametrize("name", list(profiles.PROFILES))
def test_every_profile_balances_on_a_cnn(name):
    rng = np.random.default_rng(3)
    model = random_cnn(rng, pool="max")
    x = rng.uniform(0, 1, size=(2, 2, 8, 8))
    for rules in (L.composites.epsilon_gamma_box(0.0, 1.0), L.composites.epsilon_alpha2_beta1_flat(),
                  R.Gamma(), R.WSquare()):
        e = L.explain(model, x, rules, profile=name)
        e.ledger.check_balance()
        e.ledger.check_conservation()


def test_unknown_profile():
    with pytest.raises(L.RuleParameterError, match="unknown profile 'keras'; known: lrp_ref, zennit"):
        L.explain(one_dense([1.0], 0.0), np.ones((1, 1)), R.LRP0(), profile="keras")


def test_docs_carry_the_conventions_table():
    text = (ROOT / "docs" / "profiles.md").read_text(encoding="utf-8")
    assert profiles.table() in text
