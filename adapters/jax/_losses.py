"""optax-style label-smoothed cross-entropy for JAX, differentiated through the core's gradient.

The two public functions keep optax's names, argument order and per-example result, so they
replace ``optax.softmax_cross_entropy(logits, optax.smooth_labels(labels, eps))`` and its
integer-label twin. Every value comes from :mod:`smoothce` (``reduction="none"``); this module
only converts arguments, applies optax's ``where`` conventions and registers a ``custom_jvp``:

* logits: the tangent is Σ_c g_c·dz_c over the class axis, where g = ∂L_n/∂z_n is row n of
  ``smoothce.loss_and_grad(..., reduction="none")``. It is linear in dz, so JAX gets reverse
  mode (``grad``, ``jacrev``) by transposing it, and since g is built from ``jax.numpy``
  operations, differentiating the rule again gives Hessians.
* label_smoothing: L is affine in ε, so ∂L/∂ε = L(ε=1) − L(ε=0), two core calls.
* probability labels: L is affine in the labels, so the derivative along dy is
  L(dy) − L(0), again two core calls. Integer labels and ``where`` carry no tangent.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

import smoothce
from smoothce._validate import check_eps, check_logits, class_axis, smoothing

_SymbolicZero = jax.custom_derivatives.SymbolicZero

__all__ = ["softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels"]


def softmax_cross_entropy(
    logits: Any,
    labels: Any,
    label_smoothing: Any = 0.1,
    *,
    axis: int = -1,
    where: Any = None,
) -> jax.Array:
    r"""Label-smoothed softmax cross-entropy with probability (or one-hot) labels, per example.

    With p = softmax(z) over ``axis``, K classes and ε = ``label_smoothing``::

        q = (1 − ε)·y + ε/K,      L = −Σ_c q_c log p_c

    the same as ``optax.softmax_cross_entropy(logits, optax.smooth_labels(labels, ε))``.

    Args:
      logits: floating array with the classes on ``axis``.
      labels: floating array of the logits' shape (probabilities or one-hot rows).
      label_smoothing: ε in [0, 1], a Python number or a scalar array. Differentiable when it
        is an array (``jax.grad`` with respect to it works).
      axis: the class axis.
      where: optional boolean mask, optax's convention. Of the logits' shape (or broadcastable
        to it) it masks classes: they leave the softmax and are not counted in K. With one
        dimension fewer than the logits (the batch shape) it masks whole examples. An example
        whose classes are all masked gets loss 0 and gradient 0.

    Returns:
      One loss per example: the logits' shape without ``axis``, in the logits' dtype.
      Differentiable in logits, labels and ``label_smoothing`` under ``grad``, ``jvp``,
      ``jacfwd``, ``jacrev``, ``hessian``, ``jit`` and ``vmap``.
    """
    return _dispatch(logits, labels, label_smoothing, axis, where, integer=False)


def softmax_cross_entropy_with_integer_labels(
    logits: Any,
    labels: Any,
    label_smoothing: Any = 0.1,
    *,
    axis: int = -1,
    where: Any = None,
) -> jax.Array:
    r"""Label-smoothed softmax cross-entropy with integer class labels, per example.

    With p = softmax(z) over ``axis``, K classes, ε = ``label_smoothing`` and label y::

        L = −(1 − ε)·log p_y − (ε/K)·Σ_c log p_c = logsumexp(z) − (1 − ε)·z_y − (ε/K)·Σ_c z_c

    the same as ``optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot(y, K), ε))``
    without building the one-hot array. ε = 0 gives
    ``optax.softmax_cross_entropy_with_integer_labels``.

    Args:
      logits: floating array with the classes on ``axis``.
      labels: integer array of the logits' shape without ``axis``, values in [0, K).
      label_smoothing: ε in [0, 1], a Python number or a scalar array (differentiable).
      axis: the class axis.
      where: optional boolean mask as in :func:`softmax_cross_entropy`. A label must not point
        at a masked class.

    Returns:
      One loss per example: the labels' shape, in the logits' dtype. A label outside [0, K)
      raises ``ValueError`` on concrete arrays; under ``jit`` (or any tracing) it cannot be
      checked, and that example's loss and gradient row are NaN instead.
    """
    return _dispatch(logits, labels, label_smoothing, axis, where, integer=True)


def _dispatch(
    logits: Any, labels: Any, eps: Any, axis: Any, where: Any, *, integer: bool
) -> jax.Array:
    """Convert and check the arguments, then call the differentiable core wrapper."""
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    check_logits(jnp, logits)
    axis = class_axis(logits.ndim, axis)
    if integer and not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"softmax_cross_entropy_with_integer_labels needs integer labels, got dtype "
            f"{labels.dtype}; use softmax_cross_entropy for probability labels"
        )
    if not integer and not jnp.issubdtype(labels.dtype, jnp.floating):
        raise TypeError(
            f"softmax_cross_entropy needs floating (probability) labels, got dtype "
            f"{labels.dtype}; use softmax_cross_entropy_with_integer_labels for class indices"
        )
    # Shapes of labels are checked by the core, with a message naming both accepted forms.

    mask, keep_rows = _class_mask(where, logits.shape, axis)

    # A Python number stays static: the core validates it even under jit, and it has no
    # tangent. Anything else becomes a differentiable scalar array.
    if isinstance(eps, (int, float)) and not isinstance(eps, bool):
        static_eps, eps = smoothing(eps), None
    else:
        static_eps, eps = None, jnp.asarray(eps)
        # a scalar; a concrete value is checked, a traced one trusted
        check_eps(eps, "label_smoothing")
    return _per_example(axis, static_eps, logits, labels, eps, mask, keep_rows)


def _class_mask(where: Any, shape: tuple[int, ...], axis: int) -> tuple[Any, Any]:
    """optax's ``where`` as a full-shape class mask for the core, plus the rows that survive.

    optax reads a mask with one dimension fewer than the logits as a per-example mask (it
    inserts the class axis). A row with every class masked has loss 0 in optax; the core
    cannot evaluate such a row (K = 0), so it is given an all-true mask there and its loss
    and gradient are zeroed afterwards.
    """
    if where is None:
        return None, None
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
        raise ValueError(f"where must be a boolean mask, got dtype {where.dtype}")
    if where.ndim == len(shape) - 1:
        where = jnp.expand_dims(where, axis)
    elif where.ndim != len(shape):
        raise ValueError(
            f"where of shape {where.shape} must have the logits' {len(shape)} dimensions "
            f"(a class mask) or {len(shape) - 1} (a per-example mask); logits have shape {shape}"
        )
    try:
        where = jnp.broadcast_to(where, shape)
    except ValueError as err:
        raise ValueError(
            f"where of shape {where.shape} does not broadcast to logits of shape {shape}"
        ) from err
    keep_rows = jnp.any(where, axis=axis)
    return where | ~jnp.expand_dims(keep_rows, axis), keep_rows


def _keep(x: jax.Array, keep_rows: Any, axis: int | None = None) -> jax.Array:
    """Zero the examples whose classes are all masked (``axis`` set: x has a class axis)."""
    if keep_rows is None:
        return x
    rows = keep_rows if axis is None else jnp.expand_dims(keep_rows, axis)
    return jnp.where(rows, x, jnp.zeros((), x.dtype))


def _wide(logits: jax.Array) -> jax.Array:
    """Float16/bfloat16 logits as float32 for the ε- and label-tangents.

    Those tangents are differences of two losses; rounding each loss to 8 bits first would
    swamp a small difference. The core accumulates in float32 anyway.
    """
    if jnp.finfo(logits.dtype).bits < 32:
        return logits.astype(jnp.float32)
    return logits


def _as_array(static_eps: float, logits: jax.Array) -> jax.Array:
    """A checked static ε as a constant array: XLA on CPU fuses the kernel worse around
    weakly typed Python constants (measured 1.5× slower at 8192×1000 float32)."""
    return jnp.asarray(static_eps, dtype=jnp.promote_types(logits.dtype, jnp.float32))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _per_example(
    axis: int,
    static_eps: float | None,
    logits: jax.Array,
    labels: jax.Array,
    eps: jax.Array | None,
    mask: jax.Array | None,
    keep_rows: jax.Array | None,
) -> jax.Array:
    value = smoothce.loss(
        logits,
        labels,
        _as_array(static_eps, logits) if eps is None else eps,
        axis=axis,
        where=mask,
        reduction="none",
    )
    return _keep(value, keep_rows)


def _per_example_jvp(
    axis: int, static_eps: float | None, primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[jax.Array, jax.Array]:
    logits, labels, eps, mask, keep_rows = primals
    d_logits, d_labels, d_eps, _, _ = tangents
    eps_value = _as_array(static_eps, logits) if eps is None else eps
    core = functools.partial(smoothce.loss, axis=axis, where=mask, reduction="none")

    value, gradient = smoothce.loss_and_grad(
        logits, labels, eps_value, axis=axis, where=mask, reduction="none"
    )
    value = _keep(value, keep_rows)
    # Accumulate the tangent in at least float32 (bfloat16 sums over K classes are coarse).
    acc = jnp.promote_types(value.dtype, jnp.float32)
    tangent = jnp.zeros(value.shape, acc)

    if not isinstance(d_logits, _SymbolicZero):
        gradient = _keep(gradient, keep_rows, axis)
        tangent = tangent + jnp.sum(gradient.astype(acc) * d_logits.astype(acc), axis=axis)

    if eps is not None and not isinstance(d_eps, _SymbolicZero):
        wide = _wide(logits)
        slope = core(wide, labels, 1.0) - core(wide, labels, 0.0)  # the loss is affine in ε
        tangent = tangent + _keep(slope, keep_rows).astype(acc) * d_eps.astype(acc)

    if not isinstance(d_labels, _SymbolicZero):
        # Only floating (probability) labels can carry a tangent; the loss is affine in them.
        wide = _wide(logits)
        step = core(wide, d_labels, eps_value) - core(wide, jnp.zeros_like(d_labels), eps_value)
        tangent = tangent + _keep(step, keep_rows).astype(acc)

    return value, tangent.astype(value.dtype)


# Symbolic zeros: untouched inputs (often ε and the labels) cost no extra core calls.
_per_example.defjvp(_per_example_jvp, symbolic_zeros=True)
