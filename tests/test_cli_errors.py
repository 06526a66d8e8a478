"""Every error of the ``smoothce`` command line: one line ``smoothce COMMAND: error: ...`` on
stderr, exit code 2, no traceback, and found before any training or benchmarking."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from smoothce.cli import _bench, _demo
from tests.test_cli import run_cli

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def one_error_line(err: str, command: str) -> str:
    """The single ``smoothce COMMAND: error:`` line of ``err`` (argparse's usage may precede)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"smoothce {command}: error: ")]
    assert len(errors) == 1, err
    assert lines[-1] == errors[0], err
    return errors[0]


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if the demo starts training."""

    def train(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo trained before finding the error")

    monkeypatch.setattr(_demo, "train", train)


def _blobs(n: int = 30, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = np.arange(n) % k
    return rng.normal(size=(n, 4)).astype(np.float32) + y[:, None], y.astype(np.int64)


@pytest.fixture
def good_data(tmp_path: Path) -> Path:
    path = tmp_path / "good.npz"
    x, y = _blobs()
    np.savez(path, x=x, y=y)
    return path


def demo_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code, out, err = run_cli(["demo", *argv], capsys)
    assert code == 2, (out, err)
    assert out == ""  # not even the worked example: the error came first
    return one_error_line(err, "demo")


# --- demo: outputs are checked before training -----------------------------------------------


def test_out_existing_file(capsys, tmp_path, good_data, no_training):
    target = tmp_path / "report.txt"
    target.write_text("keep me", encoding="utf-8")
    line = demo_error(capsys, ["--data", str(good_data), "--epochs", "1", "--out", str(target)])
    assert f"--out {target}" in line and "not a directory" in line
    assert target.read_text(encoding="utf-8") == "keep me"


def test_out_under_a_file(capsys, tmp_path, good_data, no_training):
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    target = blocker / "sub" / "report"
    line = demo_error(capsys, ["--data", str(good_data), "--epochs", "1", "--out", str(target)])
    assert str(target) in line and f"{blocker} is not a directory" in line


def test_out_file_inside_is_a_directory(capsys, tmp_path, good_data, no_training):
    (tmp_path / "summary.md").mkdir()
    line = demo_error(capsys, ["--data", str(good_data), "--epochs", "1", "--out", str(tmp_path)])
    assert "summary.md" in line and "not a regular file" in line


@pytest.mark.skipif(ROOT_USER or os.name != "posix", reason="root writes into read-only folders")
@pytest.mark.parametrize("sub", ["", "new"])
def test_out_read_only_directory(capsys, tmp_path, good_data, no_training, sub):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        target = locked / sub if sub else locked
        line = demo_error(capsys, ["--data", str(good_data), "--out", str(target)])
    finally:
        locked.chmod(0o755)
    assert str(target) in line and "Permission denied" in line
    assert not (locked / "new").exists()


def test_out_is_not_created_when_data_is_bad(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip", encoding="utf-8")
    demo_error(capsys, ["--data", str(bad), "--out", str(tmp_path / "report")])
    assert not (tmp_path / "report").exists()


def test_docs_not_a_directory(capsys, tmp_path, no_training):
    page = tmp_path / "calibration.md"
    page.write_text("", encoding="utf-8")
    line = demo_error(capsys, ["--docs", str(page), "--out", str(tmp_path / "o")])
    assert f"--docs {page}: not a directory" in line


def test_docs_figures_folder_is_a_file(capsys, tmp_path, no_training):
    docs = tmp_path / "docs"
    docs.mkdir()
    page = Path(__file__).resolve().parents[1] / "docs" / _demo.DOCS_PAGE
    (docs / _demo.DOCS_PAGE).write_text(page.read_text(encoding="utf-8"), encoding="utf-8")
    (docs / _demo.DOCS_FIGURES).write_text("", encoding="utf-8")
    line = demo_error(capsys, ["--docs", str(docs), "--out", str(tmp_path / "o")])
    assert f"--docs {docs}" in line and "figures" in line and "not a directory" in line


# --- demo: --data problems name the file -----------------------------------------------------


def _save(path: Path, **arrays: np.ndarray) -> None:
    with path.open("wb") as f:
        np.savez(f, **arrays)


X, Y = _blobs()
BAD_ARRAYS = {
    "x-one-dimensional": ({"x": X[:, 0], "y": Y}, "x must have shape (N, features...)"),
    "y-two-dimensional": ({"x": X, "y": Y[:, None]}, "y must have shape (N,)"),
    "lengths-differ": ({"x": X, "y": Y[:20]}, "x has 30 rows but y has 20 labels"),
    "no-features": ({"x": X[:, :0], "y": Y}, "x has no features"),
    "too-few-examples": ({"x": X[:5], "y": Y[:5]}, "at least 10 examples"),
    "fractional-labels": ({"x": X, "y": Y + 0.5}, "integer class labels, got 0.5"),
    "infinite-labels": ({"x": X, "y": np.where(Y == 2, np.inf, Y)}, "NaN or infinite label"),
    "string-labels": ({"x": X, "y": Y.astype(str)}, "integer class labels, got dtype <U"),
    "negative-labels": ({"x": X, "y": Y - 1}, "labels must be >= 0, got -1"),
    "huge-label": ({"x": X, "y": np.where(np.arange(30) == 0, 10**9, Y)}, "1000000001 classes"),
    "huge-float-label": ({"x": X, "y": np.where(np.arange(30) == 0, 1e30, Y)}, "classes;"),
    "more-classes-than-examples": ({"x": X, "y": Y * 20}, "41 classes"),
    "one-class": ({"x": X, "y": Y * 0}, "at least 2 classes"),
    "complex-features": ({"x": X + 1j, "y": Y}, "x is complex (complex"),
    "string-features": ({"x": X.astype(str), "y": Y}, "x must hold real numbers, got dtype <U"),
    "nan-features": ({"x": np.where(X > 2, np.nan, X), "y": Y}, "NaN or infinite value"),
    "inf-features": ({"x": np.where(X > 2, -np.inf, X), "y": Y}, "NaN or infinite value"),
    "float32-overflow": ({"x": np.where(X > 2, 1e300, X), "y": Y}, "too large for float32"),
    "object-features": ({"x": np.full((30, 2), None), "y": Y}, "cannot read array 'x'"),
    "missing-y": ({"x": X}, "lacks array(s) ['y']"),
}


@pytest.mark.parametrize("case", BAD_ARRAYS)
def test_bad_data_arrays(capsys, tmp_path, no_training, case):
    arrays, message = BAD_ARRAYS[case]
    path = tmp_path / f"{case}.npz"
    _save(path, **arrays)
    line = demo_error(capsys, ["--data", str(path), "--out", str(tmp_path / "o")])
    assert line.startswith(f"smoothce demo: error: --data {path}: "), line
    assert message in line


def _not_npz(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.npz"
    if kind == "text":
        path.write_text("x,y\n1,2\n", encoding="utf-8")
    elif kind == "npy":
        with path.open("wb") as f:
            np.save(f, X)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        _save(path, x=X, y=Y)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] + data[-22:])  # a zip end record, no content
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("text", "not an .npz file"),
        ("npy", "not an .npz file"),
        ("empty", "not an .npz file"),
        ("truncated", "not a readable .npz file"),
        ("folder", "not a file"),
        ("missing", "no such file"),
    ],
)
def test_unreadable_data_file(capsys, tmp_path, no_training, kind, message):
    path = _not_npz(tmp_path, kind)
    line = demo_error(capsys, ["--data", str(path), "--out", str(tmp_path / "o")])
    assert line.startswith(f"smoothce demo: error: --data {path}: {message}"), line


def test_data_rule_is_documented(capsys):
    code, out, _ = run_cli(["demo", "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0 and "at most 10,000 and at most N" in text
    assert _demo.MAX_CLASSES == 10_000


def test_negative_seed_is_a_usage_error(capsys, no_training):
    code, out, err = run_cli(["demo", "--seed", "-1"], capsys)
    assert code == 2 and out == ""
    assert "--seed" in one_error_line(err, "demo")


# --- bench -----------------------------------------------------------------------------------


@pytest.fixture
def no_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if the benchmark starts."""

    def run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the benchmark ran before finding the error")

    monkeypatch.setattr(_bench, "run", run)


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bench_bad_repeats(capsys, no_bench, value):
    code, out, err = run_cli(["bench", "--repeats", value], capsys)
    assert code == 2 and out == ""
    assert "--repeats" in one_error_line(err, "bench")


def test_bench_out_is_a_directory(capsys, tmp_path, no_bench):
    code, out, err = run_cli(["bench", "--quick", "--out", str(tmp_path)], capsys)
    assert code == 2 and out == ""
    line = one_error_line(err, "bench")
    assert f"--out {tmp_path}: is a directory" in line


@pytest.mark.parametrize("where", ["missing/b.md", "file/b.md"])
def test_bench_out_unwritable(capsys, tmp_path, no_bench, where):
    (tmp_path / "file").write_text("", encoding="utf-8")
    target = tmp_path / where
    code, out, err = run_cli(["bench", "--quick", "--out", str(target)], capsys)
    assert code == 2 and out == ""
    line = one_error_line(err, "bench")
    assert f"--out {target}: cannot write it" in line
    assert ("does not exist" if where.startswith("missing") else "is not a directory") in line


@pytest.mark.skipif(ROOT_USER or os.name != "posix", reason="root writes into read-only folders")
def test_bench_out_read_only(capsys, tmp_path, no_bench):
    tmp_path.chmod(0o555)
    try:
        code, _, err = run_cli(["bench", "--quick", "--out", str(tmp_path / "b.md")], capsys)
    finally:
        tmp_path.chmod(0o755)
    assert code == 2 and "Permission denied" in one_error_line(err, "bench")


def _fake_subprocess(fail: set[str]):
    def subprocess(args: list[str]) -> dict[str, float]:
        if args[2] in fail:
            raise RuntimeError(f"{args[2]} is broken")
        return {"smoothce": 1.0, "hand-written NumPy": 2.0}

    return subprocess


def test_bench_every_case_failed(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(_bench, "_subprocess", _fake_subprocess({"numpy"}))
    report = tmp_path / "bench.md"
    report.write_text("an earlier good table", encoding="utf-8")
    argv = ["bench", "--frameworks", "numpy", "--quick", "--no-memory", "--out", str(report)]
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert "(failed: numpy is broken)" in out
    line = one_error_line(err, "bench")
    assert "every case failed (4)" in line and "numpy is broken" in line
    assert report.read_text(encoding="utf-8") == "an earlier good table"


def test_bench_some_cases_failed_still_writes(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(_bench, "_subprocess", _fake_subprocess({"torch"}))
    monkeypatch.setattr(_bench, "_machine", lambda: "a test machine")  # imports no framework
    report = tmp_path / "bench.md"
    argv = ["bench", "--frameworks", "numpy", "torch", "--quick", "--no-memory"]
    code, out, err = run_cli([*argv, "--out", str(report)], capsys)
    assert code == 0, err
    assert "(failed: torch is broken)" in out and "### NumPy" in out
    written = report.read_text(encoding="utf-8")
    assert "| smoothce | 1.00 | 0.50 |" in written and "a test machine" in written
    # written again: the tables between the markers are replaced, the rest of the page kept
    report.write_text(written.replace("## Machine", "Kept prose.\n\n## Machine"))
    run_cli([*argv, "--out", str(report)], capsys)
    again = report.read_text(encoding="utf-8")
    assert again.count("### NumPy") == 1 and "Kept prose." in again


def test_bench_out_check_leaves_nothing_behind(tmp_path):
    target = tmp_path / "new.md"
    assert _bench.out_problem(str(target)) is None
    assert not target.exists()
