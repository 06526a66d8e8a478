"""The ``smoothce`` command line: ``smoothce demo`` and ``smoothce bench``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from smoothce import __version__

__all__ = ["main"]

_BENCH_HELP = (
    "Time label-smoothed cross-entropy (forward + backward) for every installed framework "
    "against its native loss. Run `smoothce bench --help` for its options."
)


def _eps_list(text: str) -> list[float]:
    """One ``--eps`` item: a number or a comma-separated list of numbers in [0, 1]."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {part!r}") from None
        if not 0.0 <= value <= 1.0:
            raise argparse.ArgumentTypeError(f"ε must lie in [0, 1], got {value:g}")
        values.append(value)
    if not values:
        raise argparse.ArgumentTypeError(f"no value in {text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def error(command: str, message: object) -> int:
    """Print the one-line ``smoothce COMMAND: error: ...`` message; returns the exit code 2."""
    text = " ".join(str(message).split())  # one line, whatever the message held
    print(f"smoothce {command}: error: {text}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smoothce",
        description="Label-smoothed softmax cross-entropy for NumPy, PyTorch, JAX and TensorFlow.",
    )
    parser.add_argument("--version", action="version", version=f"smoothce {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="train a small classifier with and without label smoothing and compare calibration",
        description=(
            "Show over-confidence and its remedies on real data. First prints the source post's "
            "worked example (softmax of [1.5, 1.2, 1.0] and of five times those logits). Then "
            "trains the same small MLP several times, changing only the target: label smoothing "
            "with each ε of --eps, soft labels (from each image's nearest neighbours) and noisy "
            "labels. It does so on two tasks built from the bundled digits: easy (the images as "
            "they are) and hard (the same images under one fixed draw of Gaussian pixel noise, "
            "so that some of them can no longer be told apart). After each epoch it scores the "
            "test split (mean logit norm, mean max confidence, share of max-probabilities in "
            "(0.1, 0.9), accuracy, NLL, ECE with 15 bins), fits temperature scaling on the "
            "validation split as the post-hoc baseline, prints a table and findings per task and "
            "writes a report folder (summary.md, metrics.json and PNG plots when matplotlib is "
            "installed). The digits are the UCI handwritten digits (Alpaydin & Kaynak 1998, "
            "CC BY 4.0) shipped with smoothce."
        ),
    )
    demo.add_argument(
        "--backend",
        choices=["numpy", "torch", "jax", "tensorflow"],
        default="numpy",
        help="who computes the gradients: NumPy with smoothce.loss_and_grad and hand-written "
        "backpropagation, or that framework's autodiff through its smoothce adapter "
        "(default: numpy)",
    )
    demo.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="PATH.npz",
        help="your own data: an .npz with x (N, ...) real, finite features and y (N,) integer "
        "labels 0…K−1, trained on instead of the bundled tasks; K (the largest label + 1) may "
        "be at most 10,000 and at most N, and N at least 10 (default: the bundled 8×8 digits)",
    )
    demo.add_argument(
        "--task",
        choices=["easy", "hard", "both"],
        default=None,
        help="which bundled task: easy (the digits as they are), hard (the digits with "
        "Gaussian pixel noise, σ = 6 on the 0–16 scale, a fixed draw) or both; each gets its "
        "own table, findings and plots (default: both)",
    )
    demo.add_argument(
        "--epochs",
        type=_positive_int,
        default=100,
        help="training epochs of every run (default: 100)",
    )
    demo.add_argument(
        "--eps",
        type=_eps_list,
        nargs="+",
        default=[[0.0, 0.05, 0.1, 0.2]],
        metavar="EPS",
        help="label-smoothing values, one run each, space- or comma-separated; with three or "
        "more, eps_sweep.png plots ECE, NLL, accuracy and logit norm against ε for each task, "
        "e.g. --eps 0,0.02,0.05,0.1,0.2,0.3 (default: 0 0.05 0.1 0.2)",
    )
    demo.add_argument(
        "--seed",
        type=_nonnegative_int,
        default=0,
        help="seed of the initialisation, batch order and label noise "
        "(the data split and the hard task's pixel noise are fixed; default: 0)",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("smoothce-demo"),
        help="folder for summary.md, metrics.json and the plots, created if need be; checked "
        "before training (default: ./smoothce-demo)",
    )
    demo.add_argument(
        "--no-plots",
        action="store_true",
        help="skip the PNG plots even when matplotlib is installed",
    )
    demo.add_argument(
        "--docs",
        type=Path,
        default=None,
        metavar="DIR",
        help="also regenerate the calibration guide from this run: the generated blocks of "
        "DIR/calibration.md and the figures in DIR/figures (needs the default settings; "
        "python3 dev.py demo --docs docs)",
    )

    sub.add_parser(
        "bench",
        help="benchmark the loss against each framework's native one",
        description=_BENCH_HELP,
        add_help=False,
    )
    return parser


def _bench(argv: list[str]) -> int:
    try:
        bench = importlib.import_module("smoothce.cli._bench")
    except ModuleNotFoundError as err:
        if err.name != "smoothce.cli._bench":
            raise
        if any(a in ("-h", "--help") for a in argv):
            print(f"usage: smoothce bench [options]\n\n{_BENCH_HELP}\n")
        return error(
            "bench",
            "not available in this installation (the module smoothce.cli._bench is missing)",
        )
    return int(bench.main(argv) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smoothce`` console script; returns the exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] == "bench":
        # the benchmark owns its options (and its --help)
        return _bench(args_in[1:])
    parser = build_parser()
    args = parser.parse_args(args_in)
    if args.command is None:
        parser.print_help()
        return 0
    from . import _demo

    opts = _demo.Options(
        epochs=args.epochs,
        eps=tuple(dict.fromkeys(e for group in args.eps for e in group)),
        seed=args.seed,
        backend=args.backend,
        out=args.out,
        data=args.data,
        task=args.task,
        plots=not args.no_plots,
        docs=args.docs,
    )
    try:
        return _demo.run_demo(opts)
    except (ValueError, RuntimeError) as err:
        return error("demo", err)
    except OSError as err:  # e.g. a disk that filled up or a folder removed while training
        where = f": {err.filename}" if err.filename else ""
        return error("demo", f"{err.strerror or err}{where}")
