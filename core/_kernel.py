"""The one loss-and-gradient kernel. Class axis last, accumulation dtype, any array namespace.

Notation: z logits with K classes, u = z − max z, s = Σ_c exp(u_c), p = exp(u)/s, ε the smoothing
(already in the spread-over-all-K convention), w per-class weights (all ones when absent).

Every variant has the same shape. With per-class target mass t_c = w_c·q_c, where
q = (1 − ε)·y + ε/K is the smoothed target (y one-hot or a probability vector), and T = Σ_c t_c,

    L = −Σ_c t_c log p_c = T·log s − Σ_c t_c u_c,        ∂L/∂z = T·p − t.

Unweighted with a normalised target T = 1 and the gradient is p − q. For integer labels t is
never materialised: Σ_c t_c u_c = (1 − ε)·w_y·u_y + (ε/K)·Σ_c w_c u_c needs one gather and one
per-row sum, so smoothing costs one reduction and one subtraction more than plain
cross-entropy (an ε of the number 0 skips both). All sums run over u rather than z, which keeps
logits of ±1e4 exact.

The N×K passes go through ``ops`` (``smoothce._compat.inplace``): out-of-place for jit
compilers and immutable arrays, or writing into ``out`` so eager NumPy and PyTorch can run the
kernel over cache-sized row blocks with no N×K temporaries.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Problem(NamedTuple):
    """What stays the same for every row block of one call (a tuple: cheap to make)."""

    xp: Any
    integer: bool  # integer class indices (else probabilities)
    eps: Any  # ε over all K classes: a Python float or a 0-d array
    others: bool  # spread="others": ε still to be scaled by K/(K−1) per row
    weight: Any  # (1, ..., 1, K) or None
    mask: Any  # boolean, broadcastable (1, ..., 1, K) or full, or None
    ignore_index: int | None
    scale: Any  # the gradient's factor from the reduction (1/denominator for "mean")


def spread_eps(eps: Any, k: Any, others: bool) -> Any:
    """ε in the spread-over-all-K convention: ε·K/(K − 1) for spread="others"."""
    if not others:
        return eps
    if isinstance(k, int) and k < 2:
        raise ValueError(f"spread='others' needs at least 2 classes, got K={k}")
    return eps * k / (k - 1)


class Labels(NamedTuple):
    """Integer labels, prepared once per call (O(N)) and sliced per row block.

    ``label`` (..., 1) is safe to gather with (bad and ignored entries replaced by 0);
    ``valid`` is False where a kept label is out of range or masked (its loss becomes NaN), or
    None when the labels were read and checked already; ``keep`` is None, or 0/1 with 0 for
    ``ignore_index``; ``w_y`` is the label's weight times keep, the example's share of
    PyTorch's "mean" denominator (None when that share is always 1).
    """

    label: Any
    valid: Any
    keep: Any
    w_y: Any


def label_terms(
    p: Problem, target: Any, num_classes: int, dtype: Any, checked: bool = False
) -> Labels:
    """:class:`Labels` for integer class indices ``target``; ``dtype`` for keep and w_y.

    ``checked``: every label not equal to ``ignore_index`` is known to be in range and not
    masked (eager validation read them), so no per-example validity is tracked.
    """
    xp = p.xp
    label = xp.expand_dims(target, axis=-1)
    ignored = None if p.ignore_index is None else target == p.ignore_index
    valid = None
    if not checked:
        valid = (label >= 0) & (label < num_classes)
        label = xp.where(valid, label, 0)
        if p.mask is not None:
            valid = valid & xp.take_along_axis(p.mask, label, axis=-1)
        valid = valid[..., 0] if ignored is None else valid[..., 0] | ignored
    elif ignored is not None and not 0 <= p.ignore_index < num_classes:
        label = xp.where(xp.expand_dims(ignored, axis=-1), 0, label)  # keep gathers in range
    w_y = None if p.weight is None else xp.take_along_axis(p.weight, label, axis=-1)[..., 0]
    keep = None
    if ignored is not None:
        keep = xp.astype(~ignored, dtype)
        w_y = keep if w_y is None else w_y * keep
    return Labels(label, valid, keep, w_y)


def rows(p: Problem, ops: Any, z: Any, target: Any, out: Any, want_grad: bool) -> tuple[Any, Any]:
    """Per-example losses and, if ``want_grad``, the gradient scaled by ``p.scale``.

    ``z`` (..., K) and ``target`` (:class:`Labels`, or probabilities (..., K)) are one block of
    rows; ``ops`` may write into ``out`` (same shape and dtype as ``z``, possibly ``z``
    itself), which then holds the gradient.
    """
    xp, mask, w = p.xp, p.mask, p.weight
    k = z.shape[-1]
    if mask is not None:
        z = xp.where(mask, z, -xp.inf)  # masked classes leave the softmax...
    m = xp.max(z, axis=-1, keepdims=True)
    u = ops.subtract(z, m, out)
    if mask is not None:
        fmask = xp.astype(mask, u.dtype)
        w = fmask if w is None else w * fmask
        k = xp.sum(fmask, axis=-1)
    eps = spread_eps(p.eps, k, p.others)
    uniform = eps / k  # ε/K: a scalar, or one value per row under a mask
    # ε = 0 given as a number is plain cross-entropy: no Σu, no spread term to subtract
    smoothing = not isinstance(eps, (int, float)) or eps != 0
    if smoothing or not p.integer:
        kept_u = ops.for_sums(z, m, u)
        if mask is not None:
            kept_u = xp.where(mask, kept_u, 0.0)  # ...and every sum

    if p.integer:
        label, valid, keep, w_y = target  # Labels
        if keep is not None:
            uniform = uniform * keep
        on_label = 1 - eps if w_y is None else (1 - eps) * w_y  # label's mass beyond ε/K
        u_y = ops.at_label(u, label)  # −inf only for a bad label
        total_w = k if w is None else xp.sum(w, axis=-1)
        sum_wu = 0.0
        if smoothing:
            sum_wu = ops.row_sum(kept_u) if w is None else xp.sum(w * kept_u, axis=-1)
        mass = on_label + uniform * total_w  # T
        sum_tu = on_label * u_y + uniform * sum_wu
    else:
        t = (1 - _col(xp, eps)) * target + _col(xp, uniform)
        if w is not None:
            t = t * w
        mass = xp.sum(t, axis=-1)
        sum_tu = xp.sum(t * kept_u, axis=-1)

    e = ops.exp(u, out)  # u is not needed past this point: exp may overwrite it
    s = ops.row_sum(e)
    log_s = xp.log(s)
    per_example = (log_s if _is_one(mass) else mass * log_s) - sum_tu
    if p.integer:
        if valid is not None:  # a bad label gives NaN, never a wrong number
            per_example = xp.where(valid, per_example, xp.nan)
        if keep is not None:
            per_example = xp.where(keep > 0, per_example, 0.0)
    if not want_grad:
        return per_example, None

    scale = p.scale
    if p.integer and keep is not None:
        # ignored rows get exactly 0, as in PyTorch, also when every row is ignored and
        # "mean" made the scale 1/0 (0·inf would be NaN)
        scale = xp.where(keep > 0, xp.ones_like(keep) * scale, 0.0)
    coef = mass * scale / s  # mass and scale are often Python floats: one array op
    if p.integer and valid is not None:
        coef = xp.where(valid, coef, xp.nan)
    g = ops.multiply(e, _col(xp, coef), out)  # T·p
    if p.integer:
        if smoothing:
            spread_part = _col(xp, uniform * scale)
            g = ops.subtract(g, spread_part if w is None else spread_part * w, out)  # − (ε/K)·w
        g = ops.add_at_label(g, label, -(on_label * scale))  # − (1 − ε)·w_y at the label
    else:
        g = ops.subtract(g, t * p.scale, out)  # − t
    return per_example, g


def _is_one(x: Any) -> bool:
    """Whether ``x`` is the number 1 (T = 1 unweighted: no product to form)."""
    return isinstance(x, (int, float)) and x == 1


def _col(xp: Any, x: Any) -> Any:
    """Per-row values as a column that broadcasts against the class axis."""
    if isinstance(x, (int, float)) or x.ndim == 0:
        return x
    return xp.expand_dims(x, axis=-1)
