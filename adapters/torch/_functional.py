"""``smoothce.torch.cross_entropy``: ``torch.nn.functional.cross_entropy`` with the core's math.

This module only does what PyTorch's own entry point does before the kernel runs: argument
checks, autocast and dtype promotion. The values come from :class:`SmoothCrossEntropy`.
"""

from __future__ import annotations

import torch

from smoothce._validate import smoothing

from ._function import SmoothCrossEntropy

__all__ = ["cross_entropy"]


def check_label_smoothing(label_smoothing: float | torch.Tensor) -> float:
    """ε as a Python float in [0, 1]; unlike PyTorch a negative ε raises instead of acting as 0."""
    if isinstance(label_smoothing, torch.Tensor):
        if label_smoothing.requires_grad:
            raise NotImplementedError(
                "smoothce.torch does not differentiate with respect to label_smoothing; "
                "pass a float or a tensor that does not require grad"
            )
        label_smoothing = label_smoothing.item()
    return smoothing(label_smoothing)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return device_type == "cuda" and torch.is_autocast_enabled()


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


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.1,
    overwrite_input: bool = False,
) -> torch.Tensor:
    r"""Label-smoothed cross-entropy between logits and targets, a drop-in for ``F.cross_entropy``.

    With p = softmax(input) over the class dimension (1, or 0 for a 1-D input), C classes and
    the smoothed target q = (1 − ε)·onehot(y) + ε/C (probability targets: (1 − ε)·y + ε/C),
    each example's loss is

        l = −Σ_c w_c q_c log p_c

    (for index targets PyTorch's weighting: l = (1 − ε)·w_y·(−log p_y) + (ε/C)·Σ_c w_c·(−log p_c)).
    ``"mean"`` divides the sum by Σ w_y over non-ignored examples (index targets) or by the
    number of examples (probability targets); ``"none"`` returns one loss per example.

    Args:
      input: logits of shape (C,), (N, C) or (N, C, d1, ..., dk).
      target: class indices (int64; uint8 also for (C,) and (N, C) inputs, as in PyTorch) of
        the input's shape without the class dimension,
        or class probabilities of the input's shape.
      weight: optional per-class weights of shape (C,), the input's dtype.
      ignore_index: index targets equal to it contribute nothing; probability targets accept
        only a negative value (as in PyTorch), which then has no effect.
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.
      label_smoothing: ε in [0, 1]; default 0.1 (PyTorch's is 0.0). Negative ε raises.
      overwrite_input: write the gradient into ``input``'s storage during the forward pass
        (the Liger-Kernel trick), so forward and backward allocate no N×C buffer. For logits
        that nothing else needs afterwards, e.g. a final Linear layer's output. ``input``
        then holds the gradient, not the logits. Raises ``ValueError`` for a leaf tensor that
        requires grad, or when the class dimension is not last and contiguous ((N, C) input);
        if another autograd node saved the logits, its backward raises torch's in-place error.

    Differences from ``F.cross_entropy``: keyword-only arguments after ``weight`` (PyTorch's
    legacy positional ``size_average``/``reduce`` are gone), ValueError for an out-of-range
    target or ε, no double backward and no gradient for probability targets (both raise).
    """
    eps = check_label_smoothing(label_smoothing)
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"input and target must be torch.Tensor, got {type(input).__name__} and "
            f"{type(target).__name__}"
        )
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        raise NotImplementedError(
            "cross_entropy is not differentiable with respect to weight (as in PyTorch); "
            "pass weight.detach()"
        )
    input, target, weight = _autocast(input, target, weight)

    if target.is_floating_point():
        if target.requires_grad and torch.is_grad_enabled():
            raise NotImplementedError(
                "smoothce.torch.cross_entropy does not differentiate with respect to "
                "probability targets; pass target.detach() (torch.nn.functional.cross_entropy "
                "does differentiate them)"
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

    if overwrite_input and input.is_leaf and input.requires_grad:
        raise ValueError(
            "overwrite_input=True would overwrite a leaf tensor that requires grad (a "
            "parameter or an input the caller keeps); use it on computed logits"
        )
    value, _ = SmoothCrossEntropy.apply(
        input, target, weight, core_ignore, reduction, eps, overwrite_input
    )
    return value
