"""``tf.nn``-style label-smoothed cross-entropy, differentiated with the core's own gradient.

Both functions return one loss per example, as ``tf.nn.softmax_cross_entropy_with_logits`` and
``tf.nn.sparse_softmax_cross_entropy_with_logits`` do, but with the target smoothed first:
q = (1 − ε)·y + ε/K. The values and the logits' gradient come from one call to
:func:`smoothce.loss_and_grad` (``reduction="none"``, whose gradient row n is ∂L_n/∂z_n); this
module only registers that gradient with TensorFlow through ``tf.custom_gradient``.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

import smoothce
from smoothce._compat import tensorflow_namespace
from smoothce._validate import check_eps, check_logits, class_axis, smoothing

__all__ = ["softmax_cross_entropy_with_logits", "sparse_softmax_cross_entropy_with_logits"]


def softmax_cross_entropy_with_logits(
    labels: Any,
    logits: Any,
    label_smoothing: Any = 0.1,
    axis: int = -1,
    name: str | None = None,
) -> tf.Tensor:
    r"""Per-example softmax cross-entropy against smoothed probability labels.

    For each example, with K classes on ``axis``, p = softmax(logits) and
    q = (1 − ε)·labels + ε/K::

        loss = −Σ_c q_c · log p_c

    ``label_smoothing=0`` gives exactly ``tf.nn.softmax_cross_entropy_with_logits``.

    Args:
      labels: floating tensor of the logits' shape, each slice along ``axis`` a distribution.
        As in ``tf.nn``, the gradient flows into ``labels`` too (wrap them in
        ``tf.stop_gradient`` to prevent that).
      logits: floating tensor; its class dimension must be statically known.
      label_smoothing: ε in [0, 1], a Python number or a scalar tensor (no gradient flows
        into a tensor ε).
      axis: the class axis.
      name: optional name scope, as in ``tf.nn``.

    Returns:
      A tensor of the logits' dtype and shape without ``axis``. float16 and bfloat16 logits are
      accumulated in float32 by the core.
    """
    with tf.name_scope(name or "smooth_softmax_cross_entropy_with_logits"):
        logits, eps = _prepare(logits, label_smoothing)
        labels = tf.convert_to_tensor(labels)
        if not labels.dtype.is_floating:
            raise TypeError(
                f"labels must be floating probabilities of the logits' shape, got dtype "
                f"{labels.dtype.name}; integer class indices go to "
                "sparse_softmax_cross_entropy_with_logits"
            )
        ax = _class_axis(logits, axis)
        if labels.shape.rank is not None and not labels.shape.is_compatible_with(logits.shape):
            raise ValueError(
                f"labels of shape {labels.shape} must have the logits' shape {logits.shape}"
            )
        return _dense_with_grad(eps, ax, labels_grad=True)(logits, labels)


def sparse_softmax_cross_entropy_with_logits(
    labels: Any,
    logits: Any,
    label_smoothing: Any = 0.1,
    name: str | None = None,
) -> tf.Tensor:
    r"""Per-example softmax cross-entropy against smoothed integer class labels.

    The classes are the last axis of ``logits``. For each example with label y::

        loss = lse(z) − (1 − ε)·z_y − (ε/K)·Σ_c z_c

    which is the dense loss with q = (1 − ε)·onehot(y) + ε/K; no one-hot tensor is built.
    ``label_smoothing=0`` gives exactly ``tf.nn.sparse_softmax_cross_entropy_with_logits``.

    Args:
      labels: int32 or int64 tensor of shape ``logits.shape[:-1]``, values in [0, K).
        Eagerly an out-of-range label raises ``ValueError``; inside ``tf.function`` or XLA the
        values cannot be checked and that example's loss (and gradient) is NaN.
      logits: floating tensor of shape ``labels.shape + [K]``.
      label_smoothing: ε in [0, 1], a Python number or a scalar tensor.
      name: optional name scope, as in ``tf.nn``.

    Returns:
      A tensor of the labels' shape and the logits' dtype.
    """
    with tf.name_scope(name or "smooth_sparse_softmax_cross_entropy_with_logits"):
        logits, eps = _prepare(logits, label_smoothing)
        labels = tf.convert_to_tensor(labels)
        if not labels.dtype.is_integer:
            raise TypeError(
                f"labels must be integer class indices, got dtype {labels.dtype.name}; "
                "probability labels go to softmax_cross_entropy_with_logits"
            )
        ax = _class_axis(logits, -1)
        if labels.shape.rank is not None and not labels.shape.is_compatible_with(logits.shape[:ax]):
            raise ValueError(
                f"labels of shape {labels.shape} must have the logits' shape without the "
                f"class axis, {logits.shape[:ax]}"
            )
        return _sparse_with_grad(eps, ax)(logits, labels)


def _prepare(logits: Any, label_smoothing: Any) -> tuple[tf.Tensor, Any]:
    """The logits as a floating tensor and ε checked (a tf.Variable ε is read here, once)."""
    logits = tf.convert_to_tensor(logits)
    check_logits(tensorflow_namespace, logits)
    eps = label_smoothing
    if isinstance(eps, (tf.Tensor, tf.Variable)):
        eps = tf.convert_to_tensor(eps)
        check_eps(eps, "label_smoothing")  # a scalar; eager: its value, a traced ε is trusted
        if not eps.dtype.is_floating:
            eps = tf.cast(eps, tf.float32)
    else:
        eps = smoothing(eps)
    return logits, eps


def _class_axis(logits: tf.Tensor, axis: int) -> int:
    """The non-negative class axis; its size must be static because K enters ε/K."""
    rank = logits.shape.rank
    if rank is None:
        raise ValueError(f"logits must have a known rank, got shape {logits.shape}")
    ax = class_axis(rank, axis)
    if logits.shape[ax] is None:
        raise ValueError(
            f"the class dimension (axis {axis}) of logits must be statically known, "
            f"got shape {logits.shape}"
        )
    return ax


def _loss_and_grad(
    logits: tf.Tensor, labels: tf.Tensor, eps: Any, ax: int, ignore_index: int | None = None
) -> Any:
    """The core's per-example loss and gradient; inside a graph, compiled with XLA.

    Eagerly the core runs as it is (its checks read the values; no compile per new shape).
    In graph mode (tf.function, Keras's train step) TensorFlow would run the kernel as
    separate ops with N×C intermediates; XLA fuses them, about 1.6× faster on CPU.
    """
    if tf.executing_eagerly():
        return _core_loss_and_grad(logits, labels, eps, ax, ignore_index)
    return _xla_loss_and_grad(logits, labels, eps, ax, ignore_index)


def _core_loss_and_grad(
    logits: tf.Tensor, labels: tf.Tensor, eps: Any, ax: int, ignore_index: int | None
) -> Any:
    return smoothce.loss_and_grad(
        logits, labels, eps, axis=ax, ignore_index=ignore_index, reduction="none"
    )


_xla_loss_and_grad = tf.function(_core_loss_and_grad, jit_compile=True, autograph=False)


def _chain(logits_grad: tf.Tensor, upstream: tf.Tensor, ax: int) -> tf.Tensor:
    """d loss / d logits for one upstream gradient per example (broadcast along the classes)."""
    return logits_grad * tf.expand_dims(tf.cast(upstream, logits_grad.dtype), ax)


def _dense_with_grad(eps: Any, ax: int, *, labels_grad: bool) -> Any:
    """The dense loss as a function of (logits, labels) with its gradient registered.

    ``labels_grad=False`` (used by smoothce.keras, whose targets are data) skips the labels'
    gradient, which would otherwise cost one more forward pass when run eagerly.
    """

    @tf.custom_gradient
    def smoothed_ce(logits: tf.Tensor, labels: tf.Tensor) -> Any:
        value, logits_grad = _loss_and_grad(logits, labels, eps, ax)

        def backward(upstream: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | None]:
            d_logits = _chain(logits_grad, upstream, ax)
            if not labels_grad:
                return d_logits, None
            # tf.nn backpropagates into labels as well. The loss is linear in the labels, so
            # differentiating the core's forward gives that gradient; inside tf.function
            # these ops are pruned when nobody asks for the labels' gradient.
            with tf.GradientTape() as tape:
                tape.watch(labels)
                per_example = smoothce.loss(
                    tf.stop_gradient(logits), labels, eps, axis=ax, reduction="none"
                )
            d_labels = tape.gradient(per_example, labels, output_gradients=upstream)
            return d_logits, d_labels

        return value, backward

    return smoothed_ce


def _sparse_with_grad(eps: Any, ax: int, ignore_index: int | None = None) -> Any:
    """The integer-label loss (classes on axis ``ax``) with its gradient registered; labels
    equal to ``ignore_index`` get loss 0 and gradient 0 (the core's ``ignore_index``)."""

    @tf.custom_gradient
    def smoothed_sparse_ce(logits: tf.Tensor, labels: tf.Tensor) -> Any:
        value, logits_grad = _loss_and_grad(logits, labels, eps, ax, ignore_index)

        def backward(upstream: tf.Tensor) -> tuple[tf.Tensor, None]:
            return _chain(logits_grad, upstream, ax), None  # integer labels have no gradient

        return value, backward

    return smoothed_sparse_ce
