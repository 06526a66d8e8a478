"""``smoothce.torch.CrossEntropyLoss``: the ``nn.Module`` form of :func:`cross_entropy`."""

from __future__ import annotations

import torch
from torch import nn

from ._functional import cross_entropy, legacy_reduction

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(nn.Module):
    r"""Label-smoothed cross-entropy loss, a drop-in for ``torch.nn.CrossEntropyLoss``.

    ``loss(input, target)`` equals ``cross_entropy(input, target, self.weight, ...)``: per
    example :math:`l = -\sum_c w_c q_c \log \mathrm{softmax}(\text{input})_c` with
    :math:`q = (1 - \varepsilon)\,\mathrm{onehot}(y) + \varepsilon/C`, reduced by
    ``reduction``. The constructor takes ``nn.CrossEntropyLoss``'s arguments in its order;
    only the default ``label_smoothing`` differs (0.1). As in PyTorch, the arguments are
    checked when the loss is called. ``weight`` is a registered buffer (absent from
    ``state_dict`` when None), so ``.to(device)``, ``.double()`` and ``state_dict`` treat it as
    torch does.

    Args:
      weight: optional per-class weights of shape (C,).
      size_average: deprecated (PyTorch's legacy flag, mapped onto ``reduction``).
      ignore_index: index targets equal to it contribute nothing.
      reduce: deprecated (PyTorch's legacy flag, mapped onto ``reduction``).
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.
      label_smoothing: ε in [0, 1]; default 0.1.
      check_labels: keyword-only, as in :func:`cross_entropy`: whether target values are read
        and checked (None: when that needs no device synchronisation).
      compiled: keyword-only, as in :func:`cross_entropy`: run the core through
        ``torch.compile``.

    Example:
      >>> import torch, smoothce.torch
      >>> loss_fn = smoothce.torch.CrossEntropyLoss(label_smoothing=0.1)
      >>> round(loss_fn(torch.tensor([[2.0, 1.0, 0.1]]), torch.tensor([0])).item(), 4)
      0.5137
    """

    weight: torch.Tensor | None

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.1,
        *,
        check_labels: bool | None = None,
        compiled: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = legacy_reduction(size_average, reduce, reduction)
        self.label_smoothing = label_smoothing
        self.check_labels = check_labels
        self.compiled = compiled

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(
            input,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            check_labels=self.check_labels,
            compiled=self.compiled,
        )

    def extra_repr(self) -> str:
        extra = ""
        if self.check_labels is not None:
            extra += f", check_labels={self.check_labels}"
        if self.compiled:
            extra += ", compiled=True"
        return (
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}{extra}"
        )
