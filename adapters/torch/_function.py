"""The autograd node: forward and backward values both come from ``smoothce.loss_and_grad``.

Forward evaluates the loss and d loss / d input in one core pass and keeps only that gradient
(one tensor of the input's shape). Backward is the chain rule and nothing else:
d loss / d input · grad_output, with grad_output broadcast along the class dimension for
``reduction="none"``. No log-softmax or probability tensor outlives the forward call.
"""

from __future__ import annotations

from typing import Any

import smoothce
import torch

__all__ = ["SmoothCrossEntropy", "class_dim"]


def class_dim(input: torch.Tensor) -> int:
    """PyTorch's class dimension: 0 for a 1-D input (C,), otherwise 1 ((N, C, d1, ..., dk))."""
    return 0 if input.dim() == 1 else 1


class SmoothCrossEntropy(torch.autograd.Function):
    """``apply(input, target, weight, ignore_index, reduction, eps) -> (loss, dloss_dinput)``.

    Arguments arrive already checked and cast by :func:`smoothce.torch.cross_entropy`;
    ``ignore_index`` is ``None`` for probability targets. The second output is the core's
    gradient; callers use the first output only.
    """

    # setup_context (rather than ctx in forward) is what torch.func needs; the generated vmap
    # rule runs the core itself on vmap's batched tensors.
    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        input: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        ignore_index: int | None,
        reduction: str,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return smoothce.loss_and_grad(
            input,
            target,
            eps,
            axis=class_dim(input),
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
        )

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        input, _, _, _, reduction, _ = inputs
        _, gradient = output
        # The gradient output is left differentiable on purpose: when this backward is itself
        # differentiated (create_graph=True, nested torch.func.grad), the saved gradient then
        # requires grad and backward can route the product through _FirstOrderOnly, which raises.
        ctx.save_for_backward(gradient)
        ctx.reduction = reduction
        ctx.class_dim = class_dim(input)

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _grad_gradient: Any) -> tuple[Any, ...]:
        (gradient,) = ctx.saved_tensors
        if ctx.reduction == "none" and grad_loss.dim() > 0:
            grad_loss = grad_loss.unsqueeze(ctx.class_dim)  # one value per example -> per row
        if torch.is_grad_enabled() and gradient.requires_grad:
            grad_input = _FirstOrderOnly.apply(grad_loss, gradient)
        else:
            grad_input = grad_loss * gradient
        return grad_input, None, None, None, None, None


class _FirstOrderOnly(torch.autograd.Function):
    """grad_loss · gradient, recorded when a backward is taken with create_graph.

    The core gives the first derivative only; differentiating it again would need the softmax
    Jacobian, so the second derivative raises a clear error instead of coming out as zero.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(grad_loss: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad_loss * gradient

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, _grad: Any) -> tuple[Any, ...]:
        raise RuntimeError(
            "smoothce.torch.cross_entropy supports first derivatives only: double backward "
            "(Hessians, gradient penalties through the loss) is not implemented"
        )
