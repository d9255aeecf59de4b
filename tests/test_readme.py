"""The README's examples run as written and say what they claim."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_readme_has_the_commands():
    text = README.read_text(encoding="utf-8")
    assert "make test" in text


def test_ten_line_example_runs():
    blocks = python_blocks()
    assert blocks, "README has no python example"
    namespace: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), namespace)
    printed = out.getvalue()
    assert "(1, 1, 28, 28)" in printed
    assert "f(x) (start)" in printed
    e = namespace["e"]
    assert e.relevance.shape == (1, 1, 28, 28)  # type: ignore[attr-defined]
