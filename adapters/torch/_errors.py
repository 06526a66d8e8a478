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
    r"""A bad argument value or shape: a `ValueError` and a `RuntimeError`.

    PyTorch raises `RuntimeError` for a bad target, a bad shape, a bad dtype or
    $\varepsilon > 1$, `IndexError` for an out-of-range target and `ValueError` for a bad
    reduction; smoothce's core raises `ValueError` and `TypeError` with messages that name the
    bad value. [smoothce.torch.cross_entropy][], [smoothce.torch.CrossEntropyLoss][] and
    [smoothce.torch.linear_cross_entropy][] re-raise the core's errors as classes that are
    both, so `except RuntimeError` and `except ValueError` code alike keep working, and the
    message is unchanged. This one covers wrong values, such as $\varepsilon$ outside
    $[0, 1]$ or an unknown `reduction`.

    Args:
        *args: The message, one string that names the bad value (as any exception takes it).

    Examples:
        >>> import torch, smoothce.torch
        >>> logits, target = torch.zeros(2, 3), torch.tensor([0, 1])
        >>> try:
        ...     smoothce.torch.cross_entropy(logits, target, label_smoothing=1.5)
        ... except RuntimeError as err:
        ...     print(type(err).__name__, isinstance(err, ValueError))
        InvalidValue True
    """


class InvalidType(TypeError, RuntimeError):
    r"""A bad argument type or dtype: a `TypeError` and a `RuntimeError`.

    Raised for the core's `TypeError`s, such as index targets of a dtype other than int64
    (or uint8 for an input of shape $(C,)$ or $(N, C)$), so that code catching PyTorch's
    `RuntimeError` catches it too ([smoothce.torch.InvalidValue][] explains why).

    Args:
        *args: The message, one string that names the bad type or dtype.

    Examples:
        >>> import torch, smoothce.torch
        >>> logits, target = torch.zeros(1, 3, 2), torch.zeros(1, 2, dtype=torch.int32)
        >>> try:
        ...     smoothce.torch.cross_entropy(logits, target)
        ... except RuntimeError as err:
        ...     print(type(err).__name__, isinstance(err, TypeError))
        InvalidType True
    """


class InvalidLabel(InvalidValue, IndexError):
    r"""A target outside $[0, C)$: also an `IndexError`, as PyTorch raises on CPU.

    A [smoothce.torch.InvalidValue][] (so a `ValueError` and a `RuntimeError`) as well.
    Targets are read and checked only where [smoothce.torch.cross_entropy][]'s
    `check_labels` says; elsewhere an out-of-range target makes its example's loss and
    gradient NaN.

    Args:
        *args: The message, one string that names the bad target and the valid range.

    Examples:
        >>> import torch, smoothce.torch
        >>> logits, target = torch.zeros(2, 3), torch.tensor([0, 3])
        >>> try:
        ...     smoothce.torch.cross_entropy(logits, target)
        ... except IndexError as err:
        ...     print(type(err).__name__, isinstance(err, ValueError))
        InvalidLabel True
    """


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
