r"""Fused linear + cross-entropy: the loss straight from the hidden states, in chunks of rows.

With hidden states $h$ of shape `(N, H)`, the classifier $W$ of shape `(V, H)` and the bias
$b$, the logits $z = h W^\top + b$ are formed one chunk of rows at a time and never stored whole.
Per chunk the kernel writes $G = \partial L/\partial z$ into the chunk's own logits
buffer (eager NumPy and PyTorch: cache-sized row blocks, as the unfused runner), then

$$
\partial L/\partial h_{\text{chunk}} = G W, \qquad
\partial L/\partial W \mathrel{+}= G^\top h_{\text{chunk}}, \qquad
\partial L/\partial b \mathrel{+}= \textstyle\sum_{\text{rows}} G.
$$

The reduction's denominators are global (computed from all labels before the loop), the
per-example upstream gradient (`reduction="none"`) scales $G$ before anything is summed over
tokens, and the weight and bias gradients are accumulated in float32 (or float64) whatever the
input dtype; 16-bit logits are computed in float32 like the unfused loss.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ._backends import Functional, common_backend
from ._kernel import DenseTarget, IndexTarget, Problem, Want, rows
from ._run import (
    _blocked,
    _check_label_values,
    _inverse,
    _late_denominator,
    _mean_denominator,
    _reduce,
    eps_value,
)
from ._spec import LossSpec, check_positive

__all__ = ["LinearResult", "evaluate_linear"]

DEFAULT_CHUNK_ELEMENTS = 1 << 24  # logits per chunk when chunk_size is None (64 MiB in float32)


class LinearResult(NamedTuple):
    """The loss and, when asked for, its gradients with respect to hidden, W and the bias
    (None without a bias), and the per-example log-sum-exp."""

    value: Any
    d_hidden: Any = None
    d_linear_weight: Any = None
    d_linear_bias: Any = None
    lse: Any = None


def evaluate_linear(
    spec: LossSpec,
    hidden: Any,
    linear_weight: Any,
    labels: Any,
    *,
    linear_bias: Any = None,
    chunk_size: int | None = None,
    grad: bool = False,
    upstream: Any = None,
    lse: bool = False,
) -> LinearResult:
    """The loss of `spec` on the logits `hidden @ linear_weight.T + linear_bias`.

    `upstream` (for `reduction="none"`: one value per example, else a scalar) multiplies
    the gradients as the chain rule does; `None` means 1.

    With `spec.shard` (vocab parallelism), `linear_weight` and `linear_bias` hold this shard's
    rows of the classifier and `hidden` is the same on every shard: the loss is the global
    one, the weight and bias gradients this shard's, and `d_hidden` this shard's part of the
    sum over shards (the caller adds the parts, one all-reduce).
    """
    names = spec.names
    if spec.where is not None:
        raise ValueError("the fused linear loss takes no class mask (where)")
    if spec.axis not in (-1,):
        raise ValueError("the fused linear loss has its classes last (axis=-1)")
    backend = common_backend(hidden, linear_weight, linear_bias, labels, spec.weight)
    xp = backend.namespace(hidden)
    for name, x in (("hidden", hidden), ("linear_weight", linear_weight)):
        if backend.dtype_kind(xp, x.dtype) != "real floating":
            raise TypeError(f"{name} must have a real floating dtype, got {x.dtype}")
    if hidden.ndim < 1 or linear_weight.ndim != 2:
        raise ValueError(
            f"hidden must be (..., H) and linear_weight (V, H), got shapes "
            f"{tuple(hidden.shape)} and {tuple(linear_weight.shape)}"
        )
    v, h = (int(d) for d in linear_weight.shape)
    if hidden.shape[-1] != h:
        raise ValueError(
            f"hidden's last dimension {hidden.shape[-1]} differs from linear_weight's H = {h}"
        )
    if linear_bias is not None and tuple(linear_bias.shape) != (v,):
        raise ValueError(f"linear_bias must have shape ({v},), got {tuple(linear_bias.shape)}")
    if v < 1:
        raise ValueError("linear_weight must have at least one class (row)")
    batch = tuple(hidden.shape[:-1])
    n = math.prod(batch)
    dtype = xp.result_type(hidden.dtype, linear_weight.dtype)
    work = xp.float32 if backend.float_bits(xp, dtype) < 32 else dtype
    kind = backend.dtype_kind(xp, labels.dtype)
    integer = kind == "integral"
    if (
        (integer and tuple(labels.shape) != batch)
        or (kind == "real floating" and tuple(labels.shape) != (*batch, v))
        or kind not in ("integral", "real floating")
    ):
        error = TypeError if kind not in ("integral", "real floating") else ValueError
        raise error(
            f"{names.labels} of shape {tuple(labels.shape)} and dtype {labels.dtype} fit neither "
            f"form: integer class indices of shape {batch} or floating probabilities of shape "
            f"{(*batch, v)}"
        )
    if not integer and spec.ignore_index is not None:
        raise ValueError(f"{names.ignore_index} applies to integer {names.labels} only")
    shard = spec.shard
    offset = total = None
    if shard is not None:
        offset, total = shard.offset(v), shard.classes(v)
    k_all = v if shard is None else total
    if spec.others and isinstance(k_all, int) and k_all < 2:
        raise ValueError(f"{names.spread}='others' needs at least 2 classes, got K={k_all}")

    h2 = xp.reshape(hidden, (n, h))
    w_row = None
    if spec.weight is not None:
        if tuple(spec.weight.shape) != (v,):
            raise ValueError(
                f"{names.weight} must have shape ({v},), one entry per class, "
                f"got shape {tuple(spec.weight.shape)}"
            )
        w_row = xp.reshape(xp.astype(spec.weight, work, copy=False), (1, v))
    eps, eps_unread = eps_value(spec, backend, xp, work)
    if integer:
        flat = xp.reshape(labels, (n,))
        checked, ignore = _check_label_values(backend, xp, flat, k_all, spec, None, None)
        flat = xp.astype(flat, backend.index_dtype(xp, flat), copy=False)
        target: Any = IndexTarget.prepare(
            xp,
            flat,
            v,
            work,
            weight=w_row,
            ignore_index=ignore,
            checked=checked,
            offset=offset,
            total=total,
            nan=math.nan if checked else backend.nan(xp, work, flat),
        )
    else:
        target = DenseTarget.prepare(
            xp, xp.astype(xp.reshape(labels, (n, v)), work, copy=False), work
        )
    mean = spec.reduction == "mean"
    # sharded and weighted: each example's weight lives on its label's shard (as in _run)
    late = mean and shard is not None and integer and w_row is not None
    denominator = _mean_denominator(xp, target, work) if mean and not late else None
    z_mean = mean and spec.z_loss  # the z-loss's own count of kept examples, as in _run
    z_denominator = _mean_denominator(xp, target, work, weighted=False) if z_mean else None
    problem = Problem(
        xp,
        eps,
        spec.others,
        w_row,
        None,
        _inverse(denominator),
        eps_unread,
        spec.z_loss,
        _inverse(z_denominator),
        spec.softcap,
        shard,
    )
    want = Want(grad=grad, lse=lse)

    if upstream is not None and spec.reduction == "none":
        upstream = xp.reshape(xp.astype(upstream, work, copy=False), (n, 1))
    step = _chunk_rows(chunk_size, n, v)
    traced = backend.is_traced(hidden) or backend.is_traced(linear_weight)
    w_work = xp.astype(linear_weight, work, copy=False)
    b_work = None if linear_bias is None else xp.astype(linear_bias, work, copy=False)
    accumulate = xp.float64 if work == xp.float64 else xp.float32
    d_w = d_b = None
    losses, z_parts, lses, d_hidden, shares = [], [], [], [], []
    for start in range(0, n, step):
        stop = min(start + step, n)
        h_chunk = xp.astype(h2[start:stop, ...], work, copy=False)
        z = xp.matmul(h_chunk, xp.permute_dims(w_work, (1, 0)))  # a fresh (rows, V) buffer
        if b_work is not None:
            z = z + b_work
        part = target.map(lambda t, a=start, b=stop: t[a:b, ...])
        ops = None if traced else backend.inplace_ops(xp, z, (hidden, linear_weight, labels))
        if ops is not None and ops.block_elements is not None and shard is None:
            result = _blocked(problem, ops, z, part, want, grad, work, backend.device(z))
        else:
            out = z if ops is not None and grad else None
            result = rows(problem, ops or Functional(xp, backend.device), z, part, out, want)
        losses.append(result.loss)
        if result.z is not None:
            z_parts.append(result.z)
        if result.lse is not None:
            lses.append(result.lse)
        if late:
            shares.append(result.target_w)
        if not grad:
            continue
        g = result.grad
        if upstream is not None and spec.reduction == "none":
            g = g * upstream[start:stop, ...]  # per-example upstream: before the token sums
        d_hidden.append(xp.matmul(g, w_work))
        g_acc = xp.astype(g, accumulate, copy=False)
        dw = xp.matmul(xp.permute_dims(g_acc, (1, 0)), xp.astype(h_chunk, accumulate, copy=False))
        d_w = dw if d_w is None else d_w + dw
        if linear_bias is not None:
            db = xp.sum(g_acc, axis=0)
            d_b = db if d_b is None else d_b + db

    loss = _join(xp, losses)  # columns (n, 1)
    if late:
        denominator = _late_denominator(xp, target, _join(xp, shares), work)
    value = _reduce(xp, loss, spec.reduction, denominator)
    if z_parts:
        value = value + _reduce(xp, _join(xp, z_parts), spec.reduction, z_denominator)
    if spec.reduction == "none":
        value = xp.reshape(value, batch)
    value = xp.astype(value, dtype, copy=False)
    lse_out = None if not lses else xp.reshape(_join(xp, lses), batch)
    if not grad:
        return LinearResult(value, lse=lse_out)
    if d_w is None:  # an empty batch
        d_w = xp.zeros((v, h), dtype=accumulate, device=backend.device(linear_weight))
        if linear_bias is not None:
            d_b = xp.zeros((v,), dtype=accumulate, device=backend.device(linear_weight))
    d_h = _join(xp, d_hidden, (0, h), work, backend.device(hidden))
    factor = upstream if spec.reduction != "none" else None
    if late:  # the chunks ran with scale 1 (see _late_denominator)
        factor = _inverse(denominator) if factor is None else factor * _inverse(denominator)
    if factor is not None:
        d_h, d_w = d_h * factor, d_w * factor
        d_b = None if d_b is None else d_b * factor
    d_h = xp.reshape(xp.astype(d_h, hidden.dtype, copy=False), tuple(hidden.shape))
    d_w = xp.astype(d_w, linear_weight.dtype, copy=False)
    d_b = None if d_b is None else xp.astype(d_b, linear_bias.dtype, copy=False)
    return LinearResult(value, d_h, d_w, d_b, lse_out)


def _chunk_rows(chunk_size: Any, n: int, v: int) -> int:
    if chunk_size is None:
        return max(1, DEFAULT_CHUNK_ELEMENTS // max(v, 1))
    return check_positive(chunk_size, "chunk_size")


def _join(
    xp: Any, parts: list[Any], empty: tuple[int, ...] = (0, 1), dtype: Any = None,
    device: Any = None,
) -> Any:  # fmt: skip
    """The chunks' per-row results stacked; an empty array of shape ``empty`` for none."""
    if not parts:
        return xp.zeros(empty, dtype=dtype, device=device)
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)
