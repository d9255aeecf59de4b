"""explain(): its result, its start relevance, dtype handling, the ledger, and every refusal."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import numpy as np
import pytest
from nets import random_cnn, random_mlp
from numpy.testing import assert_allclose

import lrp_ref as L
from lrp_ref import rules as R
from lrp_ref.ledger import LayerBalance, Ledger


@pytest.fixture
def cnn() -> L.Sequential:
    return random_cnn(np.random.default_rng(7))


@pytest.fixture
def x_cnn() -> np.ndarray:
    return np.random.default_rng(8).normal(size=(3, 2, 8, 8))


# ----------------------------------------------------------------------------- the result


def test_explanation_fields(cnn, x_cnn):
    e = L.explain(cnn, x_cnn, R.Epsilon(0.01))
    assert e.relevance.shape == x_cnn.shape
    assert len(e.layers) == len(cnn) + 1
    assert len(e.activations) == len(cnn) + 1
    assert e.layers[0] is e.relevance
    assert_allclose(e.output, cnn.forward(x_cnn), rtol=0, atol=0)
    assert_allclose(e.target, np.argmax(e.output, axis=1), rtol=0, atol=0)
    for shape_r, shape_a in zip((r.shape for r in e.layers), (a.shape for a in e.activations)):
        assert shape_r == shape_a
    assert [type(r).__name__ for r in e.rules] == [
        "Epsilon", "Pass", "WinnerTakesAll", "Epsilon", "Pass", "Pass", "Epsilon", "Pass", "Epsilon"]


def test_default_start_is_target_output_value(cnn, x_cnn):
    e = L.explain(cnn, x_cnn, R.LRP0(), target=1)
    start = e.layers[-1]
    expected = np.zeros_like(e.output)
    expected[:, 1] = e.output[:, 1]
    assert_allclose(start, expected, rtol=0, atol=0)
    assert_allclose(e.score, e.output[:, 1], rtol=0, atol=0)
    assert_allclose(e.target, [1, 1, 1], rtol=0, atol=0)


def test_target_per_sample(cnn, x_cnn):
    e = L.explain(cnn, x_cnn, R.LRP0(), target=np.array([0, 2, 1]))
    assert_allclose(e.score, e.output[[0, 1, 2], [0, 2, 1]], rtol=0, atol=0)


def test_output_relevance_overrides_start(cnn, x_cnn):
    ones = np.ones((3, 3))
    e = L.explain(cnn, x_cnn, R.LRP0(), output_relevance=ones)
    assert e.target is None
    assert_allclose(e.layers[-1], ones, rtol=0, atol=0)
    # LRP is linear in the start relevance: explaining all outputs = sum of the one-hot explanations
    parts = [L.explain(cnn, x_cnn, R.LRP0(), output_relevance=np.eye(3)[[k] * 3]).relevance for k in range(3)]
    assert_allclose(e.relevance, sum(parts), rtol=1e-10, atol=1e-12 * np.abs(e.relevance).max())


def test_relevance_is_linear_in_start_scale(cnn, x_cnn):
    """one-hot versus logit * one-hot differs only by the per-sample logit (CONVENTIONS.md)."""
    e = L.explain(cnn, x_cnn, R.AlphaBeta(2, 1))
    onehot = np.eye(3)[e.target]
    unit = L.explain(cnn, x_cnn, R.AlphaBeta(2, 1), output_relevance=onehot)
    assert_allclose(unit.relevance * e.score[:, None, None, None], e.relevance, rtol=1e-10,
                    atol=1e-12 * np.abs(e.relevance).max())


def test_maxpool_ties_split_or_first():
    model = L.Sequential([L.MaxPool2d(2), L.Flatten()])
    x = np.full((1, 1, 2, 2), 3.0)
    split = L.explain(model, x, [R.WinnerTakesAll("split"), None], target=0)
    assert_allclose(split.relevance[0, 0], np.full((2, 2), 0.75), rtol=0, atol=0)
    first = L.explain(model, x, [R.WinnerTakesAll("first"), None], target=0)
    assert_allclose(first.relevance[0, 0], [[3.0, 0.0], [0.0, 0.0]], rtol=0, atol=0)


def test_explanation_is_immutable(cnn, x_cnn):
    e = L.explain(cnn, x_cnn, R.LRP0())
    with pytest.raises(FrozenInstanceError):
        e.relevance = None  # type: ignore[misc]


# ----------------------------------------------------------------------------- dtype


def test_float64_by_default_and_integer_input_cast():
    model = random_mlp(np.random.default_rng(1))
    assert model.dtype == np.float64
    e = L.explain(model, np.arange(12).reshape(2, 6), R.Epsilon())
    assert e.relevance.dtype == np.float64


def test_float32_model_computes_in_float32(cnn, x_cnn):
    m32 = cnn.astype(np.float32)
    assert m32.dtype == np.float32
    assert all(layer.weight.dtype == np.float32 for layer in m32 if isinstance(layer, L.layers.LinearLayer))
    e32 = L.explain(m32, x_cnn, R.Epsilon(0.01))
    e64 = L.explain(cnn, x_cnn, R.Epsilon(0.01))
    assert e32.relevance.dtype == np.float32
    assert all(r.dtype == np.float32 for r in e32.layers)
    assert_allclose(e32.relevance, e64.relevance, rtol=1e-3, atol=1e-4 * np.abs(e64.relevance).max())
    e32.ledger.check_balance()  # float32 tolerance (1e-5)
    assert cnn.dtype == np.float64  # astype made a copy


def test_mixed_dtype_model_refused():
    with pytest.raises(L.LayerParameterError, match="share one dtype"):
        L.Sequential([L.Dense(np.ones((2, 2))), L.Dense(np.ones((2, 2)), dtype=np.float32)])


# ----------------------------------------------------------------------------- the ledger


class BrokenDense(L.Dense):
    """A planted bug: the adjoint is off by 1% (as a wrong transpose or stride would be)."""

    def vjp(self, s, input_shape):
        return 1.01 * super().vjp(s, input_shape)


def test_ledger_catches_a_wrong_adjoint():
    rng = np.random.default_rng(3)
    good = random_mlp(rng)
    broken = L.Sequential([BrokenDense(good[0].weight, good[0].bias), *good.layers[1:]])
    x = rng.normal(size=(2, 6))
    L.explain(good, x, R.Epsilon(0.01)).ledger.check_balance()
    e = L.explain(broken, x, R.Epsilon(0.01))
    with pytest.raises(L.ConservationError, match=r"layer 0 \(Dense\(6 -> 5, bias\), rule Epsilon"):
        e.ledger.check_balance()


def test_ledger_table_lists_every_layer(cnn, x_cnn):
    e = L.explain(cnn, x_cnn, L.composites.epsilon_plus())
    table = e.ledger.table(sample=1)
    for layer, rule in zip(cnn, e.rules):
        assert layer.describe()[:30] in table
        assert repr(rule)[:40] in table
    assert f"{e.score[1]:.10g}" in table
    assert str(e.ledger) == e.ledger.table(0)


def test_ledger_absorbed_is_bias_share():
    """LRP-0 on one dense layer: the bias takes R * b / z exactly."""
    layer = L.Dense(np.array([[1.0, 2.0]]), np.array([0.5]))
    e = L.explain(L.Sequential([layer]), np.array([[1.0, 1.0]]), R.LRP0())
    assert_allclose(e.ledger.absorbed, [3.5 * 0.5 / 3.5], rtol=1e-15)
    assert_allclose(e.relevance, [[1.0, 2.0]], rtol=1e-15)


def test_ledger_balance_tolerance_is_relative():
    entry = LayerBalance.from_arrays(0, "Dense", "LRP0()", np.array([[1.0]]), np.array([[1.0 - 1e-9]]),
                                     np.array([0.0]))
    ledger = Ledger((entry,), start=np.array([1.0]), input_relevance=np.array([1.0 - 1e-9]),
                    dtype=np.dtype(np.float64))
    ledger.check_balance(rtol=1e-8)
    with pytest.raises(L.ConservationError, match="does not balance"):
        ledger.check_balance()
    with pytest.raises(L.ConservationError):
        ledger.check_conservation()


def test_zero_denominator_is_absorbed_not_nan():
    """LRP-0 where z_k == 0 exactly: R_k is absorbed and recorded, no NaN."""
    model = L.Sequential([L.Dense(np.array([[1.0, -1.0], [1.0, 1.0]]))])
    e = L.explain(model, np.array([[2.0, 2.0]]), R.LRP0(), output_relevance=np.array([[5.0, 4.0]]))
    assert np.all(np.isfinite(e.relevance))
    assert_allclose(e.relevance, [[2.0, 2.0]], rtol=1e-15)
    assert_allclose(e.ledger.absorbed, [5.0], rtol=1e-15)
    e.ledger.check_balance()


# ----------------------------------------------------------------------------- refusals


def test_nan_input_refused(cnn, x_cnn):
    x = x_cnn.copy()
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(L.NonFiniteError, match="input x must be finite; found 1 NaN"):
        L.explain(cnn, x, R.LRP0())


def test_nan_parameter_refused():
    w = np.ones((2, 3))
    w[1, 1] = np.inf
    with pytest.raises(L.NonFiniteError, match="Dense weight"):
        L.Dense(w)


def test_wrong_input_shape_names_layer(cnn):
    expected = r"layer 0 \(Conv2d\).*expects input of shape \(N, 2, H, W\); got \(N, 3, 8, 8\)"
    with pytest.raises(L.ShapeError, match=expected):
        L.explain(cnn, np.zeros((1, 3, 8, 8)), R.LRP0())
    with pytest.raises(L.ShapeError, match=r"layer 6 \(Dense\).*expects input of shape \(N, 20\); got \(N, 45\)"):
        L.explain(cnn, np.zeros((1, 2, 12, 12)), R.LRP0())


def test_unbatched_input_refused():
    with pytest.raises(L.ShapeError, match="sample axis first"):
        L.explain(random_mlp(np.random.default_rng(0)), np.zeros(6), R.LRP0())


@pytest.mark.parametrize("target, message", [
    (3, r"target must lie in \[0, 2\] for a model with 3 outputs"),
    (-1, r"target must lie in \[0, 2\]"),
    (np.array([0, 1]), r"shape \(3,\)"),
    (1.5, "array of ints"),
    (10**30, r"target must lie in \[0, 2\] for a model with 3 outputs; got 1000000000000000000000000000000"),
    ([0, 10**30, 1], r"target must lie in \[0, 2\]"),
])
def test_bad_target_refused(cnn, x_cnn, target, message):
    with pytest.raises(L.TargetError, match=message):
        L.explain(cnn, x_cnn, R.LRP0(), target=target)


def test_target_and_output_relevance_exclusive(cnn, x_cnn):
    with pytest.raises(L.TargetError, match="either target or output_relevance"):
        L.explain(cnn, x_cnn, R.LRP0(), target=0, output_relevance=np.ones((3, 3)))


def test_output_relevance_shape_checked(cnn, x_cnn):
    with pytest.raises(L.ShapeError, match=r"output's shape \(3, 3\); got \(3, 4\)"):
        L.explain(cnn, x_cnn, R.LRP0(), output_relevance=np.ones((3, 4)))


def test_rule_list_of_wrong_length(cnn, x_cnn):
    with pytest.raises(L.RuleAssignmentError, match=r"expected 9 rules, one per layer \(Conv2d, ReLU"):
        L.explain(cnn, x_cnn, [R.LRP0(), R.LRP0()])


def test_rule_on_wrong_layer(cnn, x_cnn):
    rules = [None] * len(cnn)
    rules[0] = R.LRP0()
    rules[3], rules[6], rules[8] = R.LRP0(), R.LRP0(), R.LRP0()
    rules[1] = R.Epsilon()
    with pytest.raises(L.RuleAssignmentError, match=r"Epsilon\(\) cannot handle layer 1 \(ReLU\(\)\)"):
        L.explain(cnn, x_cnn, rules)
    with pytest.raises(L.RuleAssignmentError, match=r"layer 0 .* is linear and needs a rule"):
        L.explain(cnn, x_cnn, [None] * len(cnn))
    with pytest.raises(L.RuleAssignmentError, match=r"Pass\(\) cannot handle layer 0"):
        L.explain(cnn, x_cnn, R.Pass())
    with pytest.raises(L.RuleAssignmentError, match="got str"):
        L.explain(cnn, x_cnn, "epsilon")  # type: ignore[arg-type]


@pytest.mark.parametrize("make, message", [
    (lambda: R.AlphaBeta(2, 2), r"alpha - beta = 1"),
    (lambda: R.AlphaBeta(0.5, -0.5), r"beta must be a finite number >= 0"),
    (lambda: R.Epsilon(-1e-3), r"epsilon must be a finite number >= 0"),
    (lambda: R.Epsilon(float("nan")), r"epsilon must be a finite number"),
    (lambda: R.Gamma(-0.25), r"gamma must be a finite number >= 0"),
    (lambda: R.Gamma("big"), r"gamma must be a real number"),
    (lambda: R.ZPlus(stabilizer=-1), r"stabilizer"),
    (lambda: R.ZBox(1.0, 0.0), r"low <= high"),
    (lambda: R.ZBox(np.zeros(3), np.ones(4)), r"do not broadcast"),
    (lambda: R.ZBox(np.nan, 1.0), r"low must be finite"),
    (lambda: R.WinnerTakesAll("last"), r"ties must be one of 'split', 'first'; got 'last'"),
    (lambda: R.AlphaBeta(bias="half"), r"bias must be one of 'split', 'both', 'none'"),
    (lambda: R.Gamma(variant="fancy"), r"variant must be one of 'plain', 'weights', 'generalized'"),
    (lambda: R.Epsilon(form="mul"), r"form must be one of 'sign', 'add', 'zeros'"),
])
def test_bad_rule_parameters(make, message):
    with pytest.raises(L.RuleParameterError, match=message):
        make()


def test_zbox_refuses_inputs_outside_bounds():
    model = L.Sequential([L.Dense(np.ones((2, 3)))])
    outside = r"layer 0 \(Dense\(3 -> 2\)\) with rule ZBox.*1 input value\(s\) lie outside"
    with pytest.raises(L.RuleParameterError, match=outside):
        L.explain(model, np.array([[0.0, 0.5, 2.0]]), R.ZBox(0.0, 1.0))
    with pytest.raises(L.ShapeError, match="do not broadcast to the layer input"):
        L.explain(model, np.array([[0.0, 0.5, 0.5]]), R.ZBox(np.zeros(2), np.ones(2)))


def test_overflowing_relevance_raises_instead_of_nan():
    """A subnormal denominator with stabilizer 0 overflows: a clear error names layer and rule."""
    model = L.Sequential([L.Dense(np.array([[1.0, 1.0]]))])
    x = np.array([[5e-324, 5e-324]])
    start = np.array([[1.0]])
    with pytest.raises(L.NonFiniteError, match=r"layer 0 \(Dense\(2 -> 1\)\) with rule ZPlus"):
        L.explain(model, x, R.ZPlus(), output_relevance=start)
    # a stabiliser fixes it, and the ledger says where the relevance went
    e = L.explain(model, x, R.ZPlus(stabilizer=1e-9), output_relevance=start)
    assert_allclose(e.ledger.absorbed, [1.0], rtol=1e-12)
    e.ledger.check_balance()
    e.ledger.check_conservation()


def test_model_must_be_sequential(x_cnn):
    with pytest.raises(TypeError, match=r"lrp_ref\.Sequential"):
        L.explain([L.ReLU()], x_cnn, R.LRP0())  # type: ignore[arg-type]


def test_layer_descriptions_are_short_enough_for_the_ledger():
    assert L.MaxPool2d(2).describe() == "MaxPool2d(2x2)"
    assert L.MaxPool2d(3, 2, 1).describe() == "MaxPool2d(3x3, stride=2, padding=1)"
    assert L.AvgPool2d(2, 1).describe() == "AvgPool2d(2x2, stride=1)"
    conv = L.Conv2d(np.ones((4, 2, 3, 3)), np.zeros(4), stride=(2, 1), padding=1, dilation=2, groups=2)
    assert conv.describe() == "Conv2d(4 -> 4, 3x3, stride=(2, 1), padding=1, dilation=2, groups=2, bias)"


def test_parameter_free_layers_accept_a_dtype_like_the_others():
    model = L.Sequential([L.Dense(np.ones((2, 2)), dtype=np.float32), L.ReLU(dtype=np.float32),
                          L.Flatten(dtype="float32")])
    assert model.dtype == np.float32
    with pytest.raises(L.LayerParameterError, match="float32 or float64; got dtype int64"):
        L.ReLU(dtype=np.int64)


def test_ledger_table_of_a_batch_names_the_sample_it_shows():
    import numpy as np
    import pytest

    import lrp_ref
    from lrp_ref import rules
    from lrp_ref.errors import ArgumentError

    rng = np.random.default_rng(3)
    model = lrp_ref.Sequential([lrp_ref.Dense(rng.normal(size=(4, 6)), rng.normal(size=4)), lrp_ref.ReLU(),
                                lrp_ref.Dense(rng.normal(size=(2, 4)), np.zeros(2))])
    e = lrp_ref.explain(model, rng.normal(size=(3, 6)), rules.Epsilon(0.1))
    assert "sample 0 of a batch of 3" in str(e.ledger)
    table = e.ledger.table(2)
    assert "sample 2 of a batch of 3" in table
    assert f"{e.ledger.start[2]:.10g}" in table.splitlines()[-1]
    one = lrp_ref.explain(model, rng.normal(size=(1, 6)), rules.Epsilon(0.1))
    assert "of a batch" not in str(one.ledger)
    for bad in (3, -4, 1.0, True, "0"):
        with pytest.raises(ArgumentError, match="sample must be an int"):
            e.ledger.table(bad)
