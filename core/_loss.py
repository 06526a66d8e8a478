"""The public loss functions: argument checks, layout and dtype handling, and the reduction.

The math itself is in ``smoothce._kernel``; this module prepares the arrays for it (class axis
last, accumulation dtype, labels in the indexing dtype), decides whether the kernel can run
over cache-sized row blocks writing into one output buffer (eager NumPy and PyTorch) or as one
out-of-place expression (everything else, and what jit compilers fuse), and reduces.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from . import _kernel, _validate
from ._compat import device as _device
from ._compat import is_traced, namespace
from ._compat.inplace import Functional, inplace_ops

__all__ = ["grad", "loss", "loss_and_grad", "smooth_labels"]

Reduction = Literal["mean", "sum", "none"]
Spread = Literal["all", "others"]


def loss(
    logits: Any,
    labels: Any,
    eps: Any = 0.1,
    *,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int | None = None,
    where: Any = None,
    reduction: Reduction = "mean",
    spread: Spread = "all",
) -> Any:
    r"""Label-smoothed softmax cross-entropy.

    Per example, with p = softmax(z) over ``axis`` and smoothed target
    q = (1 − ε)·onehot(y) + ε/K (or (1 − ε)·y + ε/K for probability labels)::

        L = −Σ_c w_c q_c log p_c = T·logsumexp(z) − Σ_c w_c q_c z_c,   T = Σ_c w_c q_c

    which for integer labels without weights is lse − (1 − ε)·z_y − (ε/K)·Σ_c z_c.

    Args:
      logits: floating array, K classes along ``axis``. Any array-API array, or a TF tensor.
      labels: integer class indices of the logits' shape without ``axis``, or floating
        probabilities of the logits' shape (soft labels; smoothing is applied on top).
      eps: smoothing ε in [0, 1]; a Python number or a 0-d array.
      axis: the class axis.
      weight: optional per-class weights of shape (K,), PyTorch's ``weight``.
      ignore_index: integer label whose examples contribute nothing (integer labels only).
      where: optional boolean class mask broadcastable to ``logits``; masked classes leave the
        softmax and are not counted in K (optax's ``where``).
      reduction: ``"mean"`` (PyTorch's: divided by Σ w_y over kept examples for integer labels,
        by the number of examples for probability labels), ``"sum"`` or ``"none"`` (one loss per
        example, the labels' batch shape).
      spread: ``"all"`` spreads ε over all K classes (PyTorch, Keras, optax); ``"others"`` puts
        ε/(K − 1) on each wrong class and 1 − ε on the label (fairseq, Megatron, T5X), which is
        ``"all"`` with ε' = ε·K/(K − 1).

    Returns:
      The loss in the logits' library, device and floating dtype. Float16 and bfloat16 are
      accumulated in float32. An out-of-range label raises ``ValueError`` on concrete arrays;
      under jit / graph tracing it makes that example's loss NaN instead.
    """
    value, _ = _run(
        logits, labels, eps, axis, weight, ignore_index, where, reduction, spread, False
    )
    return value


def grad(
    logits: Any,
    labels: Any,
    eps: Any = 0.1,
    *,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int | None = None,
    where: Any = None,
    reduction: Reduction = "mean",
    spread: Spread = "all",
    overwrite_logits: bool = False,
) -> Any:
    r"""Gradient of :func:`loss` with respect to ``logits``: T·softmax(z) − w ⊙ q, then reduced.

    Same arguments as :func:`loss`. The result has the logits' shape and dtype; for
    ``reduction="none"`` it is the gradient of the sum of the per-example losses.

    ``overwrite_logits=True`` writes the gradient into the logits' own buffer and returns it,
    for callers that no longer need the logits (the Liger-Kernel trick): no N×K memory is
    allocated. It needs an eager, writable, C-contiguous NumPy array or a torch tensor that
    does not require grad, with the class axis last; anything else raises ``ValueError``.
    """
    # the per-example losses come with the gradient at no extra N×C cost
    _, gradient = loss_and_grad(
        logits,
        labels,
        eps,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        where=where,
        reduction=reduction,
        spread=spread,
        overwrite_logits=overwrite_logits,
    )
    return gradient


def loss_and_grad(
    logits: Any,
    labels: Any,
    eps: Any = 0.1,
    *,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int | None = None,
    where: Any = None,
    reduction: Reduction = "mean",
    spread: Spread = "all",
    overwrite_logits: bool = False,
) -> tuple[Any, Any]:
    """:func:`loss` and :func:`grad` together, sharing the max, the exp and the sums.

    Same arguments as :func:`grad`, ``overwrite_logits`` included.
    """
    return _run(
        logits,
        labels,
        eps,
        axis,
        weight,
        ignore_index,
        where,
        reduction,
        spread,
        True,
        overwrite_logits,
    )


def smooth_labels(
    labels: Any,
    eps: Any,
    *,
    num_classes: int | None = None,
    axis: int = -1,
    spread: Spread = "all",
) -> Any:
    """Dense smoothed targets q = (1 − ε)·y + ε/K.

    ``labels`` are either integer class indices (then ``num_classes`` is required and the new
    class axis is inserted at ``axis``) or floating probabilities with the classes on ``axis``.
    ``spread="others"`` gives 1 − ε on the label and ε/(K − 1) elsewhere.
    """
    _validate.check_spread(spread)
    _validate.check_eps(eps)
    xp = namespace(labels, eps)
    if xp.isdtype(labels.dtype, "integral"):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"integer labels need num_classes >= 1, got {num_classes!r}")
        out_axis = _validate.class_axis(labels.ndim + 1, axis)
        classes = xp.arange(num_classes, dtype=labels.dtype, device=_device(labels))
        onehot = xp.astype(xp.expand_dims(labels, axis=-1) == classes, xp.float32)
        dense = _move_axis(xp, onehot, -1, out_axis)
    elif xp.isdtype(labels.dtype, "real floating"):
        out_axis = _validate.class_axis(labels.ndim, axis)
        if num_classes is not None and num_classes != labels.shape[out_axis]:
            raise ValueError(
                f"num_classes={num_classes} disagrees with labels' class axis of size "
                f"{labels.shape[out_axis]}"
            )
        dense = labels
    else:
        raise ValueError(f"labels must be integer or floating, got dtype {labels.dtype}")
    k = dense.shape[out_axis]
    eps_all = _kernel.spread_eps(eps, k, spread == "others")
    return (1 - eps_all) * dense + eps_all / k


def _move_axis(xp: Any, x: Any, source: int, destination: int) -> Any:
    """``moveaxis`` through ``permute_dims``, and no op at all when nothing moves.

    torch.moveaxis with int arguments (aten::moveaxis.int) has no vmap batching rule, while
    permute has one: this lets torch.vmap run the core on batched tensors.
    """
    ndim = x.ndim
    source, destination = source % ndim, destination % ndim
    if source == destination:
        return x
    order = [i for i in range(ndim) if i != source]
    order.insert(destination, source)
    return xp.permute_dims(x, tuple(order))


def _accumulation_dtype(xp: Any, dtype: Any) -> Any:
    # float16 / bfloat16 sums lose too much: accumulate them in float32.
    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype


def _run(
    logits: Any,
    labels: Any,
    eps: Any,
    axis: int,
    weight: Any,
    ignore_index: int | None,
    where: Any,
    reduction: str,
    spread: str,
    want_grad: bool,
    overwrite: bool = False,
) -> tuple[Any, Any]:
    """Validate, bring the class axis last, evaluate, reduce, restore layout and dtype."""
    _validate.check_reduction(reduction)
    _validate.check_spread(spread)
    _validate.check_eps(eps)
    xp = namespace(logits, labels, weight, where, eps)
    _validate.check_logits(xp, logits)
    ax = _validate.class_axis(logits.ndim, axis)
    integer = _validate.label_form(xp, logits, labels, ax)
    k = logits.shape[ax]
    dtype = logits.dtype
    work = _accumulation_dtype(xp, dtype)

    mask = None
    if where is not None:
        if where.dtype != xp.bool:
            raise ValueError(f"where must be a boolean class mask, got dtype {where.dtype}")
        mask = _move_axis(xp, _validate.broadcastable_mask(xp, where, logits), ax, -1)
    w = None
    if weight is not None:
        _validate.check_weight(weight, k)
        # shaped (1, ..., 1, K): broadcasts against the rows, gathers along the class axis
        w = xp.reshape(xp.astype(weight, work, copy=False), (1,) * (logits.ndim - 1) + (k,))
    if not isinstance(eps, (int, float)):
        eps = xp.astype(eps, work, copy=False)
    if integer:
        if ignore_index is not None and not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}")
        if mask is None:
            _kernel.spread_eps(eps, k, spread == "others")  # rejects K < 2 up front
        checked, maybe_ignored = _validate.check_label_values(xp, labels, k, ignore_index, mask)
        if not maybe_ignored:
            ignore_index = None  # no label is ignored: skip that bookkeeping
        info = xp.__array_namespace_info__()
        index_dtype = info.default_dtypes(device=_device(labels))["indexing"]
        indices = xp.astype(labels, index_dtype, copy=False)
    else:
        if ignore_index is not None:
            raise ValueError(
                f"ignore_index={ignore_index} applies to integer labels only, not to probabilities"
            )
        target = xp.astype(_move_axis(xp, labels, ax, -1), work, copy=False)

    problem = _kernel.Problem(xp, integer, eps, spread == "others", w, mask, ignore_index, 1.0)
    if integer:
        target = _kernel.label_terms(problem, indices, k, work, checked)
    denominator = None
    if reduction == "mean":
        denominator = _mean_denominator(problem, target, work)
        # an empty batch gives the Python int 0: scale NaN as in PyTorch, no ZeroDivisionError
        empty = isinstance(denominator, int) and denominator == 0
        scale = math.nan if empty else 1.0 / denominator
        problem = problem._replace(scale=scale)

    z = _move_axis(xp, logits, ax, -1)
    ops = _blocked_ops(xp, z, mask, overwrite)
    if ops is not None and (overwrite or math.prod(z.shape) > ops.block_elements):
        per_example, gradient = _blocked(problem, ops, z, target, work, want_grad, overwrite)
    else:  # one kernel call; eager in-place ops then work in one fresh buffer
        out = None
        if work != dtype:
            z = xp.astype(z, work)
            if ops is not None:
                out = z  # the copy is ours to overwrite
        elif ops is not None:
            out = xp.empty_like(z)  # (cheaper to call than empty(shape, dtype, device))
        if ops is None:
            ops = Functional(xp)
        per_example, gradient = _kernel.rows(problem, ops, z, target, out, want_grad)
        if gradient is not None:
            gradient = ops.astype(gradient, dtype)

    if reduction == "none":
        value = per_example
    elif isinstance(denominator, int) and 0 < denominator == math.prod(per_example.shape):
        value = xp.mean(per_example)  # the plain mean, in one call
    else:
        value = xp.sum(per_example)
        if denominator is not None:
            value = value / denominator
    value = xp.astype(value, dtype, copy=False)
    if gradient is not None:
        gradient = _move_axis(xp, gradient, -1, ax)
    return value, gradient


def _mean_denominator(p: _kernel.Problem, target: Any, work: Any) -> Any:
    """PyTorch's "mean" divisor: Σ w_y over kept examples, or the number of examples."""
    xp = p.xp
    if p.integer and target.w_y is not None:
        return xp.sum(target.w_y)
    column = target.label if p.integer else target
    shape = tuple(column.shape[:-1])
    if None in shape:  # unknown batch size while tracing: count at run time
        return xp.sum(xp.ones_like(column[..., 0], dtype=work))
    return math.prod(shape)


def _blocked_ops(xp: Any, z: Any, mask: Any, overwrite: bool) -> Any:
    """In-place primitives when the kernel can run over row blocks of a 2-D view, else None."""
    ops = None if is_traced(z) else inplace_ops(xp, z)
    row_free_mask = mask is None or math.prod(mask.shape[:-1]) == 1
    usable = ops is not None and row_free_mask and math.prod(z.shape) > 0
    if overwrite and not (usable and _validate.overwritable(z)):
        raise ValueError(
            "overwrite=True needs an eager, writable NumPy array or a torch tensor that does not "
            f"require grad, with the class axis last; got {type(z).__module__}.{type(z).__name__}"
        )
    return ops if usable else None


def _blocked(
    p: _kernel.Problem, ops: Any, z: Any, target: Any, work: Any, want_grad: bool, overwrite: bool
) -> tuple[Any, Any]:
    """Run the kernel over cache-sized row blocks, writing the gradient block by block.

    Memory: the gradient (or nothing extra, with ``overwrite``) plus one block of scratch per
    thread. Blocks write disjoint rows, so ``ops.threads`` threads can share them.
    """
    xp = p.xp
    batch, k = tuple(z.shape[:-1]), z.shape[-1]
    z2 = xp.reshape(z, (-1, k))  # a view for the usual C-contiguous layout
    if p.weight is not None or p.mask is not None:
        p = p._replace(
            weight=None if p.weight is None else xp.reshape(p.weight, (1, k)),
            mask=None if p.mask is None else xp.reshape(p.mask, (1, k)),
        )
    if p.integer:
        target2 = _kernel.Labels(
            *(None if t is None else xp.reshape(t, (-1, *t.shape[len(batch) :])) for t in target)
        )
    else:
        target2 = xp.reshape(target, (-1, k))
    n = z2.shape[0]
    step = max(1, ops.block_elements // k)
    device = _device(z2)
    converting = work != z2.dtype
    gradient = z2 if overwrite else None
    if want_grad and not overwrite:
        gradient = xp.empty((n, k), dtype=z2.dtype, device=device)

    scratch = threading.local()

    def block(start: int) -> Any:
        stop = min(start + step, n)
        rows = z2[start:stop, ...]
        if converting:
            rows = xp.astype(rows, work)
        if converting or not want_grad:
            if getattr(scratch, "buffer", None) is None:  # one block-sized buffer per thread
                scratch.buffer = xp.empty((step, k), dtype=work, device=device)
            out = scratch.buffer[: stop - start, ...]
        else:
            out = gradient[start:stop, ...]
        if p.integer:
            block_target = _kernel.Labels(
                *(None if t is None else t[start:stop, ...] for t in target2)
            )
        else:
            block_target = target2[start:stop, ...]
        per_example, g = _kernel.rows(p, ops, rows, block_target, out, want_grad)
        if want_grad and converting:
            gradient[start:stop, ...] = ops.astype(g, z2.dtype)
        return per_example

    starts = range(0, n, step)
    if len(starts) == 1:
        per_example = block(0)
    elif ops.threads > 1:
        per_example = xp.concat(list(_pool(ops.threads).map(block, starts)))
    else:
        per_example = xp.concat([block(start) for start in starts])
    per_example = xp.reshape(per_example, batch)
    return per_example, (xp.reshape(gradient, (*batch, k)) if want_grad else None)


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool, made on first use (thread start-up would cost more than a block)."""
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="smoothce")
    return _POOLS[threads]
