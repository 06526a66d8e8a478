"""Build hooks for the documentation site (``hooks:`` in mkdocs.yml).

- Math renders without a network: ``pymdownx.arithmatex`` (generic mode) marks every ``$...$``
  and ``$$...$$``; :func:`on_page_content` converts each one to MathML with ``latex2mathml``,
  which browsers render natively. A formula that does not convert fails the build.
- Wide tables scroll: every ``<table>`` is wrapped in ``<div class="table-scroll">``
  (``docs/stylesheets/extra.css``), also the parameter tables of the API pages.
- Guides link to the API reference: inline code that is exactly the name of a public function
  or class (``smoothce.loss``, ``smoothce.metrics.fit_temperature``, or ``metrics.softmax`` as
  the guides write it after ``from smoothce import metrics``) becomes a link to its entry
  (mkdocs-autorefs resolves it).
- The version (``smoothce.__version__``) shows in the header and the footer; the repository link
  comes from ``[project.urls]`` in pyproject.toml when it names one.
"""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path
from typing import Any

from latex2mathml.converter import convert
from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parent.parent

# public modules and the file that holds each one's __all__
PUBLIC_MODULES = {
    "smoothce": "core/__init__.py",
    "smoothce.metrics": "core/metrics.py",
    "smoothce.torch": "adapters/torch/__init__.py",
    "smoothce.jax": "adapters/jax/__init__.py",
    "smoothce.tensorflow": "adapters/tensorflow/__init__.py",
    "smoothce.keras": "adapters/keras/__init__.py",
}

_MATH = re.compile(r'<(?P<tag>span|div) class="arithmatex">(?P<tex>.*?)</(?P=tag)>', re.DOTALL)
_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
# short forms the guides use, with the import they assume (`from smoothce import metrics`)
_SHORT = {"metrics.": "smoothce.metrics."}

_TEX_ALIASES = {r"\arg": r"\operatorname{arg}"}

_names: set[str] = set()


def public_names() -> dict[str, list[str]]:
    """Each public module's ``__all__``, read from the source (no import, no framework)."""
    out = {}
    for module, path in PUBLIC_MODULES.items():
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                names = ast.literal_eval(node.value)
                out[module] = [n for n in names if f"{module}.{n}" not in PUBLIC_MODULES]
    return out


def version() -> str:
    """``smoothce.__version__``, read from core/__init__.py."""
    text = (ROOT / "core/__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if not match:
        raise PluginError("core/__init__.py has no __version__")
    return match.group(1)


def repository_url() -> str | None:
    """The repository address from pyproject.toml's [project.urls], if it names one."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: no repository link
        return None
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    urls = {k.lower(): v for k, v in project.get("urls", {}).items()}
    return next((urls[k] for k in ("repository", "source", "homepage") if k in urls), None)


def on_config(config: Any, **kwargs: Any) -> Any:
    release = version()
    config["site_name"] = f"{config['site_name']} {release}"
    config["copyright"] = f"smoothce {release} · MIT License"
    url = repository_url()
    if url and not config.get("repo_url"):
        config["repo_url"] = url
    _names.clear()
    for module, names in public_names().items():
        _names.update(f"{module}.{name}" for name in names)
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    """Link inline code naming a public object to its API entry (outside code blocks and
    headings, and where it is not a link already); put in the version."""
    markdown = markdown.replace("{{ version }}", version())
    lines, fenced = markdown.split("\n"), False
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
        if fenced or line.startswith("#") or line.startswith("    "):
            continue
        lines[i] = _CODE_SPAN.sub(_link, line)
    return "\n".join(lines)


def _link(match: re.Match[str]) -> str:
    """A code span `name` as a link, when it is a single-backtick span naming a public object
    and not a link's text already."""
    text, start, end = match.string, match.start(), match.end()
    written = name = match.group(2)
    if len(match.group(1)) != 1 or text[start - 1 : start] == "[" or text[end : end + 1] == "]":
        return match.group(0)
    for short, full in _SHORT.items():
        if name.startswith(short):
            name = full + name[len(short) :]
    return f"[`{written}`][{name}]" if name in _names else match.group(0)


def on_page_content(html_text: str, page: Any, **kwargs: Any) -> str:
    html_text = _MATH.sub(lambda m: _mathml(m, page), html_text)
    html_text = re.sub(r"<table\b", '<div class="table-scroll"><table', html_text)
    return html_text.replace("</table>", "</table></div>")


def _mathml(match: re.Match[str], page: Any) -> str:
    tex = html.unescape(match.group("tex")).strip()
    block = match.group("tag") == "div"
    opening, closing = (r"\[", r"\]") if block else (r"\(", r"\)")
    if not (tex.startswith(opening) and tex.endswith(closing)):
        raise PluginError(f"{page.file.src_uri}: unexpected math markup {tex!r}")
    tex = tex[2:-2].strip()
    for command, replacement in _TEX_ALIASES.items():  # operators latex2mathml lacks
        tex = re.sub(re.escape(command) + r"(?![A-Za-z])", lambda _, r=replacement: r, tex)
    try:
        mathml = convert(tex, display="block" if block else "inline")
    except Exception as err:  # latex2mathml raises many kinds
        raise PluginError(f"{page.file.src_uri}: cannot convert ${tex}$ to MathML: {err}") from err
    if "\\" in mathml:  # an unknown command is copied through as text
        raise PluginError(f"{page.file.src_uri}: unknown TeX command in ${tex}$")
    # the TeX stays as the formula's text alternative
    mathml = mathml.replace("<math ", f'<math alttext="{html.escape(tex)}" ', 1)
    if block:
        return f'<div class="math-display">{mathml}</div>'
    return f'<span class="math-inline">{mathml}</span>'
