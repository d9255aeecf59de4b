"""Evidence for the layers of issue 9: batch norm, adaptive and global average pooling, padded average pooling.

* forward passes against the naive loops of tests/reference.py (batch norm as
  PyTorch documents it, adaptive bins found with exact fractions) and by hand;
* the dot-product test ``<linear(a), s> == <a, vjp(s)>``, ``vjp`` against the
  probed dense matrix and against central differences;
* what the rules see (:meth:`~lrp_ref.layers.LinearLayer.for_input`), and
  rule properties on these layers: flat spreads each bin uniformly, gamma and
  z+ equal LRP-0 on the positive pool weights, the ledger balances, LRP-0
  equals gradient x input on networks holding them;
* bad parameters, float32, immutability.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from nets import dot_test
from numpy.testing import assert_allclose, assert_array_equal
from test_bad_input import bad_arrays, bad_numbers, bad_sizes

import lrp_ref as L
from lrp_ref import rules as R
from lrp_ref.errors import LayerParameterError, LrpRefError, NonFiniteError, ShapeError
from lrp_ref.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm,
    BatchNorm1d,
    BatchNorm2d,
    BinSum2d,
    GlobalAvgPool2d,
    LinearLayer,
)

try:  # tests/ as a package or as a plain directory on sys.path
    from . import reference as ref
except ImportError:
    import reference as ref  # type: ignore[no-redef]


def _rng(*names: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, names)).encode()))


def batchnorm(cls: type[BatchNorm], c: int, rng: np.random.Generator, eps: float = 1e-5) -> BatchNorm:
    """Random statistics: gamma of both signs, variances from 0 (eps alone) to 4."""
    var = rng.uniform(0.0, 4.0, size=c)
    var[0] = 0.0
    return cls(rng.normal(size=c), rng.normal(size=c), rng.normal(size=c), var, eps=eps)


# ----------------------------------------------------------------------------- configurations

# (input H, W) -> output sizes: dividing, overlapping, up-sampling, mixed, 1x1, identity
ADAPTIVE = {
    "6x6-to-3x3": ((6, 6), (3, 3)),
    "7x5-to-3x2-overlap": ((7, 5), (3, 2)),
    "2x2-to-7x7-up": ((2, 2), (7, 7)),
    "1x3-to-4x4-up": ((1, 3), (4, 4)),
    "5x3-to-2x5-mixed": ((5, 3), (2, 5)),
    "4x5-to-1x1": ((4, 5), (1, 1)),
    "3x4-identity": ((3, 4), (3, 4)),
    "13x11-to-7x7": ((13, 11), (7, 7)),
}

PADDED_AVG = {  # (kernel, stride, padding, count_include_pad, image (H, W))
    "3-s1-p1-include": (3, 1, 1, True, (5, 6)),
    "3-s1-p1-exclude": (3, 1, 1, False, (5, 6)),
    "3-s2-p1-exclude": (3, 2, 1, False, (6, 7)),
    "2-s2-tf-same-exclude": (2, 2, (0, 1, 0, 1), False, (5, 5)),
    "2x3-asym-include": ((2, 3), (1, 2), (1, 0, 1, 1), True, (4, 7)),
    "3x2-asym-exclude": ((3, 2), 1, (1, 0, 0, 1), False, (4, 5)),
}


def linear_cases() -> dict[str, tuple[LinearLayer, tuple[int, ...]]]:
    """id -> (layer, input shape) for the adjoint tests."""
    cases: dict[str, tuple[LinearLayer, tuple[int, ...]]] = {
        "bn2d": (batchnorm(BatchNorm2d, 3, _rng("bn2d")), (3, 4, 5)),
        "bn1d": (batchnorm(BatchNorm1d, 7, _rng("bn1d")), (7,)),
        "global": (GlobalAvgPool2d(), (3, 4, 5)),
    }
    for name, (hw, out) in ADAPTIVE.items():
        cases[f"adaptive-{name}"] = (AdaptiveAvgPool2d(out), (2, *hw))
        cases[f"bins-{name}"] = (AdaptiveAvgPool2d(out).for_input((2, *hw)), (2, *hw))
    for name, (k, s, p, include, hw) in PADDED_AVG.items():
        cases[f"avgpool-{name}"] = (AvgPool2d(k, s, padding=p, count_include_pad=include), (2, *hw))
    return cases


LINEAR = linear_cases()


# ----------------------------------------------------------------------------- forward against loops and by hand


@pytest.mark.parametrize("cls", [BatchNorm1d, BatchNorm2d])
@pytest.mark.parametrize("eps", [1e-5, 0.0, 0.3])
def test_batchnorm_forward_is_pytorch_formula(cls: type[BatchNorm], eps: float) -> None:
    rng = _rng("bn-forward", cls.__name__, eps)
    layer = cls(rng.normal(size=4), rng.normal(size=4), rng.normal(size=4), rng.uniform(0.1, 3.0, size=4), eps=eps)
    shape = (4,) if cls is BatchNorm1d else (4, 3, 5)
    a = rng.normal(size=(3, *shape)) * 3
    expected = ref.naive_batchnorm(a, layer.gamma, layer.beta, layer.running_mean, layer.running_var, eps)
    out = layer.forward(a)
    assert out.shape == expected.shape
    assert_allclose(out, expected, rtol=1e-13, atol=1e-13 * np.abs(expected).max())


def test_batchnorm_weight_and_bias_by_hand() -> None:
    """gamma 2, beta 1, mean 3, var 3, eps 1: scale 2 / sqrt(4) = 1, shift 1 - 3 = -2; z = a - 2."""
    layer = BatchNorm2d([2.0, -4.0], [1.0, 0.5], [3.0, 0.0], [3.0, 15.0], eps=1.0)
    assert_array_equal(layer.weight, [1.0, -1.0])
    assert_array_equal(layer.bias, [-2.0, 0.5])
    a = np.arange(8.0).reshape(1, 2, 2, 2)
    assert_array_equal(layer.forward(a), [[[[-2.0, -1.0], [0.0, 1.0]], [[-3.5, -4.5], [-5.5, -6.5]]]])
    assert_array_equal(layer.bias_term(), np.array([-2.0, 0.5]).reshape(2, 1, 1))
    assert BatchNorm1d([1.0], [0.0], [0.0], [1.0]).bias_term().shape == (1,)


@pytest.mark.parametrize("name", list(ADAPTIVE))
def test_adaptive_forward_matches_loops(name: str) -> None:
    (h, w), out = ADAPTIVE[name]
    layer = AdaptiveAvgPool2d(out)
    a = _rng("adaptive-forward", name).normal(size=(2, 3, h, w))
    expected = ref.naive_adaptive_avgpool2d(a, out)
    assert layer.output_shape((3, h, w)) == (3, *out)
    assert_allclose(layer.forward(a), expected, rtol=1e-13, atol=1e-14 * np.abs(a).max())


def test_adaptive_bins_by_hand() -> None:
    """2 -> 7 (PyTorch): bins [0,1) [0,1) [0,1) [0,2) [1,2) [1,2) [1,2): the middle output averages both."""
    assert [list(ref.adaptive_bin(i, 2, 7)) for i in range(7)] == [[0], [0], [0], [0, 1], [1], [1], [1]]
    a = np.array([2.0, 6.0]).reshape(1, 1, 2, 1)
    out = AdaptiveAvgPool2d((7, 1)).forward(a)
    assert_array_equal(out.reshape(-1), [2.0, 2.0, 2.0, 4.0, 6.0, 6.0, 6.0])
    # 5 -> 3: [0, 2) [1, 4) [3, 5), overlapping
    assert [list(ref.adaptive_bin(i, 5, 3)) for i in range(3)] == [[0, 1], [1, 2, 3], [3, 4]]
    a = np.array([0.0, 3.0, 6.0, 9.0, 12.0]).reshape(1, 1, 1, 5)
    assert_allclose(AdaptiveAvgPool2d((1, 3)).forward(a).reshape(-1), [1.5, 6.0, 10.5], rtol=1e-15)


def test_global_avgpool_is_the_mean() -> None:
    a = _rng("global").normal(size=(3, 4, 5, 6))
    out = GlobalAvgPool2d().forward(a)
    assert out.shape == (3, 4, 1, 1)
    assert_allclose(out, a.mean(axis=(2, 3), keepdims=True), rtol=1e-13, atol=1e-15)
    assert_array_equal(out, AdaptiveAvgPool2d(1).forward(a))


@pytest.mark.parametrize("name", list(PADDED_AVG))
def test_padded_avgpool_forward_matches_loops(name: str) -> None:
    k, s, p, include, (h, w) = PADDED_AVG[name]
    layer = AvgPool2d(k, s, padding=p, count_include_pad=include)
    a = _rng("avg-padded", name).normal(size=(2, 2, h, w))
    expected = ref.naive_avgpool2d(a, k, s, None, p, count_include_pad=include)
    out = layer.forward(a)
    assert out.shape == expected.shape == (2, *layer.output_shape((2, h, w)))
    assert_allclose(out, expected, rtol=1e-13, atol=1e-14 * np.abs(a).max())


def test_padded_avgpool_by_hand() -> None:
    """3x3 windows, stride 1, padding 1 on ones: corners 4/9, edges 6/9 with the padding counted; 1 without."""
    ones = np.ones((1, 1, 3, 3))
    counted = AvgPool2d(3, 1, padding=1).forward(ones)[0, 0]
    assert_allclose(counted, np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9, rtol=1e-15)
    assert_allclose(AvgPool2d(3, 1, padding=1, count_include_pad=False).forward(ones), 1.0, rtol=1e-15)


def test_unpadded_avgpool_ignores_count_include_pad() -> None:
    a = _rng("unpadded").normal(size=(2, 2, 6, 6))
    assert_array_equal(AvgPool2d(2, count_include_pad=False).forward(a), AvgPool2d(2).forward(a))
    layer = AvgPool2d(2, count_include_pad=False)
    assert layer.for_input((2, 6, 6)) is layer


# ----------------------------------------------------------------------------- adjoints


@pytest.mark.parametrize("name", list(LINEAR))
def test_dot_product_adjoint(name: str) -> None:
    layer, shape = LINEAR[name]
    dot_test(layer, shape, _rng("dot", name))


@pytest.mark.parametrize("name", list(LINEAR))
def test_dot_product_adjoint_of_modified_copy(name: str) -> None:
    """What the rules build: ``for_input(shape).with_weight(rho(weight))``, any weights."""
    layer, shape = LINEAR[name]
    rng = _rng("dot-modified", name)
    explicit = layer.for_input(shape)
    modified = explicit.with_weight(rng.normal(size=explicit.weight.shape))
    assert type(modified) is type(explicit)
    assert not np.any(modified.bias_term())  # the rules add their own bias
    dot_test(modified, shape, rng)


@pytest.mark.parametrize("name", list(LINEAR))
def test_linear_and_vjp_equal_the_probed_matrix(name: str) -> None:
    layer, shape = LINEAR[name]
    rng = _rng("matrix", name)
    W, b = ref.dense_matrix(layer, shape)
    out_shape = layer.output_shape(shape)
    a, s = rng.normal(size=(2, *shape)), rng.normal(size=(2, *out_shape))
    lin = (a.reshape(2, -1) @ W).reshape(2, *out_shape)
    assert_allclose(layer.linear(a), lin, rtol=1e-12, atol=1e-13 * np.abs(lin).max())
    assert_allclose(layer.forward(a), lin + b.reshape(out_shape), rtol=1e-12, atol=1e-13 * np.abs(lin).max())
    back = (s.reshape(2, -1) @ W.T).reshape(2, *shape)
    assert_allclose(layer.vjp(s, shape), back, rtol=1e-12, atol=1e-13 * np.abs(back).max())


@pytest.mark.parametrize("name", ["bn2d", "adaptive-7x5-to-3x2-overlap", "adaptive-2x2-to-7x7-up",
                                  "avgpool-3-s2-p1-exclude", "avgpool-2x3-asym-include"])
def test_vjp_matches_central_differences(name: str) -> None:
    layer, shape = LINEAR[name]
    rng = _rng("central", name)
    a, s = rng.normal(size=(2, *shape)), rng.normal(size=(2, *layer.output_shape(shape)))
    h = 1e-3
    numerical = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        e = np.zeros_like(a)
        e[idx] = h
        numerical[idx] = np.vdot(layer.linear(a + e) - layer.linear(a - e), s) / (2 * h)
    analytic = layer.vjp(s, shape)
    assert_allclose(analytic, numerical, rtol=1e-8, atol=1e-9 * np.abs(analytic).max())


# ----------------------------------------------------------------------------- what the rules see


@pytest.mark.parametrize("name", list(ADAPTIVE))
def test_adaptive_for_input_is_one_weight_per_bin(name: str) -> None:
    (h, w), out = ADAPTIVE[name]
    layer = AdaptiveAvgPool2d(out)
    explicit = layer.for_input((2, h, w))
    assert isinstance(explicit, BinSum2d) and explicit.weight.shape == out
    sizes = np.outer([len(ref.adaptive_bin(i, h, out[0])) for i in range(out[0])],
                     [len(ref.adaptive_bin(i, w, out[1])) for i in range(out[1])])
    assert_array_equal(explicit.weight, 1.0 / sizes)
    a = _rng("for-input", name).normal(size=(2, 2, h, w))
    assert_array_equal(explicit.forward(a), layer.forward(a))
    # every connected entry of the probed matrix is its bin's weight: rho on the weight is rho on every pair
    W, _ = ref.dense_matrix(layer, (2, h, w))
    C = ref.connectivity_matrix(layer, (2, h, w))
    bin_of_output = np.broadcast_to(explicit.weight, (2, *out)).reshape(-1)
    assert_array_equal(W, C * bin_of_output[None, :])


def test_layers_with_input_size_weights_refuse_with_weight() -> None:
    for layer in (AdaptiveAvgPool2d(2), GlobalAvgPool2d(), AvgPool2d(3, 1, padding=1, count_include_pad=False)):
        with pytest.raises(LayerParameterError, match="for_input"):
            layer.with_weight(np.ones((3, 3)))
    with pytest.raises(LayerParameterError, match="for_input"):
        _ = AdaptiveAvgPool2d(2).weight
    assert AdaptiveAvgPool2d(2).n_parameters() == 0


def test_for_input_of_fixed_weight_layers_is_the_layer() -> None:
    bn = batchnorm(BatchNorm2d, 2, _rng("fi"))
    for layer, shape in [(bn, (2, 3, 3)), (AvgPool2d(2, padding=1), (1, 4, 4)),
                         (AvgPool2d(2, count_include_pad=False), (1, 4, 4))]:
        assert layer.for_input(shape) is layer


def test_batchnorm_with_weight_is_exactly_the_scale() -> None:
    layer = batchnorm(BatchNorm2d, 4, _rng("bn-ww"))
    w = _rng("bn-ww-2").normal(size=4) * 1e3
    modified = layer.with_weight(w)
    assert type(modified) is BatchNorm2d
    assert_array_equal(modified.weight, w)
    assert_array_equal(modified.bias_term(), 0.0)
    a = _rng("bn-ww-3").normal(size=(2, 4, 2, 3))
    assert_array_equal(modified.forward(a), a * w[:, None, None])


def _relevance_cases() -> list[str]:
    """The layers as a model holds them (the BinSum2d forms are what the rules make of them)."""
    return [name for name in LINEAR if not name.startswith("bins-")]


@pytest.mark.parametrize("name", _relevance_cases())
def test_flat_gives_each_output_uniformly_to_its_inputs(name: str) -> None:
    """Flat: R_j = sum_k [j in k] / |k| R_k, with |k| the in-image inputs of output k."""
    layer, shape = LINEAR[name]
    rng = _rng("flat", name)
    a = rng.normal(size=(2, *shape))
    Rk = rng.normal(size=(2, *layer.output_shape(shape)))
    C = ref.connectivity_matrix(layer, shape)  # (J, K) 0/1
    expected = (Rk.reshape(2, -1) / C.sum(axis=0)) @ C.T
    got = R.Flat().relevance(layer, a, Rk)
    assert_allclose(got.relevance.reshape(2, -1), expected, rtol=1e-12, atol=1e-14 * np.abs(Rk).max())
    assert_allclose(got.absorbed, 0.0, atol=1e-13 * np.abs(Rk).sum())
    if isinstance(layer, BatchNorm):
        assert_allclose(got.relevance, Rk, rtol=1e-15)  # each output's relevance to its one input


@pytest.mark.parametrize("name", [n for n in _relevance_cases() if not n.startswith("bn")])
def test_rules_on_positive_pool_weights_reduce_to_lrp0(name: str) -> None:
    """Pool weights are positive and there is no bias: gamma == LRP-0; on inputs > 0 also z+ and alpha-beta.

    AlphaBeta(2, 1) then passes 2 x LRP-0 and absorbs -R (its negative part has nothing to split).
    """
    layer, shape = LINEAR[name]
    rng = _rng("reduce", name)
    a = rng.normal(size=(2, *shape))
    Rk = rng.normal(size=(2, *layer.output_shape(shape)))
    lrp0 = R.LRP0().relevance(layer, a, Rk)
    tol = {"rtol": 1e-10, "atol": 1e-12 * np.abs(Rk).max()}
    assert_allclose(R.Gamma(0.7).relevance(layer, a, Rk).relevance, lrp0.relevance, **tol)
    positive = np.abs(a) + 0.1
    lrp0_pos = R.LRP0().relevance(layer, positive, Rk)
    for rule in (R.ZPlus(), R.AlphaBeta(1.0, 0.0), R.Gamma(0.25, variant="generalized")):
        assert_allclose(rule.relevance(layer, positive, Rk).relevance, lrp0_pos.relevance, **tol)
    alpha_beta = R.AlphaBeta(2.0, 1.0).relevance(layer, positive, Rk)
    assert_allclose(alpha_beta.relevance, 2.0 * lrp0_pos.relevance, **tol)
    assert_allclose(alpha_beta.absorbed, -Rk.reshape(2, -1).sum(axis=1), rtol=1e-10, atol=1e-12 * np.abs(Rk).sum())


@pytest.mark.parametrize("name", _relevance_cases())
@pytest.mark.parametrize("rule", [R.LRP0(), R.Epsilon(0.1), R.Gamma(0.25), R.AlphaBeta(2.0, 1.0), R.ZPlus(),
                                  R.WSquare(1e-3), R.Flat(), R.ZBox(-5.0, 5.0)], ids=repr)
def test_rules_balance_on_new_layers(name: str, rule: R.Rule) -> None:
    """sum R_out == sum R_in + absorbed, sample by sample; and fast == slow reference."""
    layer, shape = LINEAR[name]
    rng = _rng("balance", name, repr(rule))
    a = rng.uniform(-2.0, 2.0, size=(2, *shape))
    Rk = rng.normal(size=(2, *layer.output_shape(shape)))
    got = rule.relevance(layer, a, Rk)
    total_in = got.relevance.reshape(2, -1).sum(axis=1)
    scale = np.abs(Rk).sum() + np.abs(got.relevance).sum() + np.abs(got.absorbed).sum()
    assert_allclose(total_in + got.absorbed, Rk.reshape(2, -1).sum(axis=1), rtol=1e-12, atol=1e-13 * scale)
    R_ref, absorbed_ref = ref.ref_rule(rule, layer, a, Rk)
    assert_allclose(got.relevance, R_ref, rtol=1e-10, atol=1e-12 * max(np.abs(Rk).max(), np.abs(R_ref).max()))
    assert_allclose(got.absorbed, absorbed_ref, rtol=1e-10, atol=1e-12 * scale)


def test_pass_takes_batchnorm() -> None:
    layer = batchnorm(BatchNorm2d, 2, _rng("pass"))
    a = _rng("pass-a").normal(size=(2, 2, 3, 3))
    Rk = _rng("pass-R").normal(size=a.shape)
    got = R.Pass().relevance(layer, a, Rk)
    assert_array_equal(got.relevance, Rk)
    assert_array_equal(got.absorbed, 0.0)


# ----------------------------------------------------------------------------- whole networks


def bn_cnn(rng: np.random.Generator) -> L.Sequential:
    """conv-BN-relu-adaptive(up)-conv(asym pad)-BN-relu-avg(exclude pad)-global-flatten-dense-BN1d-relu-dense."""
    def stats(cls: type[BatchNorm], c: int) -> BatchNorm:
        return cls(rng.uniform(0.5, 2.0, c) * rng.choice([-1, 1], c), rng.normal(scale=0.3, size=c),
                   rng.normal(scale=0.3, size=c), rng.uniform(0.2, 2.0, c), eps=1e-5)

    return L.Sequential([
        L.Conv2d(rng.normal(size=(3, 2, 3, 3)), rng.normal(scale=0.3, size=3), padding=1),
        stats(BatchNorm2d, 3),
        L.ReLU(),
        AdaptiveAvgPool2d((5, 7)),
        L.Conv2d(rng.normal(size=(4, 3, 2, 2)) * 0.5, None, stride=2, padding=L.same_padding((5, 7), 2, 2)),
        stats(BatchNorm2d, 4),
        L.ReLU(),
        AvgPool2d(3, 1, padding=1, count_include_pad=False),
        GlobalAvgPool2d(),
        L.Flatten(),
        L.Dense(rng.normal(size=(5, 4)), rng.normal(scale=0.3, size=5)),
        stats(BatchNorm1d, 5),
        L.ReLU(),
        L.Dense(rng.normal(size=(3, 5)), rng.normal(scale=0.3, size=3)),
    ])


def rules_for(model: L.Sequential, rule: R.Rule) -> list[R.Rule | None]:
    """``rule`` on every linear layer, the defaults (Pass) elsewhere."""
    return [rule if isinstance(layer, LinearLayer) else None for layer in model]


def numerical_gradient(model: L.Sequential, x: np.ndarray, target: np.ndarray, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x)
    rows = np.arange(x.shape[0])
    flat = grad.reshape(x.shape[0], -1)
    for i in range(flat.shape[1]):
        step = np.zeros(flat.shape)
        step[:, i] = h
        step = step.reshape(x.shape)
        flat[:, i] = (model.forward(x + step)[rows, target] - model.forward(x - step)[rows, target]) / (2 * h)
    return grad


@settings(max_examples=10)
@given(seed=st.integers(0, 2**32 - 1))
def test_lrp0_is_gradient_times_input_with_batchnorm_and_adaptive_pools(seed: int) -> None:
    rng = np.random.default_rng(seed)
    model = bn_cnn(rng)
    x = rng.normal(size=(2, 2, 4, 5))
    activations = model.forward_all(x)
    margin = min(float(np.abs(a).min()) for layer, a in zip(model, activations[:-1]) if isinstance(layer, L.ReLU))
    assume(margin > 1e-4)  # away from ReLU kinks: central differences are exact up to rounding
    e = L.explain(model, x, rules_for(model, R.LRP0()))
    expected = x * numerical_gradient(model, x, e.target)
    assert_allclose(e.relevance, expected, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(expected).max()))
    e.ledger.check_balance()
    e.ledger.check_conservation()


@pytest.mark.parametrize("rule", [R.LRP0(), R.Epsilon(0.1), R.Gamma(0.25), R.AlphaBeta(2.0, 1.0), R.Flat(),
                                  R.WSquare()], ids=repr)
def test_ledger_balances_on_a_network_with_the_new_layers(rule: R.Rule) -> None:
    model = bn_cnn(_rng("ledger-net"))
    x = _rng("ledger-x").normal(size=(3, 2, 4, 5))
    e = L.explain(model, x, rules_for(model, rule))
    e.ledger.check_balance()
    e.ledger.check_conservation()


def test_pass_on_uncanonized_batchnorm_balances() -> None:
    """zennit's choice for a batch norm left in place: Pass (the shift takes nothing, the scale is ignored)."""
    model = bn_cnn(_rng("pass-net"))
    rules = [R.Pass() if isinstance(layer, BatchNorm) else rule
             for layer, rule in zip(model, rules_for(model, R.Epsilon(0.01)))]
    e = L.explain(model, _rng("pass-x").normal(size=(2, 2, 4, 5)), rules)
    e.ledger.check_balance()
    for i, layer in enumerate(model):
        if isinstance(layer, BatchNorm):
            assert_array_equal(e.layers[i], e.layers[i + 1])


# ----------------------------------------------------------------------------- bad parameters

GOOD_BN = {"gamma": np.ones(3), "beta": np.zeros(3), "running_mean": np.zeros(3), "running_var": np.ones(3)}

BN_CASES = []
for _key in GOOD_BN:
    for _label, _value in bad_arrays((3,)).items():
        if _label in ("huge-int",):
            continue
        BN_CASES.append(pytest.param(_key, _value, id=f"{_key}-{_label}"))
for _label, _value in bad_numbers().items():
    BN_CASES.append(pytest.param("eps", _value, id=f"eps-{_label}"))
BN_CASES += [
    pytest.param("running_var", np.array([1.0, -0.5, 1.0]), id="negative-variance"),
    pytest.param("running_var", np.array([1.0, -1e-300, 1.0]), id="tiny-negative-variance"),
    pytest.param("gamma", np.ones(4), id="gamma-shape"),
    pytest.param("running_mean", np.ones((3, 1)), id="mean-rank"),
    pytest.param("dtype", np.int32, id="int-dtype"),
]


@pytest.mark.parametrize("cls", [BatchNorm1d, BatchNorm2d])
@pytest.mark.parametrize(("param", "value"), BN_CASES)
def test_batchnorm_refuses_bad_parameters(cls: type[BatchNorm], param: str, value: Any) -> None:
    with pytest.raises(LrpRefError) as info:
        cls(**{**GOOD_BN, param: value})
    message = str(info.value)
    word = "dtype" if param == "dtype" else param.split("_")[-1]
    assert word in message and (param == "dtype" or cls.__name__ in message), message


def test_batchnorm_refuses_zero_denominator_and_overflow() -> None:
    with pytest.raises(LayerParameterError, match=r"running_var \+ eps > 0.*\[1\]"):
        BatchNorm2d(np.ones(2), np.zeros(2), np.zeros(2), np.array([1.0, 0.0]), eps=0.0)
    with pytest.raises(NonFiniteError, match="overflows"):
        BatchNorm2d(np.full(1, 1e300), np.zeros(1), np.zeros(1), np.full(1, 1e-300), eps=0.0)
    with pytest.raises(LayerParameterError, match="base class"):
        BatchNorm(**GOOD_BN)


@pytest.mark.parametrize(("layer", "shape", "fragments"), [
    (BatchNorm2d(**GOOD_BN), (2, 4, 5, 5), ["BatchNorm2d(3", "(N, 3, H, W)", "(N, 4, 5, 5)"]),
    (BatchNorm2d(**GOOD_BN), (2, 3), ["BatchNorm2d(3", "(N, 3, H, W)", "(N, 3)"]),
    (BatchNorm1d(**GOOD_BN), (2, 3, 4, 4), ["BatchNorm1d(3", "(N, 3)", "(N, 3, 4, 4)"]),
    (BatchNorm1d(**GOOD_BN), (2, 4), ["BatchNorm1d(3", "(N, 3)", "(N, 4)"]),
    (AdaptiveAvgPool2d(2), (2, 5, 5), ["AdaptiveAvgPool2d(2)", "(N, C, H, W)", "(N, 5, 5)"]),
    (GlobalAvgPool2d(), (2, 3), ["GlobalAvgPool2d()", "(N, C, H, W)"]),
    (AdaptiveAvgPool2d(2).for_input((1, 4, 4)), (2, 1, 4, 5), ["BinSum2d", "(N, C, 4, 4)", "(N, 1, 4, 5)"]),
])
def test_new_layers_reject_wrong_input_shapes(layer: Any, shape: tuple[int, ...], fragments: list[str]) -> None:
    for call in (layer.forward, layer.check_input):
        with pytest.raises(ShapeError) as info:
            call(np.zeros(shape))
        for fragment in fragments:
            assert fragment in str(info.value), (fragment, str(info.value))


POOL_CASES = [
    *[pytest.param(lambda v: AdaptiveAvgPool2d(v), v, "output_size", id=f"adaptive-{k}")
      for k, v in {**bad_sizes(1), "none": None}.items()],
    pytest.param(lambda v: AvgPool2d(3, padding=1, count_include_pad=v), 1, "count_include_pad", id="include-int"),
    pytest.param(lambda v: AvgPool2d(3, padding=1, count_include_pad=v), "no", "count_include_pad", id="include-str"),
    pytest.param(lambda v: AvgPool2d(3, padding=1, count_include_pad=False, window_weight=v), np.ones((3, 3)),
                 "count_include_pad=False", id="exclude-with-modified-weights"),
    pytest.param(lambda v: AvgPool2d(3, padding=v), 2, "half the kernel", id="avg-padding-over-half"),
    pytest.param(lambda v: AvgPool2d(2, padding=v), (0, 2, 0, 1), "half the kernel", id="avg-side-over-half"),
    pytest.param(lambda v: BinSum2d((4, 4), v, ((0, 4),), np.ones((1, 1))), ((0, 5),), "row_bins", id="bin-past-end"),
    pytest.param(lambda v: BinSum2d((4, 4), v, ((0, 4),), np.ones((1, 1))), ((2, 2),), "start < stop",
                 id="bin-empty"),
    pytest.param(lambda v: BinSum2d((4, 4), v, ((0, 4),), np.ones((1, 1))), (), "row_bins", id="no-bins"),
    pytest.param(lambda v: BinSum2d((4, 4), ((0, 4),), ((0, 4),), v), np.ones((2, 1)), "weight", id="bin-weight"),
]


@pytest.mark.parametrize(("make", "value", "word"), POOL_CASES)
def test_pools_refuse_bad_parameters(make: Any, value: Any, word: str) -> None:
    with pytest.raises(LrpRefError) as info:
        make(value)
    assert word in str(info.value), str(info.value)


# ----------------------------------------------------------------------------- dtype, immutability, describe


@pytest.mark.parametrize("name", ["bn2d", "bn1d", "global", "adaptive-7x5-to-3x2-overlap",
                                  "bins-2x2-to-7x7-up", "avgpool-3-s2-p1-exclude"])
def test_astype_float32(name: str) -> None:
    layer64, shape = LINEAR[name]
    layer = layer64.astype(np.float32)
    assert type(layer) is type(layer64) and layer.dtype == np.float32
    a = _rng("f32", name).normal(size=(2, *shape)).astype(np.float32)
    s = _rng("f32s", name).normal(size=(2, *layer.output_shape(shape))).astype(np.float32)
    out = layer.forward(a)
    assert out.dtype == layer.linear(a).dtype == layer.vjp(s, shape).dtype == np.float32
    assert layer.bias_term().dtype == np.float32
    assert layer.for_input(shape).dtype == np.float32
    expected = layer64.forward(a.astype(np.float64))
    assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_batchnorm_is_frozen_and_copies() -> None:
    gamma = np.ones(2)
    layer = BatchNorm2d(gamma, np.zeros(2), np.zeros(2), np.ones(2))
    gamma[:] = 5.0
    assert_array_equal(layer.gamma, 1.0)
    for arr in (layer.gamma, layer.beta, layer.running_mean, layer.running_var):
        assert not arr.flags.writeable
    with pytest.raises(dataclasses.FrozenInstanceError):
        layer.eps = 0.1  # type: ignore[misc]
    assert layer.n_parameters() == 4  # gamma and beta, as PyTorch counts parameters


def test_describe() -> None:
    assert BatchNorm2d(**GOOD_BN).describe() == "BatchNorm2d(3, eps=1e-05)"
    assert BatchNorm1d(**GOOD_BN, eps=0.1).describe() == "BatchNorm1d(3, eps=0.1)"
    assert AdaptiveAvgPool2d((7, 7)).describe() == "AdaptiveAvgPool2d(7)"
    assert AdaptiveAvgPool2d((2, 3)).describe() == "AdaptiveAvgPool2d((2, 3))"
    assert repr(GlobalAvgPool2d()) == "GlobalAvgPool2d()"
    assert AvgPool2d(3, 2, padding=1).describe() == "AvgPool2d(3x3, stride=2, padding=1)"
    assert (AvgPool2d(2, padding=(0, 1, 0, 1), count_include_pad=False).describe()
            == "AvgPool2d(2x2, padding=(0, 1, 0, 1), count_include_pad=False)")
    assert AdaptiveAvgPool2d(3).for_input((1, 5, 4)).describe() == "BinSum2d(5x4 -> 3x3 bins)"
