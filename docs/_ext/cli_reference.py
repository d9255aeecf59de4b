"""``.. lrp-ref-cli::``: the command-line reference, generated from lrp_ref's argparse parser.

Every subcommand's ``--help`` text as the user sees it, so the reference
cannot drift from the code.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive

#: the width the help texts are wrapped to (characters)
WIDTH = 88


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:  # argparse keeps its subparsers here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            found.extend(action.choices.items())
    return found


class CliReference(Directive):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from lrp_ref.cli import build_parser

        # argparse wraps to the terminal's COLUMNS; furo's text column shows about 90 characters of a
        # code block, so wrap to 88 (wider lines hide behind a scroll bar), and leave the environment as it was
        before = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = str(WIDTH)
        try:
            parser = build_parser()
            parser.prog = "lrp-ref"
            out: list[nodes.Node] = [nodes.literal_block(text=parser.format_help(), language="text")]
            for name, sub in _subcommands(parser):
                sub.prog = f"lrp-ref {name}"
                section = nodes.section(ids=[f"lrp-ref-{name}"], names=[f"lrp-ref {name}"])
                section += nodes.title(text=f"lrp-ref {name}")
                section += nodes.literal_block(text=sub.format_help(), language="text")
                out.append(section)
        finally:
            if before is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = before
        return out


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("lrp-ref-cli", CliReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
