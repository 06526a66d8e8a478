"""smoothce.tensorflow against tf.nn with smoothed labels: values, gradients, modes, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import smoothce.tensorflow as stf  # noqa: E402

EPS = 0.1
MODES = ["eager", "function", "xla"]


def _compiled(fn, mode):
    if mode == "eager":
        return fn
    return tf.function(fn, jit_compile=(mode == "xla"))


def _smoothed(onehot, eps, axis):
    """Dense smoothed targets for the tf.nn reference, written here from the definition."""
    k = onehot.shape[axis]
    return onehot * (1.0 - eps) + eps / k


def _onehot(labels, k, axis):
    return np.moveaxis(np.eye(k)[labels], -1, axis)


def _loss_and_grads(fn, logits, labels, weights):
    """Σ weights·fn(labels, logits) and its gradients w.r.t. logits and labels."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        if labels.dtype.is_floating:
            tape.watch(labels)
        per_example = fn(labels, logits)
        total = tf.reduce_sum(per_example * weights)
    d_labels = tape.gradient(total, labels) if labels.dtype.is_floating else None
    return per_example, tape.gradient(total, logits), d_labels


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sparse_matches_tf_nn(rng, mode, dtype):
    k = 7
    logits = tf.constant(rng.normal(size=(4, 3, k)) * 3, dtype=dtype)
    labels = tf.constant(rng.integers(0, k, size=(4, 3)), dtype=tf.int32)
    weights = tf.constant(rng.uniform(0.5, 2.0, size=(4, 3)), dtype=dtype)
    smoothed = tf.constant(_smoothed(_onehot(labels.numpy(), k, -1), EPS, -1), dtype=dtype)

    ours = _compiled(
        lambda z, y, w: _loss_and_grads(
            lambda a, b: stf.sparse_softmax_cross_entropy_with_logits(a, b, label_smoothing=EPS),
            z,
            y,
            w,
        )[:2],
        mode,
    )
    native = _compiled(
        lambda z, y, w: _loss_and_grads(
            lambda a, b: tf.nn.softmax_cross_entropy_with_logits(a, b), z, y, w
        )[:2],
        mode,
    )
    value, grad = ours(logits, labels, weights)
    ref_value, ref_grad = native(logits, smoothed, weights)
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert value.dtype == logits.dtype and grad.dtype == logits.dtype
    assert value.shape == (4, 3)
    np.testing.assert_allclose(value.numpy(), ref_value.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(grad.numpy(), ref_grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis", [-1, 1])
def test_dense_matches_tf_nn(rng, mode, axis):
    k = 5
    shape = (3, k, 4) if axis == 1 else (3, 4, k)
    logits = tf.constant(rng.normal(size=shape) * 2, dtype=tf.float64)
    probs = np.moveaxis(rng.dirichlet(np.ones(k), size=(3, 4)), -1, axis % 3)
    labels = tf.constant(probs, dtype=tf.float64)
    weights = tf.constant(rng.uniform(0.5, 2.0, size=(3, 4)), dtype=tf.float64)

    def ours(z, y, w):
        return _loss_and_grads(
            lambda a, b: stf.softmax_cross_entropy_with_logits(a, b, axis, label_smoothing=EPS),
            z,
            y,
            w,
        )

    def native(z, y, w):
        # the reference smooths inside, so its labels' gradient is w.r.t. the raw labels too
        return _loss_and_grads(
            lambda a, b: tf.nn.softmax_cross_entropy_with_logits(
                _smoothed(a, EPS, axis), b, axis=axis
            ),
            z,
            y,
            w,
        )

    got = _compiled(ours, mode)(logits, labels, weights)
    want = _compiled(native, mode)(logits, labels, weights)
    for name, a, b in zip(("value", "logits' grad", "labels' grad"), got, want, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)


def test_sparse_equals_dense_and_zero_smoothing_equals_tf_nn(rng):
    k = 6
    logits = tf.constant(rng.normal(size=(5, k)) * 4, dtype=tf.float32)
    labels = tf.constant(rng.integers(0, k, size=5), dtype=tf.int64)
    onehot = tf.one_hot(labels, k, dtype=tf.float32)
    for eps in (0.0, 0.1, 1.0):
        sparse = stf.sparse_softmax_cross_entropy_with_logits(labels, logits, label_smoothing=eps)
        dense = stf.softmax_cross_entropy_with_logits(onehot, logits, label_smoothing=eps)
        np.testing.assert_allclose(sparse.numpy(), dense.numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        stf.sparse_softmax_cross_entropy_with_logits(labels, logits, label_smoothing=0.0).numpy(),
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits).numpy(),
        rtol=1e-6,
    )


def test_second_order_matches_tf_nn(rng):
    """TF differentiates the core's gradient ops, so Hessian-vector products work too."""
    k = 4
    logits = tf.constant(rng.normal(size=(3, k)), dtype=tf.float64)
    labels = tf.constant(rng.integers(0, k, size=3))
    smoothed = tf.constant(_smoothed(np.eye(k)[labels.numpy()], EPS, -1))

    def hvp(fn):
        with tf.GradientTape() as outer:
            outer.watch(logits)
            with tf.GradientTape() as inner:
                inner.watch(logits)
                total = tf.reduce_sum(fn())
            g = inner.gradient(total, logits)
            squared = tf.reduce_sum(g * g)
        return outer.gradient(squared, logits).numpy()

    ours = hvp(
        lambda: stf.sparse_softmax_cross_entropy_with_logits(labels, logits, label_smoothing=EPS)
    )
    native = hvp(lambda: tf.nn.softmax_cross_entropy_with_logits(smoothed, logits))
    np.testing.assert_allclose(ours, native, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_half_precision_keeps_dtype_and_accuracy(rng, dtype):
    k = 10
    logits32 = tf.constant(rng.normal(size=(6, k)) * 3, dtype=tf.float32)
    logits = tf.cast(logits32, dtype)
    labels = tf.constant(rng.integers(0, k, size=6))
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = stf.sparse_softmax_cross_entropy_with_logits(labels, logits, label_smoothing=EPS)
        total = tf.reduce_sum(value)
    grad = tape.gradient(total, logits)
    assert value.dtype == dtype and grad.dtype == dtype
    # reference: float32 on the same (rounded) logits
    exact = stf.sparse_softmax_cross_entropy_with_logits(
        labels, tf.cast(logits, tf.float32), label_smoothing=EPS
    )
    tol = 1e-2 if dtype == tf.float16 else 3e-2
    np.testing.assert_allclose(tf.cast(value, tf.float32).numpy(), exact.numpy(), rtol=tol)
    assert np.all(np.isfinite(tf.cast(grad, tf.float32).numpy()))


def test_unknown_batch_size_and_tensor_smoothing(rng):
    k = 5
    eps_var = tf.Variable(0.2)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None, k], tf.float32),
        ]
    )
    def per_example(y, z):
        return stf.sparse_softmax_cross_entropy_with_logits(y, z, label_smoothing=eps_var)

    logits = rng.normal(size=(3, k)).astype("float32")
    labels = np.array([0, 4, 2], dtype="int32")
    got = per_example(labels, logits).numpy()
    want = stf.sparse_softmax_cross_entropy_with_logits(labels, logits, label_smoothing=0.2).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    eps_var.assign(0.0)  # the traced function reads the variable afresh
    np.testing.assert_allclose(
        per_example(labels, logits).numpy(),
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits).numpy(),
        rtol=1e-6,
    )


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "x", None])
def test_bad_label_smoothing_raises(bad):
    logits = tf.zeros((2, 3))
    error = ValueError if isinstance(bad, float) else TypeError  # a wrong value, a wrong type
    with pytest.raises(error, match="label_smoothing"):
        stf.sparse_softmax_cross_entropy_with_logits([0, 1], logits, label_smoothing=bad)
    with pytest.raises(error, match="label_smoothing"):
        stf.softmax_cross_entropy_with_logits(tf.ones((2, 3)) / 3, logits, label_smoothing=bad)
    if isinstance(bad, float):
        with pytest.raises(ValueError, match="label_smoothing"):
            stf.sparse_softmax_cross_entropy_with_logits(
                [0, 1], logits, label_smoothing=tf.constant(bad)
            )


def test_label_smoothing_tensor_must_be_a_scalar():
    logits = tf.zeros((2, 3))
    with pytest.raises(ValueError, match=r"label_smoothing must be a scalar.*\(2,\)"):
        stf.sparse_softmax_cross_entropy_with_logits(
            [0, 1], logits, label_smoothing=tf.constant([0.1, 0.2])
        )

    @tf.function
    def traced(eps):  # the rank is static, so a graph refuses it as well
        return stf.sparse_softmax_cross_entropy_with_logits([0, 1], logits, label_smoothing=eps)

    with pytest.raises(ValueError, match="label_smoothing must be a scalar"):
        traced(tf.constant([0.1, 0.2]))


def test_out_of_range_label_raises_eagerly_and_is_nan_when_traced():
    logits = tf.zeros((3, 4))
    labels = tf.constant([0, 4, 1])
    with pytest.raises(ValueError, match="label 4 is out of range"):
        stf.sparse_softmax_cross_entropy_with_logits(labels, logits)
    for jit in (False, True):
        traced = tf.function(stf.sparse_softmax_cross_entropy_with_logits, jit_compile=jit)
        value = traced(labels, logits).numpy()
        assert np.isnan(value[1]) and np.all(np.isfinite(value[[0, 2]]))


def test_wrong_inputs_raise_clear_errors():
    logits = tf.zeros((2, 3))
    with pytest.raises(TypeError, match="sparse_softmax_cross_entropy_with_logits"):
        stf.softmax_cross_entropy_with_logits(tf.constant([0, 1]), logits)
    with pytest.raises(TypeError, match="integer class indices"):
        stf.sparse_softmax_cross_entropy_with_logits(tf.ones((2, 3)), logits)
    with pytest.raises(TypeError, match="floating dtype"):
        stf.sparse_softmax_cross_entropy_with_logits([0, 1], tf.zeros((2, 3), tf.int32))
    with pytest.raises(ValueError, match="shape"):
        stf.sparse_softmax_cross_entropy_with_logits([0, 1, 2], logits)
    with pytest.raises(ValueError, match="shape"):
        stf.softmax_cross_entropy_with_logits(tf.ones((2, 4)) / 4, logits)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        stf.softmax_cross_entropy_with_logits(tf.ones((2, 3)) / 3, logits, axis=2)

    @tf.function(input_signature=[tf.TensorSpec([2, None], tf.float32)])
    def unknown_classes(z):
        return stf.sparse_softmax_cross_entropy_with_logits([0, 1], z)

    with pytest.raises(ValueError, match="statically known"):
        unknown_classes(logits)


def test_name_scope_and_keyword_call():
    @tf.function
    def named(y, z):
        return stf.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=z, label_smoothing=0.1, name="my_loss"
        )

    graph = named.get_concrete_function(
        tf.TensorSpec([2], tf.int32), tf.TensorSpec([2, 3], tf.float32)
    ).graph
    assert any(op.name.startswith("my_loss") for op in graph.get_operations())


def test_mirrored_strategy_on_two_logical_cpus():
    script = Path(__file__).with_name("tf_mirrored_check.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["loss_diff"] < 1e-6 and result["grad_diff"] < 1e-6
    history = result["keras_history"]
    assert all(np.isfinite(history)) and history[-1] < history[0]
    assert result["keras_evaluate_vs_native"] < 1e-5
