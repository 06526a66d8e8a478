"""The public loss functions: each builds one `LossSpec` (`smoothce._spec`) and runs it."""

from __future__ import annotations

from typing import Any, TypeAlias

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

Array: TypeAlias = Any
"""An array of any supported library.

A `numpy.ndarray`, a `torch.Tensor`, a `jax.Array`, a `tf.Tensor` or `tf.Variable`, or an
array of another library that implements the Python array API standard (array-api-strict,
for example). Every function answers in the library, on the device and, unless it says
otherwise, in the floating dtype of its array arguments; arguments of two libraries in one
call raise `TypeError`. Static type checkers see `Any`: the libraries share no common type.
"""


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

    For one example with logits $z \in \mathbb{R}^K$ along `axis`,
    $p = \mathrm{softmax}(z)$, class weights $w$ (all 1 without `weight`) and the
    smoothed target

    $$
    q = (1 - \varepsilon)\,y + \frac{\varepsilon}{K},
    $$

    where $y$ is the one-hot vector of an integer label or a row of probability labels,
    the loss is

    $$
    L = -\sum_c w_c q_c \log p_c = T \operatorname{lse}(z) - \sum_c w_c q_c z_c,
    \qquad T = \sum_c w_c q_c .
    $$

    For an integer label without weights that is
    $\operatorname{lse}(z) - (1 - \varepsilon)\, z_y - \frac{\varepsilon}{K} \sum_c z_c$:
    one max, one sum of exponentials, one sum and one gather per example, with no
    log-softmax array and no one-hot ([the math][the-loss-without-a-log-softmax-array]).
    [smoothce.grad][] and [smoothce.loss_and_grad][] give the gradient.

    Args:
        logits: Real floating array (float16, bfloat16, float32 or float64) with the $K$
            classes along `axis`, any other shape: `(N, K)`, `(K,)`, `(N, K, T)` with
            `axis=1`, ... 16-bit floats are accumulated in float32.
        labels: Integer class indices in $[0, K)$, any integer dtype, of the logits' shape
            without `axis`; or floating probabilities of the logits' shape (or
            broadcastable to it), smoothed on top.
        eps: Smoothing $\varepsilon \in [0, 1]$: a Python number or a 0-d array (which may
            be traced).
        axis: The class axis; or a tuple of axes, flattened in order into one class axis
            (integer labels are then flat indices into it, as in optax).
        weight: Per-class weights $w$ of shape `(K,)`, real dtype; PyTorch's `weight`
            semantics. `None`: all 1.
        ignore_index: An integer label whose examples contribute no loss and no gradient
            and leave the mean's denominator (integer labels only). `None`: none.
        where: Boolean class mask broadcastable to `logits` (optax's `where`). Masked
            classes leave the softmax and are not counted in $K$; an example whose classes
            are all masked gets loss 0 and is left out of the mean.
        reduction: `"mean"` divides the sum by $\sum_n w_{y_n}$ over the kept examples
            (integer labels; their count without weights) or by the number of kept examples
            (probabilities), as PyTorch does; `"sum"`; or `"none"`, one loss per example.
        spread: `"all"` spreads $\varepsilon$ over all $K$ classes (PyTorch, Keras, optax);
            `"others"` gives $1 - \varepsilon$ to the label and $\varepsilon/(K-1)$ to each
            other class (fairseq, Megatron, T5X), the same as `"all"` with
            $\varepsilon' = \varepsilon K/(K-1)$.
        z_loss: $\lambda \ge 0$. Adds $\lambda \operatorname{lse}(z)^2$ to each example's
            loss (PaLM's z-loss; lse over the unmasked classes). Under `"mean"` it is
            averaged over the kept examples, without the class weights.
        softcap: $c > 0$: the logits become $c \tanh(z/c)$ before everything else
            (Gemma 2's soft-capping). `None`: no cap.
        return_lse: Also return each example's $\operatorname{lse}$ of the (capped) logits,
            from the same pass.

    Returns:
        The loss in the logits' library, on their device, in their dtype: a 0-d array for
        `"mean"` and `"sum"`, the labels' batch shape (the logits' shape without `axis`)
        for `"none"`. With `return_lse=True`, the pair `(loss, lse)`, `lse` of the batch
        shape; an example's z-loss term is $\lambda\,\mathrm{lse}^2$.

    Raises:
        TypeError: A wrong type or dtype: integer logits, labels neither integer nor
            floating, a non-boolean `where`, arrays of two libraries.
        ValueError: A wrong value or shape: $\varepsilon$ outside $[0, 1]$, a `weight` not
            of shape `(K,)`, an unknown `reduction`, an `axis` out of range, or an integer
            label outside $[0, K)$ that is not `ignore_index`, when the labels can be read
            without a device synchronisation. Under `jax.jit`, `tf.function` or on an
            accelerator such a label makes its example's loss and gradient NaN instead.

    Examples:
        >>> import numpy as np
        >>> import smoothce
        >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]])
        >>> labels = np.array([0, 1])
        >>> round(float(smoothce.loss(logits, labels, eps=0.1)), 4)
        0.4302
        >>> smoothce.loss(logits, labels, eps=0.1, reduction="none").round(4)
        array([0.5137, 0.3467])

        fairseq's convention is PyTorch's with $\varepsilon' = \varepsilon K/(K-1)$:

        >>> a = smoothce.loss(logits, labels, eps=0.1, spread="others")
        >>> b = smoothce.loss(logits, labels, eps=0.1 * 3 / 2)
        >>> bool(np.isclose(a, b))
        True
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
    r"""Gradient of [smoothce.loss][] with respect to the logits, reduced like the loss.

    Per example it is

    $$
    \frac{\partial L}{\partial z} = T\,p - w \odot q, \qquad T = \sum_c w_c q_c,
    $$

    which is $p - q$ without weights ([the gradient][gradient-p-minus-q]).
    Under `"mean"` it is divided by the mean's denominator; for `reduction="none"` it is
    the gradient of the sum of the per-example losses, so row $n$ is
    $\partial L_n / \partial z_n$. [smoothce.loss_and_grad][] gives the loss too, at no
    extra cost.

    Args:
        logits: Real floating array with the $K$ classes along `axis`, as in
            [smoothce.loss][].
        labels: Integer class indices of the logits' shape without `axis`, or floating
            probabilities of the logits' shape, as in [smoothce.loss][].
        eps: Smoothing $\varepsilon \in [0, 1]$, a number or a 0-d array.
        axis: The class axis, or a tuple of class axes.
        weight: Per-class weights of shape `(K,)`, or `None`.
        ignore_index: Integer label whose examples get a zero gradient row, or `None`.
        where: Boolean class mask broadcastable to `logits`; masked classes get gradient 0.
        reduction: `"mean"`, `"sum"` or `"none"`, as in [smoothce.loss][].
        spread: `"all"` or `"others"`, as in [smoothce.loss][].
        z_loss: $\lambda \ge 0$ of the z-loss $\lambda \operatorname{lse}(z)^2$.
        softcap: $c > 0$ of the soft-cap $c \tanh(z/c)$ (the gradient is multiplied by
            $1 - (z'/c)^2$), or `None`.
        overwrite_logits: Write the gradient into the logits' own buffer and return that
            buffer, for callers that no longer need the logits (the Liger-Kernel trick): no
            $N \times K$ memory is allocated. Needs an eager, writable, C-contiguous NumPy
            array, or a torch tensor that does not require grad (nor is a view of one that
            does), with the classes on the last axis; anything else raises `ValueError`.

    Returns:
        The gradient, of the logits' shape, library, device and dtype (the logits array
        itself when `overwrite_logits=True`).

    Raises:
        TypeError: As [smoothce.loss][].
        ValueError: As [smoothce.loss][], and for logits that `overwrite_logits=True`
            cannot overwrite.

    Examples:
        >>> import numpy as np
        >>> import smoothce
        >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]])
        >>> labels = np.array([0, 1])
        >>> smoothce.grad(logits, labels, eps=0.1).round(4)
        array([[-0.1372,  0.1045,  0.0326],
               [ 0.0389, -0.056 ,  0.017 ]])

        It is $(p - q)/N$ under the mean:

        >>> p = smoothce.metrics.softmax(logits)
        >>> q = smoothce.smooth_labels(labels, 0.1, num_classes=3)
        >>> bool(np.allclose(smoothce.grad(logits, labels, eps=0.1), (p - q) / 2))
        True
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
    r"""[smoothce.loss][] and [smoothce.grad][] from one pass over the logits.

    The two share the max, the exponentials and the row sums, so this costs about as much
    as the loss alone. Every argument means what it means in [smoothce.loss][] and
    [smoothce.grad][].

    Args:
        logits: Real floating array with the $K$ classes along `axis`.
        labels: Integer class indices of the logits' shape without `axis`, or floating
            probabilities of the logits' shape.
        eps: Smoothing $\varepsilon \in [0, 1]$, a number or a 0-d array.
        axis: The class axis, or a tuple of class axes.
        weight: Per-class weights of shape `(K,)`, or `None`.
        ignore_index: Integer label whose examples count as absent, or `None`.
        where: Boolean class mask broadcastable to `logits`, or `None`.
        reduction: `"mean"`, `"sum"` or `"none"`.
        spread: `"all"` or `"others"`.
        z_loss: $\lambda \ge 0$ of the z-loss.
        softcap: $c > 0$ of the soft-cap, or `None`.
        overwrite_logits: Write the gradient into the logits' own buffer, as in
            [smoothce.grad][].
        return_lse: Also return each example's $\operatorname{lse}$, of the batch shape.

    Returns:
        The pair `(loss, grad)`, as [smoothce.loss][] and [smoothce.grad][] return them;
        with `return_lse=True` the triple `(loss, grad, lse)`.

    Raises:
        TypeError: As [smoothce.loss][].
        ValueError: As [smoothce.grad][].

    Examples:
        >>> import numpy as np
        >>> import smoothce
        >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]])
        >>> value, g = smoothce.loss_and_grad(logits, np.array([0, 1]), eps=0.1)
        >>> round(float(value), 4), g.shape, g.dtype
        (0.4302, (2, 3), dtype('float64'))
        >>> bool(np.allclose(g.sum(axis=1), 0.0))  # each row of p - q sums to zero
        True
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
    r"""[smoothce.loss][] of the logits $z = h W^\top + b$, without storing them whole.

    The $N \times V$ logits of a language-model head are formed one chunk of
    `chunk_size` rows at a time, used and dropped; the result equals
    `smoothce.loss(hidden @ linear_weight.T + linear_bias, labels, eps, ...)`. Every
    option of [smoothce.loss][] except `where` and `axis` (the classes are last) combines
    with it. [smoothce.linear_loss_and_grads][] gives the gradients from the same pass.

    Args:
        hidden: Hidden states $h$, real floating, shape `(..., H)`.
        linear_weight: The classifier's weight $W$, shape `(V, H)` (`torch.nn.Linear`'s
            layout), real floating.
        labels: Integer class indices in $[0, V)$ of `hidden`'s batch shape `(...)`, or
            floating probabilities of shape `(..., V)`.
        eps: Smoothing $\varepsilon \in [0, 1]$, a number or a 0-d array.
        linear_bias: The bias $b$, shape `(V,)`, or `None`.
        weight: Per-class weights of shape `(V,)`, or `None`.
        ignore_index: Integer label whose examples count as absent, or `None`.
        reduction: `"mean"`, `"sum"` or `"none"`, as in [smoothce.loss][].
        spread: `"all"` or `"others"`, as in [smoothce.loss][].
        z_loss: $\lambda \ge 0$ of the z-loss, as in [smoothce.loss][].
        softcap: $c > 0$ of the soft-cap, or `None`, as in [smoothce.loss][].
        chunk_size: Rows per chunk. `None`: as many as make $2^{24}$ logits (64 MiB in
            float32).
        return_lse: Also return each example's $\operatorname{lse}$.

    Returns:
        The loss, as [smoothce.loss][] gives it on the full logits, in the result dtype of
        `hidden` and `linear_weight`; with `return_lse=True` the pair `(loss, lse)`.

    Raises:
        TypeError: As [smoothce.loss][], and for non-floating `hidden` or `linear_weight`.
        ValueError: As [smoothce.loss][], and for shapes that do not fit together.

    Examples:
        >>> import numpy as np
        >>> import smoothce
        >>> h = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> w = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 0.1]])
        >>> labels = np.array([0, 1])
        >>> fused = smoothce.linear_loss(h, w, labels, eps=0.1, chunk_size=1)
        >>> bool(np.isclose(fused, smoothce.loss(h @ w.T, labels, eps=0.1)))
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
    r"""[smoothce.linear_loss][] and its gradients, from the same chunked pass.

    With $G = \partial L / \partial z$ the gradient of the logits of one chunk of rows,

    $$
    \frac{\partial L}{\partial h} = G W, \qquad
    \frac{\partial L}{\partial W} \mathrel{+}= G^\top h, \qquad
    \frac{\partial L}{\partial b} \mathrel{+}= \textstyle\sum_{\text{rows}} G .
    $$

    The gradients of $W$ and $b$ are accumulated in float32 (float64 for float64 inputs)
    and returned in their own dtype. For `reduction="none"` they are the gradients of the
    sum of the per-example losses.

    Args:
        hidden: Hidden states $h$, real floating, shape `(..., H)`.
        linear_weight: The classifier's weight $W$, shape `(V, H)`.
        labels: Integer class indices of `hidden`'s batch shape, or probabilities
            `(..., V)`.
        eps: Smoothing $\varepsilon \in [0, 1]$.
        linear_bias: The bias $b$, shape `(V,)`, or `None`.
        weight: Per-class weights of shape `(V,)`, or `None`.
        ignore_index: Integer label whose examples count as absent, or `None`.
        reduction: `"mean"`, `"sum"` or `"none"`.
        spread: `"all"` or `"others"`.
        z_loss: $\lambda \ge 0$ of the z-loss.
        softcap: $c > 0$ of the soft-cap, or `None`.
        chunk_size: Rows per chunk; `None`: as many as make $2^{24}$ logits.

    Returns:
        The pair `(loss, (d_hidden, d_linear_weight, d_linear_bias))`: the loss as
        [smoothce.linear_loss][] gives it and its gradients with respect to `hidden`
        (shape `(..., H)`), `linear_weight` (`(V, H)`) and `linear_bias` (`(V,)`, or
        `None` without a bias), each in its input's dtype.

    Raises:
        TypeError: As [smoothce.linear_loss][].
        ValueError: As [smoothce.linear_loss][].

    Examples:
        >>> import numpy as np
        >>> import smoothce
        >>> h = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> w = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 0.1]])
        >>> value, (d_h, d_w, d_b) = smoothce.linear_loss_and_grads(h, w, np.array([0, 1]))
        >>> d_h.shape, d_w.shape, d_b is None
        ((2, 2), (3, 2), True)
        >>> g = smoothce.grad(h @ w.T, np.array([0, 1]))  # the logits' gradient G
        >>> bool(np.allclose(d_h, g @ w)), bool(np.allclose(d_w, g.T @ h))
        (True, True)
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
    r"""Dense smoothed targets $q = (1 - \varepsilon)\,y + \varepsilon/K$.

    [smoothce.loss][] never builds them; this is for code that needs $q$ itself, for
    example to hand to a loss that takes probabilities. With `spread="others"` the label
    gets $1 - \varepsilon$ and every other class $\varepsilon/(K-1)$.

    Args:
        labels: Integer class indices in $[0, K)$, any shape and integer dtype (then
            `num_classes` is required and the new class axis is inserted at `axis`); or
            floating probabilities with the $K$ classes on `axis`.
        eps: Smoothing $\varepsilon \in [0, 1]$, a number or a 0-d array.
        num_classes: $K$; required for integer labels, checked against probabilities.
        axis: Where the class axis is (probabilities) or goes (integer labels).
        spread: `"all"` ($\varepsilon/K$ on every class) or `"others"`
            ($\varepsilon/(K-1)$ on the wrong classes).
        dtype: The result's floating dtype, in the labels' library. `None`: the
            probabilities' dtype, else a floating `eps` array's, else the library's default
            floating dtype.

    Returns:
        The targets, floating, in the labels' library and on their device: shape
        `labels.shape` with `num_classes` inserted at `axis` for integer labels, the
        labels' shape for probabilities. Each row sums to 1.

    Raises:
        TypeError: Labels neither integer nor floating, or integer labels without
            `num_classes`.
        ValueError: $\varepsilon$ outside $[0, 1]$, a `num_classes` that disagrees with the
            probabilities, or an integer label outside $[0, K)$ when it can be read (under
            tracing its row is NaN instead).

    Examples:
        >>> import numpy as np
        >>> import smoothce
        >>> smoothce.smooth_labels(np.array([0, 2]), 0.3, num_classes=3)
        array([[0.8, 0.1, 0.1],
               [0.1, 0.1, 0.8]])
        >>> smoothce.smooth_labels(np.array([0, 2]), 0.3, num_classes=3, spread="others")
        array([[0.7 , 0.15, 0.15],
               [0.15, 0.15, 0.7 ]])
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
