"""The benchmark runner: ``python -m benchmarks`` (or ``python benchmarks/run.py``).

For every case (``benchmarks/cases.py``) and every installed framework it
starts one fresh subprocess (``python -m benchmarks.worker FRAMEWORK CASE``)
that builds the framework's version of the case, times the first call, checks
the gradient against the case's float64 NumPy reference and (unless it is a
cold-compile run) times value_and_grad and forward: the median over repeated
timing loops after warm-up. gradc runs twice per case: cold (a fresh
``GRADC_CACHE_DIR`` and ``NUMBA_CACHE_DIR``, fresh process) and warm (a second
process, same caches); it is timed both bare (``f.raw``) and through the public
API (``f.value_and_grad(...)``).

Threads are pinned to 1 by default (``OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS``,
``XLA_FLAGS``, ``torch.set_num_threads``); ``--threads N`` changes that. The
machine, versions and thread settings are printed with the results, which go
to ``--out`` as Markdown and JSON.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata as md
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):   # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import cases as cases_mod  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = ["gradc", "numpy", "numba", "jax", "torch", "sympy"]
LABELS = {"gradc": "gradc", "numpy": "NumPy (hand)", "numba": "Numba fused (hand)", "jax": "JAX jit",
          "torch": "PyTorch eager", "sympy": "SymPy→lambdify→njit"}
NEEDS = {"gradc": ["numba", "sympy"], "numpy": ["numpy"], "numba": ["numba"], "jax": ["jax", "jaxlib"],
         "torch": ["torch"], "sympy": ["sympy", "numba"]}
DISTS = ["gradc", "numpy", "numba", "llvmlite", "sympy", "scipy", "jinja2", "jax", "jaxlib", "torch",
         "scikit-learn", "threadpoolctl"]
SCALING_FRAMEWORKS = ("gradc", "sympy", "jax")


# --------------------------------------------------------------------------- environment

def thread_env(threads: int) -> dict:
    env = {k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                     "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS")}
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    else:
        env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}"
    return env


def child_env(threads: int, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update(thread_env(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["JAX_PLATFORMS"] = "cpu"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONHASHSEED"] = "0"
    env.update(extra or {})
    return env


def frameworks_to_run(requested: str | None, known: list[str]) -> tuple[list[str], list[str], list[str]]:
    """``(wanted, run, missing)`` of ``--frameworks`` (comma-separated; None: all ``known``): those
    installed are run, the others reported missing. An unknown name exits with a message."""
    wanted = [f.strip() for f in requested.split(",")] if requested else list(known)
    unknown = [f for f in wanted if f not in known]
    if unknown:
        raise SystemExit(f"unknown framework(s): {', '.join(unknown)}; known: {', '.join(known)}")
    avail = {f: installed(f) for f in wanted}
    return wanted, [f for f in wanted if avail[f]], [f for f in wanted if not avail[f]]


def write_results(out: dict, o, markdown) -> int:
    """Write ``out`` as ``<o.out>/<o.name>.json`` and its ``markdown(out)`` as ``.md``, and print the
    Markdown (the end of each benchmark's ``main``)."""
    md_text = markdown(out)
    dest = Path(o.out)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{o.name}.json").write_text(json.dumps(out, indent=1, default=str) + "\n", encoding="utf-8")
    (dest / f"{o.name}.md").write_text(md_text + "\n", encoding="utf-8")
    print(md_text)
    print(f"\nwrote {dest / (o.name + '.md')} and {dest / (o.name + '.json')}", file=sys.stderr)
    return 0


def render(path: str, summarize, markdown) -> int:
    """``--render JSON``: print the Markdown of an earlier run's results again."""
    out = json.loads(Path(path).read_text(encoding="utf-8"))
    out["summary"] = summarize(out)
    print(markdown(out))
    return 0


def installed(fw: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in NEEDS[fw])


def versions() -> dict:
    out = {"python": platform.python_version()}
    for d in DISTS:
        try:
            out[d] = md.version(d)
        except md.PackageNotFoundError:
            pass
    return out


def machine() -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    if not info.get("cpu"):
        info["cpu"] = platform.processor() or "unknown"
    return info


def git_commit() -> str | None:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "") if rev else None
    except (OSError, subprocess.SubprocessError):
        return None


# --------------------------------------------------------------------------- jobs

def _rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children (Linux /proc; 0 where unavailable)."""
    total = 0
    try:
        pids = [pid] + [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def run_job(argv: list[str], env: dict, timeout: float, max_rss: float = 8 * 2 ** 30,
            module: str = "benchmarks.worker") -> dict:
    """Runs one worker; returns its JSON, or a status "timeout"/"memory"/"error" record.

    The worker is killed (its own process group) when it runs past ``timeout`` seconds or its
    resident memory passes ``max_rss`` bytes: the machine is shared, and an unrolled 3,200-term
    expression can make a compiler take all of it. ``module``: the worker's module
    (``benchmarks.derivatives`` for the derivative benchmarks).
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        proc = subprocess.Popen([sys.executable, "-m", module, *argv], cwd=ROOT, env=env,
                                stdout=fout, stderr=ferr, text=True, start_new_session=True)
        killed, peak = None, 0
        while proc.poll() is None:
            try:
                proc.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                pass
            peak = max(peak, _rss_bytes(proc.pid))
            if time.perf_counter() - t0 > timeout:
                killed = {"status": "timeout", "reason": f"no result within {timeout:.0f} s"}
            elif peak > max_rss:
                killed = {"status": "memory", "reason": f"resident memory passed {max_rss / 2 ** 30:.1f} GiB"}
            if killed:
                os.killpg(proc.pid, signal.SIGKILL)   # the worker's own process group, started above
                proc.wait()
                break
        wall = time.perf_counter() - t0
        if killed:
            return {**killed, "wall_s": wall, "peak_rss_bytes": peak}
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(err.strip().splitlines()[-8:])
        return {"status": "error", "reason": f"worker exited with {proc.returncode}: {tail}", "wall_s": wall}
    res = json.loads(lines[-1])
    res["wall_s"] = wall
    res["peak_rss_bytes"] = peak
    return res


class Runner:
    def __init__(self, opts):
        self.o = opts
        coretype = getattr(opts, "openblas_coretype", None)
        self.env = child_env(opts.threads, {"OPENBLAS_CORETYPE": coretype} if coretype else None)
        self.n_done = 0
        self.n_total = 0

    def common(self):
        return ["--repeats", str(self.o.repeats), "--min-time", str(self.o.min_time), "--threads",
                str(self.o.threads)]

    def job(self, label: str, argv: list[str], extra_env: dict | None = None, timeout: float | None = None):
        self.n_done += 1
        print(f"[{self.n_done:>3}/{self.n_total}] {label} ...", end="", file=sys.stderr, flush=True)
        env = self.env if not extra_env else {**self.env, **extra_env}
        res = run_job(argv, env, timeout or self.o.timeout, self.o.max_memory_gb * 2 ** 30)
        status = res.get("status")
        mark = ""
        if status == "ok" and "check" in res and not res["check"]["ok"]:
            mark = " GRADIENT MISMATCH"
        print(f" {status} ({res.get('wall_s', 0):.1f} s){mark}"
              + (f": {res.get('reason', '')[:120]}" if status != "ok" else ""), file=sys.stderr, flush=True)
        return res


def plan(cases, frameworks):
    jobs = 0
    for c in cases:
        fws = [f for f in frameworks if c.group != "scaling" or f in SCALING_FRAMEWORKS]
        jobs += 1 + sum(2 if f == "gradc" else 1 for f in fws)
    return jobs


def run_all(opts) -> dict:
    selected = cases_mod.select(opts.cases, quick=opts.quick, scaling=not opts.no_scaling)
    selected.sort(key=lambda c: c.group == "scaling")   # the long compile series last
    wanted, frameworks, missing = frameworks_to_run(opts.frameworks, FRAMEWORKS)
    r = Runner(opts)
    r.n_total = plan(selected, frameworks) + (0 if opts.no_gemm else 1)
    started = _dt.datetime.now(_dt.timezone.utc)
    meta = {
        "date": started.isoformat(timespec="seconds"), "command": " ".join(["python -m benchmarks", *opts.argv]),
        "git": git_commit(), "machine": machine(), "versions": versions(),
        "threads": opts.threads, "thread_env": thread_env(opts.threads),
        "openblas_coretype": getattr(opts, "openblas_coretype", None) or os.environ.get("OPENBLAS_CORETYPE"),
        "repeats": opts.repeats, "min_time_s": opts.min_time, "quick": opts.quick, "timeout_s": opts.timeout,
        "scaling_timeout_s": opts.scaling_timeout, "max_memory_gb": opts.max_memory_gb,
        "frameworks_requested": wanted, "frameworks_run": frameworks,
        "frameworks_missing": missing,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gradient_tolerance": 1e-9,
    }
    out = {"meta": meta, "gemm": None, "cases": {}}
    if not opts.no_gemm:
        n = 512 if opts.quick else 1024
        out["gemm"] = r.job(f"gemm {n}x{n} float64", ["gemm", str(n), *r.common()])

    for c in selected:
        entry = {"title": c.title, "group": c.group, "kind": c.kind, "params": c.params, "note": c.note,
                 "wrt": list(c.wrt), "results": {}}
        if c.layers:
            fwd_flops, vg_flops = c.matmul_flops()
            entry["matmul_flops"] = {"forward": fwd_flops, "value_and_grad": vg_flops}
        entry["reference"] = r.job(f"{c.name}: reference check", ["reference", c.name])
        scaling = c.group == "scaling"
        long = opts.scaling_timeout if scaling else None
        for fw in frameworks:
            if scaling and fw not in SCALING_FRAMEWORKS:
                continue
            if fw == "gradc":
                cache = tempfile.mkdtemp(prefix="gradc-bench-cache-")
                try:
                    env = {"GRADC_CACHE_DIR": cache, "NUMBA_CACHE_DIR": os.path.join(cache, "numba")}
                    cold = r.job(f"{c.name}: gradc cold", ["gradc", c.name, "--mode", "cold", *r.common()],
                                 env, long)
                    entry["results"]["gradc_cold"] = cold
                    if cold.get("status") == "ok":
                        entry["results"]["gradc"] = r.job(f"{c.name}: gradc warm",
                                                          ["gradc", c.name, "--mode", "warm", *r.common()], env,
                                                          long)
                    else:
                        r.n_done += 1
                        entry["results"]["gradc"] = (dict(cold) if cold.get("status") == "n/a" else
                                                     {"status": "skipped", "reason": "the cold run failed"})
                finally:
                    shutil.rmtree(cache, ignore_errors=True)
            else:
                mode = "cold" if scaling else "full"
                entry["results"][fw] = r.job(f"{c.name}: {fw}", [fw, c.name, "--mode", mode, *r.common()],
                                             None, long)
        out["cases"][c.name] = entry
    meta["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    meta["wall_s"] = (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds()
    out["summary"] = summarize(out)
    return out


# --------------------------------------------------------------------------- summary and Markdown

def _t(res, key="vg"):
    if res and res.get("status") == "ok" and key in res:
        return res[key]["median"]
    return None


def _ok(res):
    return res is not None and res.get("status") == "ok" and res.get("check", {}).get("ok", False)


def _x(res, key):
    """Median seconds per call of an extra variant (gradc's ``vg_public``, ``vg_public_kw``, ``vg_into``)."""
    m = ((res or {}).get("extra") or {}).get(key) if (res or {}).get("status") == "ok" else None
    return m["median"] if m else None


def _compile_total(res) -> str:
    """gradc's compile time as issue 10 counts it: gradc.compile + first value_and_grad + first forward."""
    if not _ok(res) or res.get("first_forward_s") is None:
        return _fc(res) if not _ok(res) else ""
    return fmt_s(res["first_call_s"] + res["first_forward_s"])


def geomean(xs):
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def summarize(out) -> dict:
    """Mismatches, n/a list, gradc's ratios to the peers and the matmul-bound cases' share of GEMM."""
    mism, na, errors = [], [], []
    ratios = {fw: {} for fw in FRAMEWORKS if fw != "gradc"}
    public = {}                  # gradc through its public API: ÷ raw, and JAX jit ÷ it
    cost = {}
    gemm_rate = out["gemm"]["gflops"] if out.get("gemm") and out["gemm"].get("status") == "ok" else None
    gemm_share = {}
    for name, e in out["cases"].items():
        ref = e.get("reference", {})
        if ref.get("status") != "ok" or not ref.get("ok"):
            mism.append({"case": name, "framework": "reference", "detail": ref})
        for fw, res in e["results"].items():
            st = res.get("status")
            if st == "n/a":
                if fw != "gradc_cold":
                    na.append({"case": name, "framework": fw, "reason": res.get("reason")})
            elif st not in ("ok", "skipped"):
                errors.append({"case": name, "framework": fw, "status": st, "reason": res.get("reason")})
            elif st == "ok" and (not res["check"]["ok"] or not res.get("forward_check", {"ok": True})["ok"]):
                mism.append({"case": name, "framework": fw, "max_rel_err": res["check"]["max_rel_err"],
                             "errors": res["check"]["errors"]})
            for key, m in ((res.get("extra") or {}).items() if st == "ok" else ()):
                if not m.get("check", {"ok": True})["ok"]:
                    mism.append({"case": name, "framework": f"{fw} {key}", "max_rel_err": m["check"]["max_rel_err"],
                                 "errors": m["check"]["errors"]})
        g = e["results"].get("gradc")
        if e["group"] == "main":
            for fw in ratios:
                tg, tp = _t(g), _t(e["results"].get(fw))
                if tg and tp:
                    ratios[fw][name] = tg / tp
            if _t(g) and _x(g, "vg_public"):
                public[name] = {"public_over_raw": _x(g, "vg_public") / _t(g),
                                "keywords_over_raw": _x(g, "vg_public_kw") / _t(g) if _x(g, "vg_public_kw") else None,
                                "jax_over_public": (_t(e["results"].get("jax")) / _x(g, "vg_public")
                                                    if _t(e["results"].get("jax")) else None)}
            cost[name] = {fw: (_t(res) / _t(res, "fwd")) for fw, res in e["results"].items()
                          if fw != "gradc_cold" and _t(res) and _t(res, "fwd")}
        if gemm_rate and e.get("matmul_flops"):
            fl = e["matmul_flops"]["value_and_grad"]
            gemm_share[name] = {fw: fl / _t(res) / 1e9 / gemm_rate for fw, res in e["results"].items()
                                if fw != "gradc_cold" and _t(res)}
    return {"mismatches": mism, "not_applicable": na, "errors": errors,
            "gradc_time_ratio": {fw: {"per_case": v, "geomean": geomean(v.values())} for fw, v in ratios.items()},
            "cost_ratio": cost, "gemm_gflops": gemm_rate, "gemm_share": gemm_share,
            "public_api": {"per_case": public,
                           "geomean_public_over_raw": geomean(d["public_over_raw"] for d in public.values())}}


def fmt_time(s) -> str:
    if s is None:
        return ""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if s >= scale or unit == "ns":
            v = s / scale
            return f"{v:.3g} {unit}" if v < 1000 else f"{v:.0f} {unit}"
    return f"{s:.3g} s"


def fmt_s(s) -> str:
    if s is None:
        return ""
    return fmt_time(s) if s < 0.1 else (f"{s:.2f} s" if s < 100 else f"{s:.0f} s")


def cell(res, key="vg", value=None):
    """One table cell: a time (or ``value``), or why there is none."""
    if res is None:
        return "—"
    st = res.get("status")
    if st == "n/a":
        return "n/a"
    if st == "timeout":
        return "timeout"
    if st == "skipped":
        return "—"
    if st == "memory":
        return "out of memory"
    if st != "ok":
        return "error"
    text = value if value is not None else fmt_time(_t(res, key))
    if not text:
        return "—"
    if not res["check"]["ok"] or (key == "fwd" and not res.get("forward_check", {"ok": True})["ok"]):
        text += " ✗"
    return text


def table(header, rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def markdown(out) -> str:
    m, s = out["meta"], out["summary"]
    fws = m["frameworks_run"]
    main = {k: v for k, v in out["cases"].items() if v["group"] == "main"}
    scal = {k: v for k, v in out["cases"].items() if v["group"] == "scaling"}
    L = ["# gradc benchmarks", ""]
    mc = m["machine"]
    L.append(f"{m['date']}, git {m['git']}; `{m['command']}`; wall time {m.get('wall_s', 0) / 60:.1f} min.")
    L.append("")
    L.append(f"Machine: {mc.get('cpu')}, {mc.get('cpus')} CPUs ({mc.get('cpus_usable', '?')} usable), "
             f"{mc.get('memory_gib', '?')} GiB, {mc['platform']}. Load average at start / end: "
             f"{_la(m.get('loadavg_start'))} / {_la(m.get('loadavg_end'))}.")
    L.append("")
    L.append("Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".")
    L.append("")
    eff = _effective_threads(out)
    L.append(f"Threads: {m['threads']} (" + ", ".join(f"{k}={v}" for k, v in m["thread_env"].items())
             + (f"; torch.set_num_threads({m['threads']})" if "torch" in fws else "") + ")."
             + (f" Effective, as reported by the workers: {eff}." if eff else "")
             + (f" OPENBLAS_CORETYPE={m['openblas_coretype']}." if m.get("openblas_coretype") else ""))
    L.append("")
    L.append(f"Timing: one fresh process per framework and case; median of {m['repeats']} timing loops "
             f"(each ≥ {m['min_time_s'] * 1e3:.0f} ms, after ≥ {m['min_time_s'] * 1e3:.0f} ms of warm-up); "
             f"gradients checked against a float64 NumPy reference (itself checked by central differences "
             f"and, for the lecture-note seeds, their worked values), ✗ = max relative error > "
             f"{m['gradient_tolerance']:g}.")
    for note in m.get("notes", []):
        L.append(f"Note: {note}")
    if m["frameworks_missing"]:
        L.append(f"Not installed (skipped): {', '.join(m['frameworks_missing'])}.")
    g = out.get("gemm")
    if g and g.get("status") == "ok":
        kernels = ", ".join((g.get("threads") or {}).get("blas_kernels") or [])
        L += ["", f"**Single-process GEMM rate** (NumPy `matmul`, float64, {g['n']}×{g['n']}, "
                  f"{m['threads']} thread(s)): **{g['gflops']:.1f} GFLOP/s** (median; best {g['gflops_best']:.1f})"
                  + (f"; BLAS kernels {kernels}." if kernels else ".")]
    L.append("")

    if main:
        cols = [LABELS[f] for f in fws]
        pub = s.get("public_api", {}).get("per_case", {})
        L += ["## value_and_grad, median time per call", ""]
        if "gradc" in fws:
            L.append("gradc raw: the bare Numba dispatcher `f.raw.value_and_grad` (what the other tables time); "
                     "public API: `f.value_and_grad(*args)` with `f = gradc.compile(...)`, same process.")
            L.append("")
        hdr = ["case"] + [c for f in fws for c in (["gradc raw", "gradc public API"] if f == "gradc" else
                                                    [LABELS[f]])]
        hdr += (["gradc ÷ Numba"] if "numba" in fws and "gradc" in fws else []) + \
            (["public ÷ raw"] if "gradc" in fws else [])
        rows = []
        for k, e in main.items():
            row = [e["title"]]
            for f in fws:
                row.append(cell(e["results"].get(f)))
                if f == "gradc":
                    g = e["results"].get(f)
                    row.append(cell(g, value=fmt_time(_x(g, "vg_public"))))
            if "numba" in fws and "gradc" in fws:
                v = s["gradc_time_ratio"]["numba"]["per_case"].get(k)
                row.append(f"{v:.2f}" if v else "")
            if "gradc" in fws:
                row.append(f"{pub[k]['public_over_raw']:.2f}" if k in pub else "")
            rows.append(row)
        L += table(hdr, rows) + [""]
        if s.get("public_api", {}).get("geomean_public_over_raw"):
            L.append(f"gradc public API ÷ raw, geometric mean: {s['public_api']['geomean_public_over_raw']:.2f}.")
            L.append("")
        gm = {fw: d["geomean"] for fw, d in s["gradc_time_ratio"].items() if d["geomean"]}
        if gm:
            L.append("gradc's time ÷ the peer's, geometric mean over the cases both ran: "
                     + ", ".join(f"{LABELS[f]} {v:.2f}" for f, v in gm.items()) + ".")
            L.append("")
        L += ["## forward only, median time per call", ""]
        L += table(["case"] + cols, [[e["title"]] + [cell(e["results"].get(f), "fwd") for f in fws]
                                     for e in main.values()]) + [""]
        L += ["## cost(value_and_grad) ÷ cost(forward)", ""]
        rows = []
        for k, e in main.items():
            cr = s["cost_ratio"].get(k, {})
            rows.append([e["title"]] + [cell(e["results"].get(f), value=f"{cr[f]:.2f}") if f in cr
                                        else cell(e["results"].get(f), value="") for f in fws])
        L += table(["case"] + cols, rows) + [""]
        into = {k: e for k, e in main.items() if _ok(e["results"].get("gradc"))
                and "vg_into" in (e["results"]["gradc"].get("extra") or {})}
        if into:
            L += ["## gradc with output buffers (`value_and_grad_into`)", ""]
            L.append("The gradients written into preallocated arrays (what a training loop can call: "
                     "`value_and_grad(..., out=grads)`, or `raw.value_and_grad_into`), beside the allocating "
                     "`value_and_grad` of the tables above; same process.")
            L.append("")
            rows = []
            for k, e in into.items():
                r_ = e["results"]["gradc"]
                t_in, t_vg, t_f = r_["extra"]["vg_into"]["median"], _t(r_), _t(r_, "fwd")
                rows.append([e["title"], fmt_time(t_vg), fmt_time(t_in), fmt_time(t_f),
                             f"{t_in / t_f:.2f}" if t_f else ""])
            L += table(["case", "value_and_grad", "value_and_grad_into", "forward", "into ÷ forward"], rows) + [""]
        if pub:
            L += ["## gradc through the public API", ""]
            L.append("`f.value_and_grad(*args)` and `f.value_and_grad(**kwargs)` (`f = gradc.compile(...)`, "
                     "checked arguments) against the bare `f.raw.value_and_grad`, same process; and JAX jit's "
                     "time ÷ gradc's public-API time.")
            L.append("")
            rows = []
            for k, d in pub.items():
                g = main[k]["results"]["gradc"]
                ratio = (lambda v: f"{v:.2f}" if v else "")
                rows.append([main[k]["title"], fmt_time(_t(g)), cell(g, value=fmt_time(_x(g, "vg_public"))),
                             cell(g, value=fmt_time(_x(g, "vg_public_kw"))), ratio(d["public_over_raw"]),
                             ratio(d["keywords_over_raw"]), ratio(d["jax_over_public"])])
            L += table(["case", "raw", "public", "public, keywords", "public ÷ raw", "keywords ÷ raw",
                        "JAX jit ÷ public"], rows) + [""]
        L += ["## first call: build + first value_and_grad (imports excluded)", ""]
        L.append("gradc cold: `gradc.compile` into an empty `GRADC_CACHE_DIR` (and `NUMBA_CACHE_DIR`) in a fresh "
                 "process, then the first call (Numba JIT); `+ first forward`: that plus the first `forward` "
                 "call (gradc's compile time as issue 10 counts it); warm: a second process with the same caches "
                 "(Numba loads the machine code). Others: trace/JIT/compile + first call in a fresh process.")
        L.append("")
        fc_cols = (["gradc cold", "(of which codegen)", "gradc cold + first forward", "gradc warm"]
                   if "gradc" in fws else []) + [LABELS[f] for f in fws if f != "gradc"]
        rows = []
        for e in main.values():
            row = []
            if "gradc" in fws:
                gc_, gw = e["results"].get("gradc_cold"), e["results"].get("gradc")
                row += [_fc(gc_), fmt_s((gc_ or {}).get("info", {}).get("codegen_s")) if _ok(gc_) else "",
                        _compile_total(gc_), _fc(gw)]
            row += [_fc(e["results"].get(f)) for f in fws if f != "gradc"]
            rows.append([e["title"]] + row)
        L += table(["case"] + fc_cols, rows) + [""]

    share = s.get("gemm_share")
    if share and s.get("gemm_gflops"):
        L += ["## matmul-bound cases vs the GEMM rate", ""]
        L.append(f"Matmul flops of one value_and_grad (forward 2·B·in·out per layer; backward the same for dW "
                 f"and again for dX of every layer but the first) ÷ time, as a share of "
                 f"{s['gemm_gflops']:.1f} GFLOP/s.")
        L.append("")
        rows = []
        for k, d in share.items():
            e = out["cases"][k]
            fl = e["matmul_flops"]["value_and_grad"]
            rows.append([e["title"], f"{fl / 1e6:.1f}"] + [f"{d[f] * 100:.0f} %" if f in d else cell(
                e["results"].get(f), value="") for f in fws])
        L += table(["case", "MFLOP / call"] + [LABELS[f] for f in fws], rows) + [""]

    if scal:
        L += ["## compile-time scaling: Σ_k sin(a_k x + b_k y)·exp(−c_k z²) + tanh(xy − k/100), unrolled", ""]
        L.append("Two series of coefficients: full precision (a, b ~ U(−1, 1), c ~ U(0.1, 1)) and rounded to "
                 "3 decimals (a ~ U(0.5, 2), b ~ U(−1.5, 1.5), c ~ U(0.1, 1), `default_rng(7)`: values repeat). "
                 "First value_and_grad call in a fresh process (the peers' forward not compiled). gradc: codegen "
                 "(SymPy → IR → AD → Python) + Numba JIT; `+ fwd`: and the first forward call; SymPy: `diff` + "
                 "`lambdify(cse=True)` + Numba JIT; JAX: tracing a Python loop of scalar ops + XLA compile.")
        L.append("")
        hdr = ["coefficients", "terms", "SymPy ops", "gradc codegen", "gradc cold", "gradc cold + fwd", "gradc warm",
               "gradc v+g/call"]
        if "sympy" in fws:
            hdr += ["SymPy diff+lambdify", "SymPy→njit first call"]
        if "jax" in fws:
            hdr += ["JAX jit (unrolled) first call"]
        rows = []
        for k, e in scal.items():
            gc_, gw = e["results"].get("gradc_cold"), e["results"].get("gradc")
            ops = (gc_ or {}).get("info", {}).get("sympy_ops")
            row = [{"rounded": "rounded"}.get(e["params"].get("coef"), "full"), str(e["params"]["K"]), str(ops or ""),
                   fmt_s((gc_ or {}).get("info", {}).get("codegen_s")) if _ok(gc_) else "", _fc(gc_),
                   _compile_total(gc_), _fc(gw), cell(gw)]
            if "sympy" in fws:
                sy = e["results"].get("sympy")
                row += [fmt_s((sy or {}).get("info", {}).get("diff_lambdify_s")) if _ok(sy) else "", _fc(sy)]
            if "jax" in fws:
                row += [_fc(e["results"].get("jax"))]
            rows.append(row)
        L += table(hdr, rows) + [""]

    L += ["## gradient check", ""]
    L.append("Max relative error (max |g − g_ref| ÷ max |g_ref| over the value and each gradient) against "
             "the NumPy reference; `ref. FD` is the reference's own central-difference check.")
    L.append("")
    rows = []
    for e in out["cases"].values():
        ref = e.get("reference", {})
        rc = (f"{ref['fd_max']:.1e}" + ("" if ref.get("ok") else " ✗")) if ref.get("status") == "ok" else "error"
        row = [e["title"], rc]
        for f in fws:
            res = e["results"].get(f)
            if res and res.get("status") == "ok":
                row.append(f"{res['check']['max_rel_err']:.1e}" + ("" if res["check"]["ok"] else " ✗"))
            else:
                row.append(cell(res))
        rows.append(row)
    L += table(["case", "ref. FD"] + [LABELS[f] for f in fws], rows) + [""]
    L.append(f"Mismatches: {len(s['mismatches'])}"
             + ("" if not s["mismatches"] else ": " + "; ".join(f"{x['framework']} on {x['case']}"
                                                                for x in s["mismatches"])) + ".")
    L.append("")
    if s["not_applicable"] or s["errors"]:
        L += ["## n/a and errors", ""]
        groups: dict = {}
        for x in s["not_applicable"]:
            groups.setdefault((x["framework"], x["reason"]), []).append(x["case"])
        for (fw, reason), names in groups.items():
            L.append(f"* n/a: {LABELS.get(fw, fw)} on {', '.join(f'`{n}`' for n in names)}: {reason}")
        for x in s["errors"]:
            L.append(f"* {x['status']}: {x['framework']} on `{x['case']}`: {(x['reason'] or '')[:300]}")
        L.append("")
    return "\n".join(L)


def _fc(res) -> str:
    if res is None:
        return "—"
    st = res.get("status")
    if st != "ok":
        return {"n/a": "n/a", "timeout": f"> {res.get('wall_s', 0):.0f} s", "skipped": "—",
                "memory": "out of memory"}.get(st, "error")
    return fmt_s(res.get("first_call_s")) + ("" if res["check"]["ok"] else " ✗")


def _la(v):
    return "?" if not v else " ".join(f"{x:.1f}" for x in v)


def _effective_threads(out) -> str:
    seen = {}
    for e in out["cases"].values():
        for fw, res in e["results"].items():
            th = (res or {}).get("threads") or {}
            for k in ("threadpools", "blas_kernels", "numba_threads", "torch_threads", "torch_interop_threads"):
                if k in th:
                    v = ",".join(th[k]) if isinstance(th[k], list) else th[k]
                    seen.setdefault(k, set()).add(str(v))
    return "; ".join(f"{k} {'/'.join(sorted(v))}" for k, v in seen.items())


# --------------------------------------------------------------------------- CLI

def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small cases only, 3 repeats of >= 5 ms: a smoke test, not a measurement")
    p.add_argument("--threads", type=int, default=1, help="threads for every framework (default 1)")
    p.add_argument("--cases", help="comma-separated case names or fnmatch patterns (see --list)")
    p.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all installed)")
    p.add_argument("--repeats", type=int, help="timing loops per measurement (default 7; --quick 3)")
    p.add_argument("--min-time", type=float, help="seconds per timing loop (default 0.05; --quick 0.005)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per worker process (default 600)")
    p.add_argument("--scaling-timeout", type=float, default=600,
                   help="seconds per worker process of the compile-scaling series (default 600)")
    p.add_argument("--max-memory-gb", type=float, default=8.0,
                   help="kill a worker whose resident memory passes this (default 8 GiB)")
    p.add_argument("--no-scaling", action="store_true", help="skip the compile-time scaling series")
    p.add_argument("--no-gemm", action="store_true", help="skip the GEMM-rate measurement")
    p.add_argument("--openblas-coretype", metavar="NAME",
                   help="set OPENBLAS_CORETYPE=NAME for every worker (e.g. SkylakeX, Haswell, Zen): which "
                        "kernels the OpenBLAS bundled with NumPy/SciPy runs; default: its own CPU detection "
                        "(the kernels each worker used are printed with the results)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                   help="folder for the results (default benchmarks/results)")
    p.add_argument("--name", help="file stem of the results (default 'latest', or 'quick' with --quick)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--derivatives", action="store_true",
                   help="run the derivative benchmarks instead (HVP, Hessian, Jacobian vs JAX and PyTorch: "
                        "benchmarks/derivatives.py, whose options follow; see python -m benchmarks.derivatives -h)")
    p.add_argument("--render", metavar="JSON", help="re-render the Markdown of an earlier run's JSON and exit")
    o = p.parse_args(argv)
    o.argv = list(sys.argv[1:] if argv is None else argv)
    if o.repeats is None:
        o.repeats = 3 if o.quick else 7
    if o.min_time is None:
        o.min_time = 0.005 if o.quick else 0.05
    if o.name is None:
        o.name = "quick" if o.quick else "latest"
    if o.threads < 1:
        p.error("--threads must be >= 1")
    return o


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--derivatives" in argv:   # python -m benchmarks --derivatives [options of benchmarks.derivatives]
        from benchmarks import derivatives
        return derivatives.main([a for a in argv if a != "--derivatives"])
    o = parse(argv)
    if o.list:
        for c in cases_mod.CASES.values():
            print(f"{c.name:20} {c.group:8} {'quick ' if c.quick else '      '}{c.title}")
        return 0
    if o.render:
        return render(o.render, summarize, markdown)
    return write_results(run_all(o), o, markdown)


if __name__ == "__main__":
    sys.exit(main())
