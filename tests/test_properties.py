"""Properties that hold for any input, checked with hypothesis on every backend."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import smoothce
from tests.backends import to_numpy

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    # `xp` only selects a library; nothing in it is reset between examples
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@st.composite
def problems(draw):
    n = draw(st.integers(1, 5))
    k = draw(st.integers(2, 7))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([0.1, 1.0, 10.0, 100.0]))
    logits = rng.normal(size=(n, k)) * scale
    labels = rng.integers(0, k, size=n)
    eps = draw(st.floats(0.0, 1.0))
    shift = draw(st.floats(-1e3, 1e3))
    return logits, labels, eps, shift


def _loss_grad(xp, logits, labels, eps, **kw):
    loss, grad = smoothce.loss_and_grad(xp.asarray(logits), xp.asarray(labels), eps, **kw)
    return to_numpy(loss), to_numpy(grad)


@SETTINGS
@given(problem=problems())
def test_shift_invariance_per_row(xp, problem):
    logits, labels, eps, shift = problem
    offsets = np.linspace(-1.0, 1.0, len(logits))[:, None] * shift  # a different shift per row
    base = _loss_grad(xp, logits, labels, eps, reduction="none")
    moved = _loss_grad(xp, logits + offsets, labels, eps, reduction="none")
    np.testing.assert_allclose(moved[0], base[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(moved[1], base[1], rtol=1e-9, atol=1e-12)


@SETTINGS
@given(problem=problems())
def test_unweighted_gradient_rows_sum_to_zero(xp, problem):
    logits, labels, eps, _ = problem
    grad = _loss_grad(xp, logits, labels, eps, reduction="none")[1]
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)


@SETTINGS
@given(problem=problems())
def test_loss_is_at_least_the_entropy_of_the_target(xp, problem):
    """Gibbs' inequality: cross-entropy H(q, p) ≥ H(q), equal only when p = q."""
    logits, labels, eps, _ = problem
    loss = _loss_grad(xp, logits, labels, eps, reduction="none")[0]
    q = to_numpy(smoothce.smooth_labels(xp.asarray(labels), eps, num_classes=logits.shape[1]))
    q = q.astype(np.float64)
    entropy = -np.sum(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0), axis=1)
    assert np.all(loss >= entropy - 1e-6 * (1 + np.abs(entropy)))


@SETTINGS
@given(problem=problems())
def test_probability_labels_agree_with_integer_labels(xp, problem):
    logits, labels, eps, _ = problem
    onehot = np.eye(logits.shape[1])[labels]
    sparse = _loss_grad(xp, logits, labels, eps)
    dense = _loss_grad(xp, logits, onehot, eps)
    np.testing.assert_allclose(dense[0], sparse[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dense[1], sparse[1], rtol=1e-10, atol=1e-13)
