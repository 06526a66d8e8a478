"""optax-style label-smoothed cross-entropy for JAX, differentiated through the core's derivatives.

The two public functions keep optax's names, positional order ``(logits, labels, axis,
where)`` and per-example result, so they replace
``optax.softmax_cross_entropy(logits, optax.smooth_labels(labels, eps))`` and its integer-label
twin; ``label_smoothing`` is keyword-only. Every value and derivative comes from one core pass
(:func:`smoothce.internal.evaluate`, ``reduction="none"``); this module only converts
arguments and registers a ``jax.custom_jvp``. Its tangent,

    dL_n = Σ_c (∂L_n/∂z_c)·dz_c + Σ_c (∂L_n/∂y_c)·dy_c + (∂L_n/∂ε)·dε,

is linear in the tangents, so JAX gets reverse mode by transposing it; the derivatives are
themselves built from ``jax.numpy`` operations, so differentiating the rule again gives
Hessians. Inputs whose tangent is a symbolic zero (usually ε and the labels) cost nothing.

With ``axis_name`` (vocab parallelism, inside ``jax.shard_map``) the core combines its row
statistics over the class slices through ``_shard.JaxShard`` (one ``pmax``, one ``psum``), and
the sums over classes in the tangent cover this device's slice only, so they are ``psum``'d:
the tangent is the global loss's, and its transpose hands every slice the same cotangent.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from smoothce.internal import LossSpec, Names, evaluate

from ._shard import shard_for

__all__ = [
    "differentiable_loss",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]

_SymbolicZero = jax.custom_derivatives.SymbolicZero
NAMES = Names(eps="label_smoothing")


def softmax_cross_entropy(
    logits: Any,
    labels: Any,
    axis: int | tuple[int, ...] | None = -1,
    where: Any = None,
    *,
    label_smoothing: Any = 0.1,
    z_loss: float = 0.0,
    softcap: float | None = None,
    axis_name: Any = None,
) -> jax.Array:
    r"""Label-smoothed softmax cross-entropy with probability (or one-hot) labels, per example.

    With :math:`p = \mathrm{softmax}(z)` over ``axis``, K classes and
    :math:`\varepsilon` = ``label_smoothing``,

    .. math::

        q = (1 - \varepsilon)\,y + \varepsilon/K, \qquad L = -\sum_c q_c \log p_c,

    the same as ``optax.softmax_cross_entropy(logits, optax.smooth_labels(labels, ε))``.

    Args:
      logits: floating array with the classes on ``axis``.
      labels: floating array of the logits' shape (probabilities or one-hot rows), or
        broadcastable to it.
      axis: the class axis, or a tuple of axes flattened into one class axis, or None for
        all axes (optax's).
      where: optional boolean mask, optax's convention. With as many dimensions as the logits
        (broadcastable to them) it masks classes: they leave the softmax and are not counted
        in K. With fewer dimensions (the batch shape) the class axes are inserted at ``axis``
        and it masks whole examples. An example whose classes are all masked gets loss 0 and
        gradient 0.
      label_smoothing: ε in [0, 1] (keyword-only), a number or a scalar array; an array is
        differentiable (``jax.grad`` with respect to it works).
      z_loss: λ ≥ 0 (keyword-only): adds λ·lse² to each example's loss (PaLM's z-loss).
      softcap: c > 0 (keyword-only): the logits become c·tanh(z/c) first (Gemma 2).
      axis_name: vocab parallelism (keyword-only): inside ``jax.shard_map`` with the class
        ``axis`` split evenly over the mesh axis (or tuple of axes) ``axis_name``, the logits
        and the labels are this device's slice of the classes; the result is the loss over all
        classes, the same on every device, and the gradient this slice's. One class axis, no
        ``where``.

    Returns:
      One loss per example: the logits' shape without ``axis``, in the logits' dtype.
      Differentiable in logits, labels and ``label_smoothing`` under ``grad``, ``jvp``,
      ``jacfwd``, ``jacrev``, ``hessian``, ``jit`` and ``vmap``.

    Example:
      >>> import jax.numpy as jnp, smoothce.jax
      >>> logits = jnp.array([[2.0, 1.0, 0.1]])
      >>> loss = smoothce.jax.softmax_cross_entropy(logits, jnp.array([[1.0, 0.0, 0.0]]))
      >>> [round(float(v), 4) for v in loss]
      [0.5137]
    """
    return _dispatch(
        logits,
        labels,
        axis,
        where,
        label_smoothing,
        integer=False,
        terms=(z_loss, softcap),
        axis_name=axis_name,
    )


def softmax_cross_entropy_with_integer_labels(
    logits: Any,
    labels: Any,
    axis: int | tuple[int, ...] = -1,
    where: Any = None,
    *,
    label_smoothing: Any = 0.1,
    check_labels: bool | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    axis_name: Any = None,
) -> jax.Array:
    r"""Label-smoothed softmax cross-entropy with integer class labels, per example.

    With :math:`p = \mathrm{softmax}(z)` over ``axis``, K classes,
    :math:`\varepsilon` = ``label_smoothing`` and label y,

    .. math::

        L = -(1 - \varepsilon) \log p_y - \frac{\varepsilon}{K} \sum_c \log p_c
          = \operatorname{lse}(z) - (1 - \varepsilon) z_y - \frac{\varepsilon}{K} \sum_c z_c,

    the same as ``optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot(y, K), ε))``
    without building the one-hot array. ε = 0 gives
    ``optax.softmax_cross_entropy_with_integer_labels``.

    Args:
      logits: floating array with the classes on ``axis``.
      labels: integer array of the logits' shape without ``axis``, values in [0, K) (flat
        indices into the class axes when ``axis`` is a tuple, as in optax).
      axis: the class axis, or a tuple of axes.
      where: optional boolean mask as in :func:`softmax_cross_entropy`. A label must not point
        at a masked class.
      label_smoothing: ε in [0, 1] (keyword-only), a number or a scalar array (differentiable).
      z_loss: λ ≥ 0 (keyword-only): adds λ·lse² to each example's loss (PaLM's z-loss).
      softcap: c > 0 (keyword-only): the logits become c·tanh(z/c) first (Gemma 2).
      check_labels: when the label values are read and checked (keyword-only, smoothce's own).
        None: when that costs no device synchronisation (concrete arrays on the CPU); True:
        on any concrete array (one device-to-host read on an accelerator); False: never.
        Traced labels (under ``jit``) are never read.
      axis_name: vocab parallelism (keyword-only): inside ``jax.shard_map`` with the class
        ``axis`` split evenly over the mesh axis (or tuple of axes) ``axis_name``, the logits
        are this device's slice of the classes and the labels global class ids (replicated);
        the result is the loss over all classes, the same on every device, and the gradient
        this slice's. One class axis, no ``where``.

    Returns:
      One loss per example: the labels' shape, in the logits' dtype. A label outside [0, K)
      (or on a class that ``where`` masks) raises ``ValueError`` when the labels are read;
      otherwise (under ``jit``, on an accelerator) that example's loss and gradient row are
      NaN instead.

    Example:
      >>> import jax.numpy as jnp, smoothce.jax
      >>> logits = jnp.array([[2.0, 1.0, 0.1]])
      >>> loss = smoothce.jax.softmax_cross_entropy_with_integer_labels(logits, jnp.array([0]))
      >>> [round(float(v), 4) for v in loss]
      [0.5137]
    """
    return _dispatch(
        logits,
        labels,
        axis,
        where,
        label_smoothing,
        integer=True,
        check_labels=check_labels,
        terms=(z_loss, softcap),
        axis_name=axis_name,
    )


def _dispatch(
    logits: Any,
    labels: Any,
    axis: Any,
    where: Any,
    eps: Any,
    *,
    integer: bool,
    check_labels: bool | None = None,
    terms: tuple[Any, Any] = (0.0, None),
    axis_name: Any = None,
) -> jax.Array:
    """Convert the arguments, build the spec, then call the differentiable core wrapper."""
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
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
    if axis is None and not integer:
        axis = tuple(range(logits.ndim))  # optax: every axis is a class axis
    shard = None
    if axis_name is not None:
        if where is not None:
            raise ValueError(
                "axis_name (class-sharded logits) takes no where mask: mask the examples in "
                "your reduction instead"
            )
        if isinstance(axis, (tuple, list)) and len(axis) != 1:
            raise ValueError(
                f"axis_name (class-sharded logits) needs one class axis, got axis={axis!r}"
            )
        shard = shard_for(axis_name)
    if where is not None:
        where = jnp.asarray(where)
        if where.ndim < logits.ndim:
            # optax's rule: a mask with fewer dimensions gets the class axes inserted (the
            # batch shape: a per-example mask)
            where = jnp.expand_dims(where, axis)
    if not isinstance(eps, (numbers.Number, str, bytes, np.generic, np.ndarray)):
        eps = jnp.asarray(eps)  # a JAX scalar (or array-like): differentiable
    spec = LossSpec(
        eps,
        axis,
        where=where,
        reduction="none",
        check_labels=check_labels,
        names=NAMES,
        z_loss=terms[0],
        softcap=terms[1],
        shard=shard,
    )
    if not isinstance(spec.eps, jax.Array):
        # a number, or NumPy host data checked when the spec was made: a constant array in
        # the accumulation dtype. XLA on CPU fuses the kernel worse around weakly typed
        # Python constants (measured 1.5× slower at 8192×1000 float32)
        dtype = jnp.promote_types(logits.dtype, jnp.float32)
        spec = spec.join((jnp.asarray(float(spec.eps), dtype=dtype), None, None))
    static, (eps, _, where) = spec.split()
    return _per_example(static, logits, labels, eps, where)


def differentiable_loss(spec: LossSpec, logits: Any, labels: Any) -> jax.Array:
    """The loss of ``spec`` through this module's ``custom_jvp``: the seam smoothce.keras uses
    on the JAX backend."""
    static, (eps, weight, where) = spec.split()
    if weight is not None:
        raise NotImplementedError("smoothce.jax takes no class weights")
    if eps is None:
        eps = jnp.asarray(static.eps, dtype=jnp.promote_types(logits.dtype, jnp.float32))
    return _per_example(static, logits, labels, eps, where)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _per_example(
    static: LossSpec, logits: jax.Array, labels: jax.Array, eps: jax.Array, where: Any
) -> jax.Array:
    return evaluate(static.join((eps, None, where)), logits, labels).value


def _per_example_jvp(
    static: LossSpec, primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[jax.Array, jax.Array]:
    logits, labels, eps, where = primals
    d_logits, d_labels, d_eps, _ = tangents
    live = [not isinstance(t, _SymbolicZero) for t in (d_logits, d_labels, d_eps)]
    # float16/bfloat16 derivatives for labels and ε are differences of rounded losses in
    # the core's float32 accumulation; the tangent is accumulated in at least float32 too
    result = evaluate(
        static.join((eps, None, where)),
        logits,
        labels,
        grad=live[0],
        grad_labels=live[1],
        grad_eps=live[2],
    )
    value = result.value
    acc = jnp.promote_types(value.dtype, jnp.float32)
    axes = static.axis if isinstance(static.axis, tuple) else (static.axis,)
    tangent = jnp.zeros(value.shape, acc)
    if live[0]:
        tangent = tangent + jnp.sum(result.grad.astype(acc) * d_logits.astype(acc), axis=axes)
    if live[1]:
        step = result.grad_labels.astype(acc) * d_labels.astype(acc)
        tangent = tangent + jnp.sum(jnp.broadcast_to(step, logits.shape), axis=axes)
    if static.shard is not None and (live[0] or live[1]):
        # each device summed over its own classes: the global loss's tangent is their sum
        # (a psum, whose transpose hands every device the same cotangent)
        tangent = static.shard.sum(tangent)
    if live[2]:
        tangent = tangent + result.grad_eps.astype(acc) * d_eps.astype(acc)
    return value, tangent.astype(value.dtype)


_per_example.defjvp(_per_example_jvp, symbolic_zeros=True)
