"""Probability labels: the smoothed target t = w ⊙ ((1 − ε)·y + ε/K) is formed row by row."""

from __future__ import annotations

from typing import Any, NamedTuple

from ._rows import Problem, Shifted, Terms, _col

__all__ = ["DenseTarget"]


class DenseTarget(NamedTuple):
    """Probability (or any non-negative) labels of the logits' shape, class axis last.

    ``keep`` is None, or 0/1 per example with 0 for rows whose classes are all masked.
    Unnormalised labels are used as they are: T = Σ_c t_c, and every derivative is the true one.
    """

    probs: Any
    keep: Any = None

    dense = True
    valid = None  # every row is valid: there is no label value to be out of range

    def map(self, fn: Any) -> DenseTarget:
        return DenseTarget(fn(self.probs), None if self.keep is None else fn(self.keep))

    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.probs.shape[:-1])

    def terms(self, p: Problem, ops: Any, sh: Shifted, want_eps: bool) -> Terms:
        xp = p.xp
        y = self.probs
        t = (1 - _col(xp, sh.eps)) * y + _col(xp, sh.uniform)
        if sh.w is not None:
            t = t * sh.w
        tu = t * sh.kept_u
        # a −inf logit (a class masked the usual way) where the target is 0: 0·(−inf) is NaN,
        # but that class carries no target mass
        tu = xp.where(xp.equal(t, 0), 0.0, tu)
        total_w = sh.k if sh.w is None else xp.sum(sh.w, axis=-1)
        sum_wu = target_w = target_wu = None
        if want_eps:
            wy = y if sh.w is None else sh.w * y
            sum_wu = xp.sum(sh.kept_u if sh.w is None else sh.w * sh.kept_u, axis=-1)
            target_w = xp.sum(wy, axis=-1)
            target_wu = xp.sum(xp.where(xp.equal(wy, 0), 0.0, wy * sh.kept_u), axis=-1)
        return Terms(
            mass=xp.sum(t, axis=-1),
            sum_tu=xp.sum(tu, axis=-1),
            sum_wu=sum_wu,
            total_w=total_w,
            target_wu=target_wu,
            target_w=target_w,
            state=t,
        )

    def subtract_target(
        self, p: Problem, ops: Any, g: Any, sh: Shifted, terms: Terms, scale: Any, out: Any
    ) -> Any:
        return ops.subtract(g, terms.state * _col(p.xp, scale), out)  # − t

    def label_slope(self, p: Problem, sh: Shifted, log_s: Any) -> Any:
        """∂L/∂y_c = (1 − ε)·w_c·(log s − u_c) (0 on masked classes)."""
        xp = p.xp
        slope = (1 - _col(xp, sh.eps)) * (_col(xp, log_s) - sh.kept_u)
        return slope if sh.w is None else slope * sh.w
