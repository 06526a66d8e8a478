"""Probability labels: the smoothed target t = w ⊙ ((1 − ε)·y + ε/K) is formed row by row."""

from __future__ import annotations

from typing import Any, NamedTuple

from ._rows import Problem, RawSums, Shifted

__all__ = ["DenseTarget"]


class DenseTarget(NamedTuple):
    """Probability (or any non-negative) labels of the logits' shape, class axis last.

    ``factor``, ``kept`` and ``share`` are None, or columns (..., 1) that mark the examples
    whose classes are all masked (factor 0, kept False, share 0). Unnormalised labels are used
    as they are: T = Σ_c t_c, and every derivative is the true one.
    """

    probs: Any
    factor: Any = None
    kept: Any = None
    share: Any = None

    dense = True

    @classmethod
    def prepare(cls, xp: Any, probs: Any, dtype: Any, absent: Any = None) -> DenseTarget:
        if absent is None:
            return cls(probs)
        kept = ~xp.expand_dims(absent, axis=-1)
        keep = xp.astype(kept, dtype)
        return cls(probs, keep, kept, keep)

    def map(self, fn: Any) -> DenseTarget:
        return DenseTarget(*(None if a is None else fn(a) for a in self))

    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.probs.shape[:-1])

    def raw_sums(self, p: Problem, ops: Any, sh: Shifted, need_wu: bool) -> RawSums:
        xp = p.xp
        wy = self.probs if sh.w is None else sh.w * self.probs
        total_w = sh.k if sh.w is None else xp.sum(sh.w, axis=-1, keepdims=True)
        sum_wu = None
        if need_wu:
            sum_wu = xp.sum(sh.kept_u if sh.w is None else sh.w * sh.kept_u, axis=-1, keepdims=True)
        # a −inf logit (a class masked the usual way) where the target is 0: 0·(−inf) is NaN,
        # but that class carries no target mass
        wyu = xp.where(xp.equal(wy, 0), 0.0, wy * sh.kept_u)
        return RawSums(
            total_w,
            sum_wu,
            xp.sum(wy, axis=-1, keepdims=True),
            xp.sum(wyu, axis=-1, keepdims=True),
        )

    def subtract_target(
        self,
        p: Problem,
        ops: Any,
        g: Any,
        sh: Shifted,
        eps: Any,
        uniform: Any,
        scale: Any,
        out: Any,
    ) -> Any:
        """g − s·t with t = w ⊙ ((1 − ε)·y + ε/K)."""
        y = (1 - eps) * scale * self.probs + uniform * scale
        return ops.subtract(g, y if sh.w is None else y * sh.w, out)

    def label_slope(self, p: Problem, sh: Shifted, eps: Any, log_s: Any) -> Any:
        """∂L/∂y_c = (1 − ε)·w_c·(log s − u_c) (0 on masked classes)."""
        slope = (1 - eps) * (log_s - sh.kept_u)
        return slope if sh.w is None else slope * sh.w
