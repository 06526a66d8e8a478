"""``smoothce demo``: over-confidence and its remedies, measured on real data.

A small MLP is trained several times with the same initialisation, batch order and schedule,
changing only the target: one-hot with label smoothing ε ∈ ``eps``, soft labels, and noisy
labels (the three remedies of the seed post). After every epoch the held-out test split is
scored; temperature scaling fitted on the validation split is the post-hoc baseline. The
findings printed and written to the summary are computed from the measured numbers.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TextIO

import numpy as np

from smoothce import _loss, metrics

from . import _demo_backends

DIGITS_CITATION = (
    "UCI Optical Recognition of Handwritten Digits (E. Alpaydin and C. Kaynak, 1998; "
    "UCI Machine Learning Repository, https://doi.org/10.24432/C50P49), "
    "licensed CC BY 4.0"
)
N_BINS = 15
MID = (0.1, 0.9)  # the seed's "intermediate states": max-probabilities strictly inside


@dataclass
class Options:
    """Settings of one demo invocation (the CLI's options)."""

    epochs: int = 100
    eps: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)
    seed: int = 0
    backend: str = "numpy"
    out: Path = Path("smoothce-demo")
    data: Path | None = None
    hidden: int = 128
    batch_size: int = 64
    lr: float = 2e-3
    noise_rate: float = 0.1  # share of labels changed in each batch of the noisy-labels run
    soft_k: int = 10  # neighbours averaged into each soft label
    plots: bool = True


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


# --- data ------------------------------------------------------------------------------------


def load_data(path: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """``x`` as float32 (N, D) and ``y`` as int64 (N,) from an ``.npz`` with arrays x and y."""
    if path is None:
        with resources.files("smoothce.cli").joinpath("data/digits.npz").open("rb") as f:
            npz = np.load(f)
            x, y = npz["x"], npz["y"]
        description = f"{DIGITS_CITATION}: {len(y)} 8×8 images, 10 classes"
    else:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"--data {path}: no such file")
        with np.load(path) as npz:
            missing = [k for k in ("x", "y") if k not in npz.files]
            if missing:
                raise ValueError(f"--data {path} lacks array(s) {missing}; it has {npz.files}")
            x, y = npz["x"], npz["y"]
        description = f"{path}: {len(y)} examples"
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"need x of shape (N, ...) and y of shape (N,), got x {x.shape} and y {y.shape}"
        )
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
    if len(y) < 10 or y.min() < 0:
        raise ValueError(
            f"need at least 10 examples with labels >= 0, got {len(y)}, smallest label {y.min()}"
        )
    x = x.reshape(len(x), -1).astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or infinite values")
    return x, y.astype(np.int64), description


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
        # how sure the model is when it is wrong: the seed's complaint about 0/1 outputs
        "confidence_wrong": float(np.mean(conf[wrong])) if wrong.any() else math.nan,
        "nll": float(_loss.loss(z, labels, 0.0)),
        "ece": float(metrics.expected_calibration_error(z, labels, N_BINS)),
    }


def train(
    run: Run,
    data: Data,
    opts: Options,
    grad_fn: _demo_backends.GradFn,
    soft: np.ndarray | None,
    progress: Progress,
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
        progress.advance(f"{run.name:<14} epoch {epoch}/{opts.epochs}")
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


def findings(results: list[Result], num_classes: int, tol: float = 0.01) -> list[str]:
    """Plain-language statements, each computed from the measured numbers."""
    out: list[str] = []
    by_name = {r.run.name: r for r in results}
    base = next((r for r in results if r.run.kind == "hard" and r.run.eps == 0), None)
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
        gap = r.final["confidence"] - r.final["accuracy"]
        if gap > tol:
            verdict = f"over-confident by {100 * gap:.1f} points"
        elif gap < -tol:
            verdict = f"under-confident by {100 * -gap:.1f} points"
        else:
            verdict = f"about calibrated on average (gap {100 * gap:+.1f} points)"
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
            "On this data label smoothing made the model under-confident: the smoothed target "
            f"never asks for a confidence above 1 − ε + ε/K ({caps}), while the test accuracy "
            "is higher."
            + (
                " A temperature T < 1 fitted on validation undoes it and lowers the ECE in every "
                "one of these runs."
                if all(r.temperature < 1 and r.final["ece_ts"] < r.final["ece"] for r in under)
                else ""
            )
        )
    best = min(results, key=lambda r: r.final["ece"])
    out.append(
        f"Lowest test ECE without post-hoc scaling: {best.run.name} ({best.final['ece']:.3f})."
    )
    if base is not None:
        better = [
            r.run.name for r in results if r is not base and r.final["ece"] < base.final["ece_ts"]
        ]
        out.append(
            f"Temperature scaling of the ε = 0 model (the post-hoc baseline) gives test ECE "
            f"{base.final['ece_ts']:.3f} and NLL {base.final['nll_ts']:.3f} "
            f"(from {base.final['ece']:.3f} and {base.final['nll']:.3f}); "
            + (
                f"runs with a lower ECE without it: {', '.join(better)}."
                if better
                else "no training-time remedy reached a lower ECE."
            )
        )
    accs = [r.final["accuracy"] for r in results]
    out.append(
        f"Test accuracy ranged from {min(accs):.3f} to {max(accs):.3f} across runs "
        f"({len(by_name)} runs)."
    )
    return out


def summary_markdown(
    results: list[Result],
    data: Data,
    opts: Options,
    plots: list[str],
    plot_note: str,
    elapsed: float,
) -> str:
    n_tr, n_va, n_te = len(data.y_train), len(data.y_val), len(data.y_test)
    lines = [
        "# smoothce demo",
        "",
        f"Data: {data.description}. Fixed split: {n_tr} train / {n_va} validation / {n_te} test.",
        "",
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
        "## Test-split results after the last epoch",
        "",
        table(results),
        "",
        f"NLL and ECE ({N_BINS} equal-width bins) on the test split; “mean conf” is the mean "
        "max-probability; “conf in (0.1, 0.9)” the share of test images whose max-probability "
        "is strictly inside (0.1, 0.9); “conf when wrong” the mean max-probability on the "
        "misclassified test images; T is the temperature fitted on the validation split "
        "(post-hoc baseline), with the test NLL and ECE of softmax(z / T).",
        "",
        "## Findings",
        "",
        *(f"- {s}" for s in findings(results, data.num_classes)),
        "",
        "## Figures",
        "",
    ]
    if plots:
        lines += [f"![{p}]({p})" for p in plots]
    else:
        lines.append(plot_note)
    lines += [
        "",
        f"Per-epoch numbers are in `metrics.json`. Run time {elapsed:.1f} s.",
        "",
    ]
    return "\n".join(lines)


def worked_example() -> str:
    """The seed's example with smoothce's own softmax: the same logits, five times the norm."""
    z = np.array([1.5, 1.2, 1.0])
    lines = ["The seed's worked example (smoothce.metrics.softmax):"]
    for scale in (1, 5):
        zs = z * scale
        p = metrics.softmax(zs)
        lines.append(
            f"  softmax([{', '.join(f'{v:.1f}' for v in zs)}]) = "
            f"[{', '.join(f'{v:.4f}' for v in p)}]   ‖z‖ = {float(metrics.logit_norm(zs)):.2f}"
        )
    lines.append("  Five times the norm, same prediction, far more confident output.")
    return "\n".join(lines)


def run_demo(opts: Options, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the whole demo; returns the process exit code."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    started = time.perf_counter()
    print(worked_example(), file=out)
    print(file=out)

    grad_fn = _demo_backends.make_grad_fn(opts.backend)
    x, y, description = load_data(opts.data)
    data = split(x, y, description)
    print(
        f"Data: {description}; {len(data.y_train)} train / {len(data.y_val)} validation / "
        f"{len(data.y_test)} test. Backend: {opts.backend}.",
        file=out,
    )
    runs = runs_for(opts.eps)
    soft = knn_soft_labels(data.x_train, data.y_train, data.num_classes, opts.soft_k)
    progress = Progress(len(runs) * opts.epochs, err)
    with _demo_backends.few_threads(opts.backend):
        results = [train(run, data, opts, grad_fn, soft, progress) for run in runs]
    elapsed = time.perf_counter() - started

    print(file=out)
    print(f"Test split after {opts.epochs} epochs:", file=out)
    print(table(results), file=out)
    print(file=out)
    for s in findings(results, data.num_classes):
        print(f"- {s}", file=out)

    opts.out.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    plot_note = ""
    if opts.plots:
        try:
            from . import _plots

            plots = _plots.write_all(results, data.y_test, opts.out, N_BINS)
        except ImportError as e:
            plot_note = (
                f"Plots skipped: matplotlib is not installed ({e}). "
                "Install it with `pip install 'smoothce[demo]'`."
            )
    else:
        plot_note = "Plots skipped (--no-plots)."
    summary = summary_markdown(results, data, opts, plots, plot_note, elapsed)
    (opts.out / "summary.md").write_text(summary, encoding="utf-8")
    record = {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()},
        "data": description,
        "runs": [
            {
                "name": r.run.name,
                "eps": r.run.eps,
                "kind": r.run.kind,
                "final": r.final,
                "history": r.history,
            }
            for r in results
        ],
    }
    (opts.out / "metrics.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(file=out)
    if plot_note:
        print(plot_note, file=out)
    written = ["summary.md", "metrics.json", *plots]
    print(f"Wrote {', '.join(written)} to {opts.out} ({elapsed:.1f} s of training).", file=out)
    return 0
