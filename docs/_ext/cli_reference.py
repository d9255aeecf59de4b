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

        os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; the page has a fixed width
        parser = build_parser()
        parser.prog = "lrp-ref"
        out: list[nodes.Node] = [nodes.literal_block(text=parser.format_help(), language="text")]
        for name, sub in _subcommands(parser):
            sub.prog = f"lrp-ref {name}"
            section = nodes.section(ids=[f"lrp-ref-{name}"], names=[f"lrp-ref {name}"])
            section += nodes.title(text=f"lrp-ref {name}")
            section += nodes.literal_block(text=sub.format_help(), language="text")
            out.append(section)
        return out


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("lrp-ref-cli", CliReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
