"""The autograd node: forward and backward values both come from ``smoothce.loss_and_grad``.

Forward evaluates the loss and d loss / d input in one core pass and keeps only that gradient
(one tensor of the input's shape). Backward is the chain rule and nothing else:
d loss / d input · grad_output, with grad_output broadcast along the class dimension for
``reduction="none"``. No log-softmax or probability tensor outlives the forward call.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

import smoothce
from smoothce._compat import is_traced

__all__ = ["SmoothCrossEntropy", "class_dim"]


def class_dim(input: torch.Tensor) -> int:
    """PyTorch's class dimension: 0 for a 1-D input (C,), otherwise 1 ((N, C, d1, ..., dk))."""
    return 0 if input.dim() == 1 else 1


class SmoothCrossEntropy(torch.autograd.Function):
    """``apply(input, target, weight, ignore_index, reduction, eps, overwrite) -> (loss, grad)``.

    Arguments arrive already checked and cast by :func:`smoothce.torch.cross_entropy`;
    ``ignore_index`` is ``None`` for probability targets. The second output is the core's
    gradient; callers use the first output only. With ``overwrite`` the core writes that
    gradient into ``input``'s own storage (no N×C allocation at all).
    """

    # setup_context (rather than ctx in forward) is what torch.func needs; the generated vmap
    # rule runs the core itself on vmap's batched tensors.
    generate_vmap_rule = True

    @classmethod
    def apply(cls, *args: Any) -> Any:  # type: ignore[override]
        # Every call passes all seven arguments positionally, so torch's per-call binding of
        # them to forward's signature has nothing to fill in: skipping it takes ~20 µs (a
        # tenth of a 256×10 step). Under functorch transforms torch's own path runs.
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        return super(torch.autograd.Function, cls).apply(*args)

    @staticmethod
    def forward(  # type: ignore[override]
        input: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        ignore_index: int | None,
        reduction: str,
        eps: float,
        overwrite: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # detach(): a view sharing storage and version counter, so that an overwrite bumps the
        # input's version and autograd refuses any node that saved the old logits
        return smoothce.loss_and_grad(
            input.detach() if overwrite else input,
            target,
            eps,
            axis=class_dim(input),
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            overwrite_logits=overwrite,
        )

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        input, _, _, _, reduction, _, _ = inputs
        _, gradient = output
        # The gradient output is left differentiable on purpose: when this backward is itself
        # differentiated (create_graph=True, nested torch.func.grad), the saved gradient then
        # requires grad and backward can route the product through _FirstOrderOnly, which raises.
        ctx.save_for_backward(gradient)
        # the second output (the gradient itself) gets no upstream gradient: without this,
        # autograd would fill an N×C buffer of zeros for it on every backward
        ctx.set_materialize_grads(False)
        ctx.reduction = reduction
        ctx.class_dim = class_dim(input)
        ctx.overwrite = inputs[-1]
        ctx.used = False

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _grad_gradient: Any) -> tuple[Any, ...]:
        if ctx.used:
            raise RuntimeError(
                "smoothce.torch.cross_entropy(overwrite_input=True): backward ran twice through "
                "the same loss (retain_graph=True), but the first one consumed the gradient "
                "buffer; compute the loss again for a second backward"
            )
        (gradient,) = ctx.saved_tensors
        if grad_loss is None:  # only the (unused) second output was reached
            return None, None, None, None, None, None, None
        if ctx.reduction == "none" and grad_loss.dim() > 0:
            grad_loss = grad_loss.unsqueeze(ctx.class_dim)  # one value per example -> per row
        if torch.is_grad_enabled() and gradient.requires_grad:
            grad_input = _FirstOrderOnly.apply(grad_loss, gradient)
        elif ctx.overwrite:
            ctx.used = True  # the buffer is the logits' storage: scale it where it is
            grad_input = gradient.mul_(grad_loss)
        elif _is_one(grad_loss):
            # loss.backward(): hand on the saved buffer itself, no N×C product. Autograd
            # copies it before any in-place accumulation while the graph still holds it.
            grad_input = gradient
        else:
            grad_input = grad_loss * gradient
        return grad_input, None, None, None, None, None, None


# Function.apply binds its arguments with inspect.signature(forward) on every call; a
# precomputed __signature__ makes that lookup nearly free (tens of µs per call otherwise).
SmoothCrossEntropy.forward.__signature__ = inspect.signature(SmoothCrossEntropy.forward)  # type: ignore[attr-defined]


def _is_one(t: torch.Tensor) -> bool:
    """Whether a scalar upstream gradient is exactly 1, when that can be read without tracing."""
    return t.dim() == 0 and not is_traced(t) and t.item() == 1


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
