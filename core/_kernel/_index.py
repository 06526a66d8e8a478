"""Integer class indices: the label's entry is gathered, t is never materialised.

For integer labels y, Σ_c t_c u_c = (1 − ε)·w_y·u_y + (ε/K)·Σ_c w_c u_c needs one gather and
one per-row sum, so smoothing costs one reduction and one subtraction more than plain
cross-entropy; the gradient T·p − t is T·p, minus (ε/K)·w everywhere, minus (1 − ε)·w_y at
the label. With sharded classes the label lives on one shard: the others contribute nothing
to its terms.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ._rows import Problem, RawSums, Shifted, _is_one

__all__ = ["IndexTarget"]


class IndexTarget(NamedTuple):
    """Integer labels, prepared once per call (O(N)) and sliced per row block; columns (..., 1).

    ``label`` is safe to gather with (bad entries clipped into range); ``factor`` is 1 for an
    example that counts, 0 for an absent one (``ignore_index``, every class masked) and NaN
    for an invalid one (a label out of range or masked, when the labels were not read), or
    None when every example counts; ``kept`` is False for the absent examples (None: none);
    ``w_y`` is the label's weight (None unweighted); ``share`` the example's share of
    PyTorch's "mean" denominator (w_y, 0 when absent; None: always 1); ``in_slice`` 1 where
    the label falls in this shard's classes (None on one device).
    """

    label: Any
    factor: Any
    kept: Any
    w_y: Any
    share: Any
    in_slice: Any = None

    dense = False

    @classmethod
    def prepare(
        cls,
        xp: Any,
        labels: Any,
        num_classes: int,
        dtype: Any,
        *,
        weight: Any = None,
        mask: Any = None,
        ignore_index: int | None = None,
        absent: Any = None,
        checked: bool = False,
        offset: Any = None,
        total: Any = None,
        nan: Any = math.nan,
    ) -> IndexTarget:
        """Labels in the indexing dtype, the logits' batch shape; ``dtype`` for the factors.

        ``absent``: None or a boolean per example (fully masked rows); ``checked``: every label
        that is neither ignored nor absent is known to be in range and not masked (an eager
        check read them), so no per-example validity is tracked. ``offset``/``total``: this
        shard's first class and the number of classes over all shards (vocab parallelism).
        ``nan``: the NaN that marks invalid rows (``Backend.nan``).
        """
        col = xp.expand_dims(labels, axis=-1)
        kept = None if ignore_index is None else xp.not_equal(col, ignore_index)
        if absent is not None:
            present = ~xp.expand_dims(absent, axis=-1)
            kept = present if kept is None else kept & present
        bad = in_slice = None
        if offset is not None:  # sharded classes: the label is global, this slice local
            local = col - offset
            in_slice = xp.astype((local >= 0) & (local < num_classes), dtype)
            label = xp.clip(local, 0, num_classes - 1)
            if not checked:
                bad = (col < 0) | (col >= total)
        elif not checked:
            # out of range where clipping moves the label (fewer array ops than two
            # comparisons and a ``where``: the whole-array path counts its ops)
            label = xp.clip(col, 0, num_classes - 1)
            bad = xp.not_equal(label, col)
            if mask is not None:
                bad = bad | ~xp.take_along_axis(mask, label, axis=-1)
        else:
            label = col
            if kept is not None and (absent is not None or not 0 <= ignore_index < num_classes):
                label = xp.where(kept, col, 0)  # gathers in range
        keep = None if kept is None else xp.astype(kept, dtype)
        factor = keep
        if bad is not None:
            if kept is not None:
                bad = bad & kept  # an absent example is never invalid
            factor = xp.where(
                bad, nan, keep if keep is not None else xp.ones_like(col, dtype=dtype)
            )
        w_y = None if weight is None else xp.take_along_axis(weight, label, axis=-1)
        share = keep if w_y is None else (w_y if keep is None else w_y * keep)
        return cls(label, factor, kept, w_y, share, in_slice)

    def map(self, fn: Any) -> IndexTarget:
        """The same target with ``fn`` applied to each per-example array (slicing, reshaping)."""
        return IndexTarget(*(None if a is None else fn(a) for a in self))

    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.label.shape[:-1])

    def raw_sums(self, p: Problem, ops: Any, sh: Shifted, need_wu: bool) -> RawSums:
        xp = p.xp
        u_y = ops.at_label(sh.u, self.label)  # −inf only for a −inf logit
        total_w = sh.k if sh.w is None else xp.sum(sh.w, axis=-1, keepdims=True)
        sum_wu = None
        if need_wu:
            sum_wu = ops.row_sum(sh.kept_u if sh.w is None else sh.w * sh.kept_u)
        target_w = 1.0 if self.w_y is None else self.w_y
        target_wu = u_y if _is_one(target_w) else target_w * u_y
        if self.in_slice is not None:  # only the shard holding the label counts it
            inside = self.in_slice > 0
            target_w = self.in_slice if self.w_y is None else self.w_y * self.in_slice
            target_wu = xp.where(inside, target_wu, 0.0)
        return RawSums(total_w, sum_wu, target_w, target_wu)

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
        if not (isinstance(uniform, (int, float)) and uniform == 0):
            spread = uniform * scale
            g = ops.subtract(g, spread if sh.w is None else spread * sh.w, out)  # − (ε/K)·w
        at_label = (eps - 1) * scale  # minus the label's mass beyond ε/K, scaled
        if self.w_y is not None:
            at_label = at_label * self.w_y
        if self.in_slice is not None:
            at_label = at_label * self.in_slice
        return ops.add_at_label(g, self.label, at_label)  # − (1 − ε)·w_y at y

    def label_slope(self, p: Problem, sh: Shifted, eps: Any, log_s: Any) -> Any:
        raise TypeError("integer class labels have no derivative")
