r"""`tf.nn`-style label-smoothed cross-entropy, differentiated with the core's own derivatives.

Both functions take `tf.nn`'s arguments in `tf.nn`'s order, `label_smoothing` (and the LLM
terms `z_loss` and `softcap`) keyword-only, and return one loss per example, as
`tf.nn.softmax_cross_entropy_with_logits` and `tf.nn.sparse_softmax_cross_entropy_with_logits`
do, with the target smoothed first: $q = (1 - \varepsilon)\,y + \varepsilon/K$. Values and
derivatives come from one core pass (`smoothce.internal.evaluate`, `reduction="none"`, whose
gradient row $n$ is $\partial L_n/\partial z_n$); this module only registers them with
TensorFlow through `tf.custom_gradient`. They work eagerly, in `tf.function` (XLA included),
in TF1-style graphs (`tf.compat.v1`) and under `tf.distribute` strategies.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from smoothce import Array
from smoothce.internal import LossSpec, Names, evaluate

__all__ = ["softmax_cross_entropy_with_logits", "sparse_softmax_cross_entropy_with_logits"]

NAMES = Names(eps="label_smoothing")


def softmax_cross_entropy_with_logits(
    labels: Array,
    logits: Array,
    axis: int = -1,
    name: str | None = None,
    *,
    label_smoothing: float | Array = 0.1,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> tf.Tensor:
    r"""Per-example softmax cross-entropy against smoothed probability labels.

    A drop-in for `tf.nn.softmax_cross_entropy_with_logits`: its arguments in its order, plus
    the keyword-only `label_smoothing`, `z_loss` and `softcap`. For each example, with $K$
    classes on `axis`, logits $z$, $p = \mathrm{softmax}(z)$ and the smoothed target
    $q = (1 - \varepsilon)\,\text{labels} + \varepsilon/K$,

    $$
    L = -\sum_c q_c \log p_c .
    $$

    `label_smoothing=0` gives exactly `tf.nn.softmax_cross_entropy_with_logits`. The loss and
    its gradient come from one pass of the core, registered with `tf.custom_gradient`; the
    function works eagerly, inside `tf.function` (XLA included), in TF1-style graphs and under
    `tf.distribute` strategies. Integer class labels go to
    [smoothce.tensorflow.sparse_softmax_cross_entropy_with_logits][].

    Args:
        labels: Probability labels, a tensor (or anything `tf.convert_to_tensor` takes, a
            `tf.Variable` included) of the logits' shape or broadcastable to it (`(1, K)`,
            `(K,)` or `(N, 1)` against `(N, K)` logits), each slice along `axis` a
            distribution; any floating dtype. As in `tf.nn`, the gradient flows into `labels`
            too, summed back to their own shape (wrap them in `tf.stop_gradient` to prevent
            that), and integer or boolean (one-hot) labels of the logits' rank are cast to the
            logits' dtype; integer labels with one dimension fewer than the logits are class
            indices and raise `TypeError` (they go to the sparse function).
        logits: Real floating tensor (float16, bfloat16, float32 or float64) of any rank
            $\ge 1$, with the $K$ classes along `axis`; 16-bit floats are accumulated in
            float32. Its class dimension must be statically known (a graph may leave the other
            sizes open).
        axis: The class axis of the logits, any in $[-\text{rank}, \text{rank})$: first,
            middle or last.
        name: Optional name scope of the ops, as in `tf.nn`. `None`:
            `"smooth_softmax_cross_entropy_with_logits"`.
        label_smoothing: Smoothing $\varepsilon \in [0, 1]$ (keyword-only, default 0.1): a
            Python number, a scalar tensor or a `tf.Variable` (read on each call, so it can be
            scheduled without retracing). No gradient flows into a tensor $\varepsilon$.
        z_loss: $\lambda \ge 0$ (keyword-only, a Python number): adds
            $\lambda \operatorname{lse}(z)^2$ to each example's loss (PaLM's z-loss); 0 adds
            nothing. Fixed when a `tf.function` is traced (a new value retraces).
        softcap: $c > 0$ (keyword-only, a Python number): the logits become
            $c \tanh(z/c)$ before everything else (Gemma 2's soft-capping); `None` caps
            nothing. Fixed when a `tf.function` is traced.

    Returns:
        One loss per example: a tensor of the logits' dtype and of their shape without `axis`
        (a scalar for 1-D logits), on their device. float16 and bfloat16 logits are
        accumulated in float32 by the core. Differentiable with respect to the logits and the
        labels, also twice (nested `tf.GradientTape`s).

    Raises:
        TypeError: Labels that are class indices (integer or boolean, one dimension fewer than
            the logits) or of another non-floating dtype, logits that are not real floating,
            a `z_loss` or `softcap` that is a string or a bool.
        ValueError: $\varepsilon$ outside $[0, 1]$ or NaN (a Python number or an eager
            tensor; a traced $\varepsilon$ outside $[0, 1]$ makes every loss NaN),
            $\lambda < 0$, $c \le 0$, either NaN or infinite, an `axis` out of range, labels
            whose shape does not fit the logits (when both shapes are known), zero classes, a
            class dimension unknown when the graph is built.
        tf.errors.InvalidArgumentError: When a graph runs, labels whose shape the graph left
            open and that do not fit the logits.

    Examples:
        >>> import tensorflow as tf, smoothce.tensorflow
        >>> logits = tf.Variable([[2.0, 1.0, 0.1]])
        >>> with tf.GradientTape() as tape:
        ...     loss = smoothce.tensorflow.softmax_cross_entropy_with_logits(
        ...         [[1.0, 0.0, 0.0]], logits, label_smoothing=0.1)
        >>> [round(float(v), 4) for v in loss]
        [0.5137]
        >>> [round(float(g), 4) for g in tape.gradient(loss, logits)[0]]
        [-0.2743, 0.2091, 0.0652]

        With `label_smoothing=0` it is `tf.nn`'s loss:

        >>> labels = tf.constant([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
        >>> ours = smoothce.tensorflow.softmax_cross_entropy_with_logits(
        ...     labels, logits * [[1.0], [0.5]], label_smoothing=0.0)
        >>> theirs = tf.nn.softmax_cross_entropy_with_logits(labels, logits * [[1.0], [0.5]])
        >>> bool(tf.reduce_all(tf.abs(ours - theirs) < 1e-6))
        True
    """
    with tf.name_scope(name or "smooth_softmax_cross_entropy_with_logits"):
        logits = tf.convert_to_tensor(logits)
        labels = tf.convert_to_tensor(labels)
        if not labels.dtype.is_floating:
            labels = _cast_dense(labels, logits)
        spec = _spec(label_smoothing, axis, z_loss=z_loss, softcap=softcap)
        logits, labels = _dense_labels(labels, logits)
        return _with_gradient(spec, labels_grad=True)(logits, labels)


def sparse_softmax_cross_entropy_with_logits(
    labels: Array,
    logits: Array,
    name: str | None = None,
    *,
    label_smoothing: float | Array = 0.1,
    check_labels: bool | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> tf.Tensor:
    r"""Per-example softmax cross-entropy against smoothed integer class labels.

    A drop-in for `tf.nn.sparse_softmax_cross_entropy_with_logits`: its arguments in its
    order, plus the keyword-only `label_smoothing`, `check_labels`, `z_loss` and `softcap`.
    The classes are the last axis of the logits $z$. For each example with label $y$,

    $$
    L = \operatorname{lse}(z) - (1 - \varepsilon)\,z_y - \frac{\varepsilon}{K}\sum_c z_c ,
    $$

    which is the dense loss of [smoothce.tensorflow.softmax_cross_entropy_with_logits][] with
    $q = (1 - \varepsilon)\,\mathrm{onehot}(y) + \varepsilon/K$; no one-hot tensor is built.
    `label_smoothing=0` gives exactly `tf.nn.sparse_softmax_cross_entropy_with_logits`. It
    works eagerly, inside `tf.function` (XLA included), in TF1-style graphs and under
    `tf.distribute` strategies.

    Args:
        labels: Integer class indices (any integer dtype), a tensor (or anything
            `tf.convert_to_tensor` takes) of shape `logits.shape[:-1]`, values in $[0, K)$;
            labels of length 1 are not broadcast to a batch. Eagerly, labels in host memory are
            read and an out-of-range label raises `ValueError`; labels on a GPU are not read
            (no synchronisation), nor inside `tf.function`, XLA or a TF1 graph: there that
            example's loss and gradient row are NaN.
        logits: Real floating tensor (float16, bfloat16, float32 or float64) of shape
            `labels.shape + [K]`; 16-bit floats are accumulated in float32. $K$ must be
            statically known.
        name: Optional name scope of the ops, as in `tf.nn`. `None`:
            `"smooth_sparse_softmax_cross_entropy_with_logits"`.
        label_smoothing: Smoothing $\varepsilon \in [0, 1]$ (keyword-only, default 0.1): a
            Python number, a scalar tensor or a `tf.Variable` (read on each call). No gradient
            flows into a tensor $\varepsilon$.
        check_labels: When eager labels are read (keyword-only): `None` when they are in host
            memory, `True` always (one device synchronisation per call on a GPU), `False`
            never. Graph tensors can never be read.
        z_loss: $\lambda \ge 0$ (keyword-only, a Python number): adds
            $\lambda \operatorname{lse}(z)^2$ to each example's loss (PaLM's z-loss); 0 adds
            nothing.
        softcap: $c > 0$ (keyword-only, a Python number): $z$ becomes $c \tanh(z/c)$ first
            (Gemma 2's soft-capping); `None` caps nothing.

    Returns:
        One loss per example: a tensor of the labels' shape and the logits' dtype, on the
        logits' device. Differentiable with respect to the logits, also twice; the labels get
        no gradient.

    Raises:
        TypeError: Labels that are not integers (probability labels go to
            [smoothce.tensorflow.softmax_cross_entropy_with_logits][]), logits that are not
            real floating, a `z_loss` or `softcap` that is a string or a bool.
        ValueError: A label outside $[0, K)$ where labels are read (see `check_labels`; the
            error is also an `IndexError`), $\varepsilon$ outside $[0, 1]$ or NaN (a Python
            number or an eager tensor; a traced $\varepsilon$ outside $[0, 1]$ makes every
            loss NaN), $\lambda < 0$, $c \le 0$, either NaN or infinite, labels whose shape
            is not the logits' without the last axis (when both are known), zero classes, a
            class dimension unknown when the graph is built.
        tf.errors.InvalidArgumentError: When a graph runs, labels whose shape the graph left
            open and that do not fit the logits.

    Examples:
        >>> import tensorflow as tf, smoothce.tensorflow
        >>> loss = smoothce.tensorflow.sparse_softmax_cross_entropy_with_logits(
        ...     [0], [[2.0, 1.0, 0.1]], label_smoothing=0.1)
        >>> [round(float(v), 4) for v in loss]
        [0.5137]

        The z-loss and soft-capping of language-model heads, and a label out of range:

        >>> logits = tf.constant([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]])
        >>> loss = smoothce.tensorflow.sparse_softmax_cross_entropy_with_logits(
        ...     [0, 1], logits, z_loss=1e-4, softcap=30.0)
        >>> [round(float(v), 4) for v in loss]
        [0.515, 0.3481]
        >>> try:
        ...     smoothce.tensorflow.sparse_softmax_cross_entropy_with_logits([0, 3], logits)
        ... except ValueError as err:
        ...     print(err)
        label 3 is out of range: labels must lie in [0, 3)
    """
    with tf.name_scope(name or "smooth_sparse_softmax_cross_entropy_with_logits"):
        logits = tf.convert_to_tensor(logits)
        labels = tf.convert_to_tensor(labels)
        if not labels.dtype.is_integer:
            raise TypeError(
                f"labels must be integer class indices, got dtype {labels.dtype.name}; "
                "probability labels go to softmax_cross_entropy_with_logits"
            )
        spec = _spec(label_smoothing, -1, check_labels=check_labels, z_loss=z_loss, softcap=softcap)
        return _with_gradient(spec, labels_grad=False)(logits, _index_labels(labels, logits, -1))


def _cast_dense(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Integer or boolean probability labels (one-hot, say) in the logits' dtype, as tf.nn
    casts them; class indices (one dimension fewer than the logits) are refused."""
    rank, logits_rank = labels.shape.rank, logits.shape.rank
    indices = rank is not None and logits_rank is not None and rank == logits_rank - 1
    if not (labels.dtype.is_integer or labels.dtype == tf.bool) or indices:
        raise TypeError(
            f"labels must be probabilities of the logits' shape, got dtype "
            f"{labels.dtype.name} and shape {labels.shape}; integer class indices go to "
            "sparse_softmax_cross_entropy_with_logits"
        )
    return tf.cast(labels, logits.dtype)


def _spec(
    label_smoothing: Any,
    axis: Any,
    check_labels: bool | None = None,
    z_loss: Any = 0.0,
    softcap: Any = None,
) -> LossSpec:
    """The checked spec; a tensor ε (a ``tf.Variable`` is read here, once) stays a tensor.
    ``z_loss`` and ``softcap`` are Python numbers, part of the static spec (one XLA
    compilation per value)."""
    eps = label_smoothing
    if isinstance(eps, (tf.Tensor, tf.Variable)):
        eps = tf.convert_to_tensor(eps)
        if not (eps.dtype.is_floating or eps.dtype == tf.bool):
            eps = tf.cast(eps, tf.float32)
    return LossSpec(
        eps,
        axis,
        reduction="none",
        check_labels=check_labels,
        names=NAMES,
        z_loss=z_loss,
        softcap=softcap,
    )


def _evaluate(spec: LossSpec, logits: tf.Tensor, labels: tf.Tensor, labels_grad: bool) -> Any:
    """The core's per-example loss and derivatives; inside a graph, compiled with XLA.

    Eagerly the core runs as it is (its checks read the values; no compile per new shape).
    In graph mode (tf.function, Keras's train step) TensorFlow would run the kernel as
    separate ops with N×C intermediates; XLA fuses them, about 1.6× faster on CPU. While
    TensorFlow's op callbacks instrument the graph (``tf.debugging.enable_check_numerics``,
    ``enable_dump_debug_info``) the ops stay plain TF ops: XLA cannot compile the
    instrumentation, and check_numerics then names the op that made a NaN.
    """
    static, (eps, _, _) = spec.split()
    if tf.executing_eagerly() or _instrumented():
        return _core(static, logits, labels, eps, labels_grad)
    return _xla_core(static, logits, labels, eps, labels_grad)


def _instrumented() -> bool:
    """Whether TensorFlow's op callbacks watch the ops being built (internal helper; without
    it, the core is compiled)."""
    try:
        from tensorflow.python.framework.op_callbacks import should_invoke_op_callbacks
    except ImportError:  # pragma: no cover - a TensorFlow without the helper
        return False
    return bool(should_invoke_op_callbacks())


def _core(static: LossSpec, logits: Any, labels: Any, eps: Any, labels_grad: bool) -> Any:
    spec = static.join((eps, None, None))
    result = evaluate(spec, logits, labels, grad=True, grad_labels=labels_grad)
    return result.value, result.grad, result.grad_labels


# No reduce_retracing: relaxing a traced shape to None would hide the class dimension K
# (and the labels' shape) that the core needs statically.
_xla_core = tf.function(_core, jit_compile=True, autograph=False)


def differentiable_loss(
    spec: LossSpec, logits: Array, labels: Array, labels_grad: bool | None = None
) -> tf.Tensor:
    r"""The per-example loss of `spec` as a TensorFlow value with the core's gradients.

    The seam [smoothce.keras][] uses on the TensorFlow backend: the loss that `spec` (a
    `LossSpec` from `smoothce.internal`, with `reduction="none"`) describes, per example

    $$
    L = -\sum_c w_c q_c \log p_c, \qquad q = (1 - \varepsilon)\,y + \frac{\varepsilon}{K},
    $$

    through the same `tf.custom_gradient` as
    [smoothce.tensorflow.softmax_cross_entropy_with_logits][], without `tf.nn`'s argument
    conventions.

    Args:
        spec: A validated `LossSpec` with `reduction="none"`; its `eps`, `axis`, `weight`,
            `ignore_index`, `probabilities`, `z_loss`, `softcap` and the other options apply
            as in [smoothce.loss][].
        logits: The predictions, a real floating tensor with the $K$ classes along
            `spec.axis`: logits, or probabilities when `spec.probabilities` is set (Keras's
            `from_logits=False`).
        labels: Integer class indices of the logits' shape without the class axis, or
            floating probabilities of the logits' shape (or broadcastable to it).
        labels_grad: Whether probability labels get a derivative (as Keras's own losses give
            `y_true` one). `None`: when a `tf.GradientTape` records them; Keras's train step
            watches only the weights, so the usual step forms none. `True`: always.
            `False`: never. Integer labels never get one.

    Returns:
        One loss per example, a tensor of the logits' dtype and of their shape without the
        class axis, differentiable with respect to the logits (and probability labels, as
        `labels_grad` says).

    Raises:
        TypeError: A wrong dtype, as the core's checks say.
        ValueError: A wrong shape or label value, as the core's checks say.

    Examples:
        >>> import tensorflow as tf, smoothce.tensorflow
        >>> from smoothce.internal import LossSpec
        >>> spec = LossSpec(0.1, -1, reduction="none")
        >>> loss = smoothce.tensorflow.differentiable_loss(
        ...     spec, tf.constant([[2.0, 1.0, 0.1]]), tf.constant([0]))
        >>> [round(float(v), 4) for v in loss]
        [0.5137]
    """
    logits, labels = tf.convert_to_tensor(logits), tf.convert_to_tensor(labels)
    if labels.dtype.is_floating:
        logits, labels = _dense_labels(labels, logits)
        if labels_grad is None:
            labels_grad = _recorded(labels)
    elif labels.dtype.is_integer and isinstance(spec.axis, int):
        labels = _index_labels(labels, logits, spec.axis)
    return _with_gradient(spec, labels_grad=bool(labels_grad))(logits, labels)


def _recorded(x: tf.Tensor) -> bool:
    """Whether a gradient tape records ``x`` (TensorFlow's internal helper; without it, yes)."""
    try:
        from tensorflow.python.eager.record import should_record_backprop
    except ImportError:  # pragma: no cover - a TensorFlow without the helper
        return True
    return bool(should_record_backprop([x]))


def _with_gradient(spec: LossSpec, *, labels_grad: bool) -> Any:
    """The loss as a function of (logits, labels) with its gradient registered.

    ``labels_grad=False`` (integer labels; smoothce.keras's targets unless a tape records them)
    forms no labels' derivative. Probability labels arrive with the logits' shape (see
    :func:`_dense_labels`), so their derivative needs no reduction here.
    """
    axes = spec.axis if isinstance(spec.axis, tuple) else (spec.axis,)

    @tf.custom_gradient
    def smoothed_ce(logits: tf.Tensor, labels: tf.Tensor) -> Any:
        value, logits_grad, labels_derivative = _evaluate(spec, logits, labels, labels_grad)

        def backward(upstream: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | None]:
            per_row = upstream
            for ax in sorted(a % len(logits.shape) for a in axes):
                per_row = tf.expand_dims(per_row, ax)  # one value per example -> per row
            d_logits = logits_grad * tf.cast(per_row, logits_grad.dtype)
            if labels_derivative is None:
                return d_logits, None
            return d_logits, labels_derivative * tf.cast(per_row, labels_derivative.dtype)

        return value, backward

    return smoothed_ce


# --- labels whose shape a graph leaves open ---------------------------------------------------
#
# Eagerly every shape is known and the core checks it. In a graph (tf.function, TF1) the
# labels' rank or sizes may be unknown until it runs; there the labels are fitted with ops
# that fail when the graph runs (or when XLA compiles it), as tf.nn's own kernels do.


def _dense_labels(labels: tf.Tensor, logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(logits, labels) with the labels broadcast to the logits' shape, as tf.nn broadcasts
    them, and both with the same static shape.

    Broadcasting here, outside the custom gradient, lets TensorFlow's own gradient of
    ``broadcast_to`` sum the labels' derivative back to their shape, whatever the sizes turn
    out to be. What one side knows statically of the (equal) shapes is given to the other
    (``ensure_shape``, no cost at run time). Shapes that cannot broadcast are left to the
    core's ``ValueError``.
    """
    shape, target = labels.shape, logits.shape
    if target.rank is None or (shape == target and target.is_fully_defined()):
        return logits, labels
    if shape.rank is not None:
        trailing = target[target.rank - shape.rank :] if shape.rank <= target.rank else None
        if trailing is None or not all(
            a is None or b is None or a in (1, b)
            for a, b in zip(shape.as_list(), trailing.as_list(), strict=True)
        ):
            return logits, labels  # the core names both shapes
    labels = tf.broadcast_to(labels, tf.shape(logits))
    known = target.merge_with(labels.shape)  # broadcast_to may know sizes the logits do not
    if known != target:
        logits = tf.ensure_shape(logits, known)
    if known != labels.shape:
        labels = tf.ensure_shape(labels, known)
    return logits, labels


def _index_labels(labels: tf.Tensor, logits: tf.Tensor, axis: int) -> tf.Tensor:
    """Integer labels that must have the logits' shape without ``axis``, checked when the
    graph runs where it leaves their sizes open.

    ``ensure_shape`` fixes an unknown rank. The sizes are then compared by an assertion that
    fails when the graph runs, as tf.nn's kernel does (TensorFlow's graph optimiser removes
    reshapes whose shapes it cannot tell apart, so only an assertion is sure to run). XLA
    compiles for concrete shapes and ignores assertions: there, broadcasting to the batch
    shape (sizes equal or 1) and reshaping to it (element counts equal) fail at compile time
    unless the shapes agree; their minimum keeps both (both are the labels).
    """
    rank = logits.shape.rank
    if rank is None or not -rank <= axis < rank:
        return labels  # the core raises
    axis %= rank
    static = logits.shape[:axis].concatenate(logits.shape[axis + 1 :])
    shape = labels.shape
    if shape.is_fully_defined() and static.is_fully_defined():
        return labels  # eager tensors always: the core compares the shapes
    if shape.rank is not None and (
        shape.rank != static.rank or not shape.is_compatible_with(static)
    ):
        return labels  # wrong already at trace time: the core raises ValueError
    with tf.name_scope("check_labels_shape"):
        if shape.rank is None:
            labels = tf.ensure_shape(labels, static)
        dims = tf.shape(logits)
        batch = tf.concat([dims[:axis], dims[axis + 1 :]], 0)
        if _in_xla():
            return tf.minimum(tf.reshape(labels, batch), tf.broadcast_to(labels, batch))
        check = tf.debugging.assert_equal(
            tf.shape(labels, out_type=batch.dtype),
            batch,
            message="labels must have the logits' shape without the class axis",
        )
        with tf.control_dependencies([check]):
            return tf.identity(labels)


def _in_xla() -> bool:
    """Whether the graph being built is compiled by XLA (``jit_compile``): asked through
    TensorFlow's internal helper; without it, the check is an assertion."""
    try:
        from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext
    except ImportError:  # pragma: no cover - a TensorFlow without the helper
        return False
    return bool(GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
