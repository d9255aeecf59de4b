"""The documentation site (``make docs``): its sources, its links, its API coverage, and a real browser.

``make docs-check`` builds the site (warnings are errors) and runs this file
against the build; ``.ci/run`` calls it.  In a plain ``make test`` the tests
that need the built site skip, saying how to build it; the source checks run
everywhere.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import shutil
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.test_readme import run_block

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: the site under test: make docs-check sets it right after building (a plain make test does not
#: read a build left from an earlier checkout, which may be stale)
SITE_ENV = os.environ.get("LRP_REF_DOCS_SITE")

#: modules whose public names the API reference must document (importers needing extras included:
#: autodoc imports the module, and each imports its extra lazily, inside the functions)
API_MODULES = [
    "lrp_ref.graph", "lrp_ref.layers", "lrp_ref.pooling", "lrp_ref.norm", "lrp_ref.merge",
    "lrp_ref.rules", "lrp_ref.recipe", "lrp_ref.excitation", "lrp_ref.rap", "lrp_ref.composites", "lrp_ref.profiles",
    "lrp_ref.catalog",
    "lrp_ref.explain", "lrp_ref.ledger", "lrp_ref.canonize", "lrp_ref.io",
    "lrp_ref.formats", "lrp_ref.torch_bridge", "lrp_ref.onnx", "lrp_ref.keras",
    "lrp_ref.testing", "lrp_ref.ties", "lrp_ref.compare", "lrp_ref.vectors", "lrp_ref.viz", "lrp_ref.errors",
    "lrp_ref.serve.server", "lrp_ref.serve.api", "lrp_ref.dtd", "lrp_ref.evaluate",
    "lrp_ref.dataset",
]


def built_site() -> Path:
    if not SITE_ENV:
        pytest.skip("tests of the built site run in `make docs-check` (it builds the site and sets "
                    "LRP_REF_DOCS_SITE)")
    site = Path(SITE_ENV).resolve()
    if not (site / "index.html").is_file():
        pytest.fail(f"LRP_REF_DOCS_SITE={SITE_ENV} has no index.html: build the site with `make docs`")
    return site


# --- sources -------------------------------------------------------------------------------------

def doc_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL)


@pytest.mark.parametrize("page", [p.name for p in doc_pages() if python_blocks(p)])
def test_every_python_block_of_the_pages_runs(page, tmp_path, monkeypatch):
    """Each page's blocks, in order, in one namespace (a page reads as one session), from a scratch folder."""
    (tmp_path / "weights").symlink_to(ROOT / "weights")
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for k, code in enumerate(python_blocks(DOCS / page)):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(code, f"docs/{page}", "exec"), namespace)
        except Exception as exc:  # name the block: a bare traceback of exec'd code says little
            raise AssertionError(f"docs/{page}, python block {k}: {type(exc).__name__}: {exc}") from exc


def test_the_tutorial_writes_its_formulas_as_math():
    # the site renders $...$ and $$...$$ (MyST dollarmath, MathJax), and so does GitHub; a formula in a code span
    # or an indented code block stays plain text beside the rendered ones of the API reference
    text = (DOCS / "tutorial.md").read_text(encoding="utf-8")
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    as_code = re.findall(r"`[^`\n]*\bsum_[^`\n]*`|^ {4}\S.*\bsum_.*$", prose, flags=re.MULTILINE)
    assert not as_code, f"formulas written as code, not math: {as_code}"
    assert prose.count("$$") >= 2 and r"\frac" in prose


@pytest.mark.parametrize("page", [p.name for p in doc_pages() if python_blocks(p)])
def test_the_code_blocks_write_greek_letters_as_letters(page):
    # a student reads "LRP-ε", not "LRP-\\u03b5"; the blocks run as UTF-8 either way
    escapes = [m for block in python_blocks(DOCS / page) for m in re.findall(r"\\u[0-9a-fA-F]{4}", block)]
    assert not escapes, f"{page}: unicode escapes in its code: {escapes}"


def test_the_vectors_page_reads_a_committed_vector(monkeypatch):
    monkeypatch.chdir(ROOT)
    namespace, printed = run_block(python_blocks(DOCS / "vectors.md")[0])
    assert namespace["R_in"].shape == namespace["x"].shape  # type: ignore[attr-defined]
    assert "epsilon" in printed


def test_every_api_module_has_a_page():
    pages = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "api").glob("*.rst"))
    missing = [m for m in API_MODULES if f".. automodule:: {m}\n" not in pages]
    assert not missing, f"API modules without a page in docs/api/: {missing}"


# --- the built site ------------------------------------------------------------------------------

class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])  # type: ignore[arg-type]
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])  # type: ignore[arg-type]
        for key in ("href", "src"):
            if a.get(key) and not (tag == "link" and key == "href" and a.get("rel") in ("canonical",)):
                self.links.append(a[key])  # type: ignore[arg-type]


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_internal_links_and_anchors_resolve():
    site = built_site()
    pages = {p: _parse(p) for p in site.rglob("*.html") if "_static" not in p.parts}
    broken = []
    for page, parsed in pages.items():
        for link in parsed.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith(("//", "mailto:", "javascript:")):
                continue  # external: not checked offline (and the site needs none to work)
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {link} (no file {target})")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site)}: {link} (no anchor #{parts.fragment})")
    assert not broken, f"{len(broken)} broken internal link(s):\n" + "\n".join(broken[:40])


def test_every_public_name_is_in_the_api_reference():
    site = built_site()
    ids = set()
    for page in (site / "api").glob("*.html"):
        ids |= _parse(page).ids
    missing = []
    for module_name in API_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            home = getattr(obj, "__module__", module_name)
            if f"{module_name}.{name}" not in ids and f"{home}.{name}" not in ids:
                missing.append(f"{module_name}.{name}")
    assert not missing, f"public names without an entry in the API reference: {missing}"


def test_rule_pages_carry_their_formulas():
    site = built_site()
    html = (site / "api" / "rules.html").read_text(encoding="utf-8")
    for rule in ("LRP0", "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox", "WSquare", "Flat"):
        assert f'id="lrp_ref.rules.{rule}"' in html, rule
    # the formula is in the page, as math for MathJax, not as text that lost its backslashes
    assert html.count('class="math') >= 8
    assert r"\frac{a_j w_{jk}}{z_k + \epsilon\,\mathrm{sign}(z_k)}" in html


def subcommands() -> list[str]:
    import argparse

    from lrp_ref.cli import build_parser

    return [name for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)
            for name in action.choices]


def test_the_cli_reference_lists_every_subcommand():
    site = built_site()
    html = (site / "cli.html").read_text(encoding="utf-8")
    for name in subcommands():
        assert f'id="lrp-ref-{name}"' in html, name


def test_the_tutorial_formulas_are_math_on_the_site():
    site = built_site()
    page = (site / "tutorial.html").read_text(encoding="utf-8")
    assert page.count('class="math') >= 4
    assert "R_j = sum_k" not in page and r"\frac{a_j w_{jk}}{z_k}" in page


def test_the_changelog_names_every_subcommand():
    # a wave that adds a command adds its line to the changelog; a command missing there was never announced
    text = (DOCS / "changelog.md").read_text(encoding="utf-8")
    missing = [name for name in subcommands() if f"`{name}`" not in text and f"lrp-ref {name}" not in text]
    assert not missing, f"lrp-ref commands the changelog does not mention: {missing}"


def test_the_cli_reference_fits_the_page_width():
    # furo's text column shows about 90 characters of a code block; longer lines hide behind a scroll bar.
    # argparse cannot wrap the list of subcommands, one word; it wraps everything else to COLUMNS.
    site = built_site()
    blocks = re.findall(r"<pre>(.*?)</pre>", (site / "cli.html").read_text(encoding="utf-8"), flags=re.DOTALL)
    text = unescape(re.sub(r"<[^>]+>", "", "\n".join(blocks)))
    long = [line for line in text.splitlines() if len(line) > 88 and not line.strip().startswith("{")]
    assert not long, f"{len(long)} lines of the CLI reference wider than 88 characters, e.g. {long[:3]}"


def test_math_renders_offline():
    site = built_site()
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    html = (site / "api" / "rules.html").read_text(encoding="utf-8")
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert any("_static/mathjax/tex-chtml.js" in s for s in scripts)
    assert not [s for s in scripts if urlsplit(s).scheme], f"scripts loaded from the network: {scripts}"


# --- a real browser --------------------------------------------------------------------------------

def _missing(message: str) -> None:
    """Skip, naming what is missing; fail where a browser is required (CI sets LRP_REF_REQUIRE_BROWSER)."""
    if os.environ.get("LRP_REF_REQUIRE_BROWSER"):
        pytest.fail(f"{message} (LRP_REF_REQUIRE_BROWSER is set, as in CI)")
    pytest.skip(message)


def _browser():
    """Headless Chromium through selenium, or a skip naming what is missing."""
    try:
        from selenium import webdriver
    except ImportError:
        _missing("selenium is not installed (the test extra: pip install -e '.[test]')")
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        _missing("no Chromium: install the Debian packages `chromium` and `chromium-driver`")
    if not shutil.which("chromedriver"):
        _missing("no chromedriver: install the Debian package `chromium-driver`")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1600", "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")  # type: ignore[assignment]
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def _wait(driver, script: str, what: str, timeout: float = 30.0):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: d.execute_script(script))
    except Exception as exc:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from exc


def test_a_browser_renders_the_formulas_and_searches(tmp_path):
    site = built_site()
    driver = _browser()
    try:
        driver.get((site / "index.html").as_uri())
        _wait(driver, "return document.querySelectorAll('mjx-container').length > 0", "MathJax on the index")
        driver.get((site / "api" / "rules.html").as_uri())
        rendered = _wait(driver, "return document.querySelectorAll('mjx-container').length",
                         "MathJax on the rules page")
        assert rendered >= 8
        text = driver.execute_script("return document.body.innerText")
        assert "\\frac" not in text, "raw LaTeX left in the rules page: MathJax did not typeset it"
        shot = tmp_path / "rules.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        keep = os.environ.get("LRP_REF_DOCS_SCREENSHOTS")
        if keep:  # make docs-check keeps it beside the site, for a reader to look at
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / "rules.png")
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        remote = [r for r in resources if not r.startswith("file:")]
        assert not remote, f"the page fetched from the network: {remote}"

        driver.get((site / "search.html").as_uri() + "?q=WSquare")
        _wait(driver, "return document.querySelectorAll('#search-results li, ul.search li').length > 0",
              "search results for 'WSquare'")
        hits = driver.execute_script(
            "return Array.from(document.querySelectorAll('#search-results li, ul.search li'))"
            ".map(li => li.innerText)")
        assert any("WSquare" in h for h in hits), hits
    finally:
        driver.quit()
