"""`smoothce.torch.linear_cross_entropy`: the loss straight from the hidden states, in chunks.

A drop-in for `torch.nn.functional.linear_cross_entropy` (the same leading signature) that
keeps label smoothing, z-loss, soft-capping, class weights, `reduction="none"` and
probability targets inside the fused, chunked path: the N×V logits are never stored whole.
Values and gradients come from the core (`smoothce.internal.evaluate_linear`); this module
only registers them with autograd and applies PyTorch's autocast policy.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from smoothce.internal import LossSpec, Names, evaluate_linear

from ._errors import native_errors
from ._functional import _autocast_enabled

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
        shard = ctx.spec.shard
        if shard is not None and d_hidden is not None:  # the shards' parts of d_hidden, added
            d_hidden = shard.sum(d_hidden)
        return d_hidden, d_weight, d_bias if ctx.has_bias else None, None, None, None, None, None


LinearCrossEntropy.forward.__signature__ = inspect.signature(LinearCrossEntropy.forward)  # type: ignore[attr-defined]


def _autocast(*tensors: Any) -> tuple[Any, ...]:
    """PyTorch's policy for a linear layer under autocast: run it in the autocast dtype (the
    loss itself is accumulated in float32 by the core anyway)."""
    device = tensors[0].device.type
    if not _autocast_enabled(device):  # also on torch < 2.4 and the meta device
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
    spread: str = "all",
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    process_group: Any = None,
    vocab_start: int | None = None,
    vocab_size: int | None = None,
) -> torch.Tensor:
    r"""Label-smoothed cross-entropy of `input @ linear_weight.T + linear_bias`, in chunks.

    With hidden states $h$, the classifier's weight $W$ and bias $b$, the logits are
    $z = h W^\top + b$ and the loss is [smoothce.torch.cross_entropy][]'s on them:

    $$
    l = -\sum_c w_c q_c \log \mathrm{softmax}(z)_c,
    \qquad q = (1 - \varepsilon)\,\mathrm{onehot}(y) + \frac{\varepsilon}{V}.
    $$

    The same as `cross_entropy(F.linear(input, linear_weight, linear_bias), target, ...)` with
    smoothce's options, but the N×V logits exist one chunk of rows at a time: memory for the
    logits falls from N×V to `chunk_size`×V. The gradients for `input`, `linear_weight` and
    `linear_bias` come from the same chunked pass; the weight's and bias's are accumulated in
    float32 whatever the input dtype. The leading arguments are those of
    `torch.nn.functional.linear_cross_entropy`; the core's [smoothce.linear_loss][] is the
    library-independent form.

    Args:
        input: Hidden states $h$, a real floating tensor of shape `(N, H)` or `(..., H)`.
            Under autocast the linear layer runs in the autocast dtype, as PyTorch's does
            (the loss is accumulated in float32 anyway).
        linear_weight: The classifier's weight $W$, a real floating tensor of shape `(V, H)`
            (`nn.Linear`'s weight layout).
        target: Class indices (int64) of `input`'s batch shape `(N,)` or `(...)`, each in
            $[0, V)$ or equal to `ignore_index`; or probabilities of shape `(..., V)`.
        linear_bias: The bias $b$ of shape `(V,)`. `None`: no bias.
        weight: Per-class weights $w$ of shape `(V,)`. `None`: all 1. Not differentiable
            (as in PyTorch).
        reduction: `"mean"`, `"sum"` or `"none"` (one loss per example).
        ignore_index: Index targets equal to it contribute nothing.
        label_smoothing: Smoothing $\varepsilon \in [0, 1]$; default 0.1.
        spread: `"all"` ($\varepsilon/V$ on every class) or `"others"`
            ($\varepsilon/(V - 1)$ on the wrong ones).
        z_loss: $\lambda \ge 0$ of the z-loss $\lambda \operatorname{lse}(z)^2$ (averaged over
            the kept examples under `"mean"`); 0 for none.
        softcap: $c > 0$: the logits become $c \tanh(z/c)$ first. `None`: no cap.
        chunk_size: Rows per chunk. `None` (default): as many as make $2^{24}$ logits.
        process_group: Vocab parallelism, as in [smoothce.torch.cross_entropy][]:
            `linear_weight`, `linear_bias` and `weight` are this rank's rows of the
            classifier, `input` is the same on every rank. Forward takes two all-reduces of a
            few numbers per example per chunk; backward one all-reduce of `input`'s gradient
            (N×H), as any vocab-parallel linear layer needs. `None`: all classes are here.
        vocab_start: This rank's first global class id, as in
            [smoothce.torch.cross_entropy][] (with `process_group`). `None`: from the slice
            layout gathered on the group's first call.
        vocab_size: The number of classes over all ranks, as in
            [smoothce.torch.cross_entropy][] (with `process_group`). `None`: from the slice
            layout gathered on the group's first call.

    Returns:
        The loss, a tensor on the input's device in the result dtype of `input` and
        `linear_weight`: 0-d for `"mean"` and `"sum"`, one value per example (`input`'s batch
        shape) for `"none"`; differentiable in `input`, `linear_weight` and `linear_bias`.
        With `process_group`, the global loss on every rank.

    Raises:
        ValueError: A wrong value or shape, raised as [smoothce.torch.InvalidValue][] (also a
            `RuntimeError`): $\varepsilon$ outside $[0, 1]$, an unknown `reduction`, shapes
            that do not fit together, `vocab_start` or `vocab_size` without `process_group`;
            an index target outside $[0, V)$ that is not `ignore_index`, where targets are
            read, as [smoothce.torch.InvalidLabel][].
        TypeError: A wrong type or dtype, raised as [smoothce.torch.InvalidType][] (also a
            `RuntimeError`).
        NotImplementedError: A `weight` that requires grad.

    Examples:
        >>> import torch, smoothce.torch
        >>> _ = torch.manual_seed(0)
        >>> h = torch.randn(6, 4, requires_grad=True)
        >>> w = torch.randn(10, 4, requires_grad=True)
        >>> t = torch.arange(6)
        >>> loss = smoothce.torch.linear_cross_entropy(h, w, t, chunk_size=4)
        >>> loss.backward()
        >>> h.grad.shape, w.grad.shape
        (torch.Size([6, 4]), torch.Size([10, 4]))

        The same loss as from the whole logits:

        >>> whole = smoothce.torch.cross_entropy(h @ w.T, t)
        >>> bool(torch.isclose(loss, whole))
        True
    """
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        raise NotImplementedError(
            "linear_cross_entropy is not differentiable with respect to weight (as in "
            "PyTorch); pass weight.detach()"
        )
    input, linear_weight, linear_bias = _autocast(input, linear_weight, linear_bias)
    floating = target.is_floating_point()
    shard = None
    if process_group is not None or vocab_start is not None or vocab_size is not None:
        from ._distributed import shard_from_arguments

        k_local = linear_weight.shape[0]
        shard = shard_from_arguments(process_group, k_local, vocab_start, vocab_size, input.device)
    spec = LossSpec(
        label_smoothing,
        -1,
        weight,
        None if floating else ignore_index,
        None,
        reduction,
        spread,
        names=NAMES,
        z_loss=z_loss,
        softcap=softcap,
        shard=shard,
    )
    static, (eps, weight, _) = spec.split()
    with torch.autocast(input.device.type, enabled=False):
        value, *_ = LinearCrossEntropy.apply(
            input, linear_weight, linear_bias, target, static, chunk_size, eps, weight
        )
    return value
