#!/usr/bin/env python3
"""Rewrite the conventions table in docs/profiles.md from lrp_ref.profiles.table() (tests check they agree)."""

from __future__ import annotations

from pathlib import Path

from lrp_ref.profiles import table

DOC = Path(__file__).resolve().parent.parent / "docs" / "profiles.md"


def main() -> None:
    lines = DOC.read_text(encoding="utf-8").split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("| convention |"))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[start:end] = table().split("\n")
    DOC.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
