"""The demo's figures (matplotlib, an optional dependency: ``pip install 'smoothce[demo]'``).

Figures are at most 10 inches wide with 11–12 pt text, so that their text stays readable when
a page (the calibration guide, a summary viewer) scales them down to its width.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt

from smoothce import metrics

_STYLE = {
    "font.size": 12,
    "axes.titlesize": 12,
    "axes.labelsize": 12,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 10,
    "figure.titlesize": 14,
}
_WIDTH = 10.0  # inches, the widest figure


def write_task(
    results: list[Any], labels: np.ndarray, paths: list[Path], n_bins: int, title: str = ""
) -> list[Path]:
    """A task's four figures, written to ``paths`` (logit norm, per-epoch metrics,
    reliability diagrams, confidence histograms); returns the paths."""
    suffix = f" — {title}" if title else ""
    logit_norm, epochs, reliability, hist = paths
    with plt.rc_context(_STYLE):
        _logit_norm(results, logit_norm, suffix)
        _epochs(results, epochs, suffix)
        _reliability(results, labels, reliability, n_bins, suffix)
        _histograms(results, hist, suffix)
    return list(paths)


def _plain(results: list[Any]) -> Any:
    return next((r for r in results if r.run.kind == "hard" and r.run.eps == 0), None)


def _logit_norm(results: list[Any], path: Path, suffix: str) -> None:
    fig, ax = plt.subplots(figsize=(8.0, 4.8))
    for r in results:
        epochs = [h["epoch"] for h in r.history]
        ax.plot(epochs, [h["logit_norm"] for h in r.history], label=r.run.name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean ‖z‖₂ on the test split")
    ax.set_title(f"Logit norm per epoch{suffix}")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    _save(fig, path)


def _epochs(results: list[Any], path: Path, suffix: str) -> None:
    panels = [
        ("confidence", "mean max-probability"),
        ("mid_share", "share of max-probs in (0.1, 0.9)"),
        ("ece", "ECE (15 bins)"),
        ("accuracy", "accuracy"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(_WIDTH, 7.0), sharex=True)
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for r in results:
            ax.plot([h["epoch"] for h in r.history], [h[key] for h in r.history], label=r.run.name)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    handles, names = axes[0, 0].get_legend_handles_labels()
    ncol = min(len(names), 6)
    fig.legend(handles, names, loc="lower center", ncol=ncol, frameon=False)
    fig.suptitle(f"Held-out (test split) metrics per epoch{suffix}")
    fig.tight_layout(rect=(0, 0.045 * math.ceil(len(names) / ncol), 1, 1))
    _save(fig, path, layout=False)


def _grid(n: int, cols: int = 3) -> tuple[Any, Any]:
    cols = min(n, cols)
    rows = math.ceil(n / cols)
    side = _WIDTH / 3
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows + 0.4), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def _reliability(
    results: list[Any], labels: np.ndarray, path: Path, n_bins: int, suffix: str
) -> None:
    base = _plain(results)
    panels = [(r.run.name, r.test_logits, r.final["ece"]) for r in results]
    if base is not None:
        panels.append(
            (
                f"eps=0, T={base.temperature:.2f}",
                base.test_logits / base.temperature,
                base.final["ece_ts"],
            )
        )
    fig, axes = _grid(len(panels))
    for i, (ax, (name, logits, ece)) in enumerate(zip(axes, panels, strict=False)):
        curve = metrics.reliability_curve(logits, labels, n_bins)
        centers = (curve.edges[:-1] + curve.edges[1:]) / 2
        ok = curve.count > 0
        ax.bar(
            centers[ok],
            curve.accuracy[ok],
            width=1.0 / n_bins,
            color="tab:blue",
            alpha=0.75,
            edgecolor="black",
            linewidth=0.5,
            label="accuracy",
        )
        ax.plot(
            centers[ok],
            curve.confidence[ok],
            "o",
            color="tab:red",
            markersize=4,
            label="confidence",
        )
        ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}: ECE {ece:.3f}")
        if i % 3 == 0:
            ax.set_ylabel("accuracy")
        ax.set_xlabel("confidence")
    next(iter(fig.axes)).legend(loc="upper left")
    fig.suptitle(f"Reliability diagrams (test split, bins of confidence){suffix}")
    _save(fig, path)


def _histograms(results: list[Any], path: Path, suffix: str) -> None:
    fig, axes = _grid(len(results))
    bins = np.linspace(0, 1, 41)
    for i, (ax, r) in enumerate(zip(axes, results, strict=False)):
        conf = metrics.softmax(r.test_logits).max(axis=1)
        ax.hist(conf, bins=bins, color="tab:blue", edgecolor="black", linewidth=0.3)
        ax.axvline(
            float(np.mean(conf)),
            color="tab:red",
            linestyle="--",
            linewidth=1.5,
            label=f"mean {np.mean(conf):.3f}",
        )
        ax.axvline(
            r.final["accuracy"],
            color="black",
            linestyle=":",
            linewidth=1.5,
            label=f"accuracy {r.final['accuracy']:.3f}",
        )
        ax.set_yscale("log")
        ax.set_xlim(0, 1)
        ax.set_title(r.run.name)
        ax.set_xlabel("max-probability")
        if i % 3 == 0:
            ax.set_ylabel("test images")
        ax.legend(loc="upper left")
    fig.suptitle(f"Confidence histograms (test split, log count){suffix}")
    _save(fig, path)


def write_sweep(tasks: list[tuple[str, list[Any]]], path: Path) -> Path:
    """ECE, NLL, accuracy and logit norm against ε, one line per task.

    The ECE and NLL panels also show temperature scaling of each task's ε = 0 model (dashed,
    same colour); a star marks each task's lowest ECE.
    """
    panels = [
        ("ece", "ECE (15 bins)"),
        ("nll", "NLL"),
        ("accuracy", "accuracy"),
        ("logit_norm", "mean ‖z‖₂"),
    ]
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(2, 2, figsize=(_WIDTH, 7.0), sharex=True)
        for n, (name, results) in enumerate(tasks):
            color = f"C{n}"
            runs = sorted((r for r in results if r.run.kind == "hard"), key=lambda r: r.run.eps)
            eps = [r.run.eps for r in runs]
            base = _plain(results)
            for ax, (key, title) in zip(axes.flat, panels, strict=True):
                values = [r.final[key] for r in runs]
                ax.plot(eps, values, "o-", color=color, label=f"{name}: label smoothing")
                if key == "ece":
                    best = int(np.argmin(values))
                    ax.plot(eps[best], values[best], "*", color=color, markersize=16)
                if base is not None and key in ("ece", "nll"):
                    ax.axhline(
                        base.final[f"{key}_ts"],
                        color=color,
                        linestyle="--",
                        linewidth=1.2,
                        label=f"{name}: ε = 0 + temperature",
                    )
                ax.set_title(title)
                ax.grid(alpha=0.3)
        ticks = sorted({r.run.eps for _, rs in tasks for r in rs if r.run.kind == "hard"})
        gaps = np.diff(ticks) / max(ticks[-1] - ticks[0], 1e-12) if len(ticks) > 1 else [1.0]
        for ax in axes[1]:
            ax.set_xlabel("label smoothing ε")
            # a tick at every ε tried; slanted when two of them are close
            ax.set_xticks(ticks, [f"{e:g}" for e in ticks], rotation=45 if min(gaps) < 0.1 else 0)
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="lower center", ncol=2, frameon=False)
        fig.suptitle("Test-split metrics against ε (★: lowest ECE)")
        fig.tight_layout(rect=(0, 0.04 * math.ceil(len(names) / 2), 1, 1))
        _save(fig, path, layout=False)
    return path


def _save(fig: Any, path: Path, layout: bool = True) -> None:
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
