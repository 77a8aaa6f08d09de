"""One measurement in a fresh process: ``python -m benchmarks.worker FRAMEWORK CASE [options]``.

Run by :mod:`benchmarks.run`, one subprocess per (framework, case), with the
thread settings already in the environment. Prints exactly one JSON object on
stdout (everything else the frameworks print is sent to stderr).

A framework module (``benchmarks/workers/fw_<name>.py``) has ``setup(threads)``
(called once, after import), optionally ``prepare(case, inputs)`` (untimed work
such as building a case's SymPy expression) and ``build(case, inputs) -> Impl``;
``build`` raises :class:`NotApplicable` when the framework cannot express the case.

Measured: ``first_call`` (build + the first value_and_grad call: tracing,
code generation, JIT compilation; imports excluded) and ``first_forward``
(the first forward call after that; in the compile-scaling series for gradc
only, whose compile time is ``gradc.compile`` + first value_and_grad + first
forward); then, unless ``--mode cold``, warm-up calls and the median over
``--repeats`` timings of a loop sized to take at least ``--min-time`` seconds,
for value_and_grad, forward and the framework's extra variants (gradc: its
public API, positional and keyword calls, and ``value_and_grad_into``).
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np

TOL = 1e-9   # max |g - g_ref| / max |g_ref| per gradient (and the value): beyond this is a mismatch


class NotApplicable(Exception):
    """The framework cannot express this case (the message says why)."""


@dataclass
class Impl:
    vg: Callable                 # vg(*args) -> framework-native (value, grads)
    fwd: Callable | None         # fwd(*args) -> framework-native value
    args: tuple
    unpack: Callable             # native vg output -> (float value, {name: ndarray})
    unpack_fwd: Callable = float
    info: dict | None = None     # extra facts (e.g. gradc's codegen seconds), filled during build
    # more timed variants: {name: (fn, args) or (fn, args, kwargs)}, e.g. gradc's vg_into; those named
    # vg_public* return what vg returns and are checked against the reference too
    extra: dict | None = None


def _loop(fn, args, number, kwargs=None):
    t0 = time.perf_counter()
    if kwargs:
        for _ in range(number):
            fn(*args, **kwargs)
    else:
        for _ in range(number):
            fn(*args)
    return time.perf_counter() - t0


def measure(fn, args, repeats: int, min_time: float, warmup_time: float, kwargs=None) -> dict:
    """Median seconds per call over ``repeats`` samples, each a loop of ``number`` calls >= min_time."""
    t_end = time.perf_counter() + warmup_time
    n_warm = 0
    while n_warm < 3 or time.perf_counter() < t_end:
        fn(*args, **(kwargs or {}))
        n_warm += 1
    gc_was = gc.isenabled()
    gc.disable()
    try:
        number = 1
        while True:
            t = _loop(fn, args, number, kwargs)
            if t >= min_time or number >= 10 ** 7:
                break
            number = number * 10 if t < min_time / 20 else max(number + 1, int(number * min_time / t * 1.1))
        samples = [_loop(fn, args, number, kwargs) / number for _ in range(repeats)]
    finally:
        if gc_was:
            gc.enable()
    samples.sort()
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return {"median": statistics.median(samples), "min": samples[0], "q1": q[0], "q3": q[2],
            "repeats": repeats, "number": number, "warmup_calls": n_warm}


def compare(value, grads: dict, ref_value, ref_grads: dict) -> dict:
    """Errors of (value, grads) against the reference, each relative to the reference's max |.|."""
    errs = {}

    def rel(a, b):
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            return math.inf
        if not np.all(np.isfinite(a)):
            return math.inf
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        diff = float(np.max(np.abs(a - b))) if b.size else 0.0
        return diff / scale if scale > 0 else diff

    errs["value"] = rel(value, ref_value)
    for name, g in ref_grads.items():
        errs[name] = rel(grads[name], g) if name in grads else math.inf
    worst = max(errs.values())
    return {"max_rel_err": worst, "errors": errs, "ok": bool(worst <= TOL), "tol": TOL}


def thread_report(fw_mod=None) -> dict:
    out = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                           "NUMBA_NUM_THREADS", "XLA_FLAGS") if os.environ.get(k)}
    try:
        from threadpoolctl import threadpool_info
        pools = threadpool_info()
        out["threadpools"] = sorted({f"{p['internal_api']}={p['num_threads']}" for p in pools})
        # the kernels OpenBLAS picked for this CPU (or OPENBLAS_CORETYPE): e.g. openblas:SkylakeX
        out["blas_kernels"] = sorted({f"{p['internal_api']}:{p['architecture']}" for p in pools
                                      if p.get("architecture")})
    except Exception:  # noqa: BLE001
        pass
    if fw_mod is not None and hasattr(fw_mod, "thread_info"):
        out.update(fw_mod.thread_info())
    return out


def gemm(n: int, repeats: int, min_time: float) -> dict:
    """The single-process GEMM rate: float64 ``A @ B`` for n x n matrices, at the thread settings given."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n))
    B = rng.standard_normal((n, n))
    C = np.empty((n, n))
    m = measure(lambda: np.matmul(A, B, out=C), (), repeats, min_time, warmup_time=min_time)
    flops = 2.0 * n ** 3
    return {"status": "ok", "n": n, "seconds": m, "gflops": flops / m["median"] / 1e9,
            "gflops_best": flops / m["min"] / 1e9, "threads": thread_report()}


def check_reference(case_name: str) -> dict:
    """Validates a case's NumPy reference: central differences along random directions, worked values."""
    from benchmarks import cases as cases_mod

    case = cases_mod.CASES[case_name]
    inputs = case.inputs()
    value, grads = case.reference(inputs)
    rng = np.random.default_rng(1)
    fd = {}
    for name in case.wrt:
        worst = 0.0
        for _ in range(2):
            x = np.asarray(inputs[name], dtype=np.float64)
            d = rng.standard_normal(x.shape)
            scale = max(1.0, float(np.max(np.abs(x))) if x.size else 1.0)
            ana = float(np.sum(np.asarray(grads[name]) * d))

            def f_at(step):
                moved = dict(inputs)
                xv = x + step * d
                moved[name] = float(xv) if np.ndim(inputs[name]) == 0 else xv
                return case.reference(moved)[0]
            # The best of three steps: a large step may cross a kink (a ReLU input through 0),
            # a small one loses digits to rounding; one of them is clean.
            err = math.inf
            for rel_step in (1e-6, 1e-7, 1e-8):
                h = rel_step * scale
                num = (f_at(h) - f_at(-h)) / (2 * h)
                err = min(err, abs(num - ana) / max(abs(ana), 1e-8))
            worst = max(worst, err)
        fd[name] = worst
    res = {"status": "ok", "case": case_name, "value": float(value), "fd_rel_err": fd,
           "fd_max": max(fd.values()), "fd_ok": bool(max(fd.values()) <= 1e-5)}
    if case.expected:
        exp = case.expected
        res["expected"] = compare(value, grads, exp["value"], {k: np.asarray(v) for k, v in exp["grads"].items()})
    res["ok"] = res["fd_ok"] and res.get("expected", {}).get("ok", True)
    return res


def run(framework: str, case_name: str, mode: str, repeats: int, min_time: float, threads: int) -> dict:
    from benchmarks import cases as cases_mod

    if framework == "reference":
        return check_reference(case_name)
    if framework == "gemm":
        return gemm(int(case_name), repeats, min_time)

    case = cases_mod.CASES[case_name]
    res: dict = {"framework": framework, "case": case_name, "mode": mode, "pid": os.getpid()}
    t0 = time.perf_counter()
    mod = importlib.import_module(f"benchmarks.workers.fw_{framework}")
    mod.setup(threads)
    res["import_s"] = time.perf_counter() - t0
    inputs = case.inputs()
    ref_value, ref_grads = case.reference(inputs)
    if hasattr(mod, "prepare"):   # e.g. build the SymPy expression: not part of the first call
        t0 = time.perf_counter()
        mod.prepare(case, inputs)
        res["prepare_s"] = time.perf_counter() - t0

    try:
        t0 = time.perf_counter()
        impl = mod.build(case, inputs)
        t_build = time.perf_counter() - t0
        out = impl.vg(*impl.args)
        t_first = time.perf_counter() - t0
    except NotApplicable as e:
        res.update(status="n/a", reason=str(e))
        return res
    res["build_s"] = t_build
    res["first_call_s"] = t_first
    if impl.info:
        res["info"] = impl.info
    value, grads = impl.unpack(out)
    res["check"] = compare(value, grads, ref_value, ref_grads)
    res["value"] = float(value)
    if case.group == "scaling" and framework != "gradc":
        impl.fwd = None   # the compile-time series: the peers' value_and_grad only (forward would double
        # their JIT); gradc's compile time is gradc.compile + first value_and_grad + first forward
    if impl.fwd is not None:
        t0 = time.perf_counter()
        fv = impl.fwd(*impl.args)
        res["first_forward_s"] = time.perf_counter() - t0
        res["forward_check"] = compare(impl.unpack_fwd(fv), {}, ref_value, {})
    if mode != "cold":
        res["vg"] = measure(impl.vg, impl.args, repeats, min_time, warmup_time=min_time)
        if impl.fwd is not None:
            res["fwd"] = measure(impl.fwd, impl.args, repeats, min_time, warmup_time=min_time)
        for key, (fn, args, *kw) in (impl.extra or {}).items():
            kwargs = kw[0] if kw else None
            m = res.setdefault("extra", {})[key] = measure(fn, args, repeats, min_time, min_time, kwargs)
            if key.startswith("vg_public"):
                m["check"] = compare(*impl.unpack(fn(*args, **(kwargs or {}))), ref_value, ref_grads)
    res["threads"] = thread_report(mod)
    res["status"] = "ok"
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    p.add_argument("framework")
    p.add_argument("case")
    p.add_argument("--mode", choices=["cold", "warm", "full"], default="full",
                   help="cold: first call only; warm/full: first call, then timings")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    return one_json_line(lambda: run(a.framework, a.case, a.mode, a.repeats, a.min_time, a.threads),
                         {"framework": a.framework, "case": a.case, "mode": a.mode})


def one_json_line(work: Callable[[], dict], failed: dict) -> int:
    """A worker process's output: ``work()``'s result as the one JSON line on stdout. While it runs,
    anything printed (by the frameworks, also from C) goes to stderr; an exception becomes
    ``{**failed, "status": "error", "reason": ..., "traceback": ...}``. Returns the exit status 0."""
    real_stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        res = work()
    except Exception as e:  # noqa: BLE001
        res = {**failed, "status": "error", "reason": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    real_stdout.write(json.dumps(res, default=_jsonable) + "\n")
    real_stdout.flush()
    return 0


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def dense_hessian(H):
    """A Hessian as one float64 ``(N, N)`` array over the flattened wrt arguments: an array as it
    is; blocks ``H[i][j]`` of shape ``wrt_i.shape + wrt_j.shape`` (as ``jax.hessian`` and
    ``torch.func.hessian`` return them, and gradc for array arguments) assembled. For
    :mod:`benchmarks.derivatives`."""
    if not isinstance(H, (tuple, list)):
        return np.asarray(H, dtype=np.float64)
    sizes = [int(round(math.sqrt(np.size(H[i][i])))) for i in range(len(H))]
    return np.block([[np.asarray(b, dtype=np.float64).reshape(si, sj) for b, sj in zip(row, sizes)]
                     for row, si in zip(H, sizes)])


if __name__ == "__main__":
    # Run the importable module's main, so that NotApplicable and Impl are the classes the
    # framework modules import (not copies defined in __main__).
    sys.exit(importlib.import_module("benchmarks.worker").main())
