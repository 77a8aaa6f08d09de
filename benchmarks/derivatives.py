"""Derivative benchmarks (issue 11): ``python -m benchmarks.derivatives`` (or ``python -m benchmarks --derivatives``).

gradc's generated ``hvp``, ``hessian`` and ``jacobian`` against ``jax.jit`` of
``jax.jvp(jax.grad(f))``, ``jax.hessian``, ``jax.jacfwd``/``jax.jacrev`` and against
eager ``torch.func`` (``jvp(grad(f))``, ``hessian``, ``jacfwd``/``jacrev``):

* **hvp** on every case of ``benchmarks/cases.py`` in the main group (all have a scalar
  value), plus the extended Rosenbrock n = 100; each framework's ``value_and_grad`` is
  timed in the same process for the ratio HVP ÷ value_and_grad (target for gradc: ≤ 4).
* **hessian**: dense Hessian of the extended Rosenbrock n = 100, of the sigmoid neuron and
  of the 200-term unrolled expression (its first call is the cold compile, target ≤ 3 s).
* **jacobian**: the (250, 9) Jacobian of the residuals of a sum of 3 Gaussians
  ``r_i = Σ_j a_j exp(-(t_i - b_j)² / (2 c_j²)) - y_i`` at 250 points (gradc: a spec with
  vector data inputs ``t``, ``y`` and 9 scalar parameters; JAX/PyTorch: ``f(p, t, y)`` with
  the parameter vector ``p``).

One fresh process per (derivative, case, framework), 1 thread by default (the thread
settings of :mod:`benchmarks.run`); gradc's process gets fresh ``GRADC_CACHE_DIR`` and
``NUMBA_CACHE_DIR``, so its first call is a cold compile. Each result is checked against an
independent float64 NumPy reference before it is timed: hand-written Hessians and Jacobians
(themselves checked by central differences), and for HVPs central differences of the
case's hand-written gradient (Richardson-extrapolated, the step chosen where two
successive steps agree best). Timing: :func:`benchmarks.worker.measure` (median of
``--repeats`` loops). Results: ``benchmarks/results/derivatives.md`` and ``.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

if __package__ in (None, ""):   # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import cases as cases_mod  # noqa: E402
from benchmarks.cases import Case  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = ["gradc", "jax", "torch"]
LABELS = {"gradc": "gradc", "jax": "JAX jit", "torch": "PyTorch torch.func"}
FD_TOL = 1e-6      # max |x - ref| / max |ref| against a finite-difference reference
EXACT_TOL = 1e-9   # ... against a hand-written formula


# --------------------------------------------------------------------------- extra cases

def _gauss3_inputs(m):
    def make():
        t = np.linspace(0.0, 10.0, m)
        true = {"a1": 1.0, "b1": 2.5, "c1": 0.6, "a2": 0.6, "b2": 5.0, "c2": 1.0, "a3": 0.8, "b3": 7.5, "c3": 0.8}
        y = _gauss3_model(true, t) + 0.02 * np.random.default_rng(250).standard_normal(m)
        start = {k: v * (1.1 if k[0] != "b" else 1.02) for k, v in true.items()}   # an iterate of a fit
        return {"t": t, "y": y, **start}
    return make


def _gauss3_model(p, t):
    return sum(p[f"a{j}"] * np.exp(-(t - p[f"b{j}"]) ** 2 / (2.0 * p[f"c{j}"] ** 2)) for j in (1, 2, 3))


def _gauss3_ref(case, a):
    """Residuals and their hand-written (m, 9) Jacobian (columns a1, b1, c1, a2, ...)."""
    t = a["t"]
    cols = []
    for j in (1, 2, 3):
        aj, bj, cj = a[f"a{j}"], a[f"b{j}"], a[f"c{j}"]
        e = np.exp(-(t - bj) ** 2 / (2.0 * cj ** 2))
        cols += [e, aj * e * (t - bj) / cj ** 2, aj * e * (t - bj) ** 2 / cj ** 3]
    return _gauss3_model(a, t) - a["y"], {"jacobian": np.stack(cols, axis=1)}


GAUSS3_SPEC = """
[model]
name = "bench_gauss3_residuals"
[inputs]
t = { shape = ["m"] }
y = { shape = ["m"] }
[params]
a1 = { shape = [] }
b1 = { shape = [] }
c1 = { shape = [] }
a2 = { shape = [] }
b2 = { shape = [] }
c2 = { shape = [] }
a3 = { shape = [] }
b3 = { shape = [] }
c3 = { shape = [] }
[graph]
g1 = "a1 * exp(-(t - b1) ** 2 / (2 * c1 ** 2))"
g2 = "a2 * exp(-(t - b2) ** 2 / (2 * c2 ** 2))"
g3 = "a3 * exp(-(t - b3) ** 2 / (2 * c3 ** 2))"
r = "g1 + g2 + g3 - y"
[output]
value = "r"
"""

EXTRA = {c.name: c for c in [
    Case("rosenbrock_100", "ext. Rosenbrock (array), n=100", "array", cases_mod._rosen_inputs(100), ("x",),
         cases_mod._rosen_ref, gradc_source=cases_mod._rosen_source, params={"n": 100}),
    Case("gauss3_250", "3 Gaussians, 250 residuals, 9 parameters", "residuals", _gauss3_inputs(250),
         ("a1", "b1", "c1", "a2", "b2", "c2", "a3", "b3", "c3"), _gauss3_ref,
         gradc_source=lambda c: (GAUSS3_SPEC, {})),
]}


def get_case(name: str) -> Case:
    return EXTRA[name] if name in EXTRA else cases_mod.CASES[name]


def tasks() -> list[tuple[str, str]]:
    """(derivative, case) pairs in table order."""
    hvp = [n for n, c in cases_mod.CASES.items() if c.group == "main"]
    hvp.insert(hvp.index("rosenbrock_1000"), "rosenbrock_100")
    return ([("hvp", n) for n in hvp] + [("hessian", n) for n in ("rosenbrock_100", "sigmoid_neuron", "bigexpr_unrolled")]
            + [("jacobian", "gauss3_250")])


# --------------------------------------------------------------------------- references

def _flat(case, inputs) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(inputs[w], dtype=np.float64)) for w in case.wrt])


def _grad_at(case, inputs, x) -> np.ndarray:
    """The case's hand-written gradient (flattened over ``wrt``) at the flat wrt point ``x``."""
    moved, off = dict(inputs), 0
    for w in case.wrt:
        shape = np.shape(inputs[w])
        k = int(np.prod(shape))
        moved[w] = float(x[off]) if shape == () else x[off:off + k].reshape(shape)
        off += k
    g = case.reference(moved)[1]
    return np.concatenate([np.ravel(np.asarray(g[w], dtype=np.float64)) for w in case.wrt])


def fd_hvp(case, inputs, v) -> tuple[np.ndarray, float]:
    """H v by central differences of the hand-written gradient along ``v``, Richardson-extrapolated;
    of the steps 1e-3 .. 1e-8 (relative) the one that agrees best with the next smaller is kept
    (large steps cross ReLU kinks, small ones lose digits). Returns (H v, that disagreement)."""
    x0 = _flat(case, inputs)
    scale = max(1.0, float(np.max(np.abs(x0)))) / max(float(np.max(np.abs(v))), 1e-300)

    def d(h):
        return (_grad_at(case, inputs, x0 + h * v) - _grad_at(case, inputs, x0 - h * v)) / (2 * h)
    est = [(4 * d(h / 2) - d(h)) / 3 for h in (rel * scale for rel in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8))]
    best, err = None, math.inf
    for big, small in zip(est, est[1:]):
        e = float(np.max(np.abs(big - small))) / max(float(np.max(np.abs(small))), 1e-300)
        if e < err:
            best, err = small, e
    return best, err


def hessian_formula(case, inputs) -> np.ndarray | None:
    """Hand-written Hessians: extended Rosenbrock (tridiagonal) and the sigmoid neuron."""
    if case.name.startswith("rosenbrock"):
        x = np.asarray(inputs["x"], dtype=np.float64)
        n = x.size
        H = np.zeros((n, n))
        i = np.arange(n - 1)
        H[i, i] += 1200.0 * x[:-1] ** 2 - 400.0 * x[1:] + 2.0
        H[i + 1, i + 1] += 200.0
        H[i, i + 1] = H[i + 1, i] = -400.0 * x[:-1]
        return H
    if case.name == "sigmoid_neuron":
        a = {k: float(v) for k, v in inputs.items()}
        s = a["w0"] * a["x0"] + a["w1"] * a["x1"] + a["w2"]
        f = 1.0 / (1.0 + math.exp(-s))
        d1, d2 = f * (1 - f), f * (1 - f) * (1 - 2 * f)
        ds = {"w0": a["x0"], "w1": a["x1"], "w2": 1.0, "x0": a["w0"], "x1": a["w1"]}   # ∂s
        pairs = {frozenset(("w0", "x0")), frozenset(("w1", "x1"))}                       # ∂²s = 1
        return np.array([[d2 * ds[p] * ds[q] + (d1 if frozenset((p, q)) in pairs else 0.0) for q in case.wrt]
                         for p in case.wrt])
    return None


def fd_hessian(case, inputs) -> tuple[np.ndarray, float]:
    n = _flat(case, inputs).size
    cols = [fd_hvp(case, inputs, e) for e in np.eye(n)]
    return np.stack([c for c, _ in cols], axis=1), max(e for _, e in cols)


def fd_jacobian(case, inputs) -> np.ndarray:
    """Central differences (Richardson) of the residuals, one column per scalar parameter."""
    cols = []
    for w in case.wrt:
        h = 1e-4 * max(1.0, abs(inputs[w]))

        def d(s):
            return (case.reference({**inputs, w: inputs[w] + s})[0] - case.reference({**inputs, w: inputs[w] - s})[0]) / (2 * s)
        cols.append((4 * d(h / 2) - d(h)) / 3)
    return np.stack(cols, axis=1)


def seeds_for(case, inputs) -> dict:
    """The HVP direction: one standard-normal draw per wrt argument, shaped like it."""
    rng = np.random.default_rng(11)
    return {w: (float(rng.standard_normal()) if np.ndim(inputs[w]) == 0 else rng.standard_normal(np.shape(inputs[w])))
            for w in case.wrt}


def reference(kind, case, inputs, seeds) -> dict:
    """``{"values": {variant prefix: array}, "tol": ..., "how": ..., ...}``."""
    if kind == "hvp":
        hv, err = fd_hvp(case, inputs, _flat(case, {w: seeds[w] for w in case.wrt}))
        g = _grad_at(case, inputs, _flat(case, inputs))
        return {"values": {"hvp": hv, "vg": g}, "tol": {"hvp": FD_TOL, "vg": EXACT_TOL},
                "how": "central differences of the hand-written gradient", "fd_self_err": err}
    if kind == "hessian":
        H = hessian_formula(case, inputs)
        fd, err = fd_hessian(case, inputs)
        if H is None:
            return {"values": {"hessian": fd}, "tol": {"hessian": FD_TOL},
                    "how": "central differences of the hand-written gradient", "fd_self_err": err}
        agree = float(np.max(np.abs(H - fd)) / np.max(np.abs(H)))
        return {"values": {"hessian": H}, "tol": {"hessian": EXACT_TOL}, "how": "hand-written formula",
                "formula_vs_fd": agree, "formula_ok": agree <= FD_TOL}
    if kind == "jacobian":
        J = case.reference(inputs)[1]["jacobian"]
        agree = float(np.max(np.abs(J - fd_jacobian(case, inputs))) / np.max(np.abs(J)))
        return {"values": {"jacobian": J}, "tol": {"jacobian": EXACT_TOL}, "how": "hand-written formula",
                "formula_vs_fd": agree, "formula_ok": agree <= FD_TOL}
    raise ValueError(kind)


def compare(x, ref, tol) -> dict:
    x = np.asarray(x, dtype=np.float64)
    if x.shape != ref.shape:
        return {"ok": False, "max_rel_err": math.inf, "tol": tol, "reason": f"shape {x.shape}, want {ref.shape}"}
    err = float(np.max(np.abs(x - ref)) / max(float(np.max(np.abs(ref))), 1e-300)) if np.all(np.isfinite(x)) else math.inf
    return {"ok": bool(err <= tol), "max_rel_err": err, "tol": tol}


# --------------------------------------------------------------------------- the worker (one process)

def work(fw: str, kind: str, case_name: str, repeats: int, min_time: float, threads: int) -> dict:
    from benchmarks.worker import NotApplicable, measure, thread_report

    case = get_case(case_name)
    res = {"framework": fw, "kind": kind, "case": case_name, "pid": os.getpid()}
    t0 = time.perf_counter()
    mod = importlib.import_module(f"benchmarks.workers.fw_{fw}")
    mod.setup(threads)
    res["import_s"] = time.perf_counter() - t0
    inputs = case.inputs()
    seeds = seeds_for(case, inputs) if kind == "hvp" else None
    t0 = time.perf_counter()
    ref = reference(kind, case, inputs, seeds)
    res["reference"] = {k: v for k, v in ref.items() if k not in ("values",)}
    res["reference_s"] = time.perf_counter() - t0
    try:
        thunks = mod.derivative(kind, case, inputs, seeds)
    except NotApplicable as e:
        return {**res, "status": "n/a", "reason": str(e)}
    res["variants"] = {}
    for name, thunk in thunks.items():
        key = name.split("_")[0]
        r = res["variants"][name] = {}
        try:
            t0 = time.perf_counter()
            fn, args, to_numpy = thunk()
            out = fn(*args)
            r["first_call_s"] = time.perf_counter() - t0     # build (gradc: compile) + first call
            r["check"] = compare(to_numpy(out), ref["values"][key], ref["tol"][key])
            r["time"] = measure(fn, args, repeats, min_time, warmup_time=min_time)
            r["status"] = "ok"
        except NotApplicable as e:
            r.update(status="n/a", reason=str(e))
        except Exception as e:  # noqa: BLE001  (one variant failing does not end the others)
            r.update(status="error", reason=f"{type(e).__name__}: {str(e)[:300]}", traceback=traceback.format_exc())
    res["threads"] = thread_report(mod)
    res["status"] = "ok"
    return res


def worker_main(argv) -> int:
    from benchmarks.worker import one_json_line
    p = argparse.ArgumentParser(prog="python -m benchmarks.derivatives --worker")
    p.add_argument("framework")
    p.add_argument("kind")
    p.add_argument("case")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    return one_json_line(lambda: work(a.framework, a.kind, a.case, a.repeats, a.min_time, a.threads),
                         {"framework": a.framework, "kind": a.kind, "case": a.case})


# --------------------------------------------------------------------------- the runner

def run_all(o) -> dict:
    from benchmarks import run

    wanted, fws, missing = run.frameworks_to_run(o.frameworks, FRAMEWORKS)
    todo = [(k, c) for k, c in tasks() if (not o.kinds or k in o.kinds.split(","))
            and (not o.cases or c in o.cases.split(","))]
    env = run.child_env(o.threads)
    started = _dt.datetime.now(_dt.timezone.utc)
    meta = {"date": started.isoformat(timespec="seconds"),
            "command": " ".join(["python -m benchmarks.derivatives", *o.argv]), "git": run.git_commit(),
            "machine": run.machine(), "versions": run.versions(), "threads": o.threads,
            "thread_env": run.thread_env(o.threads), "repeats": o.repeats, "min_time_s": o.min_time,
            "frameworks_run": fws, "frameworks_missing": missing,
            "loadavg_start": list(os.getloadavg()), "fd_tol": FD_TOL, "exact_tol": EXACT_TOL}
    out = {"meta": meta, "results": {}}
    common = ["--repeats", str(o.repeats), "--min-time", str(o.min_time), "--threads", str(o.threads)]
    n, total = 0, len(todo) * len(fws)
    for kind, case in todo:
        entry = out["results"].setdefault(f"{kind}:{case}", {"kind": kind, "case": case,
                                                             "title": get_case(case).title, "by": {}})
        for fw in fws:
            n += 1
            print(f"[{n:>3}/{total}] {kind} {case}: {fw} ...", end="", file=sys.stderr, flush=True)
            cache = tempfile.mkdtemp(prefix="gradc-deriv-cache-")
            try:
                extra = {"GRADC_CACHE_DIR": cache, "NUMBA_CACHE_DIR": os.path.join(cache, "numba")}
                res = run.run_job(["--worker", fw, kind, case, *common], {**env, **extra}, o.timeout,
                                  o.max_memory_gb * 2 ** 30, module="benchmarks.derivatives")
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            res["loadavg"] = list(os.getloadavg())
            entry["by"][fw] = res
            bad = [k for k, v in res.get("variants", {}).items() if v.get("status") != "ok" or not v["check"]["ok"]]
            print(f" {res.get('status')} ({res.get('wall_s', 0):.1f} s)" + (f" PROBLEM: {bad}" if bad else "")
                  + (f": {res.get('reason', '')[:160]}" if res.get("status") != "ok" else ""),
                  file=sys.stderr, flush=True)
    meta["loadavg_end"] = list(os.getloadavg())
    meta["wall_s"] = (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds()
    out["summary"] = summarize(out)
    return out


# --------------------------------------------------------------------------- summary and Markdown

def _v(entry, fw, variant):
    """The variant's record if it ran and matched its reference."""
    r = (entry["by"].get(fw) or {})
    v = (r.get("variants") or {}).get(variant) if r.get("status") == "ok" else None
    return v if v and v.get("status") == "ok" and v["check"]["ok"] else None


def _t(entry, fw, variant):
    v = _v(entry, fw, variant)
    return v["time"]["median"] if v else None


def _best(entry, fw, variants):
    ts = [(t, v) for v in variants if (t := _t(entry, fw, v)) is not None]
    return min(ts) if ts else (None, None)


def _ratio(a, b):
    return a / b if a is not None and b else None


def summarize(out) -> dict:
    hvp, dense, problems = {}, {}, []
    for key, e in out["results"].items():
        for fw, r in e["by"].items():
            if r.get("status") != "ok":
                problems.append({"task": key, "framework": fw, "status": r.get("status"), "reason": r.get("reason")})
                continue
            for name, v in r["variants"].items():
                if v.get("status") != "ok" or not v["check"]["ok"]:
                    problems.append({"task": key, "framework": fw, "variant": name, "status": v.get("status"),
                                     "reason": v.get("reason") or v.get("check")})
        if e["kind"] == "hvp":
            g = _t(e, "gradc", "hvp")
            hvp[e["case"]] = {"gradc_hvp_over_vg": _ratio(g, _t(e, "gradc", "vg")),
                              "jax_over_gradc": _ratio(_t(e, "jax", "hvp"), g),
                              "torch_over_gradc": _ratio(_t(e, "torch", "hvp"), g),
                              "jax_hvp_over_vg": _ratio(_t(e, "jax", "hvp"), _t(e, "jax", "vg")),
                              "torch_hvp_over_vg": _ratio(_t(e, "torch", "hvp"), _t(e, "torch", "vg")),
                              "gradc_first_call_s": (_v(e, "gradc", "hvp") or {}).get("first_call_s")}
        else:
            g = _t(e, "gradc", e["kind"])
            names = ["hessian"] if e["kind"] == "hessian" else ["jacobian_fwd", "jacobian_rev"]
            dense[key] = {"gradc": g, "jax_over_gradc": _ratio(_best(e, "jax", names)[0], g),
                          "torch_over_gradc": _ratio(_best(e, "torch", names)[0], g),
                          "gradc_first_call_s": (_v(e, "gradc", e["kind"]) or {}).get("first_call_s")}

    def worst(d, k, fn):
        xs = [(v[k], c) for c, v in d.items() if v.get(k) is not None]
        return fn(xs) if xs else None
    def missed(d, k, ok):
        return [(c, v[k]) for c, v in d.items() if v.get(k) is None or not ok(v[k])]
    targets = {
        "hvp_over_vg_le_4": {"worst": worst(hvp, "gradc_hvp_over_vg", max),
                             "missed": missed(hvp, "gradc_hvp_over_vg", lambda r: r <= 4),
                             "met": all((v["gradc_hvp_over_vg"] or math.inf) <= 4 for v in hvp.values())},
        "hvp_faster_than_jax": {"worst": worst(hvp, "jax_over_gradc", min),
                                "missed": missed(hvp, "jax_over_gradc", lambda r: r > 1),
                                "met": all((v["jax_over_gradc"] or 0) > 1 for v in hvp.values())},
        "dense_faster_than_jax_and_torch": {
            "worst_jax": worst(dense, "jax_over_gradc", min), "worst_torch": worst(dense, "torch_over_gradc", min),
            "missed": [(c, v["jax_over_gradc"], v["torch_over_gradc"]) for c, v in dense.items()
                       if not ((v["jax_over_gradc"] or 0) > 1 and (v["torch_over_gradc"] or 0) > 1)],
            "met": all((v["jax_over_gradc"] or 0) > 1 and (v["torch_over_gradc"] or 0) > 1 for v in dense.values())},
    }
    big = dense.get("hessian:bigexpr_unrolled", {}).get("gradc_first_call_s")
    targets["hessian_200_terms_cold_le_3s"] = {"seconds": big, "met": big is not None and big <= 3.0}
    return {"hvp": hvp, "dense": dense, "targets": targets, "problems": problems}


def _load_range(out) -> str:
    loads = [r["loadavg"][0] for e in out["results"].values() for r in e["by"].values() if r.get("loadavg")]
    return f"; 1-min load average after each job: {min(loads):.1f} to {max(loads):.1f}" if loads else ""


def markdown(out) -> str:
    from benchmarks.run import _la, fmt_s, fmt_time, table

    m, s = out["meta"], out["summary"]
    fws = m["frameworks_run"]
    mc = m["machine"]

    def tm(e, fw, variant):
        r = e["by"].get(fw)
        if r is None:
            return "—"
        if r.get("status") != "ok":
            return r.get("status", "error")
        v = r["variants"].get(variant)
        if v is None:
            return "—"
        if v.get("status") != "ok":
            return v.get("status", "error")
        return fmt_time(v["time"]["median"]) + ("" if v["check"]["ok"] else " ✗")

    def rx(x, digits=2):
        return f"{x:.{digits}f}" if x is not None else ""

    def first(e, fw, variant):
        v = ((e["by"].get(fw) or {}).get("variants") or {}).get(variant)
        return fmt_s(v.get("first_call_s")) if v and v.get("status") == "ok" else ""

    L = ["# gradc derivative benchmarks", "",
         f"{m['date']}, git {m['git']}; `{m['command']}`; wall time {m.get('wall_s', 0) / 60:.1f} min.", "",
         f"Machine: {mc.get('cpu')}, {mc.get('cpus')} CPUs ({mc.get('cpus_usable', '?')} usable), "
         f"{mc.get('memory_gib', '?')} GiB, {mc['platform']}. Load average (1, 5, 15 min) at start / end: "
         f"{_la(m.get('loadavg_start'))} / {_la(m.get('loadavg_end'))}" + _load_range(out) + ".", "",
         "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
         f"Threads: {m['threads']} (" + ", ".join(f"{k}={v}" for k, v in m["thread_env"].items())
         + (f"; torch.set_num_threads({m['threads']})" if "torch" in fws else "") + ").", "",
         f"Timing: one fresh process per derivative, case and framework (gradc with fresh caches: its first call "
         f"is a cold compile); median of {m['repeats']} timing loops, each ≥ {m['min_time_s'] * 1e3:.0f} ms. "
         f"Every result is checked against an independent float64 NumPy reference before it is timed "
         f"(✗ = mismatch): HVPs against central differences of the case's hand-written gradient "
         f"(max relative error ≤ {m['fd_tol']:g}), the Rosenbrock and sigmoid Hessians and the Jacobian against "
         f"hand-written formulas (≤ {m['exact_tol']:g}; the formulas themselves agree with central differences), "
         f"the 200-term Hessian against central differences. gradc is timed at its bare Numba dispatchers "
         f"(`c.module.hvp(*args, *v)`, `c.module.hessian(*args)`, `c.module.jacobian(*args)`); "
         f"\"public\" is `c.hvp(*args, v)` / `c.hessian(*args)` / `c.jacobian(*args)`. JAX: `jax.jit` of "
         f"`jax.jvp(jax.grad(f, argnums), primals, v)`, `jax.hessian(f, argnums)`, `jax.jacfwd`/`jax.jacrev` "
         f"(x64, results blocked on). PyTorch: eager `torch.func` (`jvp(grad(f))`, `hessian`, `jacfwd`/`jacrev`); "
         f"its value_and_grad is the main suite's autograd one. Ratios divide by gradc's bare time.", ""]
    if m["frameworks_missing"]:
        L += [f"Not installed (skipped): {', '.join(m['frameworks_missing'])}.", ""]
    if m.get("notes"):
        L += ["Notes:", ""] + [f"- {note}" for note in m["notes"]] + [""]

    hv = {k: e for k, e in out["results"].items() if e["kind"] == "hvp"}
    if hv:
        L += ["## Hessian-vector product (forward over reverse), median time per call", ""]
        hdr = ["case"]
        if "gradc" in fws:
            hdr += ["gradc HVP", "gradc v+g", "gradc HVP ÷ v+g", "gradc public HVP", "gradc first HVP (cold)"]
        for fw in fws[1:] if fws[:1] == ["gradc"] else fws:
            hdr += [f"{LABELS[fw]} HVP", f"{LABELS[fw]} HVP ÷ v+g"] + (["÷ gradc"] if "gradc" in fws else [])
        rows = []
        for e in hv.values():
            row, sm = [e["title"]], s["hvp"].get(e["case"], {})
            if "gradc" in fws:
                row += [tm(e, "gradc", "hvp"), tm(e, "gradc", "vg"), rx(sm.get("gradc_hvp_over_vg")),
                        tm(e, "gradc", "hvp_public"), first(e, "gradc", "hvp")]
            for fw in fws:
                if fw == "gradc":
                    continue
                row += [tm(e, fw, "hvp"), rx(sm.get(f"{fw}_hvp_over_vg"))]
                if "gradc" in fws:
                    row.append(rx(sm.get(f"{fw}_over_gradc")))
            rows.append(row)
        L += table(hdr, rows) + [""]

    dn = {k: e for k, e in out["results"].items() if e["kind"] != "hvp"}
    if dn:
        L += ["## Dense Hessians and the least-squares Jacobian, median time per call", ""]
        hdr = ["derivative", "case"]
        if "gradc" in fws:
            hdr += ["gradc", "gradc public", "gradc first call (cold)"]
        for fw in fws:
            if fw != "gradc":
                hdr += [LABELS[fw]] + (["÷ gradc"] if "gradc" in fws else [])
        rows = []
        for k, e in dn.items():
            sm = s["dense"].get(k, {})
            if e["kind"] == "hessian":
                row = ["Hessian", e["title"]]
                if "gradc" in fws:
                    row += [tm(e, "gradc", "hessian"), tm(e, "gradc", "hessian_public"), first(e, "gradc", "hessian")]
                for fw in fws:
                    if fw != "gradc":
                        row += [tm(e, fw, "hessian")] + ([rx(sm.get(f"{fw}_over_gradc"))] if "gradc" in fws else [])
            else:
                row = ["Jacobian (250×9)", e["title"]]
                if "gradc" in fws:
                    row += [f"{tm(e, 'gradc', 'jacobian')} (auto; fwd {tm(e, 'gradc', 'jacobian_fwd')}, "
                            f"rev {tm(e, 'gradc', 'jacobian_rev')})", tm(e, "gradc", "jacobian_public"),
                            first(e, "gradc", "jacobian")]
                for fw in fws:
                    if fw != "gradc":
                        row += [f"jacfwd {tm(e, fw, 'jacobian_fwd')}, jacrev {tm(e, fw, 'jacobian_rev')}"]
                        row += [rx(sm.get(f"{fw}_over_gradc")) + " (best)"] if "gradc" in fws else []
            rows.append(row)
        L += table(hdr, rows) + [""]

    t = s["targets"]
    if "gradc" in fws:
        L += ["## Targets (issue 11)", ""]

        def w(pair, fmt):
            return fmt.format(*pair) if pair else "n/a"

        def ms(target):
            return ("; missed on " + ", ".join(f"{c} ({rx(r)})" for c, r in target["missed"])
                    if target.get("missed") else "")
        L.append(f"- HVP ≤ 4 × value_and_grad on every case: {'met' if t['hvp_over_vg_le_4']['met'] else 'MISSED'} "
                 f"(worst {w(t['hvp_over_vg_le_4']['worst'], '{0:.2f}× on {1}')}{ms(t['hvp_over_vg_le_4'])}).")
        if "jax" in fws:
            L.append(f"- HVP faster than JAX on every case: {'met' if t['hvp_faster_than_jax']['met'] else 'MISSED'} "
                     f"(smallest JAX ÷ gradc {w(t['hvp_faster_than_jax']['worst'], '{0:.2f} on {1}')}"
                     f"{ms(t['hvp_faster_than_jax'])}).")
        d = t["dense_faster_than_jax_and_torch"]
        L.append(f"- Dense Hessians and the Jacobian faster than JAX and PyTorch: {'met' if d['met'] else 'MISSED'} "
                 f"(smallest JAX ÷ gradc {w(d['worst_jax'], '{0:.2f} on {1}')}; "
                 f"smallest PyTorch ÷ gradc {w(d['worst_torch'], '{0:.2f} on {1}')}).")
        b = t["hessian_200_terms_cold_le_3s"]
        L.append(f"- Hessian of the 200-term unrolled expression, cold first call ≤ 3 s: "
                 f"{'met' if b['met'] else 'MISSED'} ({fmt_s(b['seconds']) or 'n/a'}).")
        L.append("")
    L.append(f"Problems: {len(s['problems'])}." if not s["problems"] else "## Problems\n")
    for p in s["problems"]:
        L.append(f"- {p['task']} {p['framework']} {p.get('variant', '')}: {p.get('status')} {str(p.get('reason'))[:200]}")
    return "\n".join(L)


# --------------------------------------------------------------------------- CLI

def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.derivatives", description=__doc__.split("\n\n")[0])
    p.add_argument("--kinds", help="comma-separated subset of hvp,hessian,jacobian")
    p.add_argument("--cases", help="comma-separated case names (default: all of each derivative's cases)")
    p.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all installed)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.05)
    p.add_argument("--timeout", type=float, default=600, help="seconds per worker process")
    p.add_argument("--max-memory-gb", type=float, default=8.0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--name", default="derivatives", help="file stem of the results (default 'derivatives')")
    p.add_argument("--list", action="store_true", help="list the (derivative, case) pairs and exit")
    p.add_argument("--render", metavar="JSON", help="re-render the Markdown of an earlier run's JSON and exit")
    o = p.parse_args(argv)
    o.argv = list(sys.argv[1:] if argv is None else argv)
    return o


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1:])
    o = parse(argv)
    if o.list:
        for kind, case in tasks():
            print(f"{kind:9} {case:20} {get_case(case).title}")
        return 0
    from benchmarks import run
    if o.render:
        return run.render(o.render, summarize, markdown)
    out = run_all(o)
    return run.write_results(out, o, markdown)


if __name__ == "__main__":
    sys.exit(main())
