"""Vocab-parallel smoothing: class-sharded logits on torch.distributed (gloo, 2–4 ranks on
127.0.0.1, uneven slices) and on JAX sharding (4 host CPU devices), against one process.

Every subprocess is bounded in time and stops by itself.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
K, N, H = 14, 6, 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process() -> dict[str, np.ndarray]:
    """The same cases as tests/torch_distributed_worker.py, on the whole logits."""
    import torch

    import smoothce.torch as st

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(N, K, 2)) * 3
    labels = rng.integers(0, K, size=(N, 2))
    labels[0, 0] = -100
    probs = rng.dirichlet(np.ones(K), size=(N, 2)).transpose(0, 2, 1)
    weight = rng.uniform(0.5, 2.0, size=K)
    hidden, w_lin, b_lin = rng.normal(size=(N, H)), rng.normal(size=(K, H)), rng.normal(size=K)
    out = {}

    def run(case, dtype, target, **kwargs):
        z = torch.tensor(logits, dtype=dtype, requires_grad=True)
        loss = st.cross_entropy(z, target, **kwargs)
        upstream = torch.ones_like(loss) * 1.5 if loss.dim() else torch.tensor(1.5, dtype=dtype)
        loss.backward(upstream)
        out[f"{case}/loss"], out[f"{case}/grad"] = loss.detach().numpy(), z.grad.numpy()

    run(
        "index_mean_weighted",
        torch.float64,
        torch.tensor(labels),
        weight=torch.tensor(weight),
        label_smoothing=0.2,
    )
    run("index_sum_f32", torch.float32, torch.tensor(labels), reduction="sum")
    run(
        "index_none_others",
        torch.float64,
        torch.tensor(labels),
        reduction="none",
        label_smoothing=0.3,
        spread="others",
    )
    run("index_terms", torch.float64, torch.tensor(labels), z_loss=1e-2, softcap=4.0)
    run("probs_mean", torch.float64, torch.tensor(probs), weight=torch.tensor(weight))
    run("dtensor", torch.float64, torch.tensor(labels), label_smoothing=0.2, reduction="none")
    run(
        "data_parallel",
        torch.float64,
        torch.tensor(labels),
        weight=torch.tensor(weight),
        label_smoothing=0.2,
    )
    h = torch.tensor(hidden, requires_grad=True)
    w = torch.tensor(w_lin, requires_grad=True)
    b = torch.tensor(b_lin, requires_grad=True)
    loss = st.linear_cross_entropy(h, w, torch.tensor(labels[:, 0]), linear_bias=b)
    loss.backward()
    out["linear/loss"] = loss.detach().numpy()
    out["linear/d_hidden"], out["linear/d_weight"] = h.grad.numpy(), w.grad.numpy()
    out["linear/d_bias"] = b.grad.numpy()
    return out


@pytest.mark.parametrize("world", [2, 3, 4])
def test_torch_gloo_matches_one_process(tmp_path, world):
    pytest.importorskip("torch")
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "torch_distributed_worker.py"),
                str(r),
                str(world),
                str(port),
                str(tmp_path),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(world)]
    want = _single_process()
    for rank in ranks:  # the slice layout is gathered on the group's first call only
        assert int(rank["first_call_collectives"]) == 3
    # data parallelism: the all-reduced sum over the all-reduced denominator is the global
    # mean, and each rank's gradient is its rows of the global one (×1.5: the upstream above)
    want_dp = want["data_parallel/loss"]
    for rank in ranks:
        np.testing.assert_allclose(rank["data_parallel/loss"], want_dp, rtol=1e-12)
        assert abs(rank["data_parallel/naive"] - want_dp) > 1e-3  # the mean of means is not
    grads = np.concatenate([rank["data_parallel/grad"] for rank in ranks], axis=0)
    np.testing.assert_allclose(grads * 1.5, want["data_parallel/grad"], rtol=1e-10)
    for case in (
        "index_mean_weighted",
        "index_sum_f32",
        "index_none_others",
        "index_terms",
        "probs_mean",
        "linear",
        "dtensor",
    ):
        tol = {"rtol": 1e-5, "atol": 1e-6} if "f32" in case else {"rtol": 1e-6, "atol": 1e-9}
        for rank in ranks:  # every rank returns the same loss
            np.testing.assert_allclose(rank[f"{case}/loss"], want[f"{case}/loss"], **tol)
            # two collectives forward (one max, one stacked sum), none backward; the fused
            # linear form: two per chunk forward, plus one all-reduce of d_hidden
            assert int(rank[f"{case}/forward_collectives"]) == (4 if case == "linear" else 2)
            assert int(rank[f"{case}/backward_collectives"]) == (1 if case == "linear" else 0)
        keys = ("d_hidden", "d_weight", "d_bias") if case == "linear" else ("grad",)
        for key in keys:
            full = want[f"{case}/{key}"]
            if key == "d_hidden":  # replicated: every rank has the whole gradient
                for rank in ranks:
                    np.testing.assert_allclose(rank[f"{case}/{key}"], full, **tol)
                continue
            axis = 1 if key == "grad" else 0
            parts = [rank[f"{case}/{key}"] for rank in ranks]
            np.testing.assert_allclose(np.concatenate(parts, axis=axis), full, **tol)


JAX_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import smoothce, smoothce.jax as sj

    mesh = Mesh(np.array(jax.devices()[:4]), ("v",))
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(6, 16)) * 3)
    dz = jnp.asarray(rng.normal(size=(6, 16)))
    y = jnp.asarray(rng.integers(0, 16, size=6))
    q = jnp.asarray(rng.dirichlet(np.ones(16), size=6))
    out = {}
    err = lambda a, b: float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))

    def sharded(fn, labels_spec, check_vma=True):
        body = lambda a, b: fn(a, b, axis_name="v")
        mapped = jax.shard_map(body, mesh=mesh, in_specs=(P(None, "v"), labels_spec),
                               out_specs=P(None), check_vma=check_vma)
        return jax.jit(mapped)

    for name, fn, labels, spec in (
        ("integer", lambda a, b, **k: sj.softmax_cross_entropy_with_integer_labels(
            a, b, label_smoothing=0.2, z_loss=1e-2, softcap=4.0, **k), y, P(None)),
        ("dense", lambda a, b, **k: sj.softmax_cross_entropy(a, b, label_smoothing=0.2, **k),
         q, P(None, "v")),
    ):
        got = sharded(fn, spec)(z, labels)
        want = jax.jit(fn)(z, labels)
        out[name] = err(got, want)
        g_want = jax.jit(jax.grad(lambda a: fn(a, labels).sum()))(z)
        for vma in (True, False):
            step = jax.jit(jax.grad(lambda a: sharded(fn, spec, vma)(a, labels).sum()))
            out[f"{name}_grad_vma{vma}"] = err(step(z), g_want)
            # one max and one stacked sum forward, nothing backward
            hlo = step.lower(z).compile().as_text()
            out[f"{name}_all_reduces_vma{vma}"] = hlo.count("all-reduce(")
        # forward mode: the tangent of the global loss (each device's part, psum'd)
        jvp = lambda f: jax.jit(lambda a, d: jax.jvp(lambda x: f(x, labels), (a,), (d,))[1])
        t_got, t_want = jvp(sharded(fn, spec))(z, dz), jvp(fn)(z, dz)
        out[name + "_jvp"] = err(t_got, t_want)
        if name == "integer":  # second derivatives (with the z-loss's and cap's curvature)
            h_got = jax.jit(jax.hessian(lambda a: sharded(fn, spec)(a, labels)[1]))(z)
            h_want = jax.jit(jax.hessian(lambda a: fn(a, labels)[1]))(z)
            out[name + "_hessian"] = err(h_got, h_want)

    # probability labels sharded like the logits are differentiable, slice by slice
    dense = lambda a, b, **k: sj.softmax_cross_entropy(a, b, label_smoothing=0.2, **k)
    d_q = jax.jit(jax.grad(lambda b: sharded(dense, P(None, "v"))(z, b).sum()))(q)
    out["dense_grad_labels"] = err(d_q, jax.jit(jax.grad(lambda b: dense(z, b).sum()))(q))

    # the fused linear head: weight and bias split by rows (classes), hidden replicated
    hid, w_lin, b_lin = (jnp.asarray(rng.normal(size=s)) for s in ((6, 5), (16, 5), (16,)))
    up = jnp.asarray(rng.uniform(0.5, 1.5, size=6))
    lin = lambda h, w, b, **k: sj.linear_softmax_cross_entropy_with_integer_labels(
        h, w, y, linear_bias=b, label_smoothing=0.2, z_loss=1e-2, chunk_size=4, **k)
    lin_grads = lambda f: jax.jit(jax.grad(lambda *a: (f(*a) * up).sum(), argnums=(0, 1, 2)))
    want = jax.jit(lin)(hid, w_lin, b_lin)
    g_want = lin_grads(lin)(hid, w_lin, b_lin)
    for vma in (True, False):
        mapped = jax.jit(jax.shard_map(lambda h, w, b: lin(h, w, b, axis_name="v"), mesh=mesh,
                                       in_specs=(P(None, None), P("v", None), P("v")),
                                       out_specs=P(None), check_vma=vma))
        out[f"linear_vma{vma}"] = err(mapped(hid, w_lin, b_lin), want)
        g_got = lin_grads(mapped)(hid, w_lin, b_lin)
        out[f"linear_grads_vma{vma}"] = max(map(err, g_got, g_want))

    # a 2-D mesh: examples split over "d", classes over "v"; the class axis in the middle
    mesh2 = Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("d", "v"))
    z3 = jnp.asarray(rng.normal(size=(4, 16, 3)) * 3)
    y3 = jnp.asarray(rng.integers(0, 16, size=(4, 3)))
    f3 = lambda a, b, **k: sj.softmax_cross_entropy_with_integer_labels(
        a, b, 1, label_smoothing=0.3, **k)
    mapped3 = jax.jit(jax.shard_map(lambda a, b: f3(a, b, axis_name="v"), mesh=mesh2,
                                    in_specs=(P("d", "v", None), P("d", None)),
                                    out_specs=P("d", None)))
    out["mesh2d"] = err(mapped3(z3, y3), jax.jit(f3)(z3, y3))
    g3 = jax.jit(jax.grad(lambda a: mapped3(a, y3).sum()))(z3)
    out["mesh2d_grad"] = err(g3, jax.jit(jax.grad(lambda a: f3(a, y3).sum()))(z3))

    # plain jit with the class axis split: right values, and no all-gather of the logits
    zs = jax.device_put(z, NamedSharding(mesh, P(None, "v")))
    f = jax.jit(lambda a: smoothce.loss_and_grad(a, y, 0.2))
    got = f(zs)
    want = smoothce.loss_and_grad(z, y, 0.2)
    out["jit_value"] = float(abs(got[0] - want[0]))
    out["jit_grad"] = float(jnp.max(jnp.abs(got[1] - want[1])))
    out["jit_hlo_all_gather"] = "all-gather" in f.lower(zs).compile().as_text()
    # the same for smoothce.jax (its custom_jvp) under GSPMD, without axis_name
    fj = jax.jit(jax.value_and_grad(lambda a: sj.softmax_cross_entropy_with_integer_labels(
        a, y, label_smoothing=0.2).sum()))
    got, want = fj(zs), fj(z)
    out["jit_sj_value"], out["jit_sj_grad"] = err(got[0], want[0]), err(got[1], want[1])
    out["jit_sj_hlo_all_gather"] = "all-gather" in fj.lower(zs).compile().as_text()
    print(json.dumps(out))
    """
)


def test_jax_shard_map_and_sharded_jit():
    pytest.importorskip("jax")
    done = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    keys = [key for key in out if "all_gather" not in key and "all_reduces" not in key]
    assert len(keys) == 20, sorted(out)
    for key in keys:
        assert out[key] < 1e-10, (key, out[key])
    assert not out["jit_hlo_all_gather"]
    assert not out["jit_sj_hlo_all_gather"]
    for key in (k for k in out if "all_reduces" in k):
        assert out[key] == 2, (key, out[key])
