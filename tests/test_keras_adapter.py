"""smoothce.keras on the tensorflow, jax and torch Keras backends, each in its own process.

The per-backend work lives in tests/keras_backend_check.py (values and gradients against
Keras's CategoricalCrossentropy, sparse vs dense, ignore_class, reductions, errors, the seed's
model, save/load, mixed_float16); the three processes run concurrently and this module asserts on
what they report. Backend-independent behaviour is tested in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

KERAS_BACKENDS = ("tensorflow", "jax", "torch")
SCRIPT = Path(__file__).with_name("keras_backend_check.py")
TIGHT = 1e-6  # float32 round-off of one loss evaluation


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Start one checker per Keras backend at once, then collect their JSON reports."""
    procs = {}
    for backend in KERAS_BACKENDS:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        scratch = tmp_path_factory.mktemp(f"keras_{backend}")
        procs[backend] = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(scratch)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    out = {}
    for backend, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        out[backend] = (
            json.loads(stdout.strip().splitlines()[-1])
            if proc.returncode == 0
            else {"failed": stderr[-4000:]}
        )
    return out


@pytest.fixture(params=KERAS_BACKENDS)
def report(request: pytest.FixtureRequest, reports: dict[str, dict]) -> dict:
    result = reports[request.param]
    assert "failed" not in result, f"{request.param} checker failed:\n{result.get('failed')}"
    assert result["backend"] == request.param
    return result


def test_matches_keras_categorical_crossentropy(report):
    for tag in ("logits", "probs"):
        assert report[f"cce_{tag}_value"] < TIGHT
        # gradients w.r.t. probabilities are ~10, w.r.t. logits ~0.1: compare relatively
        assert report[f"cce_{tag}_grad"] < 1e-6 * max(1.0, report[f"grad_scale_{tag}"])
        assert report[f"axis1_{tag}_value"] < TIGHT
        assert report[f"axis1_{tag}_grad"] < 1e-5


def test_sparse_equals_dense(report):
    for tag in ("logits", "probs"):
        assert report[f"sparse_vs_dense_{tag}_value"] < TIGHT
        assert report[f"sparse_vs_dense_{tag}_grad"] < 1e-5
        assert report[f"axis1_sparse_{tag}_value"] < TIGHT
        assert report[f"axis1_sparse_{tag}_grad"] < 1e-5
    assert report["sparse_column_labels"] < TIGHT


def test_reductions_and_sample_weights_are_keras(report):
    assert report["per_example_shape"] == [8]
    for red in ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight"):
        assert report[f"reduction_{red}"] < 1e-5, red


def test_ignore_class(report):
    # ε = 0 reproduces Keras's ignore_class exactly, masking the reduction included
    assert report["ignore_eps0_value"] < TIGHT and report["ignore_eps0_grad"] < TIGHT
    # ε > 0: the mean of the smoothed loss over the kept examples; ignored rows get no gradient
    assert report["ignore_value"] < TIGHT and report["ignore_grad_kept"] < TIGHT
    assert report["ignore_grad_ignored"] == 0.0


def test_errors_name_the_bad_value(report):
    errors = report["errors"]
    assert "ValueError" in errors["eps_negative"] and "got -0.1" in errors["eps_negative"]
    assert "ValueError" in errors["eps_above_one"] and "got 1.5" in errors["eps_above_one"]
    assert "TypeError" in errors["eps_string"] and "got 'a'" in errors["eps_string"]
    assert "label 7 is out of range" in errors["label_out_of_range"]


def test_seed_model_fits_and_equals_seed_formula(report):
    history = report["seed_history"]
    assert len(history) == 2 and all(np.isfinite(history))
    assert history[1] < history[0]
    # (1 − ε)·CE(y, p) + ε·CE(uniform, p) with keras.losses.categorical_crossentropy
    assert report["seed_formula"] < 2e-6


def test_save_and_load_round_trip(report):
    trips = report["round_trips"]
    assert trips["cce"]["type"] == "CategoricalCrossentropy"
    assert trips["cce"]["config"]["label_smoothing"] == 0.2
    assert trips["sparse"]["type"] == "SparseCategoricalCrossentropy"
    assert trips["sparse"]["config"]["label_smoothing"] == 0.3
    assert trips["sparse"]["config"]["ignore_class"] == 9
    assert trips["factory"]["type"] == "SmoothCrossentropyFn"
    assert trips["factory"]["config"]["eps"] == 0.25
    for trip in trips.values():
        assert trip["value_diff"] < TIGHT
        # the compiled loss (Keras's reduction) is the mean of the per-example losses
        assert trip["evaluate_vs_direct"] < 1e-5


def test_mixed_float16_policy(report):
    assert report["mixed_pred_dtype"] == "float16"
    assert report["mixed_loss_dtype"] == "float32"
    assert all(np.isfinite(report["mixed_history"]))
    assert report["mixed_vs_native"] < 1e-5


def test_no_foreign_framework_imported(reports):
    assert reports["jax"].get("frameworks_loaded") == ["jax"]


# ---- in-process, backend-independent --------------------------------------------------


def test_config_and_registration():
    import keras

    import smoothce.keras as sk

    loss = sk.SparseCategoricalCrossentropy(
        label_smoothing=0.2, from_logits=True, ignore_class=-1, axis=1
    )
    config = loss.get_config()
    assert config["label_smoothing"] == 0.2 and config["ignore_class"] == -1
    clone = sk.SparseCategoricalCrossentropy.from_config(config)
    assert clone.get_config() == config
    assert keras.saving.get_registered_name(sk.CategoricalCrossentropy) == (
        "smoothce>CategoricalCrossentropy"
    )
    restored = keras.losses.deserialize(
        keras.losses.serialize(sk.CategoricalCrossentropy(label_smoothing=0.3))
    )
    assert isinstance(restored, sk.CategoricalCrossentropy)
    assert restored.label_smoothing == 0.3
    assert sk.CategoricalCrossentropy().label_smoothing == 0.1  # the pinned default


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("inf"), "0.1x", None, True])
def test_bad_label_smoothing_raises(bad):
    import smoothce.keras as sk

    error = ValueError if isinstance(bad, float) else TypeError  # a wrong value, a wrong type
    for make in (
        lambda e: sk.CategoricalCrossentropy(label_smoothing=e),
        lambda e: sk.SparseCategoricalCrossentropy(label_smoothing=e),
        sk.smooth_crossentropy,
    ):
        with pytest.raises(error, match="label_smoothing"):
            make(bad)


def test_bad_ignore_class_and_axis_raise():
    import smoothce.keras as sk

    with pytest.raises(TypeError, match="ignore_class"):
        sk.SparseCategoricalCrossentropy(ignore_class=1.5)
    with pytest.raises(TypeError, match="axis"):
        sk.CategoricalCrossentropy(axis="last")
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        sk.SparseCategoricalCrossentropy(axis=3)(np.zeros(2), np.ones((2, 3)) / 3)
