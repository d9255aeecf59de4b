"""Evidence layer 2: the layers' mathematics.

* forward passes against the naive loops of tests/reference.py;
* the dot-product test of every adjoint, ``<linear(a), s> == <a, vjp(s)>``,
  and ``vjp`` against the dense matrix probed from the naive loops;
* ``vjp`` against central differences of the linear map, and max-pool routing
  against the numerical gradient;
* shape errors, invalid hyper-parameters, float32 and immutability.
"""

from __future__ import annotations

import dataclasses
import itertools
import zlib
from typing import Any

import numpy as np
import pytest
from nets import dot_test
from numpy.testing import assert_allclose, assert_array_equal

from lrp_ref import Sequential
from lrp_ref.errors import LayerParameterError, LrpRefError, NonFiniteError, ShapeError
from lrp_ref.layers import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, ReLU

try:  # tests/ as a package or as a plain directory on sys.path
    from . import reference as ref
except ImportError:
    import reference as ref  # type: ignore[no-redef]


def _rng(*names: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, names)).encode()))


# ----------------------------------------------------------------------------- configurations

# Conv2d forward configs: (out, in, kernel, stride, padding, dilation, groups, bias, image (H, W))
CONV_FORWARD = {
    "3x3": (3, 2, (3, 3), 1, 0, 1, 1, True, (5, 5)),
    "3x3-nobias": (3, 2, (3, 3), 1, 0, 1, 1, False, (5, 6)),
    "s2-p1": (4, 2, (3, 3), 2, 1, 1, 1, True, (6, 6)),
    "s2-uneven": (2, 3, (3, 3), 2, 0, 1, 1, True, (6, 7)),
    "s3-p1-uneven": (2, 3, (3, 3), 3, 1, 1, 1, False, (7, 8)),
    "dil2-p2": (3, 2, (3, 3), 1, 2, 2, 1, True, (6, 5)),
    "rect-s21-p10": (2, 2, (2, 3), (2, 1), (1, 0), 1, 1, True, (5, 7)),
    "groups2": (4, 4, (3, 3), 1, 1, 1, 2, True, (5, 5)),
    "depthwise-dil": (3, 3, (3, 2), (1, 2), (0, 1), (2, 1), 3, False, (7, 6)),
    "groups2-x3": (6, 4, (1, 3), 1, (0, 1), 1, 2, True, (3, 4)),
    "1x1-p1": (2, 3, (1, 1), 1, 1, 1, 1, True, (3, 4)),
    "kernel-fills-image": (2, 1, (4, 5), 1, 0, 1, 1, True, (4, 5)),
}


def make_conv(cfg: tuple[Any, ...], rng: np.random.Generator) -> tuple[Conv2d, tuple[int, int, int]]:
    out, cin, k, stride, padding, dilation, groups, bias, (h, w) = cfg
    layer = Conv2d(
        rng.normal(size=(out, cin // groups, *k)),
        rng.normal(size=out) if bias else None,
        stride=stride, padding=padding, dilation=dilation, groups=groups,
    )
    return layer, (cin, h, w)


def _conv_adjoint_configs() -> dict[str, tuple[Any, ...]]:
    """A grid over kernel, stride, padding, dilation and groups on a non-square image, valid ones only."""
    configs = {}
    grid = itertools.product([(1, 1), (3, 3), (2, 3)], [1, 2, 3, (2, 1)], [0, 1, (2, 1)], [1, 2], [1, 2])
    for k, s, p, d, g in grid:
        cfg = (4, 4, k, s, p, d, g, True, (7, 8))
        layer, shape = make_conv(cfg, np.random.default_rng(0))
        try:
            layer.output_shape(shape)
        except ShapeError:
            continue
        configs[f"k{k[0]}x{k[1]}-s{s}-p{p}-d{d}-g{g}".replace(" ", "")] = cfg
    return configs


CONV_ADJOINT = _conv_adjoint_configs()

POOLS = {
    "2": ((2, None), (2, 4, 6)),
    "2-uneven": ((2, None), (1, 5, 7)),
    "3-s2-overlap": ((3, 2), (2, 7, 7)),
    "3-s1-overlap": ((3, 1), (1, 5, 6)),
    "rect-2x3-s1x2": (((2, 3), (1, 2)), (2, 5, 8)),
    "2-s3-gaps": ((2, 3), (2, 7, 8)),
}

MAXPOOLS = {
    "2": (MaxPool2d(2), (2, 4, 6)),
    "2-uneven": (MaxPool2d(2), (1, 5, 7)),
    "3-s1-p1": (MaxPool2d(3, stride=1, padding=1), (2, 5, 6)),
    "3-s2-p1": (MaxPool2d(3, stride=2, padding=1), (2, 7, 7)),
    "rect-2x3-s1x2-p1": (MaxPool2d((2, 3), stride=(1, 2), padding=(1, 1)), (1, 5, 7)),
    "2-s3-gaps": (MaxPool2d(2, stride=3), (2, 7, 8)),
}


def all_linear_layers() -> dict[str, tuple[Any, tuple[int, ...]]]:
    """Every linear layer configuration used by the adjoint tests: id -> (layer, input shape)."""
    cases: dict[str, tuple[Any, tuple[int, ...]]] = {
        "dense-bias": (Dense(_rng("dense").normal(size=(5, 7)), _rng("dense-b").normal(size=5)), (7,)),
        "dense-nobias": (Dense(_rng("dense2").normal(size=(3, 9))), (9,)),
    }
    for name, cfg in CONV_ADJOINT.items():
        cases[f"conv-{name}"] = make_conv(cfg, _rng("conv-adjoint", name))
    for name, ((k, s), shape) in POOLS.items():
        cases[f"avgpool-{name}"] = (AvgPool2d(k, stride=s), shape)
    return cases


LINEAR = all_linear_layers()


# ----------------------------------------------------------------------------- forward against loops


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_dense_forward_is_the_explicit_sum(bias: bool) -> None:
    rng = _rng("dense-forward", bias)
    w = rng.normal(size=(4, 6))
    b = rng.normal(size=4) if bias else None
    layer = Dense(w, b)
    a = rng.normal(size=(3, 6))
    expected = np.zeros((3, 4))
    for n in range(3):
        for k in range(4):
            expected[n, k] = sum(a[n, j] * w[k, j] for j in range(6)) + (b[k] if b is not None else 0.0)
    assert_allclose(layer.forward(a), expected, rtol=1e-13, atol=1e-14)
    assert_allclose(ref.naive_dense(a, w, b), expected, rtol=1e-13, atol=1e-14)
    assert layer.output_shape((6,)) == (4,)


@pytest.mark.parametrize("name", list(CONV_FORWARD))
def test_conv2d_forward_matches_loops(name: str) -> None:
    rng = _rng("conv-forward", name)
    layer, shape = make_conv(CONV_FORWARD[name], rng)
    a = rng.normal(size=(3, *shape))
    expected = ref.naive_conv2d(a, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation,
                                layer.groups)
    out = layer.forward(a)
    assert out.shape == expected.shape == (3, *layer.output_shape(shape))
    assert_allclose(out, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    # the bias-free map
    no_bias = ref.naive_conv2d(a, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    assert_allclose(layer.linear(a), no_bias, rtol=1e-12, atol=1e-12 * np.abs(no_bias).max())


def test_conv2d_forward_by_hand() -> None:
    """A 2x2 kernel on a 3x3 image, cross-correlation (not flipped), stride 1."""
    a = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    layer = Conv2d(w, np.array([0.5]))
    # top-left window [[0, 1], [3, 4]] -> 0 + 2 + 9 + 16 = 27
    expected = np.array([[[[27.5, 37.5], [57.5, 67.5]]]])
    assert_allclose(layer.forward(a), expected, rtol=1e-15, atol=0.0)
    assert_allclose(ref.naive_conv2d(a, w, np.array([0.5])), expected, rtol=1e-15, atol=0.0)


@pytest.mark.parametrize("name", list(POOLS))
def test_avgpool_forward_matches_loops(name: str) -> None:
    (k, s), shape = POOLS[name]
    layer = AvgPool2d(k, stride=s)
    rng = _rng("avgpool-forward", name)
    a = rng.normal(size=(2, *shape))
    expected = ref.naive_avgpool2d(a, k, s)
    out = layer.forward(a)
    assert out.shape == expected.shape == (2, *layer.output_shape(shape))
    assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
    # with modified window weights (what the rules do through with_weight)
    ww = rng.normal(size=layer.kernel_size)
    assert_allclose(layer.with_weight(ww).forward(a), ref.naive_avgpool2d(a, k, s, ww), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", list(MAXPOOLS))
def test_maxpool_forward_matches_loops(name: str) -> None:
    layer, shape = MAXPOOLS[name]
    a = _rng("maxpool-forward", name).normal(size=(2, *shape)) - 3.0  # all negative: padding must not win
    expected = ref.naive_maxpool2d(a, layer.kernel_size, layer.stride, layer.padding)
    out = layer.forward(a)
    assert out.shape == expected.shape == (2, *layer.output_shape(shape))
    assert_array_equal(out, expected)  # max is exact


@pytest.mark.parametrize("name", [n for n in LINEAR if not n.startswith("conv-") or n.endswith("-g2")])
def test_linear_and_vjp_equal_the_probed_matrix(name: str) -> None:
    """linear(a) == a W and vjp(s) == s W^T with W probed from the naive loops."""
    layer, shape = LINEAR[name]
    rng = _rng("matrix", name)
    W, b = ref.dense_matrix(layer, shape)
    a = rng.normal(size=(2, *shape))
    out_shape = layer.output_shape(shape)
    s = rng.normal(size=(2, *out_shape))
    lin = (a.reshape(2, -1) @ W).reshape(2, *out_shape)
    assert_allclose(layer.linear(a), lin, rtol=1e-12, atol=1e-12 * np.abs(lin).max())
    assert_allclose(layer.forward(a), lin + b.reshape(out_shape), rtol=1e-12, atol=1e-12 * np.abs(lin).max())
    back = (s.reshape(2, -1) @ W.T).reshape(2, *shape)
    assert_allclose(layer.vjp(s, shape), back, rtol=1e-12, atol=1e-12 * np.abs(back).max())


# ----------------------------------------------------------------------------- adjoints


@pytest.mark.parametrize("name", list(LINEAR))
def test_dot_product_adjoint(name: str) -> None:
    layer, shape = LINEAR[name]
    dot_test(layer, shape, _rng("dot", name))


@pytest.mark.parametrize("name", list(LINEAR))
def test_dot_product_adjoint_of_with_weight_copy(name: str) -> None:
    layer, shape = LINEAR[name]
    rng = _rng("dot-with-weight", name)
    modified = layer.with_weight(rng.normal(size=layer.weight.shape))
    assert type(modified) is type(layer)
    assert modified.bias is None  # with_weight drops the bias: the rules add their own
    dot_test(modified, shape, rng)
    # ... and the copy still equals its own probed matrix
    W, b = ref.dense_matrix(modified, shape)
    assert_array_equal(b, 0.0)
    a = rng.normal(size=(1, *shape))
    lin = (a.reshape(1, -1) @ W).reshape(1, *modified.output_shape(shape))
    assert_allclose(modified.linear(a), lin, rtol=1e-12, atol=1e-12 * np.abs(lin).max())


@pytest.mark.parametrize(
    "name", ["dense-bias", "conv-k3x3-s2-p1-d1-g2", "conv-k2x3-s3-p(2,1)-d2-g1", "conv-k3x3-s(2,1)-p0-d2-g2",
             "avgpool-3-s2-overlap", "avgpool-2-s3-gaps"]
)
def test_vjp_matches_central_differences(name: str) -> None:
    """<e_j, vjp(s)> == <(linear(a + h e_j) - linear(a - h e_j)) / 2h, s> for every input element j."""
    layer, shape = LINEAR[name]
    rng = _rng("central", name)
    a = rng.normal(size=(2, *shape))
    s = rng.normal(size=(2, *layer.output_shape(shape)))
    h = 1e-3
    numerical = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        e = np.zeros_like(a)
        e[idx] = h
        numerical[idx] = np.vdot(layer.linear(a + e) - layer.linear(a - e), s) / (2 * h)
    analytic = layer.vjp(s, shape)
    assert_allclose(analytic, numerical, rtol=1e-8, atol=1e-9 * np.abs(analytic).max())


def test_central_difference_names_exist() -> None:
    """Guard: the hand-picked ids above are present in the generated grid."""
    for name in ["conv-k3x3-s2-p1-d1-g2", "conv-k2x3-s3-p(2,1)-d2-g1", "conv-k3x3-s(2,1)-p0-d2-g2"]:
        assert name in LINEAR, sorted(LINEAR)


def _generic_input(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Distinct values at least 0.05 apart (a shuffled grid plus small noise): no ties anywhere."""
    n = int(np.prod(shape))
    values = rng.permutation(n) * 0.1 - 0.05 * n + rng.uniform(-0.02, 0.02, size=n)
    return values.reshape(shape)


@pytest.mark.parametrize("ties", ["first", "split"])
@pytest.mark.parametrize("name", list(MAXPOOLS))
def test_maxpool_route_is_the_gradient(name: str, ties: str) -> None:
    """route(a, g) == d/da sum(g * maxpool(a)), by central differences at a point without ties."""
    layer, shape = MAXPOOLS[name]
    rng = _rng("route", name)
    a = _generic_input((2, *shape), rng)
    g = rng.normal(size=(2, *layer.output_shape(shape)))
    h = 1e-3  # far below the 0.05 gap between values: no winner changes
    numerical = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        e = np.zeros_like(a)
        e[idx] = h
        numerical[idx] = (np.sum(g * layer.forward(a + e)) - np.sum(g * layer.forward(a - e))) / (2 * h)
    routed = layer.route(a, g, ties=ties)
    assert_allclose(routed, numerical, rtol=1e-9, atol=1e-9 * np.abs(g).max())
    assert_allclose(routed, ref.ref_maxpool_route(a, g, layer.kernel_size, layer.stride, layer.padding, ties),
                    rtol=1e-12, atol=1e-14 * np.abs(g).max())


# ----------------------------------------------------------------------------- shape errors

WRONG_SHAPES = [
    pytest.param(Dense(np.ones((3, 4))), (2, 5), ["Dense", "(N, 4)", "(N, 5)"], id="dense-features"),
    pytest.param(Dense(np.ones((3, 4))), (2, 2, 4), ["Dense", "(N, 4)", "(N, 2, 4)"], id="dense-rank"),
    pytest.param(Conv2d(np.ones((4, 2, 3, 3))), (2, 3, 5, 5), ["Conv2d", "(N, 2, H, W)", "(N, 3, 5, 5)"],
                 id="conv-channels"),
    pytest.param(Conv2d(np.ones((4, 2, 3, 3))), (2, 2, 5, 5, 1), ["Conv2d", "(N, 2, H, W)", "(N, 2, 5, 5, 1)"],
                 id="conv-rank5"),
    pytest.param(Conv2d(np.ones((4, 2, 3, 3))), (2, 10, 5), ["Conv2d", "(N, 2, H, W)", "(N, 10, 5)"],
                 id="conv-rank3"),
    pytest.param(AvgPool2d(2), (2, 10, 5), ["AvgPool2d", "(N, C, H, W)", "(N, 10, 5)"], id="avgpool-rank3"),
    pytest.param(AvgPool2d(2), (2, 3, 5, 5, 4), ["AvgPool2d", "(N, C, H, W)", "(N, 3, 5, 5, 4)"],
                 id="avgpool-rank5"),
    pytest.param(MaxPool2d(2), (2, 10, 5), ["MaxPool2d", "(N, C, H, W)", "(N, 10, 5)"], id="maxpool-rank3"),
    pytest.param(MaxPool2d(2), (2, 3, 5, 5, 4), ["MaxPool2d", "(N, C, H, W)", "(N, 3, 5, 5, 4)"],
                 id="maxpool-rank5"),
]

TOO_SMALL = [
    pytest.param(Conv2d(np.ones((4, 2, 3, 3))), (2, 2, 2, 5), ["Conv2d", "(2, 5)"], id="conv"),
    pytest.param(Conv2d(np.ones((4, 2, 3, 3)), dilation=2), (2, 2, 4, 9), ["Conv2d", "(4, 9)"], id="conv-dilated"),
    pytest.param(AvgPool2d(3), (2, 1, 2, 5), ["AvgPool2d", "(2, 5)"], id="avgpool"),
    pytest.param(MaxPool2d(3), (2, 1, 5, 2), ["MaxPool2d", "(5, 2)"], id="maxpool"),
]


@pytest.mark.parametrize(("layer", "shape", "fragments"), WRONG_SHAPES + TOO_SMALL)
def test_check_input_rejects_wrong_shape(layer: Any, shape: tuple[int, ...], fragments: list[str]) -> None:
    with pytest.raises(ShapeError) as info:
        layer.check_input(np.zeros(shape))
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    with pytest.raises(ShapeError):
        layer.output_shape(shape[1:])


@pytest.mark.parametrize(("layer", "shape", "fragments"), WRONG_SHAPES + TOO_SMALL)
def test_forward_rejects_wrong_shape(layer: Any, shape: tuple[int, ...], fragments: list[str]) -> None:
    """A layer applied on its own to a batch it cannot take raises ShapeError, never a numpy
    error and never a silently wrong result."""
    with pytest.raises(ShapeError) as info:
        layer.forward(np.zeros(shape))
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_check_input_refuses_a_scalar() -> None:
    with pytest.raises(ShapeError, match=r"Dense"):
        Dense(np.ones((3, 4))).check_input(np.float64(1.0))  # type: ignore[arg-type]


def test_sequential_names_the_bad_layer() -> None:
    rng = _rng("sequential")
    model = Sequential([
        Conv2d(rng.normal(size=(2, 1, 3, 3))),   # (1, 6, 6) -> (2, 4, 4)
        ReLU(),
        Flatten(),                              # -> (32,)
        Dense(rng.normal(size=(5, 30))),        # expects 30: wrong
        ReLU(),
    ])
    x = rng.normal(size=(2, 1, 6, 6))
    for call in (model.forward, model.forward_all, lambda x: model.shapes(x.shape[1:])):
        with pytest.raises(ShapeError) as info:
            call(x)
        message = str(info.value)
        assert message.startswith("layer 3 (Dense)"), message
        assert "(N, 30)" in message and "(N, 32)" in message, message


def test_sequential_names_a_bad_first_layer() -> None:
    model = Sequential([Conv2d(np.ones((2, 3, 3, 3))), ReLU()])
    with pytest.raises(ShapeError) as info:
        model.forward(np.zeros((1, 1, 5, 5)))
    assert str(info.value).startswith("layer 0 (Conv2d)"), str(info.value)


# ----------------------------------------------------------------------------- invalid hyper-parameters

W4 = np.ones((4, 2, 3, 3))

INVALID = [
    pytest.param(lambda: Conv2d(W4, stride=0), LayerParameterError, "stride", id="conv-stride-0"),
    pytest.param(lambda: Conv2d(W4, stride=(1, 0)), LayerParameterError, "stride", id="conv-stride-pair-0"),
    pytest.param(lambda: Conv2d(W4, stride=(1, 2, 3)), LayerParameterError, "stride", id="conv-stride-triple"),
    pytest.param(lambda: Conv2d(W4, stride=1.5), LayerParameterError, "stride", id="conv-stride-float"),
    pytest.param(lambda: Conv2d(W4, padding=-1), LayerParameterError, "padding", id="conv-padding-negative"),
    pytest.param(lambda: Conv2d(W4, dilation=0), LayerParameterError, "dilation", id="conv-dilation-0"),
    pytest.param(lambda: Conv2d(W4, groups=3), LayerParameterError, "groups", id="conv-groups-not-dividing"),
    pytest.param(lambda: Conv2d(W4, groups=0), LayerParameterError, "groups", id="conv-groups-0"),
    pytest.param(lambda: Conv2d(W4, groups=-2), LayerParameterError, "groups", id="conv-groups-negative"),
    pytest.param(lambda: Conv2d(W4, np.ones(3)), ShapeError, "bias", id="conv-bias-shape"),
    pytest.param(lambda: Conv2d(W4, np.ones((4, 1))), ShapeError, "bias", id="conv-bias-rank"),
    pytest.param(lambda: Conv2d(np.ones((4, 2, 3))), ShapeError, "weight", id="conv-weight-rank"),
    pytest.param(lambda: Conv2d(np.where(W4 > 0, np.nan, 0.0)), NonFiniteError, "weight", id="conv-weight-nan"),
    pytest.param(lambda: Conv2d(W4, np.array([0.0, np.inf, 0, 0])), NonFiniteError, "bias", id="conv-bias-inf"),
    pytest.param(lambda: Dense(np.ones((3, 4)), np.ones(4)), ShapeError, "bias", id="dense-bias-shape"),
    pytest.param(lambda: Dense(np.ones(4)), ShapeError, "weight", id="dense-weight-rank"),
    pytest.param(lambda: Dense(np.array([[1.0, np.nan]])), NonFiniteError, "weight", id="dense-weight-nan"),
    pytest.param(lambda: Dense(np.ones((1, 2)), np.array([np.nan])), NonFiniteError, "bias", id="dense-bias-nan"),
    pytest.param(lambda: Dense(np.ones((1, 2)), dtype=np.int64), LayerParameterError, "dtype", id="dense-int-dtype"),
    pytest.param(lambda: Dense(np.ones((1, 2)), dtype=np.float16), LayerParameterError, "dtype",
                 id="dense-float16-dtype"),
    pytest.param(lambda: Dense([["a", "b"]]), ShapeError, "numeric", id="dense-weight-strings"),
    pytest.param(lambda: AvgPool2d(0), LayerParameterError, "kernel_size", id="avgpool-kernel-0"),
    pytest.param(lambda: AvgPool2d(2, stride=0), LayerParameterError, "stride", id="avgpool-stride-0"),
    pytest.param(lambda: AvgPool2d(2, window_weight=np.ones((2, 3))), ShapeError, "window_weight",
                 id="avgpool-window-shape"),
    pytest.param(lambda: AvgPool2d(2, window_weight=np.full((2, 2), np.nan)), NonFiniteError, "window_weight",
                 id="avgpool-window-nan"),
    pytest.param(lambda: MaxPool2d(2, padding=2), LayerParameterError, "padding", id="maxpool-padding-over-half"),
    pytest.param(lambda: MaxPool2d(3, padding=-1), LayerParameterError, "padding", id="maxpool-padding-negative"),
    pytest.param(lambda: MaxPool2d(2, stride=0), LayerParameterError, "stride", id="maxpool-stride-0"),
    pytest.param(lambda: Dense(np.ones((3, 4))).with_weight(np.ones((4, 3))), ShapeError, "with_weight",
                 id="with-weight-shape"),
    pytest.param(lambda: Conv2d(W4).with_weight(np.full(W4.shape, np.inf)), NonFiniteError, "weight",
                 id="with-weight-inf"),
    pytest.param(lambda: MaxPool2d(2).route(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 1, 1)), ties="last"),
                 LayerParameterError, "ties", id="route-ties"),
    pytest.param(lambda: Dense(np.ones((1, 2))).astype(np.int32), LayerParameterError, "dtype", id="astype-int"),
]


@pytest.mark.parametrize(("make", "error", "word"), INVALID)
def test_invalid_parameters_raise_the_matching_error(make: Any, error: type[LrpRefError], word: str) -> None:
    with pytest.raises(error) as info:
        make()
    assert isinstance(info.value, LrpRefError)
    assert word in str(info.value), str(info.value)


# ----------------------------------------------------------------------------- dtype and immutability

FLOAT32_CASES = {
    "dense": (Dense(_rng("f32").normal(size=(3, 5)), _rng("f32b").normal(size=3)), (5,)),
    "conv": make_conv(CONV_FORWARD["s2-p1"], _rng("f32-conv")),
    "conv-groups": make_conv(CONV_FORWARD["groups2"], _rng("f32-conv-g")),
    "avgpool": (AvgPool2d(3, stride=2), (2, 7, 7)),
}


@pytest.mark.parametrize("name", list(FLOAT32_CASES))
def test_astype_float32_linear(name: str) -> None:
    layer64, shape = FLOAT32_CASES[name]
    layer = layer64.astype(np.float32)
    assert type(layer) is type(layer64)
    assert layer.dtype == np.float32 and layer64.dtype == np.float64
    assert layer.weight.dtype == np.float32
    if layer.bias is not None:
        assert layer.bias.dtype == np.float32
    assert layer.bias_term().dtype == np.float32
    rng = _rng("f32-data", name)
    a = rng.normal(size=(2, *shape)).astype(np.float32)
    s = rng.normal(size=(2, *layer.output_shape(shape))).astype(np.float32)
    out, lin, back = layer.forward(a), layer.linear(a), layer.vjp(s, shape)
    assert out.dtype == lin.dtype == back.dtype == np.float32
    modified = layer.with_weight(np.ones(layer.weight.shape))
    assert modified.dtype == np.float32 and modified.weight.dtype == np.float32
    assert modified.forward(a).dtype == np.float32
    # float32 results are the float64 results, to float32 accuracy
    ref64 = layer64.forward(a.astype(np.float64))
    assert_allclose(out, ref64, rtol=1e-5, atol=1e-5 * np.abs(ref64).max())
    # and back: float64 again, parameters equal to the float32 ones exactly
    again = layer.astype(np.float64)
    assert again.weight.dtype == np.float64
    assert_array_equal(again.weight, layer.weight.astype(np.float64))


def test_astype_float32_maxpool_and_elementwise() -> None:
    a = _rng("f32-pool").normal(size=(2, 2, 5, 6)).astype(np.float32)
    pool = MaxPool2d(3, stride=2, padding=1).astype(np.float32)
    assert pool.dtype == np.float32
    out = pool.forward(a)
    assert out.dtype == np.float32
    assert pool.route(a, np.ones_like(out), ties="split").dtype == np.float32
    assert pool.route(a, np.ones_like(out), ties="first").dtype == np.float32
    for layer in (ReLU().astype(np.float32), Flatten().astype(np.float32)):
        assert layer.dtype == np.float32
        assert layer.forward(a).dtype == np.float32


def test_sequential_astype_float32() -> None:
    rng = _rng("f32-seq")
    model = Sequential([Conv2d(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2)), ReLU(), Flatten(),
                        Dense(rng.normal(size=(3, 32)))]).astype(np.float32)
    assert model.dtype == np.float32
    assert all(layer.dtype == np.float32 for layer in model)
    assert model.forward(rng.normal(size=(2, 1, 6, 6)).astype(np.float32)).dtype == np.float32


def _all_parameter_layers() -> list[Any]:
    rng = _rng("frozen")
    return [
        Dense(rng.normal(size=(3, 4)), rng.normal(size=3)),
        Conv2d(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2), stride=2),
        AvgPool2d(2),
        Dense(rng.normal(size=(3, 4)), rng.normal(size=3)).astype(np.float32),
        Conv2d(rng.normal(size=(2, 1, 3, 3))).with_weight(rng.normal(size=(2, 1, 3, 3))),
        AvgPool2d(2).with_weight(np.ones((2, 2))),
    ]


@pytest.mark.parametrize("layer", _all_parameter_layers(), ids=lambda layer: layer.describe())
def test_parameters_are_read_only(layer: Any) -> None:
    arrays = [layer.weight] + ([layer.bias] if layer.bias is not None else [])
    for arr in arrays:
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[(0,) * arr.ndim] = 1.0
    field = "window_weight" if isinstance(layer, AvgPool2d) else "weight"
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(layer, field, np.zeros_like(layer.weight))
    with pytest.raises(dataclasses.FrozenInstanceError):
        layer.dtype = np.dtype(np.float32)


@pytest.mark.parametrize("layer", [MaxPool2d(2), ReLU(), Flatten()], ids=lambda layer: layer.describe())
def test_parameter_free_layers_are_frozen(layer: Any) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        layer.dtype = np.dtype(np.float32)


def test_layers_copy_their_parameters() -> None:
    """Mutating the arrays a layer was built from does not change the layer."""
    w, b = np.ones((2, 3)), np.zeros(2)
    dense = Dense(w, b)
    conv_w = np.ones((1, 1, 2, 2))
    conv = Conv2d(conv_w)
    ww = np.full((2, 2), 0.25)
    pool = AvgPool2d(2, window_weight=ww)
    w[:] = 5.0
    b[:] = 5.0
    conv_w[:] = 5.0
    ww[:] = 5.0
    assert_array_equal(dense.weight, 1.0)
    assert_array_equal(dense.bias, 0.0)
    assert_array_equal(conv.weight, 1.0)
    assert_array_equal(pool.weight, 0.25)
    assert w.flags.writeable and b.flags.writeable  # the caller's arrays are left writable
