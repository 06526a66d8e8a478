"""``smoothce.torch.linear_cross_entropy``: the loss straight from the hidden states, in chunks.

A drop-in for ``torch.nn.functional.linear_cross_entropy`` (the same leading signature) that
keeps label smoothing, z-loss, soft-capping, class weights, ``reduction="none"`` and
probability targets inside the fused, chunked path: the N×V logits are never stored whole.
Values and gradients come from the core (``smoothce.internal.evaluate_linear``); this module
only registers them with autograd and applies PyTorch's autocast policy.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from smoothce.internal import LossSpec, Names, evaluate_linear

from ._errors import native_errors

__all__ = ["linear_cross_entropy"]

NAMES = Names(logits="input", labels="target", eps="label_smoothing")


class LinearCrossEntropy(torch.autograd.Function):
    """``apply(input, linear_weight, linear_bias, target, spec, chunk_size, eps, weight)``.

    For ``"mean"`` and ``"sum"`` the forward pass forms the three gradients in the same chunked
    pass (the upstream gradient is one number, applied in backward); for ``"none"`` backward
    runs the chunks again with the per-example upstream gradient, which must scale each
    example's logits gradient before the sums over tokens.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        input: torch.Tensor,
        linear_weight: torch.Tensor,
        linear_bias: torch.Tensor | None,
        target: torch.Tensor,
        spec: LossSpec,
        chunk_size: int | None,
        eps: Any,
        weight: Any,
    ) -> tuple[Any, ...]:
        full = spec.join((eps, weight, None))
        wants = any(t is not None and t.requires_grad for t in (input, linear_weight, linear_bias))
        ahead = wants and spec.reduction != "none"
        result = evaluate_linear(
            full,
            input,
            linear_weight,
            target,
            linear_bias=linear_bias,
            chunk_size=chunk_size,
            grad=ahead,
        )
        return result.value, result.d_hidden, result.d_linear_weight, result.d_linear_bias

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        input, linear_weight, linear_bias, target, spec, chunk_size, eps, weight = inputs
        _, d_hidden, d_weight, d_bias = output
        ctx.mark_non_differentiable(*(t for t in output[1:] if t is not None))
        ctx.set_materialize_grads(False)
        ctx.spec, ctx.chunk_size = spec, chunk_size
        ctx.has_bias = linear_bias is not None
        if d_hidden is not None:
            ctx.save_for_backward(d_hidden, d_weight, d_bias)
            ctx.ahead = True
        else:  # "none" (or nothing requires grad): backward recomputes from the inputs
            ctx.save_for_backward(input, linear_weight, linear_bias, target, eps, weight)
            ctx.ahead = False

    @staticmethod
    def backward(ctx: Any, grad_value: Any, *_: Any) -> tuple[Any, ...]:
        if grad_value is None:
            return (None,) * 8
        if ctx.ahead:
            d_hidden, d_weight, d_bias = ctx.saved_tensors
            scaled = [None if g is None else g * grad_value for g in (d_hidden, d_weight, d_bias)]
        else:
            input, linear_weight, linear_bias, target, eps, weight = ctx.saved_tensors
            result = evaluate_linear(
                ctx.spec.join((eps, weight, None)),
                input.detach(),
                linear_weight.detach(),
                target,
                linear_bias=None if linear_bias is None else linear_bias.detach(),
                chunk_size=ctx.chunk_size,
                grad=True,
                upstream=grad_value,
            )
            scaled = [result.d_hidden, result.d_linear_weight, result.d_linear_bias]
        d_hidden, d_weight, d_bias = scaled
        return d_hidden, d_weight, d_bias if ctx.has_bias else None, None, None, None, None, None


LinearCrossEntropy.forward.__signature__ = inspect.signature(LinearCrossEntropy.forward)  # type: ignore[attr-defined]


def _autocast(*tensors: Any) -> tuple[Any, ...]:
    """PyTorch's policy for a linear layer under autocast: run it in the autocast dtype (the
    loss itself is accumulated in float32 by the core anyway)."""
    device = tensors[0].device.type
    if not torch.is_autocast_enabled(device):
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return tuple(t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors)


@native_errors
def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.1,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""Label-smoothed cross-entropy of ``input @ linear_weight.T + linear_bias``, in chunks.

    The same as ``cross_entropy(F.linear(input, linear_weight, linear_bias), target, ...)``
    with smoothce's options, but the N×V logits exist one chunk of rows at a time: memory for
    the logits falls from N×V to ``chunk_size``×V. The gradients for ``input``,
    ``linear_weight`` and ``linear_bias`` come from the same chunked pass; the weight's and
    bias's are accumulated in float32 whatever the input dtype.

    Args:
      input: hidden states (N, H) or (..., H).
      linear_weight: (V, H), ``nn.Linear``'s weight layout.
      target: class indices of ``input``'s batch shape (int64), or probabilities (..., V).
      linear_bias: optional (V,) bias.
      weight: optional per-class weights (V,).
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.
      ignore_index: index targets equal to it contribute nothing.
      label_smoothing: ε in [0, 1]; default 0.1.
      z_loss: λ ≥ 0 of the z-loss λ·lse² (averaged over the kept examples under "mean").
      softcap: c > 0: the logits become c·tanh(z/c) first.
      chunk_size: rows per chunk (default: as many as make 2²⁴ logits).

    Returns:
      The loss (one value per example for ``"none"``), differentiable in ``input``,
      ``linear_weight`` and ``linear_bias``.

    Example:
      >>> import torch, smoothce.torch
      >>> h = torch.randn(6, 4, requires_grad=True)
      >>> w = torch.randn(10, 4, requires_grad=True)
      >>> loss = smoothce.torch.linear_cross_entropy(h, w, torch.arange(6), chunk_size=4)
      >>> loss.backward()
      >>> h.grad.shape, w.grad.shape
      (torch.Size([6, 4]), torch.Size([10, 4]))
    """
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        raise NotImplementedError(
            "linear_cross_entropy is not differentiable with respect to weight (as in "
            "PyTorch); pass weight.detach()"
        )
    input, linear_weight, linear_bias = _autocast(input, linear_weight, linear_bias)
    floating = target.is_floating_point()
    spec = LossSpec(
        label_smoothing,
        -1,
        weight,
        None if floating else ignore_index,
        None,
        reduction,
        names=NAMES,
        z_loss=z_loss,
        softcap=softcap,
    )
    static, (eps, weight, _) = spec.split()
    with torch.autocast(input.device.type, enabled=False):
        value, *_ = LinearCrossEntropy.apply(
            input, linear_weight, linear_bias, target, static, chunk_size, eps, weight
        )
    return value
