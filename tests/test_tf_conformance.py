"""smoothce.tensorflow conforms to tf.nn: every test here runs tf.nn on the same inputs.

The reference is tf.nn's documented behaviour: ``softmax_cross_entropy_with_logits(labels,
logits, axis=-1, name=None)`` and ``sparse_softmax_cross_entropy_with_logits(labels, logits,
name=None)`` in that positional order, one loss per example, any rank with the class axis
anywhere (dense) or last (sparse), labels that broadcast against the logits (dense), float16,
bfloat16, float32 and float64, gradients into the logits and (dense) the labels, gradients of
gradients, eagerly, in ``tf.function``, under XLA and in TF1-style graphs. Smoothing is the
reference's input: tf.nn gets q = (1 − ε)·y + ε/K. Where smoothce deliberately differs, the
test pins the difference (the last section; docs/tensorflow.md lists them).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import smoothce  # noqa: E402
import smoothce.tensorflow as stf  # noqa: E402
from smoothce import metrics  # noqa: E402
from smoothce.internal import LossSpec  # noqa: E402

EPS = 0.1
MODES = ["eager", "function", "xla", "tf1"]


def _smooth(y, eps, axis):
    """tf.nn's input: the smoothed target, written from the definition."""
    k = y.shape[axis]
    return y * (1.0 - eps) + eps / k


def _data(shape, axis, seed=0, dtype="float64"):
    """Logits, integer labels (classes last only), probability labels, upstream weights."""
    rng = np.random.default_rng(seed)
    k = shape[axis]
    logits = (rng.normal(size=shape) * 2).astype(dtype)
    probs = np.moveaxis(
        rng.dirichlet(np.ones(k), size=np.delete(shape, axis % len(shape))), -1, axis
    )
    batch = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    labels = rng.integers(0, k, size=batch)
    weights = rng.uniform(0.5, 2.0, size=batch)
    return logits, labels, probs.astype(dtype), weights.astype(dtype)


def _value_and_grads(fn, labels, logits, weights):
    """fn(labels, logits), and the gradients of Σ weights·fn w.r.t. logits and float labels."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        if labels.dtype.is_floating:
            tape.watch(labels)
        value = fn(labels, logits)
        total = tf.reduce_sum(value * tf.cast(weights, value.dtype))
    d_labels = tape.gradient(total, labels) if labels.dtype.is_floating else None
    return value, tape.gradient(total, logits), d_labels


def _ours_dense(axis, eps=EPS):
    return lambda y, z: stf.softmax_cross_entropy_with_logits(y, z, axis, label_smoothing=eps)


def _native_dense(axis, eps=EPS):
    # smoothing inside, so that the labels' gradient is w.r.t. the raw labels as well
    return lambda y, z: tf.nn.softmax_cross_entropy_with_logits(_smooth(y, eps, axis), z, axis)


def _close(got, want, tol, what=""):
    for name, a, b in zip(("value", "logits' grad", "labels' grad"), got, want, strict=False):
        if a is None and b is None:
            continue
        np.testing.assert_allclose(
            np.asarray(tf.cast(a, tf.float64)),
            np.asarray(tf.cast(b, tf.float64)),
            rtol=tol,
            atol=tol,
            err_msg=f"{what} {name}",
        )


# ---------------------------------------------------------------- signatures and positions


def test_signatures_are_tf_nn_plus_keyword_only_smoothing():
    for ours, native in (
        (stf.softmax_cross_entropy_with_logits, tf.nn.softmax_cross_entropy_with_logits),
        (
            stf.sparse_softmax_cross_entropy_with_logits,
            tf.nn.sparse_softmax_cross_entropy_with_logits,
        ),
    ):
        mine = inspect.signature(ours).parameters
        theirs = inspect.signature(native).parameters
        positional = [p for p in mine.values() if p.kind is not p.KEYWORD_ONLY]
        assert [(p.name, p.default) for p in positional] == [
            (p.name, p.default) for p in theirs.values()
        ]
        assert mine["label_smoothing"].kind is inspect.Parameter.KEYWORD_ONLY
        assert mine["label_smoothing"].default == 0.1


def test_positional_calls_in_tf_nn_order():
    logits, labels, probs, _ = _data((3, 4, 5), 1)
    z, y, p = tf.constant(logits), tf.constant(labels.T % 4), tf.constant(probs)
    # (labels, logits, axis, name): axis is the third positional argument, as in tf.nn
    ours = stf.softmax_cross_entropy_with_logits(p, z, 1, "dense", label_smoothing=0.0)
    native = tf.nn.softmax_cross_entropy_with_logits(p, z, 1, "dense")
    np.testing.assert_allclose(ours.numpy(), native.numpy(), rtol=1e-12)
    # (labels, logits, name)
    zl = tf.transpose(z, [0, 2, 1])
    ours = stf.sparse_softmax_cross_entropy_with_logits(
        y.numpy().T, zl, "sparse", label_smoothing=0
    )
    native = tf.nn.sparse_softmax_cross_entropy_with_logits(y.numpy().T, zl, "sparse")
    np.testing.assert_allclose(ours.numpy(), native.numpy(), rtol=1e-12)
    with pytest.raises(TypeError):  # label_smoothing cannot be given by position
        stf.softmax_cross_entropy_with_logits(p, z, 1, None, 0.1)
    with pytest.raises(TypeError):
        stf.sparse_softmax_cross_entropy_with_logits(y, z, None, 0.1)


def test_python_lists_and_integer_one_hot_labels_as_tf_nn_takes_them():
    """tf.nn casts integer (one-hot) probability labels; plain nested lists work too."""
    onehot, logits = [[0, 1, 0], [1, 0, 0]], [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    ours = stf.softmax_cross_entropy_with_logits(onehot, logits, label_smoothing=0.0)
    native = tf.nn.softmax_cross_entropy_with_logits(onehot, logits)
    np.testing.assert_allclose(ours.numpy(), native.numpy(), rtol=1e-6)
    ours = stf.sparse_softmax_cross_entropy_with_logits([1, 0], logits, label_smoothing=0.0)
    np.testing.assert_allclose(ours.numpy(), native.numpy(), rtol=1e-6)


# ---------------------------------------------------------------- layouts and dtypes

LAYOUTS = [
    ((5,), 0),
    ((4, 5), 0),
    ((4, 5), -1),
    ((5, 3, 4), 0),
    ((3, 5, 4), 1),
    ((3, 4, 5), 2),
    ((2, 5, 3, 2), 1),
    ((2, 3, 2, 5), -1),
]


@pytest.mark.parametrize(("shape", "axis"), LAYOUTS)
def test_every_layout_matches_tf_nn(shape, axis):
    logits, labels, probs, weights = _data(shape, axis)
    z, p = tf.constant(logits), tf.constant(probs)
    got = _value_and_grads(_ours_dense(axis), p, z, weights)
    want = _value_and_grads(_native_dense(axis), p, z, weights)
    assert got[0].shape == want[0].shape
    _close(got, want, 1e-12, "dense")
    if axis % len(shape) == len(shape) - 1:  # tf.nn's sparse form: classes last
        y = tf.constant(labels)
        onehot = tf.one_hot(y, shape[-1], dtype=tf.float64)
        got = _value_and_grads(
            lambda a, b: stf.sparse_softmax_cross_entropy_with_logits(a, b, label_smoothing=EPS),
            y,
            z,
            weights,
        )
        want = _value_and_grads(_native_dense(-1), onehot, z, weights)
        _close(got[:2], want[:2], 1e-12, "sparse")


DTYPES = {"float16": 2e-2, "bfloat16": 8e-2, "float32": 2e-6, "float64": 1e-12}


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_every_dtype_matches_tf_nn(dtype):
    """Same dtype in and out as tf.nn, for the values and both gradients; 16-bit inputs are
    accumulated in float32 by smoothce, so it is at least as close to the float64 values."""
    logits, labels, probs, weights = _data((6, 7), -1, dtype="float64")
    z, p = tf.cast(logits, dtype), tf.cast(probs, dtype)
    z64, p64 = tf.cast(z, tf.float64), tf.cast(p, tf.float64)  # the same rounded inputs
    got = _value_and_grads(_ours_dense(-1), p, z, weights)
    want = _value_and_grads(_native_dense(-1), p, z, weights)
    exact = _value_and_grads(_native_dense(-1), p64, z64, weights)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype == tf.as_dtype(dtype)
    _close(got, want, DTYPES[dtype], dtype)
    if dtype in ("float16", "bfloat16"):
        mine = np.abs(np.asarray(tf.cast(got[0], tf.float64)) - exact[0].numpy()).max()
        theirs = np.abs(np.asarray(tf.cast(want[0], tf.float64)) - exact[0].numpy()).max()
        assert mine <= theirs + 1e-3
    y = tf.constant(labels)
    sparse = stf.sparse_softmax_cross_entropy_with_logits(y, z, label_smoothing=EPS)
    native = _native_dense(-1)(tf.one_hot(y, 7, dtype=dtype), z)
    assert sparse.dtype == native.dtype
    _close((sparse,), (native,), DTYPES[dtype], "sparse")


# ---------------------------------------------------------------- every entry point, every mode


def _entry_points(z, y, p, w):
    """Values and gradients of every TF entry point: (name, ours, reference) pairs of tensors.

    The references are tf.nn on smoothed labels (and, for smoothce.loss's options, the same
    expressions written out with tf.nn), built in the same graph.
    """
    k = z.shape[-1]
    onehot = tf.one_hot(y, k, dtype=z.dtype)
    out = []
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([z, p])
        pairs = {
            "dense": (_ours_dense(-1)(p, z), _native_dense(-1)(p, z)),
            "sparse": (
                stf.sparse_softmax_cross_entropy_with_logits(y, z, label_smoothing=EPS),
                _native_dense(-1)(onehot, z),
            ),
            # Keras's seam with ignore_class=2: those examples get 0
            "ignore_index": (
                stf.differentiable_loss(LossSpec(EPS, -1, ignore_index=2, reduction="none"), z, y),
                tf.where(tf.equal(y, 2), tf.zeros_like(w), _native_dense(-1)(onehot, z)),
            ),
            "smoothce.loss": (
                smoothce.loss(z, y, EPS, ignore_index=2, reduction="sum"),
                tf.reduce_sum(
                    tf.where(tf.equal(y, 2), tf.zeros_like(w), _native_dense(-1)(onehot, z))
                ),
            ),
            "smoothce.loss dense mean": (
                smoothce.loss(z, p, EPS),
                tf.reduce_mean(_native_dense(-1)(p, z)),
            ),
        }
        totals = {
            name: tf.reduce_sum(a * w) if a.shape.rank else a for name, (a, _) in pairs.items()
        }
        refs = {name: tf.reduce_sum(b * w) if b.shape.rank else b for name, (_, b) in pairs.items()}
        unweighted = tf.reduce_sum(pairs["sparse"][1])
    for name, (a, b) in pairs.items():
        out.append((f"{name} value", a, b))
        out.append(
            (f"{name} d_logits", tape.gradient(totals[name], z), tape.gradient(refs[name], z))
        )
    out.append(
        ("dense d_labels", tape.gradient(totals["dense"], p), tape.gradient(refs["dense"], p))
    )
    value, grad = smoothce.loss_and_grad(z, y, EPS, reduction="none")
    out.append(("loss_and_grad value", value, pairs["sparse"][1]))
    out.append(("loss_and_grad grad", grad, tape.gradient(unweighted, z)))
    out.append(("grad", smoothce.grad(z, y, EPS, reduction="sum"), out[-1][2]))  # same ref
    out.append(
        (
            "smooth_labels",
            smoothce.smooth_labels(y, EPS, num_classes=k, dtype=z.dtype),
            _smooth(onehot, EPS, -1),
        )
    )
    out.append(("metrics.softmax", metrics.softmax(z), tf.nn.softmax(z)))
    ece = metrics.expected_calibration_error(z, y)
    out.append(("metrics.expected_calibration_error", ece, ece))  # checked against NumPy
    return {name: (a, b) for name, a, b in out}


@pytest.mark.parametrize("mode", MODES)
def test_every_entry_point_in_every_mode(mode):
    """Eagerly, in tf.function, under XLA and in a TF1 Graph + Session: the same numbers.

    In TF1 graphs ``==`` on tensors is object identity: a core that compared labels with
    ``==`` lost the −(1 − ε) term at the label there (and ignore_index never matched).
    """
    logits, labels, probs, weights = _data((6, 5), -1, seed=3)
    labels[[1, 4]] = 2
    args = (logits, labels.astype("int32"), probs, weights)
    if mode == "tf1":
        graph = tf.Graph()
        with graph.as_default():
            holders = [
                tf.compat.v1.placeholder(tf.float64, [None, 5]),
                tf.compat.v1.placeholder(tf.int32, [None]),
                tf.compat.v1.placeholder(tf.float64, [None, 5]),
                tf.compat.v1.placeholder(tf.float64, [None]),
            ]
            pairs = _entry_points(*holders)
            # the TF1 way of differentiating as well
            z, y = holders[0], holders[1]
            v1 = tf.compat.v1.gradients(
                tf.reduce_sum(stf.sparse_softmax_cross_entropy_with_logits(y, z)), z
            )[0]
            with tf.compat.v1.Session(graph=graph) as session:
                feed = dict(zip(holders, args, strict=True))
                results, v1_grad = session.run((pairs, v1), feed_dict=feed)
        onehot = np.eye(5)[labels]
        q = _smooth(onehot, EPS, -1)
        softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        np.testing.assert_allclose(v1_grad, softmax - q, rtol=1e-12, atol=1e-12)
    else:
        fn = _entry_points
        if mode != "eager":
            fn = tf.function(fn, jit_compile=mode == "xla", autograph=False)
        pairs = fn(*(tf.constant(a) for a in args))
        results = {name: (a.numpy(), b.numpy()) for name, (a, b) in pairs.items()}
    for name, (a, b) in results.items():
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"{mode}: {name}")
    ece = metrics.expected_calibration_error(logits, labels)
    np.testing.assert_allclose(results["metrics.expected_calibration_error"][0], ece, rtol=1e-12)


# ---------------------------------------------------------------- labels that broadcast


LABEL_SHAPES = [(1, 4), (4,), (3, 1)]


@pytest.mark.parametrize("mode", MODES)
def test_broadcast_labels_match_tf_nn(mode):
    """Dense labels of shapes (1, K), (K,) and (N, 1) broadcast against (N, K) logits as in
    tf.nn; their gradient is summed back to their own shape (compared with tf.nn on
    explicitly broadcast labels: tf.nn's own labels' gradient fails for broadcast labels in
    TF 2.21). In graphs the sizes are unknown until the graph runs."""
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 4))
    # distributions once broadcast, as tf.nn documents its labels
    labels = [rng.dirichlet(np.ones(4)).reshape(shape) for shape in LABEL_SHAPES[:2]]
    labels.append(np.full(LABEL_SHAPES[2], 0.25))
    weights = rng.uniform(0.5, 2.0, size=3)

    def native(a, b):
        return _native_dense(-1)(tf.broadcast_to(a, tf.shape(b)), b)

    def both(z, *ys):
        return [
            (
                _value_and_grads(_ours_dense(-1), y, z, weights),
                _value_and_grads(native, y, z, weights),
            )
            for y in ys
        ]

    specs = [tf.TensorSpec([None, 4], tf.float64)]
    specs += [tf.TensorSpec([None] * len(shape), tf.float64) for shape in LABEL_SHAPES]
    if mode == "tf1":
        graph = tf.Graph()
        with graph.as_default():
            holders = [tf.compat.v1.placeholder(spec.dtype, spec.shape) for spec in specs]
            built = both(*holders)
            with tf.compat.v1.Session(graph=graph) as session:
                results = session.run(built, dict(zip(holders, [logits, *labels], strict=True)))
    else:
        fn = both
        if mode != "eager":
            fn = tf.function(both, input_signature=specs, jit_compile=mode == "xla")
        results = fn(*(tf.constant(a) for a in (logits, *labels)))
    for shape, (got, want) in zip(LABEL_SHAPES, results, strict=True):
        assert tuple(np.shape(got[2])) == shape
        _close(got, want, 1e-12, f"{mode} {shape}")


# ---------------------------------------------------------------- shapes known only at run time


def _run_graph(fn, labels, logits, label_spec, logits_spec, mode):
    """fn(labels, logits) where the graph leaves the shapes of ``*_spec`` open."""
    if mode == "tf1":
        graph = tf.Graph()
        with graph.as_default():
            y = tf.compat.v1.placeholder(label_spec.dtype, label_spec.shape)
            z = tf.compat.v1.placeholder(logits_spec.dtype, logits_spec.shape)
            out = fn(y, z)
            with tf.compat.v1.Session(graph=graph) as session:
                return session.run(out, {y: labels, z: logits})
    traced = tf.function(fn, input_signature=[label_spec, logits_spec], jit_compile=mode == "xla")
    return traced(tf.constant(labels), tf.constant(logits)).numpy()


@pytest.mark.parametrize("mode", ["function", "xla", "tf1"])
def test_labels_of_unknown_rank_are_checked_when_the_graph_runs(mode):
    """A graph with labels of unknown rank builds; the shape is checked when it runs (XLA:
    when it compiles for the concrete shapes), with tf.nn's error class."""
    logits = np.random.default_rng(2).normal(size=(3, 4)).astype("float32")
    z_spec = tf.TensorSpec([None, 4], tf.float32)
    sparse = (
        stf.sparse_softmax_cross_entropy_with_logits,
        tf.nn.sparse_softmax_cross_entropy_with_logits,
    )
    dense = (stf.softmax_cross_entropy_with_logits, tf.nn.softmax_cross_entropy_with_logits)
    cases = [
        (sparse, np.array([0, 3, 1], "int32"), tf.int32, _smooth(np.eye(4)[[0, 3, 1]], EPS, -1)),
        (dense, np.eye(4, dtype="float32")[[2, 0, 1]], tf.float32, None),
    ]
    for (ours, native), good, dtype, reference in cases:
        spec = tf.TensorSpec(None, dtype)
        got = _run_graph(ours, good, logits, spec, z_spec, mode)
        if reference is None:
            reference = _smooth(good, EPS, -1)
        want = tf.nn.softmax_cross_entropy_with_logits(reference, logits).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6)
        bad = good[None] if good.ndim == 1 else good[:, :3]  # (1, 3) for (3,); (3, 3) for (3, 4)
        for fn in (ours, native):
            with pytest.raises(tf.errors.InvalidArgumentError):
                _run_graph(fn, bad, logits, spec, z_spec, mode)


@pytest.mark.parametrize("mode", ["function", "xla", "tf1"])
def test_unknown_batch_sizes_are_checked_when_the_graph_runs(mode):
    """Sparse labels of length 1 against 3 examples: tf.nn raises, and so does smoothce (it
    does not broadcast them)."""
    logits = np.zeros((3, 4), "float32")
    y_spec, z_spec = tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, 4], tf.float32)
    for fn in (
        stf.sparse_softmax_cross_entropy_with_logits,
        tf.nn.sparse_softmax_cross_entropy_with_logits,
    ):
        for labels in (np.array([1], "int32"), np.array([1, 2], "int32")):
            with pytest.raises(tf.errors.InvalidArgumentError):
                _run_graph(fn, labels, logits, y_spec, z_spec, mode)


def test_shapes_known_on_one_side_only():
    """Static labels with logits of unknown batch size, and the reverse, in one process after
    other traces (a traced core must never see the labels' or the class dimension relaxed)."""
    logits, labels, probs, _ = _data((4, 5), -1, seed=6)
    labels = labels.astype("int32")
    want_sparse = _native_dense(-1)(np.eye(5)[labels], logits).numpy()
    want_dense = _native_dense(-1)(probs, logits).numpy()
    unknown = tf.TensorSpec([None, 5], tf.float64)

    @tf.function(input_signature=[unknown])
    def static_labels(z):
        return (
            stf.sparse_softmax_cross_entropy_with_logits(labels, z, label_smoothing=EPS),
            stf.softmax_cross_entropy_with_logits(probs, z, label_smoothing=EPS),
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), unknown])
    def static_logits(y, p):
        return (
            stf.sparse_softmax_cross_entropy_with_logits(y, logits, label_smoothing=EPS),
            stf.softmax_cross_entropy_with_logits(p, logits, label_smoothing=EPS),
        )

    for sparse, dense in (static_labels(logits), static_logits(labels, probs)):
        np.testing.assert_allclose(sparse.numpy(), want_sparse, rtol=1e-12)
        np.testing.assert_allclose(dense.numpy(), want_dense, rtol=1e-12)


# ---------------------------------------------------------------- second order


def _by_definition(y, z):
    """−Σ q·log_softmax(z), differentiated by TensorFlow op by op (twice as well)."""
    return -tf.reduce_sum(_smooth(y, EPS, -1) * tf.nn.log_softmax(z), axis=-1)


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_second_order_matches_tf_nn(mode):
    """Nested tapes: the gradient of ‖∂L/∂z‖² w.r.t. logits and labels (dense) and logits
    (sparse), which needs TF to differentiate the registered gradient. The labels' part is
    compared with the loss written by definition: tf.nn's registered gradient treats its
    gradient output as independent of the labels (it gives 0 there)."""
    logits, labels, probs, weights = _data((4, 5), -1, seed=5)

    def hvp(fn, y, z):
        with tf.GradientTape(persistent=True) as outer:
            outer.watch([z, y]) if y.dtype.is_floating else outer.watch(z)
            with tf.GradientTape() as inner:
                inner.watch(z)
                total = tf.reduce_sum(fn(y, z) * weights)
            g = inner.gradient(total, z)
            squared = tf.reduce_sum(g * g)
        d_y = outer.gradient(squared, y) if y.dtype.is_floating else tf.zeros(())
        return outer.gradient(squared, z), d_y

    def both(y, p, z):
        onehot = tf.one_hot(y, 5, dtype=z.dtype)

        def sparse(a, b):
            return stf.sparse_softmax_cross_entropy_with_logits(a, b, label_smoothing=EPS)

        return (
            hvp(_ours_dense(-1), p, z),
            hvp(_native_dense(-1), p, z)[0],
            hvp(_by_definition, p, z)[1],
            hvp(sparse, y, z)[0],
            hvp(_native_dense(-1), onehot, z)[0],
        )

    fn = both if mode == "eager" else tf.function(both)
    dense, native_z, definition_y, sparse, sparse_ref = fn(
        tf.constant(labels), tf.constant(probs), tf.constant(logits)
    )
    _close(dense, (native_z, definition_y), 1e-10, "dense")
    _close((sparse,), (sparse_ref,), 1e-10, "sparse")


# ---------------------------------------------------------------- errors and pinned differences


def _outcome(fn):
    """The error class of fn() or its value."""
    try:
        return fn()
    except Exception as err:  # the class is what is compared
        return type(err)


def test_error_classes():
    """Errors raised for wrong arguments: smoothce raises the Python error (TypeError for a
    wrong type, ValueError for a wrong value or shape) where tf.nn's op raises
    InvalidArgumentError; where tf.nn raises ValueError, so does smoothce."""
    z = tf.zeros((2, 3))
    invalid = tf.errors.InvalidArgumentError
    cases = {
        # name: (call with module ns, tf.nn's outcome, smoothce's outcome)
        "float labels to sparse": (
            lambda ns: ns.sparse_softmax_cross_entropy_with_logits(tf.constant([0.0, 1.0]), z),
            invalid,
            TypeError,
        ),
        "integer logits": (
            lambda ns: ns.sparse_softmax_cross_entropy_with_logits(
                [0, 1], tf.zeros((2, 3), tf.int32)
            ),
            invalid,
            TypeError,
        ),
        "dense shapes that do not broadcast": (
            lambda ns: ns.softmax_cross_entropy_with_logits(tf.ones((2, 4)), z),
            invalid,
            ValueError,
        ),
        "class axis out of range": (
            lambda ns: ns.softmax_cross_entropy_with_logits(tf.ones((2, 3)), z, axis=2),
            invalid,
            ValueError,
        ),
        "scalar logits": (
            lambda ns: ns.softmax_cross_entropy_with_logits(tf.constant(1.0), tf.constant(1.0)),
            invalid,
            ValueError,
        ),
        "sparse labels of another size": (
            lambda ns: ns.sparse_softmax_cross_entropy_with_logits([0, 1, 2], z),
            ValueError,
            ValueError,
        ),
        "sparse labels of another rank": (
            lambda ns: ns.sparse_softmax_cross_entropy_with_logits([[0, 1]], z),
            ValueError,
            ValueError,
        ),
    }
    for name, (call, native, ours) in cases.items():
        assert _outcome(lambda c=call: c(tf.nn)) is native, f"tf.nn: {name}"
        assert _outcome(lambda c=call: c(stf)) is ours, f"smoothce: {name}"
    with pytest.raises(TypeError, match="sparse_softmax_cross_entropy_with_logits"):
        stf.softmax_cross_entropy_with_logits([0, 1], z)  # class indices to the dense function


def test_default_label_smoothing_is_pinned_at_0_1():
    logits, labels, probs, _ = _data((3, 4), -1)
    z = tf.constant(logits)
    np.testing.assert_allclose(
        stf.softmax_cross_entropy_with_logits(probs, z).numpy(),
        tf.nn.softmax_cross_entropy_with_logits(_smooth(probs, 0.1, -1), z).numpy(),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        stf.sparse_softmax_cross_entropy_with_logits(labels, z).numpy(),
        tf.nn.softmax_cross_entropy_with_logits(_smooth(np.eye(4)[labels], 0.1, -1), z).numpy(),
        rtol=1e-12,
    )


def test_out_of_range_labels_pinned():
    """tf.nn on CPU: InvalidArgumentError eagerly and in tf.function, NaN under XLA.
    smoothce: ValueError eagerly (the labels are read on the host), NaN when traced."""
    z, y = tf.zeros((2, 3)), tf.constant([0, 3])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.nn.sparse_softmax_cross_entropy_with_logits(y, z)
    with pytest.raises(ValueError, match="label 3 is out of range"):
        stf.sparse_softmax_cross_entropy_with_logits(y, z)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.function(tf.nn.sparse_softmax_cross_entropy_with_logits)(y, z)
    for jit in (False, True):
        value = tf.function(stf.sparse_softmax_cross_entropy_with_logits, jit_compile=jit)(y, z)
        assert np.isfinite(value[0]) and np.isnan(value[1])
    native = tf.function(tf.nn.sparse_softmax_cross_entropy_with_logits, jit_compile=True)(y, z)
    assert np.isnan(native[1])


def test_zero_classes_pinned():
    """K = 0: tf.nn's dense op returns zeros and its sparse op raises InvalidArgumentError;
    smoothce raises ValueError for both (a softmax over no class is meaningless)."""
    z = tf.zeros((2, 0))
    np.testing.assert_array_equal(tf.nn.softmax_cross_entropy_with_logits(z, z).numpy(), 0.0)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.nn.sparse_softmax_cross_entropy_with_logits([0, 0], z)
    with pytest.raises(ValueError, match="at least one class"):
        stf.softmax_cross_entropy_with_logits(z, z)
    with pytest.raises(ValueError, match="at least one class"):
        stf.sparse_softmax_cross_entropy_with_logits([0, 0], z)


def test_unknown_class_dimension_pinned():
    """tf.nn accepts a class dimension unknown at trace time; smoothce needs K for ε/K."""
    spec = [tf.TensorSpec([2], tf.int32), tf.TensorSpec([2, None], tf.float32)]
    native = tf.function(tf.nn.sparse_softmax_cross_entropy_with_logits, input_signature=spec)
    assert native(tf.constant([0, 1]), tf.zeros((2, 3))).shape == (2,)
    ours = tf.function(stf.sparse_softmax_cross_entropy_with_logits, input_signature=spec)
    with pytest.raises(ValueError, match="statically known"):
        ours(tf.constant([0, 1]), tf.zeros((2, 3)))


def test_labels_that_are_not_distributions_pinned():
    """tf.nn's gradient is softmax − labels, the derivative of its loss only when each row of
    labels sums to 1; smoothce gives the true derivative, T·p − t with T = Σ_c t_c."""
    rng = np.random.default_rng(4)
    logits, labels = tf.constant(rng.normal(size=(3, 4))), rng.uniform(0.1, 1.0, size=(3, 4))

    def grad(fn):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            total = tf.reduce_sum(fn(labels, logits))
        return tape.gradient(total, logits).numpy()

    ours = grad(_ours_dense(-1, eps=0.0))
    native = grad(tf.nn.softmax_cross_entropy_with_logits)
    softmax = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(native, softmax - labels, rtol=1e-12)
    by_definition = grad(lambda y, z: -tf.reduce_sum(y * tf.nn.log_softmax(z), axis=-1))
    np.testing.assert_allclose(ours, by_definition, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours, softmax * labels.sum(-1, keepdims=True) - labels, rtol=1e-12)


def test_negative_class_axis_pinned():
    """tf.nn's dense op takes −1 or a non-negative axis (−2 fails inside tf.nn); smoothce
    takes any axis in [−rank, rank)."""
    logits, _, probs, _ = _data((3, 4, 5), 1)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.nn.softmax_cross_entropy_with_logits(probs, logits, axis=-2)
    np.testing.assert_allclose(
        stf.softmax_cross_entropy_with_logits(probs, logits, -2, label_smoothing=0).numpy(),
        tf.nn.softmax_cross_entropy_with_logits(probs, logits, 1).numpy(),
        rtol=1e-12,
    )
