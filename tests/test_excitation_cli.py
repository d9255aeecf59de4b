"""The command line for the methods beyond LRP: compare-rules --more and explain --rule with their names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

import lrp_ref
from lrp_ref import catalog, composites
from lrp_ref.cli import main

ROOT = Path(__file__).resolve().parent.parent
CNN = ROOT / "weights" / "mnist_cnn.h5"
RESNET = ROOT / "weights" / "mnist_resnet.h5"


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compare_rules_more_adds_the_row(capsys, tmp_path):
    code, out, _ = _cli(capsys, "compare-rules", "--model", CNN, "--input", "sample:0", "--more", "--out", tmp_path)
    assert code == 0
    assert (tmp_path / "compare_rules.png").stat().st_size > 10_000
    rows = {line[:30].strip(): line for line in out.splitlines()}
    for label, _ in catalog.SEED_COMPARISON + catalog.MORE_COMPARISON:
        assert label in rows
    # RAP conserves f(x) exactly: its sum R column is the score, nothing absorbed; c-MWP sums to ~0
    model = lrp_ref.load(CNN)
    score = float(model.forward(_digit(model, 0)).max())
    total, absorbed = (float(v) for v in rows["RAP"][30:].split()[:2])
    assert_allclose(total, score, rtol=1e-3)
    assert absorbed == 0
    assert abs(float(rows["contrastive MWP (c-MWP)"][30:].split()[0])) < 0.01 * score


def test_compare_rules_default_has_no_more_row(capsys, tmp_path):
    code, out, _ = _cli(capsys, "compare-rules", "--model", CNN, "--input", "sample:0", "--out", tmp_path)
    assert code == 0
    for label, _ in catalog.MORE_COMPARISON:
        assert label not in out


@pytest.mark.parametrize("name", list(catalog.METHODS))
def test_explain_with_a_method_name(capsys, tmp_path, name):
    code, _, _ = _cli(capsys, "explain", "--model", CNN, "--input", "sample:2", "--rule", name, "--out", tmp_path)
    assert code == 0
    saved = np.load(tmp_path / "relevance.npy")
    model = lrp_ref.load(CNN)
    expected = lrp_ref.explain(model, _digit(model, 2), catalog.from_spec(name)).relevance[0]
    assert_allclose(saved, expected, rtol=1e-12, atol=0)


def _digit(model, index):
    import h5py

    with h5py.File(ROOT / "weights" / "mnist_samples.h5", "r") as f:
        raw = np.asarray(f["images"][index], dtype=np.float64)
    return (raw * model.metadata["input_scale"] + model.metadata["input_offset"])[None, None]


def test_resnet_runs_both_methods():
    model = lrp_ref.load(RESNET)
    x = _digit(model, 5)
    for composite in (composites.excitation_backprop(), composites.rap()):
        e = lrp_ref.explain(model, x, composite)
        e.ledger.check_balance()
        e.ledger.check_conservation()
