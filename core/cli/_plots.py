"""The demo's figures (matplotlib, an optional dependency: ``pip install 'smoothce[demo]'``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt

from smoothce import metrics


def write_all(results: list[Any], labels: np.ndarray, out: Path, n_bins: int) -> list[str]:
    """Write every figure into ``out``; returns the file names."""
    return [
        _logit_norm(results, out / "logit_norm.png"),
        _epochs(results, out / "epochs.png"),
        _reliability(results, labels, out / "reliability.png", n_bins),
        _histograms(results, out / "confidence_hist.png"),
    ]


def _logit_norm(results: list[Any], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for r in results:
        epochs = [h["epoch"] for h in r.history]
        ax.plot(epochs, [h["logit_norm"] for h in r.history], label=r.run.name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean ‖z‖₂ on the test split")
    ax.set_title("Logit norm per epoch")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _epochs(results: list[Any], path: Path) -> str:
    panels = [
        ("confidence", "mean max-probability"),
        ("mid_share", "share of max-probs in (0.1, 0.9)"),
        ("ece", "ECE (15 bins)"),
        ("accuracy", "accuracy"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for r in results:
            ax.plot([h["epoch"] for h in r.history], [h[key] for h in r.history], label=r.run.name)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    axes[0, 0].legend(fontsize="small")
    fig.suptitle("Held-out (test split) metrics per epoch")
    return _save(fig, path)


def _grid(n: int) -> tuple[Any, Any]:
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def _reliability(results: list[Any], labels: np.ndarray, path: Path, n_bins: int) -> str:
    base = next((r for r in results if r.run.kind == "hard" and r.run.eps == 0), None)
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
    for ax, (name, logits, ece) in zip(axes, panels, strict=False):
        curve = metrics.reliability_curve(logits, labels, n_bins)
        centers = (curve.edges[:-1] + curve.edges[1:]) / 2
        width = 1.0 / n_bins
        ok = curve.count > 0
        ax.bar(
            centers[ok],
            curve.accuracy[ok],
            width=width,
            color="tab:blue",
            alpha=0.75,
            edgecolor="black",
            linewidth=0.5,
            label="accuracy per bin",
        )
        ax.plot(
            centers[ok],
            curve.confidence[ok],
            "o",
            color="tab:red",
            markersize=3.5,
            label="mean confidence per bin",
        )
        ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}\nECE {ece:.3f}", fontsize="medium")
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
    next(iter(fig.axes)).legend(fontsize="x-small", loc="upper left")
    fig.suptitle("Reliability diagrams (test split)")
    return _save(fig, path)


def _histograms(results: list[Any], path: Path) -> str:
    fig, axes = _grid(len(results))
    bins = np.linspace(0, 1, 41)
    for ax, r in zip(axes, results, strict=False):
        conf = metrics.softmax(r.test_logits).max(axis=1)
        ax.hist(conf, bins=bins, color="tab:blue", edgecolor="black", linewidth=0.3)
        ax.axvline(
            float(np.mean(conf)),
            color="tab:red",
            linestyle="--",
            linewidth=1,
            label=f"mean {np.mean(conf):.3f}",
        )
        ax.axvline(
            r.final["accuracy"],
            color="black",
            linestyle=":",
            linewidth=1,
            label=f"accuracy {r.final['accuracy']:.3f}",
        )
        ax.set_yscale("log")
        ax.set_xlim(0, 1)
        ax.set_title(r.run.name, fontsize="medium")
        ax.set_xlabel("max-probability")
        ax.legend(fontsize="x-small", loc="upper left")
    fig.suptitle("Confidence histograms (test split, log count)")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
