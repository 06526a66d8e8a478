"""Argument checks shared by every entry point. Each error names the offending value."""

from __future__ import annotations

import math
from typing import Any

from ._compat import extremes, is_traced

REDUCTIONS = ("mean", "sum", "none")
SPREADS = ("all", "others")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_spread(spread: str) -> None:
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {SPREADS}, got {spread!r}")


def check_eps(eps: Any, name: str = "eps") -> None:
    """ε must be a scalar, a finite number in [0, 1]; a traced ε's value cannot be checked and
    is trusted (its shape can, and is).

    ``name`` is the argument's name in the caller's API (the adapters say "label_smoothing").
    """
    ndim = getattr(eps, "ndim", 0)  # None: unknown rank while tracing
    if ndim not in (0, None):
        raise ValueError(f"{name} must be a scalar, got an array of shape {tuple(eps.shape)}")
    if is_traced(eps):
        return
    if isinstance(eps, (str, bytes, bool)):
        raise ValueError(f"{name} must be a number in [0, 1], got {eps!r}")
    try:
        value = float(eps)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number in [0, 1], got {eps!r}") from err
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a finite number in [0, 1], got {value!r}")


def smoothing(value: Any, name: str = "label_smoothing") -> float:
    """A concrete ε as a Python float, checked as :func:`check_eps` does."""
    check_eps(value, name)
    return float(value)


def class_axis(ndim: int, axis: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis!r} is out of range for logits with {ndim} dimension(s)")
    return axis % ndim


def check_logits(xp: Any, logits: Any) -> None:
    if not xp.isdtype(logits.dtype, "real floating"):
        raise TypeError(f"logits must have a real floating dtype, got {logits.dtype}")
    if logits.ndim == 0:
        raise ValueError("logits must have at least one dimension (the class axis)")


def label_form(xp: Any, logits: Any, labels: Any, axis: int) -> bool:
    """True for integer class indices, False for probability labels; ValueError otherwise."""
    shape = tuple(logits.shape)
    batch = shape[:axis] + shape[axis + 1 :]
    if xp.isdtype(labels.dtype, "integral") and tuple(labels.shape) == batch:
        return True
    if xp.isdtype(labels.dtype, "real floating") and tuple(labels.shape) == shape:
        return False
    raise ValueError(
        f"labels of shape {tuple(labels.shape)} and dtype {labels.dtype} fit neither form: "
        f"integer class indices of shape {batch} or floating probabilities of shape {shape}"
    )


def broadcastable_mask(xp: Any, where: Any, logits: Any) -> Any:
    """``where`` with the logits' number of dimensions, size-1 axes left to broadcast.

    Not expanded to the full shape: the mask stays as small as the caller made it.
    """
    shape, target = tuple(where.shape), tuple(logits.shape)
    trailing = target[len(target) - len(shape) :]
    fits = len(shape) <= len(target) and all(
        a == 1 or b is None or a == b for a, b in zip(shape, trailing, strict=True)
    )
    if not fits:
        raise ValueError(f"where of shape {shape} does not broadcast to logits of shape {target}")
    return xp.reshape(where, (1,) * (len(target) - len(shape)) + shape)


def check_weight(weight: Any, num_classes: int) -> None:
    if weight.ndim != 1 or weight.shape[0] != num_classes:
        raise ValueError(
            f"weight must have shape ({num_classes},), one entry per class, "
            f"got shape {tuple(weight.shape)}"
        )


def check_label_values(
    xp: Any, labels: Any, num_classes: int, ignore_index: int | None, mask: Any
) -> tuple[bool, bool]:
    """Eager check of integer labels: range, and not on a class that ``where`` masks out.

    Returns ``(checked, maybe_ignored)``: whether the values were read and passed (False for
    traced labels, whose bad entries the math turns into NaN instead), and whether any label
    may equal ``ignore_index`` (False lets the kernel drop that bookkeeping).
    """
    maybe_ignored = ignore_index is not None
    if is_traced(labels) or math.prod(labels.shape) == 0:
        return False, maybe_ignored
    low, high = extremes(xp, labels)
    if is_traced(low):  # concrete labels, but a trace in progress stages the reduction
        return False, maybe_ignored
    low, high = int(low), int(high)
    if maybe_ignored and (low <= ignore_index <= high):
        ignored = labels == ignore_index
        if not bool(xp.any(ignored)):
            maybe_ignored = False
        elif low < 0 or high >= num_classes:  # range of the labels that are not ignored
            kept = xp.where(ignored, 0, labels)
            low, high = int(xp.min(kept)), int(xp.max(kept))
    else:
        maybe_ignored = False
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        extra = "" if ignore_index is None else f" or equal ignore_index={ignore_index}"
        raise ValueError(
            f"label {bad} is out of range: labels must lie in [0, {num_classes}){extra}"
        )
    if mask is not None:
        safe = labels if not maybe_ignored else xp.where(labels == ignore_index, 0, labels)
        hit = xp.take_along_axis(mask, xp.expand_dims(safe, axis=-1), axis=-1)[..., 0]
        if maybe_ignored:
            hit = hit | (labels == ignore_index)
        if not bool(xp.all(hit)):
            raise ValueError("a label points at a class that `where` masks out")
    return True, maybe_ignored


def overwritable(x: Any) -> bool:
    """Whether the gradient may be written into ``x``'s own buffer."""
    import array_api_compat

    if not array_api_compat.is_writeable_array(x):
        return False
    if array_api_compat.is_torch_array(x):
        return not x.requires_grad and x.is_contiguous()
    if array_api_compat.is_numpy_array(x):
        return x.flags.c_contiguous
    return False
