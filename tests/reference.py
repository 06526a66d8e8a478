"""An independent float64 reference, written plainly: dense targets, log-softmax, one row at a time.

It shares no code with smoothce: it builds q explicitly and loops over examples, which is slow
and obviously right, so the vectorised core can be checked against it.
"""

from __future__ import annotations

import numpy as np


def _log_softmax(row: np.ndarray) -> np.ndarray:
    shifted = row - row.max()
    return shifted - np.log(np.exp(shifted).sum())


def reference(
    logits: np.ndarray,
    labels: np.ndarray,
    eps: float,
    *,
    axis: int = -1,
    weight: np.ndarray | None = None,
    ignore_index: int | None = None,
    where: np.ndarray | None = None,
    reduction: str = "mean",
    spread: str = "all",
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(loss, gradient of loss w.r.t. logits), PyTorch's semantics plus `where`, `spread`, the
    z-loss λ·lse² (averaged over kept examples under "mean") and soft-capping c·tanh(z/c)."""
    z = np.moveaxis(np.asarray(logits, np.float64), axis, -1)
    cap_slope = np.ones_like(z)
    if softcap is not None:
        z = softcap * np.tanh(z / softcap)
        cap_slope = 1.0 - (z / softcap) ** 2
    num_classes = z.shape[-1]
    integer = labels.dtype.kind in "iu"
    targets = labels if integer else np.moveaxis(labels, axis, -1)
    mask = np.ones(z.shape, bool) if where is None else np.broadcast_to(where, logits.shape)
    if where is not None:
        mask = np.moveaxis(mask, axis, -1)
    weights = np.ones(num_classes) if weight is None else np.asarray(weight, np.float64)

    rows = z.reshape(-1, num_classes)
    masks = mask.reshape(-1, num_classes)
    flat_targets = targets.reshape(-1) if integer else targets.reshape(-1, num_classes)
    losses = np.zeros(len(rows))
    z_losses = np.zeros(len(rows))
    grads = np.zeros_like(rows)
    z_grads = np.zeros_like(rows)
    denominator = 0.0
    count = 0
    for n, (row, keep) in enumerate(zip(rows, masks, strict=True)):
        k = int(keep.sum())
        e = eps * k / (k - 1) if spread == "others" else eps
        if integer:
            label = int(flat_targets[n])
            if ignore_index is not None and label == ignore_index:
                continue
            dense = np.zeros(num_classes)
            dense[label] = 1.0
            denominator += weights[label]
        else:
            dense = np.asarray(flat_targets[n], np.float64)
            denominator += 1.0
        q = (1.0 - e) * dense[keep] + e / k
        t = weights[keep] * q
        log_p = _log_softmax(row[keep])
        losses[n] = -(t * log_p).sum()
        grads[n, keep] = t.sum() * np.exp(log_p) - t
        count += 1
        shifted = row[keep] - row[keep].max()
        lse = row[keep].max() + np.log(np.exp(shifted).sum())
        z_losses[n] = z_loss * lse**2
        z_grads[n, keep] = 2 * z_loss * lse * np.exp(log_p)

    grads, z_grads = grads.reshape(z.shape), z_grads.reshape(z.shape)
    if reduction == "none":
        loss = (losses + z_losses).reshape(z.shape[:-1])
    elif reduction == "sum":
        loss = np.array(losses.sum() + z_losses.sum())
    else:
        loss = np.array(losses.sum() / denominator + z_losses.sum() / count)
        grads, z_grads = grads / denominator, z_grads / count
    return loss, np.moveaxis((grads + z_grads) * cap_slope, -1, axis)
