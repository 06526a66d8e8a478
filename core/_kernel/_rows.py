r"""The row pass shared by both target strategies: max, shift, exp, sums, loss and gradient.

Notation: z logits with K classes (class axis last), u = z − max z, s = Σ_c exp(u_c),
p = exp(u)/s, ε in the spread-over-all-K convention, w per-class weights (ones when absent),
y the target (one-hot or a probability vector), q = (1 − ε)·y + ε/K the smoothed target,
t_c = w_c·q_c the per-class target mass and T = Σ_c t_c. Every variant is

    L = −Σ_c t_c log p_c = T·log s − Σ_c t_c u_c,           ∂L/∂z = T·p − t,
    ∂L/∂ε = Σ_c w_c (1/K − y_c)(log s − u_c),             ∂L/∂y_c = (1 − ε)·w_c·(log s − u_c).

Unweighted with a normalised target T = 1 and the gradient is p − q. All sums run over u rather
than z, which keeps logits of ±1e4 exact.

Two optional terms (``Problem.z_loss``, ``Problem.softcap``): the z-loss adds λ·lse² per example
(lse = log Σ_c exp z_c over the unmasked classes), whose gradient 2λ·lse·p joins T·p; soft-capping
replaces z by z' = c·tanh(z/c) before everything else and multiplies the whole gradient by
dz'/dz = 1 − (z'/c)². What differs between integer class indices and
probabilities (how Σ t·u, T and the −t of the gradient are formed) is the target strategy's:
:class:`~smoothce._kernel.IndexTarget` and :class:`~smoothce._kernel.DenseTarget`.

The N×K passes go through ``ops`` (``smoothce._backends``): out-of-place for jit compilers and
immutable arrays, or writing into ``out`` so that eager NumPy and PyTorch can run the kernel
over cache-sized row blocks with no N×K temporaries.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Problem", "Rows", "Shifted", "Want", "rows", "spread_eps"]


class Problem(NamedTuple):
    """What stays the same for every row block of one call (a tuple: cheap to make)."""

    xp: Any
    eps: Any  # ε as given: a Python float or a 0-d array in the accumulation dtype
    others: bool  # spread="others": ε still to be scaled by K/(K − 1) per row
    weight: Any  # (1, ..., 1, K) or None
    mask: Any  # boolean, (1, ..., 1, K) or one row per example, or None
    scale: Any  # the gradient's factor from the reduction (1/denominator for "mean")
    eps_unread: bool  # ε is an array whose value was never read: NaN where it leaves [0, 1]
    z_loss: float = 0.0  # λ of the z-loss λ·lse² (0: none)
    z_scale: Any = 1.0  # the z-loss's factor from the reduction (1/examples for "mean")
    softcap: float | None = None  # c: the logits become c·tanh(z/c) first


class Want(NamedTuple):
    """Which derivatives to form besides the loss."""

    grad: bool = False  # ∂L/∂z, written into ``out``
    eps: bool = False  # ∂L_n/∂ε per example
    labels: bool = False  # ∂L/∂y (probability labels; needs out-of-place ``ops``)
    target: bool = False  # the scaled target mass s·t (for second derivatives; out of place)
    lse: bool = False  # the per-example log-sum-exp (for logging)


class Rows(NamedTuple):
    """One block's results: per-example losses and the derivatives asked for."""

    loss: Any  # the cross-entropy part, per example
    grad: Any = None
    d_eps: Any = None
    d_labels: Any = None
    target: Any = None
    z: Any = None  # the z-loss part λ·lse², per example (None without z-loss)
    lse: Any = None


class Shifted(NamedTuple):
    """What a target strategy reads before ``exp`` may overwrite u."""

    u: Any  # z − max z (possibly in ``out``)
    kept_u: Any  # u for the row sums, 0 on masked classes (None when no sum needs it)
    w: Any  # per-class weights times the class mask (None: all ones)
    k: Any  # classes per row: K, or one count per row under a mask
    eps: Any  # ε over all k classes (spread applied)
    uniform: Any  # ε/k
    smoothing: bool  # False only for ε the number 0: no spread term at all


class Terms(NamedTuple):
    """A strategy's row sums: T, Σ t·u, and what its derivatives need."""

    mass: Any  # T
    sum_tu: Any  # Σ_c t_c u_c
    sum_wu: Any  # Σ_c w_c u_c (the spread term's sum; 0 without smoothing)
    total_w: Any  # Σ_c w_c (k unweighted)
    target_wu: Any = None  # Σ_c w_c y_c u_c (for ∂L/∂ε)
    target_w: Any = None  # Σ_c w_c y_c (for ∂L/∂ε)
    state: Any = None  # anything the strategy's gradient reuses


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
    k = z.shape[-1]
    capped = None
    if p.softcap is not None:  # z' = c·tanh(z/c) before everything else
        capped = xp.tanh(z / p.softcap)
        z = capped * p.softcap
    if mask is not None:
        z = xp.where(mask, z, -xp.inf)  # masked classes leave the softmax...
    m = xp.max(z, axis=-1, keepdims=True)
    u = ops.subtract(z, m, out)
    if out is None:
        out = u  # a new array: in-place ops may write the later steps into it
    if mask is not None:
        fmask = xp.astype(mask, u.dtype)
        w = fmask if w is None else w * fmask
        k = xp.sum(fmask, axis=-1)
    eps = spread_eps(p.eps, k, p.others)
    # ε = 0 given as a number is plain cross-entropy: no Σu, no spread term to subtract
    smoothing = not isinstance(eps, (int, float)) or eps != 0
    kept_u = None
    if smoothing or target.dense or want.eps:
        kept_u = ops.for_sums(z, m, u)
        if mask is not None:
            kept_u = xp.where(mask, kept_u, 0.0)  # ...and every sum
    shifted = Shifted(u, kept_u, w, k, eps, eps / k, smoothing)
    terms = target.terms(p, ops, shifted, want.eps)

    e = ops.exp(u, out)  # u is not needed past this point: exp may overwrite it
    s = ops.row_sum(e)
    log_s = xp.log(s)
    loss = (log_s if _is_one(terms.mass) else terms.mass * log_s) - terms.sum_tu

    ok = _row_checks(p, shifted, target.valid)
    keep = target.keep
    # computed once, shared by every per-row result (the whole-array path counts its ops)
    bad = None if ok is None else xp.where(ok, xp.ones_like(log_s), xp.nan)  # 1, or NaN
    kept = None if keep is None else keep > 0
    loss = _finish(xp, loss, bad, kept)
    lse = z_part = None
    if p.z_loss or want.lse:
        lse = m[..., 0] + log_s  # over the unmasked classes
    if p.z_loss:
        z_part = _finish(xp, p.z_loss * (lse * lse), bad, kept)
    d_eps = d_labels = None
    if want.eps:
        d_eps = _finish(xp, _eps_slope(p, shifted, terms, log_s), bad, kept)
    if want.labels:
        d_labels = target.label_slope(p, shifted, log_s)
        if ok is not None or keep is not None:
            d_labels = d_labels * _col(xp, _finish(xp, xp.ones_like(log_s), bad, kept))
    if not (want.grad or want.target):
        return Rows(loss, None, d_eps, d_labels, None, z_part, lse)

    scale = p.scale
    if keep is not None:
        # absent rows get exactly 0, as in PyTorch, also when every row is absent and
        # "mean" made the scale 1/0 (0·inf would be NaN)
        scale = xp.where(kept, keep * scale, 0.0)
    mass = None
    if want.target:  # s·t, formed by the same code that subtracts it from the gradient
        zero = xp.zeros_like(e)
        mass = -target.subtract_target(p, ops, zero, shifted, terms, scale, None)
        if not want.grad:
            return Rows(loss, None, d_eps, d_labels, mass, z_part, lse)
    coef = scale if _is_one(terms.mass) else terms.mass * scale
    if p.z_loss:  # ∂(λ·lse²)/∂z = 2λ·lse·p, scaled by its own reduction
        z_scale = p.z_scale
        if keep is not None:
            z_scale = xp.where(kept, keep * z_scale, 0.0)
        coef = coef + (2 * p.z_loss) * lse * z_scale
    coef = coef / s  # mass and scale are often Python floats: one array op
    if bad is not None:
        coef = coef * bad
    g = ops.multiply(e, _col(xp, coef), out)  # T·p
    g = target.subtract_target(p, ops, g, shifted, terms, scale, out)  # − t
    if capped is not None:  # the chain rule through the cap: dz'/dz = 1 − tanh²(z/c)
        g = ops.multiply(g, 1 - capped * capped, out)
    return Rows(loss, g, d_eps, d_labels, mass, z_part, lse)


def _row_checks(p: Problem, shifted: Shifted, valid: Any) -> Any:
    """Per-row validity (None: all valid): labels, an unread ε in [0, 1], and K ≥ 2 per row
    for spread="others" under a mask. Invalid rows get NaN, never a wrong number."""
    ok = valid
    if p.eps_unread:
        in_range = (p.eps >= 0) & (p.eps <= 1)
        ok = in_range if ok is None else ok & in_range
    if p.others and p.mask is not None:
        enough = shifted.k >= 2
        ok = enough if ok is None else ok & enough
    return ok


def _finish(xp: Any, per_row: Any, bad: Any, kept: Any) -> Any:
    """NaN where a row is invalid (``bad``: 1, or NaN there), 0 where it is absent (``kept``
    False: ignored or fully masked).

    The NaN is a factor, not a ``where``, so that autodiff through the core (jax.grad of
    ``smoothce.loss``, torch autograd, tf.GradientTape) gives that row a NaN gradient too.
    """
    if bad is not None:
        per_row = per_row * bad
    if kept is not None:
        per_row = xp.where(kept, per_row, 0.0)
    return per_row


def _eps_slope(p: Problem, shifted: Shifted, terms: Terms, log_s: Any) -> Any:
    """∂L/∂ε per row: Σ_c w_c (1/k − y_c)(log s − u_c), times k/(k − 1) for spread="others"."""
    spread = (terms.total_w * log_s - terms.sum_wu) / shifted.k
    slope = spread - (terms.target_w * log_s - terms.target_wu)
    if p.others:
        slope = slope * (shifted.k / (shifted.k - 1))
    return slope


def _is_one(x: Any) -> bool:
    """Whether ``x`` is the number 1 (T = 1 unweighted: no product to form)."""
    return isinstance(x, (int, float)) and x == 1


def _col(xp: Any, x: Any) -> Any:
    """Per-row values as a column that broadcasts against the class axis."""
    if isinstance(x, (int, float)) or x.ndim == 0:
        return x
    return xp.expand_dims(x, axis=-1)
