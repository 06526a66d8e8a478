"""Checks of smoothce.keras on the Keras backend chosen by KERAS_BACKEND, run in its own process.

Usage: ``KERAS_BACKEND=<backend> python tests/keras_backend_check.py <scratch dir>``. Prints one
JSON object (last line of stdout) of measured differences and facts, which
tests/test_keras_adapter.py asserts on; any exception makes the process fail.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if os.environ.get("KERAS_BACKEND") == "torch":
    import torch  # noqa: F401  (torch before tensorflow: the reverse order can segfault)

import keras
import numpy as np
from keras import ops

import smoothce.keras as sk

BACKEND = keras.backend.backend()
EPS = 0.1
results: dict[str, object] = {
    "backend": BACKEND,
    # smoothce.keras itself pulls in no framework beyond the active backend
    "frameworks_loaded": sorted(m for m in ("tensorflow", "torch", "jax") if m in sys.modules),
}


def np_(x: object) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def value_and_grad(fn, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fn(tensor) -> scalar, and its gradient w.r.t. that tensor, with the backend's autodiff."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        t = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(t)
            out = fn(t)
        return np_(out), np_(tape.gradient(out, t))
    if BACKEND == "jax":
        import jax

        # one compilation per function beats op-by-op dispatch of many small shapes
        out, g = jax.jit(jax.value_and_grad(fn))(jax.numpy.asarray(x))
        return np_(out), np_(g)
    import torch

    t = torch.tensor(x, requires_grad=True)
    out = fn(t)
    out.backward()
    return np_(out.detach()), np_(t.grad)


def maxdiff(a: object, b: object) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


rng = np.random.default_rng(0)
K = 5
logits = (rng.normal(size=(8, K)) * 2).astype("float32")
labels = rng.integers(0, K, size=8)
labels[[1, 4]] = 2
onehot = np.eye(K, dtype="float32")[labels]
probs = np_(ops.softmax(logits)).astype("float32")  # plain arrays: no remembered logits

# 1. values and gradients against Keras's CategoricalCrossentropy(label_smoothing=...)
for from_logits, pred in ((True, logits), (False, probs)):
    ours = sk.CategoricalCrossentropy(label_smoothing=EPS, from_logits=from_logits)
    native = keras.losses.CategoricalCrossentropy(label_smoothing=EPS, from_logits=from_logits)
    sparse = sk.SparseCategoricalCrossentropy(label_smoothing=EPS, from_logits=from_logits)
    v1, g1 = value_and_grad(lambda p, f=ours: f(onehot, p), pred)
    v2, g2 = value_and_grad(lambda p, f=native: f(onehot, p), pred)
    v3, g3 = value_and_grad(lambda p, f=sparse: f(labels, p), pred)
    tag = "logits" if from_logits else "probs"
    results[f"cce_{tag}_value"] = maxdiff(v1, v2)
    results[f"cce_{tag}_grad"] = maxdiff(g1, g2)
    results[f"sparse_vs_dense_{tag}_value"] = maxdiff(v3, v1)
    results[f"sparse_vs_dense_{tag}_grad"] = maxdiff(g3, g1)
    results[f"grad_scale_{tag}"] = float(np.max(np.abs(g2)))

# axis=1 on (N, C, T): compare with Keras on targets smoothed over the C classes beforehand
# (Keras's own label_smoothing would take K from the last axis, see docs/keras.md)
z3 = rng.normal(size=(3, K, 4)).astype("float32")
y3 = rng.integers(0, K, size=(3, 4))
oh3 = np.moveaxis(np.eye(K, dtype="float32")[y3], -1, 1)
smoothed3 = oh3 * (1 - EPS) + EPS / K
for from_logits, pred in ((True, z3), (False, np_(ops.softmax(z3, axis=1)).astype("float32"))):
    tag = "logits" if from_logits else "probs"
    ours = sk.CategoricalCrossentropy(label_smoothing=EPS, from_logits=from_logits, axis=1)
    native = keras.losses.CategoricalCrossentropy(from_logits=from_logits, axis=1)
    sparse = sk.SparseCategoricalCrossentropy(label_smoothing=EPS, from_logits=from_logits, axis=1)
    v1, g1 = value_and_grad(lambda p, f=ours: f(oh3, p), pred)
    v2, g2 = value_and_grad(lambda p, f=native: f(smoothed3, p), pred)
    v3, g3 = value_and_grad(lambda p, f=sparse: f(y3, p), pred)
    results[f"axis1_{tag}_value"] = maxdiff(v1, v2)
    results[f"axis1_{tag}_grad"] = maxdiff(g1, g2)
    results[f"axis1_sparse_{tag}_value"] = maxdiff(v3, v1)
    results[f"axis1_sparse_{tag}_grad"] = maxdiff(g3, g1)

# reductions and sample weights are Keras's own
sw = rng.uniform(0.5, 2.0, size=8).astype("float32")
per_ex = np_(
    sk.CategoricalCrossentropy(label_smoothing=EPS, from_logits=True, reduction="none")(
        onehot, logits
    )
)
for red in ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight"):
    a = sk.CategoricalCrossentropy(label_smoothing=EPS, from_logits=True, reduction=red)(
        onehot, logits, sw
    )
    b = keras.losses.CategoricalCrossentropy(label_smoothing=EPS, from_logits=True, reduction=red)(
        onehot, logits, sw
    )
    results[f"reduction_{red}"] = maxdiff(np_(a), np_(b))
results["per_example_shape"] = list(per_ex.shape)
# labels with a trailing dimension of 1, as Keras accepts them
results["sparse_column_labels"] = maxdiff(
    np_(
        sk.SparseCategoricalCrossentropy(label_smoothing=EPS, from_logits=True)(
            labels[:, None], logits
        )
    ),
    np_(sk.CategoricalCrossentropy(label_smoothing=EPS, from_logits=True)(onehot, logits)),
)

# 2. ignore_class: ε = 0 must match Keras exactly; ε > 0 is the dense loss averaged over kept rows
for eps in (0.0, EPS):
    ours = sk.SparseCategoricalCrossentropy(label_smoothing=eps, from_logits=True, ignore_class=2)
    v, g = value_and_grad(lambda p, f=ours: f(labels, p), logits)
    keep = labels != 2
    if eps == 0.0:
        native = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=2)
        v2, g2 = value_and_grad(lambda p, f=native: f(labels, p), logits)
        results["ignore_eps0_value"] = maxdiff(v, v2)
        results["ignore_eps0_grad"] = maxdiff(g, g2)
    else:
        dense = sk.CategoricalCrossentropy(label_smoothing=eps, from_logits=True, reduction="sum")
        kept_onehot, n_kept = onehot[keep], keep.sum()
        v2, g2 = value_and_grad(
            lambda p, f=dense, t=kept_onehot, n=n_kept: f(t, p) / n, logits[keep]
        )
        results["ignore_value"] = maxdiff(v, v2)
        results["ignore_grad_kept"] = maxdiff(g[keep], g2)
        results["ignore_grad_ignored"] = float(np.max(np.abs(g[~keep])))

# 3. errors
errors = {}
for name, make in {
    "eps_negative": lambda: sk.CategoricalCrossentropy(label_smoothing=-0.1),
    "eps_above_one": lambda: sk.SparseCategoricalCrossentropy(label_smoothing=1.5),
    "eps_string": lambda: sk.smooth_crossentropy("a"),
    "label_out_of_range": lambda: sk.SparseCategoricalCrossentropy(
        label_smoothing=EPS, from_logits=True
    )(np.array([0, 7, 1, 2, 3, 4, 0, 1]), logits),
}.items():
    try:
        make()
        errors[name] = "no error"
    except (ValueError, TypeError) as err:  # a wrong value / a wrong type
        errors[name] = f"{type(err).__name__}: {err}"
results["errors"] = errors

# 4. the seed's model, unchanged apart from the loss
keras.utils.set_random_seed(0)
inp = keras.Input(shape=(None,))
hidden = keras.layers.Embedding(10000, 128)(inp)
hidden = keras.layers.LSTM(64)(hidden)
out = keras.layers.Dense(10, activation="softmax")(hidden)
model = keras.Model(inputs=inp, outputs=out)
model.compile(optimizer="adam", loss=sk.smooth_crossentropy(EPS))
x = rng.integers(0, 10000, size=(64, 8))
y = np.eye(10, dtype="float32")[rng.integers(0, 10, size=64)]
history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
results["seed_history"] = [float(v) for v in history.history["loss"]]
p = np_(model(x)).astype("float32")
loss_fn = sk.smooth_crossentropy(EPS)
ours = np_(loss_fn(y, p))
uniform = np.ones_like(p) / 10
seed = (1 - EPS) * np_(keras.losses.categorical_crossentropy(y, p)) + EPS * np_(
    keras.losses.categorical_crossentropy(uniform, p)
)
results["seed_formula"] = maxdiff(ours, seed)

# 5. save / load round trips of compiled models (a small model keeps compilation short)
scratch = sys.argv[1]
round_trips = {}
xs = rng.normal(size=(32, 6)).astype("float32")
ys = np.arange(32) % 10
for tag, loss, target in (
    (
        "cce",
        sk.CategoricalCrossentropy(label_smoothing=0.2, from_logits=False, axis=-1),
        np.eye(10)[ys],
    ),
    ("sparse", sk.SparseCategoricalCrossentropy(label_smoothing=0.3, ignore_class=9), ys),
    ("factory", sk.smooth_crossentropy(0.25), np.eye(10)[ys]),
):
    keras.utils.set_random_seed(2)
    small = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(10, "softmax")])
    small.compile(optimizer="adam", loss=loss)
    before = float(small.evaluate(xs, target, verbose=0, batch_size=32))
    direct = np_(loss(target, np_(small(xs)).astype("float32"))).mean()
    path = os.path.join(scratch, f"{BACKEND}_{tag}.keras")
    small.save(path)
    loaded = keras.models.load_model(path)
    restored = loaded.loss
    after = float(loaded.evaluate(xs, target, verbose=0, batch_size=32))
    round_trips[tag] = {
        "type": type(restored).__name__,
        "config": restored.get_config(),
        "value_diff": abs(before - after),
        "evaluate_vs_direct": abs(before - float(direct)),
    }
results["round_trips"] = round_trips

# 6. the mixed_float16 policy: float16 activations, float32 loss
keras.mixed_precision.set_global_policy("mixed_float16")
try:
    keras.utils.set_random_seed(1)
    small = keras.Sequential(
        [
            keras.Input(shape=(6,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(K, activation="softmax"),
        ]
    )
    # on TensorFlow also through XLA (jax always compiles; torch's jit_compile is torch.compile)
    small.compile(
        optimizer="adam",
        loss=sk.SparseCategoricalCrossentropy(label_smoothing=EPS),
        jit_compile=BACKEND == "tensorflow",
    )
    hist = small.fit(xs, labels.repeat(4), epochs=1, batch_size=16, verbose=0)
    preds = small(xs)
    results["mixed_pred_dtype"] = str(ops.convert_to_numpy(preds).dtype)
    results["mixed_history"] = [float(v) for v in hist.history["loss"]]
    ours = sk.SparseCategoricalCrossentropy(label_smoothing=EPS)(labels.repeat(4), preds)
    native = keras.losses.CategoricalCrossentropy(label_smoothing=EPS)(
        np.eye(K, dtype="float32")[labels.repeat(4)], preds
    )
    results["mixed_loss_dtype"] = str(ops.convert_to_numpy(ours).dtype)
    results["mixed_vs_native"] = maxdiff(np_(ours), np_(native))
finally:
    keras.mixed_precision.set_global_policy("float32")

# 7. conformance with keras.losses: positional calls in Keras's order, function forms, every
# layout, every float dtype, error classes; differences pinned (docs/keras.md)
conf: dict[str, object] = {}


def summed(fn):
    return lambda p: ops.sum(fn(p))


def compare(fns, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(value, gradient) of each fn(tensor) -> scalar at x; on jax as one compiled program
    (a jit per function, or eager dispatch of each new shape, would cost more)."""
    if BACKEND != "jax":
        return [value_and_grad(fn, x) for fn in fns]
    import jax

    pairs = jax.jit(lambda t: [jax.value_and_grad(fn)(t) for fn in fns])(jax.numpy.asarray(x))
    return [(np_(v), np_(g)) for v, g in pairs]


def worst(first, *others) -> float:
    """Largest difference of values and of gradients (relative to their size) to ``first``."""
    (v1, g1), out = first, 0.0
    for v2, g2 in others:
        out = max(out, maxdiff(v1, v2), maxdiff(g1, g2) / max(1.0, float(np.abs(g2).max())))
    return out


# function forms, arguments by position: (y_true, y_pred, from_logits, label_smoothing, axis)
# and (y_true, y_pred, from_logits, ignore_class, axis)
for f, pred in ((True, logits), (False, probs)):
    tag = "logits" if f else "probs"
    got = compare(
        [
            summed(lambda p, f=f: sk.categorical_crossentropy(onehot, p, f, EPS, -1)),
            summed(lambda p, f=f: keras.losses.categorical_crossentropy(onehot, p, f, EPS, -1)),
        ]
        + [
            summed(
                lambda p, i=i, f=f: sk.sparse_categorical_crossentropy(
                    labels, p, f, i, -1, label_smoothing=0.0
                )
            )
            for i in (None, 2)
        ]
        + [
            summed(
                lambda p, i=i, f=f: keras.losses.sparse_categorical_crossentropy(
                    labels, p, f, i, -1
                )
            )
            for i in (None, 2)
        ],
        pred,
    )
    conf[f"function_cce_{tag}"] = worst(got[0], got[1])
    conf[f"function_sparse_{tag}_ignore_None"] = worst(got[2], got[4])
    conf[f"function_sparse_{tag}_ignore_2"] = worst(got[3], got[5])
# the default label_smoothing is 0.1 (Keras: 0.0), in both function forms
conf["function_default_eps"] = max(
    maxdiff(
        np_(sk.categorical_crossentropy(onehot, logits, True)),
        np_(keras.losses.categorical_crossentropy(onehot, logits, True, 0.1)),
    ),
    maxdiff(
        np_(sk.sparse_categorical_crossentropy(labels, logits, True)),
        np_(keras.losses.categorical_crossentropy(onehot, logits, True, 0.1)),
    ),
)
# gradients into y_true, as Keras's own losses give them (a distillation target, say)
conf["y_true_grad"] = worst(
    *compare(
        [
            lambda t: sk.CategoricalCrossentropy(True, EPS)(t, logits),
            lambda t: keras.losses.CategoricalCrossentropy(True, EPS)(t, logits),
        ],
        onehot,
    )
)
# class forms, by position: (from_logits, label_smoothing, axis, reduction) and
# (from_logits, ignore_class, reduction, axis)
conf["positional_cce"] = maxdiff(
    np_(sk.CategoricalCrossentropy(True, EPS, -1, "none")(onehot, logits)),
    np_(keras.losses.CategoricalCrossentropy(True, EPS, -1, "none")(onehot, logits)),
)
conf["positional_sparse"] = maxdiff(
    np_(sk.SparseCategoricalCrossentropy(True, 2, "none", -1, label_smoothing=0.0)(labels, logits)),
    np_(keras.losses.SparseCategoricalCrossentropy(True, 2, "none", -1)(labels, logits)),
)

# every layout: 1-D to 4-D, the class axis first, in the middle or last; Keras gets targets
# smoothed beforehand (its own smoothing takes K from the last axis); the sparse form too
layouts = {}
for shape, axis in (
    ((K,), -1),
    ((K, 3, 2), 0),
    ((3, K, 4), 1),
    ((2, K, 3, 2), 1),
    ((2, 3, 2, K), -1),
):
    z = rng.normal(size=shape).astype("float32")
    ax = axis % len(shape)
    idx = rng.integers(0, K, size=shape[:ax] + shape[ax + 1 :])
    y = np.moveaxis(np.eye(K, dtype="float32")[idx], -1, ax)
    ours, native, sparse = compare(
        [
            summed(lambda p, y=y, a=axis: sk.categorical_crossentropy(y, p, True, EPS, a)),
            summed(
                lambda p, y=y, a=axis: keras.losses.categorical_crossentropy(
                    y * (1 - EPS) + EPS / K, p, True, 0.0, a
                )
            ),
            summed(
                lambda p, i=idx, a=axis: sk.sparse_categorical_crossentropy(i, p, True, None, a)
            ),
        ],
        z,
    )
    layouts[f"{shape} axis {axis}"] = worst(ours, native, sparse)
conf["layouts"] = layouts

# every float dtype: Keras's dtype out; against float64 on the same rounded inputs, smoothce
# (accumulating 16-bit floats in float32) is at least as close as Keras
dtypes = {}
for dt in ("float16", "bfloat16", "float32", "float64"):
    rounded = np_(ops.cast(ops.cast(logits, dt), "float64"))
    exact = np_(
        keras.losses.CategoricalCrossentropy(True, EPS, reduction="none", dtype="float64")(
            onehot.astype("float64"), rounded
        )
    )
    ours = sk.CategoricalCrossentropy(True, EPS, reduction="none", dtype=dt)(onehot, logits)
    native = keras.losses.CategoricalCrossentropy(True, EPS, reduction="none", dtype=dt)(
        onehot, logits
    )
    sparse = sk.SparseCategoricalCrossentropy(True, reduction="none", dtype=dt)(labels, logits)
    dtypes[dt] = {
        "dtype": str(ops.convert_to_numpy(ours).dtype),
        "native_dtype": str(ops.convert_to_numpy(native).dtype),
        "sparse_dtype": str(ops.convert_to_numpy(sparse).dtype),
        "error": maxdiff(np_(ours), exact),
        "native_error": maxdiff(np_(native), exact),
        "sparse_vs_dense": maxdiff(np_(sparse), np_(ours)),
    }
conf["dtypes"] = dtypes

# integer labels beyond a 16-bit float's exact integers (256 for bfloat16, 2048 for float16)
# are read before Keras casts y_true to the loss dtype; Keras's own loss rounds them
big_k = 3000
big_logits = rng.normal(size=(4, big_k)).astype("float32")
big_labels = np.array([300, 2049, 2500, 257])
big = {}
for dt in ("bfloat16", "float16"):
    rounded = np_(ops.cast(ops.cast(big_logits, dt), "float32")).astype("float32")
    ours = np_(
        sk.SparseCategoricalCrossentropy(True, reduction="none", dtype=dt)(big_labels, big_logits)
    )
    ours32 = np_(sk.SparseCategoricalCrossentropy(True, reduction="none")(big_labels, rounded))
    native = np_(
        keras.losses.SparseCategoricalCrossentropy(True, reduction="none", dtype=dt)(
            big_labels, big_logits
        )
    )
    native32 = np_(
        keras.losses.SparseCategoricalCrossentropy(True, reduction="none")(big_labels, rounded)
    )
    big[dt] = {
        "ours_vs_float32": float(np.max(np.abs(ours - ours32) / np.abs(ours32))),
        "native_vs_float32": float(np.max(np.abs(native - native32) / np.abs(native32))),
    }
conf["big_labels"] = big


def outcome(make) -> str:
    """The error's class name, or "no error"."""
    try:
        make()
    except Exception as err:  # the class is what is recorded
        return type(err).__name__
    return "no error"


conf["errors"] = {
    name: {"ours": outcome(lambda m=make: m(sk)), "native": outcome(lambda m=make: m(keras.losses))}
    for name, make in {
        "shape_mismatch": lambda ns: ns.CategoricalCrossentropy(from_logits=True)(
            np.eye(8, 4, dtype="float32"), logits
        ),
        "sparse_shape_mismatch": lambda ns: ns.SparseCategoricalCrossentropy(from_logits=True)(
            labels[:5], logits
        ),
        "label_out_of_range": lambda ns: ns.sparse_categorical_crossentropy(
            np.where(labels == 2, K + 2, labels), logits, True
        ),
        "eps_above_one": lambda ns: ns.CategoricalCrossentropy(label_smoothing=1.5),
    }.items()
}
results["conformance"] = conf

# 8. z_loss and softcap (logits only): values and gradients of the class and function forms,
# compared with the float64 reference by tests/test_keras_adapter.py; on TensorFlow also the
# class form inside tf.function
TERMS = {"z_loss": 1e-2, "softcap": 3.0}
dense_llm = sk.CategoricalCrossentropy(True, EPS, reduction="sum", **TERMS)
sparse_llm = sk.SparseCategoricalCrossentropy(True, reduction="sum", label_smoothing=EPS, **TERMS)
llm_fns = [
    lambda p: dense_llm(onehot, p),
    lambda p: sparse_llm(labels, p),
    summed(lambda p: sk.categorical_crossentropy(onehot, p, True, EPS, **TERMS)),
    summed(
        lambda p: sk.sparse_categorical_crossentropy(labels, p, True, label_smoothing=EPS, **TERMS)
    ),
]
llm_forms = ["class", "sparse_class", "function", "sparse_function"]
if BACKEND == "tensorflow":
    import tensorflow as tf

    llm_fns.append(tf.function(lambda p: sparse_llm(labels, p)))
    llm_forms.append("sparse_class_tf_function")
results["llm_terms"] = {
    "terms": TERMS,
    "eps": EPS,
    "logits": logits.tolist(),
    "labels": labels.tolist(),
    "per_example": np_(
        sk.SparseCategoricalCrossentropy(True, reduction="none", label_smoothing=EPS, **TERMS)(
            labels, logits
        )
    ).tolist(),
    "forms": {
        form: {"value": float(v), "grad": g.tolist()}
        for form, (v, g) in zip(llm_forms, compare(llm_fns, logits), strict=True)
    },
}

print(json.dumps(results))
