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


# ----------------------------------------------------------------------------- the README section measures what it says


def test_readme_block_runs_and_its_table_holds(monkeypatch):
    import contextlib
    import io
    import re

    import h5py

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    block = next(b for b in blocks if "explain_excitation" in b)
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {})
    assert re.fullmatch(r"MWP 0\.9910 \+ dropped 0\.0090 = 1; c-MWP \+0\.0013; RAP 11\.255264 = f\(x\) 11\.255264\n",
                        out.getvalue())

    # the table: 30 shipped digits, mnist_cnn
    model = lrp_ref.load(CNN)
    with h5py.File(ROOT / "weights" / "mnist_samples.h5", "r") as f:
        x = np.asarray(f["images"], dtype=np.float64)[:, None] / 255.0
    n, stroke, faint = len(x), x > 0.5, (x > 0) & (x <= 0.5)

    def share(values, where):
        return float(np.mean(np.where(where, values, 0).reshape(n, -1).sum(1) / values.reshape(n, -1).sum(1)))

    from lrp_ref.excitation import explain_excitation

    mwp = explain_excitation(model, x)
    dropped = mwp.ledger.absorbed
    assert f"{100 * dropped.mean():.1f}% dropped on average (at most {100 * dropped.max():.1f}%)" in text
    assert mwp.relevance.min() >= 0 and f"{100 * share(mwp.relevance, stroke):.0f}% of it on stroke pixels" in text
    c = explain_excitation(model, x, contrastive=True).relevance
    assert np.abs(c.reshape(n, -1).sum(1)).max() < 0.005
    pos, neg = np.maximum(c, 0), -np.minimum(c, 0)
    assert f"({100 * share(pos, stroke):.0f}% and {100 * share(neg, stroke):.0f}%)" in text
    assert round(100 * pos.reshape(n, -1).sum(1).mean()) == round(100 * neg.reshape(n, -1).sum(1).mean()) == 5
    rap = lrp_ref.explain(model, x, composites.rap())
    r, lrp0 = rap.relevance, lrp_ref.explain(model, x, lrp_ref.rules.LRP0()).relevance
    assert_allclose(r.reshape(n, -1).sum(1), rap.score, rtol=1e-14)
    r_pos, r_neg = np.maximum(r, 0), -np.minimum(r, 0)
    positive = f"{100 * np.mean(r > 0):.0f}% of the pixels positive ({100 * share(r_pos, stroke):.0f}% of that mass"
    assert positive in text
    assert f"{100 * np.mean(r < 0):.1f}% negative" in text
    assert f"({100 * share(r_neg, faint):.0f}% of the negative" in text

    def neg_over_pos(m):
        return np.mean(-np.minimum(m, 0).reshape(n, -1).sum(1) / np.maximum(m, 0).reshape(n, -1).sum(1))

    assert f"{100 * neg_over_pos(r):.0f}% of the positive (LRP-0: {100 * neg_over_pos(lrp0):.0f}%)" in text
