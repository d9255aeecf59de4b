"""lrp_ref.compare and `lrp-ref compare`: pinpointing planted bugs and naming conventions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose

import lrp_ref as L
from lrp_ref import compare as C
from lrp_ref import rules as R
from lrp_ref.testing import assert_relevance_close, tolerance_for

ROOT = Path(__file__).resolve().parent.parent


class ForgotStrideConv2d(L.Conv2d):
    """A planted bug: the backward pass places every window as if the stride were 1."""

    def vjp(self, s, input_shape):
        kh, kw = self.kernel_size
        ph, pw = self.padding
        small = (input_shape[0], s.shape[2] + kh - 1 - 2 * ph, s.shape[3] + kw - 1 - 2 * pw)
        stride_one = L.Conv2d(self.weight, None, stride=1, padding=self.padding)
        out = np.zeros((s.shape[0], *input_shape))
        out[:, :, : small[1], : small[2]] = stride_one.vjp(s, small)  # windows packed at stride 1
        return out


class FlippedKernelConv2d(L.Conv2d):
    """A planted bug: convolution instead of cross-correlation in the backward pass."""

    def vjp(self, s, input_shape):
        flipped = L.Conv2d(self.weight[:, :, ::-1, ::-1].copy(), None, stride=self.stride, padding=self.padding)
        return flipped.vjp(s, input_shape)


def cnn(conv_class: type = L.Conv2d, buggy_layer: int | None = None) -> L.Sequential:
    rng = np.random.default_rng(11)
    layers = [
        L.Conv2d(rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4) * 0.1, padding=1), L.ReLU(),
        L.Conv2d(rng.normal(size=(6, 4, 3, 3)) * 0.5, rng.normal(size=6) * 0.1, stride=2, padding=1), L.ReLU(),
        L.MaxPool2d(2), L.Flatten(), L.Dense(rng.normal(size=(3, 24)) * 0.3, rng.normal(size=3) * 0.1),
    ]
    if buggy_layer is not None:
        good = layers[buggy_layer]
        layers[buggy_layer] = conv_class(good.weight, good.bias, stride=good.stride, padding=good.padding)
    return L.Sequential(layers)


X = np.random.default_rng(12).uniform(0, 1, size=(2, 2, 8, 8))


def candidate_from(model: L.Sequential, rules, profile: str = "lrp_ref") -> dict[int, np.ndarray]:
    return dict(enumerate(L.explain(model, X, rules, profile=profile).layers))


def test_the_oracle_matches_itself():
    result = C.compare(cnn(), X, R.Epsilon(0.01), candidate_from(cnn(), R.Epsilon(0.01)))
    assert result.ok and result.first_divergence is None
    assert "all 8 boundaries match" in result.report()


@pytest.mark.parametrize("bug, layer", [(ForgotStrideConv2d, 2), (FlippedKernelConv2d, 0), (FlippedKernelConv2d, 2)],
                         ids=["wrong-stride-layer2", "flipped-kernel-layer0", "flipped-kernel-layer2"])
def test_planted_bug_is_pinpointed_at_its_layer(bug, layer):
    candidate = candidate_from(cnn(bug, layer), R.Epsilon(0.01))
    result = C.compare(cnn(), X, R.Epsilon(0.01), candidate)
    assert not result.ok
    assert result.first_divergence == layer
    assert all(d.ok for d in result.diffs if d.boundary > layer)
    report = result.report()
    assert f"first divergence: layer {layer} (" in report
    assert "no convention profile explains the difference" in report


def test_input_relevance_alone_is_enough_to_detect_but_not_to_locate():
    bad = candidate_from(cnn(FlippedKernelConv2d, 2), R.Epsilon(0.01))[0]
    result = C.compare(cnn(), X, R.Epsilon(0.01), bad)
    assert not result.ok and result.first_divergence == 0


@pytest.mark.parametrize("profile, note", [
    ("innvestigate", "alpha-beta bias in both denominators"),
    ("zennit", "generalised gamma"),
    ("captum", "stabiliser 1e-9"),
])
def test_a_convention_difference_is_named(profile, note):
    rules = R.AlphaBeta(2, 1) if profile == "innvestigate" else L.composites.epsilon_gamma_box(0.0, 1.0)
    if profile == "captum":
        rules = R.Epsilon()
    candidate = candidate_from(cnn(), rules, profile)
    result = C.compare(cnn(), X, rules, candidate)
    assert not result.ok
    assert result.matching_profile == profile
    assert f"matches profile {profile}: " in result.report() and note in result.report()


def test_shape_mismatch_is_reported():
    candidate = candidate_from(cnn(), R.LRP0())
    candidate[2] = candidate[2][:, :, :-1]
    result = C.compare(cnn(), X, R.LRP0(), candidate)
    assert not result.ok and result.first_divergence == 2
    assert "a stride, padding or kernel size differs" in result.report()


def test_float32_candidate_uses_the_float32_tolerance():
    e64 = L.explain(cnn(), X, R.Epsilon(0.01))
    e32 = L.explain(cnn().astype(np.float32), X, R.Epsilon(0.01))
    assert not C.compare(cnn(), X, R.Epsilon(0.01), e32.relevance).ok
    assert C.compare(cnn(), X, R.Epsilon(0.01), e32.relevance, dtype=np.float32).ok
    assert tolerance_for(np.float32).rtol > tolerance_for(np.float64).rtol
    assert_relevance_close(e32.relevance, e64.relevance, dtype="float32")


def test_assert_relevance_close_message():
    desired = np.array([[1.0, -2.0, 0.0]])
    assert_relevance_close(desired + 1e-11, desired)
    with pytest.raises(AssertionError, match=r"max \|actual - desired\| = 1.000e-06 at index \(0, 2\)"):
        assert_relevance_close(desired + np.array([[0, 0, 1e-6]]), desired)
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_relevance_close(desired[:, :2], desired)
    with pytest.raises(AssertionError, match="non-finite"):
        assert_relevance_close(np.array([[np.nan, 0, 0]]), desired)
    assert_allclose(C.relevance_error(desired, desired), (0.0, 0.0), atol=0)


def test_cli_compare_pinpoints_a_planted_bug(tmp_path):
    model = L.load(ROOT / "weights" / "mnist_cnn.h5")
    with h5py.File(ROOT / "weights" / "mnist_samples.h5", "r") as f:
        x = (f["images"][5].astype(np.float64) / 255.0)[None, None]
    buggy = L.Sequential([*model.layers[:3], FlippedKernelConv2d(model[3].weight, model[3].bias),
                          *model.layers[4:]])
    e = L.explain(buggy, x, R.Epsilon(0.25))
    path = tmp_path / "candidate.h5"
    with h5py.File(path, "w") as f:
        for k, r in enumerate(e.layers):
            f.create_dataset(f"relevance/{k:03d}", data=r[0])  # without the batch axis, as a user might
    args = ["compare", "--model", str(ROOT / "weights" / "mnist_cnn.h5"), "--input", "sample:5",
            "--rule", "epsilon:epsilon=0.25", "--candidate", str(path)]
    out = subprocess.run([sys.executable, "-m", "lrp_ref", *args], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1, out.stderr
    assert "first divergence: layer 3 (3 Conv2d(16 -> 32, 5x5, bias))" in out.stdout
    np.save(tmp_path / "good.npy", L.explain(model, x, R.Epsilon(0.25)).relevance[0])
    args[-1] = str(tmp_path / "good.npy")
    ok = subprocess.run([sys.executable, "-m", "lrp_ref", *args], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "all 1 boundaries match" in ok.stdout
