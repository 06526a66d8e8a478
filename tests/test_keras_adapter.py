"""smoothce.keras on the tensorflow, jax and torch Keras backends, each in its own process.

The per-backend work lives in tests/keras_backend_check.py (values and gradients against
Keras's CategoricalCrossentropy, sparse vs dense, ignore_class, reductions, errors, the seed's
model, save/load, mixed_float16); the three processes run concurrently and this module asserts on
what they report. Backend-independent behaviour is tested in-process.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

KERAS_BACKENDS = ("tensorflow", "jax", "torch")
SCRIPT = Path(__file__).with_name("keras_backend_check.py")
TIGHT = 1e-6  # float32 round-off of one loss evaluation


_CHECKERS: dict[str, tuple[subprocess.Popen, Path]] = {}


def _start_checkers() -> None:
    """Start one checker per Keras backend, at collection: they then run on the otherwise idle
    second core while the other modules' tests do (about a minute of the suite's time)."""
    for backend in KERAS_BACKENDS:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        scratch = Path(tempfile.mkdtemp(prefix=f"smoothce_keras_{backend}_"))
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(scratch)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        _CHECKERS[backend] = (proc, scratch)
    atexit.register(_stop_checkers)


def _stop_checkers() -> None:
    for proc, scratch in _CHECKERS.values():
        if proc.poll() is None:  # still running: the keras tests were deselected
            proc.kill()
            proc.communicate()
        shutil.rmtree(scratch, ignore_errors=True)


_start_checkers()


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    """The checkers' JSON reports (each waited for at most 10 minutes)."""
    out = {}
    for backend, (proc, _) in _CHECKERS.items():
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


# ---- conformance with keras.losses (section 7 of the checker) ----------------------------


def test_function_forms_and_positional_calls_match_keras(report):
    conf = report["conformance"]
    for key in [k for k in conf if k.startswith(("function_", "positional_", "y_true"))]:
        assert conf[key] < TIGHT, key


def test_every_layout_matches_keras(report):
    for layout, diff in report["conformance"]["layouts"].items():
        assert diff < 1e-5, layout


# output rounding of one loss value of about 2 (half an ulp), and float32/float64 round-off
DTYPE_TOL = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 1e-6, "float64": 1e-12}


def test_every_dtype_matches_keras(report):
    """The loss dtype is Keras's; against float64 on the same rounded inputs smoothce is as
    close as Keras (16-bit inputs are accumulated in float32)."""
    for dtype, r in report["conformance"]["dtypes"].items():
        assert r["dtype"] == r["native_dtype"] == r["sparse_dtype"], dtype
        tol = DTYPE_TOL[r["dtype"]]  # jax without x64 computes float64 losses in float32
        assert r["error"] <= r["native_error"] + tol / 2, dtype
        assert r["error"] <= tol and r["sparse_vs_dense"] <= tol, dtype


def test_sparse_labels_above_16_bit_integers_stay_exact(report):
    """Labels 257, 300, 2049, 2500 with dtype="bfloat16"/"float16": smoothce reads them before
    Keras casts y_true, so its losses are float32's up to output rounding. Pinned: Keras's own
    loss rounds the labels (257 → 256 in bfloat16, 2049 → 2048 in float16)."""
    big = report["conformance"]["big_labels"]
    assert big["bfloat16"]["ours_vs_float32"] < 8e-3
    assert big["float16"]["ours_vs_float32"] < 1e-3
    for dtype in ("bfloat16", "float16"):
        assert big[dtype]["native_vs_float32"] > 0.05, dtype


KERAS_OUT_OF_RANGE = {
    "tensorflow": "InvalidArgumentError",
    "jax": "no error",
    "torch": "IndexError",
}


def test_error_classes_match_keras_or_are_pinned(report):
    errors = report["conformance"]["errors"]
    for case in ("shape_mismatch", "sparse_shape_mismatch"):
        assert errors[case] == {"ours": "ValueError", "native": "ValueError"}, case
    # pinned: Keras's answer to a label ≥ K depends on the backend (jax: a wrong number);
    # smoothce raises its ValueError subclass eagerly on every backend
    assert errors["label_out_of_range"] == {
        "ours": "LabelRangeError",
        "native": KERAS_OUT_OF_RANGE[report["backend"]],
    }
    # pinned: Keras accepts any label_smoothing; smoothce checks [0, 1]
    assert errors["eps_above_one"] == {"ours": "ValueError", "native": "no error"}


def test_z_loss_and_softcap_match_reference(report):
    """Values and gradients with z_loss and softcap on every backend (float32 inputs) against
    the float64 reference; on TensorFlow also inside tf.function."""
    from tests.reference import reference

    llm = report["llm_terms"]
    logits, labels = np.array(llm["logits"], np.float64), np.array(llm["labels"])
    want, want_grad = reference(logits, labels, llm["eps"], reduction="sum", **llm["terms"])
    per_example, _ = reference(logits, labels, llm["eps"], reduction="none", **llm["terms"])
    np.testing.assert_allclose(llm["per_example"], per_example, rtol=1e-5)
    forms = llm["forms"]
    assert len(forms) == (5 if report["backend"] == "tensorflow" else 4)
    for form, got in forms.items():
        np.testing.assert_allclose(got["value"], want, rtol=1e-5, err_msg=form)
        np.testing.assert_allclose(got["grad"], want_grad, rtol=1e-4, atol=1e-6, err_msg=form)


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


def test_signatures_are_keras_order():
    """Keras's parameters, names, kinds and defaults, in Keras's order; only label_smoothing's
    default differs (0.1), the sparse forms add it keyword-only, and all forms add the
    keyword-only z_loss=0.0 and softcap=None last."""
    import inspect

    import keras

    import smoothce.keras as sk

    def params(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    for ours, native in (
        (sk.CategoricalCrossentropy.__init__, keras.losses.CategoricalCrossentropy.__init__),
        (
            sk.SparseCategoricalCrossentropy.__init__,
            keras.losses.SparseCategoricalCrossentropy.__init__,
        ),
        (sk.categorical_crossentropy, keras.losses.categorical_crossentropy),
        (sk.sparse_categorical_crossentropy, keras.losses.sparse_categorical_crossentropy),
    ):
        mine = params(ours)
        keyword = inspect.Parameter.KEYWORD_ONLY
        assert mine[-2:] == [("z_loss", keyword, 0.0), ("softcap", keyword, None)]
        del mine[-2:]
        if mine[-1][0] == "label_smoothing" and mine[-1][1] is inspect.Parameter.KEYWORD_ONLY:
            assert mine.pop()[2] == 0.1
        theirs = [(n, k, 0.1 if n == "label_smoothing" else d) for n, k, d in params(native)]
        assert mine == theirs, ours.__qualname__


def test_positional_arguments_mean_what_they_mean_in_keras():
    import keras

    import smoothce.keras as sk

    assert sk.CategoricalCrossentropy(True).from_logits is True
    assert sk.SparseCategoricalCrossentropy(True).from_logits is True
    args = (True, 0.2, 1, "sum", "n", "float64")
    ours = sk.CategoricalCrossentropy(*args)
    assert (ours.label_smoothing, ours.axis, ours.reduction, ours.name) == (0.2, 1, "sum", "n")
    assert ours.get_config() == keras.losses.CategoricalCrossentropy(*args).get_config()
    args = (True, 3, "sum", 1, "n", "float64")
    ours = sk.SparseCategoricalCrossentropy(*args)
    assert (ours.ignore_class, ours.reduction, ours.axis, ours.name) == (3, "sum", 1, "n")
    native = keras.losses.SparseCategoricalCrossentropy(*args).get_config()
    assert native.items() <= ours.get_config().items()  # plus label_smoothing and axis
    with pytest.raises(TypeError):  # the sparse class's label_smoothing is keyword-only
        sk.SparseCategoricalCrossentropy(True, None, "sum", -1, "n", None, 0.1)


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


# ---- z_loss and softcap --------------------------------------------------------------------


def test_z_loss_and_softcap_config_round_trip():
    import keras

    import smoothce.keras as sk

    for loss in (
        sk.CategoricalCrossentropy(True, 0.2, z_loss=1e-4, softcap=30.0),
        sk.SparseCategoricalCrossentropy(True, 3, label_smoothing=0.2, z_loss=1e-4, softcap=30),
    ):
        config = loss.get_config()
        assert (config["z_loss"], config["softcap"]) == (1e-4, 30.0)
        assert (loss.z_loss, loss.softcap) == (1e-4, 30.0)
        clone = type(loss).from_config(config)
        assert clone.get_config() == config and clone.spec == loss.spec
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(restored) is type(loss) and restored.spec == loss.spec
    # unset, they stay out of the config (equal to Keras's own, see the positional test) and
    # configs saved without them load with the defaults
    config = sk.SparseCategoricalCrossentropy(True).get_config()
    assert "z_loss" not in config and "softcap" not in config
    only_z = sk.CategoricalCrossentropy(True, z_loss=0.5).get_config()
    assert only_z["z_loss"] == 0.5 and "softcap" not in only_z


@pytest.mark.parametrize(
    ("name", "bad", "error"),
    [
        ("z_loss", -1.0, ValueError),
        ("z_loss", float("nan"), ValueError),
        ("z_loss", "x", TypeError),
        ("softcap", 0.0, ValueError),
        ("softcap", float("nan"), ValueError),
        ("softcap", True, TypeError),
    ],
)
def test_bad_z_loss_and_softcap_raise(name, bad, error):
    import smoothce.keras as sk

    y, z = np.array([0, 1]), np.zeros((2, 3), "float32")
    for make in (
        lambda kw: sk.CategoricalCrossentropy(True, **kw),
        lambda kw: sk.SparseCategoricalCrossentropy(True, **kw),
        lambda kw: sk.categorical_crossentropy(np.eye(3)[y], z, True, **kw),
        lambda kw: sk.sparse_categorical_crossentropy(y, z, True, **kw),
    ):
        with pytest.raises(error, match=name):
            make({name: bad})


def test_z_loss_and_softcap_need_logits():
    """From probabilities (from_logits=False) the core sees only log-probabilities: their
    log-sum-exp is 0, so a z-loss would add nothing, and soft-capping them is not Gemma's
    cap of the logits; both are refused, naming what was given."""
    import smoothce.keras as sk

    y, p = np.array([0, 1]), np.full((2, 3), 1 / 3, "float32")
    for kw, named in (
        ({"z_loss": 1e-3}, "z_loss=0.001 acts"),
        ({"softcap": 5.0}, "softcap=5.0 acts"),
        ({"z_loss": 1e-3, "softcap": 5.0}, "z_loss=0.001 and softcap=5.0 act"),
    ):
        for make in (
            lambda kw: sk.CategoricalCrossentropy(**kw),
            lambda kw: sk.SparseCategoricalCrossentropy(False, **kw),
            lambda kw: sk.categorical_crossentropy(np.eye(3)[y], p, **kw),
            lambda kw: sk.sparse_categorical_crossentropy(y, p, False, **kw),
        ):
            with pytest.raises(ValueError, match=f"{named} on logits and need from_logits=True"):
                make(kw)
    # the defaults are fine with probabilities
    assert sk.CategoricalCrossentropy(z_loss=0.0, softcap=None).spec.probabilities is not None
