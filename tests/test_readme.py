"""The README's examples run as written and say what they claim."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from numpy.testing import assert_allclose

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def run_block(code: str) -> tuple[dict[str, object], str]:
    namespace: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), namespace)
    return namespace, out.getvalue()


def test_readme_has_the_set_up_commands_and_the_figure():
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
    assert (ROOT / "docs" / "compare_rules.png").is_file()
    assert "](docs/compare_rules.png)" in text


def test_ten_line_example_runs():
    namespace, printed = run_block(python_blocks()[0])
    assert "(1, 1, 28, 28)" in printed
    assert "f(x) (start)" in printed
    assert namespace["e"].relevance.shape == (1, 1, 28, 28)  # type: ignore[attr-defined]


def test_tutorial_runs(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    (tmp_path / "weights").symlink_to(ROOT / "weights")
    monkeypatch.chdir(tmp_path)
    namespace, printed = run_block(python_blocks()[1])
    assert "class 0 (true 0)" in printed
    assert "Conv2d(1 -> 16, 5x5, bias)" in printed
    e = namespace["e"]
    assert_allclose(e.score[0], e.relevance.sum() + e.ledger.absorbed[0], rtol=1e-12)  # type: ignore[attr-defined]
    assert (tmp_path / "heatmap.png").is_file() and (tmp_path / "overlay.png").is_file()


def test_readme_accuracies_match_the_shipped_files():
    import lrp_ref

    text = README.read_text(encoding="utf-8")
    for name in ("mnist_cnn", "mnist_mlp", "mnist_resnet"):
        accuracy = lrp_ref.load(ROOT / "weights" / f"{name}.h5").metadata["test_accuracy"]
        assert f"`weights/{name}.h5`" in text
        assert f"{100 * accuracy:.2f}%" in text


def test_implementer_example_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    namespace, printed = run_block(python_blocks()[3])
    assert "boundary" in printed and "first divergence" not in printed
    assert "all 11 boundaries match the oracle (profile zennit) within 0.0001 of max|R|" in printed
    assert namespace["report"].ok  # type: ignore[attr-defined]


def test_graph_example_runs():
    namespace, printed = run_block(python_blocks()[2])
    assert "['bn1', 'bn2']" in printed
    assert "sum: Add(2 inputs)" in printed and "f(x) (start)" in printed
    e = namespace["e"]
    assert e.relevance.shape == (2, 3, 16, 16)  # type: ignore[attr-defined]
    assert_allclose(namespace["R_fc"], e.layers[-2], rtol=1e-12)  # type: ignore[attr-defined]


def test_every_python_block_is_run_by_a_test():
    assert len(python_blocks()) == 5  # block 4, explain_dataset: tests/test_dataset.py
