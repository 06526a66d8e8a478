r"""Second derivatives of the loss, from its gradient: no logits or log-probabilities needed.

Row by row the gradient is :math:`G = s\,(T p - t)` (s the reduction's scale, T = Σ t), so
:math:`P := G + s\,t = s T p` and :math:`p = P / \sum_c P_c`. The Hessian of :math:`L` with
respect to the logits is :math:`s T\,(\mathrm{diag}\,p - p p^\top)`, hence

.. math::

    H v = P \odot v - P\,\frac{\langle P, v\rangle}{\sum_c P_c},

which is 0 on rows with :math:`\sum_c P_c = 0` (ignored or fully masked examples). The target
mass :math:`s\,t` comes from :func:`smoothce._run.evaluate` (``target_mass=True``), which forms
it from the labels alone.
"""

from __future__ import annotations

from typing import Any

__all__ = ["softmax_hvp"]


def softmax_hvp(xp: Any, gradient: Any, mass: Any, v: Any, axis: int = -1) -> Any:
    """:math:`H v` for the gradient ``gradient`` and the scaled target mass ``mass`` (s·t).

    All three arrays have the logits' shape, classes on ``axis``; the result too. Built from
    differentiable operations only, so it can itself be differentiated.
    """
    scaled_p = gradient + mass
    total = xp.sum(scaled_p, axis=axis, keepdims=True)
    dot = xp.sum(scaled_p * v, axis=axis, keepdims=True)
    ratio = dot / xp.where(xp.equal(total, 0), xp.ones_like(total), total)
    return scaled_p * v - scaled_p * ratio
