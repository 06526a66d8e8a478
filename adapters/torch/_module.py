"""`smoothce.torch.CrossEntropyLoss`: the `nn.Module` form of `cross_entropy`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._functional import cross_entropy, legacy_reduction

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(nn.Module):
    r"""Label-smoothed cross-entropy loss, a drop-in for `torch.nn.CrossEntropyLoss`.

    `loss(input, target)` equals
    [`cross_entropy(input, target, self.weight, ...)`][smoothce.torch.cross_entropy] with the
    module's settings: per example

    $$
    l = -\sum_c w_c q_c \log \mathrm{softmax}(\text{input})_c,
    \qquad q = (1 - \varepsilon)\,\mathrm{onehot}(y) + \frac{\varepsilon}{C},
    $$

    reduced by `reduction`. The constructor takes `nn.CrossEntropyLoss`'s arguments in its
    order; only the default `label_smoothing` differs (0.1); the keyword-only arguments are
    smoothce's own. As in PyTorch, the arguments are checked when the loss is called (raising
    as [smoothce.torch.cross_entropy][] does). `weight` is a registered buffer (absent from
    `state_dict` when `None`), so `.to(device)`, `.double()` and `state_dict` treat it as
    torch does. Calling the module takes `input` and `target` as
    [smoothce.torch.cross_entropy][] does and returns its loss.

    Args:
        weight: Per-class weights $w$ of shape `(C,)`, a floating tensor (the input's dtype
            for index targets). `None`: all 1.
        size_average: Deprecated: PyTorch's legacy flag, mapped onto `reduction`. `None`: not
            given.
        ignore_index: Index targets equal to it contribute nothing.
        reduce: Deprecated: PyTorch's legacy flag, mapped onto `reduction`. `None`: not given.
        reduction: `"mean"`, `"sum"` or `"none"`.
        label_smoothing: Smoothing $\varepsilon \in [0, 1]$; default 0.1.
        check_labels: As in [smoothce.torch.cross_entropy][]: whether target values are read
            and checked (`None`: when that needs no device synchronisation).
        compiled: As in [smoothce.torch.cross_entropy][]: run the core through
            `torch.compile`.
        spread: As in [smoothce.torch.cross_entropy][]: `"all"` ($\varepsilon/C$ on every
            class) or `"others"` ($\varepsilon/(C - 1)$ on the wrong ones).
        z_loss: As in [smoothce.torch.cross_entropy][]: $\lambda \ge 0$ of the z-loss
            $\lambda \operatorname{lse}(\text{input})^2$; 0 for none.
        softcap: As in [smoothce.torch.cross_entropy][]: $c > 0$ caps the logits at
            $c \tanh(\text{input}/c)$; `None`: no cap.
        process_group: As in [smoothce.torch.cross_entropy][]: a `torch.distributed` process
            group over which the classes are split (vocab parallelism); `None`: none.
        vocab_start: As in [smoothce.torch.cross_entropy][]: the first global class id of this
            rank's slice; `None`: from the group's slice layout.
        vocab_size: As in [smoothce.torch.cross_entropy][]: the number of classes over all
            slices; `None`: from the group's slice layout.

    Examples:
        >>> import torch, smoothce.torch
        >>> loss_fn = smoothce.torch.CrossEntropyLoss(label_smoothing=0.1)
        >>> round(loss_fn(torch.tensor([[2.0, 1.0, 0.1]]), torch.tensor([0])).item(), 4)
        0.5137
        >>> loss_fn
        CrossEntropyLoss(ignore_index=-100, reduction='mean', label_smoothing=0.1)
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
        spread: str = "all",
        z_loss: float = 0.0,
        softcap: float | None = None,
        process_group: Any = None,
        vocab_start: int | None = None,
        vocab_size: int | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = legacy_reduction(size_average, reduce, reduction)
        self.label_smoothing = label_smoothing
        self.check_labels = check_labels
        self.compiled = compiled
        self.spread, self.z_loss, self.softcap = spread, z_loss, softcap
        self.process_group, self.vocab_start = process_group, vocab_start
        self.vocab_size = vocab_size

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
            spread=self.spread,
            z_loss=self.z_loss,
            softcap=self.softcap,
            process_group=self.process_group,
            vocab_start=self.vocab_start,
            vocab_size=self.vocab_size,
        )

    def extra_repr(self) -> str:
        extra = ""
        if self.check_labels is not None:
            extra += f", check_labels={self.check_labels}"
        if self.compiled:
            extra += ", compiled=True"
        if self.spread != "all":
            extra += f", spread={self.spread!r}"
        if self.z_loss:
            extra += f", z_loss={self.z_loss}"
        if self.softcap is not None:
            extra += f", softcap={self.softcap}"
        if self.process_group is not None:
            extra += ", process_group=<group>"
        if self.vocab_start is not None:
            extra += f", vocab_start={self.vocab_start}"
        if self.vocab_size is not None:
            extra += f", vocab_size={self.vocab_size}"
        return (
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}{extra}"
        )
