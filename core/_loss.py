"""Label-smoothed softmax cross-entropy and its gradient, written once against the array API.

Notation: z logits with K classes on the class axis, s = Σ_c exp(z_c − max z), lse = max z + log s,
p = softmax(z), ε the smoothing, w per-class weights (all ones when absent).

Every variant handled here has the same shape. With per-class target mass
t_c = w_c·q_c, where q = (1 − ε)·y + ε/K is the smoothed target (y one-hot or a probability
vector) and T = Σ_c t_c,

    L = −Σ_c t_c log p_c = T·lse − Σ_c t_c z_c,        ∂L/∂z = T·p − t.

Unweighted with a normalised target T = 1 and the gradient is p − q. For integer labels
t is never materialised: Σ_c t_c z_c = (1 − ε)·w_y·z_y + (ε/K)·Σ_c w_c z_c needs one gather
and one per-row sum, so label smoothing costs one reduction more than plain cross-entropy.
Both sums are taken over u = z − max z, which keeps huge logits (±1e4) exact.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from . import _validate
from ._compat import device as _device
from ._compat import namespace

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
) -> Any:
    r"""Gradient of :func:`loss` with respect to ``logits``: T·softmax(z) − w ⊙ q, then reduced.

    Same arguments as :func:`loss`. The result has the logits' shape and dtype; for
    ``reduction="none"`` it is the gradient of the sum of the per-example losses.
    """
    _, gradient = _run(
        logits, labels, eps, axis, weight, ignore_index, where, reduction, spread, True
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
) -> tuple[Any, Any]:
    """:func:`loss` and :func:`grad` together, sharing the max, the exp and the sums."""
    return _run(logits, labels, eps, axis, weight, ignore_index, where, reduction, spread, True)


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
    _validate.check_options("mean", spread)
    _validate.check_eps(eps)
    xp = namespace(labels, eps)
    if xp.isdtype(labels.dtype, "integral"):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"integer labels need num_classes >= 1, got {num_classes!r}")
        out_axis = _validate.class_axis(labels.ndim + 1, axis)
        classes = xp.arange(num_classes, dtype=labels.dtype, device=_device(labels))
        onehot = xp.astype(xp.expand_dims(labels, axis=-1) == classes, xp.float32)
        dense = xp.moveaxis(onehot, -1, out_axis)
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
    eps_all = _spread_eps(eps, k, spread)
    return (1 - eps_all) * dense + eps_all / k


def _spread_eps(eps: Any, k: Any, spread: str) -> Any:
    """ε in the spread-over-all-K convention."""
    if spread == "all":
        return eps
    if isinstance(k, int) and k < 2:
        raise ValueError(f"spread='others' needs at least 2 classes, got K={k}")
    return eps * k / (k - 1)


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
) -> tuple[Any, Any]:
    """Validate, bring the class axis last, evaluate, and restore layout and dtype."""
    _validate.check_options(reduction, spread)
    _validate.check_eps(eps)
    xp = namespace(logits, labels, weight, where, eps)
    _validate.check_logits(xp, logits)
    ax = _validate.class_axis(logits.ndim, axis)
    integer = _validate.label_form(xp, logits, labels, ax)
    k = logits.shape[ax]
    dtype = logits.dtype
    work = _accumulation_dtype(xp, dtype)

    z = xp.moveaxis(logits, ax, -1)
    if work != dtype:
        z = xp.astype(z, work)
    mask = None
    if where is not None:
        if where.dtype != xp.bool:
            raise ValueError(f"where must be a boolean class mask, got dtype {where.dtype}")
        mask = xp.moveaxis(_validate.broadcastable_mask(xp, where, logits), ax, -1)
    w = None
    if weight is not None:
        _validate.check_weight(weight, k)
        # shaped (1, ..., 1, K) so it broadcasts against the rows and gathers along the class axis
        w = xp.reshape(xp.astype(weight, work), (1,) * (logits.ndim - 1) + (k,))
    if not isinstance(eps, (int, float)):
        eps = xp.astype(eps, work)

    if integer:
        if ignore_index is not None and not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}")
        if mask is None:
            _spread_eps(eps, k, spread)  # rejects K < 2 for spread="others" up front
        _validate.check_label_values(xp, labels, k, ignore_index, mask)
        index_dtype = xp.__array_namespace_info__().default_dtypes(device=_device(labels))[
            "indexing"
        ]
        target = xp.astype(labels, index_dtype)
    else:
        if ignore_index is not None:
            raise ValueError(
                f"ignore_index={ignore_index} applies to integer labels only, not to probabilities"
            )
        target = xp.moveaxis(labels, ax, -1)
        target = xp.astype(target, work)

    value, gradient = _evaluate(
        xp, z, target, integer, eps, w, ignore_index, mask, reduction, spread, want_grad
    )
    value = xp.astype(value, dtype)
    if gradient is not None:
        gradient = xp.moveaxis(xp.astype(gradient, dtype), -1, ax)
    return value, gradient


def _evaluate(
    xp: Any,
    z: Any,
    target: Any,
    integer: bool,
    eps: Any,
    w: Any,
    ignore_index: int | None,
    mask: Any,
    reduction: str,
    spread: str,
    want_grad: bool,
) -> tuple[Any, Any]:
    """The math, class axis last, in the accumulation dtype."""
    k = z.shape[-1]
    if mask is not None:
        z = xp.where(mask, z, -xp.inf)
    u = z - xp.max(z, axis=-1, keepdims=True)
    e = xp.exp(u)
    s = xp.sum(e, axis=-1)
    log_s = xp.log(s)
    if mask is not None:
        u = xp.where(mask, u, 0.0)  # masked classes leave every sum
        w = xp.astype(mask, z.dtype) if w is None else xp.where(mask, w, 0.0)
        k = xp.sum(xp.astype(mask, z.dtype), axis=-1)
    eps = _spread_eps(eps, k, spread)
    uniform = eps / k  # ε/K, a scalar or one value per row

    if integer:
        label = xp.expand_dims(target, axis=-1)
        valid = (label >= 0) & (label < z.shape[-1])
        label = xp.where(valid, label, 0)
        if mask is not None:
            valid = valid & xp.take_along_axis(mask, label, axis=-1)
        valid = valid[..., 0]
        keep = None
        if ignore_index is not None:
            ignored = target == ignore_index
            valid = valid | ignored
            keep = xp.astype(~ignored, z.dtype)
        u_y = xp.take_along_axis(u, label, axis=-1)[..., 0]
        w_y = 1.0 if w is None else xp.take_along_axis(w, label, axis=-1)[..., 0]
        if keep is not None:
            w_y, uniform = w_y * keep, uniform * keep
        on_label = (1 - eps) * w_y  # t_y − (ε/K)·w_y: the label's extra target mass
        if w is None:
            total_w, sum_wu = k, xp.sum(u, axis=-1)
        else:
            total_w, sum_wu = xp.sum(w, axis=-1), xp.sum(w * u, axis=-1)
        mass = on_label + uniform * total_w  # T
        sum_tu = on_label * u_y + uniform * sum_wu
        per_example = mass * log_s - sum_tu
        per_example = xp.where(valid, per_example, xp.nan)  # bad label: NaN, never a wrong number
        if keep is not None:
            per_example = xp.where(keep > 0, per_example, 0.0)
        count = w_y if not isinstance(w_y, float) else None
    else:
        t = (1 - _col(xp, eps)) * target + _col(xp, uniform)
        if w is not None:
            t = t * w
        mass = xp.sum(t, axis=-1)
        per_example = mass * log_s - xp.sum(t * u, axis=-1)
        count = None

    value, scale = _reduce(xp, per_example, count, reduction)
    if not want_grad:
        return value, None

    coef = mass / s
    if integer:
        coef = xp.where(valid, coef, xp.nan)
    gradient = e * _col(xp, coef * scale)
    if integer:
        gradient = gradient - _col(xp, uniform * scale) * (1.0 if w is None else w)
        classes = xp.arange(z.shape[-1], dtype=label.dtype, device=_device(label))
        gradient = xp.where(classes == label, gradient - _col(xp, on_label * scale), gradient)
    else:
        gradient = gradient - t * scale
    return value, gradient


def _col(xp: Any, x: Any) -> Any:
    """Per-row values as a column that broadcasts against the class axis."""
    if isinstance(x, (int, float)) or x.ndim == 0:
        return x
    return xp.expand_dims(x, axis=-1)


def _reduce(xp: Any, per_example: Any, count: Any, reduction: str) -> tuple[Any, Any]:
    """The reduced loss and the factor that the gradient is scaled by."""
    if reduction == "none":
        return per_example, 1.0
    total = xp.sum(per_example)
    if reduction == "sum":
        return total, 1.0
    if count is None:
        shape = tuple(per_example.shape)
        n = math.prod(shape) if None not in shape else None
        denom = n if n is not None else xp.sum(xp.ones_like(per_example))
    else:
        denom = xp.sum(count)
    return total / denom, 1.0 / denom
