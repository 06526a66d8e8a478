"""The fused, chunked linear + cross-entropy for JAX, optax-style (one loss per example).

The N×V logits of a language-model head are formed one chunk of rows at a time by the core
(``smoothce.internal.evaluate_linear``); a ``jax.custom_vjp`` keeps only the inputs for the
backward pass, which runs the chunks again with the upstream gradient (one value per example)
applied before anything is summed over tokens. Reverse mode (``grad``), ``jit`` and ``vmap``
work; forward mode does not (a custom VJP has no JVP).

With ``axis_name`` (vocab parallelism, inside ``jax.shard_map``) the weight and bias are this
device's rows of the classifier; the core combines each chunk's row statistics over the
devices, and the backward pass sums ``hidden``'s gradient over them (one ``psum``). Which of
the backward's values are whole and which are held in parts depends on whether JAX types
them (``check_vma``), so the backward pass reads the weight's type.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from smoothce.internal import LossSpec, Names, evaluate_linear

from ._shard import shard_for

__all__ = ["linear_softmax_cross_entropy_with_integer_labels"]

NAMES = Names(eps="label_smoothing")


def linear_softmax_cross_entropy_with_integer_labels(
    hidden: Any,
    linear_weight: Any,
    labels: Any,
    *,
    linear_bias: Any = None,
    label_smoothing: Any = 0.1,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    axis_name: Any = None,
) -> jax.Array:
    r"""Per-example label-smoothed cross-entropy of the logits ``hidden @ linear_weight.T + b``.

    The same values as
    ``softmax_cross_entropy_with_integer_labels(hidden @ linear_weight.T + linear_bias, labels,
    label_smoothing=ε)`` (plus λ·lse² with ``z_loss``, on c·tanh(z/c) with ``softcap``), but the
    logits are never stored whole: each chunk of ``chunk_size`` rows is formed, used and
    dropped, in the forward and in the backward pass.

    Args:
      hidden: (..., H) floating hidden states.
      linear_weight: (V, H) classifier weight.
      labels: integer class indices of ``hidden``'s batch shape.
      linear_bias: optional (V,) bias.
      label_smoothing: ε in [0, 1] (a Python number).
      z_loss: λ ≥ 0 of the z-loss λ·lse².
      softcap: c > 0: the logits become c·tanh(z/c) first.
      chunk_size: rows per chunk (default: as many as make 2²⁴ logits).
      axis_name: vocab parallelism (keyword-only): inside ``jax.shard_map`` with the classes
        split evenly over the mesh axis (or tuple of axes) ``axis_name``, ``linear_weight``
        (and ``linear_bias``) are this device's rows of the classifier, ``hidden`` and the
        labels (global class ids) the same on every device. The result is the loss over all
        classes, the same on every device; the weight's and bias's gradients are this
        device's rows, ``hidden``'s the whole gradient (one ``psum`` in the backward pass).

    Returns:
      One loss per example, ``hidden``'s batch shape. Differentiable in ``hidden``,
      ``linear_weight`` and ``linear_bias`` under ``grad``, ``jit`` and ``vmap``; the weight's
      and bias's gradients are accumulated in float32 whatever the input dtype.

    Example:
      >>> import jax, jax.numpy as jnp, smoothce.jax
      >>> h, w = jnp.ones((6, 4)), jnp.ones((10, 4)) / 10
      >>> loss = smoothce.jax.linear_softmax_cross_entropy_with_integer_labels(
      ...     h, w, jnp.arange(6), chunk_size=4)
      >>> loss.shape
      (6,)
    """
    hidden, linear_weight, labels = (jnp.asarray(a) for a in (hidden, linear_weight, labels))
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    shard = None if axis_name is None else shard_for(axis_name)
    spec = LossSpec(
        label_smoothing,
        -1,
        reduction="none",
        names=NAMES,
        z_loss=z_loss,
        softcap=softcap,
        shard=shard,
    )
    if not isinstance(spec.eps, float):
        raise TypeError("label_smoothing must be a Python number here (it is not differentiated)")
    bias = None if linear_bias is None else jnp.asarray(linear_bias)
    return _fused(spec, chunk_size, hidden, linear_weight, bias, labels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused(spec: LossSpec, chunk: Any, hidden: Any, weight: Any, bias: Any, labels: Any) -> Any:
    return evaluate_linear(spec, hidden, weight, labels, linear_bias=bias, chunk_size=chunk).value


def _fused_forward(
    spec: LossSpec, chunk: Any, hidden: Any, weight: Any, bias: Any, labels: Any
) -> tuple[Any, Any]:
    value = _fused(spec, chunk, hidden, weight, bias, labels)
    return value, (hidden, weight, bias, labels)


def _fused_backward(spec: LossSpec, chunk: Any, saved: Any, upstream: Any) -> tuple[Any, ...]:
    hidden, weight, bias, labels = saved
    shard = spec.shard
    typed = shard is not None and shard.varies(weight)
    if shard is not None and not typed:
        # untyped (shard_map with check_vma=False): the replicated loss's cotangent comes in
        # parts, one per device; whole, it scales every slice's gradient, and shard_map's
        # transpose sums hidden's parts (a replicated input)
        upstream = shard.sum(upstream)
    result = evaluate_linear(
        spec,
        hidden,
        weight,
        labels,
        linear_bias=bias,
        chunk_size=chunk,
        grad=True,
        upstream=upstream,
    )
    d_labels = jnp.zeros(labels.shape, dtype=jax.dtypes.float0)  # integer labels: no tangent
    d_hidden = result.d_hidden
    if typed and not shard.varies(hidden):
        # hidden is invariant over the axis: its cotangent is every slice's part, summed (a
        # varying hidden keeps its own part: the pvary that made it varying sums them)
        d_hidden = shard.sum(d_hidden)
    return d_hidden, result.d_linear_weight, result.d_linear_bias, d_labels


_fused.defvjp(_fused_forward, _fused_backward)
