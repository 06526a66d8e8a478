"""smoothce.tensorflow and smoothce.keras under tf.distribute.MirroredStrategy, in its own process.

Two logical CPU devices must be configured before TensorFlow initialises, hence a separate
process. Prints one JSON object (last line) that tests/test_tensorflow_adapter.py asserts on.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import smoothce.tensorflow as stf  # noqa: E402

EPS = 0.1
GLOBAL_BATCH, FEATURES, K = 8, 6, 5
rng = np.random.default_rng(0)
x = rng.normal(size=(GLOBAL_BATCH, FEATURES)).astype("float32")
y = rng.integers(0, K, size=GLOBAL_BATCH).astype("int32")
w0 = rng.normal(size=(FEATURES, K)).astype("float32")
results: dict[str, object] = {}


def step(weights: tf.Variable, xb: tf.Tensor, yb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Loss summed over the batch / global batch, and its gradient w.r.t. the weights."""
    with tf.GradientTape() as tape:
        logits = xb @ weights
        sparse = stf.sparse_softmax_cross_entropy_with_logits(yb, logits, label_smoothing=EPS)
        dense = stf.softmax_cross_entropy_with_logits(
            tf.one_hot(yb, K), logits, label_smoothing=EPS
        )
        loss = tf.reduce_sum(sparse + dense) / GLOBAL_BATCH
    return loss, tape.gradient(loss, weights)


single = tf.Variable(w0)
loss1, grad1 = tf.function(step)(single, tf.constant(x), tf.constant(y))

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
results["replicas"] = strategy.num_replicas_in_sync
with strategy.scope():
    mirrored = tf.Variable(w0)
dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
batch = next(iter(strategy.experimental_distribute_dataset(dataset)))


@tf.function
def distributed(xb: tf.Tensor, yb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    loss, grad = strategy.run(step, args=(mirrored, xb, yb))
    return (
        strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
        strategy.reduce(tf.distribute.ReduceOp.SUM, grad, axis=None),
    )


loss2, grad2 = distributed(*batch)
results["loss_diff"] = float(abs(loss1 - loss2))
results["grad_diff"] = float(tf.reduce_max(tf.abs(grad1 - grad2)))
results["loss"] = float(loss1)

# A Keras model compiled with smoothce.keras and fitted under the same strategy
import keras  # noqa: E402

import smoothce.keras as sk  # noqa: E402

with strategy.scope():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input(shape=(FEATURES,)), keras.layers.Dense(K, activation="softmax")]
    )
    model.compile(optimizer="adam", loss=sk.SparseCategoricalCrossentropy(label_smoothing=EPS))
history = model.fit(x, y, epochs=2, batch_size=GLOBAL_BATCH, verbose=0)
results["keras_history"] = [float(v) for v in history.history["loss"]]
# Keras's native loss on the same model and data: the strategy-scaled reductions must agree
probs = model.predict(x, verbose=0)
native = keras.losses.CategoricalCrossentropy(label_smoothing=EPS)(np.eye(K)[y], probs)
results["keras_evaluate_vs_native"] = abs(float(model.evaluate(x, y, verbose=0)) - float(native))
print(json.dumps(results))
