r"""Second derivatives of the loss, from its gradient: no logits or log-probabilities needed.

Row by row the gradient is :math:`G = s\,(T p - t)` (s the reduction's scale, T = Σ t), so
:math:`P := G + s\,t = s T p` and :math:`p = P / \sum_c P_c`. The Hessian of :math:`L` with
respect to the logits is :math:`s T\,(\mathrm{diag}\,p - p p^\top)`, hence

.. math::

    H v = P \odot v - P\,\frac{\langle P, v\rangle}{\sum_c P_c},

which is 0 on rows with :math:`\sum_c P_c = 0` (ignored or fully masked examples). Soft-capping
is not covered (its second derivative needs the logits). The target
mass :math:`s\,t` comes from :func:`smoothce._run.evaluate` (``target_mass=True``), which forms
it from the labels alone.
"""

from __future__ import annotations

from typing import Any

__all__ = ["softmax_from_gradient", "softmax_hvp", "target_gradient_map", "target_map"]


def softmax_hvp(
    xp: Any, gradient: Any, mass: Any, v: Any, axis: int = -1, curvature: Any = 0.0
) -> Any:
    """:math:`H v` for the gradient ``gradient`` and the scaled target mass ``mass`` (s·t).

    All three arrays have the logits' shape, classes on ``axis``; the result too. With a
    z-loss λ·lse² (scaled by s_z) the gradient carries 2λ·s_z·lse·p inside P as well, and the
    Hessian gains 2λ·s_z·p pᵀ: ``curvature`` is 2λ·s_z (a number, or one value per example
    broadcast along ``axis``). Built from differentiable operations only, so it can itself be
    differentiated.
    """
    scaled_p, safe = _scaled_softmax(xp, gradient, mass, axis)
    dot = xp.sum(scaled_p * v, axis=axis, keepdims=True)
    hv = scaled_p * v - scaled_p * (dot / safe)
    if isinstance(curvature, (int, float)) and curvature == 0:
        return hv
    return hv + curvature * scaled_p * (dot / (safe * safe))


def softmax_from_gradient(xp: Any, gradient: Any, mass: Any, axis: int = -1) -> Any:
    """p = P / Σ_c P_c with P = G + s·t (rows with Σ P = 0, the absent ones, give 0)."""
    scaled_p, safe = _scaled_softmax(xp, gradient, mass, axis)
    return scaled_p / safe


def target_map(xp: Any, p: Any, slope: Any, v: Any, axis: int = -1) -> Any:
    r"""For probability labels y: ⟨V, ∂G/∂y⟩ = a(⟨V, p⟩ − V), with a(x) = ``slope`` ⊙ x and
    ``slope`` = s·(1 − ε)·w (t's derivative with respect to y); the same map is ∂(∂L/∂y)/∂z
    applied to a tangent V."""
    return slope * (xp.sum(v * p, axis=axis, keepdims=True) - v)


def target_gradient_map(xp: Any, p: Any, slope: Any, w: Any, axis: int = -1) -> Any:
    """The transpose of :func:`target_map`: ⟨W, ∂(∂L/∂y)/∂z⟩ = p·Σ_c a(W) − a(W); the same
    map is ∂G/∂y applied to a tangent W."""
    aw = slope * w
    return p * xp.sum(aw, axis=axis, keepdims=True) - aw


def _scaled_softmax(xp: Any, gradient: Any, mass: Any, axis: int) -> tuple[Any, Any]:
    """P = G + s·t = s·T·p and its row sums, with 1 where a row sums to 0."""
    scaled_p = gradient + mass
    total = xp.sum(scaled_p, axis=axis, keepdims=True)
    return scaled_p, xp.where(xp.equal(total, 0), xp.ones_like(total), total)
