"""Benchmark: smoothce against each framework's native label-smoothed cross-entropy.

For every installed framework and shape it times forward + backward (median of ``--repeats``
after warm-up, the contenders alternated in one process) and measures the peak extra resident
memory of one forward + backward in a fresh process per case (Linux's VmHWM, reset after the
inputs exist and the code is warm). Memory is reported in N×C buffers of the input dtype.

Run ``smoothce bench`` (or ``python bench/run.py``); ``--out docs/benchmarks.md`` writes the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EPS = 0.1
SHAPES = [(256, 10, "float32"), (8192, 1000, "float32"), (2048, 32000, "float32")]
LARGE = (1024, 128000)  # in each framework's 16-bit float on CPU
QUICK_SHAPES = [(64, 10, "float32"), (512, 1000, "float32"), (256, 8000, "float32")]
QUICK_LARGE = (128, 16000)
FRAMEWORKS = ("numpy", "torch", "jax", "tensorflow", "torch-linear")
# the LLM head: N tokens, H hidden, V classes; the fused loss against logits formed whole
LINEAR_H = 512
LINEAR_SHAPES = [(8192, 32000, "float32")]
QUICK_LINEAR_SHAPES = [(512, 4000, "float32")]


# --------------------------------------------------------------------------- contenders
# Each builder returns {name: step}, where step() runs one forward + backward and blocks
# until the result exists. Inputs are made once per process.


def _numpy(n: int, k: int, dtype: str, eps: float) -> dict[str, Callable[[], Any]]:
    import numpy as np

    import smoothce

    rng = np.random.default_rng(0)
    z = rng.standard_normal((n, k), dtype=np.float32).astype(dtype)
    y = rng.integers(0, k, n)
    rows = np.arange(n)

    def hand_written() -> Any:
        # a careful NumPy loss + gradient: one exp, in-place updates, no one-hot
        m = z.max(axis=1, keepdims=True)
        g = np.exp(z - m)
        s = g.sum(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(s[:, 0])
        value = np.mean(lse - (1 - eps) * z[rows, y] - eps / k * z.sum(axis=1))
        g /= s
        g -= eps / k
        g[rows, y] -= 1 - eps
        g /= n
        return value, g

    buffer = z.copy()

    def in_place() -> Any:
        buffer[...] = z  # restore the logits the previous call overwrote
        return smoothce.loss_and_grad(buffer, y, eps, overwrite_logits=True)

    return {
        "smoothce": lambda: smoothce.loss_and_grad(z, y, eps),
        "smoothce ε=0": lambda: smoothce.loss_and_grad(z, y, 0.0),
        "smoothce in-place": in_place,
        "hand-written NumPy": hand_written,
        "np.exp pass": lambda: np.exp(z),
    }


def _torch(n: int, k: int, dtype: str, eps: float) -> dict[str, Callable[[], Any]]:
    import torch
    import torch.nn.functional as F

    import smoothce.torch as sct

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(n, k, generator=gen).to(getattr(torch, dtype)).requires_grad_()
    y = torch.randint(0, k, (n,), generator=gen)

    def run(loss_fn: Callable[..., Any], e: float) -> Callable[[], Any]:
        def step() -> Any:
            z.grad = None
            loss_fn(z, y, label_smoothing=e).backward()
            return z.grad

        return step

    def with_terms(x: Any, t: Any, label_smoothing: float) -> Any:
        return sct.cross_entropy(x, t, label_smoothing=label_smoothing, z_loss=1e-4, softcap=30.0)

    def native_terms(x: Any, t: Any, label_smoothing: float) -> Any:
        # the same two terms written in torch ops around F.cross_entropy
        capped = 30.0 * torch.tanh(x / 30.0)
        lse = torch.logsumexp(capped.float(), dim=-1)
        loss = F.cross_entropy(capped, t, label_smoothing=label_smoothing)
        return loss + 1e-4 * (lse * lse).mean()

    steps = {
        "smoothce": run(sct.cross_entropy, eps),
        "smoothce ε=0": run(sct.cross_entropy, 0.0),
        "smoothce + z-loss + soft-cap": run(with_terms, eps),
        "native F.cross_entropy": run(F.cross_entropy, eps),
        "native + z-loss + soft-cap in torch ops": run(native_terms, eps),
    }
    in_place = getattr(sct, "cross_entropy_inplace", None)
    if in_place is not None:
        steps["smoothce in-place"] = run(in_place, eps)
    return steps


def _jax(n: int, k: int, dtype: str, eps: float) -> dict[str, Callable[[], Any]]:
    import jax
    import jax.numpy as jnp
    import optax

    import smoothce.jax as scj

    key = jax.random.PRNGKey(0)
    z = jax.random.normal(key, (n, k)).astype(getattr(jnp, dtype))
    y = jax.random.randint(key, (n,), 0, k)

    def ours(e: float) -> Callable[[], Any]:
        f = jax.jit(
            jax.value_and_grad(
                lambda z: scj.softmax_cross_entropy_with_integer_labels(
                    z, y, label_smoothing=e
                ).mean()
            )
        )
        f = f.lower(z).compile()
        return lambda: jax.block_until_ready(f(z))

    def native(z: Any) -> Any:
        return optax.softmax_cross_entropy(
            z, optax.smooth_labels(jax.nn.one_hot(y, k, dtype=z.dtype), eps)
        ).mean()

    optax_step = jax.jit(jax.value_and_grad(native)).lower(z).compile()
    return {
        "smoothce": ours(eps),
        "smoothce ε=0": ours(0.0),
        "optax": lambda: jax.block_until_ready(optax_step(z)),
    }


def _tensorflow(n: int, k: int, dtype: str, eps: float) -> dict[str, Callable[[], Any]]:
    import tensorflow as tf

    import smoothce.tensorflow as sctf

    gen = tf.random.Generator.from_seed(0)
    z = tf.cast(gen.normal((n, k)), getattr(tf, dtype))
    y = gen.uniform((n,), 0, k, dtype=tf.int64)
    keras_loss = None
    import keras

    keras_loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=eps)
    spec = [tf.TensorSpec([None, k], z.dtype), tf.TensorSpec([None], tf.int64)]

    def ours(e: float, xla: bool) -> Callable[..., Any]:
        @tf.function(input_signature=spec, jit_compile=xla)
        def step(z: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(z)
                value = tf.reduce_mean(
                    sctf.sparse_softmax_cross_entropy_with_logits(y, z, label_smoothing=e)
                )
            return value, tape.gradient(value, z)

        return step

    def native_step(z: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = keras_loss(tf.one_hot(y, k, dtype=z.dtype), z)
        return value, tape.gradient(value, z)

    native = tf.function(native_step, input_signature=spec)
    # what Keras's own train step runs on TensorFlow (compile's jit_compile="auto")
    native_xla = tf.function(native_step, input_signature=spec, jit_compile=True)

    @tf.function(input_signature=spec)
    def floor(z: Any, y: Any) -> Any:
        # what any loss step costs at least: one graph call returning a scalar and an N×C tensor
        return tf.reduce_sum(z), z

    def run(fn: Callable[..., Any]) -> Callable[[], Any]:
        return lambda: [t.numpy() for t in fn(z, y)]

    return {
        "smoothce": run(ours(eps, False)),
        "smoothce ε=0": run(ours(0.0, False)),
        "smoothce XLA": run(ours(eps, True)),
        "native Keras CCE": run(native),
        "native Keras CCE XLA": run(native_xla),
        "tf.function call floor": run(floor),
    }


def _torch_linear(n: int, v: int, dtype: str, eps: float) -> dict[str, Callable[[], Any]]:
    """The LLM head: the fused chunked loss against the same loss on logits formed whole."""
    import torch
    import torch.nn.functional as F

    import smoothce.torch as sct

    gen = torch.Generator().manual_seed(0)
    kind = getattr(torch, dtype)
    h = (torch.randn(n, LINEAR_H, generator=gen) / 4).to(kind).requires_grad_()
    w = (torch.randn(v, LINEAR_H, generator=gen) / 8).to(kind).requires_grad_()
    y = torch.randint(0, v, (n,), generator=gen)

    def run(loss: Callable[[], Any]) -> Callable[[], Any]:
        def step() -> Any:
            h.grad = w.grad = None
            loss().backward()
            return h.grad, w.grad

        return step

    return {
        "smoothce fused": run(lambda: sct.linear_cross_entropy(h, w, y, label_smoothing=eps)),
        "smoothce unfused": run(lambda: sct.cross_entropy(h @ w.T, y, label_smoothing=eps)),
        "native F.linear_cross_entropy": run(
            lambda: F.linear_cross_entropy(h, w, y, label_smoothing=eps)
        ),
    }


BUILDERS = {
    "numpy": _numpy,
    "torch": _torch,
    "jax": _jax,
    "tensorflow": _tensorflow,
    "torch-linear": _torch_linear,
}
NATIVE = {
    "numpy": "hand-written NumPy",
    "torch": "native F.cross_entropy",
    "jax": "optax",
    "tensorflow": "native Keras CCE",
    "torch-linear": "smoothce unfused",
}
MIN_SAMPLE_S = 0.005  # one timing sample lasts at least this long (several calls if need be)
FLOORS = ("np.exp pass", "tf.function call floor")  # yardsticks: timed, not measured for memory
HALF = {"numpy": "float16", "torch": "bfloat16", "jax": "bfloat16", "tensorflow": "bfloat16"}


# --------------------------------------------------------------------------- workers


def _time_worker(framework: str, n: int, k: int, dtype: str, repeats: int) -> dict[str, float]:
    steps = BUILDERS[framework](n, k, dtype, EPS)
    calls = {}
    for name, step in steps.items():  # warm-up: compile, allocate, fault pages in
        step()
        start = time.perf_counter()
        step()
        # sub-millisecond steps are timed over several calls per sample, so that timer and
        # scheduler noise do not decide the ratio
        calls[name] = max(1, min(200, round(MIN_SAMPLE_S / (time.perf_counter() - start))))
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for repeat in range(repeats):
        # Contenders alternate, so drift hits all of them alike, and the starting one rotates:
        # what the previous contender freed (page faults or a warm heap) is then shared too.
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            step, count = steps[name], calls[name]
            start = time.perf_counter()
            for _ in range(count):
                step()
            times[name].append((time.perf_counter() - start) / count)
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_worker(framework: str, n: int, k: int, dtype: str, name: str) -> float:
    """Peak resident memory of one step above what the inputs and warm code already hold."""
    steps = BUILDERS[framework](n, k, dtype, EPS)
    small = BUILDERS[framework](max(2, n // 64), k, dtype, EPS)
    small[name]()  # warm the code path (and compile) on a small batch
    step = steps[name]
    if framework == "jax":
        step()  # the compiled executable is shape-specific; its first run allocates nothing new
    import gc

    gc.collect()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset VmHWM to the current resident size
    before = _rss_kib("VmRSS")
    result = step()
    peak = _rss_kib("VmHWM")
    del result
    itemsize = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}[dtype]
    return (peak - before) * 1024 / (n * k * itemsize)


def _subprocess(args: list[str]) -> Any:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-m", "smoothce.cli._bench", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr else "failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- driver


def _installed(framework: str) -> bool:
    import importlib.util

    module = framework.split("-")[0]
    return module == "numpy" or importlib.util.find_spec(module) is not None


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for module in ("numpy", "torch", "jax", "tensorflow"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except Exception:
            continue
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; " + ", ".join(
        versions
    )


def run(
    frameworks: list[str], repeats: int, memory: bool, quick: bool, progress: Callable[[str], None]
) -> list[dict[str, Any]]:
    shapes = QUICK_SHAPES if quick else SHAPES
    large = QUICK_LARGE if quick else LARGE
    rows = []
    for framework in frameworks:
        if framework == "torch-linear":
            cases = QUICK_LINEAR_SHAPES if quick else LINEAR_SHAPES
        else:
            cases = [*shapes, (*large, HALF[framework])]
        for n, k, dtype in cases:
            progress(f"{framework} ({n}, {k}) {dtype}")
            try:
                times = _subprocess(
                    ["--worker", "time", framework, str(n), str(k), dtype, str(repeats)]
                )
            except RuntimeError as err:
                rows.append(
                    {"framework": framework, "shape": (n, k), "dtype": dtype, "error": str(err)}
                )
                continue
            mems: dict[str, float] = {}
            if memory:
                for name in times:
                    if name in FLOORS or "ε=0" in name:
                        continue
                    try:
                        mems[name] = _subprocess(
                            ["--worker", "memory", framework, str(n), str(k), dtype, name]
                        )
                    except RuntimeError:
                        continue
            rows.append(
                {
                    "framework": framework,
                    "shape": (n, k),
                    "dtype": dtype,
                    "times": times,
                    "memory": mems,
                }
            )
    return rows


SECTIONS = {
    # framework: (heading, what is compared)
    "numpy": ("NumPy", "`smoothce.loss_and_grad`, against a hand-written NumPy step."),
    "torch": (
        "PyTorch",
        "`smoothce.torch.cross_entropy` through autograd, against `F.cross_entropy`; the "
        "z-loss rows add `z_loss=1e-4, softcap=30` (natively: `F.cross_entropy` on "
        "`30·tanh(z/30)` plus the z-loss in torch ops).",
    ),
    "jax": (
        "JAX",
        "`smoothce.jax.softmax_cross_entropy_with_integer_labels` under `jax.jit` of\n"
        "`jax.value_and_grad`, against optax.",
    ),
    "tensorflow": (
        "TensorFlow",
        "`smoothce.tensorflow.sparse_softmax_cross_entropy_with_logits` with a `GradientTape` "
        "in a\n`tf.function`, against Keras's `CategoricalCrossentropy`.",
    ),
    "torch-linear": (
        "The LLM head (PyTorch)",
        f"`smoothce.torch.linear_cross_entropy` (fused, chunked) from hidden states of width "
        f"{LINEAR_H}, against `smoothce.torch.cross_entropy(input @ linear_weight.T)` on the "
        "whole logits and PyTorch's `F.linear_cross_entropy(label_smoothing=0.1)`; the shape "
        "is N×V and memory is in N×V buffers.",
    ),
}


def table(rows: list[dict[str, Any]]) -> str:
    """One Markdown table per framework, under its heading."""
    blocks = []
    for framework in dict.fromkeys(row["framework"] for row in rows):
        heading, text = SECTIONS[framework]
        lines = [
            f"### {heading}",
            "",
            text,
            "",
            "| shape | dtype | contender | fwd+bwd ms | × native | extra memory (N×C) |",
            "|---|---|---|---:|---:|---:|",
        ]
        for row in rows:
            if row["framework"] != framework:
                continue
            head = f"| {row['shape'][0]}×{row['shape'][1]} | {row['dtype']} "
            if "error" in row:
                lines.append(head + f"| (failed: {row['error']}) | | | |")
                continue
            native = row["times"].get(NATIVE[framework])
            for name, ms in row["times"].items():
                ratio = f"{ms / native:.2f}" if native else ""
                mem = row["memory"].get(name)
                mem_text = f"{mem:.2f}" if mem is not None else ""
                lines.append(head + f"| {name} | {ms:.2f} | {ratio} | {mem_text} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def fill(page: str, blocks: dict[str, str]) -> str:
    """``page`` with the text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``
    replaced by ``blocks[NAME]``; a page without the markers gets a fresh layout."""
    for name, body in blocks.items():
        start, end = f"<!-- bench:{name} -->\n", f"<!-- /bench:{name} -->"
        if start not in page or end not in page:
            return (
                "# Benchmarks\n\n## Machine\n\n"
                + "".join(f"<!-- bench:{n} -->\n{b}\n<!-- /bench:{n} -->\n\n" for n, b in
                          blocks.items())
            )  # fmt: skip
        head, rest = page.split(start, 1)
        page = head + start + body + "\n" + end + rest.split(end, 1)[1]
    return page


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _error(message: object) -> int:
    """The one-line ``smoothce bench: error: ...`` message; returns the exit code 2."""
    print(f"smoothce bench: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def out_problem(path: str) -> str | None:
    """Why the Markdown file ``path`` cannot be written, or None; leaves nothing behind."""
    target = Path(path)
    if target.is_dir():
        return "is a directory"
    parent = target.absolute().parent
    if not parent.is_dir():
        why = "is not a directory" if parent.exists() else "does not exist"
        return f"cannot write it: {parent} {why}"
    existed = os.path.lexists(target)
    try:
        with open(target, "a"):  # appends nothing: only asks for write access
            pass
    except OSError as err:
        return f"cannot write it ({err.strerror or err})"
    if not existed:
        target.unlink()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smoothce bench",
        description="Time and measure smoothce against each installed framework's native "
        "label-smoothed cross-entropy (forward + backward, ε = 0.1, integer labels, mean).",
    )
    parser.add_argument(
        "--frameworks",
        nargs="+",
        choices=FRAMEWORKS,
        default=None,
        help="which frameworks to run (default: every installed one)",
    )
    parser.add_argument(
        "--repeats",
        type=_positive_int,
        default=7,
        help="timed repetitions per contender after warm-up, at least 1 (median reported; "
        "default: 7)",
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory measurement (one fresh process per case)",
    )
    parser.add_argument("--quick", action="store_true", help="small shapes, for a fast smoke run")
    parser.add_argument(
        "--out",
        default=None,
        help="also write the table, with the machine's description, to this "
        "Markdown file (e.g. docs/benchmarks.md); checked before the benchmark runs and left "
        "as it was when every case fails",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        if len(args.worker) != 6 or args.worker[0] not in ("time", "memory"):
            parser.error("--worker takes: time|memory FRAMEWORK N K DTYPE REPEATS|CONTENDER")
        kind, framework, n, k, dtype, extra = args.worker
        if kind == "time":
            result: Any = _time_worker(framework, int(n), int(k), dtype, int(extra))
        else:
            result = _memory_worker(framework, int(n), int(k), dtype, extra)
        print(json.dumps(result))
        return 0

    if args.out:
        why = out_problem(args.out)
        if why:
            return _error(f"--out {args.out}: {why}")
    frameworks = args.frameworks or [f for f in FRAMEWORKS if _installed(f)]
    rows = run(
        frameworks,
        args.repeats,
        not args.no_memory,
        args.quick,
        lambda text: print(f"[bench] {text}", file=sys.stderr, flush=True),
    )
    text = table(rows)
    print(text)
    failed = [row for row in rows if "error" in row]
    if rows and len(failed) == len(rows):
        first = failed[0]
        return _error(
            f"every case failed ({len(rows)}); the first, {first['framework']} "
            f"{first['shape'][0]}×{first['shape'][1]} {first['dtype']}: {first['error']}"
            + (f"; {args.out} left unchanged" if args.out else "")
        )
    if args.out:
        machine = (
            f"{_machine()}. Median of {args.repeats} samples after warm-up (a sample averages "
            f"as many calls as fill {MIN_SAMPLE_S * 1e3:g} ms)."
        )
        page = Path(args.out).read_text(encoding="utf-8") if Path(args.out).exists() else ""
        report = fill(page, {"machine": machine, "results": text})
        try:
            with open(args.out, "w", encoding="utf-8") as out:
                out.write(report)
        except OSError as err:  # it was checked before the run; something changed since
            return _error(f"--out {args.out}: cannot write it ({err.strerror or err})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
