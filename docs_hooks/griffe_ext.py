"""Griffe extensions for the API pages (``extensions:`` of the mkdocstrings handler).

- ``NamedTupleInit``: a ``typing.NamedTuple`` class has no ``__init__`` in its source, so the
  API page would show it without a signature; this adds one from the annotated fields, which
  ``merge_init_into_class`` then shows on the class.
- ``ExceptionInit``: an exception class without its own ``__init__`` (one deriving from a
  built-in exception) gets the signature ``(*args)`` it is called with, for the same reason.
"""

from __future__ import annotations

import builtins
from typing import Any

from griffe import Extension, Function, Parameter, ParameterKind, Parameters


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
