"""The core loss and gradient on every array library (the `xp` fixture) against references."""

from __future__ import annotations

import itertools

import array_api_compat
import numpy as np
import pytest

import smoothce
from tests.backends import to_numpy
from tests.reference import reference

LAYOUTS = {
    # name: (logits shape, class axis)
    "NC": ((5, 4), -1),
    "NCdd": ((3, 4, 2, 3), 1),
}


def _problem(rng, shape, axis, integer, ignore=None):
    logits = rng.normal(size=shape) * 2.0
    k = shape[axis]
    batch = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    if integer:
        labels = rng.integers(0, k, size=batch)
        if ignore is not None:
            labels.reshape(-1)[::3] = ignore  # every third example ignored
        return logits, labels
    probs = rng.dirichlet(np.ones(k), size=batch)
    return logits, np.moveaxis(probs, -1, axis)


def _run(xp, logits, labels, eps, **kw):
    kw = {key: xp.asarray(v) if isinstance(v, np.ndarray) else v for key, v in kw.items()}
    loss, grad = smoothce.loss_and_grad(xp.asarray(logits), xp.asarray(labels), eps, **kw)
    return to_numpy(loss), to_numpy(grad)


MATRIX = [
    (layout, integer, weighted, ignore, reduction)
    for layout, integer, weighted, ignore, reduction in itertools.product(
        LAYOUTS, (True, False), (False, True), (None, 1), ("mean", "sum", "none")
    )
    if integer or ignore is None  # PyTorch has no ignore_index for probability targets
]


@pytest.mark.parametrize(("layout", "integer", "weighted", "ignore", "reduction"), MATRIX)
def test_equals_torch_native(xp, rng, layout, integer, weighted, ignore, reduction):
    """PyTorch's F.cross_entropy(label_smoothing=ε) semantics, float64, every backend."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    shape, axis = LAYOUTS[layout]
    logits, labels = _problem(rng, shape, axis, integer, ignore)
    weight = rng.uniform(0.5, 2.0, size=shape[axis]) if weighted else None
    eps = 0.2

    z = torch.tensor(logits, requires_grad=True)
    native = F.cross_entropy(
        z,
        torch.tensor(labels),
        weight=None if weight is None else torch.tensor(weight),
        ignore_index=-100 if ignore is None else ignore,
        reduction=reduction,
        label_smoothing=eps,
    )
    native.sum().backward()

    kw = {"axis": axis, "reduction": reduction, "ignore_index": ignore}
    if weight is not None:
        kw["weight"] = weight
    loss, grad = _run(xp, logits, labels, eps, **kw)
    np.testing.assert_allclose(loss, native.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spread", ["all", "others"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("integer", [True, False])
def test_equals_reference(xp, rng, spread, masked, integer):
    """`where` and both ε conventions, against the plain per-row reference."""
    shape, axis = LAYOUTS["NCdd"]
    logits, labels = _problem(rng, shape, axis, integer)
    kw = {"axis": axis, "spread": spread}
    if masked:
        where = np.ones((1, 4, 1, 1), bool)
        where[0, 3] = False  # the last class is padding
        kw["where"] = where
        if integer:
            labels = labels % 3
    loss, grad = _run(xp, logits, labels, 0.3, **kw)
    ref_loss, ref_grad = reference(logits, labels, 0.3, **kw)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-13)
    if masked:
        assert np.all(grad[:, 3] == 0.0)


def test_where_equals_dropping_the_classes(xp, rng):
    logits = rng.normal(size=(6, 5))
    labels = rng.integers(0, 3, size=6)
    where = np.array([True, True, True, False, False])
    masked = _run(xp, logits, labels, 0.1, where=where)[0]
    dropped = _run(xp, logits[:, :3], labels, 0.1)[0]
    np.testing.assert_allclose(masked, dropped, rtol=1e-12)


def test_spread_conversion(xp, rng):
    """spread="others" with ε is spread="all" with ε·K/(K−1)."""
    logits, labels = rng.normal(size=(4, 6)), rng.integers(0, 6, size=4)
    others = _run(xp, logits, labels, 0.25, spread="others")
    converted = _run(xp, logits, labels, 0.25 * 6 / 5)
    np.testing.assert_allclose(others[0], converted[0], rtol=1e-12)
    np.testing.assert_allclose(others[1], converted[1], rtol=1e-12, atol=1e-15)


def test_eps_zero_is_plain_cross_entropy(xp, rng):
    logits, labels = rng.normal(size=(7, 5)), rng.integers(0, 5, size=7)
    loss = _run(xp, logits, labels, 0.0, reduction="none")[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=1))
    np.testing.assert_allclose(loss, lse - shifted[np.arange(7), labels], rtol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_eps_number_zero_skips_only_zero_terms(xp, rng, weighted):
    """ε = 0 as a number drops the Σu pass and the spread term; a 0-d array ε = 0 runs them."""
    logits, labels = _problem(rng, (6, 3, 4), 1, integer=True, ignore=2)
    kw = {"axis": 1, "ignore_index": 2, "reduction": "sum"}
    if weighted:
        kw["weight"] = rng.uniform(0.5, 2.0, size=3)
    skipped = _run(xp, logits, labels, 0.0, **kw)
    kw = {key: xp.asarray(v) if isinstance(v, np.ndarray) else v for key, v in kw.items()}
    full = smoothce.loss_and_grad(
        xp.asarray(logits), xp.asarray(labels), xp.asarray(np.float64(0.0)), **kw
    )
    np.testing.assert_allclose(skipped[0], to_numpy(full[0]), rtol=1e-12)
    np.testing.assert_allclose(skipped[1], to_numpy(full[1]), rtol=1e-12, atol=1e-15)


def test_eps_one_is_uniform_target(xp, rng):
    logits, labels = rng.normal(size=(7, 5)), rng.integers(0, 5, size=7)
    loss, grad = _run(xp, logits, labels, 1.0, reduction="none")
    uniform = np.full((7, 5), 0.2)
    loss_u, grad_u = _run(xp, logits, uniform, 0.0, reduction="none")
    np.testing.assert_allclose(loss, loss_u, rtol=1e-12)
    np.testing.assert_allclose(grad, grad_u, atol=1e-14)


def test_seed_keras_formulation(xp, rng):
    """The seed's (1−e)·CE(y, p) + e·CE(uniform, p) is the same function."""
    logits, labels = rng.normal(size=(6, 3)), rng.integers(0, 3, size=6)
    onehot = np.eye(3)[labels]
    log_p = logits - logits.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    seed = 0.9 * -(onehot * log_p).sum(1) + 0.1 * -(log_p / 3).sum(1)
    np.testing.assert_allclose(_run(xp, logits, labels, 0.1, reduction="none")[0], seed)


def test_gradient_matches_finite_differences(xp, rng):
    logits = rng.normal(size=(3, 4))
    labels = rng.integers(0, 4, size=3)
    weight = rng.uniform(0.5, 2, size=4)
    kw = {"weight": weight, "reduction": "mean"}
    grad = _run(xp, logits, labels, 0.15, **kw)[1]
    step = 1e-6
    numeric = np.zeros_like(logits)
    for index in np.ndindex(*logits.shape):
        up, down = logits.copy(), logits.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (
            _run(xp, up, labels, 0.15, **kw)[0] - _run(xp, down, labels, 0.15, **kw)[0]
        ) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_and_grad_equal_loss_and_grad(xp, rng, reduction):
    logits, labels = rng.normal(size=(4, 2, 5)), rng.integers(0, 5, size=(4, 2))
    z, y = xp.asarray(logits), xp.asarray(labels)
    both = smoothce.loss_and_grad(z, y, 0.1, reduction=reduction)
    np.testing.assert_array_equal(
        to_numpy(both[0]), to_numpy(smoothce.loss(z, y, 0.1, reduction=reduction))
    )
    np.testing.assert_array_equal(
        to_numpy(both[1]), to_numpy(smoothce.grad(z, y, 0.1, reduction=reduction))
    )


def test_eps_as_zero_dim_array(xp, rng):
    logits, labels = rng.normal(size=(4, 5)), rng.integers(0, 5, size=4)
    from_float = _run(xp, logits, labels, 0.3)
    from_array = smoothce.loss(xp.asarray(logits), xp.asarray(labels), xp.asarray(np.float64(0.3)))
    np.testing.assert_allclose(to_numpy(from_array), from_float[0], rtol=1e-12)


def test_result_keeps_library_dtype_and_device(xp, rng):
    z = xp.asarray(rng.normal(size=(3, 4)).astype(np.float32))
    y = xp.asarray(np.array([0, 1, 3]))
    loss, grad = smoothce.loss_and_grad(z, y, 0.1)
    assert type(loss).__module__.split(".")[0] == type(z).__module__.split(".")[0]
    assert loss.dtype == z.dtype and grad.dtype == z.dtype
    assert tuple(grad.shape) == tuple(z.shape)
    if xp.name != "tensorflow":
        assert array_api_compat.device(loss) == array_api_compat.device(z)


def test_huge_logits_are_finite(xp, rng):
    logits = np.where(rng.random((6, 10)) < 0.5, 1e4, -1e4) + rng.normal(size=(6, 10))
    labels = rng.integers(0, 10, size=6)
    for dtype in (np.float32, np.float64):
        loss, grad = _run(xp, logits.astype(dtype), labels, 0.1, reduction="none")
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        ref_loss, _ = reference(logits, labels, 0.1, reduction="none")
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)


def test_float16_large_vocabulary_accumulates_in_float32(xp, rng):
    logits = (rng.normal(size=(4, 50_000)) * 3).astype(np.float16)
    if xp.name == "array_api_strict":  # the standard has no float16; strict refuses it
        with pytest.raises(TypeError, match="float16"):
            xp.asarray(logits)
        return
    labels = rng.integers(0, 50_000, size=4)
    loss, grad = smoothce.loss_and_grad(xp.asarray(logits), xp.asarray(labels), 0.1)
    assert loss.dtype == xp.asarray(logits).dtype
    exact, exact_grad = reference(logits.astype(np.float64), labels, 0.1)
    assert np.isfinite(to_numpy(loss))
    np.testing.assert_allclose(to_numpy(loss), exact, rtol=2e-3)
    np.testing.assert_allclose(to_numpy(grad), exact_grad, atol=1e-4)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_float16_any_layout_with_weights_and_ignore(xp, rng, layout):
    """Half precision is widened to float32 in a copy that keeps the input's memory layout;
    the label-position update must land in it whatever that layout is (class axis inside)."""
    if xp.name == "array_api_strict":
        return  # no float16 in the standard (refusal tested above)
    shape, axis = LAYOUTS[layout]
    logits, labels = _problem(rng, shape, axis, integer=True, ignore=1)
    logits = logits.astype(np.float16)
    weight = rng.uniform(0.5, 2.0, size=shape[axis]).astype(np.float16)
    loss, grad = _run(xp, logits, labels, 0.1, axis=axis, weight=weight, ignore_index=1)
    exact, exact_grad = reference(
        logits.astype(np.float64), labels, 0.1, axis=axis, weight=weight, ignore_index=1
    )
    np.testing.assert_allclose(loss, exact, rtol=2e-3)
    np.testing.assert_allclose(grad, exact_grad, atol=2e-3)


def test_bfloat16_where_supported(xp, rng):
    bf16 = getattr(xp.namespace, "bfloat16", None)
    if bf16 is None:  # NumPy and array-api-strict have no bfloat16
        assert xp.name in ("numpy", "array_api_strict")
        return
    logits, labels = rng.normal(size=(8, 300)), rng.integers(0, 300, size=8)
    z = xp.namespace.astype(xp.asarray(logits.astype(np.float32)), bf16)
    loss, grad = smoothce.loss_and_grad(z, xp.asarray(labels), 0.1)
    assert loss.dtype == bf16 and grad.dtype == bf16
    exact, exact_grad = reference(to_numpy(z), labels, 0.1)
    np.testing.assert_allclose(to_numpy(loss), exact, rtol=1e-2)
    np.testing.assert_allclose(to_numpy(grad), exact_grad, rtol=8e-3, atol=1e-5)  # bf16 storage


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy reports the 0/0
def test_all_ignored_mean_is_nan_like_torch(xp):
    logits = np.zeros((3, 4))
    labels = np.full(3, -100)
    loss = _run(xp, logits, labels, 0.1, ignore_index=-100)[0]
    assert np.isnan(loss)
    assert _run(xp, logits, labels, 0.1, ignore_index=-100, reduction="sum")[0] == 0.0


def test_smooth_labels_integer_and_dense(xp, rng):
    labels = rng.integers(0, 4, size=(3, 2))
    dense = to_numpy(smoothce.smooth_labels(xp.asarray(labels), 0.2, num_classes=4))
    expected = 0.8 * np.eye(4)[labels] + 0.05
    np.testing.assert_allclose(dense, expected, rtol=1e-6)
    first_axis = to_numpy(smoothce.smooth_labels(xp.asarray(labels), 0.2, num_classes=4, axis=0))
    np.testing.assert_allclose(first_axis, np.moveaxis(expected, -1, 0), rtol=1e-6)
    probs = rng.dirichlet(np.ones(4), size=3)
    smoothed = to_numpy(smoothce.smooth_labels(xp.asarray(probs), 0.2))
    np.testing.assert_allclose(smoothed, 0.8 * probs + 0.05, rtol=1e-12)
    others = to_numpy(
        smoothce.smooth_labels(xp.asarray(labels), 0.3, num_classes=4, spread="others")
    )
    np.testing.assert_allclose(others.max(-1), 0.7, rtol=1e-6)
    np.testing.assert_allclose(others.min(-1), 0.1, rtol=1e-6)


def test_smooth_labels_feed_the_loss(xp, rng):
    """Dense smoothed targets with ε = 0 reproduce the integer-label loss with ε."""
    logits, labels = rng.normal(size=(5, 4)), rng.integers(0, 4, size=5)
    dense = smoothce.smooth_labels(xp.asarray(labels), 0.1, num_classes=4)
    dense = to_numpy(dense).astype(np.float64)
    np.testing.assert_allclose(_run(xp, logits, dense, 0.0)[0], _run(xp, logits, labels, 0.1)[0])


def test_seed_worked_example():
    """The seed's softmax numbers, as the gradient at ε = 0 minus the one-hot: p = grad + e_y."""
    for logits, expected in (
        ([1.5, 1.2, 1.0], [0.42601251, 0.31559783, 0.25838965]),
        ([7.5, 6.0, 5.0], [0.76615721, 0.17095278, 0.06289001]),
    ):
        g = smoothce.grad(np.array([logits]), np.array([0]), 0.0, reduction="sum")[0]
        np.testing.assert_allclose(g + np.array([1.0, 0, 0]), expected, atol=1e-8)
