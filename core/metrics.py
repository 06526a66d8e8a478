r"""Calibration metrics: how far a classifier's confidence is from its accuracy.

Every function takes arrays of any library that smoothce supports (NumPy, PyTorch, JAX,
TensorFlow, array-api-strict) and answers in that library, except
[fit_temperature][smoothce.metrics.fit_temperature], which runs a short search on the host and
returns a Python float. The [calibration guide][calibration-guide] shows them at work.

Notation: logits $z$ with the $K$ classes on `axis`, $p = \mathrm{softmax}(z)$, confidence
$c = \max_k p_k$, prediction $\hat y = \arg\max_k p_k$, $y$ the integer label.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

from ._api import Array
from ._api import loss as _loss
from ._backends import Backend, common_backend
from ._spec import LabelRangeError, check_index, check_positive

__all__ = [
    "ReliabilityCurve",
    "expected_calibration_error",
    "fit_temperature",
    "logit_norm",
    "noisy_labels",
    "reliability_curve",
    "softmax",
]


def softmax(logits: Array, *, axis: int = -1) -> Array:
    r"""Softmax along `axis`, computed without overflow.

    $$
    p_k = \frac{e^{z_k - m}}{\sum_j e^{z_j - m}}, \qquad m = \max_j z_j .
    $$

    Subtracting the maximum changes nothing mathematically (softmax is shift-invariant) and
    keeps the exponentials from overflowing.

    Args:
        logits: Real floating array with the classes on `axis`, any shape.
        axis: The class axis.

    Returns:
        The probabilities $p$: the logits' shape, dtype, library and device, summing to 1
        along `axis`.

    Raises:
        TypeError: Logits that are not a real floating array.

    Examples:
        The source post's example: five times the same logits give the same prediction
        with far more confidence.

        >>> import numpy as np
        >>> from smoothce import metrics
        >>> metrics.softmax(np.array([1.5, 1.2, 1.0])).round(4)
        array([0.426 , 0.3156, 0.2584])
        >>> metrics.softmax(5 * np.array([1.5, 1.2, 1.0])).round(4)
        array([0.7662, 0.171 , 0.0629])
    """
    xp = _namespace(logits)
    _check_floating(xp, logits, "logits")
    e = xp.exp(logits - xp.max(logits, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def logit_norm(logits: Array, *, axis: int = -1, centered: bool = False) -> Array:
    r"""Euclidean norm of each example's logit vector, $\lVert z \rVert_2 = \sqrt{\sum_k z_k^2}$.

    With one-hot targets, cross-entropy keeps falling when all logits are scaled up, so
    training tends to inflate this norm; label smoothing gives the loss an optimum at finite
    logits ([why smoothing stops the norm from growing][norm-growth]).

    Args:
        logits: Real floating array with the classes on `axis`, any shape.
        axis: The class axis.
        centered: Measure $\lVert z - \bar z \rVert_2$, with $\bar z$ the mean over the
            classes, instead: it ignores the shift that softmax cannot see.

    Returns:
        One norm per example: the logits' shape without `axis`, in their dtype, library
        and device.

    Raises:
        TypeError: Logits that are not a real floating array.

    Examples:
        >>> import numpy as np
        >>> from smoothce import metrics
        >>> metrics.logit_norm(np.array([[3.0, 4.0], [1.0, 1.0]]))
        array([5.        , 1.41421356])
        >>> metrics.logit_norm(np.array([[3.0, 4.0], [1.0, 1.0]]), centered=True)
        array([0.70710678, 0.        ])
    """
    xp = _namespace(logits)
    _check_floating(xp, logits, "logits")
    if centered:
        logits = logits - xp.mean(logits, axis=axis, keepdims=True)
    return xp.sqrt(xp.sum(logits * logits, axis=axis))


class ReliabilityCurve(NamedTuple):
    r"""Per-bin statistics of a reliability diagram.

    [smoothce.metrics.reliability_curve][] returns it. Bin $m = 1, \dots, M$ holds the
    examples whose confidence lies in $((m-1)/M, m/M]$. Plot `accuracy` against `confidence`:
    a calibrated model lies on the diagonal. Every field is an array in the input's library
    and floating dtype.

    Examples:
        >>> import numpy as np
        >>> from smoothce import metrics
        >>> z = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 1.0]])
        >>> curve = metrics.reliability_curve(z, np.array([0, 1, 1, 1]), n_bins=4)
        >>> curve.edges
        array([0.  , 0.25, 0.5 , 0.75, 1.  ])
        >>> curve.count
        array([0., 0., 1., 3.])
        >>> edges, confidence, accuracy, count = curve  # a named tuple
    """

    edges: Array
    r"""The $M + 1$ bin boundaries $0, 1/M, \dots, 1$, shape `(M + 1,)`."""
    confidence: Array
    r"""The mean confidence $\mathrm{conf}(B_m)$ of each bin's examples, shape `(M,)`; NaN
    for an empty bin."""
    accuracy: Array
    r"""The share $\mathrm{acc}(B_m)$ of each bin's examples whose prediction is right,
    shape `(M,)`; NaN for an empty bin."""
    count: Array
    """The number of examples $|B_m|$ in each bin, shape `(M,)`, floating."""


def reliability_curve(
    logits_or_probs: Array,
    labels: Array,
    n_bins: int = 15,
    *,
    from_logits: bool = True,
    axis: int = -1,
) -> ReliabilityCurve:
    r"""Mean confidence, accuracy and example count per equal-width confidence bin.

    With confidence $c_i = \max_k p_{ik}$ and prediction $\hat y_i = \arg\max_k p_{ik}$,
    bin $B_m$ holds the examples with $c_i \in ((m-1)/M, m/M]$, and

    $$
    \mathrm{conf}(B_m) = \frac{1}{|B_m|} \sum_{i \in B_m} c_i, \qquad
    \mathrm{acc}(B_m) = \frac{1}{|B_m|} \sum_{i \in B_m} \mathbf{1}[\hat y_i = y_i] .
    $$

    [smoothce.metrics.expected_calibration_error][] sums the gaps between the two.

    Args:
        logits_or_probs: Real floating array of logits (`from_logits=True`, the default) or
            probabilities (`from_logits=False`) with the $K$ classes on `axis`, any shape.
        labels: Integer class indices in $[0, K)$ of the first argument's shape without
            `axis`.
        n_bins: The number $M \ge 1$ of equal-width bins on $[0, 1]$.
        from_logits: Whether the first argument holds logits (softmax is applied) or
            probabilities (used as they are).
        axis: The class axis.

    Returns:
        A [ReliabilityCurve][smoothce.metrics.ReliabilityCurve] of arrays in the input's
        library and floating dtype: `edges` of shape `(M + 1,)`, `confidence`, `accuracy`
        and `count` of shape `(M,)`. Empty bins have `count` 0 and NaN `confidence` and
        `accuracy`.

    Raises:
        TypeError: Non-floating scores or non-integer labels.
        ValueError: Shapes that do not fit, `n_bins < 1`, or a label outside $[0, K)$ when
            it can be read (under tracing its example counts as wrong, with NaN
            accuracy sums).

    Examples:
        >>> import numpy as np
        >>> from smoothce import metrics
        >>> z = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 1.0]])
        >>> curve = metrics.reliability_curve(z, np.array([0, 1, 1, 1]), n_bins=2)
        >>> curve.count, curve.accuracy
        (array([0., 4.]), array([ nan, 0.75]))
    """
    xp, conf, correct, n_bins, device = _confidence_and_correct(
        logits_or_probs, labels, n_bins, from_logits, axis
    )
    count, conf_sum, acc_sum = _bin_sums(xp, conf, correct, n_bins, device)
    nonempty = count > 0
    safe = xp.where(nonempty, count, 1.0)
    edges = xp.astype(xp.arange(n_bins + 1, device=device), conf.dtype) / n_bins
    return ReliabilityCurve(
        edges=edges,
        confidence=xp.where(nonempty, conf_sum / safe, xp.nan),
        accuracy=xp.where(nonempty, acc_sum / safe, xp.nan),
        count=count,
    )


def expected_calibration_error(
    logits_or_probs: Array,
    labels: Array,
    n_bins: int = 15,
    *,
    from_logits: bool = True,
    axis: int = -1,
) -> Array:
    r"""Expected calibration error with $M$ equal-width confidence bins (Guo et al. 2017).

    With the bins $B_m$, $\mathrm{acc}$ and $\mathrm{conf}$ of
    [smoothce.metrics.reliability_curve][] and $n$ examples,

    $$
    \mathrm{ECE} = \sum_{m=1}^{M} \frac{|B_m|}{n}
    \,\bigl|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\bigr|
    = \frac{1}{n} \sum_{m=1}^{M} \Bigl|\sum_{i \in B_m} (\mathbf{1}[\hat y_i = y_i] - c_i)\Bigr| .
    $$

    0 is perfectly calibrated; the value lies in $[0, 1]$. It has no value-dependent Python
    branches, so `jax.jit` and `tf.function` can trace it.

    Args:
        logits_or_probs: Real floating array of logits (`from_logits=True`, the default) or
            probabilities (`from_logits=False`) with the $K$ classes on `axis`, any shape.
        labels: Integer class indices in $[0, K)$ of the first argument's shape without
            `axis`.
        n_bins: The number of bins $M \ge 1$ (15 in Guo et al.).
        from_logits: Whether to apply softmax first.
        axis: The class axis.

    Returns:
        The ECE as a 0-d floating array in the input's library (`float(...)` gives the
        number).

    Raises:
        TypeError: As [smoothce.metrics.reliability_curve][].
        ValueError: As [smoothce.metrics.reliability_curve][].

    Examples:
        >>> import numpy as np
        >>> from smoothce import metrics
        >>> z = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 1.0]])
        >>> y = np.array([0, 1, 1, 1])
        >>> round(float(metrics.expected_calibration_error(z, y)), 4)
        0.2278
        >>> p = metrics.softmax(z)
        >>> round(float(metrics.expected_calibration_error(p, y, from_logits=False)), 4)
        0.2278
    """
    xp, conf, correct, n_bins, device = _confidence_and_correct(
        logits_or_probs, labels, n_bins, from_logits, axis
    )
    count, conf_sum, acc_sum = _bin_sums(xp, conf, correct, n_bins, device)
    n = xp.sum(count)
    return xp.sum(xp.abs(acc_sum - conf_sum)) / xp.where(n > 0, n, 1.0)


def fit_temperature(
    logits: Array,
    labels: Array,
    *,
    axis: int = -1,
    bounds: tuple[float, float] = (0.01, 100.0),
    tol: float = 1e-5,
) -> float:
    r"""The temperature $T$ that minimises the negative log-likelihood of $\mathrm{softmax}(z/T)$.

    Temperature scaling (Guo et al. 2017) is the usual post-hoc calibration: fit $T$ on
    held-out data, then use $\mathrm{softmax}(z/T)$ at test time. It changes confidences,
    never the predicted class: $T > 1$ softens an over-confident model, $T < 1$ sharpens an
    under-confident one.

    The NLL is [smoothce.loss][] with $\varepsilon = 0$. As a function of $\beta = 1/T$ it
    is convex (a log-sum-exp minus a linear term), hence unimodal in $\log T$, so a
    golden-section search on $\log T$ within `bounds` finds its global minimum there, to
    within `tol`. This runs eagerly (about 40 loss evaluations) and cannot be traced.

    Args:
        logits: Real floating, finite logits with the classes on `axis`, any shape; at
            least one example.
        labels: Integer class indices of the logits' shape without `axis`.
        axis: The class axis.
        bounds: The search interval `(low, high)` for $T$, $0 < \mathrm{low} <
            \mathrm{high} < \infty$. A result at a bound means the optimum lies outside
            (for example $T \to 0$ when every prediction is right).
        tol: Stopping width of the bracket on $\log T$, > 0.

    Returns:
        $T$ as a Python float.

    Raises:
        TypeError: Non-floating logits, or arrays being traced (under `jax.jit` or
            `tf.function`).
        ValueError: Bad `bounds` or `tol`, no examples, or logits that are not finite.

    Examples:
        >>> import numpy as np
        >>> from smoothce import metrics
        >>> z = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 1.0]])
        >>> y = np.array([0, 1, 1, 1])
        >>> t = metrics.fit_temperature(z, y)
        >>> round(t, 2)
        2.01
        >>> round(float(metrics.expected_calibration_error(z / t, y)), 4)  # from 0.2278
        0.1419
    """
    low, high = (float(b) for b in bounds)
    if not (0 < low < high and math.isfinite(high)):
        raise ValueError(f"bounds must satisfy 0 < low < high < inf, got {bounds!r}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    backend = common_backend(logits, labels)
    xp = backend.namespace(logits)
    _check_floating(xp, logits, "logits")
    if backend.is_traced(logits) or backend.is_traced(labels):
        raise TypeError("fit_temperature needs concrete arrays; it cannot run under jit/tracing")
    if math.prod(tuple(labels.shape)) == 0:
        raise ValueError("fit_temperature needs at least one example, got none")
    if not bool(xp.all(xp.isfinite(logits))):
        raise ValueError("logits must be finite (no NaN or inf) to fit a temperature")

    def nll(log_t: float) -> float:
        return float(_loss(logits * math.exp(-log_t), labels, 0.0, axis=axis))

    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0  # 1/φ
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    # the bracket shrinks by 1/φ per step: bounded, whatever tol (below float64's resolution of
    # log T the bracket stops shrinking, which once made this loop run forever)
    steps = math.ceil(math.log(tol / (b - a)) / math.log(ratio)) if tol < b - a else 0
    for _ in range(min(steps, 200)):
        if fc <= fd:  # the minimum of a unimodal function lies in [a, d]
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    return math.exp((a + b) / 2.0)


def noisy_labels(
    labels: Array,
    rate: float,
    num_classes: int,
    *,
    draws: Array | None = None,
    rng: Any = None,
) -> Array:
    r"""Replace each label, with probability `rate`, by a different class chosen uniformly.

    The source post's "noisy labels" remedy: draw fresh noise for every batch (or epoch),
    so that an example is sometimes trained on a wrong class and the network cannot push
    its confidence on any training example all the way to 1.

    One uniform draw $u \in [0, 1)$ per label decides both things: the label $y$ changes
    when $u < r$ (the `rate`), and then becomes

    $$
    \bigl(y + 1 + \lfloor (u / r)(K - 1) \rfloor\bigr) \bmod K,
    $$

    uniform over the $K - 1$ other classes ($u / r$ is uniform on $[0, 1)$ given $u < r$).

    Args:
        labels: Integer class indices in $[0, K)$, any shape, integer dtype, any supported
            library.
        rate: The probability $r \in [0, 1]$ of changing a label.
        num_classes: $K \ge 2$.
        draws: Uniform draws in $[0, 1)$ of the labels' shape, floating, in the labels'
            library. Pass them to control the randomness yourself (inside `jax.jit`, for
            example). `None`: drawn from `rng`.
        rng: Used when `draws` is `None`, in the labels' library's own terms: a
            `numpy.random.Generator` or an int seed (NumPy and other array-API libraries,
            whose draws are made with NumPy); a `torch.Generator`, or `None` for torch's
            global generator; a `jax.random` key (required for JAX, which has no global
            state); a `tf.random.Generator`, an int seed (a stateless draw) or `None` for
            TensorFlow.

    Returns:
        The new labels: the labels' shape, dtype, library and device.

    Raises:
        TypeError: Non-integer labels, a `rate` that is not a number, non-floating draws.
        ValueError: A `rate` outside $[0, 1]$, `num_classes < 2`, draws of another shape, or
            a label outside $[0, K)$ when it can be read.

    Examples:
        >>> import numpy as np
        >>> from smoothce import metrics
        >>> labels = np.array([0, 1, 2, 0])
        >>> metrics.noisy_labels(labels, 0.5, 3, draws=np.array([0.1, 0.9, 0.3, 0.6]))
        array([1, 1, 1, 0])
        >>> metrics.noisy_labels(labels, 0.5, 3, rng=0)
        array([0, 0, 0, 1])
    """
    backend = common_backend(labels, draws)
    xp = backend.namespace(labels)
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"rate must be a number in [0, 1], got {rate!r}")
    rate = float(rate)
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be a number in [0, 1], got {rate!r}")
    num_classes = check_positive(num_classes, "num_classes", minimum=2)
    _check_label_range(backend, xp, labels, num_classes)
    if draws is None:
        draws = backend.uniform(xp, tuple(labels.shape), rng, labels)
    else:
        if tuple(draws.shape) != tuple(labels.shape):
            raise ValueError(
                f"draws of shape {tuple(draws.shape)} must match labels of shape "
                f"{tuple(labels.shape)}"
            )
        _check_floating(xp, draws, "draws")
    if rate == 0:
        return labels
    index = backend.index_dtype(xp, labels)
    work = xp.astype(labels, index)  # signed, so that uint8 labels can take the sum below
    # u / rate < 1 when the label flips; clamp the rare rounding up to K − 1
    offset = xp.astype((draws / rate) * (num_classes - 1), index)
    offset = xp.where(offset > num_classes - 2, num_classes - 2, offset) + 1
    flipped = (work + offset) % num_classes
    # an unread out-of-range label (under tracing) stays as it is, so the loss sees it
    valid = (work >= 0) & (work < num_classes)
    return xp.astype(xp.where((draws < rate) & valid, flipped, work), labels.dtype)


# --- helpers ---------------------------------------------------------------------------------


def _namespace(x: Any) -> Any:
    return common_backend(x).namespace(x)


def _check_floating(xp: Any, x: Any, name: str) -> None:
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name} must be a real floating array, got dtype {x.dtype}")


def _check_label_range(backend: Backend, xp: Any, labels: Any, k: int) -> None:
    """Labels in [0, k), read when that costs no device synchronisation."""
    if backend.on_host(labels) and math.prod(tuple(labels.shape)) > 0:
        low, high = (int(v) for v in backend.extremes(xp, labels))
        if low < 0 or high >= k:
            bad = low if low < 0 else high
            raise LabelRangeError(f"label {bad} is out of range: labels must lie in [0, {k})")


def _confidence_and_correct(
    scores: Any, labels: Any, n_bins: Any, from_logits: bool, axis: Any
) -> tuple[Any, Any, Any, int, Any]:
    """Flattened confidence c_i and correctness 1[ŷ_i = y_i] (floating; NaN for an unread
    out-of-range label), the namespace, `n_bins` as an int and the device."""
    n_bins = check_positive(n_bins, "n_bins")
    axis = check_index(axis, "axis")
    backend = common_backend(scores, labels)
    xp = backend.namespace(scores)
    _check_floating(xp, scores, "logits_or_probs")
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    ndim = len(scores.shape)
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for an array with {ndim} dimensions")
    scores = xp.moveaxis(scores, axis, -1)
    k = scores.shape[-1]
    if tuple(labels.shape) != tuple(scores.shape[:-1]):
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} must have the scores' shape without the "
            f"class axis, {tuple(scores.shape[:-1])}"
        )
    _check_label_range(backend, xp, labels, k)
    probs = softmax(scores) if from_logits else scores
    probs = xp.reshape(probs, (-1, k))
    conf = xp.max(probs, axis=-1)
    pred = xp.argmax(probs, axis=-1)
    flat = xp.astype(xp.reshape(labels, (-1,)), pred.dtype)
    correct = xp.astype(xp.equal(pred, flat), conf.dtype)
    valid = (flat >= 0) & (flat < k)  # unread bad labels (tracing): NaN, not a number
    # a `where`, not a product: XLA turns (bool → float) · x into a select and drops NaN
    correct = xp.where(valid, correct, xp.nan)
    return xp, conf, correct, n_bins, backend.device(scores)


def _bin_sums(xp: Any, conf: Any, correct: Any, n_bins: int, device: Any) -> tuple[Any, Any, Any]:
    """Per-bin example count, Σ confidence and Σ correct, bins ((m−1)/M, m/M].

    The bin index of c is the number of inner edges m/M (m = 1..M−1) strictly below c, which
    puts a value on an edge into the lower bin, as the half-open intervals require. Summing
    against a one-hot (n, M) matrix avoids scatter-add, which not every library offers.
    """
    dtype = conf.dtype
    inner = xp.astype(xp.arange(1, n_bins, device=device), dtype) / n_bins
    index = xp.sum(xp.astype(xp.expand_dims(conf, axis=-1) > inner, dtype), axis=-1)
    bins = xp.astype(xp.arange(n_bins, device=device), dtype)
    onehot = xp.astype(xp.equal(xp.expand_dims(index, axis=-1), bins), dtype)
    count = xp.sum(onehot, axis=0)
    conf_sum = xp.sum(onehot * xp.expand_dims(conf, axis=-1), axis=0)
    acc_sum = xp.sum(onehot * xp.expand_dims(correct, axis=-1), axis=0)
    return count, conf_sum, acc_sum
