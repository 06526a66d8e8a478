"""The ``smoothce`` command line: help, the demo on tiny data for every backend, bench wiring."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from smoothce import cli
from smoothce.cli import _demo

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAVE_BENCH = importlib.util.find_spec("smoothce.cli._bench") is not None


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 examples of three Gaussian blobs in 4-D, an easy problem for two epochs."""
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 20)
    x = rng.normal(size=(60, 2, 2)) + 3.0 * np.eye(3)[y][:, :, None][:, :2]
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))
    return path


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse exits on --help and on bad options
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_commands(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    assert "demo" in out and "bench" in out


def test_demo_help_explains_options(capsys):
    code, out, _ = run_cli(["demo", "--help"], capsys)
    assert code == 0
    for option in (
        "--backend",
        "--data",
        "--epochs",
        "--eps",
        "--seed",
        "--out",
        "--no-plots",
        "--task",
        "--docs",
    ):
        assert option in out
    text = " ".join(out.split())  # argparse wraps lines at the terminal width
    assert "numpy" in text and "tensorflow" in text and "CC BY 4.0" in text
    assert "(default: 100)" in text and "(default: 0 0.05 0.1 0.2)" in text
    assert "(default: both)" in text and "eps_sweep.png" in text


def test_python_dash_m_smoothce():
    done = subprocess.run(
        [sys.executable, "-m", "smoothce.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("smoothce ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--eps", "1.5"], "[0, 1]"),
        (["demo", "--eps", "a"], "not a number"),
        (["demo", "--epochs", "0"], "at least 1"),
        (["demo", "--backend", "mxnet"], "invalid choice"),
    ],
)
def test_bad_options(capsys, argv, message):
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert message in err


def test_missing_data_file(capsys, tmp_path):
    code, _, err = run_cli(
        ["demo", "--data", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "out")], capsys
    )
    assert code == 2
    assert "nope.npz" in err and "no such file" in err


def test_data_without_y(capsys, tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((20, 3)))
    code, _, err = run_cli(["demo", "--data", str(path), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "lacks" in err and "'y'" in err


def test_demo_tiny_run(capsys, tmp_path, tiny_data):
    out_dir = tmp_path / "report"
    code, out, err = run_cli(
        [
            "demo",
            "--data",
            str(tiny_data),
            "--epochs",
            "2",
            "--eps",
            "0",
            "0.1",
            "--out",
            str(out_dir),
        ],
        capsys,
    )
    assert code == 0, err
    lines = out.splitlines()
    # the worked example comes first, computed with smoothce's softmax
    assert lines[0].startswith("The source post's worked example")
    assert "[0.4260, 0.3156, 0.2584]" in lines[1]
    assert "[0.7662, 0.1710, 0.0629]" in lines[2]
    # the table: a header and one row per run
    assert any(line.startswith("| run ") and "ECE" in line for line in lines)
    for run in ("eps=0 ", "eps=0.1 ", "soft labels", "noisy labels"):
        assert any(line.startswith(f"| {run}") for line in lines), run
    assert "[" in err and "100%" in err  # the progress bar went to stderr

    summary = (out_dir / "summary.md").read_text(encoding="utf-8")
    assert "| eps=0.1 " in summary and "## Findings" in summary
    record = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    assert [r["name"] for r in record["runs"]] == [
        "eps=0",
        "eps=0.1",
        "soft labels",
        "noisy labels",
    ]
    for r in record["runs"]:
        assert [h["epoch"] for h in r["history"]] == [1, 2]
        assert 0 <= r["final"]["ece"] <= 1 and r["final"]["temperature"] > 0
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    if HAVE_MATPLOTLIB:
        assert pngs == ["confidence_hist.png", "epochs.png", "logit_norm.png", "reliability.png"]
        assert "![reliability.png](reliability.png)" in summary
    else:
        assert pngs == []
        assert "Plots skipped: matplotlib is not installed" in out
        assert "Plots skipped" in summary


@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_demo_backends_agree_with_numpy(capsys, tmp_path, tiny_data, backend):
    pytest.importorskip(backend)
    finals = {}
    for name in ("numpy", backend):
        code, _, err = run_cli(
            [
                "demo",
                "--backend",
                name,
                "--data",
                str(tiny_data),
                "--epochs",
                "2",
                "--eps",
                "0.1",
                "--no-plots",
                "--out",
                str(tmp_path / name),
            ],
            capsys,
        )
        assert code == 0, err
        record = json.loads((tmp_path / name / "metrics.json").read_text(encoding="utf-8"))
        finals[name] = [r["final"] for r in record["runs"]]
    for want, got in zip(finals["numpy"], finals[backend], strict=True):
        assert got["accuracy"] == pytest.approx(want["accuracy"], abs=0.02)
        for key in ("nll", "logit_norm", "confidence"):
            assert got[key] == pytest.approx(want[key], rel=1e-3), key


def test_missing_framework_gives_clear_error(capsys, tmp_path, tiny_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "smoothce.jax", None)  # import now raises ImportError
    code, _, err = run_cli(
        ["demo", "--backend", "jax", "--data", str(tiny_data), "--out", str(tmp_path / "o")], capsys
    )
    assert code == 2
    assert "--backend jax needs jax" in err and "--backend numpy" in err


def test_bench_dispatch(capsys):
    code, out, err = run_cli(["bench", "--help"], capsys)
    if HAVE_BENCH:
        assert code == 0 and out
    else:
        assert code == 2
        assert "smoothce bench" in out
        assert "smoothce.cli._bench is missing" in err


def test_bundled_digits():
    path = Path(_demo.__file__).parent / "data" / "digits.npz"
    assert path.stat().st_size < 100_000
    x, y, description = _demo.load_data(None)
    assert x.shape == (1797, 64) and y.shape == (1797,)
    assert x.min() == 0 and x.max() == 16
    assert np.array_equal(np.unique(y), np.arange(10))
    assert "CC BY 4.0" in description and "10.24432/C50P49" in description
    data = _demo.split(x, y, description)
    sizes = (len(data.y_train), len(data.y_val), len(data.y_test))
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] == 359
    # the split is fixed: it does not depend on any seed option
    again = _demo.split(x, y, description)
    assert np.array_equal(data.y_test, again.y_test)


def _result(name: str, eps: float, conf: float, acc: float) -> _demo.Result:
    final = {
        "confidence": conf,
        "accuracy": acc,
        "ece": abs(conf - acc),
        "logit_norm": 5.0,
        "confidence_wrong": 0.5,
        "ece_ts": 0.01,
        "nll": 0.2,
        "nll_ts": 0.1,
    }
    hist = [
        dict(final, epoch=1, logit_norm=2.0, mid_share=0.9),
        dict(final, epoch=2, logit_norm=5.0, mid_share=0.1),
    ]
    kind = "hard"
    r = _demo.Result(_demo.Run(name, eps, kind), history=hist, final=final)
    r.temperature = 1.0
    return r


def test_findings_follow_the_numbers():
    under = _demo.findings(
        [_result("eps=0", 0.0, 0.99, 0.98), _result("eps=0.1", 0.1, 0.85, 0.98)], 10
    )
    text = "\n".join(under)
    assert "under-confident by 13.0 points" in text
    assert "made the model under-confident" in text
    assert "grew from 2.0 after epoch 1 to 5.0" in text
    over = _demo.findings(
        [_result("eps=0", 0.0, 0.95, 0.80), _result("eps=0.1", 0.1, 0.82, 0.80)], 10
    )
    text = "\n".join(over)
    assert "over-confident by 15.0 points" in text
    assert "made the model under-confident" not in text
