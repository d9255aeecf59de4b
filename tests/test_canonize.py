"""lrp_ref.canonize: batch norms merged into the Dense or Conv2d layer before them.

* the merged forward equals the original to 1e-12 (relative to max |output|,
  float64) on random models with random batch-norm statistics (hypothesis);
* which batch norms merge (right after a Dense or Conv2d) and which stay;
  the metadata record; the original model untouched; idempotence;
* LRP-0 explains the canonized model as the original (both are gradient x input);
* refusals.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import lrp_ref as L
from lrp_ref import rules as R
from lrp_ref.canonize import canonize, merge_batchnorm, merges_into
from lrp_ref.errors import ArgumentError, ShapeError
from lrp_ref.layers import BatchNorm, BatchNorm1d, BatchNorm2d, LinearLayer


def _rng(*names: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, names)).encode()))


def random_bn(cls: type[BatchNorm], c: int, rng: np.random.Generator) -> BatchNorm:
    """Statistics as after training: means and scales of any sign and size, small variances included."""
    return cls(rng.normal(scale=2.0, size=c), rng.normal(size=c), rng.normal(scale=3.0, size=c),
               rng.uniform(0.0, 5.0, size=c) ** 2, eps=float(rng.choice([1e-5, 1e-3, 0.1])))


def bn_model(rng: np.random.Generator) -> L.Sequential:
    """Mergeable and unmergeable batch norms: first layer, after ReLU, after a pool, twice in a row."""
    n = rng.normal
    return L.Sequential([
        random_bn(BatchNorm2d, 2, rng),                                           # 0: first layer: stays
        L.Conv2d(n(size=(4, 2, 3, 3)), n(size=4), padding=1),                    # 1
        random_bn(BatchNorm2d, 4, rng),                                           # 2: merges into 1
        L.ReLU(),
        random_bn(BatchNorm2d, 4, rng),                                           # 4: after ReLU: stays
        L.Conv2d(n(size=(6, 2, 2, 3)) * 0.5, None, stride=2, padding=(0, 1, 1, 1), groups=2),  # 5: no bias
        random_bn(BatchNorm2d, 6, rng),                                           # 6: merges into 5
        random_bn(BatchNorm2d, 6, rng),                                           # 7: a second one: merges too
        L.ReLU(),
        L.AvgPool2d(2),
        random_bn(BatchNorm2d, 6, rng),                                           # 10: after a pool: stays
        L.Flatten(),
        L.Dense(n(size=(5, 24)) * 0.3, n(size=5)),                                # 12
        random_bn(BatchNorm1d, 5, rng),                                           # 13: merges into 12
        L.ReLU(),
        L.Dense(n(size=(3, 5)), n(size=3)),
    ], metadata={"class_names": ["a", "b", "c"]})


X_SHAPE = (2, 8, 8)


def assert_forward_equal(original: L.Sequential, merged: L.Sequential, x: np.ndarray) -> None:
    expected = original.forward(x)
    assert_allclose(merged.forward(x), expected, rtol=0, atol=1e-12 * np.abs(expected).max())


@given(seed=st.integers(0, 2**32 - 1))
def test_canonized_forward_equals_original(seed: int) -> None:
    rng = np.random.default_rng(seed)
    model = bn_model(rng)
    x = rng.normal(scale=2.0, size=(3, *X_SHAPE))
    merged = canonize(model)
    assert_forward_equal(model, merged, x)
    assert len(merged) == len(model) - 4


@given(seed=st.integers(0, 2**32 - 1), groups=st.sampled_from([1, 2]), bias=st.booleans())
def test_merge_batchnorm_forward(seed: int, groups: int, bias: bool) -> None:
    rng = np.random.default_rng(seed)
    conv = L.Conv2d(rng.normal(size=(4, 4 // groups, 3, 2)), rng.normal(size=4) if bias else None, stride=(2, 1),
                    padding=L.same_padding((7, 6), (3, 2), (2, 1)), dilation=1, groups=groups)
    bn = random_bn(BatchNorm2d, 4, rng)
    x = rng.normal(size=(2, 4, 7, 6))
    merged = merge_batchnorm(conv, bn)
    assert type(merged) is L.Conv2d and merged.bias is not None
    assert (merged.stride, merged.padding, merged.dilation, merged.groups) == (
        conv.stride, conv.padding, conv.dilation, conv.groups)
    expected = bn.forward(conv.forward(x))
    assert_allclose(merged.forward(x), expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    dense = L.Dense(rng.normal(size=(3, 5)), rng.normal(size=3) if bias else None)
    bn1 = random_bn(BatchNorm1d, 3, rng)
    xd = rng.normal(size=(4, 5))
    expected = bn1.forward(dense.forward(xd))
    assert_allclose(merge_batchnorm(dense, bn1).forward(xd), expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def test_merge_by_hand() -> None:
    """w' = w * s, b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps) = 2 / sqrt(3 + 1) = 1 ... per output."""
    dense = L.Dense(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.5, -1.0]))
    bn = BatchNorm1d(np.array([2.0, -3.0]), np.array([1.0, 0.0]), np.array([0.5, 1.0]), np.array([3.0, 8.0]), eps=1.0)
    merged = merge_batchnorm(dense, bn)  # s = (1, -1)
    assert_array_equal(merged.weight, [[1.0, 2.0], [-3.0, -4.0]])
    assert_array_equal(merged.bias, [1.0, 2.0])


def test_which_batchnorms_merge_and_the_record() -> None:
    model = bn_model(_rng("which"))
    merged = canonize(model)
    kinds = [type(layer).__name__ for layer in merged]
    assert kinds == ["BatchNorm2d", "Conv2d", "ReLU", "BatchNorm2d", "Conv2d", "ReLU", "AvgPool2d",
                     "BatchNorm2d", "Flatten", "Dense", "ReLU", "Dense"]
    assert merged.metadata["canonized"] == [2, 6, 7, 13]
    assert merged.metadata["class_names"] == ["a", "b", "c"]
    assert "canonized" not in model.metadata  # the original is untouched
    assert len(model) == 16 and isinstance(model[2], BatchNorm2d)
    # idempotent: nothing left to merge, the record kept
    again = canonize(merged)
    assert [type(layer) for layer in again] == [type(layer) for layer in merged]
    assert again.metadata["canonized"] == [2, 6, 7, 13]


def test_model_without_batchnorm_is_unchanged() -> None:
    model = L.Sequential([L.Dense(np.ones((2, 3))), L.ReLU()], metadata={"seed": 3})
    out = canonize(model)
    assert [layer is original for layer, original in zip(out, model)] == [True, True]
    assert out.metadata == {"seed": 3}


def test_float32_model_merges_in_float64_then_casts() -> None:
    model = bn_model(_rng("f32"))
    merged32 = canonize(model.astype(np.float32))
    assert merged32.dtype == np.float32
    x = _rng("f32-x").normal(size=(2, *X_SHAPE))
    expected = model.forward(x)
    assert_allclose(merged32.forward(x.astype(np.float32)), expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_lrp0_explains_the_canonized_model_as_the_original() -> None:
    """LRP-0 is gradient x input on both, and both compute the same function."""
    model = bn_model(_rng("lrp0"))
    merged = canonize(model)
    x = _rng("lrp0-x").normal(size=(2, *X_SHAPE))

    def lrp0(m: L.Sequential) -> list[R.Rule | None]:
        return [R.LRP0() if isinstance(layer, LinearLayer) else None for layer in m]

    original, canonized = L.explain(model, x, lrp0(model)), L.explain(merged, x, lrp0(merged))
    assert_array_equal(original.target, canonized.target)
    scale = np.abs(original.relevance).max()
    assert_allclose(canonized.relevance, original.relevance, rtol=0, atol=1e-10 * scale)
    canonized.ledger.check_balance()


def test_canonized_model_saves_with_its_record(tmp_path: Any) -> None:
    model = L.Sequential([L.Conv2d(_rng("io").normal(size=(2, 1, 3, 3))), random_bn(BatchNorm2d, 2, _rng("io-bn")),
                          L.ReLU(), L.Flatten(), L.Dense(_rng("io-d").normal(size=(2, 8)))])
    merged = canonize(model)
    L.save(merged, tmp_path / "m.h5")
    loaded = L.load(tmp_path / "m.h5")
    assert list(np.asarray(loaded.metadata["canonized"])) == [1]
    x = _rng("io-x").normal(size=(2, 1, 4, 4))
    assert_array_equal(loaded.forward(x), merged.forward(x))


def test_refusals() -> None:
    with pytest.raises(ArgumentError, match="Sequential"):
        canonize([L.ReLU()])  # type: ignore[arg-type]
    bn2 = BatchNorm2d(np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))
    with pytest.raises(ArgumentError, match="Dense then a BatchNorm1d"):
        merge_batchnorm(L.Dense(np.ones((3, 2))), bn2)
    with pytest.raises(ShapeError, match=r"3 channels.*4 outputs"):
        merge_batchnorm(L.Conv2d(np.ones((4, 1, 1, 1))), bn2)
    with pytest.raises(ShapeError, match=r"^layer 1 \(BatchNorm2d\)"):
        canonize(L.Sequential([L.Conv2d(np.ones((4, 1, 1, 1))), bn2]))
    assert not merges_into(L.ReLU(), bn2) and merges_into(L.Conv2d(np.ones((3, 1, 1, 1))), bn2)
