"""One prepared GPU check for a lent device machine: correctness (asserted), then speed and memory.

    python bench/gpu_check.py                 # on a CUDA machine (torch and/or JAX with CUDA)
    python bench/gpu_check.py --cpu --small   # a dry run of the same code on the CPU

1. Correctness, asserted: smoothce.torch.cross_entropy (eager, ``overwrite_input=True`` and
   ``compiled=True``) against F.cross_entropy(label_smoothing=0.1), and smoothce.jax against
   optax, values and gradients at (8192, 32768) in float32 and bfloat16. On CUDA the eager
   forward + backward also runs under ``torch.cuda.set_sync_debug_mode("error")``: it must not
   synchronise with the host once.
2. Speed and memory at (8192, 131072): forward + backward time (median of 7 after warm-up) and
   peak extra device memory, for smoothce (eager, overwrite_input, compiled) and the native
   loss, with the speed-up over native and the fraction of copy bandwidth reached: a copy of
   the logits (one read, one write of N×V) is the floor for forward + backward, which must read
   the logits and write the gradient.

Prints one JSON line per measurement and a summary table; exits non-zero when a correctness
check fails (after printing everything).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

# |ours − native| ≤ TOL·max(1, |native|) for the loss, ≤ TOL·max|native| for the gradient.
# bfloat16: native rounds every step to 8 bits of mantissa where smoothce accumulates in
# float32, so they differ by about one bfloat16 rounding (2^-8 relative).
TOL = {"float32": 2e-5, "bfloat16": 1.6e-2}


def _median_ms(step: Callable[[], Any], sync: Callable[[], None], repeats: int = 7) -> float:
    step()
    step()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _check(row: dict[str, Any], dtype: str) -> dict[str, Any]:
    """Marks ``row`` with whether it is within tolerance."""
    tol = TOL[dtype]
    loss_ok = row["loss_abs_diff"] <= tol * max(1.0, abs(row["loss"]))
    grad_ok = row["grad_max_abs_diff"] <= tol * row["grad_max_abs"]
    row["ok"] = bool(loss_ok and grad_ok)
    return row


def _torch_step(kind: str, leaf: Any, y: Any) -> Callable[[], Any]:
    """One forward + backward of ``kind`` on the leaf logits (or one copy of them)."""
    import torch
    import torch.nn.functional as F

    import smoothce.torch as sct

    target = torch.empty_like(leaf)

    def step() -> Any:
        if kind == "copy":  # 1 read + 1 write of N×V: the bandwidth reference
            return target.copy_(leaf.detach())
        leaf.grad = None
        if kind == "smoothce":
            sct.cross_entropy(leaf, y, label_smoothing=0.1).backward()
        elif kind == "compiled":
            sct.cross_entropy(leaf, y, label_smoothing=0.1, compiled=True).backward()
        elif kind == "native":
            F.cross_entropy(leaf, y, label_smoothing=0.1).backward()
        else:
            # overwrite_input needs computed logits, as a network's last layer makes them;
            # the multiplication's output (one N×V) counts towards this contender's memory
            logits = leaf * 1.0
            sct.cross_entropy(logits, y, label_smoothing=0.1, overwrite_input=True).backward()
        return leaf.grad

    return step


def torch_checks(device: str, check_shape: tuple[int, int], speed_shape: tuple[int, int]) -> list:
    import torch

    results = []
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    gen = torch.Generator(device=device).manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        n, v = check_shape
        z = torch.randn(n, v, device=device, generator=gen).to(dtype)
        y = torch.randint(0, v, (n,), device=device, generator=gen)
        y[:: max(1, n // 16)] = -100  # some ignored rows
        out = {}
        for kind in ("native", "smoothce", "overwrite", "compiled"):
            if kind == "smoothce" and cuda:
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")  # any host sync raises
            try:
                loss, grad = _torch_value_and_grad(kind, z, y)
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode("default")
            out[kind] = (loss.float(), grad.float())
        ref_loss, ref_grad = out["native"]
        for kind in ("smoothce", "overwrite", "compiled"):
            loss, grad = out[kind]
            row = {
                "check": "torch values",
                "device": device,
                "dtype": name,
                "shape": check_shape,
                "contender": kind,
                "loss": float(ref_loss),
                "loss_abs_diff": float((loss - ref_loss).abs()),
                "grad_max_abs_diff": float((grad - ref_grad).abs().max()),
                "grad_max_abs": float(ref_grad.abs().max()),
                "no_host_sync": cuda if kind == "smoothce" else None,
            }
            results.append(_check(row, name))
        del z, out

    n, v = speed_shape
    for dtype in (torch.bfloat16, torch.float32):
        z = torch.randn(n, v, device=device, generator=gen).to(dtype)
        y = torch.randint(0, v, (n,), device=device, generator=gen)
        leaf = z.clone().requires_grad_()
        rows = []
        for kind in ("copy", "smoothce", "overwrite", "compiled", "native"):
            step = _torch_step(kind, leaf, y)
            ms = _median_ms(step, sync)
            peak = None
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                step()
                sync()
                peak = (torch.cuda.max_memory_allocated() - base) / z.nbytes
            rows.append(
                {
                    "check": "torch speed",
                    "device": device,
                    "dtype": str(dtype).removeprefix("torch."),
                    "shape": speed_shape,
                    "contender": kind,
                    "ms": ms,
                    "peak_extra_NxV": peak,
                }
            )
        _ratios(rows, native="native")
        results += rows
        del z, leaf
    return results


def _torch_value_and_grad(kind: str, z: Any, y: Any) -> tuple[Any, Any]:
    """The loss of ``kind`` on logits ``z`` and its gradient, from one forward + backward."""
    import torch.nn.functional as F

    import smoothce.torch as sct

    leaf = z.clone().requires_grad_()
    if kind == "native":
        loss = F.cross_entropy(leaf, y, label_smoothing=0.1)
    elif kind == "overwrite":
        loss = sct.cross_entropy(leaf * 1.0, y, label_smoothing=0.1, overwrite_input=True)
    else:
        loss = sct.cross_entropy(leaf, y, label_smoothing=0.1, compiled=kind == "compiled")
    loss.backward()
    return loss.detach(), leaf.grad


def _ratios(rows: list[dict[str, Any]], native: str) -> None:
    """Adds the speed-up over the native loss and the fraction of copy bandwidth."""
    by_kind = {row["contender"]: row["ms"] for row in rows}
    for row in rows:
        if row["contender"] == "copy":
            continue
        row["speedup_vs_native"] = by_kind[native] / row["ms"]
        if "copy" in by_kind:
            row["copy_bandwidth_fraction"] = by_kind["copy"] / row["ms"]


def jax_checks(check_shape: tuple[int, int], speed_shape: tuple[int, int]) -> list:
    import jax
    import jax.numpy as jnp
    import optax

    import smoothce.jax as scj

    results = []
    key = jax.random.PRNGKey(0)
    device = jax.devices()[0].platform

    def ours(z: Any, y: Any) -> Any:
        return scj.softmax_cross_entropy_with_integer_labels(z, y, label_smoothing=0.1).mean()

    def native(z: Any, y: Any) -> Any:
        onehot = jax.nn.one_hot(y, z.shape[-1], dtype=z.dtype)
        return optax.softmax_cross_entropy(z, optax.smooth_labels(onehot, 0.1)).mean()

    for dtype in (jnp.float32, jnp.bfloat16):
        name = jnp.dtype(dtype).name
        n, v = check_shape
        z = jax.random.normal(key, (n, v)).astype(dtype)
        y = jax.random.randint(key, (n,), 0, v)
        a = jax.jit(jax.value_and_grad(ours))(z, y)
        b = jax.jit(jax.value_and_grad(native))(z, y)
        ref_grad = b[1].astype(jnp.float32)
        row = {
            "check": "jax values",
            "device": device,
            "dtype": name,
            "shape": check_shape,
            "contender": "smoothce",
            "loss": float(b[0].astype(jnp.float32)),
            "loss_abs_diff": float(abs(a[0].astype(jnp.float32) - b[0].astype(jnp.float32))),
            "grad_max_abs_diff": float(jnp.max(jnp.abs(a[1].astype(jnp.float32) - ref_grad))),
            "grad_max_abs": float(jnp.max(jnp.abs(ref_grad))),
        }
        results.append(_check(row, name))
    n, v = speed_shape
    for dtype in (jnp.bfloat16, jnp.float32):
        z = jax.random.normal(key, (n, v)).astype(dtype)
        y = jax.random.randint(key, (n,), 0, v)
        rows = []
        for name, fn in (("smoothce", ours), ("optax", native)):
            compiled = jax.jit(jax.value_and_grad(fn)).lower(z, y).compile()
            args = (z, y)
            ms = _median_ms(lambda c=compiled, a=args: jax.block_until_ready(c(*a)), lambda: None)
            memory = compiled.memory_analysis()
            temp = getattr(memory, "temp_size_in_bytes", None) if memory else None
            rows.append(
                {
                    "check": "jax speed",
                    "device": device,
                    "dtype": jnp.dtype(dtype).name,
                    "shape": speed_shape,
                    "contender": name,
                    "ms": ms,
                    "temp_NxV": None if temp is None else temp / (z.size * z.dtype.itemsize),
                }
            )
        _ratios(rows, native="optax")
        results += rows
    return results


def _summary(results: list[dict[str, Any]]) -> None:
    print()
    print(f"{'check':13} {'dtype':9} {'contender':10} {'ms':>9} {'vs native':>9} {'of copy':>8}")
    for row in results:
        if "ms" not in row:
            continue
        speedup = row.get("speedup_vs_native")
        fraction = row.get("copy_bandwidth_fraction")
        print(
            f"{row['check']:13} {row['dtype']:9} {row['contender']:10} {row['ms']:9.3f} "
            f"{'' if speedup is None else f'{speedup:8.2f}x':>9} "
            f"{'' if fraction is None else f'{fraction:7.0%}':>8}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (a dry run)")
    parser.add_argument("--small", action="store_true", help="small shapes (a dry run)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["torch", "jax"])
    args = parser.parse_args()
    check = (64, 512) if args.small else (8192, 32768)
    speed = (64, 2048) if args.small else (8192, 131072)
    results: list = []
    if "torch" not in args.skip:
        results += torch_checks("cpu" if args.cpu else "cuda", check, speed)
    if "jax" not in args.skip:
        results += jax_checks(check, speed)
    for row in results:
        print(json.dumps(row))
    _summary(results)
    failed = [row for row in results if row.get("ok") is False]
    if failed:
        raise SystemExit(f"correctness check failed: {json.dumps(failed)}")
    print("\ncorrectness: all within tolerance")


if __name__ == "__main__":
    main()
