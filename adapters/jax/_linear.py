"""The fused, chunked linear + cross-entropy for JAX, optax-style (one loss per example).

The N×V logits of a language-model head are formed one chunk of rows at a time by the core
(`smoothce.internal.evaluate_linear`); a `jax.custom_vjp` keeps only the inputs for the
backward pass, which runs the chunks again with the upstream gradient (one value per example)
applied before anything is summed over tokens. Reverse mode (`grad`), `jit` and `vmap`
work; forward mode does not (a custom VJP has no JVP).

With `axis_name` (vocab parallelism, inside `jax.shard_map`) the weight and bias are this
device's rows of the classifier; the core combines each chunk's row statistics over the
devices, and the backward pass sums `hidden`'s gradient over them (one `psum`). Which of
the backward's values are whole and which are held in parts depends on whether JAX types
them (`check_vma`), so the backward pass reads the weight's type.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp

from smoothce import Array
from smoothce.internal import LossSpec, Names, evaluate_linear

from ._shard import shard_for

__all__ = ["linear_softmax_cross_entropy_with_integer_labels"]

NAMES = Names(eps="label_smoothing")


def linear_softmax_cross_entropy_with_integer_labels(
    hidden: Array,
    linear_weight: Array,
    labels: Array,
    *,
    linear_bias: Array | None = None,
    label_smoothing: float = 0.1,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    axis_name: Hashable | tuple[Hashable, ...] | None = None,
) -> jax.Array:
    r"""Per-example label-smoothed cross-entropy of a linear head's logits, formed in chunks.

    With the hidden states $h$ (`hidden`), the classifier $W$ (`linear_weight`, $V$ rows) and
    the bias $b$ (`linear_bias`, 0 without), each example's loss is that of
    [smoothce.jax.softmax_cross_entropy_with_integer_labels][] on the logits
    $z = h W^\top + b$,

    $$
    L = \operatorname{lse}(z) - (1 - \varepsilon)\,z_y - \frac{\varepsilon}{V} \sum_c z_c
    $$

    (plus $\lambda \operatorname{lse}(z)^2$ with `z_loss`, on $c \tanh(z/c)$ with `softcap`),
    but the logits are never stored whole: each chunk of `chunk_size` rows is formed, used and
    dropped, in the forward and in the backward pass (a `jax.custom_vjp` keeps only the
    inputs and runs the chunks again). Reverse mode (`grad`), `jit` and `vmap` work; forward
    mode (`jvp`, `jacfwd`) does not.

    Args:
        hidden: Hidden states, a real floating JAX array of shape `(..., H)` (the batch
            shape, then the features); 16-bit floats are computed in float32. With
            `axis_name`, the same on every device (replicated).
        linear_weight: The classifier weight, a real floating array of shape `(V, H)`, one
            row per class. With `axis_name`, this device's rows.
        labels: Integer class indices of `hidden`'s batch shape (`hidden.shape[:-1]`), values
            in $[0, V)$; with `axis_name`, global class ids, the same on every device.
            Concrete labels on the CPU are read and a label out of range raises; under `jit`
            or on an accelerator that example's loss is NaN instead.
        linear_bias: Optional bias of shape `(V,)` (keyword-only); with `axis_name`, this
            device's entries. `None`: no bias.
        label_smoothing: Smoothing $\varepsilon \in [0, 1]$ (keyword-only, default 0.1): a
            Python number (it is not differentiated).
        z_loss: $\lambda \ge 0$ (keyword-only) of the z-loss $\lambda \operatorname{lse}(z)^2$
            added to each example's loss; 0 adds nothing.
        softcap: $c > 0$ (keyword-only): the logits become $c \tanh(z/c)$ first. `None`: no
            cap.
        chunk_size: Rows per chunk (keyword-only), a positive integer. `None`: as many rows as
            make $2^{24}$ logits.
        axis_name: Vocab parallelism (keyword-only): inside `jax.shard_map` with the classes
            split evenly over the mesh axis (or tuple of axes) `axis_name`, `linear_weight`
            (and `linear_bias`) are this device's rows of the classifier, `hidden` and the
            labels (global class ids) the same on every device. The result is the loss over
            all classes, the same on every device; the weight's and bias's gradients are this
            device's rows, `hidden`'s the whole gradient (one `psum` in the backward pass).
            `None`: all classes are here.

    Returns:
        One loss per example: a JAX array of `hidden`'s batch shape, in the dtype of `hidden`
        and `linear_weight` (promoted). Differentiable in `hidden`, `linear_weight` and
        `linear_bias` under `grad`, `jit` and `vmap`; the weight's and bias's gradients are
        accumulated in float32 whatever the input dtype.

    Raises:
        TypeError: Labels that are not integers, a `label_smoothing` that is not a Python
            number (a JAX array, say), `hidden` or `linear_weight` not real floating, a
            `z_loss` or `softcap` that is not a number, an `axis_name` that is not hashable.
        ValueError: `hidden` not `(..., H)`, `linear_weight` not `(V, H)` or without rows,
            `linear_bias` not `(V,)`, labels not of the batch shape, a label outside
            $[0, V)$ where the labels are read, $\varepsilon$ outside $[0, 1]$,
            $\lambda < 0$, $c \le 0$, a `chunk_size` below 1, an `axis_name` that no
            enclosing map binds.

    Examples:
        >>> import jax, jax.numpy as jnp, smoothce.jax
        >>> hidden = jnp.arange(24.0).reshape(6, 4) / 10  # (N, H)
        >>> weight = jnp.arange(40.0).reshape(10, 4) / 50  # (V, H)
        >>> labels = jnp.arange(6)
        >>> loss = smoothce.jax.linear_softmax_cross_entropy_with_integer_labels(
        ...     hidden, weight, labels, chunk_size=4)
        >>> loss.shape
        (6,)

        The values of the unfused loss on the stored logits, and the weight's gradient:

        >>> logits = hidden @ weight.T
        >>> unfused = smoothce.jax.softmax_cross_entropy_with_integer_labels(logits, labels)
        >>> bool(jnp.allclose(loss, unfused, atol=1e-6))
        True
        >>> def mean_loss(w):
        ...     return smoothce.jax.linear_softmax_cross_entropy_with_integer_labels(
        ...         hidden, w, labels, chunk_size=4).mean()
        >>> jax.grad(mean_loss)(weight).shape
        (10, 4)
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
