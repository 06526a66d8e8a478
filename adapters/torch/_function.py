"""The autograd node: every value and derivative comes from the core (``smoothce.internal``).

Forward evaluates the loss and d loss / d input in one core pass and keeps only that gradient
(one tensor of the input's shape; the target is kept by reference). Its second output is that
gradient itself, so differentiating it (double backward, forward-over-reverse Hessians) goes
through this node's backward and jvp, which apply the core's Hessian-vector product: nothing
is saved or computed for second derivatives unless one is taken.

A probability target that is differentiated (``requires_grad``, a ``torch.func`` transform or
a forward-mode dual level) adds a third output, d loss / d target. The second derivatives that
involve the target need only the softmax ``p`` (recovered from the gradient) and the core's
target mass: with a(x) = s·(1 − ε)·w ⊙ x per row, ∂G/∂y maps V to a(⟨V, p⟩ − V) and the
target gradient's derivative maps W to p·Σ a(W) − a(W).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any

import torch

from smoothce.internal import (
    LossSpec,
    backend_of,
    evaluate,
    softmax_from_gradient,
    softmax_hvp,
    target_gradient_map,
    target_map,
)

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
    """``apply(input, target, spec, eps, weight, compiled) -> (loss, gradient, target_gradient)``.

    ``spec`` is the static half of a :class:`~smoothce.internal.LossSpec` (``spec.split()``)
    and ``eps``, ``weight`` its array half (None where absent); ``compiled`` runs the core
    through ``torch.compile`` (see :func:`compiled_core`). ``gradient`` is ∂loss/∂input;
    ``target_gradient`` is ∂loss/∂target for a probability target that is differentiated,
    else None. Callers use the first output only.
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
        compiled: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        want_target = target.is_floating_point() and (
            target.requires_grad
            or torch._C._are_functorch_transforms_active()  # inputs are unwrapped here
            or torch.autograd.forward_ad._current_level >= 0  # a dual level is open
        )
        if compiled and not (
            torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active()
        ):
            return _run_compiled(input, target, spec, eps, weight, want_target)
        full = spec.join((eps, weight, None))
        # with spec.overwrite the core writes into input's storage (grad mode is off here):
        # that bumps input's version, so autograd refuses any node that saved the old logits
        result = evaluate(full, input, target, grad=True, grad_labels=want_target)
        return result.value, result.grad, result.grad_labels

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        input, target, spec, eps, weight, _ = inputs
        _, gradient, target_gradient = output
        # torch.func.grad and jvp run forward on unwrapped tensors: only here does it show
        # that a probability target is differentiated. Its gradient is then formed when asked
        # for, from the logits (kept by reference).
        logits = None
        if (
            target_gradient is None
            and target.is_floating_point()
            and not spec.overwrite
            and torch._C._functorch.is_functorch_wrapped_tensor(target)
        ):
            logits = input
        # The gradient output stays differentiable on purpose: a backward taken with
        # create_graph multiplies by it, and differentiating that product reaches this node's
        # backward through the gradient output (the Hessian-vector product).
        saved = (gradient, target, eps, weight, target_gradient, logits)
        ctx.save_for_backward(*saved)
        ctx.save_for_forward(*saved)
        # unused outputs get no upstream gradient: without this, autograd would fill an N×C
        # buffer of zeros for the gradient output on every backward
        ctx.set_materialize_grads(False)
        ctx.spec = spec
        ctx.class_dim = spec.axis % input.dim()

    @staticmethod
    def backward(
        ctx: Any, grad_loss: Any, grad_gradient: Any, grad_target_gradient: Any
    ) -> tuple[Any, ...]:
        gradient, target, eps, weight, target_gradient, logits = ctx.saved_tensors
        grad_input = grad_target = None
        if grad_gradient is not None or grad_target_gradient is not None:
            # an output of the first derivative was differentiated: second derivatives
            second = _SecondOrder(ctx, gradient, target, eps, weight)
            if grad_gradient is not None:
                grad_input = second.hvp(grad_gradient)
                if ctx.needs_input_grad[1] and target.is_floating_point():
                    grad_target = second.target_map(grad_gradient)
            if grad_target_gradient is not None:
                grad_input = _add(grad_input, second.target_gradient_map(grad_target_gradient))
        if grad_loss is not None:
            upstream = _per_row(ctx, grad_loss)
            if ctx.needs_input_grad[1] and target.is_floating_point():
                if target_gradient is None:
                    target_gradient = _target_gradient(ctx, logits, target, eps, weight)
                grad_target = _add(grad_target, target_gradient * upstream)
            if ctx.needs_input_grad[0]:
                # last: this may scale the saved buffer itself, which nothing reads afterwards
                grad_input = _add(grad_input, _scale(gradient, upstream))
        return grad_input, grad_target, None, None, None, None


class SmoothCrossEntropyJvp(SmoothCrossEntropy):
    """:class:`SmoothCrossEntropy` with forward-mode AD (``torch.func.jvp``, ``jacfwd``,
    ``hessian``, ``torch.autograd.forward_ad``).

    A separate class because torch.compile (dynamo) refuses any Function that defines ``jvp``;
    compiled code uses the plain one.
    """

    @staticmethod
    def jvp(ctx: Any, d_input: Any, d_target: Any, *_: Any) -> tuple[Any, ...]:
        gradient, target, eps, weight, target_gradient, logits = ctx.saved_tensors
        reduce_dims = ctx.class_dim if ctx.spec.reduction == "none" else None
        second = _SecondOrder(ctx, gradient, target, eps, weight)
        d_loss = d_gradient = d_target_gradient = None
        if d_input is not None:
            d_loss = _inner(gradient, d_input, reduce_dims)
            d_gradient = second.hvp(d_input)
            if target_gradient is not None:  # ∂(∂L/∂y)/∂z: the transpose of target_map
                d_target_gradient = second.target_map(d_input)
        if d_target is not None and target.is_floating_point():
            slope = target_gradient
            if slope is None:
                slope = _target_gradient(ctx, logits, target, eps, weight)
            d_loss = _add(d_loss, _inner(slope, d_target, reduce_dims))
            # the gradient s·(T·p − t) moves with the target through t and T = Σ t
            d_gradient = _add(d_gradient, second.target_gradient_map(d_target))
        # every output gets a tangent: torch fails on a None next to a real one
        if d_loss is None:
            d_loss = torch.zeros_like(_loss_like(ctx, gradient))
        if d_gradient is None:
            d_gradient = torch.zeros_like(gradient)
        if target_gradient is not None and d_target_gradient is None:
            d_target_gradient = torch.zeros_like(target_gradient)
        return d_loss, d_gradient, d_target_gradient


# Function.apply binds its arguments with inspect.signature(forward) on every call; a
# precomputed __signature__ makes that lookup nearly free (tens of µs per call otherwise).
SmoothCrossEntropy.forward.__signature__ = inspect.signature(SmoothCrossEntropy.forward)  # type: ignore[attr-defined]


def smooth_cross_entropy() -> type[SmoothCrossEntropy]:
    """The Function to apply: with forward mode, except where torch.compile traces."""
    return SmoothCrossEntropy if torch.compiler.is_compiling() else SmoothCrossEntropyJvp


def differentiable_loss(spec: LossSpec, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""The loss of `spec` (one class axis) as a differentiable torch value.

    The seam `smoothce.keras` uses on the torch backend: the loss that `spec` (a `LossSpec`
    from `smoothce.internal`) describes, per example

    $$
    l = -\sum_c w_c q_c \log p_c, \qquad q = (1 - \varepsilon)\,y + \frac{\varepsilon}{K},
    $$

    through the same autograd Function as [smoothce.torch.cross_entropy][], without its
    PyTorch argument conventions.

    Args:
        spec: A validated `LossSpec` with one integer class `axis` and no class mask
            (`where=None`); its `eps`, `weight`, `ignore_index`, `reduction`, `spread` and
            the other options apply as in [smoothce.loss][].
        input: Logits, a real floating tensor with the $K$ classes along `spec.axis`.
        target: Integer class indices of the input's shape without the class axis, or
            floating probabilities of the input's shape.

    Returns:
        The loss as `spec.reduction` says, a tensor on the input's device (0-d, or one value
        per example for `"none"`), differentiable as [smoothce.torch.cross_entropy][]'s.

    Raises:
        NotImplementedError: A `spec` with a class mask (`where`).

    Examples:
        >>> import torch, smoothce.torch
        >>> from smoothce.internal import LossSpec
        >>> logits, target = torch.tensor([[2.0, 1.0, 0.1]]), torch.tensor([0])
        >>> loss = smoothce.torch.differentiable_loss(LossSpec(eps=0.1), logits, target)
        >>> round(loss.item(), 4)
        0.5137
    """
    static, (eps, weight, where) = spec.split()
    if where is not None:
        raise NotImplementedError("smoothce.torch takes no class mask (where)")
    return smooth_cross_entropy().apply(input, target, static, eps, weight, False)[0]


# --- the compiled core ----------------------------------------------------------------------

_COMPILED: dict[tuple[LossSpec, bool], Callable[..., Any]] = {}


def compiled_core(static: LossSpec, want_target: bool, overwrite: bool) -> Callable[..., Any]:
    """``(input, target, eps, weight) -> (loss, gradient, target_gradient)``: the core's own
    array-API code for ``static`` (a spec without ``overwrite``), compiled by
    ``torch.compile`` (fullgraph) once per spec.

    Traced, the core takes its out-of-place path, which Inductor fuses into a few kernels.
    With ``overwrite`` the compiled code writes the gradient into ``input``.
    """
    key = (static, want_target, overwrite)
    fn = _COMPILED.get(key)
    if fn is None:

        def core(input: Any, target: Any, eps: Any, weight: Any) -> Any:
            spec = static.join((eps, weight, None))
            result = evaluate(spec, input, target, grad=True, grad_labels=want_target)
            gradient = result.grad
            if overwrite:
                gradient = input.copy_(gradient)
            return result.value, gradient, result.grad_labels

        # one code object per spec: dynamo caches compiled code per code object, and its
        # recompile limit would otherwise count every spec against the same one
        code = core.__code__.replace(co_name=f"smoothce_core_{len(_COMPILED)}")
        core = types.FunctionType(code, core.__globals__, closure=core.__closure__)
        fn = _COMPILED[key] = torch.compile(core, fullgraph=True)
    return fn


def _run_compiled(
    input: torch.Tensor,
    target: torch.Tensor,
    static: LossSpec,
    eps: Any,
    weight: Any,
    want_target: bool,
) -> tuple[Any, Any, Any]:
    full = static.join((eps, weight, None))
    overwrite = static.overwrite
    if overwrite:
        _check_overwrite(full, input, target)
        full = full.replace(overwrite=False)  # the compiled code writes input itself
        static = full.split()[0]
    value, gradient, target_gradient = compiled_core(static, want_target, overwrite)(
        input, target, eps, weight
    )
    if gradient is input:  # overwritten: autograd saves outputs, not inputs returned as such
        gradient = gradient.view_as(gradient)
    # traced code reads no value, so a bad label or ε is a NaN: where eager code would read
    # them (on the host, or check_labels=True), a NaN loss is looked at again eagerly, which
    # raises the eager error (or returns, for NaN logits); one sync on an accelerator
    read = target.is_cpu if static.check_labels is None else static.check_labels
    if read and bool(torch.isnan(value).any()):
        evaluate(full, input.detach(), target)
    return value, gradient, target_gradient


def _check_overwrite(spec: LossSpec, input: torch.Tensor, target: torch.Tensor) -> None:
    """The eager path's refusals of ``overwrite`` (the compiled one writes ``input`` too)."""
    refusal = backend_of(input).overwrite_refusal(input)
    if refusal is None and spec.axis % input.dim() != input.dim() - 1:
        refusal = "the class axis must be last (and the input logits)"
    if refusal is None and backend_of(input).shares_memory(target, input):
        refusal = "the target shares memory with it"
    if refusal is not None:
        raise ValueError(f"overwrite_input=True cannot write into {spec.names.logits}: {refusal}")


# --- helpers ------------------------------------------------------------------------------


# the core's torch namespace, built here, outside any torch.compile trace (which cannot build it)
_XP = backend_of(torch.empty(())).namespace(None)


class _SecondOrder:
    """Second derivatives at one forward point, from the saved gradient and the core's target
    mass (s·t): nothing about the logits but the gradient is needed."""

    def __init__(self, ctx: Any, gradient: Any, target: Any, eps: Any, weight: Any) -> None:
        self.ctx, self.gradient, self.target = ctx, gradient, target
        self.spec = ctx.spec.join((eps, weight, None)).replace(overwrite=False)
        if self.spec.softcap is not None:
            raise NotImplementedError(
                "smoothce.torch: second derivatives through soft-capping are not implemented"
            )
        if self.spec.shard is not None:
            raise NotImplementedError(
                "smoothce.torch: forward mode and second derivatives of the vocab-parallel "
                "loss (process_group) are not implemented"
            )
        self.dim = ctx.class_dim
        result = self._mass(target)
        self.mass = result.target_mass
        self.curvature = 0.0 if result.curvature is None else result.curvature
        self._p: Any = None
        self._slope: Any = None

    def _mass(self, target: Any) -> Any:
        with torch.no_grad():
            return evaluate(self.spec, self.gradient.detach(), target.detach(), target_mass=True)

    def hvp(self, v: Any) -> Any:
        """H·v, H the Hessian of the loss with respect to the input."""
        c = self.curvature
        return softmax_hvp(_XP, self.gradient, self.mass, v, axis=self.dim, curvature=c)

    @property
    def p(self) -> Any:
        """softmax(input), recovered from the gradient and the target mass."""
        if self._p is None:
            self._p = softmax_from_gradient(_XP, self.gradient, self.mass, axis=self.dim)
        return self._p

    @property
    def slope(self) -> Any:
        """s·(1 − ε)·w per row and class: t's derivative with respect to the target."""
        if self._slope is None:
            ones = torch.ones_like(self.target)
            zeros = torch.zeros_like(self.target)
            self._slope = self._mass(ones).target_mass - self._mass(zeros).target_mass
        return self._slope

    def target_map(self, v: Any) -> Any:
        """⟨V, ∂G/∂y⟩, also ∂(∂L/∂y)/∂z applied to a tangent V (the core's `target_map`)."""
        return target_map(_XP, self.p, self.slope, v, axis=self.dim)

    def target_gradient_map(self, w: Any) -> Any:
        """⟨W, ∂(∂L/∂y)/∂z⟩, also ∂G/∂y applied to a tangent W (its transpose)."""
        return target_gradient_map(_XP, self.p, self.slope, w, axis=self.dim)


def _target_gradient(ctx: Any, logits: Any, target: Any, eps: Any, weight: Any) -> Any:
    """∂loss/∂target, formed after the fact from the logits (torch.func.grad, jvp)."""
    if logits is None:
        raise NotImplementedError(
            "smoothce.torch: this derivative with respect to the probability target needs the "
            "logits, which overwrite_input=True replaced"
        )
    spec = ctx.spec.join((eps, weight, None))
    return evaluate(spec, logits, target, grad_labels=True).grad_labels


def _add(a: Any, b: Any) -> Any:
    return b if a is None else a + b


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
    product must be differentiable), under torch.compile, functorch transforms or
    ``is_grads_batched`` (batched upstream gradients, whose values cannot be read), a new
    tensor is made.
    """
    if (
        torch.is_grad_enabled()
        or torch.compiler.is_compiling()
        or torch._C._are_functorch_transforms_active()
        or torch._C._functorch.is_functorch_wrapped_tensor(upstream)
        or torch._C._functorch.is_legacy_batchedtensor(upstream)
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


def _loss_like(ctx: Any, gradient: torch.Tensor) -> torch.Tensor:
    if ctx.spec.reduction == "none":
        return gradient.sum(ctx.class_dim)
    return gradient.sum()
