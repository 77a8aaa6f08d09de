"""CNN benchmarks (issue 13): ``python -m benchmarks.cnn``.

gradc's generated ``value_and_grad`` and ``forward`` of three convolutional cases against
PyTorch eager (``torch.nn.functional.conv2d``/``max_pool2d``, its oneDNN kernels, autograd),
``jax.jit(jax.value_and_grad(f))`` (``jax.lax.conv_general_dilated``, ``jax.lax.reduce_window``)
and a hand-written NumPy im2col version:

* **digits_cnn**: ``examples/cnn_digits.toml`` (8×8 images, conv 3×3 16 → ReLU → max-pool 2 →
  conv 3×3 32 → ReLU → dense 10, mean softmax cross-entropy), batch 128; gradc's process gets
  fresh ``GRADC_CACHE_DIR`` and ``NUMBA_CACHE_DIR``, so its first call is the cold compile.
* **lenet5**: ``benchmarks/specs/lenet5.toml`` (1×28×28, conv 5×5 6 pad 2 → pool → conv 5×5 16
  → pool → 120 → 84 → 10, ReLU), batch 64.
* **conv_layer**: ``benchmarks/specs/conv_layer.toml``, one convolution 32 → 64 channels, 3×3,
  padding 1, 28×28, batch 32, loss = sum(y²), differentiated w.r.t. the images and the weights:
  GFLOP/s counting 2·N·O·C·kh·kw·Ho·Wo per forward convolution and 3× that for value+grad, against
  the single-process GEMM rate (:func:`benchmarks.worker.gemm`, measured in its own process).

One fresh process per (case, framework), 1 thread by default (the thread settings of
:mod:`benchmarks.run`). The reference is PyTorch's autograd in float64, computed in its own
process and itself checked: its loss against a direct NumPy convolution (loops over the kernel
offsets, no im2col) and its gradient against central differences of that NumPy loss along random
directions. Every framework's value and gradients are compared with it (max relative error
≤ 1e-9) before they are timed. Timing: :func:`benchmarks.worker.measure` (median of
``--repeats`` loops). Results: ``benchmarks/results/cnn.md`` and ``.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):   # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = ["gradc", "torch", "jax", "numpy"]
LABELS = {"gradc": "gradc", "torch": "PyTorch eager", "jax": "JAX jit", "numpy": "NumPy im2col (hand)"}
TOL = 1e-9        # max |x - ref| / max |ref| per gradient and for the value
FD_TOL = 1e-6     # the PyTorch reference's directional derivatives against central differences


# --------------------------------------------------------------------------- the cases

# layers: ("reshape", (C, H, W)), ("conv", W, b or None, padding), ("relu",), ("pool", k), ("flatten",),
# ("dense", W, b); loss "ce" (mean softmax cross-entropy against y) or "sumsq" (sum of squares)
CASES = {
    "digits_cnn": {
        "title": "digits CNN (8×8, conv16-pool-conv32-dense10), batch 128", "spec": "examples/cnn_digits.toml",
        "data": {"X": (128, 64)}, "classes": 10,
        "params": {"K1": (16, 1, 3, 3), "c1": (16,), "K2": (32, 16, 3, 3), "c2": (32,), "W": (512, 10), "b": (10,)},
        "layers": [("reshape", (1, 8, 8)), ("conv", "K1", "c1", 1), ("relu",), ("pool", 2),
                   ("conv", "K2", "c2", 1), ("relu",), ("flatten",), ("dense", "W", "b")], "loss": "ce"},
    "lenet5": {
        "title": "LeNet-5 (1×28×28, conv6-pool-conv16-pool-120-84-10), batch 64", "spec": "benchmarks/specs/lenet5.toml",
        "data": {"X": (64, 784)}, "classes": 10,
        "params": {"K1": (6, 1, 5, 5), "c1": (6,), "K2": (16, 6, 5, 5), "c2": (16,), "W1": (400, 120), "b1": (120,),
                   "W2": (120, 84), "b2": (84,), "W3": (84, 10), "b3": (10,)},
        "layers": [("reshape", (1, 28, 28)), ("conv", "K1", "c1", 2), ("relu",), ("pool", 2),
                   ("conv", "K2", "c2", 0), ("relu",), ("pool", 2), ("flatten",), ("dense", "W1", "b1"), ("relu",),
                   ("dense", "W2", "b2"), ("relu",), ("dense", "W3", "b3")], "loss": "ce"},
    "conv_layer": {
        "title": "one conv 32→64, 3×3, pad 1, 28×28, batch 32; loss sum(y²)", "spec": "benchmarks/specs/conv_layer.toml",
        "data": {}, "params": {"x": (32, 32, 28, 28), "W": (64, 32, 3, 3)},
        "layers": [("conv", "W", None, 1)], "input": "x", "loss": "sumsq",
        "flops_fwd": 2 * 32 * 64 * 32 * 3 * 3 * 28 * 28},
}


def inputs_of(name: str) -> dict:
    """Deterministic float64 inputs in the spec's argument order (data first, then parameters):
    images uniform in [0, 1], labels 0..9, He-scaled weights, small biases. The environment variable
    ``GRADC_CNN_BATCH`` (``--batch``) overrides the batch of the cases with data (the smoke test's tiny runs)."""
    c = CASES[name]
    rng = np.random.default_rng(13)
    out = {}
    batch = int(os.environ.get("GRADC_CNN_BATCH") or 0)
    for k, shp in c["data"].items():
        out[k] = rng.random((batch or shp[0],) + shp[1:])
    if "classes" in c:
        out["y"] = rng.integers(0, c["classes"], out["X"].shape[0]).astype(np.int64)
    for k, shp in c["params"].items():
        fan_in = int(np.prod(shp[1:])) if len(shp) == 4 else shp[0]
        if k == c.get("input"):
            out[k] = rng.standard_normal(shp)
        elif len(shp) == 1:
            out[k] = 0.1 * rng.standard_normal(shp)
        else:
            out[k] = rng.standard_normal(shp) * math.sqrt(2.0 / fan_in)
    return out


def wrt_of(name: str) -> list[str]:
    return list(CASES[name]["params"])


def data_of(name: str) -> list[str]:
    c = CASES[name]
    return list(c["data"]) + (["y"] if "classes" in c else [])


def conv_flops(name: str) -> tuple[float, float] | None:
    f = CASES[name].get("flops_fwd")
    return (f, 3.0 * f) if f else None


# --------------------------------------------------------------------------- NumPy: direct loss (reference check)

def _pad(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x


def direct_loss(name: str, a: dict) -> float:
    """The loss by a direct convolution (a sum over the kernel offsets of shifted slices times the
    weights; no im2col, no GEMM layout) and plain NumPy elsewhere: checks the PyTorch reference."""
    c = CASES[name]
    h = a[c["input"]] if "input" in c else None
    for layer in c["layers"]:
        op = layer[0]
        if op == "reshape":
            h = a["X"].reshape((-1,) + layer[1])
        elif op == "conv":
            W, b, p = a[layer[1]], (a[layer[2]] if layer[2] else None), layer[3]
            xp = _pad(h, p)
            O, C, kh, kw = W.shape
            Ho, Wo = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
            y = np.zeros((h.shape[0], O, Ho, Wo))
            for i in range(kh):
                for j in range(kw):
                    y += np.einsum("nchw,oc->nohw", xp[:, :, i:i + Ho, j:j + Wo], W[:, :, i, j])
            h = y + (b[None, :, None, None] if b is not None else 0.0)
        elif op == "relu":
            h = np.maximum(h, 0.0)
        elif op == "pool":
            k = layer[1]
            n, ch, H, W_ = h.shape
            h = h[:, :, :H // k * k, :W_ // k * k].reshape(n, ch, H // k, k, W_ // k, k).max(axis=(3, 5))
        elif op == "flatten":
            h = h.reshape(h.shape[0], -1)
        elif op == "dense":
            h = h @ a[layer[1]] + a[layer[2]]
    if c["loss"] == "ce":
        m = h.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(h - m).sum(axis=1))
        return float(np.mean(lse - h[np.arange(h.shape[0]), a["y"]]))
    return float(np.sum(h * h))


# --------------------------------------------------------------------------- the framework versions

def torch_fn(name: str):
    import torch
    import torch.nn.functional as F
    c = CASES[name]
    names = data_of(name) + wrt_of(name)

    def f(*args):
        a = dict(zip(names, args))
        h = a[c["input"]] if "input" in c else None
        for layer in c["layers"]:
            op = layer[0]
            if op == "reshape":
                h = a["X"].reshape((-1,) + layer[1])
            elif op == "conv":
                h = F.conv2d(h, a[layer[1]], a[layer[2]] if layer[2] else None, padding=layer[3])
            elif op == "relu":
                h = torch.relu(h)
            elif op == "pool":
                h = F.max_pool2d(h, layer[1])
            elif op == "flatten":
                h = h.flatten(1)
            elif op == "dense":
                h = h @ a[layer[1]] + a[layer[2]]
        return F.cross_entropy(h, a["y"]) if c["loss"] == "ce" else torch.sum(h * h)
    return f, names


def jax_fn(name: str):
    import jax
    import jax.numpy as jnp
    from jax import lax
    c = CASES[name]
    names = data_of(name) + wrt_of(name)

    def f(*args):
        a = dict(zip(names, args))
        h = a[c["input"]] if "input" in c else None
        for layer in c["layers"]:
            op = layer[0]
            if op == "reshape":
                h = a["X"].reshape((-1,) + layer[1])
            elif op == "conv":
                p = layer[3]
                h = lax.conv_general_dilated(h, a[layer[1]], (1, 1), [(p, p), (p, p)],
                                             dimension_numbers=("NCHW", "OIHW", "NCHW"))
                if layer[2]:
                    h = h + a[layer[2]][None, :, None, None]
            elif op == "relu":
                h = jnp.maximum(h, 0.0)
            elif op == "pool":
                k = layer[1]
                h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, k, k), (1, 1, k, k), "VALID")
            elif op == "flatten":
                h = h.reshape(h.shape[0], -1)
            elif op == "dense":
                h = h @ a[layer[1]] + a[layer[2]]
        if c["loss"] == "ce":
            lse = jax.scipy.special.logsumexp(h, axis=1)
            return jnp.mean(lse - jnp.take_along_axis(h, a["y"][:, None], axis=1)[:, 0])
        return jnp.sum(h * h)
    return f, names


class NumpyNet:
    """Hand-written NumPy: im2col by ``sliding_window_view`` + one ``tensordot`` GEMM per convolution,
    col2im by adding the kernel offsets' slices, max-pool through the first argmax of each window."""

    def __init__(self, name):
        self.c = CASES[name]
        self.names = data_of(name) + wrt_of(name)

    @staticmethod
    def _cols(xp, kh, kw):
        from numpy.lib.stride_tricks import sliding_window_view
        v = sliding_window_view(xp, (kh, kw), axis=(2, 3))          # [N, C, Ho, Wo, kh, kw]
        return np.ascontiguousarray(v.transpose(0, 2, 3, 1, 4, 5)).reshape(
            xp.shape[0] * v.shape[2] * v.shape[3], -1)               # [N Ho Wo, C kh kw]

    def run(self, *args, grad=True):
        a = dict(zip(self.names, args))
        c = self.c
        h = a[c["input"]] if "input" in c else None
        tape = []
        for layer in c["layers"]:
            op = layer[0]
            if op == "reshape":
                h = a["X"].reshape((-1,) + layer[1])
            elif op == "conv":
                W, p = a[layer[1]], layer[3]
                O, C, kh, kw = W.shape
                N, _, H, Wd = h.shape
                xp = _pad(h, p)
                Ho, Wo = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
                cols = self._cols(xp, kh, kw)
                y = cols @ W.reshape(O, -1).T                                  # [N Ho Wo, O]
                y = y.reshape(N, Ho, Wo, O).transpose(0, 3, 1, 2)
                if layer[2]:
                    y = y + a[layer[2]][None, :, None, None]
                tape.append(("conv", layer, cols, h.shape, (Ho, Wo)))
                h = np.ascontiguousarray(y)
            elif op == "relu":
                tape.append(("relu", h > 0))
                h = np.maximum(h, 0.0)
            elif op == "pool":
                k = layer[1]
                n, ch, H, Wd = h.shape
                win = h.reshape(n, ch, H // k, k, Wd // k, k).transpose(0, 1, 2, 4, 3, 5).reshape(n, ch, H // k, Wd // k, k * k)
                arg = win.argmax(axis=-1)
                tape.append(("pool", k, arg, h.shape))
                h = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
            elif op == "flatten":
                tape.append(("flatten", h.shape))
                h = h.reshape(h.shape[0], -1)
            elif op == "dense":
                tape.append(("dense", layer, h))
                h = h @ a[layer[1]] + a[layer[2]]
        if c["loss"] == "ce":
            m = h.max(axis=1, keepdims=True)
            e = np.exp(h - m)
            z = e.sum(axis=1, keepdims=True)
            rows = np.arange(h.shape[0])
            loss = float(np.mean(m[:, 0] + np.log(z[:, 0]) - h[rows, a["y"]]))
            if not grad:
                return loss
            g = e / z
            g[rows, a["y"]] -= 1.0
            g /= h.shape[0]
        else:
            loss = float(np.sum(h * h))
            if not grad:
                return loss
            g = 2.0 * h
        grads = {}
        for t in reversed(tape):
            if t[0] == "dense":
                _, layer, x = t
                grads[layer[1]] = x.T @ g
                grads[layer[2]] = g.sum(axis=0)
                g = g @ a[layer[1]].T
            elif t[0] == "flatten":
                g = g.reshape(t[1])
            elif t[0] == "relu":
                g = g * t[1]
            elif t[0] == "pool":
                _, k, arg, shape = t
                n, ch, H, Wd = shape
                gw = np.zeros(arg.shape + (k * k,))
                np.put_along_axis(gw, arg[..., None], g[..., None], axis=-1)
                g = gw.reshape(n, ch, H // k, Wd // k, k, k).transpose(0, 1, 2, 4, 3, 5).reshape(shape)
            elif t[0] == "conv":
                _, layer, cols, xshape, (Ho, Wo) = t
                W, p = a[layer[1]], layer[3]
                O, C, kh, kw = W.shape
                N = xshape[0]
                g2 = g.transpose(0, 2, 3, 1).reshape(N * Ho * Wo, O)        # [N Ho Wo, O]
                grads[layer[1]] = (g2.T @ cols).reshape(W.shape)
                if layer[2]:
                    grads[layer[2]] = g2.sum(axis=0)
                first = next(x for x in c["layers"] if x[0] == "conv")
                if layer is first and "input" not in c:
                    break                                                    # its input is data: no dx
                dcols = (g2 @ W.reshape(O, -1)).reshape(N, Ho, Wo, C, kh, kw)
                dxp = np.zeros((N, C, xshape[2] + 2 * p, xshape[3] + 2 * p))
                for i in range(kh):
                    for j in range(kw):
                        dxp[:, :, i:i + Ho, j:j + Wo] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
                g = dxp[:, :, p:p + xshape[2], p:p + xshape[3]] if p else dxp
                if "input" in c and layer is first:
                    grads[c["input"]] = np.ascontiguousarray(g)
        return loss, tuple(grads[n] for n in wrt_of_case(c))


def wrt_of_case(c):
    return list(c["params"])


# --------------------------------------------------------------------------- the worker (one process)

def build(fw: str, name: str, a: dict):
    """``{variant: (fn, args, unpack)}``; ``unpack(out) -> (value, {wrt: grad})`` (forward: value only)."""
    wrt = wrt_of(name)
    if fw == "gradc":
        import gradc
        m = gradc.compile((ROOT / CASES[name]["spec"]).read_text(encoding="utf-8"))
        args = tuple(a[n] for n in m.arg_names)

        def un(out):
            return float(out[0]), dict(zip(m.wrt, (np.asarray(g) for g in out[1])))

        def un_f(out):
            return float(out[0] if isinstance(out, tuple) else out), {}
        return {"vg": (m.raw.value_and_grad, args, un), "fwd": (m.raw.forward, args, un_f),
                "vg_public": (m.value_and_grad, args, un)}
    if fw == "torch":
        import torch
        f, names = torch_fn(name)
        ts = tuple(torch.from_numpy(np.ascontiguousarray(a[n])) for n in names)
        for t, n in zip(ts, names):
            if n in wrt:
                t.requires_grad_(True)
        w = tuple(t for t, n in zip(ts, names) if n in wrt)

        def vg(*args):
            loss = f(*args)
            return loss, torch.autograd.grad(loss, w)

        def fwd(*args):
            with torch.no_grad():
                return f(*args)
        return {"vg": (vg, ts, lambda o: (float(o[0].detach()), {n: g.numpy() for n, g in zip(wrt, o[1])})),
                "fwd": (fwd, ts, lambda o: (float(o), {}))}
    if fw == "jax":
        import jax
        import jax.numpy as jnp
        f, names = jax_fn(name)
        idx = tuple(names.index(n) for n in wrt)
        vg_j = jax.jit(jax.value_and_grad(f, argnums=idx))
        fwd_j = jax.jit(f)
        js = tuple(jnp.asarray(a[n]) for n in names)

        def vg(*args):
            return jax.block_until_ready(vg_j(*args))

        def fwd(*args):
            return jax.block_until_ready(fwd_j(*args))
        return {"vg": (vg, js, lambda o: (float(o[0]), {n: np.asarray(g) for n, g in zip(wrt, o[1])})),
                "fwd": (fwd, js, lambda o: (float(o), {}))}
    if fw == "numpy":
        net = NumpyNet(name)
        args = tuple(a[n] for n in net.names)
        return {"vg": (net.run, args, lambda o: (o[0], dict(zip(wrt, o[1])))),
                "fwd": (lambda *x: net.run(*x, grad=False), args, lambda o: (o, {}))}
    raise ValueError(fw)


def compare(value, grads, ref) -> dict:
    def rel(x, r):
        x, r = np.asarray(x, dtype=np.float64), np.asarray(r, dtype=np.float64)
        if x.shape != r.shape or not np.all(np.isfinite(x)):
            return math.inf
        return float(np.max(np.abs(x - r))) / max(float(np.max(np.abs(r))), 1e-300)
    errs = {"value": rel(value, ref["value"])}
    for n, g in grads.items():
        errs[n] = rel(g, ref[n])
    worst = max(errs.values())
    return {"ok": bool(worst <= TOL), "max_rel_err": worst, "errors": errs, "tol": TOL}


def reference(name: str, path: str) -> dict:
    """PyTorch autograd (float64) value and gradients, checked against the direct NumPy loss and
    central differences of it; saved to ``path`` (.npz) for the workers."""
    import torch
    torch.set_num_threads(1)
    a = inputs_of(name)
    fns = build("torch", name, a)
    fn, args, un = fns["vg"]
    value, grads = un(fn(*args))
    direct = direct_loss(name, a)
    value_err = abs(value - direct) / max(abs(direct), 1e-300)
    rng = np.random.default_rng(7)
    fd = {}
    for n in wrt_of(name):
        d = rng.standard_normal(a[n].shape)
        ana = float(np.sum(grads[n] * d))
        best = math.inf
        for rel in (1e-5, 1e-6, 1e-7, 1e-8):   # small steps: fewer ReLU kinks crossed
            h = rel * max(1.0, float(np.max(np.abs(a[n]))))

            def at(s):
                return direct_loss(name, {**a, n: a[n] + s * d})
            est = [(at(hh) - at(-hh)) / (2 * hh) for hh in (h, h / 2)]
            num = (4 * est[1] - est[0]) / 3                               # Richardson
            best = min(best, abs(num - ana) / max(abs(ana), 1e-8))
        fd[n] = best
    np.savez(path, value=value, **grads)
    return {"status": "ok", "value": value, "direct_numpy_value": direct, "value_rel_err": value_err,
            "fd_rel_err": fd, "ok": bool(value_err <= 1e-12 and max(fd.values()) <= FD_TOL)}


def work(fw: str, name: str, ref_path: str, repeats: int, min_time: float, threads: int) -> dict:
    import importlib

    from benchmarks.worker import measure, thread_report
    res = {"framework": fw, "case": name, "pid": os.getpid()}
    t0 = time.perf_counter()
    mod = importlib.import_module(f"benchmarks.workers.fw_{fw}")   # the suite's setup(threads): x64, threads
    mod.setup(threads)
    res["import_s"] = time.perf_counter() - t0
    a = inputs_of(name)
    ref = dict(np.load(ref_path))
    t0 = time.perf_counter()
    variants = build(fw, name, a)
    fn, args, un = variants["vg"]
    out = fn(*args)
    res["first_call_s"] = time.perf_counter() - t0          # build (gradc: compile, JAX: trace + XLA) + first call
    res["variants"] = {}
    for key, (fn, args, un) in variants.items():
        t0 = time.perf_counter()
        out = fn(*args)
        first = time.perf_counter() - t0
        v, g = un(out)
        check = compare(v, g, ref if key != "fwd" else {"value": ref["value"]})
        r = res["variants"][key] = {"first_s": first, "check": check}
        if check["ok"]:
            r["time"] = measure(fn, args, repeats, min_time, warmup_time=min_time)
    if fw == "gradc":   # a NumPy check of gradc's loss value itself: the direct convolution
        direct = direct_loss(name, a)
        res["direct_numpy_value"] = direct
        res["value_vs_direct"] = abs(un(variants["vg"][0](*variants["vg"][1]))[0] - direct) / abs(direct)
    res["threads"] = thread_report(mod)
    res["status"] = "ok"
    return res


def worker_main(argv) -> int:
    from benchmarks.worker import one_json_line
    p = argparse.ArgumentParser(prog="python -m benchmarks.cnn --worker")
    p.add_argument("framework")   # or "reference"
    p.add_argument("case")
    p.add_argument("--ref", required=True)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1)
    o = p.parse_args(argv)
    return one_json_line(lambda: reference(o.case, o.ref) if o.framework == "reference" else
                         work(o.framework, o.case, o.ref, o.repeats, o.min_time, o.threads),
                         {"framework": o.framework, "case": o.case})


# --------------------------------------------------------------------------- the runner

def run_all(o) -> dict:
    from benchmarks import run

    wanted, fws, missing = run.frameworks_to_run(o.frameworks, FRAMEWORKS)
    cases = o.cases.split(",") if o.cases else list(CASES)
    env = run.child_env(o.threads, {"GRADC_CNN_BATCH": str(o.batch)} if o.batch else None)
    started = _dt.datetime.now(_dt.timezone.utc)
    meta = {"date": started.isoformat(timespec="seconds"), "command": " ".join(["python -m benchmarks.cnn", *o.argv]),
            "git": run.git_commit(), "machine": run.machine(), "versions": run.versions(), "threads": o.threads,
            "thread_env": run.thread_env(o.threads), "repeats": o.repeats, "min_time_s": o.min_time,
            "frameworks_run": fws, "frameworks_missing": missing,
            "loadavg_start": list(os.getloadavg()), "tol": TOL, "fd_tol": FD_TOL, "batch_override": o.batch}
    out = {"meta": meta, "gemm": None, "results": {}}
    common = ["--repeats", str(o.repeats), "--min-time", str(o.min_time), "--threads", str(o.threads)]
    if not o.no_gemm:
        print("gemm 1024 ...", end="", file=sys.stderr, flush=True)
        out["gemm"] = run.run_job(["gemm", "1024", *common], env, o.timeout)
        out["gemm"]["loadavg"] = list(os.getloadavg())
        print(f" {out['gemm'].get('status')} {out['gemm'].get('gflops', 0):.1f} GFLOP/s", file=sys.stderr, flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="gradc-cnn-"))
    try:
        for name in cases:
            ref_path = str(tmp / f"{name}.npz")
            entry = out["results"][name] = {"title": CASES[name]["title"], "flops": conv_flops(name), "by": {}}
            print(f"{name} reference ...", end="", file=sys.stderr, flush=True)
            entry["reference"] = run.run_job(["--worker", "reference", name, "--ref", ref_path, *common], env,
                                             o.timeout, module="benchmarks.cnn")
            print(f" {entry['reference'].get('status')} ok={entry['reference'].get('ok')}", file=sys.stderr, flush=True)
            if entry["reference"].get("status") != "ok":
                continue
            for fw in fws:
                print(f"{name} {fw} ...", end="", file=sys.stderr, flush=True)
                cache = tempfile.mkdtemp(prefix="gradc-cnn-cache-")
                try:
                    extra = {"GRADC_CACHE_DIR": os.path.join(cache, "gradc"), "NUMBA_CACHE_DIR": os.path.join(cache, "numba")}
                    res = run.run_job(["--worker", fw, name, "--ref", ref_path, *common], {**env, **extra}, o.timeout,
                                      o.max_memory_gb * 2 ** 30, module="benchmarks.cnn")
                finally:
                    shutil.rmtree(cache, ignore_errors=True)
                res["loadavg"] = list(os.getloadavg())
                entry["by"][fw] = res
                bad = [k for k, v in res.get("variants", {}).items() if not v["check"]["ok"]]
                print(f" {res.get('status')} ({res.get('wall_s', 0):.1f} s)" + (f" MISMATCH: {bad}" if bad else "")
                      + (f": {res.get('reason', '')[:200]}" if res.get("status") != "ok" else ""),
                      file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta["loadavg_end"] = list(os.getloadavg())
    meta["wall_s"] = (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds()
    out["summary"] = summarize(out)
    return out


# --------------------------------------------------------------------------- summary and Markdown

def _t(entry, fw, variant="vg"):
    r = entry["by"].get(fw) or {}
    v = (r.get("variants") or {}).get(variant) if r.get("status") == "ok" else None
    return v["time"]["median"] if v and v["check"]["ok"] and "time" in v else None


def _ratio(a, b):
    return a / b if a is not None and b else None


def summarize(out) -> dict:
    res, problems = out["results"], []
    for name, e in res.items():
        if e.get("reference", {}).get("status") != "ok" or not e["reference"].get("ok"):
            problems.append({"case": name, "framework": "reference", "reason": str(e.get("reference"))[:300]})
        for fw, r in e["by"].items():
            if r.get("status") != "ok":
                problems.append({"case": name, "framework": fw, "reason": r.get("reason")})
                continue
            for k, v in r["variants"].items():
                if not v["check"]["ok"]:
                    problems.append({"case": name, "framework": fw, "variant": k, "reason": v["check"]})
    gemm = out["gemm"]["gflops"] if out.get("gemm") and out["gemm"].get("status") == "ok" else None
    ratios = {name: {f"{fw}_over_gradc_{v}": _ratio(_t(e, fw, v), _t(e, "gradc", v))
                     for fw in ("torch", "jax", "numpy") for v in ("vg", "fwd")} for name, e in res.items()}
    gflops = {}
    for name, e in res.items():
        if e.get("flops"):
            f_fwd, f_vg = e["flops"]
            gflops[name] = {fw: {v: (fl / t / 1e9 if (t := _t(e, fw, v)) else None) for v, fl in (("fwd", f_fwd), ("vg", f_vg))}
                            for fw in e["by"]}
            for fw, d in gflops[name].items():
                for v in ("fwd", "vg"):
                    d[f"{v}_share_of_gemm"] = d[v] / gemm if d[v] and gemm else None
    t = {}
    d = ratios.get("digits_cnn", {})
    if d:
        t["digits_faster_than_torch_and_jax"] = {
            "torch_over_gradc": d["torch_over_gradc_vg"], "jax_over_gradc": d["jax_over_gradc_vg"],
            "met": (d["torch_over_gradc_vg"] or 0) > 1 and (d["jax_over_gradc_vg"] or 0) > 1}
        cold = ((res["digits_cnn"]["by"].get("gradc") or {}).get("first_call_s"))
        t["digits_cold_first_call_le_3s"] = {"seconds": cold, "met": cold is not None and cold <= 3.0}
    d = ratios.get("lenet5", {})
    if d:
        t["lenet_torch_ge_jax_gt"] = {
            "torch_over_gradc": d["torch_over_gradc_vg"], "jax_over_gradc": d["jax_over_gradc_vg"],
            "met": (d["torch_over_gradc_vg"] or 0) >= 1 and (d["jax_over_gradc_vg"] or 0) > 1}
    g = (gflops.get("conv_layer") or {}).get("gradc")
    if g:
        t["conv_layer_ge_60pct_gemm"] = {"fwd": g["fwd_share_of_gemm"], "vg": g["vg_share_of_gemm"],
                                         "met": all((g[k] or 0) >= 0.6 for k in ("fwd_share_of_gemm", "vg_share_of_gemm"))}
    return {"ratios": ratios, "gflops": gflops, "gemm_gflops": gemm, "targets": t, "problems": problems}


def markdown(out) -> str:
    from benchmarks.run import _la, fmt_s, fmt_time, table
    m, s = out["meta"], out["summary"]
    fws, mc = m["frameworks_run"], m["machine"]
    loads = [r["loadavg"][0] for e in out["results"].values() for r in e["by"].values() if r.get("loadavg")]

    def tm(e, fw, v):
        r = e["by"].get(fw)
        if r is None:
            return "—"
        if r.get("status") != "ok":
            return r.get("status", "error")
        x = r["variants"].get(v)
        if x is None:
            return "—"
        return fmt_time(x["time"]["median"]) if x["check"]["ok"] else "✗ " + f"{x['check']['max_rel_err']:.1e}"

    def rx(x):
        return f"{x:.2f}" if x is not None else ""

    L = ["# gradc CNN benchmarks", "",
         f"{m['date']}, git {m['git']}; `{m['command']}`; wall time {m.get('wall_s', 0) / 60:.1f} min.", "",
         f"Machine: {mc.get('cpu')}, {mc.get('cpus')} CPUs ({mc.get('cpus_usable', '?')} usable), "
         f"{mc.get('memory_gib', '?')} GiB, {mc['platform']}. Shared and loaded: load average (1, 5, 15 min) at "
         f"start / end {_la(m.get('loadavg_start'))} / {_la(m.get('loadavg_end'))}"
         + (f"; 1-min load after each job {min(loads):.1f} to {max(loads):.1f}" if loads else "") + ".", "",
         "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
         f"Threads: {m['threads']} (" + ", ".join(f"{k}={v}" for k, v in m["thread_env"].items())
         + f"; torch.set_num_threads({m['threads']})).", "",
         f"Timing: one fresh process per case and framework (gradc with fresh GRADC_CACHE_DIR and NUMBA_CACHE_DIR: "
         f"its first call is a cold compile); median of {m['repeats']} timing loops, each ≥ "
         f"{m['min_time_s'] * 1e3:.0f} ms, after warm-up. Reference: PyTorch autograd (float64) in its own process, "
         f"its loss checked against a direct NumPy convolution (no im2col) and its gradient against central "
         f"differences of that loss along a random direction per argument; every framework's value and gradients "
         f"are compared with it before timing (✗ = max relative error > {m['tol']:g}). gradc: the bare Numba "
         f"dispatchers `m.raw.value_and_grad` / `m.raw.forward` (public API `m.value_and_grad` in its own column). "
         f"PyTorch: eager `torch.nn.functional` + `torch.autograd.grad` (forward under `no_grad`). JAX: `jax.jit` of "
         f"`jax.value_and_grad(f, argnums)` and of `f` (x64, `lax.conv_general_dilated`, `lax.reduce_window`), "
         f"blocked on. NumPy: hand-written im2col (`sliding_window_view` + GEMM) forward and backward.", ""]
    if m.get("frameworks_missing"):
        L += [f"Not installed (skipped): {', '.join(m['frameworks_missing'])}.", ""]
    if m.get("batch_override"):
        L += [f"Batch overridden: {m['batch_override']} (not the batch in the case titles).", ""]
    for note in m.get("notes", []):
        L += [f"Note: {note}", ""]
    g = out.get("gemm")
    if g and g.get("status") == "ok":
        L += [f"**Single-process GEMM rate** (NumPy `matmul`, float64, {g['n']}×{g['n']}, {m['threads']} thread): "
              f"**{g['gflops']:.1f} GFLOP/s** (median; best {g['gflops_best']:.1f}).", ""]
    for title, v in (("value_and_grad", "vg"), ("forward only", "fwd")):
        L += [f"## {title}, median time per call", ""]
        hdr = ["case"] + [c for f in fws for c in ((["gradc", "gradc public API"] if v == "vg" else ["gradc"])
                                                   if f == "gradc" else [LABELS[f], "÷ gradc"])]
        rows = []
        for name, e in out["results"].items():
            row = [e["title"]]
            for f in fws:
                if f == "gradc":
                    row += [tm(e, f, v)] + ([tm(e, f, "vg_public")] if v == "vg" else [])
                else:
                    row += [tm(e, f, v), rx(s["ratios"][name].get(f"{f}_over_gradc_{v}"))]
            rows.append(row)
        L += table(hdr, rows) + [""]
    if s["gflops"]:
        L += ["## One convolution layer: GFLOP/s", "",
              "2·N·O·C·kh·kw·Ho·Wo per forward convolution (0.925 GFLOP), 3× that for value+grad (forward, ∂x, ∂W); "
              "share of the single-process GEMM rate in parentheses.", ""]
        rows = []
        for name, d in s["gflops"].items():
            for f in fws:
                if f in d:
                    x = d[f]
                    rows.append([LABELS[f]] + [f"{x[v]:.1f} ({x[f'{v}_share_of_gemm'] * 100:.0f} %)"
                                               if x[v] and x[f"{v}_share_of_gemm"] else (f"{x[v]:.1f}" if x[v] else "")
                                               for v in ("fwd", "vg")])
        L += table(["framework", "forward GFLOP/s", "value+grad GFLOP/s"], rows) + [""]
    L += ["## First call (build + first value_and_grad; gradc: cold compile, fresh caches)", ""]
    rows = [[e["title"]] + [fmt_s((e["by"].get(f) or {}).get("first_call_s")) or "" for f in fws]
            for e in out["results"].values()]
    L += table(["case"] + [LABELS[f] for f in fws], rows) + [""]
    t = s["targets"]
    L += ["## Targets (issue 13)", ""]
    if "digits_faster_than_torch_and_jax" in t:
        x = t["digits_faster_than_torch_and_jax"]
        L.append(f"- Digits CNN value+grad, batch 128, faster than PyTorch eager and JAX jit: "
                 f"{'met' if x['met'] else 'MISSED'} (PyTorch ÷ gradc {rx(x['torch_over_gradc'])}, "
                 f"JAX ÷ gradc {rx(x['jax_over_gradc'])}).")
    if "lenet_torch_ge_jax_gt" in t:
        x = t["lenet_torch_ge_jax_gt"]
        L.append(f"- LeNet-5 value+grad, batch 64, at least as fast as PyTorch eager and faster than JAX jit: "
                 f"{'met' if x['met'] else 'MISSED'} (PyTorch ÷ gradc {rx(x['torch_over_gradc'])}, "
                 f"JAX ÷ gradc {rx(x['jax_over_gradc'])}).")
    if "conv_layer_ge_60pct_gemm" in t:
        x = t["conv_layer_ge_60pct_gemm"]
        L.append(f"- One conv layer ≥ 60 % of the GEMM rate: {'met' if x['met'] else 'MISSED'} "
                 f"(forward {(x['fwd'] or 0) * 100:.0f} %, value+grad {(x['vg'] or 0) * 100:.0f} %).")
    if "digits_cold_first_call_le_3s" in t:
        x = t["digits_cold_first_call_le_3s"]
        L.append(f"- Digits CNN cold first call ≤ 3 s: {'met' if x['met'] else 'MISSED'} ({fmt_s(x['seconds']) or 'n/a'}).")
    L.append("")
    L.append(f"Problems: {len(s['problems'])}." if not s["problems"] else "## Problems\n")
    for p in s["problems"]:
        L.append(f"- {p['case']} {p['framework']} {p.get('variant', '')}: {str(p.get('reason'))[:300]}")
    return "\n".join(L)


# --------------------------------------------------------------------------- CLI

def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.cnn", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", help=f"comma-separated subset of {','.join(CASES)}")
    p.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all installed)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=900, help="seconds per worker process")
    p.add_argument("--max-memory-gb", type=float, default=8.0)
    p.add_argument("--no-gemm", action="store_true", help="skip the GEMM-rate measurement")
    p.add_argument("--batch", type=int, default=0, help="override the batch of digits_cnn and lenet5 (smoke tests)")
    p.add_argument("--note", action="append", default=[], help="a note for the Markdown (repeatable)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--name", default="cnn", help="file stem of the results (default 'cnn')")
    p.add_argument("--render", metavar="JSON", help="re-render the Markdown of an earlier run's JSON and exit")
    o = p.parse_args(argv)
    o.argv = list(sys.argv[1:] if argv is None else argv)
    return o


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1:])
    o = parse(argv)
    from benchmarks import run
    if o.render:
        return run.render(o.render, summarize, markdown)
    out = run_all(o)
    out["meta"]["notes"] = o.note
    return run.write_results(out, o, markdown)


if __name__ == "__main__":
    sys.exit(main())
