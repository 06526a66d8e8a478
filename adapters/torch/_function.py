"""The autograd node: every value and derivative comes from the core (``smoothce.internal``).

Forward evaluates the loss and d loss / d input in one core pass and keeps only that gradient
(one tensor of the input's shape; the target is kept by reference). Its second output is that
gradient itself, so differentiating it (double backward, forward-over-reverse Hessians) goes
through this node's backward and jvp, which apply the core's Hessian-vector product: nothing
is saved or computed for second derivatives unless one is taken.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from smoothce.internal import LossSpec, evaluate, softmax_hvp

__all__ = [
    "SmoothCrossEntropy",
    "SmoothCrossEntropyJvp",
    "class_dim",
    "differentiable_loss",
    "smooth_cross_entropy",
]


def class_dim(input: torch.Tensor) -> int:
    """PyTorch's class dimension: 0 for a 1-D input (C,), otherwise 1 ((N, C, d1, ..., dk))."""
    return 0 if input.dim() == 1 else 1


class SmoothCrossEntropy(torch.autograd.Function):
    """``apply(input, target, spec, eps, weight) -> (loss, gradient, target_gradient)``.

    ``spec`` is the static half of a :class:`~smoothce.internal.LossSpec` (``spec.split()``)
    and ``eps``, ``weight`` its array half (None where absent). ``gradient`` is ∂loss/∂input;
    ``target_gradient`` is ∂loss/∂target for probability targets that require grad, else
    None. Callers use the first output only.
    """

    # setup_context (rather than ctx in forward) is what torch.func needs; the generated vmap
    # rule runs the core itself on vmap's batched tensors.
    generate_vmap_rule = True

    @classmethod
    def apply(cls, *args: Any) -> Any:  # type: ignore[override]
        # Every call passes all arguments positionally, so torch's per-call binding of them to
        # forward's signature has nothing to fill in: skipping it takes ~20 µs (a tenth of a
        # 256×10 step). Under functorch transforms torch's own path runs.
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        return super(torch.autograd.Function, cls).apply(*args)

    @staticmethod
    def forward(  # type: ignore[override]
        input: torch.Tensor,
        target: torch.Tensor,
        spec: LossSpec,
        eps: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        full = spec.join((eps, weight, None))
        want_target = target.requires_grad and target.is_floating_point()
        # with spec.overwrite the core writes into input's storage (grad mode is off here):
        # that bumps input's version, so autograd refuses any node that saved the old logits
        result = evaluate(full, input, target, grad=True, grad_labels=want_target)
        return result.value, result.grad, result.grad_labels

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        input, target, spec, eps, weight = inputs
        _, gradient, target_gradient = output
        # The gradient output stays differentiable on purpose: a backward taken with
        # create_graph multiplies by it, and differentiating that product reaches this node's
        # backward through the gradient output (the Hessian-vector product).
        ctx.save_for_backward(gradient, target, eps, weight, target_gradient)
        ctx.save_for_forward(gradient, target, eps, weight, target_gradient)
        # unused outputs get no upstream gradient: without this, autograd would fill an N×C
        # buffer of zeros for the gradient output on every backward
        ctx.set_materialize_grads(False)
        ctx.spec = spec
        ctx.class_dim = spec.axis % input.dim()

    @staticmethod
    def backward(
        ctx: Any, grad_loss: Any, grad_gradient: Any, _grad_target_gradient: Any
    ) -> tuple[Any, ...]:
        gradient, target, eps, weight, target_gradient = ctx.saved_tensors
        grad_input = grad_target = None
        if grad_loss is not None:
            upstream = _per_row(ctx, grad_loss)
            grad_input = _scale(gradient, upstream)
            if target_gradient is not None:
                grad_target = target_gradient * upstream
        if grad_gradient is not None:  # the gradient output was differentiated
            mass = _target_mass(ctx, gradient, target, eps, weight)
            hvp = softmax_hvp(_xp(), gradient, mass, grad_gradient, axis=ctx.class_dim)
            grad_input = hvp if grad_input is None else grad_input + hvp
            if ctx.needs_input_grad[1]:
                raise NotImplementedError(
                    "smoothce.torch: second derivatives that involve a probability target "
                    "requiring grad are not implemented; detach the target"
                )
        return grad_input, grad_target, None, None, None


class SmoothCrossEntropyJvp(SmoothCrossEntropy):
    """:class:`SmoothCrossEntropy` with forward-mode AD (``torch.func.jvp``, ``jacfwd``,
    ``hessian``, ``torch.autograd.forward_ad``).

    A separate class because torch.compile (dynamo) refuses any Function that defines ``jvp``;
    compiled code uses the plain one.
    """

    @staticmethod
    def jvp(ctx: Any, d_input: Any, d_target: Any, *_: Any) -> tuple[Any, ...]:
        gradient, target, eps, weight, target_gradient = ctx.saved_tensors
        reduce_dims = ctx.class_dim if ctx.spec.reduction == "none" else None
        d_loss = d_gradient = None
        if d_input is not None:
            d_loss = _inner(gradient, d_input, reduce_dims)
            mass = _target_mass(ctx, gradient, target, eps, weight)
            d_gradient = softmax_hvp(_xp(), gradient, mass, d_input, axis=ctx.class_dim)
        if d_target is not None and target_gradient is not None:
            term = _inner(target_gradient, d_target, reduce_dims)
            d_loss = term if d_loss is None else d_loss + term
            # the gradient s·(T·p − t) moves with the target through t and T = Σ t
            zero = _target_mass(ctx, gradient, torch.zeros_like(target), eps, weight)
            d_mass = _target_mass(ctx, gradient, d_target, eps, weight) - zero
            p = gradient + _target_mass(ctx, gradient, target, eps, weight)
            total = p.sum(ctx.class_dim, keepdim=True)
            p = p / torch.where(total == 0, torch.ones_like(total), total)
            moved = p * d_mass.sum(ctx.class_dim, keepdim=True) - d_mass
            d_gradient = moved if d_gradient is None else d_gradient + moved
        if d_loss is None:
            d_loss = torch.zeros_like(_loss_like(ctx, gradient))
        return d_loss, d_gradient, None


# Function.apply binds its arguments with inspect.signature(forward) on every call; a
# precomputed __signature__ makes that lookup nearly free (tens of µs per call otherwise).
SmoothCrossEntropy.forward.__signature__ = inspect.signature(SmoothCrossEntropy.forward)  # type: ignore[attr-defined]


def smooth_cross_entropy() -> type[SmoothCrossEntropy]:
    """The Function to apply: with forward mode, except where torch.compile traces."""
    return SmoothCrossEntropy if torch.compiler.is_compiling() else SmoothCrossEntropyJvp


def differentiable_loss(spec: LossSpec, input: torch.Tensor, target: torch.Tensor) -> Any:
    """The loss of ``spec`` (one class axis) as a differentiable torch value: the seam
    smoothce.keras uses on the torch backend."""
    static, (eps, weight, where) = spec.split()
    if where is not None:
        raise NotImplementedError("smoothce.torch takes no class mask (where)")
    return smooth_cross_entropy().apply(input, target, static, eps, weight)[0]


def _xp() -> Any:
    import array_api_compat.torch

    return array_api_compat.torch


def _per_row(ctx: Any, grad_loss: torch.Tensor) -> torch.Tensor:
    """The upstream gradient, one value per example broadcast along the class dimension."""
    if ctx.spec.reduction == "none" and grad_loss.dim() > 0:
        return grad_loss.unsqueeze(ctx.class_dim)
    return grad_loss


def _scale(gradient: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """upstream · gradient, in the saved buffer itself when nothing can observe it.

    The saved gradient is released with the graph unless the graph is retained, so scaling it
    in place (or handing it on as it is, for ``loss.backward()`` on CPU) saves an N×C buffer
    and a pass. With ``retain_graph`` (a second backward will read it), ``create_graph`` (the
    product must be differentiable), under torch.compile or functorch transforms (batched
    upstream gradients), a new tensor is made.
    """
    if (
        torch.is_grad_enabled()
        or torch.compiler.is_compiling()
        or torch._C._are_functorch_transforms_active()
        or torch._C._functorch.is_functorch_wrapped_tensor(upstream)
        or torch._C._autograd._get_current_graph_task_keep_graph()
    ):
        return upstream * gradient
    if upstream.dim() == 0 and upstream.is_cpu and upstream.item() == 1:
        return gradient  # loss.backward(): reading a CPU scalar costs no device sync
    return gradient.mul_(upstream)


def _inner(a: torch.Tensor, b: torch.Tensor, dim: int | None) -> torch.Tensor:
    """⟨a, b⟩ over the class dimension per example (``dim``), or over everything."""
    product = a * b
    return product.sum() if dim is None else product.sum(dim)


def _target_mass(
    ctx: Any, like: torch.Tensor, target: torch.Tensor, eps: Any, weight: Any
) -> torch.Tensor:
    """s·t, the logit-free part of the gradient, from the core (for second derivatives)."""
    spec = ctx.spec.join((eps, weight, None)).replace(overwrite=False)
    with torch.no_grad():
        return evaluate(spec, like.detach(), target.detach(), target_mass=True).target_mass


def _loss_like(ctx: Any, gradient: torch.Tensor) -> torch.Tensor:
    if ctx.spec.reduction == "none":
        return gradient.sum(ctx.class_dim)
    return gradient.sum()
