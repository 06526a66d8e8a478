"""``smoothce.torch.CrossEntropyLoss``: the ``nn.Module`` form of :func:`cross_entropy`."""

from __future__ import annotations

import torch
from torch import nn

from smoothce._validate import check_reduction

from ._functional import check_label_smoothing, cross_entropy

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(nn.Module):
    r"""Label-smoothed cross-entropy loss, a drop-in for ``torch.nn.CrossEntropyLoss``.

    ``loss(input, target)`` equals ``cross_entropy(input, target, self.weight, ...)``: per
    example l = −Σ_c w_c q_c log softmax(input)_c with q = (1 − ε)·onehot(y) + ε/C, reduced
    by ``reduction``. ``weight`` is a registered buffer (absent from ``state_dict`` when
    None), so ``.to(device)``, ``.double()`` and ``state_dict`` treat it as torch does.
    The default ``label_smoothing`` is 0.1; a negative or > 1 value raises at construction.
    """

    weight: torch.Tensor | None

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        *,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        check_reduction(reduction)  # now, not at the first forward
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = check_label_smoothing(label_smoothing)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(
            input,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self) -> str:
        return (
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}"
        )
