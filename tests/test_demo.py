"""``smoothce demo``: the two bundled tasks, the ε sweep, findings computed from the measured
table, and the calibration guide that the default run regenerates."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import importlib.util
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from smoothce import cli
from smoothce.cli import _demo
from tests.test_cli import run_cli

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# the source post may be called so, never "the seed" (--seed, a random seed, is fine)
SEED_AS_POST = re.compile(r"\bseed(?:'s|\s+post|\s+example)", re.IGNORECASE)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 examples of three Gaussian blobs in 4-D, an easy problem for two epochs."""
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(3), 30)
    x = rng.normal(size=(90, 4)) + 3.0 * np.eye(4)[y]
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))
    return path


# --- the hard task ---------------------------------------------------------------------------


def test_hard_task_is_deterministic_and_independent_of_seed():
    x, _, _ = _demo.load_data(None)
    first, again = _demo.noisy_digits(x), _demo.noisy_digits(x)
    assert first.dtype == np.float32 and first.shape == x.shape
    assert np.array_equal(first, again)
    noise = first.astype(np.float64) - x
    assert abs(noise.std() - _demo.HARD_SIGMA) < 0.05 and abs(noise.mean()) < 0.05

    by_seed = {seed: _demo.make_tasks(_demo.Options(seed=seed)) for seed in (0, 7)}
    assert [t.name for t in by_seed[0]] == ["easy", "hard"]
    for a, b in zip(by_seed[0], by_seed[7], strict=True):
        for f in dataclasses.fields(_demo.Data):
            va, vb = getattr(a.data, f.name), getattr(b.data, f.name)
            if isinstance(va, np.ndarray):
                assert np.array_equal(va, vb), (a.name, f.name)
            else:
                assert va == vb
    easy, hard = by_seed[0]
    # the same images in the same split with the same labels: only the pixels differ
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(easy.data, f"y_{part}"), getattr(hard.data, f"y_{part}"))
        xe, xh = getattr(easy.data, f"x_{part}"), getattr(hard.data, f"x_{part}")
        assert xe.shape == xh.shape and not np.allclose(xe, xh)
    assert easy.figures == [f"easy_{f}.png" for f in _demo.TASK_FIGURES]
    assert hard.figures == [f"hard_{f}.png" for f in _demo.TASK_FIGURES]


@pytest.mark.parametrize(
    ("task", "names"), [("easy", ["easy"]), ("hard", ["hard"]), ("both", ["easy", "hard"])]
)
def test_task_option(capsys, tmp_path, task, names):
    code, out, err = run_cli(
        [
            "demo",
            "--task",
            task,
            "--epochs",
            "1",
            "--eps",
            "0,0.1",
            "--no-plots",
            "--out",
            str(tmp_path),
        ],
        capsys,
    )
    assert code == 0, err
    record = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert [t["name"] for t in record["tasks"]] == names
    assert [(r["task"], r["name"]) for r in record["runs"]] == [
        (n, run) for n in names for run in ("eps=0", "eps=0.1", "soft labels", "noisy labels")
    ]
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    headings = {"easy": "Easy task: the digits as they are", "hard": "Hard task: the digits"}
    for name in names:
        assert f"## {headings[name]}" in summary and headings[name] in out
    assert sum(line.startswith("| run ") for line in out.splitlines()) == len(names)
    assert ("## Both tasks" in summary) == (task == "both")
    assert ("Both tasks:" in out) == (task == "both")


def test_task_does_not_apply_to_own_data(capsys, tmp_path, blobs):
    code, _, err = run_cli(
        ["demo", "--data", str(blobs), "--task", "hard", "--out", str(tmp_path)], capsys
    )
    assert code == 2 and "--task" in err and "--data" in err


def test_bad_task(capsys):
    code, _, err = run_cli(["demo", "--task", "medium"], capsys)
    assert code == 2 and "invalid choice" in err


# --- the ε sweep -----------------------------------------------------------------------------


def test_eps_sweep(capsys, tmp_path, blobs):
    code, out, err = run_cli(
        [
            "demo",
            "--data",
            str(blobs),
            "--epochs",
            "2",
            "--eps",
            "0,0.1,0.2",
            "--out",
            str(tmp_path),
        ],
        capsys,
    )
    assert code == 0, err
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "## The ε sweep" in summary
    assert "Across the ε sweep (ε from 0 to 0.2)" in summary
    assert "Across the ε sweep (ε from 0 to 0.2)" in out
    if HAVE_MATPLOTLIB:
        assert (tmp_path / _demo.SWEEP_FIGURE).stat().st_size > 10_000
        assert f"({_demo.SWEEP_FIGURE})" in summary
        assert _demo.SWEEP_FIGURE in out
    else:
        assert not (tmp_path / _demo.SWEEP_FIGURE).exists()


def test_sweep_figure_for_two_tasks(tmp_path):
    if not HAVE_MATPLOTLIB:  # the figures are optional: without matplotlib the module is absent
        with pytest.raises(ImportError):
            importlib.import_module("smoothce.cli._plots")
        return
    from smoothce.cli import _plots

    tasks = [("easy", _easy_table()), ("hard", _hard_table())]
    path = _plots.write_sweep(tasks, tmp_path / "sweep.png")
    assert path == tmp_path / "sweep.png" and path.stat().st_size > 10_000


# --- findings follow the measured table ------------------------------------------------------


def _res(
    name: str,
    eps: float,
    acc: float,
    conf: float,
    ece: float,
    nll: float,
    *,
    kind: str = "hard",
    ece_ts: float = 0.05,
    nll_ts: float = 0.5,
    t: float = 1.0,
) -> _demo.Result:
    final = {
        "accuracy": acc,
        "confidence": conf,
        "ece": ece,
        "nll": nll,
        "ece_ts": ece_ts,
        "nll_ts": nll_ts,
        "temperature": t,
        "logit_norm": 20.0 if eps == 0 and kind == "hard" else 5.0,
        "mid_share": 0.5,
        "confidence_wrong": 0.6,
    }
    r = _demo.Result(_demo.Run(name, eps, kind), history=[dict(final, epoch=1)], final=final)
    r.temperature = t
    return r


def _hard_table(**changes: dict[str, float]) -> list[_demo.Result]:
    rows = [
        _res("eps=0", 0.0, 0.760, 0.908, 0.149, 1.004, ece_ts=0.060, nll_ts=0.695, t=2.25),
        _res("eps=0.05", 0.05, 0.713, 0.682, 0.059, 0.917),
        _res("eps=0.1", 0.1, 0.708, 0.617, 0.114, 0.986),
        _res("eps=0.2", 0.2, 0.705, 0.528, 0.176, 1.114),
        _res("soft labels", 0.0, 0.727, 0.676, 0.062, 0.828, kind="soft"),
    ]
    for r in rows:
        r.final.update(changes.get(r.run.name, {}))
    return rows


def _easy_table() -> list[_demo.Result]:
    return [
        _res("eps=0", 0.0, 0.983, 0.987, 0.015, 0.119, ece_ts=0.018, nll_ts=0.111, t=1.12),
        _res("eps=0.05", 0.05, 0.989, 0.899, 0.092, 0.150),
        _res("eps=0.1", 0.1, 0.989, 0.844, 0.147, 0.210),
        _res("eps=0.2", 0.2, 0.989, 0.749, 0.246, 0.337),
    ]


def test_remedy_findings_follow_the_table():
    text = "\n".join(_demo.remedy_findings(_hard_table()))
    assert "Against the plain model (ε = 0: ECE 0.149, NLL 1.004, accuracy 0.760)" in text
    assert "eps=0.05 lowered ECE by 0.090 and lowered NLL by 0.087, at a cost of 4.7" in text
    assert "eps=0.2 raised ECE by 0.027 and raised NLL by 0.110, at a cost of 5.5" in text
    assert "Largest ECE reduction: eps=0.05, from 0.149 to 0.059" in text
    assert "Largest NLL reduction: soft labels, from 1.004 to 0.828" in text
    assert "gives test ECE 0.060 and NLL 0.695" in text
    assert "eps=0.05 ECE -0.001, NLL +0.222" in text
    assert "So eps=0.05 reached a lower ECE and none a lower NLL." in text

    # other numbers, other claims
    text = "\n".join(
        _demo.remedy_findings(
            _hard_table(**{"eps=0.05": {"ece": 0.070}, "eps=0.1": {"nll": 0.600}})
        )
    )
    assert "Largest ECE reduction: soft labels, from 0.149 to 0.062" in text
    assert "Largest NLL reduction: eps=0.1, from 1.004 to 0.600" in text
    assert "So none reached a lower ECE and eps=0.1 a lower NLL." in text

    text = "\n".join(_demo.remedy_findings(_easy_table()))
    assert "No remedy lowered the plain model's ECE (0.015) or NLL (0.119)." in text
    assert "eps=0.05 raised ECE by 0.077 and raised NLL by 0.031, with 0.6 accuracy" in text
    assert "So no training-time remedy reached a lower ECE or NLL than it." in text
    assert _demo.remedy_findings(_easy_table()[1:]) == []  # no plain model to compare with


def test_sweep_findings_follow_the_table():
    (text,) = _demo.sweep_findings(_hard_table())
    assert "the ECE is lowest at ε = 0.05 (0.059, against 0.149 at ε = 0)" in text
    assert "past it smoothing over-corrects: the ECE rises to 0.176 at ε = 0.2" in text
    assert "under-confident by 17.7 points" in text
    assert "The NLL is lowest at ε = 0.05 (0.917)" in text

    (text,) = _demo.sweep_findings(_hard_table(**{"eps=0.2": {"ece": 0.030}}))
    assert "lowest at the largest ε tried, 0.2 (0.030" in text and "over-corrects" not in text

    (text,) = _demo.sweep_findings(_easy_table())
    assert "lowest at ε = 0 (0.015); every larger ε gave a higher ECE, up to 0.246" in text
    assert _demo.sweep_findings(_easy_table()[:2]) == []  # two ε are no sweep


def _task_result(name: str, results: list[_demo.Result]) -> _demo.TaskResult:
    return _demo.TaskResult(_demo.Task(name, name, name, None), results)  # type: ignore[arg-type]


def test_contrast_findings_follow_the_tables():
    both = [_task_result("easy", _easy_table()), _task_result("hard", _hard_table())]
    text = "\n".join(_demo.contrast_findings(both))
    assert "Easy task: the plain model (ε = 0) has accuracy 0.983" in text
    assert "about calibrated on average (gap +0.4 points)" in text
    assert "Here label smoothing raised the ECE at every ε tried" in text
    assert "Hard task: the plain model (ε = 0) has accuracy 0.760" in text
    assert "over-confident by 14.8 points" in text
    assert "lowered the ECE at ε = 0.05, 0.1 and not at ε = 0.2" in text
    assert "only where the plain model was over-confident (hard), not where it was not (easy)" in (
        text
    )
    # an over-confident easy model that smoothing helps: the contrast no longer holds
    easy = _easy_table()
    easy[0].final.update(confidence=0.999, accuracy=0.900, ece=0.300)
    text = "\n".join(_demo.contrast_findings([_task_result("easy", easy), both[1]]))
    assert "Easy task: the plain model (ε = 0) has accuracy 0.900" in text
    assert "over-confident by 9.9 points" in text
    assert "lowered the ECE at every ε tried (lowest 0.092 at ε = 0.05)" in text
    assert "only where" not in text


def test_findings_name_the_regime():
    over = "\n".join(_demo.findings(_hard_table(), 10))
    assert "eps=0: mean confidence 0.908 against accuracy 0.760, over-confident by 14.8" in over
    assert "Lowest test ECE without post-hoc scaling: eps=0.05 (0.059)." in over
    under = "\n".join(_demo.findings(_easy_table(), 10))
    assert "made the model under-confident" in under
    assert "Lowest test ECE without post-hoc scaling: eps=0 (0.015)." in under


# --- the calibration guide -------------------------------------------------------------------


def test_fill_page_replaces_only_the_blocks():
    page = "\n".join(
        [
            "# Title",
            "",
            _demo._begin("run"),
            "old text",
            _demo._end("run"),
            "",
            "hand-written",
            "",
        ]
    )
    new = _demo.fill_page(page, {"run": "new text"})
    assert "old text" not in new and "\n\nnew text\n\n" in new
    assert new.startswith("# Title\n") and "hand-written" in new
    assert _demo.fill_page(new, {"run": "new text"}) == new
    with pytest.raises(ValueError, match="lacks the block 'easy'"):
        _demo.fill_page(page, {"easy": "x"})


def test_docs_needs_the_default_settings(capsys, tmp_path):
    assert _demo.docs_problems(_demo.Options(task="both", out=tmp_path, plots=False)) == []
    assert _demo.docs_problems(_demo.Options(backend="jax")) == [
        "--backend is 'jax', the default is 'numpy'"
    ]
    code, _, err = run_cli(["demo", "--docs", str(tmp_path), "--epochs", "2"], capsys)
    assert code == 2 and "--epochs is 2, the default is 100" in err
    code, _, err = run_cli(["demo", "--docs", str(tmp_path), "--out", str(tmp_path)], capsys)
    assert code == 2 and "no calibration.md" in err
    (tmp_path / "calibration.md").write_text("# no blocks\n", encoding="utf-8")
    code, _, err = run_cli(["demo", "--docs", str(tmp_path), "--out", str(tmp_path)], capsys)
    assert code == 2 and "lacks the block" in err


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    """The default demo (both tasks, every default), regenerating a copy of the guide."""
    tmp = tmp_path_factory.mktemp("guide")
    docs = tmp / "docs"
    docs.mkdir()
    shutil.copyfile(DOCS / "calibration.md", docs / "calibration.md")
    out, err = io.StringIO(), io.StringIO()
    argv = ["demo", "--no-plots", "--out", str(tmp / "report"), "--docs", str(docs)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    assert code == 0, err.getvalue()
    return code, out.getvalue(), docs


def test_calibration_guide_matches_the_default_run(default_run):
    _, out, docs = default_run
    committed = (DOCS / "calibration.md").read_text(encoding="utf-8")
    regenerated = (docs / "calibration.md").read_text(encoding="utf-8")
    if regenerated != committed:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                regenerated.splitlines(keepends=True),
                "docs/calibration.md",
                "a fresh default run",
            )
        )
        pytest.fail(f"the guide is stale; run `{_demo.REGENERATE}`:\n{diff}")
    assert "already up to date" in out
    # the tables the demo prints are the guide's tables
    tables = re.findall(r"(?m)^(?:\|.*\|\n)+", out)
    assert len(tables) == 2
    for t in tables:
        assert t in committed


def test_guide_figures_exist():
    page = (DOCS / "calibration.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(figures/([^)]+)\)", page))
    expected = {f"{task}_{f}.png" for task in _demo.TASKS for f in _demo.TASK_FIGURES}
    assert linked == expected | {_demo.SWEEP_FIGURE}
    assert {p.name for p in (DOCS / "figures").glob("*.png")} == linked


def test_no_seed_for_the_source_post(default_run, capsys):
    _, out, _ = default_run
    code, help_text, _ = run_cli(["demo", "--help"], capsys)
    assert code == 0
    page = (DOCS / "calibration.md").read_text(encoding="utf-8")
    for text in (out, help_text, page, _demo.__doc__ or ""):
        assert not SEED_AS_POST.search(text)
    assert "The source post's worked example" in out


def test_readme_records_the_default_run_time():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = next(line for line in readme.splitlines() if line.startswith("python3 dev.py demo"))
    seconds = re.search(r"(\d+(?:\.\d+)?) s\b", line)
    assert seconds, line
    assert float(seconds.group(1)) < 60
