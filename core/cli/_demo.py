"""``smoothce demo``: over-confidence and its remedies, measured on real data.

A small MLP is trained several times with the same initialisation, batch order and schedule,
changing only the target: one-hot with label smoothing ε ∈ ``eps``, soft labels, and noisy
labels (the three remedies of the source post). After every epoch the held-out test split is
scored; temperature scaling fitted on the validation split is the post-hoc baseline.

By default this happens on two tasks built from the bundled digits: ``easy``, the images as
they are, and ``hard``, the same images under a fixed draw of Gaussian pixel noise. Every
finding printed and written to the summary is computed from the measured numbers.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import TextIO

import numpy as np

import smoothce
from smoothce import metrics

from . import _demo_backends

DIGITS_CITATION = (
    "UCI Optical Recognition of Handwritten Digits (E. Alpaydin and C. Kaynak, 1998; "
    "UCI Machine Learning Repository, https://doi.org/10.24432/C50P49), "
    "licensed CC BY 4.0"
)
N_BINS = 15
MID = (0.1, 0.9)  # the source post's "intermediate states": max-probabilities strictly inside

TASKS = ("easy", "hard")
# The hard task: Gaussian noise of this standard deviation (the pixels run from 0 to 16) is
# added once to every image, from a generator with a fixed seed, so the task is the same for
# every --seed and every run.
HARD_SIGMA = 6.0
HARD_NOISE_SEED = 1998

# The figures of one task (prefixed with the task's name for the bundled tasks) and the sweep.
TASK_FIGURES = ("logit_norm", "epochs", "reliability", "confidence_hist")
SWEEP_FIGURE = "eps_sweep.png"
SWEEP_MIN_EPS = 3  # the sweep figure needs at least this many ε values

DOCS_PAGE = "calibration.md"
DOCS_FIGURES = "figures"
REGENERATE = "python3 dev.py demo --docs docs"


@dataclass
class Options:
    """Settings of one demo invocation (the CLI's options)."""

    epochs: int = 100
    eps: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)
    seed: int = 0
    backend: str = "numpy"
    out: Path = Path("smoothce-demo")
    data: Path | None = None
    task: str | None = None  # "easy", "hard" or "both"; None: both (bundled data only)
    hidden: int = 128
    batch_size: int = 64
    lr: float = 2e-3
    noise_rate: float = 0.1  # share of labels changed in each batch of the noisy-labels run
    soft_k: int = 10  # neighbours averaged into each soft label
    plots: bool = True
    docs: Path | None = None  # a docs folder whose calibration page and figures to regenerate


# options that do not change the numbers: --docs accepts any value of these
_OUTPUT_OPTIONS = ("out", "plots", "docs")


@dataclass
class Run:
    name: str
    eps: float
    kind: str  # "hard", "soft" or "noisy"


@dataclass
class Result:
    run: Run
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch, test split
    final: dict[str, float] = field(default_factory=dict)  # test split after the last epoch
    test_logits: np.ndarray | None = None
    temperature: float = 1.0


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    description: str


@dataclass
class Task:
    """One data set the runs are trained on: a bundled task or the user's ``--data``."""

    name: str  # "easy", "hard" or "data"
    heading: str
    about: str  # how the task is built and why, for the report
    data: Data

    @property
    def figures(self) -> list[str]:
        return figure_names(self.name)


def figure_names(task: str) -> list[str]:
    """The PNG files of one task: plain names for ``--data``, prefixed for the bundled tasks."""
    prefix = "" if task == "data" else f"{task}_"
    return [f"{prefix}{f}.png" for f in TASK_FIGURES]


@dataclass
class TaskResult:
    task: Task
    results: list[Result]


# --- data ------------------------------------------------------------------------------------


# The largest class count --data may imply (K = the largest label + 1). The demo holds a few
# N×K arrays (one-hot and soft targets) and an MLP output layer of K units, so a stray huge
# label (1e9) must be refused before anything is allocated; K may also not exceed N.
MAX_CLASSES = 10_000
MIN_EXAMPLES = 10


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``x`` and ``y`` of the ``--data`` file, or a one-line ValueError naming it."""
    where = f"--data {path}"
    if not path.exists():
        raise ValueError(f"{where}: no such file")
    if not path.is_file():
        raise ValueError(f"{where}: not a file")
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as err:
        raise ValueError(f"{where}: cannot read it ({err.strerror or err})") from None
    if not is_zip:
        raise ValueError(
            f"{where}: not an .npz file (a zip archive of .npy arrays, as numpy.savez writes)"
        )
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:  # a damaged archive: zipfile, zlib and NumPy raise various types
        raise ValueError(f"{where}: not a readable .npz file ({_one_line(err)})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # a .npy file with a zip archive appended
        raise ValueError(f"{where}: not an .npz file (it starts as a .npy file)")
    with npz:
        missing = [k for k in ("x", "y") if k not in npz.files]
        if missing:
            raise ValueError(f"{where}: lacks array(s) {missing}; it has {npz.files}")
        arrays = []
        for name in ("x", "y"):
            try:
                arrays.append(np.asarray(npz[name]))
            except Exception as err:  # object arrays, damaged members, CRC errors, ...
                raise ValueError(
                    f"{where}: cannot read array {name!r} ({_one_line(err)})"
                ) from None
    return arrays[0], arrays[1]


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def check_arrays(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` as float32 (N, D) and ``y`` as int64 (N,), or a ValueError starting with ``where``.

    Every check runs before anything of the size of N×K (K the class count) is allocated.
    """

    def bad(problem: str) -> ValueError:
        return ValueError(f"{where}: {problem}")

    if x.ndim < 2:
        raise bad(f"x must have shape (N, features...), got shape {x.shape}")
    if y.ndim != 1:
        raise bad(f"y must have shape (N,), got shape {y.shape}")
    if len(x) != len(y):
        raise bad(f"x has {len(x)} rows but y has {len(y)} labels")
    n = len(y)
    if n < MIN_EXAMPLES:
        raise bad(f"need at least {MIN_EXAMPLES} examples, got {n}")
    if math.prod(x.shape[1:]) == 0:
        raise bad(f"x has no features (shape {x.shape})")
    if x.dtype.kind == "c":
        raise bad(
            f"x is complex ({x.dtype}); the demo needs real features "
            "(put real and imaginary parts in separate features)"
        )
    if x.dtype.kind not in "biuf":
        raise bad(f"x must hold real numbers, got dtype {x.dtype}")
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        if not finite.all():
            raise bad(f"y holds {int(np.count_nonzero(~finite))} NaN or infinite label(s)")
        fractional = y != np.round(y)
        if fractional.any():
            raise bad(
                f"y must hold integer class labels, got {y[fractional][0].item():g} "
                f"(and {int(np.count_nonzero(fractional)) - 1} more non-integer values)"
            )
    elif y.dtype.kind not in "biu":
        raise bad(f"y must hold integer class labels, got dtype {y.dtype}")
    lowest, highest = y.min().item(), y.max().item()
    if lowest < 0:
        raise bad(f"labels must be >= 0, got {lowest:g}")
    k = int(highest) + 1
    if k > min(MAX_CLASSES, n):
        raise bad(
            f"the largest label is {int(highest)}, which means {k} classes; labels must be "
            f"0…K−1 with K at most {MAX_CLASSES:,} and at most the number of examples ({n})"
        )
    if k < 2:
        raise bad("need at least 2 classes, every label is 0")
    with np.errstate(over="ignore", invalid="ignore"):  # reported just below
        x = x.reshape(n, -1).astype(np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        raise bad(
            f"x holds {int(np.count_nonzero(~finite))} NaN or infinite value(s) "
            "(or values too large for float32)"
        )
    return x, y.astype(np.int64)


def load_data(path: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """``x`` as float32 (N, D) and ``y`` as int64 (N,) from an ``.npz`` with arrays x and y."""
    if path is None:
        with resources.files("smoothce.cli").joinpath("data/digits.npz").open("rb") as f:
            npz = np.load(f)
            x, y = npz["x"], npz["y"]
        x, y = check_arrays(x, y, "the bundled digits")
        return x, y, f"{DIGITS_CITATION}: {len(y)} 8×8 images, 10 classes"
    path = Path(path)
    x, y = check_arrays(*_read_npz(path), f"--data {path}")
    return x, y, f"{path}: {len(y)} examples"


def split(x: np.ndarray, y: np.ndarray, description: str) -> Data:
    """A fixed 60/20/20 train/validation/test split (independent of ``--seed``).

    Features are standardised with the training split's mean and standard deviation.
    """
    n = len(y)
    order = np.random.default_rng(20240601).permutation(n)
    n_val = n_test = max(1, round(0.2 * n))
    n_train = n - n_val - n_test
    tr, va, te = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    mean, std = x[tr].mean(axis=0), x[tr].std(axis=0)
    std[std < 1e-6] = 1.0
    xs = ((x - mean) / std).astype(np.float32)
    k = int(y.max()) + 1
    if k < 2:
        raise ValueError(f"need at least 2 classes, got labels {np.unique(y)}")
    return Data(xs[tr], y[tr], xs[va], y[va], xs[te], y[te], k, description)


def noisy_digits(x: np.ndarray, sigma: float = HARD_SIGMA) -> np.ndarray:
    """The hard task's images: ``x`` plus Gaussian noise of standard deviation ``sigma``.

    The noise comes from a generator with the fixed seed ``HARD_NOISE_SEED`` (not ``--seed``),
    so the same images always give the same noisy images. Pixels are not clipped back to 0–16.
    """
    rng = np.random.default_rng(HARD_NOISE_SEED)
    return (x.astype(np.float64) + sigma * rng.standard_normal(x.shape)).astype(np.float32)


def make_tasks(opts: Options) -> list[Task]:
    """The tasks of this invocation: the user's ``--data``, or the bundled easy/hard digits."""
    if opts.data is not None:
        if opts.task is not None:
            raise ValueError(
                "--task chooses among the bundled digits' tasks; it does not apply to --data"
            )
        x, y, description = load_data(opts.data)
        return [Task("data", "Your data", f"{description}.", split(x, y, description))]
    choice = opts.task or "both"
    if choice not in (*TASKS, "both"):
        raise ValueError(f"unknown task {choice!r}; choose easy, hard or both")
    x, y, description = load_data(None)
    tasks = []
    if choice in ("easy", "both"):
        tasks.append(
            Task(
                "easy",
                "Easy task: the digits as they are",
                f"{description}, as they are.",
                split(x, y, f"{description}, as they are"),
            )
        )
    if choice in ("hard", "both"):
        about = (
            f"The same images, split and model, with Gaussian noise of standard deviation "
            f"{HARD_SIGMA:g} (on the 0–16 pixel scale) added once to every pixel of every image, "
            "training, validation and test alike (a fixed draw, independent of --seed). The "
            "noise removes information that the labels still claim: some images can no longer "
            "be told apart, so the accuracy drops, while one-hot training keeps pushing the "
            "outputs on the noisy training images towards 0/1, the over-confidence the source "
            "post describes. The noise is the only change from the easy task (the same split "
            "sizes, model, schedule and epochs), so the two tables differ in one thing and the "
            "hard task costs no more time."
        )
        tasks.append(
            Task(
                "hard",
                "Hard task: the digits under pixel noise",
                about,
                split(
                    noisy_digits(x),
                    y,
                    f"{description}, with Gaussian pixel noise σ = {HARD_SIGMA:g}",
                ),
            )
        )
    return tasks


def knn_soft_labels(
    x: np.ndarray, y: np.ndarray, num_classes: int, k: int, mix: float = 0.3
) -> np.ndarray:
    """Soft targets from the data: each image's label mixed with its k nearest neighbours' labels.

    q_i = (1 − λ)·onehot(y_i) + λ·(1/k)·Σ_{j ∈ kNN(i)} onehot(y_j) with λ = ``mix``, Euclidean
    distance on the standardised features. A typical image, whose neighbours share its label,
    keeps a one-hot target; an ambiguous one (neighbours of other classes) gets a mixed target,
    and its own label keeps at least 1 − λ. Neighbours come from at most 4000 training images
    so that large user datasets stay tractable.
    """
    n = len(y)
    k = min(k, n - 1)
    rng = np.random.default_rng(0)
    ref = np.arange(n) if n <= 4000 else np.sort(rng.choice(n, 4000, replace=False))
    onehot = np.zeros((n, num_classes), dtype=np.float64)
    onehot[np.arange(n), y] = 1.0
    if k < 1:
        return onehot.astype(np.float32)
    hist = np.zeros_like(onehot)
    ref_sq = np.sum(x[ref] ** 2, axis=1)
    for start in range(0, n, 512):
        rows = np.arange(start, min(n, start + 512))
        d2 = np.sum(x[rows] ** 2, axis=1)[:, None] - 2.0 * x[rows] @ x[ref].T + ref_sq[None, :]
        d2[rows[:, None] == ref[None, :]] = np.inf  # an image is not its own neighbour
        nearest = np.argpartition(d2, k - 1, axis=1)[:, :k]
        np.add.at(hist, (np.repeat(rows, k), y[ref[nearest]].ravel()), 1.0)
    return ((1 - mix) * onehot + mix * hist / k).astype(np.float32)


# --- training --------------------------------------------------------------------------------


def _openblas_threads() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """The get/set thread-count functions of the OpenBLAS inside NumPy's wheel, if any."""
    here = Path(np.__file__).parent
    libraries = [
        *here.parent.joinpath("numpy.libs").glob("*openblas*"),
        *here.joinpath(".dylibs").glob("*openblas*"),
    ]
    for path in libraries:
        try:
            lib = ctypes.CDLL(str(path))  # already loaded by NumPy: this only looks it up
        except OSError:
            continue
        for prefix, suffix in (
            ("scipy_openblas", "64_"),
            ("scipy_openblas", ""),
            ("openblas", "64_"),
            ("openblas", ""),
        ):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                return get, set_
    return None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run NumPy's OpenBLAS on one thread while training (restored afterwards).

    The demo's products are small (at most 1079×64 by 64×128): a second thread gains nothing,
    and on a busy 2-core machine OpenBLAS's threads wait for each other (the default run took
    several times longer under load). OpenBLAS also sums in another order with more threads, so
    one thread makes the numbers independent of the machine's core count, which keeps the
    calibration guide's tables reproducible. With another BLAS nothing changes.
    """
    controls = _openblas_threads()
    if controls is None:
        yield
        return
    get, set_ = controls
    before = get()
    set_(1)
    try:
        yield
    finally:
        set_(before)


def _init(rng: np.random.Generator, d: int, h: int, k: int) -> dict[str, np.ndarray]:
    # He initialisation for the ReLU layer, Glorot-like for the output layer
    return {
        "w1": (rng.standard_normal((d, h)) * math.sqrt(2.0 / d)).astype(np.float32),
        "b1": np.zeros(h, np.float32),
        "w2": (rng.standard_normal((h, k)) * math.sqrt(1.0 / h)).astype(np.float32),
        "b2": np.zeros(k, np.float32),
    }


class _Adam:
    """Adam (Kingma & Ba 2015), β = (0.9, 0.999), on float32 NumPy parameters in place."""

    def __init__(self, params: dict[str, np.ndarray], lr: float) -> None:
        self.lr, self.t = lr, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        scale = self.lr * math.sqrt(1 - 0.999**self.t) / (1 - 0.9**self.t)
        for k, g in grads.items():
            self.m[k] = 0.9 * self.m[k] + 0.1 * g
            self.v[k] = 0.999 * self.v[k] + 0.001 * g * g
            params[k] -= (scale * self.m[k] / (np.sqrt(self.v[k]) + 1e-8)).astype(np.float32)


def evaluate(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Held-out metrics of one set of logits (float64 for stable sums)."""
    z = logits.astype(np.float64)
    p = metrics.softmax(z)
    conf = p.max(axis=1)
    wrong = p.argmax(axis=1) != labels
    return {
        "logit_norm": float(np.mean(metrics.logit_norm(z))),
        "confidence": float(np.mean(conf)),
        "mid_share": float(np.mean((conf > MID[0]) & (conf < MID[1]))),
        "accuracy": float(np.mean(~wrong)),
        # how sure the model is when it is wrong: the source post's complaint about 0/1 outputs
        "confidence_wrong": float(np.mean(conf[wrong])) if wrong.any() else math.nan,
        "nll": float(smoothce.loss(z, labels, 0.0)),
        "ece": float(metrics.expected_calibration_error(z, labels, N_BINS)),
    }


def train(
    run: Run,
    data: Data,
    opts: Options,
    grad_fn: _demo_backends.GradFn,
    soft: np.ndarray | None,
    progress: Progress,
    label: str = "",
) -> Result:
    """Train one run; every run draws the same initialisation and batch order from ``seed``."""
    rng = np.random.default_rng(opts.seed)
    noise_rng = np.random.default_rng([opts.seed, 1])  # separate, so batch order stays equal
    params = _init(rng, data.x_train.shape[1], opts.hidden, data.num_classes)
    adam = _Adam(params, opts.lr)
    result = Result(run)
    n = len(data.y_train)
    for epoch in range(1, opts.epochs + 1):
        order = rng.permutation(n)
        for start in range(0, n, opts.batch_size):
            idx = order[start : start + opts.batch_size]
            if run.kind == "soft":
                target = soft[idx]
            elif run.kind == "noisy":
                target = metrics.noisy_labels(
                    data.y_train[idx], opts.noise_rate, data.num_classes, rng=noise_rng
                )
            else:
                target = data.y_train[idx]
            _, grads = grad_fn(params, data.x_train[idx], target, run.eps)
            adam.step(params, grads)
        logits = _demo_backends.forward(params, data.x_test)
        if not np.all(np.isfinite(logits)):
            raise RuntimeError(f"run {run.name!r}: training diverged at epoch {epoch}")
        result.history.append({"epoch": epoch, **evaluate(logits, data.y_test)})
        progress.advance(f"{label}{run.name:<14} epoch {epoch}/{opts.epochs}")
    result.final = dict(result.history[-1])
    result.test_logits = logits.astype(np.float64)
    val_logits = _demo_backends.forward(params, data.x_val).astype(np.float64)
    result.temperature = metrics.fit_temperature(val_logits, data.y_val)
    scaled = evaluate(result.test_logits / result.temperature, data.y_test)
    result.final.update(
        temperature=result.temperature,
        nll_ts=scaled["nll"],
        ece_ts=scaled["ece"],
        confidence_ts=scaled["confidence"],
    )
    return result


def runs_for(eps: tuple[float, ...]) -> list[Run]:
    runs = [Run(f"eps={e:g}", float(e), "hard") for e in eps]
    return [*runs, Run("soft labels", 0.0, "soft"), Run("noisy labels", 0.0, "noisy")]


# --- reporting -------------------------------------------------------------------------------


class Progress:
    """A text progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total, self.done, self.width = max(total, 1), 0, width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last_decile = -1

    def advance(self, label: str) -> None:
        self.done += 1
        frac = self.done / self.total
        filled = round(frac * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"[{bar}] {100 * frac:3.0f}%  {time.perf_counter() - self.start:5.1f}s  {label}"
        if self.tty:
            end = "\n" if self.done >= self.total else ""
            self.stream.write("\r" + line.ljust(100) + end)
        elif int(frac * 10) > self.last_decile or self.done >= self.total:
            self.last_decile = int(frac * 10)
            self.stream.write(line + "\n")
        self.stream.flush()


COLUMNS = [
    ("run", None),
    ("accuracy", "{:.3f}"),
    ("nll", "{:.3f}"),
    ("ece", "{:.3f}"),
    ("confidence", "{:.3f}"),
    ("logit_norm", "{:.1f}"),
    ("mid_share", "{:.3f}"),
    ("confidence_wrong", "{:.3f}"),
    ("temperature", "{:.2f}"),
    ("nll_ts", "{:.3f}"),
    ("ece_ts", "{:.3f}"),
]
HEADERS = {
    "run": "run",
    "accuracy": "accuracy",
    "nll": "NLL",
    "ece": "ECE",
    "confidence": "mean conf",
    "logit_norm": "mean ‖z‖",
    "mid_share": "conf in (0.1, 0.9)",
    "confidence_wrong": "conf when wrong",
    "temperature": "T (val)",
    "nll_ts": "NLL after T",
    "ece_ts": "ECE after T",
}
TABLE_NOTE = (
    f"NLL and ECE ({N_BINS} equal-width bins) on the test split; “mean conf” is the mean "
    "max-probability; “conf in (0.1, 0.9)” the share of test images whose max-probability is "
    "strictly inside (0.1, 0.9); “conf when wrong” the mean max-probability on the misclassified "
    "test images; T is the temperature fitted on the validation split (post-hoc baseline), with "
    "the test NLL and ECE of softmax(z / T)."
)


def table(results: list[Result]) -> str:
    """The final test-split numbers as a Markdown table."""
    rows = [[HEADERS[c] for c, _ in COLUMNS]]
    for r in results:
        rows.append([r.run.name] + [fmt.format(r.final[c]) for c, fmt in COLUMNS[1:]])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), sep, *(line(r) for r in rows[1:])])


def _trend(first: float, last: float, up: str, down: str, tol: float) -> str:
    if last > first + tol:
        return up
    if last < first - tol:
        return down
    return "stayed about the same"


def _r3(value: float) -> float:
    """A number as the table prints it (3 decimals), so that statements match the table."""
    return round(float(value), 3)


def _plain(results: list[Result]) -> Result | None:
    """The plain model: one-hot targets, ε = 0."""
    return next((r for r in results if r.run.kind == "hard" and r.run.eps == 0), None)


def _gap_words(confidence: float, accuracy: float, tol: float) -> str:
    gap = confidence - accuracy
    if gap > tol:
        return f"over-confident by {100 * gap:.1f} points"
    if gap < -tol:
        return f"under-confident by {100 * -gap:.1f} points"
    return f"about calibrated on average (gap {100 * gap:+.1f} points)"


def _accuracy_words(delta: float) -> str:
    if delta < 0:
        return f"at a cost of {100 * -delta:.1f} accuracy points"
    if delta > 0:
        return f"with {100 * delta:.1f} accuracy points gained"
    return "with the same accuracy"


def _names(items: list[str]) -> str:
    return ", ".join(items)


def _change(delta: float, what: str) -> str:
    if delta < -1e-9:
        return f"lowered {what} by {-delta:.3f}"
    if delta > 1e-9:
        return f"raised {what} by {delta:.3f}"
    return f"left {what} unchanged"


def remedy_findings(results: list[Result]) -> list[str]:
    """Which remedy lowered ECE and NLL against the plain model, by how much, at what cost in
    accuracy, and how each compares with temperature scaling of the plain model.

    Every difference is taken between the numbers as the table prints them (3 decimals).
    """
    base = _plain(results)
    others = [r for r in results if r is not base]
    if base is None or not others:
        return []
    b = base.final
    deltas = {
        r.run.name: tuple(_r3(r.final[k]) - _r3(b[k]) for k in ("ece", "nll", "accuracy"))
        for r in others
    }
    clauses = [
        f"{name} {_change(d_ece, 'ECE')} and {_change(d_nll, 'NLL')}, {_accuracy_words(d_acc)}"
        for name, (d_ece, d_nll, d_acc) in deltas.items()
    ]
    out = [
        f"Against the plain model (ε = 0: ECE {b['ece']:.3f}, NLL {b['nll']:.3f}, accuracy "
        f"{b['accuracy']:.3f}): " + "; ".join(clauses) + "."
    ]
    best: dict[str, Result] = {}
    for col, metric in enumerate(("ece", "nll")):
        r = min(others, key=lambda r: deltas[r.run.name][col])
        if deltas[r.run.name][col] < -1e-9:
            best[metric] = r
    if best:
        out.append(
            " ".join(
                f"Largest {metric.upper()} reduction: {r.run.name}, from {b[metric]:.3f} to "
                f"{r.final[metric]:.3f}, {_accuracy_words(deltas[r.run.name][2])} "
                f"(accuracy {r.final['accuracy']:.3f})."
                for metric, r in best.items()
            )
            + (
                ""
                if len(best) == 2
                else f" No remedy lowered the {'NLL' if 'ece' in best else 'ECE'}."
            )
        )
    else:
        out.append(
            f"No remedy lowered the plain model's ECE ({b['ece']:.3f}) or NLL ({b['nll']:.3f})."
        )
    ts = {k: _r3(b[f"{k}_ts"]) for k in ("ece", "nll")}
    against = [
        f"{r.run.name} ECE {_r3(r.final['ece']) - ts['ece']:+.3f}, "
        f"NLL {_r3(r.final['nll']) - ts['nll']:+.3f}"
        for r in others
    ]
    lower = {k: [r.run.name for r in others if _r3(r.final[k]) < ts[k]] for k in ("ece", "nll")}
    if lower["ece"] or lower["nll"]:
        verdict = " and ".join(
            f"{_names(v) if v else 'none'} a lower {k.upper()}" for k, v in lower.items()
        )
        verdict = verdict.replace(" a lower", " reached a lower", 1)
    else:
        verdict = "no training-time remedy reached a lower ECE or NLL than it"
    out.append(
        "Temperature scaling of the ε = 0 model (the post-hoc baseline: "
        f"T = {base.temperature:.2f} fitted on the validation split; predictions and accuracy "
        f"unchanged) gives test ECE {b['ece_ts']:.3f} and NLL {b['nll_ts']:.3f} (from "
        f"{b['ece']:.3f} and {b['nll']:.3f}). Each remedy against it: "
        + "; ".join(against)
        + f". So {verdict}."
    )
    return out


def sweep_findings(results: list[Result], tol: float = 0.01) -> list[str]:
    """The best ε and what happens past it, when at least ``SWEEP_MIN_EPS`` ε were run."""
    smoothed = sorted((r for r in results if r.run.kind == "hard"), key=lambda r: r.run.eps)
    if len(smoothed) < SWEEP_MIN_EPS:
        return []
    eces = [_r3(r.final["ece"]) for r in smoothed]
    i = min(range(len(eces)), key=lambda j: (eces[j], j))  # ties: the smaller ε
    best, first, last = smoothed[i], smoothed[0], smoothed[-1]
    span = f"ε from {first.run.eps:g} to {last.run.eps:g}"
    if i == len(smoothed) - 1:
        text = (
            f"Across the ε sweep ({span}) the ECE is lowest at the largest ε tried, "
            f"{best.run.eps:g} ({eces[i]:.3f}, against {eces[0]:.3f} at ε = {first.run.eps:g}); "
            "the best ε may lie beyond it."
        )
    else:
        worst = max(range(i + 1, len(eces)), key=lambda j: (eces[j], j))
        after = smoothed[worst]
        f = after.final
        state = _gap_words(f["confidence"], f["accuracy"], tol)
        rise = "rises" if eces[worst] > eces[i] else "stays"
        if i == 0:
            text = (
                f"Across the ε sweep ({span}) the ECE is lowest at ε = {best.run.eps:g} "
                f"({eces[i]:.3f}); every larger ε gave a higher ECE, up to {eces[worst]:.3f} at "
                f"ε = {after.run.eps:g}, where the model is {state}."
            )
        else:
            over = " smoothing over-corrects:" if f["confidence"] < f["accuracy"] - tol else ""
            text = (
                f"Across the ε sweep ({span}) the ECE is lowest at ε = {best.run.eps:g} "
                f"({eces[i]:.3f}, against {eces[0]:.3f} at ε = {first.run.eps:g}); past it"
                f"{over} the ECE {rise} to {eces[worst]:.3f} at ε = {after.run.eps:g}, where the "
                f"model is {state}."
            )
    nlls = [_r3(r.final["nll"]) for r in smoothed]
    k = min(range(len(nlls)), key=lambda j: (nlls[j], j))
    text += (
        f" The NLL is lowest at ε = {smoothed[k].run.eps:g} ({nlls[k]:.3f}); the accuracy goes "
        f"from {first.final['accuracy']:.3f} at ε = {first.run.eps:g} to "
        f"{last.final['accuracy']:.3f} at ε = {last.run.eps:g}, the mean logit norm from "
        f"{first.final['logit_norm']:.1f} to {last.final['logit_norm']:.1f}."
    )
    return [text]


def findings(results: list[Result], num_classes: int, tol: float = 0.01) -> list[str]:
    """Plain-language statements, each computed from the measured numbers."""
    out: list[str] = []
    base = _plain(results)
    if base is not None and len(base.history) > 1:
        h0, h1 = base.history[0], base.history[-1]
        out.append(
            f"Without smoothing (ε = 0) the mean logit norm on the test split "
            f"{_trend(h0['logit_norm'], h1['logit_norm'], 'grew', 'fell', 0.05 * h0['logit_norm'])}"
            f" from {h0['logit_norm']:.1f} after epoch 1 to {h1['logit_norm']:.1f} after epoch "
            f"{h1['epoch']:.0f}; the mean max-probability went from {h0['confidence']:.3f} to "
            f"{h1['confidence']:.3f}, and the share of max-probabilities in (0.1, 0.9) from "
            f"{h0['mid_share']:.3f} to {h1['mid_share']:.3f}."
        )
    if base is not None and not math.isnan(base.final["confidence_wrong"]):
        out.append(
            f"At ε = 0 the misclassified test images still get a mean max-probability of "
            f"{base.final['confidence_wrong']:.3f}; with smoothing: "
            + ", ".join(
                f"{r.final['confidence_wrong']:.3f} at ε = {r.run.eps:g}"
                for r in results
                if r.run.kind == "hard"
                and r.run.eps > 0
                and not math.isnan(r.final["confidence_wrong"])
            )
            + "."
        )
    smoothed = [r for r in results if r.run.kind == "hard" and r.run.eps > 0]
    if base is not None and smoothed:
        norms = ", ".join(f"{r.final['logit_norm']:.1f} at ε = {r.run.eps:g}" for r in smoothed)
        out.append(
            f"Label smoothing bounds the logits: final mean norm {base.final['logit_norm']:.1f} "
            f"at ε = 0 against {norms}."
        )
    for r in results:
        verdict = _gap_words(r.final["confidence"], r.final["accuracy"], tol)
        t = r.temperature
        t_note = (
            f"T = {t:.2f} > 1 fitted on validation softens it"
            if t > 1.05
            else f"T = {t:.2f} < 1 fitted on validation sharpens it"
            if t < 0.95
            else f"T = {t:.2f} fitted on validation leaves it nearly unchanged"
        )
        out.append(
            f"{r.run.name}: mean confidence {r.final['confidence']:.3f} against accuracy "
            f"{r.final['accuracy']:.3f}, {verdict}; ECE {r.final['ece']:.3f}; {t_note} "
            f"(ECE after scaling {r.final['ece_ts']:.3f})."
        )
    under = [r for r in smoothed if r.final["confidence"] < r.final["accuracy"] - tol]
    if under:
        caps = ", ".join(
            f"{1 - r.run.eps + r.run.eps / num_classes:.3f} at ε = {r.run.eps:g}" for r in under
        )
        out.append(
            "Here label smoothing made the model under-confident"
            + (
                f" at ε = {_names([f'{r.run.eps:g}' for r in under])}"
                if len(under) < len(smoothed)
                else ""
            )
            + ": the smoothed target never asks for a confidence above 1 − ε + ε/K "
            f"({caps}), and the model's confidence stays below its test accuracy."
            + (
                " A temperature T < 1 fitted on validation undoes it and lowers the ECE in every "
                "one of these runs."
                if all(r.temperature < 1 and r.final["ece_ts"] < r.final["ece"] for r in under)
                else ""
            )
        )
    out += remedy_findings(results)
    out += sweep_findings(results, tol)
    best = min(results, key=lambda r: r.final["ece"])
    out.append(
        f"Lowest test ECE without post-hoc scaling: {best.run.name} ({best.final['ece']:.3f})."
    )
    accs = [r.final["accuracy"] for r in results]
    out.append(
        f"Test accuracy ranged from {min(accs):.3f} to {max(accs):.3f} across runs "
        f"({len(results)} runs)."
    )
    return out


def contrast_findings(task_results: list[TaskResult], tol: float = 0.01) -> list[str]:
    """How the same remedies fare on each task, from each task's measured table."""
    out: list[str] = []
    helped, over = set(), set()
    for tr in task_results:
        base = _plain(tr.results)
        smoothed = [r for r in tr.results if r.run.kind == "hard" and r.run.eps > 0]
        if base is None or not smoothed:
            continue
        b = base.final
        if b["confidence"] - b["accuracy"] > tol:
            over.add(tr.task.name)
        lowered = [r for r in smoothed if _r3(r.final["ece"]) < _r3(b["ece"])]
        if lowered:
            helped.add(tr.task.name)
        eps_list = _names([f"{r.run.eps:g}" for r in smoothed])
        if len(lowered) == len(smoothed):
            best = min(smoothed, key=lambda r: (_r3(r.final["ece"]), r.run.eps))
            effect = (
                f"label smoothing lowered the ECE at every ε tried (lowest {best.final['ece']:.3f} "
                f"at ε = {best.run.eps:g})"
            )
        elif not lowered:
            eces = [r.final["ece"] for r in smoothed]
            raised = all(_r3(e) > _r3(b["ece"]) for e in eces)
            effect = (
                f"label smoothing {'raised' if raised else 'did not lower'} the ECE at every ε "
                f"tried ({min(eces):.3f} to {max(eces):.3f} at ε = {eps_list})"
            )
        else:
            effect = (
                f"label smoothing lowered the ECE at ε = "
                f"{_names([f'{r.run.eps:g}' for r in lowered])} and not at ε = "
                f"{_names([f'{r.run.eps:g}' for r in smoothed if r not in lowered])}"
            )
        out.append(
            f"{tr.task.name.capitalize()} task: the plain model (ε = 0) has accuracy "
            f"{b['accuracy']:.3f}, mean confidence {b['confidence']:.3f} and ECE {b['ece']:.3f}: "
            f"{_gap_words(b['confidence'], b['accuracy'], tol)}. Here {effect}; temperature "
            f"scaling of the plain model gives ECE {b['ece_ts']:.3f} and NLL {b['nll_ts']:.3f} "
            f"(from {b['nll']:.3f})."
        )
    names = [tr.task.name for tr in task_results]
    if len(out) > 1 and helped and helped == over and len(helped) < len(out):
        rest = [n for n in names if n not in helped]
        out.append(
            "Label smoothing lowered the ECE only where the plain model was over-confident ("
            + _names(sorted(helped, key=names.index))
            + "), not where it was not ("
            + _names(rest)
            + ")."
        )
    return out


# --- the report ------------------------------------------------------------------------------


_FIGURE_ALT = {
    "logit_norm": "Mean logit norm per epoch",
    "epochs": "Held-out metrics per epoch",
    "reliability": "Reliability diagrams",
    "confidence_hist": "Confidence histograms",
}


def _figure_links(names: list[str], folder: str, task: str | None, describe: bool) -> list[str]:
    lines = []
    for name, kind in zip(names, TASK_FIGURES, strict=True):
        alt = f"{_FIGURE_ALT[kind]}, {task} task" if describe and task else name
        lines += [f"![{alt}]({folder}{name})", ""]
    return lines


def task_block(tr: TaskResult, folder: str, figures: bool, describe: bool = False) -> list[str]:
    """A task's table, findings and figure links as Markdown lines (ends with a blank line)."""
    lines = [
        table(tr.results),
        "",
        "Findings, computed from the measured numbers:",
        "",
        *(f"- {s}" for s in findings(tr.results, tr.task.data.num_classes)),
        "",
    ]
    if figures:
        task = tr.task.name if tr.task.name != "data" else None
        lines += _figure_links(tr.task.figures, folder, task, describe)
    return lines


def sweep_block(task_results: list[TaskResult], folder: str, figures: bool) -> list[str]:
    lines = []
    if figures:
        lines += [f"![ECE, NLL, accuracy and logit norm against ε]({folder}{SWEEP_FIGURE})", ""]
    for tr in task_results:
        for s in sweep_findings(tr.results):
            lines.append(
                f"- {tr.task.name.capitalize()} task: {s[0].lower()}{s[1:]}"
                if len(task_results) > 1
                else f"- {s}"
            )
    return [*lines, ""]


def _split_line(data: Data) -> str:
    return (
        f"Fixed split: {len(data.y_train)} train / {len(data.y_val)} validation / "
        f"{len(data.y_test)} test."
    )


def _setup_lines(opts: Options, data: Data) -> list[str]:
    return [
        f"Model: MLP {data.x_train.shape[1]} → {opts.hidden} (ReLU) → {data.num_classes}, "
        f"Adam (lr {opts.lr:g}), batch {opts.batch_size}, {opts.epochs} epochs, seed {opts.seed}, "
        f"gradients by backend `{opts.backend}`. Every run uses the same initialisation, batch "
        "order and schedule.",
        "",
        "Runs: one-hot targets with label smoothing ε in {"
        + ", ".join(f"{e:g}" for e in opts.eps)
        + f"}}; soft labels (each training image's target is 0.7 × its one-hot label + 0.3 × "
        f"the label histogram of its {opts.soft_k} nearest training neighbours, ε = 0); noisy "
        f"labels (in every batch {100 * opts.noise_rate:g}% of the labels are redrawn as a "
        "different class, ε = 0).",
        "",
    ]


def has_sweep(opts: Options) -> bool:
    return len(opts.eps) >= SWEEP_MIN_EPS


def summary_markdown(
    task_results: list[TaskResult],
    opts: Options,
    plots: bool,
    plot_note: str,
    elapsed: float,
) -> str:
    first = task_results[0].task.data
    lines = ["# smoothce demo", "", *_setup_lines(opts, first), TABLE_NOTE, ""]
    for tr in task_results:
        lines += [
            f"## {tr.task.heading}",
            "",
            tr.task.about,
            "",
            _split_line(tr.task.data),
            "",
            "### Test-split results after the last epoch",
            "",
            table(tr.results),
            "",
            "### Findings",
            "",
            *(f"- {s}" for s in findings(tr.results, tr.task.data.num_classes)),
            "",
            "### Figures",
            "",
        ]
        lines += _figure_links(tr.task.figures, "", None, False) if plots else [plot_note, ""]
    if has_sweep(opts):
        lines += ["## The ε sweep", "", *sweep_block(task_results, "", plots)]
        if not plots:
            lines += [plot_note, ""]
    contrast = contrast_findings(task_results)
    if len(task_results) > 1 and contrast:
        lines += ["## Both tasks", "", *(f"- {s}" for s in contrast), ""]
    lines += [f"Per-epoch numbers are in `metrics.json`. Run time {elapsed:.1f} s.", ""]
    return "\n".join(lines)


def worked_example() -> str:
    """The source post's example, with smoothce's softmax: the same logits, five times the norm."""
    z = np.array([1.5, 1.2, 1.0])
    lines = ["The source post's worked example (smoothce.metrics.softmax):"]
    for scale in (1, 5):
        zs = z * scale
        p = metrics.softmax(zs)
        lines.append(
            f"  softmax([{', '.join(f'{v:.1f}' for v in zs)}]) = "
            f"[{', '.join(f'{v:.4f}' for v in p)}]   ‖z‖ = {float(metrics.logit_norm(zs)):.2f}"
        )
    lines.append("  Five times the norm, same prediction, far more confident output.")
    return "\n".join(lines)


# --- the calibration guide -------------------------------------------------------------------


def _begin(name: str) -> str:
    return f"<!-- generated by `smoothce demo --docs`: begin {name} -->"


def _end(name: str) -> str:
    return f"<!-- generated: end {name} -->"


def docs_problems(opts: Options) -> list[str]:
    """Why ``opts`` cannot regenerate the guide: the page shows the default run only."""
    default = Options()

    def value(o: Options, name: str) -> object:
        v = getattr(o, name)
        return (v or "both") if name == "task" else v

    return [
        f"--{f.name.replace('_', '-')} is {value(opts, f.name)!r}, the default is "
        f"{value(default, f.name)!r}"
        for f in fields(Options)
        if f.name not in _OUTPUT_OPTIONS and value(opts, f.name) != value(default, f.name)
    ]


def docs_blocks(task_results: list[TaskResult], opts: Options) -> dict[str, str]:
    """The generated parts of the calibration guide, by block name."""
    folder = f"{DOCS_FIGURES}/"
    blocks = {
        "run": (
            f"The tables, findings and figures below come from one run of `smoothce demo` with "
            f"its defaults (backend `{opts.backend}`, seed {opts.seed}, {opts.epochs} epochs, "
            "ε ∈ {" + ", ".join(f"{e:g}" for e in opts.eps) + "}, both tasks), "
            f"test split after the last epoch. `{REGENERATE}` regenerates them; a test checks "
            "that they equal a fresh run's."
        )
    }
    for tr in task_results:
        blocks[tr.task.name] = "\n".join(task_block(tr, folder, True, describe=True)).strip()
    blocks["sweep"] = "\n".join(sweep_block(task_results, folder, True)).strip()
    blocks["both"] = "\n".join(f"- {s}" for s in contrast_findings(task_results))
    return blocks


def fill_page(page: str, blocks: dict[str, str]) -> str:
    """``page`` with the text between each block's markers replaced by the block."""
    for name, body in blocks.items():
        pattern = re.compile(re.escape(_begin(name)) + r"\n.*?" + re.escape(_end(name)), re.S)
        if not pattern.search(page):
            raise ValueError(
                f"the page lacks the block {name!r}: a line {_begin(name)} followed later by "
                f"a line {_end(name)}"
            )
        replacement = f"{_begin(name)}\n\n{body}\n\n{_end(name)}"
        page = pattern.sub(lambda _m, text=replacement: text, page)
    return page


def write_docs(
    docs: Path, task_results: list[TaskResult], opts: Options, figures: list[Path]
) -> list[str]:
    """Regenerate the guide's blocks and copy the figures into ``docs``; returns what changed."""
    page_path = docs / DOCS_PAGE
    page = page_path.read_text(encoding="utf-8")
    new = fill_page(page, docs_blocks(task_results, opts))
    written = []
    if new != page:
        page_path.write_text(new, encoding="utf-8")
        written.append(str(page_path))
    if figures:
        (docs / DOCS_FIGURES).mkdir(exist_ok=True)
        for fig in figures:
            shutil.copyfile(fig, docs / DOCS_FIGURES / fig.name)
            written.append(str(docs / DOCS_FIGURES / fig.name))
    return written


# --- the command -----------------------------------------------------------------------------


def _check_docs(opts: Options) -> None:
    if opts.docs is None:
        return
    problems = docs_problems(opts)
    if problems:
        raise ValueError(
            "--docs regenerates the calibration guide, which shows the default run; "
            + "; ".join(problems)
        )
    if not Path(opts.docs).is_dir():
        raise ValueError(f"--docs {opts.docs}: not a directory")
    page = Path(opts.docs) / DOCS_PAGE
    if not page.is_file():
        raise ValueError(f"--docs {opts.docs}: no {DOCS_PAGE} there")
    fill_page(page.read_text(encoding="utf-8"), dict.fromkeys((*TASKS, "run", "sweep", "both"), ""))


def _create_problem(folder: Path) -> str | None:
    """Why no file can be created in the existing directory ``folder``, or None if one can."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None


def _lexists(path: Path) -> bool:
    """Whether ``path`` names anything (a broken link too); a path through a file does not."""
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):
        return False


def directory_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used (or created) as a directory to write files in, or None.

    Nothing is created: an existing directory is probed with a temporary file that is removed
    at once, a missing one through its nearest existing ancestor.
    """
    path = Path(path)
    if _lexists(path):
        if not path.is_dir():
            kind = "a broken symbolic link" if not path.exists() else "not a directory"
            return f"exists and is {kind}"
        why = _create_problem(path)
        return f"cannot write in it ({why})" if why else None
    ancestor = next(p for p in path.absolute().parents if _lexists(p))
    if not ancestor.is_dir():
        return f"cannot create it: {ancestor} is not a directory"
    why = _create_problem(ancestor)
    return f"cannot create it in {ancestor} ({why})" if why else None


def _file_problem(path: Path) -> str | None:
    """Why an output file at ``path`` (in an existing directory) cannot be written, or None."""
    if not _lexists(path):
        return None
    if not path.is_file():
        return f"{path.name} exists there and is not a regular file"
    if not os.access(path, os.W_OK):
        return f"{path.name} exists there and is not writable"
    return None


def output_names(opts: Options) -> list[str]:
    """The files ``--out`` receives (figures only when plots are on)."""
    names = ["summary.md", "metrics.json"]
    if opts.plots:
        choice = opts.task or "both"
        tasks = ["data"] if opts.data is not None else [t for t in TASKS if choice in (t, "both")]
        names += [name for task in tasks for name in figure_names(task)]
        if has_sweep(opts):
            names.append(SWEEP_FIGURE)
    return names


def check_outputs(opts: Options) -> None:
    """Refuse, before any training, an ``--out`` (or ``--docs``) that cannot be written."""
    out = Path(opts.out)
    why = directory_problem(out)
    if why:
        raise ValueError(f"--out {out}: {why}")
    if out.is_dir():
        for name in output_names(opts):
            why = _file_problem(out / name)
            if why:
                raise ValueError(f"--out {out}: {why}")
    if opts.docs is None:
        return
    docs = Path(opts.docs)
    page = docs / DOCS_PAGE
    try:
        with page.open("a", encoding="utf-8"):  # appends nothing: only asks for write access
            pass
    except OSError as err:
        raise ValueError(f"--docs {docs}: cannot write {page} ({err.strerror or err})") from None
    if opts.plots:
        why = directory_problem(docs / DOCS_FIGURES)
        if why:
            raise ValueError(f"--docs {docs}: {docs / DOCS_FIGURES} {why}")
        if (docs / DOCS_FIGURES).is_dir():
            for name in output_names(opts)[2:]:
                why = _file_problem(docs / DOCS_FIGURES / name)
                if why:
                    raise ValueError(f"--docs {docs}: {DOCS_FIGURES}/{why}")


def run_demo(opts: Options, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the whole demo; returns the process exit code."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    started = time.perf_counter()
    _check_docs(opts)
    check_outputs(opts)  # before any training: a bad output folder fails in a second, not last
    grad_fn = _demo_backends.make_grad_fn(opts.backend)
    tasks = make_tasks(opts)
    print(worked_example(), file=out)
    print(file=out)

    runs = runs_for(opts.eps)
    progress = Progress(len(tasks) * len(runs) * opts.epochs, err)
    task_results = []
    for task in tasks:
        data = task.data
        label = f"{task.name:<5} " if len(tasks) > 1 else ""
        with one_blas_thread(), _demo_backends.few_threads(opts.backend):
            soft = knn_soft_labels(data.x_train, data.y_train, data.num_classes, opts.soft_k)
            results = [train(run, data, opts, grad_fn, soft, progress, label) for run in runs]
        tr = TaskResult(task, results)
        task_results.append(tr)
        print(file=out)
        if task.name != "data":
            print(f"{task.heading}.", file=out)
        print(
            f"Data: {data.description}; {len(data.y_train)} train / {len(data.y_val)} "
            f"validation / {len(data.y_test)} test. Backend: {opts.backend}.",
            file=out,
        )
        print(f"Test split after {opts.epochs} epochs:", file=out)
        print(table(results), file=out)
        print(file=out)
        for s in findings(results, data.num_classes):
            print(f"- {s}", file=out)
    contrast = contrast_findings(task_results) if len(tasks) > 1 else []
    if contrast:
        print(file=out)
        print("Both tasks:", file=out)
        for s in contrast:
            print(f"- {s}", file=out)
    elapsed = time.perf_counter() - started

    opts.out.mkdir(parents=True, exist_ok=True)
    figures: list[Path] = []
    plot_note = ""
    if opts.plots:
        try:
            from . import _plots
        except ImportError as e:
            plot_note = (
                f"Plots skipped: matplotlib is not installed ({e}). "
                "Install it with `pip install 'smoothce[demo]'`."
            )
        else:
            for tr in task_results:
                title = tr.task.name + " task" if tr.task.name != "data" else ""
                paths = [opts.out / name for name in tr.task.figures]
                figures += _plots.write_task(tr.results, tr.task.data.y_test, paths, N_BINS, title)
            if has_sweep(opts):
                sweep = [(tr.task.name, tr.results) for tr in task_results]
                figures.append(_plots.write_sweep(sweep, opts.out / SWEEP_FIGURE))
    else:
        plot_note = "Plots skipped (--no-plots)."
    summary = summary_markdown(task_results, opts, bool(figures), plot_note, elapsed)
    (opts.out / "summary.md").write_text(summary, encoding="utf-8")
    record = {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()},
        "tasks": [
            {
                "name": tr.task.name,
                "data": tr.task.data.description,
                "train": len(tr.task.data.y_train),
                "validation": len(tr.task.data.y_val),
                "test": len(tr.task.data.y_test),
            }
            for tr in task_results
        ],
        "runs": [
            {
                "task": tr.task.name,
                "name": r.run.name,
                "eps": r.run.eps,
                "kind": r.run.kind,
                "final": r.final,
                "history": r.history,
            }
            for tr in task_results
            for r in tr.results
        ],
    }
    (opts.out / "metrics.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(file=out)
    if plot_note:
        print(plot_note, file=out)
    written = ["summary.md", "metrics.json", *(f.name for f in figures)]
    print(f"Wrote {', '.join(written)} to {opts.out} ({elapsed:.1f} s of training).", file=out)
    if opts.docs is not None:
        changed = write_docs(Path(opts.docs), task_results, opts, figures)
        page = Path(opts.docs) / DOCS_PAGE
        state = "updated" if str(page) in changed else "already up to date"
        print(f"Calibration guide {page}: {state}.", file=out)
        if figures:
            print(f"Copied {len(figures)} figures to {Path(opts.docs) / DOCS_FIGURES}.", file=out)
        else:
            print(f"Figures in {Path(opts.docs) / DOCS_FIGURES} not regenerated.", file=out)
    return 0
