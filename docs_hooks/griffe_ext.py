"""Griffe extensions for the API pages (``extensions:`` of the mkdocstrings handler).

- ``NamedTupleInit``: a ``typing.NamedTuple`` class has no ``__init__`` in its source, so the
  API page would show it without a signature; this adds one from the annotated fields, which
  ``merge_init_into_class`` then shows on the class.
- ``ExceptionInit``: an exception class without its own ``__init__`` (one deriving from a
  built-in exception) gets the signature ``(*args)`` it is called with, for the same reason.
- ``LegacyDocstrings``: *transitional*. Docstrings of the packages it is given may still be
  reStructuredText-flavoured (``:func:`x```, ``:math:`x```, ``.. math::``, double backticks,
  ``Example:``); they are rewritten to the Markdown conventions of docs/contributing-docs.md
  before rendering. Packages leave its list once their docstrings follow the conventions; the
  core (``smoothce``, ``smoothce.metrics``) is never on it.
"""

from __future__ import annotations

import builtins
import re
from typing import Any

from griffe import Extension, Function, Object, Parameter, ParameterKind, Parameters

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj):`(~?)([^`]+)`")
_DOUBLE_BACKTICKS = re.compile(r"``([^`]+)``")
_EXAMPLE = re.compile(r"^(\s*)Example:\s*$")


def _role(match: re.Match[str]) -> str:
    name = match.group(2)
    return f"`{name.rsplit('.', 1)[-1] if match.group(1) else name}`"


def legacy_to_markdown(text: str) -> str:
    """One docstring from the reST-flavoured style to the Markdown conventions."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped == ".. math::":  # an indented block follows: display math
            indent = len(line) - len(line.lstrip())
            body, i = [], i + 1
            while i < len(lines) and (
                not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
            ):
                body.append(lines[i].strip())
                i += 1
            pad = " " * indent
            tex = "\n".join(pad + b for b in body if b)
            out += ["", f"{pad}$$", tex, f"{pad}$$", ""]
            continue
        line = _EXAMPLE.sub(r"\1Examples:", line)
        if stripped.endswith("::") and not stripped.startswith(".."):
            line = line.rstrip()[:-1]
        out.append(line)
        i += 1
    text = "\n".join(out)
    text = _MATH_ROLE.sub(r"$\1$", text)
    text = _ROLE.sub(_role, text)
    return _DOUBLE_BACKTICKS.sub(r"`\1`", text)


class LegacyDocstrings(Extension):
    """Rewrites the docstrings of ``packages`` (dotted prefixes) with :func:`legacy_to_markdown`."""

    def __init__(self, packages: list[str] | None = None) -> None:
        super().__init__()
        self.packages = tuple(packages or ())

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.is_alias or obj.docstring is None:
            return
        if any(obj.path == p or obj.path.startswith(p + ".") for p in self.packages):
            obj.docstring.value = legacy_to_markdown(obj.docstring.value)


class NamedTupleInit(Extension):
    """Gives ``NamedTuple`` classes the ``__init__`` signature of their fields."""

    def on_class(self, *, cls: Any, **kwargs: Any) -> None:
        if "__init__" in cls.members or not any(
            str(base).split(".")[-1] == "NamedTuple" for base in cls.bases
        ):
            return
        params = [Parameter("self", kind=ParameterKind.positional_or_keyword)]
        for name, member in cls.members.items():
            if member.is_attribute and member.annotation is not None and not name.startswith("_"):
                params.append(
                    Parameter(
                        name,
                        annotation=member.annotation,
                        kind=ParameterKind.positional_or_keyword,
                        default=member.value,
                    )
                )
        init = Function("__init__", parameters=Parameters(*params), lineno=cls.lineno)
        cls.set_member("__init__", init)


class ExceptionInit(Extension):
    """Gives exception classes that inherit a built-in ``__init__`` the signature ``(*args)``."""

    def on_class(self, *, cls: Any, **kwargs: Any) -> None:
        if "__init__" in cls.members or not any(
            _is_builtin_exception(str(base).split(".")[-1]) for base in cls.bases
        ):
            return
        params = [
            Parameter("self", kind=ParameterKind.positional_or_keyword),
            Parameter("args", annotation="object", kind=ParameterKind.var_positional),
        ]
        init = Function("__init__", parameters=Parameters(*params), lineno=cls.lineno)
        cls.set_member("__init__", init)


def _is_builtin_exception(name: str) -> bool:
    value = getattr(builtins, name, None)
    return isinstance(value, type) and issubclass(value, BaseException)
