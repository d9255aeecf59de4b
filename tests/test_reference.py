"""Evidence layer 1: the fast rules equal the slow references of tests/reference.py.

Every linear rule is compared with its explicit-tensor reference on dense,
convolutional and average-pooling layers (stride, padding, dilation, groups,
rectangular kernels, non-square images, bias on and off), on asymmetric
padding (TensorFlow's 'same'), on average pooling with padding counted or not,
adaptive and global average pooling (overlapping and up-sampling bins) and
batch norm (1d and 2d, a channel with gamma = 0), on mixed-sign and on
non-negative (post-ReLU) inputs, with mixed-sign upper relevance; both the
relevance passed down and the ``absorbed`` share are compared.  Max pooling is
compared with the loop reference of winner-takes-all, with and without ties.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from lrp_ref.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dense,
    GlobalAvgPool2d,
    MaxPool2d,
    same_padding,
)
from lrp_ref.rules import (
    LRP0,
    AlphaBeta,
    AverageInstead,
    Epsilon,
    Flat,
    Gamma,
    Propagation,
    Rule,
    WinnerTakesAll,
    WSquare,
    ZBox,
    ZPlus,
)

try:  # tests/ as a package or as a plain directory on sys.path
    from . import reference as ref
except ImportError:
    import reference as ref  # type: ignore[no-redef]

RTOL = 1e-10
ATOL_FACTOR = 1e-12  # atol = ATOL_FACTOR * (largest magnitude among R and the reference result)


def _seed(*names: str) -> int:
    """A fixed seed per test case, stable across runs and test orderings."""
    return zlib.crc32("/".join(names).encode())


def assert_relevance_matches(fast: Propagation, expected: tuple[np.ndarray, np.ndarray], R: np.ndarray) -> None:
    R_ref, absorbed_ref = expected
    scale = max(float(np.abs(R).max()), float(np.abs(R_ref).max()), float(np.abs(absorbed_ref).max()), 1e-300)
    atol = ATOL_FACTOR * scale
    assert fast.relevance.shape == R_ref.shape
    assert fast.absorbed.shape == absorbed_ref.shape
    assert np.all(np.isfinite(fast.relevance)) and np.all(np.isfinite(fast.absorbed))
    assert_allclose(fast.relevance, R_ref, rtol=RTOL, atol=atol, err_msg="relevance R_in")
    assert_allclose(fast.absorbed, absorbed_ref, rtol=RTOL, atol=atol, err_msg="absorbed")


# ----------------------------------------------------------------------------- layer configurations

LayerFactory = Callable[[np.random.Generator], Any]


def _conv(out: int, cin: int, k: tuple[int, int], bias: bool, groups: int = 1, **kw: Any) -> LayerFactory:
    def make(rng: np.random.Generator) -> Conv2d:
        w = rng.normal(size=(out, cin // groups, *k))
        b = rng.normal(size=out) if bias else None
        return Conv2d(w, b, groups=groups, **kw)

    return make


def _dense(n_in: int, n_out: int, bias: bool) -> LayerFactory:
    def make(rng: np.random.Generator) -> Dense:
        return Dense(rng.normal(size=(n_out, n_in)), rng.normal(size=n_out) if bias else None)

    return make


def _batchnorm(cls: Any, c: int, zero_gamma: bool = False) -> LayerFactory:
    def make(rng: np.random.Generator) -> Any:
        gamma = rng.normal(size=c)
        if zero_gamma:
            gamma[1] = 0.0
        var = rng.uniform(0.2, 3.0, size=c)
        var[0] = 0.0  # eps alone in the denominator
        return cls(gamma, rng.normal(size=c), rng.normal(size=c), var, eps=rng.uniform(1e-3, 0.1))

    return make


# id -> (factory, input shape of one sample)
LAYERS: dict[str, tuple[LayerFactory, tuple[int, ...]]] = {
    "dense-bias": (_dense(7, 5, True), (7,)),
    "dense-nobias": (_dense(7, 5, False), (7,)),
    "dense-wide": (_dense(3, 11, True), (3,)),
    "conv3x3-bias": (_conv(3, 2, (3, 3), True), (2, 5, 5)),
    "conv3x3-nobias": (_conv(3, 2, (3, 3), False), (2, 5, 5)),
    "conv-s2-p1-bias": (_conv(4, 2, (3, 3), True, stride=2, padding=1), (2, 6, 6)),
    "conv-s2-p1-nobias": (_conv(4, 2, (3, 3), False, stride=2, padding=1), (2, 6, 6)),
    "conv-s3-uneven": (_conv(2, 3, (3, 3), True, stride=3, padding=1), (3, 7, 8)),
    "conv-dil2-p2": (_conv(3, 2, (3, 3), True, padding=2, dilation=2), (2, 6, 5)),
    "conv-rect-g2": (_conv(4, 4, (2, 3), True, groups=2, stride=(2, 1), padding=(1, 0)), (4, 5, 7)),
    "conv-depthwise": (_conv(3, 3, (3, 2), False, groups=3, stride=(1, 2), padding=(0, 1), dilation=(2, 1)),
                       (3, 7, 6)),
    "conv1x1-p1-padonly": (_conv(2, 2, (1, 1), False, padding=1), (2, 3, 4)),
    "avgpool-2": (lambda rng: AvgPool2d(2), (2, 4, 6)),
    "avgpool-3-s2": (lambda rng: AvgPool2d(3, stride=2), (2, 7, 7)),
    "avgpool-rect": (lambda rng: AvgPool2d((2, 3), stride=(1, 2)), (1, 5, 8)),
    "avgpool-2-s3-gaps": (lambda rng: AvgPool2d(2, stride=3), (2, 7, 8)),
    # asymmetric padding: TensorFlow's 'same' at stride 2 on even sizes pads one more at the bottom/right
    "conv-tf-same-s2": (_conv(3, 2, (3, 3), True, stride=2, padding=same_padding((6, 8), 3, 2)), (2, 6, 8)),
    "conv-asym-dil-rect": (_conv(2, 2, (2, 3), True, dilation=(2, 1), padding=(0, 2, 1, 2)), (2, 5, 4)),
    "avgpool-pad1-s2": (lambda rng: AvgPool2d(3, stride=2, padding=1), (2, 6, 7)),
    "avgpool-pad1-s2-exclude": (lambda rng: AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 6, 7)),
    "avgpool-tf-same-exclude": (lambda rng: AvgPool2d(2, padding=(0, 1, 0, 1), count_include_pad=False), (2, 5, 5)),
    "avgpool-asym-include": (lambda rng: AvgPool2d((3, 2), stride=1, padding=(1, 0, 0, 1)), (1, 4, 5)),
    # adaptive pooling: overlapping bins, up-sampling, both at once, global
    "adaptive-overlap": (lambda rng: AdaptiveAvgPool2d((3, 2)), (2, 7, 5)),
    "adaptive-up-7x7": (lambda rng: AdaptiveAvgPool2d(7), (2, 2, 3)),
    "adaptive-mixed": (lambda rng: AdaptiveAvgPool2d((2, 5)), (1, 5, 3)),
    "global-avgpool": (lambda rng: GlobalAvgPool2d(), (3, 4, 5)),
    # batch norm: a per-channel affine map
    "batchnorm2d": (_batchnorm(BatchNorm2d, 3), (3, 4, 3)),
    "batchnorm2d-gamma0": (_batchnorm(BatchNorm2d, 3, zero_gamma=True), (3, 2, 3)),
    "batchnorm1d": (_batchnorm(BatchNorm1d, 6), (6,)),
}


@cache
def layer_case(name: str) -> tuple[Any, tuple[int, ...], np.ndarray, np.ndarray, np.ndarray]:
    """(layer, input_shape, W, b, C), the dense matrices built once per configuration."""
    factory, input_shape = LAYERS[name]
    layer = factory(np.random.default_rng(_seed("layer", name)))
    W, b = ref.dense_matrix(layer, input_shape)
    C = ref.connectivity_matrix(layer, input_shape)
    return layer, input_shape, W, b, C


def make_inputs(layer_name: str, kind: str, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A batch ``a`` (mixed sign, or post-ReLU with exact zeros) and a mixed-sign ``R`` of the output's shape."""
    layer, input_shape, _, _, _ = layer_case(layer_name)
    rng = np.random.default_rng(_seed("inputs", layer_name, kind))
    a = rng.normal(size=(n, *input_shape))
    if kind == "relu":
        a = np.maximum(a, 0.0)
    R = rng.normal(size=(n, *layer.output_shape(input_shape)))
    return a, R


# ----------------------------------------------------------------------------- rules

RuleFactory = Callable[[np.ndarray, np.random.Generator], Rule]


def _zbox_scalar(a: np.ndarray, rng: np.random.Generator) -> Rule:
    low = 0.0 if a.min() >= 0 else float(np.floor(a.min())) - 0.5
    return ZBox(low, float(np.ceil(a.max())) + 0.5)


def _zbox_per_element(a: np.ndarray, rng: np.random.Generator) -> Rule:
    """Bounds of one sample's shape; some equal the extreme input exactly (x == l or x == h allowed)."""
    slack_low = rng.uniform(0.0, 1.0, size=a.shape[1:])
    slack_high = rng.uniform(0.0, 1.0, size=a.shape[1:])
    slack_low.reshape(-1)[::3] = 0.0
    slack_high.reshape(-1)[1::3] = 0.0
    return ZBox(a.min(axis=0) - slack_low, a.max(axis=0) + slack_high)


def _zbox_per_sample(a: np.ndarray, rng: np.random.Generator) -> Rule:
    """Bounds of the whole batch's shape, tight on one side: ``low == x`` everywhere."""
    return ZBox(a.copy(), a + rng.uniform(0.0, 2.0, size=a.shape))


RULES: dict[str, RuleFactory] = {
    "lrp0": lambda a, rng: LRP0(),
    "eps-default": lambda a, rng: Epsilon(),
    "eps-0.1": lambda a, rng: Epsilon(0.1),
    "eps-0": lambda a, rng: Epsilon(0.0),
    "gamma-0.25": lambda a, rng: Gamma(),
    "gamma-1-stab": lambda a, rng: Gamma(1.0, stabilizer=1e-3),
    "alphabeta-2-1": lambda a, rng: AlphaBeta(),
    "alphabeta-1-0": lambda a, rng: AlphaBeta(1.0, 0.0),
    "alphabeta-1.5-0.5-stab": lambda a, rng: AlphaBeta(1.5, 0.5, stabilizer=1e-2),
    "zplus": lambda a, rng: ZPlus(),
    "zplus-stab": lambda a, rng: ZPlus(1e-3),
    "zbox-scalar": _zbox_scalar,
    "zbox-per-element": _zbox_per_element,
    "zbox-per-sample": _zbox_per_sample,
    "zbox-stab": lambda a, rng: ZBox(float(a.min()) - 1.0, float(a.max()) + 1.0, stabilizer=0.5),
    "wsquare": lambda a, rng: WSquare(),
    "wsquare-stab": lambda a, rng: WSquare(1e-2),
    "flat": lambda a, rng: Flat(),
    "flat-stab": lambda a, rng: Flat(0.5),
    # convention variants (lrp_ref.profiles): every one against its slow reference
    "lrp0-add-form": lambda a, rng: LRP0(stabilizer=1e-2, form="add"),
    "lrp0-zeros-form": lambda a, rng: LRP0(stabilizer=1e-2, form="zeros"),
    "eps-rms": lambda a, rng: Epsilon(0.25, stabilizer=1e-9, scale="rms", form="add"),
    "gamma-weights": lambda a, rng: Gamma(0.5, stabilizer=1e-6, variant="weights"),
    "gamma-generalized": lambda a, rng: Gamma(0.5, stabilizer=1e-6, variant="generalized"),
    "gamma-generalized-0": lambda a, rng: Gamma(0.0, variant="generalized"),
    "alphabeta-bias-both": lambda a, rng: AlphaBeta(2.0, 1.0, stabilizer=1e-7, bias="both", form="zeros"),
    "alphabeta-bias-none": lambda a, rng: AlphaBeta(2.0, 1.0, bias="none"),
    "alphabeta-split-weights": lambda a, rng: AlphaBeta(2.0, 1.0, stabilizer=1e-9, split="weights", bias="both"),
    "zplus-split-weights": lambda a, rng: ZPlus(1e-9, split="weights", bias="both"),
    "wsquare-bias-square": lambda a, rng: WSquare(1e-6, bias="square"),
    "flat-add-form": lambda a, rng: Flat(1e-3, form="add"),
}


@pytest.mark.parametrize("kind", ["mixed", "relu"])
@pytest.mark.parametrize("layer_name", list(LAYERS))
@pytest.mark.parametrize("rule_name", list(RULES))
def test_rule_matches_reference(rule_name: str, layer_name: str, kind: str) -> None:
    layer, _, W, b, C = layer_case(layer_name)
    a, R = make_inputs(layer_name, kind)
    rule = RULES[rule_name](a, np.random.default_rng(_seed("rule", rule_name, layer_name, kind)))

    fast = rule.relevance(layer, a, R)
    expected = ref.ref_rule(rule, layer, a, R, matrices=(W, b, C))

    assert fast.relevance.dtype == np.float64
    assert_relevance_matches(fast, expected, R)


@pytest.mark.parametrize("kind", ["mixed", "relu"])
@pytest.mark.parametrize("layer_name", list(LAYERS))
@pytest.mark.parametrize("rule_name", list(RULES))
def test_reference_balances(rule_name: str, layer_name: str, kind: str) -> None:
    """Sanity of the reference itself: sum_k R_k == sum_j R_j + absorbed, sample by sample."""
    layer, _, W, b, C = layer_case(layer_name)
    a, R = make_inputs(layer_name, kind)
    rule = RULES[rule_name](a, np.random.default_rng(_seed("rule", rule_name, layer_name, kind)))
    R_in, absorbed = ref.ref_rule(rule, layer, a, R, matrices=(W, b, C))
    total_in = R_in.reshape(len(a), -1).sum(axis=1)
    scale = np.abs(R).sum() + np.abs(R_in).sum() + np.abs(absorbed).sum()
    assert_allclose(total_in + absorbed, R.reshape(len(a), -1).sum(axis=1), rtol=1e-12, atol=1e-13 * scale)


# ----------------------------------------------------------------------------- the reference's own building blocks


def test_dense_matrix_of_dense_is_its_transposed_weight() -> None:
    rng = np.random.default_rng(1)
    layer = Dense(rng.normal(size=(4, 6)), rng.normal(size=4))
    W, b = ref.dense_matrix(layer, (6,))
    assert_array_equal(W, layer.weight.T)
    assert_array_equal(b, layer.bias)


@pytest.mark.parametrize("layer_name", [n for n in LAYERS if not n.startswith("dense")])
def test_dense_matrix_entries_are_single_weights(layer_name: str) -> None:
    """Each (input, output) pair of a conv/pool layer meets at most one kernel weight, so
    applying an element-wise rho to the dense matrix equals the dense matrix of rho(weight)."""
    layer, input_shape, W, _, C = layer_case(layer_name)
    assert set(np.unique(C)) <= {0.0, 1.0}
    weights = np.asarray(layer.for_input(input_shape).weight).reshape(-1)
    connected = W[C == 1]
    # every connected entry is one of the kernel weights, exactly
    assert np.all(np.isin(connected, weights))
    assert_array_equal(W[C == 0], 0.0)


# ----------------------------------------------------------------------------- zero denominators


def _zero_row_dense(bias: bool) -> Dense:
    rng = np.random.default_rng(7)
    w = rng.normal(size=(4, 5))
    w[2] = 0.0
    b = None
    if bias:
        b = rng.normal(size=4)
        b[2] = 0.0
    return Dense(w, b)


@pytest.mark.parametrize("bias", [True, False], ids=["zero-bias-entry", "no-bias"])
@pytest.mark.parametrize("rule", [LRP0(), Epsilon(0.0), Gamma(0.5), AlphaBeta(1.0, 0.0), ZPlus()], ids=repr)
def test_zero_denominator_is_absorbed_not_nan(rule: Rule, bias: bool) -> None:
    """Output 2 of the layer has an all-zero weight row and zero bias: z_2 == 0 exactly."""
    layer = _zero_row_dense(bias)
    rng = np.random.default_rng(8)
    a = rng.normal(size=(3, 5))
    R = rng.normal(size=(3, 4))
    fast = rule.relevance(layer, a, R)
    assert np.all(np.isfinite(fast.relevance)) and np.all(np.isfinite(fast.absorbed))
    W, b = ref.dense_matrix(layer, (5,))
    assert_relevance_matches(fast, ref.ref_rule(rule, layer, a, R, matrices=(W, b, W != 0)), R)

    # R_2 is absorbed entirely: the same input with R_2 = 0 passes down the same relevance
    # and absorbs exactly R_2 less
    R_without = R.copy()
    R_without[:, 2] = 0.0
    without = rule.relevance(layer, a, R_without)
    assert_allclose(fast.relevance, without.relevance, rtol=RTOL, atol=ATOL_FACTOR * np.abs(R).max())
    assert_allclose(fast.absorbed - without.absorbed, R[:, 2], rtol=RTOL, atol=ATOL_FACTOR * np.abs(R).max())


def test_zbox_window_of_zero_terms_is_absorbed() -> None:
    """Found with asymmetric padding: window (4, 1) of this layer sees two pixels, both with a zero zB term.

    The same inputs, bounds and relevance as ``test_rule_matches_reference[zbox-per-element-...-mixed]``
    on this layer.  ZBox writes the terms as ``(x - l) w+ + (x - h) w-`` (each a product of factors
    of known sign), so such a denominator is exactly 0 and its relevance absorbed; summing ``x w``,
    ``-l w+`` and ``-h w-`` as three maps left rounding noise there, amplified into the relevance.
    """
    name = "conv-asym-dil-rect"
    make = _conv(2, 2, (2, 3), True, dilation=(2, 1), padding=(0, 2, 3, 1))
    layer = make(np.random.default_rng(_seed("layer", name)))
    rng = np.random.default_rng(_seed("inputs", name, "mixed"))
    a = rng.normal(size=(3, 2, 5, 4))
    R = rng.normal(size=(3, *layer.output_shape((2, 5, 4))))
    rule = _zbox_per_element(a, np.random.default_rng(_seed("rule", "zbox-per-element", name, "mixed")))
    assert_relevance_matches(rule.relevance(layer, a, R), ref.ref_rule(rule, layer, a, R), R)


def test_lrp0_all_zero_input_absorbs_everything() -> None:
    layer, input_shape, W, b, C = layer_case("conv-s2-p1-nobias")
    a = np.zeros((2, *input_shape))
    R = np.random.default_rng(9).normal(size=(2, *layer.output_shape(input_shape)))
    fast = LRP0().relevance(layer, a, R)
    assert_array_equal(fast.relevance, 0.0)
    assert_allclose(fast.absorbed, R.reshape(2, -1).sum(axis=1), rtol=RTOL, atol=ATOL_FACTOR * np.abs(R).max())
    assert_relevance_matches(fast, ref.ref_rule(LRP0(), layer, a, R, matrices=(W, b, C)), R)


def test_zplus_without_positive_contribution_absorbs() -> None:
    """Non-negative input, output 1 has only non-positive weights and bias: the z+ denominator is 0."""
    rng = np.random.default_rng(10)
    w = rng.normal(size=(3, 6))
    w[1] = -np.abs(w[1])
    b = rng.normal(size=3)
    b[1] = -1.0
    layer = Dense(w, b)
    a = np.abs(rng.normal(size=(2, 6)))
    R = rng.normal(size=(2, 3))
    for rule in (ZPlus(), AlphaBeta(1.0, 0.0), AlphaBeta(2.0, 1.0)):
        fast = rule.relevance(layer, a, R)
        assert_relevance_matches(fast, ref.ref_rule(rule, layer, a, R, matrices=(w.T, b, np.ones_like(w.T))), R)


def test_alphabeta_negative_denominator_zero_absorbs_minus_beta_R() -> None:
    """Non-negative input, all weights and biases >= 0: no negative contribution anywhere.

    The positive part conserves up to its bias share; the negative part has
    zero denominators, so -beta * R_k is absorbed for every k.
    """
    rng = np.random.default_rng(11)
    w = np.abs(rng.normal(size=(3, 5)))
    b = np.abs(rng.normal(size=3))
    layer = Dense(w, b)
    a = np.abs(rng.normal(size=(2, 5)))
    R = rng.normal(size=(2, 3))
    rule = AlphaBeta(2.0, 1.0)
    fast = rule.relevance(layer, a, R)
    z = a @ w.T + b
    expected_absorbed = (2.0 * R * b / z).sum(axis=1) - 1.0 * R.sum(axis=1)
    assert_allclose(fast.absorbed, expected_absorbed, rtol=RTOL, atol=ATOL_FACTOR * np.abs(R).max())
    assert_relevance_matches(fast, ref.ref_rule(rule, layer, a, R, matrices=(w.T, b, np.ones_like(w.T))), R)


@pytest.mark.parametrize("rule", [Epsilon(0.1), Gamma(0.0, stabilizer=0.1), ZBox(-3.0, 3.0, stabilizer=0.1)], ids=repr)
def test_stabiliser_sign_of_zero_is_plus(rule: Rule) -> None:
    """Contributions that cancel exactly (z == 0, no bias): the stabiliser is +eps, by hand.

    a = (1, 1, 2, 2), w = (1, -1, 0.5, -0.5), so a_j w_j = (1, -1, 1, -1) and z = 0.
    For ZBox with l = -3, h = 3 the terms are x w - l w+ - h w- = (4, 2, 2.5, 0.5) instead.
    """
    layer = Dense(np.array([[1.0, -1.0, 0.5, -0.5]]))
    a = np.array([[1.0, 1.0, 2.0, 2.0]])
    R = np.array([[3.0]])
    fast = rule.relevance(layer, a, R)
    if isinstance(rule, ZBox):
        terms = np.array([4.0, 2.0, 2.5, 0.5])
        den = terms.sum() + 0.1
        expected = (terms / den * 3.0)[None], np.array([0.1 / den * 3.0])
    else:
        expected = (np.array([[1.0, -1.0, 1.0, -1.0]]) / 0.1 * 3.0, np.array([3.0]))
    assert_allclose(fast.relevance, expected[0], rtol=RTOL, atol=0.0)
    assert_allclose(fast.absorbed, expected[1], rtol=RTOL, atol=0.0)
    assert_relevance_matches(fast, ref.ref_rule(rule, layer, a, R), R)


@pytest.mark.parametrize("rule", [WSquare(), Flat(), LRP0(), ZPlus()], ids=repr)
def test_padding_only_windows_take_no_share(rule: Rule) -> None:
    """A 1x1 kernel with padding 1: the border outputs see only padding, their relevance is absorbed."""
    layer, _, W, b, C = layer_case("conv1x1-p1-padonly")
    a, R = make_inputs("conv1x1-p1-padonly", "relu")
    fast = rule.relevance(layer, a, R)
    border = np.ones(R.shape[1:], dtype=bool)
    border[:, 1:-1, 1:-1] = False
    assert_relevance_matches(fast, ref.ref_rule(rule, layer, a, R, matrices=(W, b, C)), R)
    # removing the border relevance changes only the absorbed share, by exactly that amount
    R_inner = np.where(border, 0.0, R)
    inner = rule.relevance(layer, a, R_inner)
    atol = ATOL_FACTOR * np.abs(fast.relevance).max()
    assert_allclose(fast.relevance, inner.relevance, rtol=RTOL, atol=atol)
    assert_allclose(fast.absorbed - inner.absorbed, (R - R_inner).reshape(len(R), -1).sum(axis=1),
                    rtol=RTOL, atol=atol)


# ----------------------------------------------------------------------------- max pooling

MAXPOOLS: dict[str, tuple[MaxPool2d, tuple[int, ...]]] = {
    "k2-s2": (MaxPool2d(2), (2, 4, 6)),
    "k2-s2-uneven": (MaxPool2d(2), (1, 5, 7)),
    "k3-s1-p1-overlap": (MaxPool2d(3, stride=1, padding=1), (2, 5, 6)),
    "k3-s2-p1-overlap": (MaxPool2d(3, stride=2, padding=1), (2, 7, 7)),
    "k2x3-s1x2-p1": (MaxPool2d((2, 3), stride=(1, 2), padding=(1, 1)), (1, 5, 7)),
    "k2-s3-gaps": (MaxPool2d(2, stride=3), (2, 7, 8)),
}


def _maxpool_input(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if kind == "generic":
        return rng.normal(size=shape)
    if kind == "ties-integers":
        return rng.integers(-1, 2, size=shape).astype(np.float64)
    if kind == "ties-relu":
        return np.maximum(rng.normal(size=shape) - 0.5, 0.0)
    if kind == "constant":
        return np.full(shape, 0.25)
    if kind == "negative":  # padding (-inf) must never win, even against negative inputs
        return -np.abs(rng.normal(size=shape)) - 1.0
    raise ValueError(kind)


@pytest.mark.parametrize("ties", ["split", "first"])
@pytest.mark.parametrize("kind", ["generic", "ties-integers", "ties-relu", "constant", "negative"])
@pytest.mark.parametrize("pool_name", list(MAXPOOLS))
def test_winner_takes_all_matches_reference(pool_name: str, kind: str, ties: str) -> None:
    layer, input_shape = MAXPOOLS[pool_name]
    rng = np.random.default_rng(_seed("maxpool", pool_name, kind))
    a = _maxpool_input(kind, (3, *input_shape), rng)
    R = rng.normal(size=(3, *layer.output_shape(input_shape)))

    fast = WinnerTakesAll(ties=ties).relevance(layer, a, R)
    expected = ref.ref_maxpool_route(a, R, layer.kernel_size, layer.stride, layer.padding, ties=ties)

    atol = ATOL_FACTOR * np.abs(R).max()
    assert fast.relevance.shape == a.shape
    assert_allclose(fast.relevance, expected, rtol=RTOL, atol=atol)
    assert_array_equal(fast.absorbed, np.zeros(3))
    # every window has at least one in-image pixel, so nothing is lost
    assert_allclose(fast.relevance.reshape(3, -1).sum(axis=1), R.reshape(3, -1).sum(axis=1),
                    rtol=RTOL, atol=ATOL_FACTOR * np.abs(R).sum())


@pytest.mark.parametrize("ties", ["split", "first"])
@pytest.mark.parametrize("kind", ["generic", "ties-relu", "negative"])
@pytest.mark.parametrize("pool_name", list(MAXPOOLS))
def test_maxpool_epsilon_matches_reference(pool_name: str, kind: str, ties: str) -> None:
    """Captum's convention: the epsilon rule on max pooling."""
    layer, input_shape = MAXPOOLS[pool_name]
    rng = np.random.default_rng(_seed("maxpool-eps", pool_name, kind))
    a = _maxpool_input(kind, (3, *input_shape), rng)
    R = rng.normal(size=(3, *layer.output_shape(input_shape)))
    fast = WinnerTakesAll(ties=ties, epsilon=0.1).relevance(layer, a, R)
    expected, absorbed = ref.ref_maxpool_epsilon(a, R, layer.kernel_size, 0.1, layer.stride, layer.padding, ties)
    assert_allclose(fast.relevance, expected, rtol=RTOL, atol=ATOL_FACTOR * np.abs(R).max())
    assert_allclose(fast.absorbed, absorbed, rtol=RTOL, atol=ATOL_FACTOR * np.abs(R).sum())


@pytest.mark.parametrize("kind", ["generic", "ties-relu", "constant"])
def test_average_instead_matches_lrp0_on_average_pooling(kind: str) -> None:
    """The tutorial's convention: max pooling explained as average pooling (stride 2 and overlapping 3x3/2)."""
    for kernel, stride, shape in ((2, 2, (2, 6, 6)), (3, 2, (2, 7, 7))):
        rng = np.random.default_rng(_seed("average-instead", kind, str(kernel)))
        a = np.abs(_maxpool_input(kind, (3, *shape), rng))
        layer = MaxPool2d(kernel, stride)
        R = rng.normal(size=(3, *layer.output_shape(shape)))
        fast = AverageInstead(LRP0(1e-9, form="add")).relevance(layer, a, R)
        W, b = ref.dense_matrix(AvgPool2d(kernel, stride), shape)
        R_in, absorbed = ref.ref_lrp0(W, b, a.reshape(3, -1), R.reshape(3, -1), 1e-9, "add")
        assert_allclose(fast.relevance, R_in.reshape(a.shape), rtol=RTOL, atol=ATOL_FACTOR * np.abs(R).max())
        assert_allclose(fast.absorbed, absorbed, rtol=RTOL, atol=ATOL_FACTOR * np.abs(R).sum())


def test_winner_takes_all_tie_conventions_by_hand() -> None:
    """One 2x2 window holding [[1, 3], [3, 0]]: split gives 1/2 to each 3, first gives all to (0, 1)."""
    layer = MaxPool2d(2)
    a = np.array([[[[1.0, 3.0], [3.0, 0.0]]]])
    R = np.array([[[[4.0]]]])
    split = WinnerTakesAll("split").relevance(layer, a, R).relevance
    first = WinnerTakesAll("first").relevance(layer, a, R).relevance
    assert_array_equal(split, [[[[0.0, 2.0], [2.0, 0.0]]]])
    assert_array_equal(first, [[[[0.0, 4.0], [0.0, 0.0]]]])
    assert_array_equal(ref.ref_maxpool_route(a, R, 2, ties="split"), split)
    assert_array_equal(ref.ref_maxpool_route(a, R, 2, ties="first"), first)
