"""Calibration metrics: how far a classifier's confidence is from its accuracy.

Every function takes arrays from any library that smoothce supports (NumPy, PyTorch, JAX,
TensorFlow, array-API-strict) and answers in that library, except :func:`fit_temperature`,
which runs a short search on the host and returns a Python float.

Notation: z logits with the K classes on ``axis``, p = softmax(z), confidence
c = max_k p_k, prediction ŷ = argmax_k p_k, y the integer label.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

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


def softmax(logits: Any, *, axis: int = -1) -> Any:
    """p_k = exp(z_k − max z) / Σ_j exp(z_j − max z) along ``axis``.

    Subtracting the maximum changes nothing mathematically (softmax is shift-invariant) and
    keeps ``exp`` from overflowing. ``softmax([1.5, 1.2, 1.0])`` is ``[0.4260, 0.3156, 0.2584]``;
    five times those logits give ``[0.7662, 0.1710, 0.0629]``: scaling the logits up makes the
    output more extreme without changing the predicted class.

    Example:
      >>> import numpy as np
      >>> from smoothce import metrics
      >>> metrics.softmax(np.array([1.5, 1.2, 1.0])).round(4)
      array([0.426 , 0.3156, 0.2584])
    """
    xp = _namespace(logits)
    _check_floating(xp, logits, "logits")
    e = xp.exp(logits - xp.max(logits, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def logit_norm(logits: Any, *, axis: int = -1, centered: bool = False) -> Any:
    """Euclidean norm of each logit vector, ‖z‖₂ = sqrt(Σ_k z_k²), one value per example.

    With one-hot targets, cross-entropy keeps falling when all logits are scaled up, so
    training tends to inflate this norm; label smoothing gives the loss a finite optimum.
    ``centered=True`` measures ‖z − mean(z)‖₂ instead, which ignores the shift that softmax
    cannot see.

    Example:
      >>> import numpy as np
      >>> from smoothce import metrics
      >>> metrics.logit_norm(np.array([[3.0, 4.0]]))
      array([5.])
    """
    xp = _namespace(logits)
    _check_floating(xp, logits, "logits")
    if centered:
        logits = logits - xp.mean(logits, axis=axis, keepdims=True)
    return xp.sqrt(xp.sum(logits * logits, axis=axis))


class ReliabilityCurve(NamedTuple):
    """Per-bin statistics of a reliability diagram, each of shape ``(n_bins,)``.

    Bin m (1-based) holds the examples with confidence in ((m − 1)/M, m/M]; ``edges`` has the
    M + 1 boundaries. Empty bins have ``count`` 0 and NaN ``confidence`` and ``accuracy``.
    """

    edges: Any
    confidence: Any  # mean confidence of the bin's examples
    accuracy: Any  # share of the bin's examples whose prediction is right
    count: Any  # number of examples in the bin (floating)


def reliability_curve(
    logits_or_probs: Any,
    labels: Any,
    n_bins: int = 15,
    *,
    from_logits: bool = True,
    axis: int = -1,
) -> ReliabilityCurve:
    """Mean confidence, accuracy and example count per equal-width confidence bin.

    Args:
      logits_or_probs: logits (``from_logits=True``, the default) or probabilities
        (``from_logits=False``) with the K classes on ``axis``; any leading shape.
      labels: integer class indices, the first argument's shape without ``axis``.
      n_bins: number M of equal-width bins on [0, 1].
      from_logits: whether the first argument holds logits (softmax is applied) or
        probabilities (used as they are).
      axis: the class axis.

    Returns:
      A :class:`ReliabilityCurve` in the input's library.

    Example:
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
    logits_or_probs: Any,
    labels: Any,
    n_bins: int = 15,
    *,
    from_logits: bool = True,
    axis: int = -1,
) -> Any:
    """Expected calibration error (Guo et al. 2017) with M equal-width bins.

    ECE = Σ_m (|B_m| / n) · |acc(B_m) − conf(B_m)|, where B_m holds the examples whose
    confidence c = max_k p_k lies in ((m − 1)/M, m/M], acc is the share of B_m predicted
    right and conf its mean confidence. Equivalently (1/n)·Σ_m |Σ_{i∈B_m} (1[ŷ_i = y_i] − c_i)|.
    0 is perfectly calibrated; the value is in [0, 1].

    Args:
      logits_or_probs: logits (``from_logits=True``, the default) or probabilities
        (``from_logits=False``), K classes on ``axis``, any leading shape.
      labels: integer class indices, the first argument's shape without ``axis``.
      n_bins: number of bins M (15 in Guo et al.).
      from_logits: whether to apply softmax first.
      axis: the class axis.

    Returns:
      A 0-d floating array in the input's library (``float(...)`` gives the number). No
      value-dependent Python branches: it can be traced by ``jax.jit`` or ``tf.function``.

    Example:
      >>> import numpy as np
      >>> from smoothce import metrics
      >>> z = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 1.0]])
      >>> round(float(metrics.expected_calibration_error(z, np.array([0, 1, 1, 1]))), 4)
      0.2278
    """
    xp, conf, correct, n_bins, device = _confidence_and_correct(
        logits_or_probs, labels, n_bins, from_logits, axis
    )
    count, conf_sum, acc_sum = _bin_sums(xp, conf, correct, n_bins, device)
    n = xp.sum(count)
    return xp.sum(xp.abs(acc_sum - conf_sum)) / xp.where(n > 0, n, 1.0)


def fit_temperature(
    logits: Any,
    labels: Any,
    *,
    axis: int = -1,
    bounds: tuple[float, float] = (0.01, 100.0),
    tol: float = 1e-5,
) -> float:
    """The temperature T that minimises the mean negative log-likelihood of softmax(z / T).

    Temperature scaling (Guo et al. 2017) is the usual post-hoc calibration: fit T on held-out
    data, then use softmax(z / T) at test time. It changes confidences, never the predicted
    class. T > 1 softens an over-confident model, T < 1 sharpens an under-confident one.

    The NLL is evaluated with smoothce's own loss (``smoothce.loss(z / T, y, eps=0)``). As a
    function of β = 1/T it is convex (a log-sum-exp minus a linear term), hence unimodal in
    log T, so a golden-section search on log T within ``bounds`` finds the global minimum
    there to within ``tol`` (in log T). This runs eagerly (about 40 loss evaluations) and
    cannot be traced.

    Args:
      logits: floating logits with the classes on ``axis``.
      labels: integer class indices.
      axis: the class axis.
      bounds: the search interval for T, ``0 < low < high``. A result at a bound means the
        optimum lies outside it (for example T → 0 when every prediction is right).
      tol: stopping width of the bracket on log T.

    Returns:
      T as a Python float.

    Example:
      >>> import numpy as np
      >>> from smoothce import metrics
      >>> z = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 1.0]])
      >>> round(metrics.fit_temperature(z, np.array([0, 1, 1, 1])), 2)
      2.01
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
    labels: Any,
    rate: float,
    num_classes: int,
    *,
    draws: Any = None,
    rng: Any = None,
) -> Any:
    """Replace each label, with probability ``rate``, by a different class chosen uniformly.

    This is the seed's "noisy labels" remedy: draw fresh noise for every batch (or epoch), so
    that a sample is sometimes trained on a wrong class and the network cannot push its
    confidence on any training example all the way to 1.

    One uniform draw u ∈ [0, 1) per label decides both things: the label changes when u < rate,
    and then becomes (y + 1 + ⌊(u / rate)·(K − 1)⌋) mod K, uniform over the K − 1 other classes
    (u / rate is uniform on [0, 1) given u < rate).

    Args:
      labels: integer class indices in [0, K), any shape, any supported library.
      rate: probability of changing a label, in [0, 1].
      num_classes: K ≥ 2.
      draws: optional uniform [0, 1) draws of the labels' shape, in the labels' library. Pass
        them to control the randomness yourself (for example inside ``jax.jit``).
      rng: used when ``draws`` is None, in the labels' library's own terms: a
        ``numpy.random.Generator`` or an int seed (NumPy, and any other array-API library,
        whose draws are made with NumPy); a ``torch.Generator`` or None for torch's global
        generator; a ``jax.random`` key (required for JAX, which has no global state); a
        ``tf.random.Generator``, an int seed (stateless draw) or None for TensorFlow.

    Returns:
      New labels, same shape, dtype and library as ``labels``.

    Example:
      >>> import numpy as np
      >>> from smoothce import metrics
      >>> metrics.noisy_labels(np.array([0, 1, 2, 0]), 0.5, 3, rng=0)
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
    out-of-range label), the namespace, ``n_bins`` as an int and the device."""
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
