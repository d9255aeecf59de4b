"""Asymmetric padding ``(top, bottom, left, right)`` for Conv2d, MaxPool2d and AvgPool2d, and ``same_padding``.

* ``same_padding`` against TensorFlow's formula, by hand and as a property
  (``ceil(n / s)`` outputs, the larger half after), and every 'same' pooling
  fits the pools' limit of half the kernel per side;
* symmetric padding written as four sides is the pair: the same layer, the
  same numbers;
* forward passes against the naive loops, adjoints, max-pool routing against
  its loop reference and the numerical gradient, on asymmetric padding;
* refusals naming the parameter.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from lrp_ref import _windows
from lrp_ref.errors import LayerParameterError, LrpRefError
from lrp_ref.layers import AvgPool2d, Conv2d, MaxPool2d, same_padding

try:  # tests/ as a package or as a plain directory on sys.path
    from . import reference as ref
except ImportError:
    import reference as ref  # type: ignore[no-redef]


def _rng(*names: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, names)).encode()))


# ----------------------------------------------------------------------------- same_padding


@pytest.mark.parametrize(("hw", "kernel", "stride", "dilation", "expected"), [
    ((224, 224), 7, 2, 1, (2, 3, 2, 3)),     # ResNet's stem in TensorFlow: one more at the bottom/right
    ((6, 6), 3, 2, 1, (0, 1, 0, 1)),         # even size, stride 2
    ((7, 7), 3, 2, 1, (1, 1, 1, 1)),         # odd size, stride 2: symmetric
    ((5, 8), 3, 1, 1, (1, 1, 1, 1)),         # stride 1, odd kernel: k // 2 everywhere
    ((5, 5), 2, 1, 1, (0, 1, 0, 1)),         # stride 1, even kernel: the extra row after
    ((6, 6), 1, 2, 1, (0, 0, 0, 0)),         # 1x1 kernel never pads
    ((8, 8), 3, 1, 2, (2, 2, 2, 2)),         # dilation 2: effective kernel 5
    ((9, 4), (3, 2), (2, 3), 1, (1, 1, 0, 1)),
    ((1, 1), 5, 1, 1, (2, 2, 2, 2)),
])
def test_same_padding_by_hand(hw: tuple[int, int], kernel: Any, stride: Any, dilation: Any,
                              expected: tuple[int, int, int, int]) -> None:
    assert same_padding(hw, kernel, stride, dilation) == expected


@given(n=st.integers(1, 64), k=st.integers(1, 9), s=st.integers(1, 5), d=st.integers(1, 3))
def test_same_padding_is_tensorflows_formula(n: int, k: int, s: int, d: int) -> None:
    top, bottom, left, right = same_padding((n, n + 1), k, s, d)
    out = math.ceil(n / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    assert (top, bottom) == (total // 2, total - total // 2)
    assert bottom - top in (0, 1)
    # TensorFlow's output size, ceil(n / s), follows from the padding with PyTorch's formula
    assert _windows.output_size(n, k, s, (top, bottom), d) == out
    assert _windows.output_size(n + 1, k, s, (left, right), d) == math.ceil((n + 1) / s)


@given(n=st.integers(1, 64), k=st.integers(1, 9), s=st.integers(1, 5))
def test_tensorflow_same_pooling_fits_the_pools(n: int, k: int, s: int) -> None:
    """TF 'same' pads k - 1 at most in all, the larger half floor(k / 2) after: always within PyTorch's limit."""
    padding = same_padding((n, n), k, s)
    assert max(padding) <= k // 2
    for pool in (MaxPool2d(k, s, padding=padding), AvgPool2d(k, s, padding=padding, count_include_pad=False)):
        assert pool.output_shape((1, n, n)) == (1, math.ceil(n / s), math.ceil(n / s))


def test_same_padding_refuses_bad_arguments() -> None:
    for args, word in [(((0, 5), 3), "input_hw"), ((5, 3), "input_hw"), (((5, 5), 0), "kernel"),
                       (((5, 5), 3, 0), "stride"), (((5, 5), 3, 1, 1.5), "dilation"), (((5, 5, 5), 3), "input_hw")]:
        with pytest.raises(LayerParameterError, match=word):
            same_padding(*args)


# ----------------------------------------------------------------------------- symmetric stays symmetric

SYMMETRIC = [
    lambda p: Conv2d(np.arange(36.0).reshape(2, 2, 3, 3) / 10, np.ones(2), stride=2, padding=p),
    lambda p: MaxPool2d(3, stride=2, padding=p),
    lambda p: AvgPool2d(3, stride=2, padding=p),
]


@pytest.mark.parametrize("make", SYMMETRIC, ids=["conv", "maxpool", "avgpool"])
def test_symmetric_sides_are_the_pair(make: Any) -> None:
    a = _rng("sym").normal(size=(2, 2, 7, 6))
    four, two = make((1, 1, 0, 0)), make((1, 0))
    assert four.padding == two.padding == (1, 0)
    assert four.padding_sides == (1, 1, 0, 0)
    assert four.describe() == two.describe()
    assert_array_equal(four.forward(a), two.forward(a))
    assert make([1, 1, 1, 1]).padding == make(1).padding == (1, 1)


# ----------------------------------------------------------------------------- asymmetric padding against loops

# (out, in, kernel, stride, padding (t, b, l, r), dilation, groups, image (H, W))
CONVS = {
    "tf-same-s2": (3, 2, (3, 3), 2, same_padding((6, 8), 3, 2), 1, 1, (6, 8)),
    "bottom-only": (2, 2, (3, 3), 1, (0, 2, 0, 0), 1, 1, (4, 5)),
    "rect-dil-g2": (4, 4, (2, 3), (2, 1), (1, 0, 2, 1), (1, 2), 2, (5, 7)),
    "pad-beyond-kernel": (2, 1, (2, 2), 1, (3, 0, 0, 4), 1, 1, (3, 3)),
    "even-kernel-same": (2, 3, (4, 4), 1, same_padding((5, 5), 4, 1), 1, 1, (5, 5)),
}

MAXPOOLS = {
    "tf-same-2-s2": (MaxPool2d(2, padding=(0, 1, 0, 1)), (2, 5, 7)),
    "3-s2-tf-same-even": (MaxPool2d(3, 2, padding=same_padding((6, 6), 3, 2)), (2, 6, 6)),
    "rect-asym-overlap": (MaxPool2d((3, 2), stride=1, padding=(1, 0, 0, 1)), (1, 4, 5)),
}


def make_conv(name: str) -> tuple[Conv2d, tuple[int, int, int]]:
    out, cin, k, stride, padding, dilation, groups, (h, w) = CONVS[name]
    rng = _rng("conv", name)
    layer = Conv2d(rng.normal(size=(out, cin // groups, *k)), rng.normal(size=out), stride=stride, padding=padding,
                   dilation=dilation, groups=groups)
    return layer, (cin, h, w)


@pytest.mark.parametrize("name", list(CONVS))
def test_conv_forward_and_adjoint_with_asymmetric_padding(name: str) -> None:
    layer, shape = make_conv(name)
    rng = _rng("conv-data", name)
    a = rng.normal(size=(2, *shape))
    expected = ref.naive_conv2d(a, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)
    out = layer.forward(a)
    assert out.shape == expected.shape == (2, *layer.output_shape(shape))
    assert_allclose(out, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    W, _ = ref.dense_matrix(layer, shape)
    s = rng.normal(size=out.shape)
    back = (s.reshape(2, -1) @ W.T).reshape(a.shape)
    assert_allclose(layer.vjp(s, shape), back, rtol=1e-12, atol=1e-12 * np.abs(back).max())
    assert_allclose(np.vdot(layer.linear(a), s), np.vdot(a, layer.vjp(s, shape)), rtol=1e-12,
                    atol=1e-13 * np.abs(s).sum() * np.abs(a).sum())


def test_conv_padding_is_zeros_on_the_named_sides() -> None:
    """A 1x1 kernel of weight 1 copies the image into the padded frame: zeros exactly where padded."""
    a = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    out = Conv2d(np.ones((1, 1, 1, 1)), padding=(1, 2, 0, 1)).forward(a)
    expected = np.zeros((1, 1, 5, 4))
    expected[0, 0, 1:3, 0:3] = a[0, 0]
    assert_array_equal(out, expected)


@pytest.mark.parametrize("name", list(MAXPOOLS))
def test_maxpool_with_asymmetric_padding(name: str) -> None:
    layer, shape = MAXPOOLS[name]
    rng = _rng("maxpool", name)
    a = rng.normal(size=(2, *shape)) - 3.0  # all negative: -inf padding must never win
    out = layer.forward(a)
    assert_array_equal(out, ref.naive_maxpool2d(a, layer.kernel_size, layer.stride, layer.padding))
    # routing: the loop reference, and the gradient at a point without ties
    values = rng.permutation(a.size).reshape(a.shape) * 0.1 - 3.0 * a.size
    g = rng.normal(size=out.shape)
    for ties in ("split", "first"):
        routed = layer.route(values, g, ties=ties)
        assert_allclose(routed, ref.ref_maxpool_route(values, g, layer.kernel_size, layer.stride, layer.padding,
                                                      ties), rtol=1e-13, atol=1e-15)
    h = 1e-3
    numerical = np.zeros_like(values)
    for idx in np.ndindex(values.shape):
        e = np.zeros_like(values)
        e[idx] = h
        numerical[idx] = (np.sum(g * layer.forward(values + e)) - np.sum(g * layer.forward(values - e))) / (2 * h)
    assert_allclose(layer.route(values, g), numerical, rtol=1e-9, atol=1e-9 * np.abs(g).max())


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("make", "value", "word"), [
    (lambda p: Conv2d(np.ones((1, 1, 3, 3)), padding=p), (0, 1, 2), "padding"),
    (lambda p: Conv2d(np.ones((1, 1, 3, 3)), padding=p), (0, 1, 2, 3, 4), "padding"),
    (lambda p: Conv2d(np.ones((1, 1, 3, 3)), padding=p), (0, -1, 0, 0), "padding bottom"),
    (lambda p: Conv2d(np.ones((1, 1, 3, 3)), padding=p), (0, 1.0, 0, 0), "padding"),
    (lambda p: Conv2d(np.ones((1, 1, 3, 3)), padding=p), (0, True, 0, 0), "padding"),
    (lambda p: Conv2d(np.ones((1, 1, 3, 3)), padding=p), (0, 0, 0, 2**40), "padding right"),
    (lambda p: Conv2d(np.ones((1, 1, 3, 3)), padding=p), np.array([0, 1, 0, 1]), "padding"),
    (lambda p: MaxPool2d(3, padding=p), (0, 2, 0, 0), "half the kernel"),
    (lambda p: MaxPool2d((3, 2), padding=p), (1, 1, 0, 2), "half the kernel"),
    (lambda p: AvgPool2d(2, padding=p), (2, 0, 0, 0), "half the kernel"),
])
def test_bad_padding_is_refused(make: Any, value: Any, word: str) -> None:
    with pytest.raises(LrpRefError) as info:
        make(value)
    assert word in str(info.value), str(info.value)


def test_find_near_ties_on_asymmetric_max_pool_and_new_layers() -> None:
    """lrp_ref.testing follows four-sided padding (tie positions in the unpadded input) and the
    pools whose weights depend on the input size (its error magnitudes go through for_input)."""
    from lrp_ref import BatchNorm2d, Sequential, explain, testing
    from lrp_ref.layers import AdaptiveAvgPool2d, Dense, Flatten, LinearLayer
    from lrp_ref.rules import LRP0

    x = np.arange(16.0).reshape(1, 1, 4, 4) + 1.0
    x[0, 0, 2, 2] = x[0, 0, 1, 1] = 20.0  # a tie in window (1, 1): rows 1-2, cols 1-2 of the input
    model = Sequential([BatchNorm2d([1.0], [0.0], [0.0], [1.0], eps=0.0), MaxPool2d(2, padding=(1, 0, 1, 0)),
                        AdaptiveAvgPool2d(3), AvgPool2d(2, 1, padding=(0, 1, 0, 1), count_include_pad=False),
                        Flatten(), Dense(np.ones((1, 9)))])
    e = explain(model, x, [LRP0() if isinstance(layer, LinearLayer) else None for layer in model])
    ties = testing.find_near_ties(model, e).ties
    assert [(t.layer, t.window, t.inputs, t.gap) for t in ties] == [(1, (1, 1), ((1, 1), (2, 2)), 0.0)]


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_padded_average_pooling_is_saved_in_schema_2(tmp_path: Any, count_include_pad: bool) -> None:
    """Schema 1 had no field for it (and silently dropped it once); schema 2 keeps padding and count_include_pad."""
    import h5py

    from lrp_ref import Sequential, load, save

    model = Sequential([AvgPool2d(3, 1, padding=(1, 0, 1, 1), count_include_pad=count_include_pad)])
    save(model, tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f.attrs["schema_version"] == 2
    back = load(tmp_path / "m.h5")
    assert back[0].padding == (1, 0, 1, 1) and back[0].count_include_pad == count_include_pad
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 7))
    np.testing.assert_array_equal(back.forward(x), model.forward(x))
