r"""The row pass shared by both target strategies: max, shift, exp, sums, loss and gradient.

Notation: z logits with K classes (class axis last), u = z − max z, s = Σ_c exp(u_c),
p = exp(u)/s, ε in the spread-over-all-K convention, w per-class weights (ones when absent),
y the target (one-hot or a probability vector), q = (1 − ε)·y + ε/K the smoothed target,
t_c = w_c·q_c the per-class target mass and T = Σ_c t_c. Every variant is

    L = −Σ_c t_c log p_c = T·log s − Σ_c t_c u_c,           ∂L/∂z = T·p − t,
    ∂L/∂ε = Σ_c w_c (1/K − y_c)(log s − u_c),             ∂L/∂y_c = (1 − ε)·w_c·(log s − u_c).

Both T and Σ t·u come from four row sums that each strategy forms its own way (the raw sums):
Σ w, Σ w·u, Σ w·y and Σ w·y·u, as T = (1 − ε)·Σ wy + (ε/K)·Σ w and
Σ t·u = (1 − ε)·Σ wyu + (ε/K)·Σ wu. Unweighted with a normalised target T = 1 and the
gradient is p − q. All sums run over u rather than z, which keeps logits of ±1e4 exact.

Two optional terms (``Problem.z_loss``, ``Problem.softcap``): the z-loss adds λ·lse² per example
(lse = log Σ_c exp z_c over the unmasked classes), whose gradient 2λ·lse·p joins T·p; soft-capping
replaces z by z' = c·tanh(z/c) before everything else and multiplies the whole gradient by
dz'/dz = 1 − (z'/c)².

Sharded classes (``Problem.shard``, vocab parallelism): each shard holds a slice of the classes.
The row max goes through ``shard.max`` and the raw sums and s, stacked, through one
``shard.sum``; everything after is per shard again (each forms its slice of T·p − t). On one
device there is no shard and nothing is combined.

Per-row values are columns (..., 1) throughout, so they broadcast against the classes without
reshaping; the per-example results are returned as columns too.

The N×K passes go through ``ops`` (``smoothce._backends``): out-of-place for jit compilers and
immutable arrays, or writing into ``out`` so that eager NumPy and PyTorch can run the kernel
over cache-sized row blocks with no N×K temporaries.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Problem", "RawSums", "Rows", "Shifted", "Want", "rows", "spread_eps"]


class Problem(NamedTuple):
    """What stays the same for every row block of one call (a tuple: cheap to make)."""

    xp: Any
    eps: Any  # ε as given: a Python float or a 0-d array in the accumulation dtype
    others: bool  # spread="others": ε still to be scaled by K/(K − 1) per row
    weight: Any  # (1, ..., 1, K) or None
    mask: Any  # boolean, (1, ..., 1, K) or one row per example, or None
    scale: Any  # the gradient's factor from the reduction (1/denominator for "mean"), finite
    eps_unread: bool  # ε is an array whose value was never read: NaN where it leaves [0, 1]
    z_loss: float = 0.0  # λ of the z-loss λ·lse² (0: none)
    z_scale: Any = 1.0  # the z-loss's factor from the reduction (1/examples for "mean")
    softcap: float | None = None  # c: the logits become c·tanh(z/c) first
    shard: Any = None  # the reducer of class-sharded logits (vocab parallelism), or None


class Want(NamedTuple):
    """Which derivatives to form besides the loss."""

    grad: bool = False  # ∂L/∂z, written into ``out``
    eps: bool = False  # ∂L_n/∂ε per example
    labels: bool = False  # ∂L/∂y (probability labels; needs out-of-place ``ops``)
    target: bool = False  # the scaled target mass s·t (for second derivatives; out of place)
    lse: bool = False  # the per-example log-sum-exp (for logging)


class Rows(NamedTuple):
    """One block's results, per example as columns (..., 1), and the derivatives asked for."""

    loss: Any  # the cross-entropy part
    grad: Any = None
    d_eps: Any = None
    d_labels: Any = None
    target: Any = None
    z: Any = None  # the z-loss part λ·lse² (None without z-loss)
    lse: Any = None
    target_w: Any = None  # Σ w·y of each row after combining shards (the "mean" shares)


class Shifted(NamedTuple):
    """What a target strategy reads before ``exp`` may overwrite u."""

    u: Any  # z − max z (possibly in ``out``)
    kept_u: Any  # u for the row sums, 0 on masked classes (None when no sum needs it)
    w: Any  # per-class weights times the class mask (None: all ones)
    k: Any  # classes per row on this shard: K, or a count per row (column) under a mask


class RawSums(NamedTuple):
    """A strategy's row sums (columns, or numbers when constant), before combining shards."""

    total_w: Any  # Σ_c w_c (k unweighted)
    sum_wu: Any  # Σ_c w_c u_c (None when nothing needs it)
    target_w: Any  # Σ_c w_c y_c (1 for integer labels without weights)
    target_wu: Any  # Σ_c w_c y_c u_c


def spread_eps(eps: Any, k: Any, others: bool) -> Any:
    """ε in the spread-over-all-K convention: ε·K/(K − 1) for spread="others"."""
    if not others:
        return eps
    return eps * k / (k - 1)


def rows(p: Problem, ops: Any, z: Any, target: Any, out: Any, want: Want) -> Rows:
    """Per-example losses of one block of rows and the derivatives in ``want``.

    ``z`` (..., K) and ``target`` (a strategy sliced to the same rows) are one block; ``ops``
    may write into ``out`` (same shape and dtype as ``z``, possibly ``z`` itself; None: the
    array ``z − max`` makes), which then holds the gradient, scaled by ``p.scale``.
    """
    xp, mask, w = p.xp, p.mask, p.weight
    k: Any = z.shape[-1]
    capped = None
    if p.softcap is not None:  # z' = c·tanh(z/c) before everything else
        z, capped = ops.softcap(z, p.softcap, out)
        if out is None:
            out = z  # a new array: the later steps may write into it
    if mask is not None:
        z = xp.where(mask, z, -xp.inf)  # masked classes leave the softmax...
    m = xp.max(z, axis=-1, keepdims=True)
    if p.shard is not None:
        m = p.shard.max(m)  # the first collective: one max per row
    u = ops.subtract(z, m, out)
    if out is None:
        out = u  # a new array: in-place ops may write the later steps into it
    if mask is not None:
        fmask = xp.astype(mask, u.dtype)
        w = fmask if w is None else w * fmask
        k = xp.sum(fmask, axis=-1, keepdims=True)
    # ε = 0 given as a number is plain cross-entropy: no Σu, no spread term to subtract
    smoothing = not isinstance(p.eps, (int, float)) or p.eps != 0
    kept_u = None
    if smoothing or target.dense or want.eps:
        kept_u = ops.for_sums(z, m, u)
        if mask is not None:
            kept_u = xp.where(mask, kept_u, 0.0)  # ...and every sum
    sh = Shifted(u, kept_u, w, k)
    raw = target.raw_sums(p, ops, sh, smoothing or want.eps)

    e = ops.exp(u, out)  # u is not needed past this point: exp may overwrite it
    s = ops.row_sum(e)
    if p.shard is not None:  # the second collective: every row sum, stacked
        s, raw, k = _combine(p, s, raw, k)
    eps = spread_eps(p.eps, k, p.others)
    uniform = eps / k
    on = 1 - eps
    mass = on * raw.target_w + uniform * raw.total_w  # T
    spread_tu = 0.0
    if smoothing:
        spread_tu = uniform * raw.sum_wu
        if not isinstance(p.eps, (int, float)):  # (NumPy's 0-d arithmetic gives floats)
            # an array ε = 0 with a −inf logit (a class masked the usual way): 0·(−inf) is
            # NaN, but that class has no target mass
            spread_tu = xp.where(xp.equal(uniform, 0), 0.0, spread_tu)
    sum_tu = on * raw.target_wu + spread_tu if smoothing else on * raw.target_wu
    log_s = xp.log(s)
    loss = (log_s if _is_one(mass) else mass * log_s) - sum_tu

    factor, kept = _row_factor(p, k, target)  # 1, 0 (absent) or NaN (invalid) per row
    loss = _finish(xp, loss, factor, kept)
    lse = z_part = None
    if p.z_loss or want.lse:
        lse = m + log_s  # over the unmasked classes
    if p.z_loss:
        z_part = _finish(xp, p.z_loss * (lse * lse), factor, kept)
    d_eps = d_labels = None
    if want.eps:
        d_eps = _finish(xp, _eps_slope(p, k, raw, log_s), factor, kept)
    if want.labels:
        d_labels = target.label_slope(p, sh, eps, log_s)
        if factor is not None:
            d_labels = d_labels * factor
    shares = raw.target_w if p.shard is not None else None
    if not (want.grad or want.target):
        return Rows(loss, None, d_eps, d_labels, None, z_part, lse, shares)

    scale = p.scale if factor is None else factor * p.scale  # 0 on absent rows
    mass_t = None
    if want.target:  # s·t, formed by the same code that subtracts it from the gradient
        zero = xp.zeros_like(e)
        mass_t = -target.subtract_target(p, ops, zero, sh, eps, uniform, scale, None)
        if not want.grad:
            return Rows(loss, None, d_eps, d_labels, mass_t, z_part, lse, shares)
    coef = scale if _is_one(mass) else mass * scale
    if p.z_loss:  # ∂(λ·lse²)/∂z = 2λ·lse·p, scaled by its own reduction
        z_scale = p.z_scale if factor is None else factor * p.z_scale
        coef = coef + (2 * p.z_loss) * lse * z_scale
    g = ops.multiply(e, coef / s, out)  # T·p (mass and scale are often numbers: one op)
    g = target.subtract_target(p, ops, g, sh, eps, uniform, scale, out)  # − t
    if capped is not None:  # the chain rule through the cap: dz'/dz = 1 − tanh²(z/c)
        g = ops.cap_slope(g, capped, out)
    return Rows(loss, g, d_eps, d_labels, mass_t, z_part, lse, shares)


def _combine(p: Problem, s: Any, raw: RawSums, k: Any) -> tuple[Any, RawSums, Any]:
    """Sum s and the raw sums over the shards in one collective; K becomes the global K."""
    xp = p.xp
    fields = [s, raw.total_w, raw.sum_wu, raw.target_w, raw.target_wu]
    local = [i for i, f in enumerate(fields) if f is not None and not isinstance(f, (int, float))]
    like = s
    columns = [fields[i] * xp.ones_like(like) for i in local]  # every field as an array column
    total = p.shard.sum(xp.concat(columns, axis=-1))
    for j, i in enumerate(local):
        fields[i] = total[..., j : j + 1]
    k_all = p.shard.classes(k)
    if isinstance(raw.total_w, (int, float)):  # unweighted: Σ w is the global K
        fields[1] = k_all
    return fields[0], RawSums(*fields[1:]), k_all


def _row_factor(p: Problem, k: Any, target: Any) -> tuple[Any, Any]:
    """Per-row factor (1, 0 where the row is absent, NaN where it is invalid) and the rows
    that count (a boolean column, False where absent), each None when no row can be so.

    Invalid: a label out of range or masked (unread labels), an unread ε outside [0, 1], or
    fewer than two kept classes for spread="others" under a mask. Invalid rows get NaN, never
    a wrong number.
    """
    xp = p.xp
    factor, kept = target.factor, target.kept
    checks = like = None
    if p.eps_unread:
        checks, like = (p.eps >= 0) & (p.eps <= 1), p.eps
    if p.others and p.mask is not None:
        enough = k >= 2
        checks, like = (enough if checks is None else checks & enough), k
    if checks is not None:
        factor = xp.where(checks, xp.ones_like(like) if factor is None else factor, xp.nan)
    return factor, kept


def _finish(xp: Any, per_row: Any, factor: Any, kept: Any) -> Any:
    """NaN where a row is invalid, 0 where it is absent (ignored or fully masked).

    The NaN is a factor, not a ``where``, so that autodiff through the core (jax.grad of
    ``smoothce.loss``, torch autograd, tf.GradientTape) gives that row a NaN gradient too; the
    absent rows are then replaced by the factor's own 0 (a ``where``: an absent row's loss may
    be infinite).
    """
    if factor is None:
        return per_row
    per_row = per_row * factor
    return per_row if kept is None else xp.where(kept, per_row, factor)


def _eps_slope(p: Problem, k: Any, raw: RawSums, log_s: Any) -> Any:
    """∂L/∂ε per row: Σ_c w_c (1/k − y_c)(log s − u_c), times k/(k − 1) for spread="others"."""
    spread = (raw.total_w * log_s - raw.sum_wu) / k
    slope = spread - (raw.target_w * log_s - raw.target_wu)
    if p.others:
        slope = slope * (k / (k - 1))
    return slope


def _is_one(x: Any) -> bool:
    """Whether ``x`` is the number 1 (T = 1 unweighted: no product to form)."""
    return isinstance(x, (int, float)) and x == 1
