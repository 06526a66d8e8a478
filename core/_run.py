"""The runner: binds a :class:`~smoothce._spec.LossSpec` to arrays and executes the kernel.

It checks what needs the arrays (dtypes, shapes, label values), brings the class axis last,
picks the accumulation dtype, and chooses how to execute: over cache-sized row blocks that
write the gradient into one output buffer (eager NumPy and PyTorch on CPU), as one block with
the same in-place primitives (eager PyTorch on accelerators, small inputs), or as one
out-of-place expression (traced code, immutable arrays: what jit compilers fuse). Then it
reduces and restores the layout and dtype.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from ._backends import Backend, Functional, backend_of, common_backend
from ._kernel import DenseTarget, IndexTarget, Problem, Rows, Want, rows
from ._spec import LabelRangeError, LossSpec

__all__ = ["Result", "eps_value", "evaluate"]


class Result(NamedTuple):
    """What :func:`evaluate` returns; the derivatives are None unless asked for.

    ``grad`` is ∂value/∂logits (for ``reduction="none"``: row n is ∂value_n/∂logits_n),
    ``grad_labels`` ∂value/∂labels (probability labels), ``grad_eps`` ∂value/∂ε, reduced like
    ``value``; ``target_mass`` is s·t, the part of ``grad`` that does not depend on the
    logits (s the reduction's scale), which second derivatives need, with ``curvature``
    (2λ·s_z of a z-loss, 0 without); ``lse`` the per-example log-sum-exp.
    """

    value: Any
    grad: Any = None
    grad_labels: Any = None
    grad_eps: Any = None
    target_mass: Any = None
    lse: Any = None
    curvature: Any = None


def evaluate(
    spec: LossSpec,
    logits: Any,
    labels: Any,
    *,
    grad: bool = False,
    grad_labels: bool = False,
    grad_eps: bool = False,
    target_mass: bool = False,
    lse: bool = False,
) -> Result:
    """The loss of ``spec`` on ``logits`` and ``labels`` and the derivatives asked for."""
    names = spec.names
    backend = common_backend(logits, labels, spec.weight, spec.where)
    logits, labels = backend.coerce(logits), backend.coerce(labels)
    xp = backend.namespace(logits)
    if backend.dtype_kind(xp, logits.dtype) != "real floating":
        raise TypeError(f"{names.logits} must have a real floating dtype, got {logits.dtype}")
    ndim = logits.ndim
    if ndim is None or ndim == 0:
        raise ValueError(f"{names.logits} must have at least one dimension (the class axis)")
    layout = _Layout.of(spec, logits)
    k = layout.k
    dtype = logits.dtype
    work = xp.float32 if backend.float_bits(xp, dtype) < 32 else dtype  # 16-bit: in float32
    integer = _label_form(backend.dtype_kind(xp, labels.dtype), layout, labels, names)
    if grad_labels and integer:
        raise TypeError(f"integer {names.labels} have no derivative")
    if not integer and spec.ignore_index is not None:
        raise ValueError(
            f"{names.ignore_index}={spec.ignore_index} applies to integer {names.labels} only, "
            "not to probabilities"
        )

    z = layout.to_rows(xp, logits)
    mask = absent = None
    if spec.where is not None:
        mask = layout.mask_rows(xp, spec.where, names.where)
        mask, absent = _absent_rows(xp, backend, mask)
    w = None
    if spec.weight is not None:
        w = layout.weight_row(xp, spec.weight, work, names.weight)
    eps, eps_unread = eps_value(spec, backend, xp, work)
    shard = spec.shard
    offset = total = None
    if shard is not None:
        if mask is not None or spec.probabilities is not None or spec.overwrite:
            raise ValueError(
                "class-sharded logits take no class mask (where), probabilities or overwrite"
            )
        offset, total = shard.offset(k), shard.classes(k)
    k_all = k if shard is None else total
    if spec.others and isinstance(k_all, int) and k_all < 2:
        raise ValueError(f"{names.spread}='others' needs at least 2 classes, got K={k_all}")

    if spec.probabilities is not None:
        z, chain = _from_probabilities(xp, z, spec.probabilities, work)
    if absent is not None:  # one flag per example, whatever shape the mask had
        batch_array = labels if integer else z[..., 0]
        absent = xp.zeros_like(batch_array, dtype=xp.bool) | absent
    if integer:
        checked, ignore = _check_label_values(backend, xp, labels, k_all, spec, mask, absent)
        labels = xp.astype(labels, backend.index_dtype(xp, labels), copy=False)
        target: Any = IndexTarget.prepare(
            xp,
            layout.batch_rows(xp, labels),
            k,
            work,
            weight=w,
            mask=mask,
            ignore_index=ignore,
            absent=absent,
            checked=checked,
            offset=offset,
            total=total,
            nan=math.nan if checked else backend.nan(xp, work, labels),
        )
    else:
        y = xp.astype(layout.to_rows(xp, _broadcast(xp, labels, logits)), work, copy=False)
        target = DenseTarget.prepare(xp, y, work, absent)
    if spec.others and mask is not None:
        _check_two_classes(backend, xp, mask, absent, names.spread)

    mean = spec.reduction == "mean"
    # sharded classes with weights: each example's weight lives on the shard of its label, so
    # the "mean" denominator comes out of the kernel's combined sums (and scales afterwards)
    late = mean and shard is not None and integer and w is not None
    denominator = _mean_denominator(xp, target, work) if mean and not late else None
    # the z-loss is averaged over the kept examples, whatever the class weights
    z_mean = mean and spec.z_loss
    z_denominator = _mean_denominator(xp, target, work, weighted=False) if z_mean else None
    problem = Problem(
        xp,
        eps,
        spec.others,
        w,
        mask,
        _inverse(denominator),
        eps_unread,
        spec.z_loss,
        _inverse(z_denominator),
        spec.softcap,
        shard,
    )
    want = Want(grad, grad_eps, grad_labels, target_mass, lse)
    if spec.overwrite and not integer and backend.shares_memory(labels, logits):
        raise ValueError(
            f"overwrite=True would write the gradient over the {names.labels}: they share "
            f"memory with the {names.logits}"
        )
    operands = (logits, labels, spec.weight, eps)
    out = _execute(backend, xp, problem, z, target, want, spec, dtype, work, operands)
    if late:
        denominator = _late_denominator(xp, target, out.target_w, work)
        scale = _inverse(denominator)
        out = out._replace(  # every output the kernel scaled by the reduction (by 1 here)
            grad=None if out.grad is None else out.grad * scale,
            target=None if out.target is None else out.target * scale,
        )

    value = _reduce(xp, out.loss, spec.reduction, denominator)
    if out.z is not None:
        value = value + _reduce(xp, out.z, spec.reduction, z_denominator)
    d_eps = None
    if grad_eps:
        d_eps = xp.astype(_reduce(xp, out.d_eps, spec.reduction, denominator), dtype, copy=False)
    if spec.reduction == "none":  # per-example columns: the labels' batch shape
        value = value[..., 0]
        d_eps = None if d_eps is None else d_eps[..., 0]
    gradient = out.grad
    if gradient is not None and spec.probabilities is not None:
        gradient = chain(gradient)
    if gradient is not None:
        gradient = layout.from_rows(xp, gradient)
    d_labels = out.d_labels
    if d_labels is not None:
        if denominator is not None:
            d_labels = d_labels * problem.scale
        d_labels = layout.from_rows(xp, xp.astype(d_labels, labels.dtype, copy=False))
    mass = curvature = None
    if out.target is not None:
        mass = layout.from_rows(xp, xp.astype(out.target, dtype, copy=False))
        curvature = 2 * spec.z_loss * problem.z_scale
    lse_out = None if out.lse is None else xp.astype(out.lse[..., 0], dtype, copy=False)
    value = xp.astype(value, dtype, copy=False)
    return Result(value, gradient, d_labels, d_eps, mass, lse_out, curvature)


# tf.function's AutoGraph would rewrite the core's Python control flow (and fails to); the core
# is traced as plain Python over array ops, so it is marked as AutoGraph's own (called as is).
evaluate.autograph_info__ = frozenset()  # type: ignore[attr-defined]


# --- layout -----------------------------------------------------------------------------------


class _Layout(NamedTuple):
    """Where the classes are: moved last (several class axes are flattened into one)."""

    shape: tuple[Any, ...]  # the logits' shape
    axes: tuple[int, ...]  # the class axes, non-negative, in the caller's order
    k: int  # the number of classes

    @classmethod
    def of(cls, spec: LossSpec, logits: Any) -> _Layout:
        shape = tuple(logits.shape)
        ndim = len(shape)
        axes = spec.axis if isinstance(spec.axis, tuple) else (spec.axis,)
        if not all(-ndim <= a < ndim for a in axes):
            raise ValueError(
                f"{spec.names.axis} {spec.axis!r} is out of range for "
                f"{spec.names.logits} with {ndim} dimension(s)"
            )
        axes = tuple(a % ndim for a in axes)
        if len(axes) > 1 and len(set(axes)) != len(axes):
            raise ValueError(f"{spec.names.axis} {spec.axis!r} names an axis twice")
        sizes = [shape[a] for a in axes]
        if None in sizes:
            raise ValueError(
                f"the class dimension(s) of {spec.names.logits} must be statically known, "
                f"got shape {shape}"
            )
        k = math.prod(sizes)
        if k == 0:
            raise ValueError(
                f"{spec.names.logits} must have at least one class, got shape {shape} with "
                f"{spec.names.axis} {spec.axis!r}"
            )
        return cls(shape, axes, k)

    @property
    def single(self) -> bool:
        return len(self.axes) == 1

    @property
    def batch(self) -> tuple[Any, ...]:
        return tuple(d for i, d in enumerate(self.shape) if i not in self.axes)

    def _order(self) -> tuple[int, ...]:
        return tuple(i for i in range(len(self.shape)) if i not in self.axes) + self.axes

    def to_rows(self, xp: Any, x: Any) -> Any:
        """An array of the logits' shape with the classes last, as one axis."""
        if self.single:
            return _move_axis(xp, x, self.axes[0], -1)
        x = xp.permute_dims(x, self._order())
        return xp.reshape(x, (*_dims(xp, x)[: len(self.shape) - len(self.axes)], self.k))

    def from_rows(self, xp: Any, x: Any) -> Any:
        """The inverse of :meth:`to_rows`."""
        if self.single:
            return _move_axis(xp, x, -1, self.axes[0])
        sizes = tuple(self.shape[a] for a in self.axes)
        x = xp.reshape(x, (*_dims(xp, x)[:-1], *sizes))
        order = self._order()
        return xp.permute_dims(x, tuple(order.index(i) for i in range(len(order))))

    def batch_rows(self, xp: Any, labels: Any) -> Any:
        return labels  # integer labels have the batch shape already, classes are gone

    def weight_row(self, xp: Any, weight: Any, work: Any, name: str) -> Any:
        """Weights of shape (K,) or the class axes' shape, as (1, ..., 1, K) in ``work``."""
        sizes = tuple(self.shape[a] for a in self.axes)
        if tuple(weight.shape) not in ((self.k,), sizes):
            raise ValueError(
                f"{name} must have shape ({self.k},), one entry per class, "
                f"got shape {tuple(weight.shape)}"
            )
        ndim = len(self.shape) - len(self.axes) + 1
        return xp.reshape(xp.astype(weight, work, copy=False), (1,) * (ndim - 1) + (self.k,))

    def mask_rows(self, xp: Any, where: Any, name: str) -> Any:
        """``where`` broadcastable to the logits, as (..., K) with size-1 axes kept small."""
        shape, target = tuple(where.shape), self.shape
        trailing = target[len(target) - len(shape) :]
        fits = len(shape) <= len(target) and all(
            a == 1 or b is None or a == b for a, b in zip(shape, trailing, strict=True)
        )
        if not fits:
            raise ValueError(
                f"{name} of shape {shape} does not broadcast to logits of shape {target}"
            )
        where = xp.reshape(where, (1,) * (len(target) - len(shape)) + shape)
        if self.single:
            where = _move_axis(xp, where, self.axes[0], -1)
            if where.shape[-1] == 1 and self.k != 1:
                # one flag per example (optax's per-example mask): the kernel counts K from
                # the mask, so it needs every class
                where = where & (xp.arange(self.k, device=_device_of(xp, where)) >= 0)
            return where
        # several class axes are flattened: the mask needs them at full size
        full = tuple(
            self.shape[i] if i in self.axes else d for i, d in enumerate(tuple(where.shape))
        )
        return self.to_rows(xp, xp.broadcast_to(where, full))


def _device_of(xp: Any, x: Any) -> Any:
    from ._backends import backend_of

    return backend_of(x).device(x)


def _dims(xp: Any, x: Any) -> tuple[Any, ...]:
    """``x``'s shape, with -1 for at most one unknown (traced) dimension."""
    shape = tuple(x.shape)
    return tuple(-1 if d is None else d for d in shape)


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


def _broadcast(xp: Any, labels: Any, logits: Any) -> Any:
    """Probability labels broadcast to the logits' shape (they are checked to fit)."""
    if tuple(labels.shape) == tuple(logits.shape):
        return labels
    return xp.broadcast_to(labels, tuple(logits.shape))


# --- checks that need the arrays ----------------------------------------------------------------


def _label_form(kind: str, layout: _Layout, labels: Any, names: Any) -> bool:
    """True for integer class indices, False for probability labels; raises otherwise."""
    shape, batch = layout.shape, layout.batch
    label_shape = tuple(labels.shape)
    integer = kind == "integral"
    floating = kind == "real floating"
    if integer and _same(label_shape, batch):
        return True
    if floating and _broadcasts(label_shape, shape):
        return False
    error = ValueError if integer or floating else TypeError
    raise error(
        f"{names.labels} of shape {label_shape} and dtype {labels.dtype} fit neither form: "
        f"integer class indices of shape {batch} or floating probabilities of shape {shape}"
    )


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(
        x == y or x is None or y is None for x, y in zip(a, b, strict=True)
    )


def _broadcasts(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether shape ``a`` broadcasts to ``b`` (unknown sizes trusted)."""
    if len(a) > len(b):
        return False
    trailing = b[len(b) - len(a) :]
    return all(x == 1 or x == y or x is None or y is None for x, y in zip(a, trailing, strict=True))


def eps_value(spec: LossSpec, backend: Backend, xp: Any, work: Any) -> tuple[Any, bool]:
    """ε for the kernel: a float, or a 0-d array in ``work``; and whether its value is unread.

    An array from another library than the logits (a NumPy scalar with torch logits, say) is
    read and used as a number when it lives on the host.
    """
    eps = spec.eps
    if isinstance(eps, float):
        return eps, False
    own = backend_of(eps)
    if own is not backend:
        if not own.on_host(eps):
            raise TypeError(
                f"{spec.names.eps} is a {own.name} array on a device while the logits are "
                f"{backend.name} arrays; pass a number"
            )
        return float(eps), False
    return xp.astype(eps, work, copy=False), not backend.on_host(eps)


def _absent_rows(xp: Any, backend: Backend, mask: Any) -> tuple[Any, Any]:
    """Rows whose classes are all masked count as absent (loss 0, gradient 0, outside the mean).

    Returns the mask with those rows unmasked (so that the kernel computes finite numbers
    there, which are then discarded) and the boolean ``absent`` (one per mask row, to be
    broadcast to the batch), or None when no row is absent.
    """
    absent = ~xp.any(mask, axis=-1)
    if backend.on_host(mask):
        any_absent = xp.any(absent)  # staged (unreadable) for a concrete mask inside a jit trace
        if not backend.is_traced(any_absent) and not bool(any_absent):
            return mask, None  # read on the host: no row is absent
    return mask | xp.expand_dims(absent, axis=-1), absent


def _check_two_classes(backend: Backend, xp: Any, mask: Any, absent: Any, name: str) -> None:
    """spread="others" needs K ≥ 2 kept classes in every present row (read when possible)."""
    if not backend.on_host(mask):
        return  # the kernel makes such rows NaN
    counts = xp.sum(xp.astype(mask, xp.int32), axis=-1)
    if absent is not None:
        counts = xp.where(absent, 2, counts)
    if math.prod(tuple(counts.shape)) and int(xp.min(counts)) < 2:
        raise ValueError(f"{name}='others' needs at least 2 unmasked classes in every row")


def _check_label_values(
    backend: Backend,
    xp: Any,
    labels: Any,
    k: int,
    spec: LossSpec,
    mask: Any,
    absent: Any,
) -> tuple[bool, int | None]:
    """Eager check of integer labels: range, and not on a class that ``where`` masks out.

    Labels are read when ``spec.check_labels`` says so (by default: when that costs no device
    synchronisation); elsewhere bad labels make their rows NaN. Returns ``(checked,
    ignore_index)``: whether the values passed the check, and ``ignore_index`` or None when
    no label equals it (which lets the kernel drop that bookkeeping).
    """
    ignore = spec.ignore_index
    read = backend.on_host(labels) if spec.check_labels is None else spec.check_labels
    if not read or backend.is_traced(labels) or math.prod(labels.shape) == 0:
        return False, ignore
    low, high = backend.extremes(xp, labels)
    if backend.is_traced(low):  # concrete labels, but a trace in progress stages the reduction
        return False, ignore
    low, high = int(low), int(high)
    skip = None
    if ignore is not None and low <= ignore <= high:
        skip = xp.equal(labels, ignore)
        if not bool(xp.any(skip)):
            skip = None
    if skip is None:
        ignore = None
    if absent is not None:
        skip = absent if skip is None else skip | absent
    if skip is not None and (low < 0 or high >= k):  # the range of the labels that count
        kept = xp.where(skip, 0, labels)
        low, high = int(xp.min(kept)), int(xp.max(kept))
    if low < 0 or high >= k:
        bad = low if low < 0 else high
        extra = "" if spec.ignore_index is None else f" or equal ignore_index={spec.ignore_index}"
        raise LabelRangeError(
            f"label {bad} is out of range: {spec.names.labels} must lie in [0, {k}){extra}"
        )
    if mask is not None:
        safe = labels if skip is None else xp.where(skip, 0, labels)
        hit = xp.take_along_axis(mask, xp.expand_dims(safe, axis=-1), axis=-1)[..., 0]
        if skip is not None:
            hit = hit | skip
        if not bool(xp.all(hit)):
            raise ValueError(f"a label points at a class that `{spec.names.where}` masks out")
    return True, ignore


# --- probabilities as input -----------------------------------------------------------------------


def _from_probabilities(xp: Any, probs: Any, clip: float, work: Any) -> tuple[Any, Any]:
    """Log-probabilities from probabilities, as Keras forms them, and the gradient's chain rule.

    r = P/ΣP, c = clip(r, δ, 1 − δ), z = log c; softmax(z) = c/Σc. Backward:
    ∂L/∂P_j = (h_j − Σ_c h_c r_c)/ΣP with h = ∂L/∂z / c where r lies inside the clip range.
    """
    dtype = probs.dtype
    p = xp.astype(probs, work, copy=False)
    total = xp.sum(p, axis=-1, keepdims=True)
    r = p / total
    c = xp.clip(r, clip, 1.0 - clip)
    z = xp.log(c)

    def chain(g: Any) -> Any:
        inside = (r >= clip) & (r <= 1.0 - clip)
        h = xp.where(inside, xp.astype(g, work, copy=False) / c, 0.0)
        out = (h - xp.sum(h * r, axis=-1, keepdims=True)) / total
        return xp.astype(out, dtype, copy=False)

    return z, chain


# --- execution ----------------------------------------------------------------------------------


def _execute(
    backend: Backend,
    xp: Any,
    p: Problem,
    z: Any,
    target: Any,
    want: Want,
    spec: LossSpec,
    dtype: Any,
    work: Any,
    operands: tuple[Any, ...],
) -> Rows:
    """Run the kernel: over row blocks, as one in-place block, or out of place."""
    ops = None
    if not (want.labels or want.target or backend.is_traced(z)):
        ops = backend.inplace_ops(xp, z, operands)  # None where buffers cannot be written
    row_free_mask = p.mask is None or math.prod(tuple(p.mask.shape)[:-1]) == 1
    if spec.overwrite:
        refusal = None if ops is not None else "it cannot be written in place here"
        if refusal is None and not row_free_mask:
            refusal = "a mask with one row per example needs the out-of-place path"
        if refusal is None and not (spec.probabilities is None and spec.axis in (-1, z.ndim - 1)):
            refusal = "the class axis must be last (and the input logits)"
        refusal = refusal or backend.overwrite_refusal(z)
        if refusal is not None:
            raise ValueError(
                f"overwrite=True needs an eager, writable NumPy array or a torch tensor that "
                f"does not require grad, with the class axis last; {spec.names.logits} of type "
                f"{type(z).__module__}.{type(z).__name__}: {refusal}"
            )
    if ops is not None and row_free_mask and p.shard is None:
        size, block = math.prod(tuple(z.shape)), ops.block_elements
        if size > 0 and (spec.overwrite or (block is not None and size > block)):
            return _blocked(p, ops, z, target, want, spec.overwrite, work, backend.device(z))
    # one kernel call; eager in-place ops then work in one fresh buffer
    if spec.overwrite:  # an empty batch: nothing to write, the (empty) logits are the gradient
        result = rows(p, Functional(xp, backend.device), z, target, None, want)
        return result._replace(grad=z if want.grad else None)
    out = None
    if work != dtype:
        z = xp.astype(z, work)
        if ops is not None:
            out = z  # the copy is ours to overwrite
    # otherwise rows() writes into the array its first subtraction makes (no empty_like call)
    ops = ops or Functional(xp, backend.device)
    result = rows(p, ops, z, target, out, want)
    if result.grad is not None:
        result = result._replace(grad=ops.astype(result.grad, dtype))
    return result


def _blocked(
    p: Problem, ops: Any, z: Any, target: Any, want: Want, overwrite: bool, work: Any, device: Any
) -> Rows:
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
    nb = len(batch)
    target2 = target.map(lambda t: xp.reshape(t, (-1, *t.shape[nb:])))
    n = z2.shape[0]
    step = max(1, (ops.block_elements or n * k) // k)
    converting = work != z2.dtype
    gradient = z2 if overwrite else None
    if want.grad and not overwrite:
        gradient = xp.empty((n, k), dtype=z2.dtype, device=device)

    scratch = threading.local()

    def block(start: int) -> Rows:
        stop = min(start + step, n)
        rows_ = z2[start:stop, ...]
        if converting:
            rows_ = xp.astype(rows_, work)
        if converting or not want.grad:
            if getattr(scratch, "buffer", None) is None:  # one block-sized buffer per thread
                scratch.buffer = xp.empty((step, k), dtype=work, device=device)
            out = scratch.buffer[: stop - start, ...]
        else:
            out = gradient[start:stop, ...]
        result = rows(p, ops, rows_, target2.map(lambda t: t[start:stop, ...]), out, want)
        if want.grad and converting:
            gradient[start:stop, ...] = ops.astype(result.grad, z2.dtype)
        return result

    starts = range(0, n, step)
    if len(starts) == 1:
        parts = [block(0)]
    elif ops.threads > 1:
        parts = list(_pool(ops.threads).map(block, starts))
    else:
        parts = [block(start) for start in starts]

    def joined(field: str) -> Any:
        pieces = [getattr(r, field) for r in parts]
        return None if pieces[0] is None else xp.reshape(xp.concat(pieces), (*batch, 1))

    gradient = xp.reshape(gradient, (*batch, k)) if want.grad else None
    return Rows(joined("loss"), gradient, joined("d_eps"), None, None, joined("z"), joined("lse"))


# --- reduction ------------------------------------------------------------------------------------


def _inverse(denominator: Any) -> Any:
    """The gradient's scale for a "mean" denominator (1 without one). An empty batch gives
    the Python int 0: scale NaN as in PyTorch, no ZeroDivisionError. An array denominator
    of 0 (every example ignored) gives a finite scale, which the absent rows' factor 0 then
    turns into an exact 0 gradient (the loss itself is 0/0 = NaN, as in PyTorch)."""
    if denominator is None:
        return 1.0
    if isinstance(denominator, int):
        return math.nan if denominator == 0 else 1.0 / denominator
    xp = backend_of(denominator).namespace(denominator)
    return xp.clip(denominator, min=1e-30) ** -1


def _mean_denominator(xp: Any, target: Any, work: Any, *, weighted: bool = True) -> Any:
    """PyTorch's "mean" divisor: Σ w_y over kept examples (integer labels), else the number of
    kept examples; a Python int when nothing is weighted or absent. ``weighted=False``: the
    number of kept examples in any case."""
    if weighted and target.share is not None:
        return xp.sum(target.share)
    if target.kept is not None:
        return xp.sum(xp.astype(target.kept, work))
    shape = target.batch_shape()
    if None in shape:  # unknown batch size while tracing: count at run time
        column = target.label if isinstance(target, IndexTarget) else target.probs
        return xp.sum(xp.ones_like(column[..., 0], dtype=work))
    return math.prod(shape)


def _late_denominator(xp: Any, target: Any, shares: Any, work: Any) -> Any:
    """The "mean" denominator over sharded classes with class weights: Σ w_y over the kept
    examples, from the kernel's combined per-row shares (an example's weight lives on its
    label's shard, so it is known only after the kernel's sum over the shards). The kernel ran
    with scale 1; the caller scales its gradient outputs by the inverse."""
    keep = 1.0 if target.kept is None else xp.astype(target.kept, work)
    return xp.sum(shares * keep)


def _reduce(xp: Any, per_example: Any, reduction: str, denominator: Any) -> Any:
    """The reduction of per-example values (a column (..., 1): "none" keeps it a column)."""
    if reduction == "none":
        return per_example
    if isinstance(denominator, int) and 0 < denominator == math.prod(per_example.shape):
        return xp.mean(per_example)  # the plain mean, in one call
    value = xp.sum(per_example)
    return value if denominator is None else value / denominator


# --- the thread pool ------------------------------------------------------------------------------

_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool, made on first use (thread start-up would cost more than a block)."""
    pool = _POOLS.get(threads)
    if pool is None:
        pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="smoothce")
    return pool


def _forget_pools() -> None:
    # a forked child inherits the pool objects but not their threads: work submitted there
    # would wait forever, so the child starts afresh
    _POOLS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)
