"""The public loss functions: each builds one :class:`~smoothce._spec.LossSpec` and runs it."""

from __future__ import annotations

from typing import Any

from ._backends import backend_of
from ._kernel import spread_eps
from ._linear import evaluate_linear
from ._run import eps_value, evaluate
from ._spec import LabelRangeError, LossSpec, Reduction, Spread, check_positive

__all__ = [
    "Array",
    "grad",
    "linear_loss",
    "linear_loss_and_grads",
    "loss",
    "loss_and_grad",
    "smooth_labels",
]

Array = Any
"""An array of any supported library: NumPy, PyTorch, JAX, TensorFlow, or another array-API one."""


def loss(
    logits: Array,
    labels: Array,
    eps: float | Array = 0.1,
    *,
    axis: int | tuple[int, ...] = -1,
    weight: Array | None = None,
    ignore_index: int | None = None,
    where: Array | None = None,
    reduction: Reduction = "mean",
    spread: Spread = "all",
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_lse: bool = False,
) -> Array:
    r"""Label-smoothed softmax cross-entropy.

    Per example, with :math:`p = \mathrm{softmax}(z)` over ``axis``, :math:`K` classes and the
    smoothed target :math:`q = (1 - \varepsilon)\,\mathrm{onehot}(y) + \varepsilon/K` (or
    :math:`(1 - \varepsilon)\,y + \varepsilon/K` for probability labels),

    .. math::

        L = -\sum_c w_c q_c \log p_c = T \operatorname{logsumexp}(z) - \sum_c w_c q_c z_c,
        \qquad T = \sum_c w_c q_c,

    which for integer labels without weights is
    :math:`\operatorname{lse}(z) - (1 - \varepsilon) z_y - \frac{\varepsilon}{K} \sum_c z_c`.

    Args:
      logits: floating array, K classes along ``axis``, any leading and trailing shape.
      labels: integer class indices of the logits' shape without ``axis``, or floating
        probabilities of the logits' shape or broadcastable to it (soft labels; smoothing is
        applied on top).
      eps: smoothing ε in [0, 1]: a number or a 0-d array.
      axis: the class axis, or a tuple of axes whose flattened product is the class axis
        (integer labels are then flat indices into it, as in optax).
      weight: optional per-class weights of shape (K,), PyTorch's ``weight``.
      ignore_index: integer label whose examples contribute nothing (integer labels only).
      where: optional boolean class mask broadcastable to ``logits``; masked classes leave the
        softmax and are not counted in K (optax's ``where``). An example whose classes are all
        masked gets loss 0 and gradient 0 and is left out of the mean, like an ignored one.
      reduction: ``"mean"`` (PyTorch's: divided by :math:`\sum w_y` over kept examples for
        integer labels, by the number of kept examples for probabilities), ``"sum"`` or
        ``"none"`` (one loss per example, the labels' batch shape).
      spread: ``"all"`` spreads ε over all K classes (PyTorch, Keras, optax); ``"others"``
        puts ε/(K − 1) on each wrong class and 1 − ε on the label (fairseq, Megatron, T5X),
        which is ``"all"`` with ε' = ε·K/(K − 1).
      z_loss: λ ≥ 0: adds :math:`\lambda \operatorname{lse}(z)^2` to each example's loss
        (PaLM's z-loss; lse over the unmasked classes). Under ``"mean"`` it is averaged over
        the kept examples, not weighted by the class weights.
      softcap: c > 0: the logits become :math:`c \tanh(z/c)` before everything else (Gemma 2's
        logit soft-capping); the gradient is multiplied by :math:`1 - (z'/c)^2`.
      return_lse: also return the per-example log-sum-exp (of the capped logits), from the
        same pass: ``(loss, lse)``; the z-loss part of an example is λ·lse².

    Returns:
      The loss in the logits' library, device and floating dtype; float16 and bfloat16 are
      accumulated in float32. An out-of-range label raises ``ValueError`` when the labels
      can be read without a device synchronisation; under jit or graph tracing, and on
      accelerators, that example's loss and gradient are NaN instead.

    Example:
      >>> import numpy as np, smoothce
      >>> logits = np.array([[2.0, 1.0, 0.1]])
      >>> round(float(smoothce.loss(logits, np.array([0]), 0.1)), 4)
      0.5137
    """
    spec = LossSpec(
        eps, axis, weight, ignore_index, where, reduction, spread, z_loss=z_loss, softcap=softcap
    )
    result = evaluate(spec, logits, labels, lse=return_lse)
    return (result.value, result.lse) if return_lse else result.value


def grad(
    logits: Array,
    labels: Array,
    eps: float | Array = 0.1,
    *,
    axis: int | tuple[int, ...] = -1,
    weight: Array | None = None,
    ignore_index: int | None = None,
    where: Array | None = None,
    reduction: Reduction = "mean",
    spread: Spread = "all",
    z_loss: float = 0.0,
    softcap: float | None = None,
    overwrite_logits: bool = False,
) -> Array:
    r"""Gradient of :func:`loss` with respect to ``logits``, reduced like the loss.

    Per example it is :math:`T\,\mathrm{softmax}(z) - w \odot q` (:math:`p - q` unweighted).

    Same arguments as :func:`loss`. The result has the logits' shape and dtype; for
    ``reduction="none"`` it is the gradient of the sum of the per-example losses.

    ``overwrite_logits=True`` writes the gradient into the logits' own buffer and returns it,
    for callers that no longer need the logits (the Liger-Kernel trick): no N×K memory is
    allocated. It needs an eager, writable, C-contiguous NumPy array or a torch tensor that
    does not require grad (and is not a view of one that does), with the class axis last;
    anything else raises ``ValueError``.

    Example:
      >>> import numpy as np, smoothce
      >>> g = smoothce.grad(np.array([[2.0, 1.0, 0.1]]), np.array([0]), 0.1)
      >>> np.round(g, 4)
      array([[-0.2743,  0.2091,  0.0652]])
    """
    return loss_and_grad(
        logits,
        labels,
        eps,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        where=where,
        reduction=reduction,
        spread=spread,
        z_loss=z_loss,
        softcap=softcap,
        overwrite_logits=overwrite_logits,
    )[1]


def loss_and_grad(
    logits: Array,
    labels: Array,
    eps: float | Array = 0.1,
    *,
    axis: int | tuple[int, ...] = -1,
    weight: Array | None = None,
    ignore_index: int | None = None,
    where: Array | None = None,
    reduction: Reduction = "mean",
    spread: Spread = "all",
    z_loss: float = 0.0,
    softcap: float | None = None,
    overwrite_logits: bool = False,
    return_lse: bool = False,
) -> tuple[Array, ...]:
    """:func:`loss` and :func:`grad` together, sharing the max, the exp and the sums.

    Same arguments as :func:`grad`, ``overwrite_logits`` included; ``return_lse=True`` gives
    ``(loss, grad, lse)``.

    Example:
      >>> import numpy as np, smoothce
      >>> value, g = smoothce.loss_and_grad(np.array([[2.0, 1.0, 0.1]]), np.array([0]), 0.1)
      >>> round(float(value), 4), g.shape
      (0.5137, (1, 3))
    """
    spec = LossSpec(
        eps,
        axis,
        weight,
        ignore_index,
        where,
        reduction,
        spread,
        overwrite=overwrite_logits,
        z_loss=z_loss,
        softcap=softcap,
    )
    result = evaluate(spec, logits, labels, grad=True, lse=return_lse)
    if return_lse:
        return result.value, result.grad, result.lse
    return result.value, result.grad


def linear_loss(
    hidden: Array,
    linear_weight: Array,
    labels: Array,
    eps: float | Array = 0.1,
    *,
    linear_bias: Array | None = None,
    weight: Array | None = None,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    spread: Spread = "all",
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    return_lse: bool = False,
) -> Array:
    r""":func:`loss` of the logits :math:`z = h W^\top + b`, computed in chunks of rows.

    The N×V logits of a language-model head are never stored whole: each chunk of
    ``chunk_size`` rows is formed, used and dropped. Every option of :func:`loss` except
    ``where`` and ``axis`` (the classes are last) combines with it.

    Args:
      hidden: (..., H) floating hidden states.
      linear_weight: (V, H), the classifier's weight (``torch.nn.Linear``'s layout).
      labels: integer class indices of ``hidden``'s batch shape, or probabilities (..., V).
      eps: smoothing ε in [0, 1].
      linear_bias: optional (V,) bias.
      weight: optional per-class weights (V,).
      ignore_index, reduction, spread, z_loss, softcap: as in :func:`loss`.
      chunk_size: rows per chunk; default: as many as make 2²⁴ logits.
      return_lse: also return the per-example log-sum-exp: ``(loss, lse)``.

    Returns:
      The loss, as :func:`loss` gives it on the full logits.

    Example:
      >>> import numpy as np, smoothce
      >>> h, w = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 0.1]])
      >>> labels = np.array([0, 1])
      >>> bool(np.isclose(smoothce.linear_loss(h, w, labels), smoothce.loss(h @ w.T, labels)))
      True
    """
    spec = LossSpec(
        eps,
        -1,
        weight,
        ignore_index,
        None,
        reduction,
        spread,
        z_loss=z_loss,
        softcap=softcap,
    )
    result = evaluate_linear(
        spec,
        hidden,
        linear_weight,
        labels,
        linear_bias=linear_bias,
        chunk_size=chunk_size,
        lse=return_lse,
    )
    return (result.value, result.lse) if return_lse else result.value


def linear_loss_and_grads(
    hidden: Array,
    linear_weight: Array,
    labels: Array,
    eps: float | Array = 0.1,
    *,
    linear_bias: Array | None = None,
    weight: Array | None = None,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    spread: Spread = "all",
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
) -> tuple[Array, tuple[Array, Array, Array | None]]:
    r""":func:`linear_loss` and its gradients, from the same chunked pass.

    Returns ``(loss, (d_hidden, d_linear_weight, d_linear_bias))``: the gradients of the
    (reduced) loss with respect to ``hidden``, ``linear_weight`` and ``linear_bias``
    (None without a bias); for ``reduction="none"`` those of the sum of the per-example
    losses. Per chunk: :math:`\partial L/\partial h = G W`,
    :math:`\partial L/\partial W \mathrel{+}= G^\top h`, :math:`\partial L/\partial b
    \mathrel{+}= \sum G`, with G the logits' gradient; W's and b's are accumulated in float32
    (float64 for float64 inputs) and returned in their own dtype.

    Example:
      >>> import numpy as np, smoothce
      >>> h, w = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 0.1]])
      >>> value, (d_h, d_w, d_b) = smoothce.linear_loss_and_grads(h, w, np.array([0, 1]))
      >>> d_h.shape, d_w.shape, d_b is None
      ((2, 2), (3, 2), True)
    """
    spec = LossSpec(
        eps,
        -1,
        weight,
        ignore_index,
        None,
        reduction,
        spread,
        z_loss=z_loss,
        softcap=softcap,
    )
    result = evaluate_linear(
        spec,
        hidden,
        linear_weight,
        labels,
        linear_bias=linear_bias,
        chunk_size=chunk_size,
        grad=True,
    )
    return result.value, (result.d_hidden, result.d_linear_weight, result.d_linear_bias)


def smooth_labels(
    labels: Array,
    eps: float | Array,
    *,
    num_classes: int | None = None,
    axis: int = -1,
    spread: Spread = "all",
    dtype: Any = None,
) -> Array:
    r"""Dense smoothed targets :math:`q = (1 - \varepsilon)\,y + \varepsilon/K`.

    Args:
      labels: integer class indices (then ``num_classes`` is required and the new class axis
        is inserted at ``axis``) or floating probabilities with the classes on ``axis``.
      eps: ε in [0, 1], a number or a 0-d array.
      num_classes: K, for integer labels.
      axis: where the class axis is (probabilities) or goes (integer labels).
      spread: ``"others"`` gives 1 − ε on the label and ε/(K − 1) elsewhere.
      dtype: the result's floating dtype. Default: the probabilities' dtype, else a floating
        ε array's, else the library's default floating dtype.

    Returns:
      The dense targets. An integer label outside [0, K) raises ``ValueError`` when it can be
      read; under tracing its row is NaN.

    Example:
      >>> import numpy as np, smoothce
      >>> smoothce.smooth_labels(np.array([0, 2]), 0.3, num_classes=3)
      array([[0.8, 0.1, 0.1],
             [0.1, 0.1, 0.8]])
    """
    spec = LossSpec(eps, axis, spread=spread)
    backend = backend_of(labels)
    xp = backend.namespace(labels)
    if xp.isdtype(labels.dtype, "integral"):
        if num_classes is None:
            raise TypeError("integer labels need num_classes")
        k = check_positive(num_classes, "num_classes")
        out_axis = _axis(axis, labels.ndim + 1)
        dtype = dtype or _default_float(spec, backend, xp, labels)
        wide = backend.index_dtype(xp, labels)  # uint8 labels with K > 256 must not wrap
        index = xp.astype(labels, wide, copy=False)
        if backend.on_host(labels) and labels.ndim is not None and _size(labels):
            low, high = (int(v) for v in backend.extremes(xp, index))
            if low < 0 or high >= k:
                bad = low if low < 0 else high
                raise LabelRangeError(f"label {bad} is out of range: labels must lie in [0, {k})")
        column = xp.expand_dims(index, axis=-1)
        onehot = xp.astype(xp.equal(column, xp.arange(k, dtype=wide)), dtype)
        if not backend.on_host(labels):  # an unread bad label makes its row NaN
            # a `where`, not a product: XLA turns (bool → float) · x into a select and drops NaN
            valid = (column >= 0) & (column < k)
            onehot = xp.where(valid, onehot, xp.nan)
        dense = xp.moveaxis(onehot, -1, out_axis) if out_axis != labels.ndim else onehot
    elif xp.isdtype(labels.dtype, "real floating"):
        out_axis = _axis(axis, labels.ndim)
        k = labels.shape[out_axis]
        if num_classes is not None and check_positive(num_classes, "num_classes") != k:
            raise ValueError(
                f"num_classes={num_classes} disagrees with labels' class axis of size {k}"
            )
        dense = labels if dtype is None else xp.astype(labels, dtype)
    else:
        raise TypeError(f"labels must be integer or floating, got dtype {labels.dtype}")
    if spec.others and k < 2:
        raise ValueError(f"spread='others' needs at least 2 classes, got K={k}")
    eps, _ = eps_value(spec, backend, xp, dense.dtype)
    eps_all = spread_eps(eps, k, spec.others)
    return (1 - eps_all) * dense + eps_all / k


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for a result with {ndim} dimension(s)")
    return axis % ndim


def _size(x: Any) -> int:
    size = 1
    for d in x.shape:
        size *= d
    return size


def _default_float(spec: LossSpec, backend: Any, xp: Any, labels: Any) -> Any:
    eps = spec.eps
    if not isinstance(eps, float) and backend_of(eps) is backend:
        if xp.isdtype(eps.dtype, "real floating"):
            return eps.dtype
    info = xp.__array_namespace_info__()
    return info.default_dtypes(device=backend.device(labels))["real floating"]
