"""One prepared GPU check for a lent device machine: correctness, then speed and memory.

    python bench/gpu_check.py                 # on a CUDA machine (torch and/or JAX with CUDA)
    python bench/gpu_check.py --cpu --small   # a dry run of the same code on the CPU

1. Correctness: smoothce.torch.cross_entropy against F.cross_entropy(label_smoothing=0.1), and
   smoothce.jax against optax, values and gradients at (8192, 32768) in float32 and bfloat16.
2. Speed and memory at (8192, 131072): forward + backward time (median of 7 after warm-up) and
   peak extra device memory, for smoothce (plain and overwrite_input) and the native loss, plus
   the time of a copy of the logits to give the fraction of copy bandwidth reached
   (2 reads + 1 write of N×V are the floor for forward + backward).

Prints one JSON line per measurement and a summary table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any


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
    import torch.nn.functional as F

    import smoothce.torch as sct

    results = []
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    gen = torch.Generator(device=device).manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        n, v = check_shape
        z = torch.randn(n, v, device=device, generator=gen).to(dtype)
        y = torch.randint(0, v, (n,), device=device, generator=gen)
        out = {}
        for name, fn in (("smoothce", sct.cross_entropy), ("native", F.cross_entropy)):
            a = z.clone().requires_grad_()
            loss = fn(a, y, label_smoothing=0.1)
            loss.backward()
            out[name] = (loss.detach().float(), a.grad.float())
        results.append(
            {
                "check": "torch values",
                "device": device,
                "dtype": str(dtype),
                "shape": check_shape,
                "loss_abs_diff": float((out["smoothce"][0] - out["native"][0]).abs()),
                "grad_max_abs_diff": float((out["smoothce"][1] - out["native"][1]).abs().max()),
                "grad_max_abs": float(out["native"][1].abs().max()),
            }
        )

    n, v = speed_shape
    for dtype in (torch.bfloat16, torch.float32):
        z = torch.randn(n, v, device=device, generator=gen).to(dtype)
        y = torch.randint(0, v, (n,), device=device, generator=gen)
        leaf = z.clone().requires_grad_()
        for kind in ("copy", "smoothce", "overwrite", "native"):
            step = _torch_step(kind, leaf, y)
            ms = _median_ms(step, sync)
            peak = None
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                step()
                sync()
                peak = (torch.cuda.max_memory_allocated() - base) / z.nbytes
            results.append(
                {
                    "check": "torch speed",
                    "device": device,
                    "dtype": str(dtype),
                    "shape": speed_shape,
                    "contender": kind,
                    "ms": ms,
                    "peak_extra_NxV": peak,
                }
            )
    return results


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
        n, v = check_shape
        z = jax.random.normal(key, (n, v)).astype(dtype)
        y = jax.random.randint(key, (n,), 0, v)
        a = jax.jit(jax.value_and_grad(ours))(z, y)
        b = jax.jit(jax.value_and_grad(native))(z, y)
        results.append(
            {
                "check": "jax values",
                "device": device,
                "dtype": str(dtype),
                "shape": check_shape,
                "loss_abs_diff": float(abs(a[0].astype(jnp.float32) - b[0].astype(jnp.float32))),
                "grad_max_abs_diff": float(
                    jnp.max(jnp.abs(a[1].astype(jnp.float32) - b[1].astype(jnp.float32)))
                ),
            }
        )
    n, v = speed_shape
    for dtype in (jnp.bfloat16, jnp.float32):
        z = jax.random.normal(key, (n, v)).astype(dtype)
        y = jax.random.randint(key, (n,), 0, v)
        for name, fn in (("smoothce", ours), ("optax", native)):
            compiled = jax.jit(jax.value_and_grad(fn)).lower(z, y).compile()
            args = (z, y)
            ms = _median_ms(lambda c=compiled, a=args: jax.block_until_ready(c(*a)), lambda: None)
            memory = compiled.memory_analysis()
            temp = getattr(memory, "temp_size_in_bytes", None) if memory else None
            results.append(
                {
                    "check": "jax speed",
                    "device": device,
                    "dtype": str(dtype),
                    "shape": speed_shape,
                    "contender": name,
                    "ms": ms,
                    "temp_NxV": None if temp is None else temp / (z.size * z.dtype.itemsize),
                }
            )
    return results


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


if __name__ == "__main__":
    main()
