"""Integer class indices: the label's entry is gathered, t is never materialised.

For integer labels y, Σ_c t_c u_c = (1 − ε)·w_y·u_y + (ε/K)·Σ_c w_c u_c needs one gather and
one per-row sum, so smoothing costs one reduction and one subtraction more than plain
cross-entropy; the gradient T·p − t is T·p, minus (ε/K)·w everywhere, minus (1 − ε)·w_y at
the label.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._rows import Problem, Shifted, Terms, _col

__all__ = ["IndexTarget"]


class IndexTarget(NamedTuple):
    """Integer labels, prepared once per call (O(N)) and sliced per row block.

    ``label`` (..., 1) is safe to gather with (bad entries clipped into range, absent ones 0);
    ``valid`` is False where a kept label is out of range or masked (that row becomes NaN), or
    None when the labels were read and checked already; ``keep`` is None, or 0/1 per example
    with 0 for ``ignore_index`` and for rows whose classes are all masked; ``w_y`` is the
    label's weight times keep, the example's share of PyTorch's "mean" denominator (None
    unweighted: the share is then ``keep``, or 1).
    """

    label: Any
    valid: Any
    keep: Any
    w_y: Any

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
    ) -> IndexTarget:
        """Labels in the indexing dtype, the logits' batch shape; ``dtype`` for keep and w_y.

        ``absent``: None or a boolean per example (fully masked rows); ``checked``: every label
        that is neither ignored nor absent is known to be in range and not masked (an eager
        check read them), so no per-example validity is tracked.
        """
        skip = None if ignore_index is None else xp.equal(labels, ignore_index)
        if absent is not None:
            skip = absent if skip is None else skip | absent
        valid = None
        if not checked:
            # in range where clipping leaves the label as it is (fewer array ops than two
            # comparisons, an ``&`` and a ``where``: the whole-array path counts its ops)
            safe = xp.clip(labels, 0, num_classes - 1)
            valid = xp.equal(safe, labels)
            label = xp.expand_dims(safe, axis=-1)
            if mask is not None:
                valid = valid & xp.take_along_axis(mask, label, axis=-1)[..., 0]
            if skip is not None:
                valid = valid | skip
        else:
            label = xp.expand_dims(labels, axis=-1)
            if skip is not None and (absent is not None or not 0 <= ignore_index < num_classes):
                label = xp.where(xp.expand_dims(skip, axis=-1), 0, label)  # gathers in range
        w_y = None if weight is None else xp.take_along_axis(weight, label, axis=-1)[..., 0]
        keep = None
        if skip is not None:
            keep = xp.astype(~skip, dtype)
            if w_y is not None:
                w_y = w_y * keep
        return cls(label, valid, keep, w_y)

    def map(self, fn: Any) -> IndexTarget:
        """The same target with ``fn`` applied to each per-example array (slicing, reshaping)."""
        return IndexTarget(*(None if a is None else fn(a) for a in self))

    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.label.shape[:-1])

    def terms(self, p: Problem, ops: Any, sh: Shifted, want_eps: bool) -> Terms:
        xp = p.xp
        # absent rows (keep 0) are zeroed by the caller (loss and gradient scale), so keep
        # is not multiplied in here: unweighted, ε/K and 1 − ε stay numbers
        uniform = sh.uniform
        on_label = 1 - sh.eps if self.w_y is None else (1 - sh.eps) * self.w_y  # beyond ε/K
        u_y = ops.at_label(sh.u, self.label)  # −inf only for a −inf logit
        total_w = sh.k if sh.w is None else xp.sum(sh.w, axis=-1)
        sum_wu = 0.0
        if sh.smoothing or want_eps:
            sum_wu = ops.row_sum(sh.kept_u) if sh.w is None else xp.sum(sh.w * sh.kept_u, axis=-1)
        spread_tu = uniform * sum_wu if sh.smoothing else 0.0
        if sh.smoothing and not isinstance(sh.eps, (int, float)):
            # an array ε = 0 with a −inf logit (a class masked the usual way): 0·(−inf) is
            # NaN, but that class has no target mass
            spread_tu = xp.where(xp.equal(uniform, 0), 0.0, spread_tu)
        target_w = 1.0 if self.w_y is None else self.w_y
        return Terms(
            mass=on_label + uniform * total_w,  # T
            sum_tu=on_label * u_y + spread_tu,
            sum_wu=sum_wu,
            total_w=total_w,
            target_wu=target_w * u_y if want_eps else None,
            target_w=target_w,
            state=(uniform, on_label),
        )

    def subtract_target(
        self, p: Problem, ops: Any, g: Any, sh: Shifted, terms: Terms, scale: Any, out: Any
    ) -> Any:
        uniform, on_label = terms.state
        if sh.smoothing:
            spread = _col(p.xp, uniform * scale)
            g = ops.subtract(g, spread if sh.w is None else spread * sh.w, out)  # − (ε/K)·w
        if isinstance(on_label, (int, float)):
            return ops.add_at_label(g, self.label, scale * -on_label)  # − (1 − ε) at y
        return ops.add_at_label(g, self.label, -(on_label * scale))  # − (1 − ε)·w_y at y

    def label_slope(self, p: Problem, sh: Shifted, log_s: Any) -> Any:
        raise TypeError("integer class labels have no derivative")
