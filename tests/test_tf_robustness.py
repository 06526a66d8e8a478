"""Robustness of smoothce.tensorflow (issues #14 and #15): bad inputs never give a finite wrong
number, variables work, and nothing reads device values where that would synchronise.

Eagerly, labels in host memory are read and checked (ValueError); inside tf.function, XLA and
TF1 graphs nothing is read: a bad label makes its example's loss and gradient row NaN, a
traced ε outside [0, 1] makes every loss NaN.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import smoothce  # noqa: E402
import smoothce.tensorflow as stf  # noqa: E402
from smoothce._backends.tensorflow import TensorFlowBackend  # noqa: E402
from smoothce.internal import LossSpec  # noqa: E402

MODES = ["eager", "function", "xla", "tf1"]


def _run(fn, args, *more, mode):
    """fn(*args) (NumPy arrays in, NumPy arrays out) eagerly, traced, compiled or in TF1;
    with ``more`` argument tuples, a list of results from one trace (one graph)."""
    runs = [args, *more]
    if mode == "tf1":
        graph = tf.Graph()
        with graph.as_default():
            holders = [tf.compat.v1.placeholder(tf.as_dtype(a.dtype), a.shape) for a in args]
            out = fn(*holders)
            with tf.compat.v1.Session(graph=graph) as session:
                results = [session.run(out, dict(zip(holders, run, strict=True))) for run in runs]
    else:
        if mode != "eager":
            fn = tf.function(fn, jit_compile=mode == "xla", autograph=False)
        results = [
            tf.nest.map_structure(lambda t: t.numpy(), fn(*(tf.constant(a) for a in run)))
            for run in runs
        ]
    return results if more else results[0]


def _with_grad(loss_fn):
    """(z, y, ε) -> (per-example or reduced loss, its gradient w.r.t. z) through a tape."""

    def run(z, y, eps):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss_fn(z, y, eps)
            total = tf.reduce_sum(value)
        return value, tape.gradient(total, z)

    return run


ENTRY_POINTS = {
    "sparse": lambda z, y, e: stf.sparse_softmax_cross_entropy_with_logits(y, z, label_smoothing=e),
    "keras seam": lambda z, y, e: stf.differentiable_loss(
        LossSpec(e, -1, ignore_index=-1, reduction="none"), z, y
    ),
    "smoothce.loss none": lambda z, y, e: smoothce.loss(z, y, e, reduction="none"),
    "smoothce.loss mean": lambda z, y, e: smoothce.loss(z, y, e),
}


# ---------------------------------------------------------------- ε = 0 with a −inf logit


@pytest.mark.parametrize("mode", MODES)
def test_eps_zero_tensor_with_a_minus_inf_logit_is_finite(mode):
    """A class masked the usual way (−inf logit, not the label) with ε = 0 given as a tensor:
    the finite plain cross-entropy, not NaN from 0·(−inf). (tf.nn's dense op gives NaN.)"""
    logits = np.array([[2.0, -np.inf, 0.5], [-np.inf, 1.0, 0.0]], "float32")
    labels = np.array([0, 2], "int32")
    onehot = np.eye(3, dtype="float32")[labels]
    eps = np.array(0.0, "float32")

    def both(z, y, p, e):
        sparse = _with_grad(
            lambda a, b, c: stf.sparse_softmax_cross_entropy_with_logits(b, a, label_smoothing=c)
        )(z, y, e)
        dense = _with_grad(
            lambda a, b, c: stf.softmax_cross_entropy_with_logits(b, a, label_smoothing=c)
        )(z, p, e)
        return sparse, dense

    finite = logits[np.isfinite(logits)].reshape(2, 2)
    want = np.log(np.exp(finite).sum(-1)) - logits[[0, 1], labels]
    for value, grad in _run(both, (logits, labels, onehot, eps), mode=mode):
        np.testing.assert_allclose(value, want, rtol=1e-6)
        assert np.all(np.isfinite(grad)) and grad[0, 1] == 0 and grad[1, 0] == 0
    native = tf.nn.softmax_cross_entropy_with_logits(onehot, logits).numpy()
    assert np.all(np.isnan(native))  # pinned: tf.nn's dense op


# ---------------------------------------------------------------- traced: NaN, never a number


@pytest.mark.parametrize("mode", ["function", "xla", "tf1"])
def test_traced_bad_label_gives_nan_loss_and_nan_gradient_row(mode):
    logits = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    labels = np.array([0, 9, 1], "int32")

    def every(z, y, e):
        return {name: _with_grad(fn)(z, y, e) for name, fn in ENTRY_POINTS.items()}

    results = _run(every, (logits, labels, np.float32(0.1)), mode=mode)
    for name, (value, grad) in results.items():
        if value.ndim:
            assert np.isnan(value[1]) and np.all(np.isfinite(value[[0, 2]])), name
            assert np.all(np.isfinite(grad[[0, 2]])), name
        else:
            assert np.isnan(value), name
        assert np.all(np.isnan(grad[1])), name


@pytest.mark.parametrize("mode", ["function", "xla", "tf1"])
def test_traced_eps_outside_the_unit_interval_gives_nan(mode):
    logits = np.zeros((2, 3), "float32")
    labels, probs = np.array([0, 1], "int32"), np.full((2, 3), 1 / 3, "float32")

    def every(z, y, p, e):
        dense = _with_grad(
            lambda a, b, c: stf.softmax_cross_entropy_with_logits(b, a, label_smoothing=c)
        )(z, p, e)
        return [_with_grad(fn)(z, y, e) for fn in ENTRY_POINTS.values()] + [dense]

    runs = [(logits, labels, probs, np.float32(eps)) for eps in (-0.5, 1.5)]
    for results in _run(every, *runs, mode=mode):
        for value, grad in results:
            assert np.all(np.isnan(value)) and np.all(np.isnan(grad))


def test_eager_bad_eps_tensor_raises():
    with pytest.raises(ValueError, match="label_smoothing"):
        stf.softmax_cross_entropy_with_logits(
            tf.ones((2, 3)) / 3, tf.zeros((2, 3)), label_smoothing=tf.constant(1.5)
        )


# ---------------------------------------------------------------- variables


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_variables_as_logits_labels_and_eps(mode):
    rng = np.random.default_rng(1)
    logits, probs = rng.normal(size=(4, 5)), rng.dirichlet(np.ones(5), size=4)
    labels = rng.integers(0, 5, size=4)
    z_var, p_var, eps_var = (
        tf.Variable(logits),
        tf.Variable(probs),
        tf.Variable(0.2, dtype=tf.float64),
    )

    def step():
        with tf.GradientTape() as tape:
            sparse = stf.sparse_softmax_cross_entropy_with_logits(
                labels, z_var, label_smoothing=eps_var
            )
            dense = stf.softmax_cross_entropy_with_logits(p_var, z_var, label_smoothing=eps_var)
            total = tf.reduce_sum(sparse + dense)
        return (sparse, dense, *tape.gradient(total, [z_var, p_var]))

    fn = step if mode == "eager" else tf.function(step)
    got = [t.numpy() for t in fn()]
    z, p = tf.constant(logits), tf.constant(probs)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([z, p])
        sparse = stf.sparse_softmax_cross_entropy_with_logits(labels, z, label_smoothing=0.2)
        dense = stf.softmax_cross_entropy_with_logits(p, z, label_smoothing=0.2)
        total = tf.reduce_sum(sparse + dense)
    want = [sparse.numpy(), dense.numpy(), *(g.numpy() for g in tape.gradient(total, [z, p]))]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    eps_var.assign(0.0)  # read on every call: no retrace needed
    np.testing.assert_allclose(
        fn()[0].numpy(),
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits).numpy(),
        rtol=1e-12,
    )


# ---------------------------------------------------------------- #15: what reads device values

HOST_READS = {"PyFunc", "PyFuncStateless", "EagerPyFunc", "Print", "PrintV2", "CheckNumerics"}


def _all_ops(concrete):
    """(op type, op) of a traced function's graph, and op types of every nested function."""
    graph = concrete.graph
    types = [op.type for op in graph.get_operations()]
    for function in graph.as_graph_def().library.function:
        types += [node.op for node in function.node_def]
    return types, graph.get_operations()


def _depends_on_values(op):
    """Whether an op's inputs reach a function argument other than through its shape."""
    seen, stack = set(), list(op.inputs)
    while stack:
        tensor = stack.pop()
        source = tensor.op
        if source.name in seen or source.type in ("Shape", "Const"):
            continue
        seen.add(source.name)
        if source.type == "Placeholder":
            return True
        stack.extend(source.inputs)
    return False


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("batch", [8, None])
def test_traced_steps_read_no_device_value(jit, batch):
    """A training step's graph (loss, gradient, nested XLA core and its gradient) holds no op
    that brings tensor values to the host: no Python callback, print or numerics check, and
    the only assertion (labels' shape, when the batch size is unknown; none under XLA) reads
    shapes only."""
    k = 5

    def step(y, p, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            total = tf.reduce_sum(
                stf.sparse_softmax_cross_entropy_with_logits(y, z)
                + stf.softmax_cross_entropy_with_logits(p, z)
                + stf.differentiable_loss(LossSpec(0.1, -1, ignore_index=0, reduction="none"), z, y)
            )
        return total, tape.gradient(total, z)

    signature = [
        tf.TensorSpec([batch], tf.int32),
        tf.TensorSpec([batch, k], tf.float32),
        tf.TensorSpec([batch, k], tf.float32),
    ]
    concrete = tf.function(step, jit_compile=jit).get_concrete_function(*signature)
    types, ops = _all_ops(concrete)
    assert not HOST_READS & set(types)
    asserts = [op for op in ops if op.type == "Assert"]
    assert not any(_depends_on_values(op) for op in asserts)
    if jit or batch is not None:
        assert not asserts


def test_on_host_is_cpu_memory_only():
    backend = TensorFlowBackend()
    assert backend.on_host(tf.constant([1, 2]))
    assert backend.on_host(tf.Variable([1, 2]))

    class Resident:  # an eager tensor elsewhere, as TensorFlow describes its device
        def __init__(self, device):
            self.device = device

        def numpy(self):
            raise AssertionError("read")

    for device in ("/job:localhost/replica:0/task:0/device:GPU:0", "/device:TPU:0"):
        assert not backend.on_host(Resident(device))

    @tf.function
    def traced(x):
        assert not backend.on_host(x)
        return x

    traced(tf.constant([1]))


def test_labels_not_on_the_host_are_never_read(monkeypatch):
    """Labels in accelerator memory are not read (no synchronisation): a bad one gives NaN,
    as under tf.function. Simulated on the CPU by declaring the labels not on the host."""
    reads = []
    monkeypatch.setattr(TensorFlowBackend, "on_host", lambda self, x: False)
    original = TensorFlowBackend.extremes
    monkeypatch.setattr(
        TensorFlowBackend, "extremes", lambda self, xp, x: reads.append(1) or original(self, xp, x)
    )
    value = stf.sparse_softmax_cross_entropy_with_logits([0, 7], tf.zeros((2, 3))).numpy()
    assert np.isnan(value[1]) and np.isfinite(value[0]) and not reads
    monkeypatch.undo()
    with pytest.raises(ValueError, match="label 7 is out of range"):  # on the host: read
        stf.sparse_softmax_cross_entropy_with_logits([0, 7], tf.zeros((2, 3)))


def test_check_labels_forces_or_forbids_the_read(monkeypatch):
    """check_labels=True reads labels wherever they are (one synchronisation on a GPU);
    False never reads them; in a graph nothing can be read whatever it says."""
    z, y = tf.zeros((2, 3)), tf.constant([0, 7])
    value = stf.sparse_softmax_cross_entropy_with_logits(y, z, check_labels=False).numpy()
    assert np.isnan(value[1]) and np.isfinite(value[0])
    traced = tf.function(
        lambda a, b: stf.sparse_softmax_cross_entropy_with_logits(a, b, check_labels=True)
    )
    assert np.isnan(traced(y, z).numpy()[1])
    monkeypatch.setattr(TensorFlowBackend, "on_host", lambda self, x: False)  # "on a GPU"
    with pytest.raises(ValueError, match="label 7 is out of range"):
        stf.sparse_softmax_cross_entropy_with_logits(y, z, check_labels=True)


def test_check_numerics_names_the_bad_example_in_a_graph():
    """tf.debugging.enable_check_numerics() (the way to get an error out of a graph): valid
    inputs pass, in the loss and its gradient; a bad label raises where its NaN is made."""
    tf.debugging.enable_check_numerics()
    try:

        @tf.function
        def step(y, z):
            with tf.GradientTape() as tape:
                tape.watch(z)
                total = tf.reduce_sum(
                    stf.sparse_softmax_cross_entropy_with_logits(y, z)
                    + stf.softmax_cross_entropy_with_logits(tf.one_hot(y % 3, 3), z)
                ) + smoothce.loss(z, y % 3)
            return total, tape.gradient(total, z)

        total, grad = step(tf.constant([0, 2]), tf.zeros((2, 3)))
        assert np.isfinite(total.numpy()) and np.all(np.isfinite(grad.numpy()))
        with pytest.raises(tf.errors.InvalidArgumentError, match="NaN"):
            step(tf.constant([0, 7]), tf.zeros((2, 3)))
    finally:
        tf.debugging.disable_check_numerics()
