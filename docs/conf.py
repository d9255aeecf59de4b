"""Sphinx configuration of lrp_ref's documentation site (``make docs``).

Why Sphinx: lrp_ref's docstrings are numpydoc with ``.. math::`` directives,
which Sphinx's autodoc and napoleon read as they are; MyST lets the Markdown
pages the repository already has (README, tutorial, format spec, profiles)
be pages of the site without copies.  Formulas render with MathJax 3 shipped
by the ``sphinx-mathjax-offline`` package from PyPI: copied into the build,
no CDN at build or view time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # autodoc documents the tree being built, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

import lrp_ref  # noqa: E402

project = "lrp_ref"
author = "lrp_ref developers"
copyright = "2026, lrp_ref developers"
release = version = lrp_ref.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
    "sphinx-mathjax-offline",  # MathJax 3 from the package, into _static/mathjax (sets mathjax_path)
    "cli_reference",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]

# numpydoc docstrings
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# lrp_ref annotates arrays as Array = NDArray[Any]: show that name, not its expansion
autodoc_type_aliases = {"Array": "numpy.ndarray", "NDArray[Any]": "numpy.ndarray"}
# source order (a student reads LRP0, Epsilon, Gamma... as in rules.py), not the alphabetical __all__
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_mock_imports: list[str] = []

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 4

html_theme = "furo"
html_title = f"lrp_ref {release}"
html_static_path: list[str] = []
html_show_sourcelink = False

# warnings are errors in `make docs`; nitpicky catches references to names that do not exist
nitpicky = False
suppress_warnings: list[str] = []

os.environ.setdefault("MPLBACKEND", "Agg")


# --- docstrings written for help() and the source, read by docutils too ----------------------
# numpydoc shape lines such as "x : array (N, *input_shape)" and plain-text norms such as
# "|absorbed|" are markup to reStructuredText (emphasis, substitution).  Escape them outside
# math blocks, :math: roles and ``literals``, so the docstrings stay as a reader of the source
# expects them.
import re  # noqa: E402

_SHAPE_STAR = re.compile(r"(?<=[(, ])\*(?=[A-Za-z_])")
_BARS = re.compile(r"(?<![`\\|])\|([A-Za-z_][\w.]*)\|(?!`)")


def _escape_text(text: str) -> str:
    parts = text.split("``")
    for k in range(0, len(parts), 2):  # even parts lie outside ``literals``
        parts[k] = _BARS.sub(r"\\|\1\\|", _SHAPE_STAR.sub(r"\\*", parts[k]))
    return "``".join(parts)


def _escape_docstring(app, what, name, obj, options, lines):  # type: ignore[no-untyped-def]
    math_indent: int | None = None
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if math_indent is not None and (not stripped or indent > math_indent):
            continue  # inside a math block
        math_indent = None
        if stripped.startswith(".. math::"):
            math_indent = indent
        elif ":math:" not in line:
            lines[i] = _escape_text(line)


# --- the repository's Markdown files, included as pages ------------------------------------
# README.md links to weights/README.md and bench/README.md, which are pages of this site too
# (format.md, speed.md), and to docs/X, which is X here.
_PAGE_OF = {"weights/README.md": "format.md", "bench/README.md": "speed.md", "bench/results.md": "bench_results.md",
            "../README.md": "overview.md"}


def _rewrite_links(app, relative_path, parent_docname, content):  # type: ignore[no-untyped-def]
    text = content[0]
    for target, page in _PAGE_OF.items():
        text = text.replace(f"]({target}", f"]({page}")
    # README's docs/X (pages and images) is X here: every page including it sits in docs/
    content[0] = re.sub(r"\]\(docs/", "](", text)


def _rewrite_page_links(app, docname, source):  # type: ignore[no-untyped-def]
    """A page in docs/ links to ../weights/README.md as GitHub shows it; here that file is format.md."""
    text = source[0]
    for target, page in _PAGE_OF.items():
        text = text.replace(f"](../{target.removeprefix('../')}", f"]({page}")
    source[0] = text


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("autodoc-process-docstring", _escape_docstring)
    app.connect("include-read", _rewrite_links)
    app.connect("source-read", _rewrite_page_links)
