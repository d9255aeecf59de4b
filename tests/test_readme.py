"""The README's examples and the tutorial (docs/tutorial.md) run as written and say what they claim.

The tutorial's blocks run in order in one namespace; where a ```text block
follows a python block, the printed output must match it (numbers to 4
significant digits, tiny rounding residuals to 1e-12).  Run this file as a
script (``python tests/test_readme.py``) to regenerate the tutorial's figures
in docs/ from the repository root.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from numpy.testing import assert_allclose

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TUTORIAL = ROOT / "docs" / "tutorial.md"
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def run_block(code: str, namespace: dict[str, object] | None = None, where: str = "README.md"
              ) -> tuple[dict[str, object], str]:
    namespace = {} if namespace is None else namespace
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, where, "exec"), namespace)
    return namespace, out.getvalue()


def tutorial_blocks() -> list[tuple[str, str | None]]:
    """The tutorial's python blocks, each with the text block that shows its output (None where there is none)."""
    parts = re.findall(r"```(python|text)\n(.*?)```", TUTORIAL.read_text(encoding="utf-8"), flags=re.DOTALL)
    blocks: list[tuple[str, str | None]] = []
    for kind, body in parts:
        if kind == "python":
            blocks.append((body, None))
        else:
            assert blocks and blocks[-1][1] is None, "a text block must follow a python block"
            blocks[-1] = (blocks[-1][0], body)
    return blocks


def tutorial_figures() -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", TUTORIAL.read_text(encoding="utf-8"))


def assert_same_output(found: str, expected: str, where: str) -> None:
    """Line by line: the same words, the same numbers to 4 significant digits (rounding residuals to 1e-12)."""
    got, want = found.rstrip().splitlines(), expected.rstrip().splitlines()
    assert len(got) == len(want), f"{where}: printed {len(got)} lines, the tutorial shows {len(want)}:\n{found}"
    for g, w in zip(got, want):
        assert NUMBER.sub("#", g).split() == NUMBER.sub("#", w).split(), f"{where}: printed\n{g}\nnot\n{w}"
        assert_allclose([float(v) for v in NUMBER.findall(g)], [float(v) for v in NUMBER.findall(w)],
                        rtol=1e-4, atol=1e-12, err_msg=f"{where}: printed\n{g}\nnot\n{w}")


def run_tutorial(namespace: dict[str, object] | None = None) -> list[str]:
    """Every block of the tutorial in order, in the current directory; returns what each printed."""
    namespace = {} if namespace is None else namespace
    printed = []
    for i, (code, expected) in enumerate(tutorial_blocks()):
        _, out = run_block(code, namespace, f"docs/tutorial.md block {i}")
        if expected is not None:
            assert_same_output(out, expected, f"docs/tutorial.md block {i}")
        printed.append(out)
    return printed


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


def test_onnx_example_runs(monkeypatch):
    pytest.importorskip("onnx")
    monkeypatch.chdir(ROOT)
    namespace, printed = run_block(next(b for b in python_blocks() if "from_onnx(" in b))
    lines = printed.splitlines()
    assert "producer pytorch 2.13.0+cpu; opset 20" in lines[0]
    assert float(lines[1]) < 1e-12
    assert namespace["e"].relevance.shape == (2, 1, 28, 28)  # type: ignore[attr-defined]


def block_with(text: str) -> str:
    found = [b for b in python_blocks() if text in b]
    assert len(found) == 1, f"expected one python block containing {text!r}; found {len(found)}"
    return found[0]


def test_keras_import_example_runs(monkeypatch):
    monkeypatch.chdir(ROOT)  # the example reads a fixture by its path in the repository
    namespace, printed = run_block(block_with("from_keras("))
    assert printed.split() == ["Graph", "(3,", "8,", "8)"]
    assert namespace["heatmap"].shape == (2, 8, 8, 3)  # type: ignore[attr-defined]


def test_dtd_example_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    namespace, printed = run_block(block_with("dtd.check_model"))
    assert "max |Taylor term - message|" in printed and "ZPlus()" in printed
    c = namespace["c"]
    assert c.ok and c.max_error <= 1e-10  # type: ignore[attr-defined]


def test_pixel_flipping_example_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    namespace, printed = run_block(block_with("evaluate.evaluate"))
    assert "| random (3 seeds" in printed and "| LRP-0 |" in printed
    result = namespace["result"]
    assert result.methods[0].aopc > result.random.aopc  # type: ignore[attr-defined]


def test_every_python_block_is_run_by_a_test():
    # blocks 0-3, the ONNX, Keras, DTD and pixel-flipping blocks above; "Beyond LRP":
    # tests/test_excitation_cli.py::test_readme_block_runs_and_its_table_holds; explain_dataset: tests/test_dataset.py
    assert len(python_blocks()) == 10


def test_the_tutorial_runs_and_prints_what_it_shows(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    (tmp_path / "weights").symlink_to(ROOT / "weights")
    (tmp_path / "docs").mkdir()
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    printed = run_tutorial(namespace)
    assert len(printed) == 7 and sum(e is not None for _, e in tutorial_blocks()) == 7
    # the tutorial's own claims, checked here too
    e, en = namespace["e"], namespace["en"]
    assert_allclose(e.score, e.relevance.sum() + e.ledger.absorbed, rtol=1e-12)  # type: ignore[attr-defined]
    assert en.start_at == "3" and len(en.layers) == 5  # type: ignore[attr-defined]
    figures = tutorial_figures()
    assert figures == ["tutorial_rules.png", "tutorial_neuron.png"]
    for name in figures:  # made by the code, and the committed copy is the same picture
        made, shipped = tmp_path / "docs" / name, ROOT / "docs" / name
        assert made.is_file() and shipped.is_file()
        from PIL import Image

        with Image.open(made) as a, Image.open(shipped) as b:
            assert a.size == b.size


def test_the_readme_links_the_tutorial():
    assert "](docs/tutorial.md)" in README.read_text(encoding="utf-8")


if __name__ == "__main__":  # regenerate the tutorial's figures in docs/
    import os

    os.chdir(ROOT)
    for i, out in enumerate(run_tutorial()):
        print(f"--- block {i}\n{out}", end="")
    print(f"wrote {', '.join('docs/' + name for name in tutorial_figures())}")
