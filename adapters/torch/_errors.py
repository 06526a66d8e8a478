"""Errors that PyTorch code can catch the way it catches ``F.cross_entropy``'s.

PyTorch raises ``RuntimeError`` for a bad target, a bad shape, a bad dtype or ε > 1,
``IndexError`` for an out-of-range target and ``ValueError`` for a bad reduction; smoothce's
core raises ``ValueError`` and ``TypeError`` with messages that name the bad value. The
adapter re-raises the core's errors as classes that are both, so ``except RuntimeError`` and
``except ValueError`` code alike keep working, and the message is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

__all__ = ["InvalidLabel", "InvalidType", "InvalidValue", "native_errors"]


class InvalidValue(ValueError, RuntimeError):
    """A bad argument value or shape: a ``ValueError`` and a ``RuntimeError``."""


class InvalidType(TypeError, RuntimeError):
    """A bad argument type or dtype: a ``TypeError`` and a ``RuntimeError``."""


class InvalidLabel(InvalidValue, IndexError):
    """A target outside [0, C): also an ``IndexError``, as PyTorch raises on CPU."""


F = TypeVar("F", bound=Callable[..., Any])


def native_errors(fn: F) -> F:
    """Re-raise the core's ``ValueError``/``TypeError`` from ``fn`` as the classes above."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (InvalidValue, InvalidType):
            raise
        except ValueError as err:
            kind = InvalidLabel if isinstance(err, IndexError) else InvalidValue
            raise kind(str(err)) from err
        except TypeError as err:
            raise InvalidType(str(err)) from err

    return wrapper  # type: ignore[return-value]
