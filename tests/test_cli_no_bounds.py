"""Commands that run the seed's comparison on a model without input bounds (an ONNX or Keras import).

zB needs the bounds; the other rules do not.  compare-rules and check leave the zB
rules out with a note that says how to add bounds, instead of failing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import lrp_ref
from lrp_ref import catalog
from lrp_ref.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "weights" / "mnist_samples.h5"


@pytest.fixture
def unbounded(tmp_path):
    model = lrp_ref.load(ROOT / "weights" / "mnist_cnn.h5")
    meta = {k: v for k, v in model.metadata.items() if k not in ("input_low", "input_high")}
    path = tmp_path / "unbounded.h5"
    lrp_ref.save(lrp_ref.Sequential(list(model), meta), path)
    return path


def test_compare_rules_leaves_out_zb_and_says_how_to_add_bounds(unbounded, tmp_path, capsys):
    code = main(["compare-rules", "--model", str(unbounded), "--samples", str(SAMPLES), "--input", "sample:0",
                 "--more", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and (tmp_path / "out" / "compare_rules.png").is_file()
    zb = [label for label, spec in catalog.SEED_COMPARISON if catalog.needs_bounds(spec)]
    assert zb, "the seed's comparison has zB rules"
    assert "note: left out " + ", ".join(zb) in out and "--set input_low=L" in out
    headers = ("note", "explaining", "rule", "wrote")
    rows = [line for line in out.splitlines() if line.split(" ")[0] and not line.startswith(headers)]
    for label in zb:
        assert not any(row.startswith(label) for row in rows)
    kept = [label for label, spec in catalog.SEED_COMPARISON if not catalog.needs_bounds(spec)]
    for label in kept + [label for label, _ in catalog.MORE_COMPARISON]:
        assert any(row.startswith(label) for row in rows), label


def test_check_leaves_out_zb(unbounded, capsys):
    code = main(["check", "--model", str(unbounded), "--samples", str(SAMPLES)])
    out = capsys.readouterr().out
    assert code == 0 and "note: left out" in out and "FAILED" not in out
