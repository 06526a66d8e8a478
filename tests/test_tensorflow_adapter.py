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
from tests.reference import reference  # noqa: E402

EPS = 0.1


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


# float64 in every mode, every layout and dtype eagerly: tests/test_tf_conformance.py
@pytest.mark.parametrize(("mode", "dtype"), [("function", "float32"), ("xla", "float32")])
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


@pytest.mark.parametrize("mode", ["function", "xla"])
@pytest.mark.parametrize("axis", [1])
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


# ---- z_loss and softcap (PaLM's z-loss, Gemma 2's soft-cap) against tests/reference.py --------


def _reference_and_grads(logits, labels, eps, weights, axis, **terms):
    """Per-example losses and the derivatives of Σ w·L w.r.t. the logits and (probability
    labels) the labels, in float64 from the independent reference. The loss is affine in the
    labels, so adding 1 to class c of every row changes L_n by exactly ∂L_n/∂y_{n,c}."""
    value, grad = reference(logits, labels, eps, axis=axis, reduction="none", **terms)
    w = np.expand_dims(weights, axis)
    d_labels = None
    if labels.dtype.kind == "f":
        k = logits.shape[axis]
        column = [k if i == axis % logits.ndim else 1 for i in range(logits.ndim)]
        columns = []
        for c in range(k):
            shifted, _ = reference(
                logits,
                labels + np.eye(k)[c].reshape(column),
                eps,
                axis=axis,
                reduction="none",
                **terms,
            )
            columns.append(shifted - value)
        d_labels = np.stack(columns, axis=axis) * w
    return value, grad * w, d_labels


@pytest.mark.parametrize(
    ("mode", "integer"), [("eager", True), ("eager", False), ("function", True), ("xla", False)]
)
def test_z_loss_and_softcap_match_reference(rng, mode, integer):
    """Values, logits' and labels' gradients (tf.GradientTape) eagerly, in tf.function and
    through XLA (in a graph the core is compiled either way); dense labels with the classes
    first."""
    k, eps, terms = 5, 0.15, {"z_loss": 1e-2, "softcap": 3.0}
    axis = -1 if integer else 0
    logits = rng.normal(size=(4, k) if integer else (k, 4)) * 4
    labels = rng.integers(0, k, size=4) if integer else rng.dirichlet(np.ones(k), size=4).T
    weights = rng.uniform(0.5, 2.0, size=4)

    def fn(y, z):
        if integer:
            return stf.sparse_softmax_cross_entropy_with_logits(y, z, label_smoothing=eps, **terms)
        return stf.softmax_cross_entropy_with_logits(y, z, axis, label_smoothing=eps, **terms)

    got = _compiled(lambda z, y, w: _loss_and_grads(fn, z, y, w), mode)(
        tf.constant(logits), tf.constant(labels), tf.constant(weights)
    )
    want = _reference_and_grads(logits, labels, eps, weights, axis, **terms)
    for name, a, b in zip(("value", "logits' grad", "labels' grad"), got, want, strict=True):
        if b is None:
            assert a is None
            continue
        assert a.dtype == tf.float64
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("terms", [{"z_loss": 0.05}, {"softcap": 1.5}])
def test_z_loss_or_softcap_alone_float32(rng, terms):
    logits = rng.normal(size=(6, 7)) * 3
    labels = rng.integers(0, 7, size=6)
    z = tf.constant(logits, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = stf.sparse_softmax_cross_entropy_with_logits(labels, z, **terms)
        total = tf.reduce_sum(value)
    want, want_grad = reference(logits, labels, 0.1, reduction="none", **terms)
    assert value.dtype == tf.float32
    np.testing.assert_allclose(value.numpy(), want, rtol=2e-6)
    np.testing.assert_allclose(tape.gradient(total, z).numpy(), want_grad, atol=2e-6)


@pytest.mark.parametrize(
    ("name", "bad", "error"),
    [
        ("z_loss", -1.0, ValueError),
        ("z_loss", float("nan"), ValueError),
        ("z_loss", float("inf"), ValueError),
        ("z_loss", "x", TypeError),
        ("softcap", 0.0, ValueError),
        ("softcap", -2.0, ValueError),
        ("softcap", float("nan"), ValueError),
        ("softcap", True, TypeError),
    ],
)
def test_bad_z_loss_and_softcap_raise(name, bad, error):
    logits = tf.zeros((2, 3))
    with pytest.raises(error, match=name):
        stf.sparse_softmax_cross_entropy_with_logits([0, 1], logits, **{name: bad})
    with pytest.raises(error, match=name):
        stf.softmax_cross_entropy_with_logits(tf.ones((2, 3)) / 3, logits, **{name: bad})
    with pytest.raises(error, match=name):  # in a graph too: checked when traced
        tf.function(
            lambda z: stf.sparse_softmax_cross_entropy_with_logits([0, 1], z, **{name: bad})
        )(logits)


def test_z_loss_and_softcap_second_order(rng):
    """Gradients of gradients (nested tapes, eagerly) with z_loss and softcap equal those of
    the loss written by definition in TensorFlow ops, w.r.t. the logits and dense labels."""
    k, eps, lam, cap = 5, 0.1, 1e-2, 3.0
    logits = tf.constant(rng.normal(size=(4, k)) * 3)
    index = tf.constant(rng.integers(0, k, size=4))
    probs = tf.constant(rng.dirichlet(np.ones(k), size=4))

    def definition(y, z):
        capped = cap * tf.tanh(z / cap)
        lse = tf.reduce_logsumexp(capped, axis=-1)
        q = y * (1 - eps) + eps / k
        return -tf.reduce_sum(q * tf.nn.log_softmax(capped), axis=-1) + lam * lse**2

    def grad_of_squared_grad(fn, y, z):
        with tf.GradientTape(persistent=True) as outer:
            outer.watch([z, y]) if y.dtype.is_floating else outer.watch(z)
            with tf.GradientTape() as inner:
                inner.watch(z)
                total = tf.reduce_sum(fn(y, z))
            g = inner.gradient(total, z)
            squared = tf.reduce_sum(g * g)
        d_y = outer.gradient(squared, y) if y.dtype.is_floating else None
        return outer.gradient(squared, z), d_y

    terms = {"label_smoothing": eps, "z_loss": lam, "softcap": cap}
    dense = grad_of_squared_grad(
        lambda y, z: stf.softmax_cross_entropy_with_logits(y, z, **terms), probs, logits
    )
    sparse = grad_of_squared_grad(
        lambda y, z: stf.sparse_softmax_cross_entropy_with_logits(y, z, **terms), index, logits
    )
    want = grad_of_squared_grad(definition, probs, logits)
    want_sparse = grad_of_squared_grad(definition, tf.one_hot(index, k, dtype=tf.float64), logits)
    np.testing.assert_allclose(dense[0].numpy(), want[0].numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dense[1].numpy(), want[1].numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(sparse[0].numpy(), want_sparse[0].numpy(), rtol=1e-10, atol=1e-13)
