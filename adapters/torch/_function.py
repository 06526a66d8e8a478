"""The autograd node: forward and backward values both come from ``smoothce.loss_and_grad``.

Forward evaluates the loss and d loss / d input in one core pass and keeps only that gradient
(one tensor of the input's shape). Backward is the chain rule and nothing else:
d loss / d input · grad_output, with grad_output broadcast along the class dimension for
``reduction="none"``. No log-softmax or probability tensor outlives the forward call.

vmap stop-gap: the core moves the class axis with ``xp.moveaxis``, i.e. ``torch.moveaxis``
with int arguments, and torch has no vmap batching rule for ``aten::moveaxis.int``. So the
core cannot run on vmap's batched tensors, and :meth:`SmoothCrossEntropy.vmap` calls it once
per sample instead. It goes away when the core uses ``xp.permute_dims`` (requested change).
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

    # setup_context (rather than ctx in forward) is what torch.func.grad needs. vmap uses the
    # explicit rule below: generate_vmap_rule = True would run the core on batched tensors,
    # and the core's xp.moveaxis (aten::moveaxis.int) has no batching rule in torch.

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
    def vmap(
        info: Any,
        in_dims: tuple[int | None, ...],
        input: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        ignore_index: int | None,
        reduction: str,
        eps: float,
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[int, int]]:
        """One core call per vmapped sample, stacked (a stop-gap, see the module notes).

        Each sample is a complete loss with its own reduction, so the samples cannot be merged
        into one core call without redoing the reduction here. Once the core moves axes with
        permute_dims, ``generate_vmap_rule = True`` replaces this method.
        """

        def pick(t: torch.Tensor | None, dim: int | None, i: int) -> torch.Tensor | None:
            return t if t is None or dim is None else t.select(dim, i)

        losses, gradients = [], []
        for i in range(info.batch_size):
            loss, gradient = SmoothCrossEntropy.apply(
                pick(input, in_dims[0], i),
                pick(target, in_dims[1], i),
                pick(weight, in_dims[2], i),
                ignore_index,
                reduction,
                eps,
            )
            losses.append(loss)
            gradients.append(gradient)
        return (torch.stack(losses), torch.stack(gradients)), (0, 0)

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
