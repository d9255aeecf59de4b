"""On a terminal, the progress bar (stderr) and the tables (stdout) of the command line never share a line.

The commands run in a pseudo-terminal, as a user sees them; a small terminal
emulator (carriage return, line feed, overwrite) reconstructs the screen.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pty = pytest.importorskip("pty", reason="pseudo-terminals need a POSIX system")

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "weights" / "mnist_mlp.h5"


def screen(*args: object) -> list[str]:
    """The lines a terminal shows after ``python -m lrp_ref ARGS`` with stdout and stderr on it."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, on the pseudo-terminal
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "lrp_ref", *map(str, args)])
    raw = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child has closed the terminal
            break
        if not chunk:
            break
        raw += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, raw.decode(errors="replace")
    lines: list[list[str]] = [[]]
    col = 0
    for ch in raw.decode():
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append([])
            col = 0
        else:
            line = lines[-1]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = ch
            col += 1
    return ["".join(line).rstrip() for line in lines]


def assert_apart(lines: list[str], bar_labels: tuple[str, ...], table_words: tuple[str, ...]) -> None:
    bars = [line for line in lines if any(f"{label} [" in line for label in bar_labels)]
    assert bars, "no progress bar on the screen"
    for line in bars:
        assert not any(word in line for word in table_words), f"bar and table share a line: {line!r}"
        assert line.lstrip().startswith(bar_labels), f"the bar does not start its line: {line!r}"


def test_compare_rules_table_and_bar_apart(tmp_path):
    lines = screen("compare-rules", "--model", MLP, "--input", "sample:0,1", "--out", tmp_path)
    assert_apart(lines, ("rules", "figures"), ("sum R", "LRP-", "explaining", "wrote"))
    rows = [line for line in lines if line.startswith("LRP-0 ")]
    assert len(rows) == 2  # one table per sample, each row on its own line


def test_explain_batch_headlines_and_bar_apart(tmp_path):
    lines = screen("explain", "--model", MLP, "--input", "sample:0,1", "--rule", "epsilon", "--out", tmp_path)
    assert_apart(lines, ("samples",), ("sum R", "explained", "wrote"))
    assert sum(line.startswith("sample 00") for line in lines) == 2
