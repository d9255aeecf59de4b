"""The fast paths of issue 13 give exactly what the plain computations give, and keep their checks.

Each test computes a result both ways, the fast path and the plain expression
it replaces (written out here), and compares them with ``assert_array_equal``:
the fast paths only change where results are stored or how often a value is
computed, never the arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lrp_ref as L
from lrp_ref import ledger, recipe, rules
from lrp_ref.errors import NonFiniteError, RuleParameterError


def plain_propagate(terms, bias, R, eps, form="sign"):
    """The recipe as round one wrote it: sum(), no in-place step, the stabiliser through float64."""
    z = sum(layer.linear(a) for layer, a in terms) + bias
    zs = z if eps == 0 else z + np.where(z >= 0, eps, -eps).astype(z.dtype)
    zero = zs == 0
    s = np.divide(R, zs, out=np.zeros_like(zs), where=~zero)
    R_in = sum(a * layer.vjp(s, terms[0][1].shape[1:]) for layer, a in terms)
    absorbed = (s * (bias + (zs - z))).reshape(len(R), -1).sum(axis=1) + np.where(zero, R, 0).reshape(len(R), -1).sum(
        axis=1)
    return R_in, absorbed


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_propagate_in_place_is_the_plain_recipe(dtype, eps):
    rng = np.random.default_rng(3)
    conv = L.Conv2d(rng.normal(size=(5, 3, 3, 3)), rng.normal(size=5), padding=1, dtype=dtype)
    a = rng.uniform(0, 1, (4, 3, 7, 7)).astype(dtype)
    b = a - 0.5
    R = rng.normal(size=(4, 5, 7, 7)).astype(dtype)
    w = conv.weight
    terms = [(conv.with_weight(np.maximum(w, 0)), a), (conv.with_weight(np.minimum(w, 0)), b)]
    fast = recipe.propagate(terms, conv.bias_term(), R, eps)
    R_in, absorbed = plain_propagate(terms, conv.bias_term(), R, eps)
    assert fast.relevance.dtype == np.dtype(dtype)
    assert_array_equal(fast.relevance, R_in)
    assert_array_equal(fast.absorbed, absorbed)


def test_stabilize_in_the_runs_dtype():
    z = np.array([[-2.0, -0.0, 0.0, 3.0]], np.float32)
    out = recipe.stabilize(z, 0.1)
    assert out.dtype == np.float32
    assert_array_equal(out, z + np.where(z >= 0, 0.1, -0.1).astype(np.float32))
    assert_array_equal(recipe.stabilize(z, 0.1, "add"), z + np.float32(0.1))
    assert_array_equal(recipe.stabilize(z, 0.1, "zeros"), np.where(z == 0, np.float32(0.1), z))


@pytest.mark.parametrize("positive", [True, False])
def test_sign_terms_fast_path_for_non_negative_inputs(positive):
    rng = np.random.default_rng(4)
    dense = L.Dense(rng.normal(size=(3, 6)))
    a = np.maximum(rng.normal(size=(2, 6)), 0)
    (layer, inp), = recipe.sign_terms(dense, a, positive, "contributions")
    assert inp is a
    assert_array_equal(layer.weight, np.maximum(dense.weight, 0) if positive else np.minimum(dense.weight, 0))
    mixed = recipe.sign_terms(dense, a - 0.2, positive, "contributions")
    assert len(mixed) == 2  # signed inputs: both sign pairs, as before


@pytest.mark.parametrize("groups, stride, dilation, padding", [(1, 1, 1, 1), (2, 2, 1, (0, 1, 1, 0)), (3, 1, 2, 2)])
def test_flat_adjoint_as_a_channel_sum_is_the_full_adjoint(groups, stride, dilation, padding):
    rng = np.random.default_rng(5)
    conv = L.Conv2d(np.ones((6, 6 // groups, 3, 3)), stride=stride, dilation=dilation, padding=padding, groups=groups)
    shape = (6, 9, 8)
    s = rng.normal(size=(3, *conv.output_shape(shape)))
    assert_array_equal(rules._ChannelSum(conv).vjp(s, shape), conv.vjp(s, shape))


def test_flat_rule_is_the_plain_recipe_with_ones():
    rng = np.random.default_rng(6)
    conv = L.Conv2d(rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4), padding=1, stride=2)
    a = rng.normal(size=(3, 2, 9, 9))
    R = rng.normal(size=(3, *conv.output_shape(a.shape[1:])))
    fast = rules.Flat(stabilizer=1e-6).relevance(conv, a, R)
    flat = conv.with_weight(np.ones_like(conv.weight))
    R_in, absorbed = plain_propagate([(flat, np.ones_like(a))], np.zeros((4, 1, 1)), R, 1e-6)
    assert_array_equal(fast.relevance, R_in)
    assert_array_equal(fast.absorbed, absorbed)


def test_rules_weights_without_copies_still_refuse_overflow():
    dense = L.Dense(np.full((2, 3), 2e38, np.float32), dtype=np.float32)
    a = np.full((1, 3), 1e-3, np.float32)
    # w + gamma w+ = 4e38 overflows float32 (NumPy's warning silenced: the check after it is tested)
    with np.errstate(over="ignore"), pytest.raises(NonFiniteError, match="modified by a rule"):
        rules.Gamma(gamma=1.0, variant="weights").relevance(dense, a, np.ones((1, 2), np.float32))
    derived = dense._derived(np.maximum(dense.weight, 0))
    assert not derived.weight.flags.writeable and derived.bias is None
    with pytest.raises(ValueError):  # frozen: nobody changes it afterwards
        derived.weight[0, 0] = 1.0
    held = np.ones((2, 3), np.float32)  # an array the caller still holds goes through with_weight's copy
    assert dense._derived(held[:, :]).weight is not held


def test_zbox_scalar_bounds_check_is_the_elementwise_check():
    rng = np.random.default_rng(8)
    dense = L.Dense(rng.normal(size=(2, 4)))
    rule = rules.ZBox(low=0.0, high=1.0)
    with pytest.raises(RuleParameterError, match="1 input value"):
        rule.relevance(dense, np.array([[0.0, 0.5, 1.0, 1.0 + 1e-12]]), np.ones((1, 2)))
    rule.relevance(dense, np.array([[0.0, 0.5, 1.0, 1.0]]), np.ones((1, 2)))  # the bounds themselves are inside


def test_boundary_sums_are_those_of_each_array():
    rng = np.random.default_rng(9)
    R_out, R_mid = rng.normal(size=(3, 4, 5, 5)), rng.normal(size=(3, 4, 5, 5))
    sums = ledger.BoundarySums()
    first = ledger.LayerBalance.from_arrays(1, "a", "r", R_out, R_mid, np.zeros(3), sums)
    second = ledger.LayerBalance.from_arrays(0, "b", "r", R_mid.reshape(3, -1), R_out, np.zeros(3), sums)
    for line, (top, bottom) in ((first, (R_out, R_mid)), (second, (R_mid, R_out))):
        plain = ledger.LayerBalance.from_arrays(line.index, "x", "r", top, bottom, np.zeros(3))
        assert_array_equal(line.r_out, top.reshape(3, -1).sum(axis=1))
        assert_array_equal(line.r_in, bottom.reshape(3, -1).sum(axis=1))
        assert_array_equal(line.scale, plain.scale)


def test_non_finite_relevance_is_still_refused():
    dense = L.Dense(np.array([[1.0, -1.0]]), np.array([0.0]))
    x = np.array([[1.0, 1.0]])  # z = 0 with LRP-0 and no stabiliser is absorbed; a subnormal z overflows
    L.explain(L.Sequential([dense]), x, rules.LRP0(), output_relevance=np.array([[1.0]]))
    tiny = L.Dense(np.array([[1e-300, 0.0]]), None)
    with pytest.raises(NonFiniteError, match="NaN or inf"):
        L.explain(L.Sequential([tiny]), np.array([[1e-10, 1.0]]), rules.LRP0(), output_relevance=np.array([[1e10]]))
