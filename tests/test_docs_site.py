"""The documentation site as a reader gets it: the built HTML, checked page by page.

- no reStructuredText left (`:func:`, `:math:`, double backticks, `.. math::`), no literal
  `$`, `$$`, `\\(` or `\\|` in the text, no list run into a paragraph;
- math is MathML, converted at build time: no script or stylesheet from the network;
- every table sits in a horizontally scrolling wrapper, so no table widens a page;
- every public function and class of every public module has an API entry (its anchor), and
  in the modules whose docstrings follow docs/contributing-docs.md each entry has a
  signature, math, parameters, returns (functions) and an example;
- the version shows, the changelog is on the site, the LICENSE is there.

The site is built with mkdocs into a temporary folder, or read from SMOOTHCE_SITE_DIR when
set (``python3 dev.py docs`` builds strictly, then runs this module on that build in the docs
environment). Where mkdocs is not installed the module is skipped.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# public module -> (file holding its __all__, its API page)
PUBLIC_MODULES = {
    "smoothce": ("core/__init__.py", "api/core"),
    "smoothce.metrics": ("core/metrics.py", "api/metrics"),
    "smoothce.torch": ("adapters/torch/__init__.py", "api/torch"),
    "smoothce.jax": ("adapters/jax/__init__.py", "api/jax"),
    "smoothce.tensorflow": ("adapters/tensorflow/__init__.py", "api/tensorflow"),
    "smoothce.keras": ("adapters/keras/__init__.py", "api/keras"),
}
# public modules whose docstrings do not follow docs/contributing-docs.md yet: only their
# anchors are checked, not the completeness of their entries. Empty: every module follows it.
LEGACY: set[str] = set()

# pages that show the forbidden markup on purpose, as examples of what not to write
DESCRIBES_MARKUP = {"contributing-docs"}
GUIDES_EXCLUDED = {"api", "changelog", "contributing-docs"}  # besides the api/* pages

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
VOID |= {"track", "wbr", "param"}
REST = re.compile(r":(?:func|class|meth|math|attr|mod|exc|data|obj):`|``\w|\.\. math::")

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None and not os.environ.get("SMOOTHCE_SITE_DIR"),
    reason="mkdocs is not installed (`python3 dev.py docs` runs this module in .venv-docs)",
)


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def text(self, skip: frozenset[str] = frozenset()) -> str:
        return "".join(
            c if isinstance(c, str) else c.text(skip)
            for c in self.children
            if isinstance(c, str) or c.tag not in skip
        )


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.current = Node("#document", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:  # else a stray end tag: ignore it
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(path: Path) -> Node:
    builder = _TreeBuilder()
    builder.feed(path.read_text(encoding="utf-8"))
    return builder.root


def public_names(module: str) -> list[str]:
    path = ROOT / PUBLIC_MODULES[module][0]
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            names = ast.literal_eval(node.value)
            return [n for n in names if f"{module}.{n}" not in PUBLIC_MODULES]
    raise AssertionError(f"{path} has no __all__")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    given = os.environ.get("SMOOTHCE_SITE_DIR")
    if given:
        return Path(given).resolve()
    if importlib.util.find_spec("latex2mathml") is None:
        pytest.skip("the docs extra is not installed (`pip install .[docs]`)")
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def pages(site) -> dict[str, Node]:
    found = {
        str(p.relative_to(site).parent).replace("\\", "/"): parse(p)
        for p in sorted(site.rglob("index.html"))
        if "assets" not in p.parts
    }
    assert len(found) >= 10, sorted(found)
    return found


def _article(page: Node) -> Node:
    return next(n for n in page.iter() if n.tag == "article")


def _texts(node: Node, skip: frozenset[str] = frozenset({"script", "style", "pre"})):
    """(text, its element) pairs under node, outside the tags in ``skip``."""
    for child in node.children:
        if isinstance(child, str):
            yield child, node
        elif child.tag not in skip and child.tag != "math":
            yield from _texts(child, skip)


def test_no_restructuredtext_and_no_raw_math(pages):
    bad = []
    for name, page in pages.items():
        if name in DESCRIBES_MARKUP:
            continue
        article = _article(page)
        for text, _ in _texts(article, frozenset({"script", "style"})):
            if REST.search(text):
                bad.append(f"{name}: reST markup in {text.strip()[:80]!r}")
            if "\\|" in text:
                bad.append(f"{name}: literal \\| in {text.strip()[:80]!r}")
        for text, element in _texts(article):
            if element.tag == "code":
                continue
            if "$" in text or "\\(" in text or "\\[" in text:
                bad.append(f"{name}: raw math in {text.strip()[:80]!r}")
    assert not bad, "\n".join(bad)


def test_no_list_run_into_a_paragraph(pages):
    bad = []
    for name, page in pages.items():
        for p in (n for n in _article(page).iter() if n.tag == "p"):
            text = p.text(frozenset({"math", "code"}))
            if re.search(r"\n\s*(?:[-*+]|\d+\.) \S", text):
                bad.append(f"{name}: {text.strip()[:100]!r}")
    assert not bad, "a list item inside a paragraph (a blank line is missing):\n" + "\n".join(bad)


def test_math_is_mathml_and_nothing_comes_from_the_network(pages):
    formulas = 0
    for name, page in pages.items():
        for node in page.iter():
            if node.tag == "script" and node.attrs.get("src"):
                assert not re.match(r"(?i)(https?:)?//", node.attrs["src"]), (name, node.attrs)
            if node.tag == "link" and "stylesheet" in node.attrs.get("rel", ""):
                assert not re.match(r"(?i)(https?:)?//", node.attrs["href"]), (name, node.attrs)
            assert "arithmatex" not in node.classes, f"{name}: unconverted math"
            if node.tag == "script":
                assert not re.search(r"(?i)mathjax|katex", node.text()), name
            formulas += node.tag == "math"
    assert formulas > 100  # the math page, the guides and the API entries


def test_every_table_scrolls(pages):
    for name, page in pages.items():
        for table in (n for n in page.iter() if n.tag == "table"):
            wrapper = table.parent
            assert wrapper is not None and "table-scroll" in wrapper.classes, name


def _entry(page: Node, anchor: str) -> Node | None:
    heading = next((n for n in page.iter() if n.attrs.get("id") == anchor), None)
    return None if heading is None else heading.parent  # div.doc-object


def test_every_public_object_has_an_entry(pages):
    missing = []
    for module, (_, page_name) in PUBLIC_MODULES.items():
        page = pages[page_name]
        for name in public_names(module):
            if _entry(page, f"{module}.{name}") is None:
                missing.append(f"{module}.{name} (on {page_name})")
    assert not missing, "no API entry for: " + ", ".join(missing)


def _sections(entry: Node) -> set[str]:
    return {
        n.text().strip().rstrip(":")
        for n in entry.iter()
        if "doc-section-title" in n.classes
        and next(a for a in n.ancestors() if "doc-object" in a.classes) is entry
    }


@pytest.mark.parametrize("module", [m for m in PUBLIC_MODULES if m not in LEGACY])
def test_entries_are_complete(pages, module):
    page = pages[PUBLIC_MODULES[module][1]]
    bad = []
    for name in public_names(module):
        entry = _entry(page, f"{module}.{name}")
        kind = next(c for c in ("function", "class", "attribute") if f"doc-{c}" in entry.classes)
        signature = next((n for n in entry.iter() if "doc-signature" in n.classes), None)
        sections = _sections(entry)
        wanted = {"function": {"Parameters", "Returns", "Examples"}, "class": {"Examples"}}
        if signature is None or (kind != "attribute" and "(" not in signature.text()):
            bad.append(f"{name}: no signature")
        fields = [n for n in entry.iter() if n is not entry and "doc-attribute" in n.classes]
        if kind == "class" and "Parameters" not in sections and not fields:
            bad.append(f"{name}: neither constructor parameters nor documented fields")
        if not wanted.get(kind, set()) <= sections:
            bad.append(f"{name}: sections {sorted(sections)}")
        if kind != "attribute" and not any(n.tag == "math" for n in entry.iter()):
            bad.append(f"{name}: no formula")
    assert not bad, "\n".join(bad)


def test_guides_link_the_entries_they_name(pages):
    """Inline code naming a public object (`smoothce.loss`, or `metrics.softmax` after
    `from smoothce import metrics`) is a link to its entry."""
    names = {f"{m}.{n}" for m in PUBLIC_MODULES for n in public_names(m)}
    names |= {n.replace("smoothce.", "", 1) for n in names if n.startswith("smoothce.metrics.")}
    bad = []
    for name, page in pages.items():
        if name in GUIDES_EXCLUDED or name.startswith("api/"):
            continue
        for code in _article(page).iter():
            if code.tag != "code" or code.text().strip() not in names:
                continue
            ancestors = [a.tag for a in code.ancestors()]
            if (
                "a" not in ancestors
                and "pre" not in ancestors
                and not any(t in ancestors for t in ("h1", "h2", "h3", "h4"))
            ):
                bad.append(f"{name}: {code.text().strip()}")
    assert not bad, "not linked to its API entry: " + ", ".join(bad)


def test_version_changelog_and_license(pages):
    text = (ROOT / "core/__init__.py").read_text(encoding="utf-8")
    version = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE).group(1)
    assert f"smoothce {version}" in pages["."].text()
    changelog = _article(pages["changelog"]).text()
    assert "Changelog" in changelog and version in changelog
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
