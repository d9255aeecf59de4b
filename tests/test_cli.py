"""The lrp-ref command line, run as a user would (python -m lrp_ref), on the shipped CNN."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose

import lrp_ref
from lrp_ref import catalog

ROOT = Path(__file__).resolve().parent.parent
CNN = ROOT / "weights" / "mnist_cnn.h5"
SAMPLES = ROOT / "weights" / "mnist_samples.h5"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lrp_ref", *args], capture_output=True, text=True, cwd=ROOT)


def test_info():
    out = run("info", "--model", str(CNN))
    assert out.returncode == 0, out.stderr
    assert "Conv2d(1 -> 16, 5x5, bias)" in out.stdout
    assert "test_accuracy" in out.stdout and "CC BY-SA 3.0" in out.stdout
    assert "(32, 4, 4)" in out.stdout


def test_explain_writes_heatmap_relevance_and_ledger(tmp_path):
    out = run("explain", "--model", str(CNN), "--input", "sample:4", "--rule", "epsilon:epsilon=0.25",
              "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "f(x) (start)" in out.stdout and "Epsilon(epsilon=0.25)" in out.stdout
    for name in ("heatmap.png", "overlay.png", "relevance.npy", "ledger.txt"):
        assert (tmp_path / name).is_file()
    # the saved relevance is what the library computes
    model = lrp_ref.load(CNN)
    with h5py.File(SAMPLES, "r") as f:
        raw = f["images"][4]
    x = (raw.astype(np.float64) * model.metadata["input_scale"] + model.metadata["input_offset"])[None, None]
    expected = lrp_ref.explain(model, x, lrp_ref.rules.Epsilon(0.25)).relevance[0]
    assert_allclose(np.load(tmp_path / "relevance.npy"), expected, rtol=1e-12, atol=0)


def test_explain_reads_npy_of_raw_pixels(tmp_path):
    with h5py.File(SAMPLES, "r") as f:
        raw = f["images"][7]
    np.save(tmp_path / "digit.npy", raw)
    a = run("explain", "--model", str(CNN), "--input", str(tmp_path / "digit.npy"), "--rule", "lrp0",
            "--out", str(tmp_path / "a"))
    b = run("explain", "--model", str(CNN), "--input", "sample:7", "--rule", "lrp0", "--out", str(tmp_path / "b"))
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert_allclose(np.load(tmp_path / "a" / "relevance.npy"), np.load(tmp_path / "b" / "relevance.npy"),
                    rtol=0, atol=0)


def test_compare_rules_figure(tmp_path):
    out = run("compare-rules", "--model", str(CNN), "--input", "sample:0", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "compare_rules.png").stat().st_size > 10_000
    for label, _ in catalog.SEED_COMPARISON:
        assert label in out.stdout


def test_check_reports_every_rule():
    out = run("check", "--model", str(CNN))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.rstrip().endswith(" ok")]
    names = {spec for _, spec in catalog.SEED_COMPARISON} | set(catalog.COMPOSITES) | set(catalog.RULES)
    n_rules = len(names - catalog.INPUT_ONLY)
    assert len(lines) == n_rules
    assert "check [" in out.stderr  # the progress bar


@pytest.mark.parametrize("args, message", [
    (("info", "--model", "nowhere.h5"), "model file nowhere.h5 not found"),
    (("explain", "--model", str(CNN), "--input", "sample:99", "--rule", "lrp0", "--out", "x"), "holds samples 0..29"),
    (("explain", "--model", str(CNN), "--input", "sample:0", "--rule", "magic", "--out", "x"),
     "unknown rule or composite 'magic'"),
    (("explain", "--model", str(CNN), "--input", "sample:0", "--rule", "gamma:gamma=-1", "--out", "x"),
     "gamma must be a finite number >= 0"),
    (("explain", "--model", str(CNN), "--input", "README.md", "--rule", "lrp0", "--out", "x"),
     "expected sample:K, .npy, .h5 or .png"),
    (("explain", "--model", str(CNN), "--input", "sample:0", "--out", "x"), "the following arguments are required"),
    (("explain", "--model", "README.md", "--input", "sample:0", "--rule", "lrp0", "--out", "x"), "HDF5"),
    (("frobnicate",), "invalid choice"),
])
def test_bad_arguments_print_one_line(args, message):
    out = run(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_wrong_input_shape_is_one_clear_line(tmp_path):
    np.save(tmp_path / "small.npy", np.zeros((5, 5)))
    out = run("explain", "--model", str(CNN), "--input", str(tmp_path / "small.npy"), "--rule", "lrp0",
              "--out", str(tmp_path))
    assert out.returncode == 2
    assert "has shape (5, 5); the model expects (1, 28, 28)" in out.stderr


@pytest.mark.parametrize("spec, kind", [
    ("lrp0", "LRP0"), ("epsilon:epsilon=0.25", "Epsilon"), ("alpha_beta:alpha=3,beta=2", "AlphaBeta"),
    ("epsilon_gamma_box", "LayerTypeComposite"), ("depth_based:n_upper=2", "DepthComposite"),
    ("zbox+epsilon", "LayerTypeComposite"),
])
def test_catalog_specs(spec, kind):
    built = catalog.from_spec(spec, bounds=(0.0, 1.0))
    assert type(built).__name__ == kind


def test_catalog_spec_errors():
    with pytest.raises(lrp_ref.RuleParameterError, match="needs input bounds"):
        catalog.from_spec("zbox")
    with pytest.raises(lrp_ref.RuleParameterError, match="is not a number"):
        catalog.from_spec("epsilon:epsilon=big")
    with pytest.raises(lrp_ref.RuleParameterError, match="expected key=value"):
        catalog.from_spec("epsilon:0.25")
    with pytest.raises(lrp_ref.RuleParameterError, match="bad parameters for 'lrp0'"):
        catalog.from_spec("lrp0:epsilon=1")
    with pytest.raises(lrp_ref.RuleParameterError, match="must be single rules"):
        catalog.from_spec("flat+epsilon_plus")
