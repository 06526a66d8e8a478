"""``smoothce.torch.cross_entropy``: ``torch.nn.functional.cross_entropy`` with the core's math.

This module only does what PyTorch's own entry point does before the kernel runs: argument
translation (native names, defaults, positional order, legacy reduction flags), autocast and
dtype promotion. The values come from the autograd Function in ``_function.py``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from smoothce.internal import LossSpec, Names, evaluate

from ._errors import native_errors
from ._function import class_dim, smooth_cross_entropy

__all__ = ["cross_entropy"]

NAMES = Names(logits="input", labels="target", eps="label_smoothing")


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return device_type == "cuda" and torch.is_autocast_enabled()
    except RuntimeError:  # a device type without autocast (meta): never on
        return False


def _autocast(
    input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Native autocast policy for cross_entropy: run in float32 when autocast is on.

    PyTorch lists cross_entropy among the float32 ops of autocast on CPU and CUDA: every
    floating argument except float64 is cast to float32 (float64 is never downcast).
    """
    if not _autocast_enabled(input.device.type):
        return input, target, weight

    def up(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None or not t.is_floating_point() or t.dtype == torch.float64:
            return t
        return t.float()

    return up(input), up(target), up(weight)  # type: ignore[return-value]


def legacy_reduction(size_average: Any, reduce: Any, reduction: str) -> str:
    """PyTorch's deprecated ``size_average``/``reduce`` flags mapped onto ``reduction``."""
    if size_average is None and reduce is None:
        return reduction
    warnings.warn(
        "size_average and reduce args will be deprecated, please use reduction instead",
        UserWarning,
        stacklevel=3,
    )
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


@native_errors
def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float | torch.Tensor = 0.1,
    *,
    overwrite_input: bool = False,
    check_labels: bool | None = None,
    compiled: bool = False,
) -> torch.Tensor:
    r"""Label-smoothed cross-entropy between logits and targets, a drop-in for ``F.cross_entropy``.

    With :math:`p = \mathrm{softmax}(\text{input})` over the class dimension (1, or 0 for a
    1-D input), C classes and the smoothed target
    :math:`q = (1 - \varepsilon)\,\mathrm{onehot}(y) + \varepsilon/C` (probability targets:
    :math:`(1 - \varepsilon)\,y + \varepsilon/C`), each example's loss is
    :math:`l = -\sum_c w_c q_c \log p_c`. For index targets that is PyTorch's weighting,
    :math:`l = (1 - \varepsilon)\,w_y\,(-\log p_y) + \frac{\varepsilon}{C}\sum_c w_c (-\log p_c)`;
    ``"mean"`` divides the sum by :math:`\sum w_y` over non-ignored examples (index targets) or
    by the number of examples (probability targets); ``"none"`` returns one loss per example.

    The arguments are ``F.cross_entropy``'s, in its order; only the default ``label_smoothing``
    differs (0.1 instead of 0.0).

    Args:
      input: logits of shape (C,), (N, C) or (N, C, d1, ..., dk).
      target: class indices (int64; uint8 also for (C,) and (N, C) inputs, as in PyTorch) of
        the input's shape without the class dimension, or class probabilities of the input's
        shape (differentiable: a target that requires grad gets its gradient).
      weight: optional per-class weights of shape (C,), the input's dtype.
      size_average: deprecated (PyTorch's legacy flag, mapped onto ``reduction``).
      ignore_index: index targets equal to it contribute nothing; probability targets accept
        only a negative value (as in PyTorch), which then has no effect.
      reduce: deprecated (PyTorch's legacy flag, mapped onto ``reduction``).
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.
      label_smoothing: ε in [0, 1], a number or a 0-d tensor; default 0.1. A negative ε raises
        (PyTorch silently treats it as 0).
      overwrite_input: write the gradient into ``input``'s storage during the forward pass
        (the Liger-Kernel trick), so forward and backward allocate no N×C buffer. For logits
        that nothing else needs afterwards, e.g. a final Linear layer's output. ``input``
        then holds the gradient, not the logits. Raises ``ValueError`` for a tensor that is,
        or is a view of, a leaf that requires grad (a parameter), or when the class dimension
        is not last and contiguous ((N, C) input); if another autograd node saved the logits,
        its backward raises torch's in-place error. Inside ``torch.compile`` it changes no
        value and writes nothing (Inductor plans the buffers itself).
      check_labels: keyword-only; whether index targets are read and checked eagerly. None
        (default): when that needs no device synchronisation (CPU tensors outside tracing),
        so a bad target raises there and gives a NaN loss and gradient row elsewhere (on
        accelerators, under ``torch.compile`` and ``torch.func``); True: always, at the cost
        of one synchronisation on an accelerator (traced code still cannot read); False:
        never.
      compiled: keyword-only; run the core (the same array-API code) through
        ``torch.compile(fullgraph=True)``, compiled once per argument combination, so that
        Inductor fuses it into a few kernels: for accelerators. Backward stays one
        multiplication. Labels are then checked as ``check_labels`` says, by looking again
        eagerly when the compiled loss is NaN. Inside ``torch.compile`` or ``torch.func``
        transforms the core runs as it would without the flag.

    Returns:
      The loss: a scalar, or one value per example for ``reduction="none"``. Differentiable
      in reverse and forward mode, twice (double backward, ``torch.func.hessian``), under
      ``torch.func``/``vmap`` and ``torch.compile``.

    Errors are ``ValueError``/``TypeError`` that are also ``RuntimeError`` (an out-of-range
    target also ``IndexError``), so code written against PyTorch's errors catches them.

    Example:
      >>> import torch, smoothce.torch
      >>> logits = torch.tensor([[2.0, 1.0, 0.1]], requires_grad=True)
      >>> loss = smoothce.torch.cross_entropy(logits, torch.tensor([0]), label_smoothing=0.1)
      >>> round(loss.item(), 4)
      0.5137
      >>> loss.backward()
    """
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"input and target must be torch.Tensor, got {type(input).__name__} and "
            f"{type(target).__name__}"
        )
    reduction = legacy_reduction(size_average, reduce, reduction)
    # PyTorch differentiates weight for probability targets only; smoothce's autograd node
    # has no weight gradient, so such a call is differentiated through the core's array ops
    weight_grad = weight is not None and weight.requires_grad and torch.is_grad_enabled()
    if weight_grad and not target.is_floating_point():
        raise NotImplementedError(
            "cross_entropy is not differentiable with respect to weight for class-index "
            "targets (as in PyTorch); pass weight.detach()"
        )
    input, target, weight = _autocast(input, target, weight)

    if target.is_floating_point():
        if target.shape != input.shape:  # the core would broadcast; PyTorch does not
            raise ValueError(
                f"probability targets must have the input's shape {tuple(input.shape)}, got "
                f"{tuple(target.shape)}"
            )
        if ignore_index >= 0:
            raise ValueError(
                f"ignore_index={ignore_index} is not supported for probability targets "
                "(only a negative value, which has no effect)"
            )
        # Native promotes input, target and weight to one dtype; the result has that dtype.
        dtype = torch.promote_types(input.dtype, target.dtype)
        if weight is not None:
            dtype = torch.promote_types(dtype, weight.dtype)
        input, target = input.to(dtype), target.to(dtype)
        weight = None if weight is None else weight.to(dtype)
        core_ignore = None
    else:
        # F.cross_entropy takes int64 targets, and uint8 ones for (C,) and (N, C) inputs only
        allowed = (torch.int64, torch.uint8) if input.dim() <= 2 else (torch.int64,)
        if target.dtype not in allowed:
            names = " or ".join(str(d).removeprefix("torch.") for d in allowed)
            raise TypeError(
                f"index targets for a {input.dim()}-D input must be {names}, got {target.dtype}"
            )
        if weight is not None and weight.dtype != input.dtype:
            raise TypeError(f"weight dtype {weight.dtype} differs from input dtype {input.dtype}")
        core_ignore = ignore_index

    if not isinstance(compiled, bool):
        raise TypeError(f"compiled must be True or False, got {compiled!r}")
    if overwrite_input is True and torch.compiler.is_compiling():
        # traced code writes nothing in place (Inductor plans the buffers): the flag changes
        # no value, but what eager code refuses is refused here too
        if input.is_leaf and input.requires_grad:
            raise ValueError(
                "overwrite_input=True cannot write into input: it is a leaf tensor that "
                "requires grad, such as a parameter"
            )
        overwrite_input = False
    spec = LossSpec(
        label_smoothing,
        class_dim(input),
        weight,
        core_ignore,
        None,
        reduction,
        overwrite=overwrite_input,
        check_labels=check_labels,
        names=NAMES,
    )
    if weight_grad:  # torch autograd records the core's out-of-place path
        return evaluate(spec, input, target).value
    static, (eps, weight, _) = spec.split()
    value, _, _ = smooth_cross_entropy().apply(input, target, static, eps, weight, compiled)
    return value
