"""Property tests: smoothce.tensorflow equals tf.nn on smoothed dense labels, values and
gradients, over random shapes, class axes, ε, dtypes and labels (one-hot or soft); with z_loss
and softcap it equals the float64 reference (tests/reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")

import smoothce.tensorflow as stf  # noqa: E402
from tests.reference import reference  # noqa: E402

TOL = {"float32": 1e-5, "float64": 1e-11}


@st.composite
def cases(draw):
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    axis = draw(st.integers(-rank, rank - 1))
    eps = draw(st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0)))
    dtype = draw(st.sampled_from(sorted(TOL)))
    soft = draw(st.booleans())
    sparse = draw(st.booleans()) and axis in (-1, rank - 1) and not soft
    seed = draw(st.integers(0, 2**16))
    return shape, axis, eps, dtype, soft, sparse, seed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_matches_tf_nn_on_smoothed_labels(case):
    shape, axis, eps, dtype, soft, sparse, seed = case
    rng = np.random.default_rng(seed)
    k = shape[axis]
    batch = shape[: axis % len(shape)] + shape[axis % len(shape) + 1 :]
    index = rng.integers(0, k, size=batch)
    rows = rng.dirichlet(np.ones(k), size=batch) if soft else np.eye(k)[index]
    labels = tf.constant(np.moveaxis(rows, -1, axis), dtype=dtype)
    logits = tf.constant(rng.normal(size=shape) * 3, dtype=dtype)
    weights = tf.constant(rng.uniform(0.5, 2.0, size=batch), dtype=dtype)

    def value_and_grads(fn):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([logits, labels])
            value = fn()
            total = tf.reduce_sum(value * weights)
        return value, tape.gradient(total, logits), tape.gradient(total, labels)

    def native():  # smoothed inside the tape: the labels' gradient is w.r.t. the raw labels
        smoothed = labels * (1 - eps) + eps / k  # tf.nn's axis must be −1 or non-negative
        return tf.nn.softmax_cross_entropy_with_logits(smoothed, logits, axis % len(shape))

    want = value_and_grads(native)
    got = value_and_grads(
        lambda: stf.softmax_cross_entropy_with_logits(labels, logits, axis, label_smoothing=eps)
    )
    if sparse:
        y = tf.constant(index, tf.int32)
        value, grad, _ = value_and_grads(
            lambda: stf.sparse_softmax_cross_entropy_with_logits(y, logits, label_smoothing=eps)
        )
        got_sparse = (value, grad, want[2])
    for result in (got, got_sparse) if sparse else (got,):
        assert result[0].dtype == want[0].dtype and result[0].shape == want[0].shape
        for name, a, b in zip(("value", "d_logits", "d_labels"), result, want, strict=True):
            np.testing.assert_allclose(
                a.numpy(), b.numpy(), rtol=TOL[dtype], atol=TOL[dtype], err_msg=name
            )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cases(),
    st.sampled_from([0.0, 1e-4, 0.05]),  # z_loss
    st.one_of(st.none(), st.floats(0.5, 30.0)),  # softcap
)
def test_z_loss_and_softcap_match_reference(case, z_loss, softcap):
    shape, axis, eps, _, soft, sparse, seed = case
    rng = np.random.default_rng(seed)
    k = shape[axis]
    batch = shape[: axis % len(shape)] + shape[axis % len(shape) + 1 :]
    index = rng.integers(0, k, size=batch)
    rows = rng.dirichlet(np.ones(k), size=batch) if soft else np.eye(k)[index]
    dense = np.moveaxis(rows, -1, axis)
    z = rng.normal(size=shape) * 5
    terms = {"z_loss": z_loss, "softcap": softcap}
    want, want_grad = reference(z, dense, eps, axis=axis, reduction="none", **terms)
    logits = tf.constant(z)
    calls = [
        lambda: stf.softmax_cross_entropy_with_logits(
            tf.constant(dense), logits, axis, label_smoothing=eps, **terms
        )
    ]
    if sparse:
        calls.append(
            lambda: stf.sparse_softmax_cross_entropy_with_logits(
                tf.constant(index), logits, label_smoothing=eps, **terms
            )
        )
    for call in calls:
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = call()
            total = tf.reduce_sum(value)
        np.testing.assert_allclose(value.numpy(), want, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            tape.gradient(total, logits).numpy(), want_grad, rtol=1e-10, atol=1e-12
        )
