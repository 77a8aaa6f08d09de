"""Distributed benchmarks (issue 14): ``python -m benchmarks.distributed``.

(a) **Full-data value+grad of the digits MLP** (``examples/mlp_digits.toml``, 64 -> 32 tanh -> 10,
mean cross-entropy) over scikit-learn's 1,797 digits augmented by the 9 one-pixel shifts
(dx, dy in {-1, 0, 1}, zero fill) and repeated to ``--rows`` rows (default 1,002,726 = 62 x 16,173),
written as ``--shards`` ``.npz`` shard files and loaded by the workers (persisted there). Timed:

* one process: ``mlp.value_and_grad(X, y, **params)`` over all rows in this process;
* ``gradc.distributed.Sharded.value_and_grad`` on a ``LocalCluster`` of 1 and of 2 worker
  processes, one thread each (the same shard files).

Every timing is the median of ``--steps`` steps after one warm-up step. Per step, Dask's task
stream gives each worker's compute time (the sum of its tasks' compute intervals: the shards'
value+grad and the additions of the reduction tree); the **overhead** is the step's wall time
minus the busiest worker's compute time (scheduling, the parameter scatter, moving the partial
gradients, the gather, and any time the busiest worker waited for the other one); "outside the
compute span" is the wall time minus the time from the first task's start to the last task's
end (the part before the first and after the last task only). A step on tiny shards (the same number of shards, 16 rows each) gives the
fixed latency alone.

(b) **Point-wise value+grad of the 200-term expression** (``benchmarks/cases.py``
``bigexpr_sympy(200)``, a function of x, y, z) at ``--points`` points (default 10**6, uniform in
[-1, 1]^3, a ``dask.array`` of 8 chunks generated and persisted on the workers), through
``gradc.distributed.pointwise`` on 1 and 2 workers, and the same jitted sweep in this process.
Best and all of ``--repeats`` runs after a warm-up on a small array.

Threads: OMP/OPENBLAS/MKL/NUMBA = 1 (set here before NumPy loads; the workers inherit them).
Results: ``benchmarks/results/distributed.md`` and ``.json``. The load average (1, 5, 15 min) is
recorded at the start, after each measurement and at the end: on a shared machine the
ratios are only as good as the cores the workers actually got.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
           "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
LOADS: list = []


def load(label: str) -> tuple:
    la = tuple(round(x, 2) for x in os.getloadavg())
    LOADS.append((label, la))
    print(f"  [load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}] {label}", flush=True)
    return la


def augmented_digits(rows: int):
    """The digits (scaled to [0, 1]) and their 8 one-pixel shifts, repeated to ``rows`` rows."""
    from sklearn.datasets import load_digits
    d = load_digits()
    img = (d.images / 16.0).astype(np.float64)
    variants, labels = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            s = np.zeros_like(img)
            ys, yd = (slice(0, 8 - dy), slice(dy, 8)) if dy >= 0 else (slice(-dy, 8), slice(0, 8 + dy))
            xs, xd = (slice(0, 8 - dx), slice(dx, 8)) if dx >= 0 else (slice(-dx, 8), slice(0, 8 + dx))
            s[:, yd, xd] = img[:, ys, xs]
            variants.append(s.reshape(len(img), 64))
            labels.append(d.target)
    X, y = np.concatenate(variants), np.concatenate(labels).astype(np.int64)
    reps = -(-rows // len(X))
    return np.tile(X, (reps, 1))[:rows].copy(), np.tile(y, reps)[:rows].copy()


def write_shards(X, y, k: int, folder: Path) -> list[str]:
    cuts = np.cumsum([0] + [len(X) // k + (i < len(X) % k) for i in range(k)])
    files = []
    for i in range(k):
        p = folder / f"shard{i}.npz"
        np.savez(p, X=X[cuts[i]:cuts[i + 1]], y=y[cuts[i]:cuts[i + 1]])
        files.append(str(p))
    return files


def new_cluster(n: int):
    import distributed
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", memory_limit=0)
    return cluster, distributed.Client(cluster)


def _cpu_seconds() -> float:
    """This process's CPU time (user + system), run on each worker by ``client.run``."""
    t = os.times()
    return t.user + t.system


def timed_steps(s, params, steps: int) -> dict:
    """Warm-up, then ``steps`` steps, each with its wall time and per-worker compute time."""
    from distributed import get_task_stream
    s.value_and_grad(params)
    walls, busy, span, cpu, value = [], [], [], [], None
    for _ in range(steps):
        c0 = s.client.run(_cpu_seconds)
        with get_task_stream(s.client) as ts:
            t0 = time.perf_counter()
            value, _ = s.value_and_grad(params)
            walls.append(time.perf_counter() - t0)
        c1 = s.client.run(_cpu_seconds)
        cpu.append(sum(c1[w] - c0[w] for w in c0 if w in c1))
        per, starts, stops = {}, [], []
        for task in ts.data:
            for ss in task.get("startstops", ()):
                if ss.get("action") == "compute":
                    per[task["worker"]] = per.get(task["worker"], 0.0) + ss["stop"] - ss["start"]
                    starts.append(ss["start"])
                    stops.append(ss["stop"])
        busy.append(max(per.values()) if per else float("nan"))
        span.append(max(stops) - min(starts) if starts else float("nan"))
    walls, busy, span, cpu = np.array(walls), np.array(busy), np.array(span), np.array(cpu)
    placement = {}
    for key, holders in s.client.who_has(s.shards).items():
        for h in holders:
            placement[h] = placement.get(h, 0) + 1
    return {"wall_s": float(np.median(walls)), "walls_s": walls.tolist(),
            "busiest_worker_compute_s": float(np.median(busy)), "compute_span_s": float(np.median(span)),
            "overhead_ms": float(np.median(walls - busy) * 1e3),
            "outside_compute_span_ms": float(np.median(walls - span) * 1e3),
            "shards_per_worker": sorted(placement.values(), reverse=True),
            "workers_cpu_s": float(np.median(cpu)), "cores_used": float(np.median(cpu / walls)),
            "value": float(value)}


def bench_mlp(args, out: dict) -> None:
    import gradc
    from gradc import distributed as gd
    print(f"(a) digits MLP value+grad over {args.rows:,} rows", flush=True)
    mlp = gradc.compile(str(ROOT / "examples" / "mlp_digits.toml"))
    params = mlp.init_params(seed=0)
    X, y = augmented_digits(args.rows)
    folder = Path(tempfile.mkdtemp(prefix="gradc-bench-dist-"))
    try:
        files = write_shards(X, y, args.shards, folder)
        res = {"rows": len(X), "shards": args.shards, "data_mb": round((X.nbytes + y.nbytes) / 1e6, 1),
               "n_params": int(sum(np.size(params[w]) for w in mlp.wrt))}
        mlp.value_and_grad(X[:100], y[:100], **params)
        walls, cpu = [], []
        for _ in range(args.steps + 1):
            c0, t0 = _cpu_seconds(), time.perf_counter()
            v1, _ = mlp.value_and_grad(X, y, **params)
            walls.append(time.perf_counter() - t0)
            cpu.append(_cpu_seconds() - c0)
        res["one_process"] = {"wall_s": float(np.median(walls[1:])), "walls_s": walls[1:], "value": float(v1),
                              "cpu_s": float(np.median(cpu[1:])),
                              "cores_used": float(np.median(np.array(cpu[1:]) / np.array(walls[1:])))}
        res["one_process"]["load"] = load("one process")
        print(f"  one process: {res['one_process']['wall_s']:.3f} s/step", flush=True)
        del X, y
        (folder / "tiny").mkdir()
        tiny_files = write_shards(*augmented_digits(16 * args.shards), args.shards, folder / "tiny")
        for n in (1, 2):
            cluster, client = new_cluster(n)
            try:
                with gd.Sharded(mlp, files, client=client, reduction="mean") as s:
                    r = timed_steps(s, params, args.steps)
                with gd.Sharded(mlp, tiny_files, client=client, reduction="mean") as t:
                    tiny = timed_steps(t, params, max(args.steps, 10))
                r["tiny_step_ms"] = tiny["wall_s"] * 1e3
                r["tiny_overhead_ms"] = tiny["overhead_ms"]
            finally:
                client.close()
                cluster.close()
            r["load"] = load(f"{n} worker(s)")
            r["rel_diff_value"] = abs(r["value"] - v1) / abs(v1)
            res[f"workers_{n}"] = r
            print(f"  {n} worker(s): {r['wall_s']:.3f} s/step, busiest worker computes {r['busiest_worker_compute_s']:.3f} s,"
                  f" overhead {r['overhead_ms']:.1f} ms; tiny step {r['tiny_step_ms']:.1f} ms", flush=True)
        one, w1, w2 = res["one_process"]["wall_s"], res["workers_1"]["wall_s"], res["workers_2"]["wall_s"]
        res["speedup_2_vs_1"] = w1 / w2
        res["speedup_2_vs_one_process"] = one / w2
        res["speedup_1_vs_one_process"] = one / w1
        out["mlp"] = res
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_pointwise(args, out: dict) -> None:
    import dask.array as da
    from distributed import wait as distributed_wait

    import gradc
    from gradc import distributed as gd
    from benchmarks.cases import bigexpr_sympy
    print(f"(b) 200-term expression, value+grad at {args.points:,} points", flush=True)
    expr, syms = bigexpr_sympy(200)
    t0 = time.perf_counter()
    f = gradc.compile(expr, args=syms)
    res = {"points": args.points, "compile_s": time.perf_counter() - t0}
    chunks = -(-args.points // 8)
    lazy = da.random.default_rng(0).uniform(-1.0, 1.0, (args.points, 3), chunks=(chunks, 3))
    P = lazy.compute(scheduler="sync")         # the same points the workers make from the same graph
    w = gd._worker_functions()
    ref = gd._module_ref(f)
    w.sweep(P[:10], ref, 3)
    walls, cpus, want = [], [], None
    for _ in range(args.repeats):
        c0, t0 = _cpu_seconds(), time.perf_counter()
        want = w.sweep(P, ref, 3)
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu_seconds() - c0)
    res["one_process"] = {"best_s": min(walls), "walls_s": walls, "cpu_s": cpus[walls.index(min(walls))],
                          "load": load("pointwise, one process")}
    print(f"  one process: {min(walls):.2f} s", flush=True)
    for n in (1, 2):
        cluster, client = new_cluster(n)
        try:
            pts = client.persist(lazy)
            distributed_wait(pts)
            client.compute(gd.pointwise(f, da.from_array(P[:64], chunks=(8, 3)), client=client)).result()
            walls, cpus, got = [], [], None
            for _ in range(args.repeats):
                c0 = client.run(_cpu_seconds)
                t0 = time.perf_counter()
                got = client.compute(gd.pointwise(f, pts, client=client)).result()
                walls.append(time.perf_counter() - t0)
                c1 = client.run(_cpu_seconds)
                cpus.append(sum(c1[k] - c0[k] for k in c0 if k in c1))
        finally:
            client.close()
            cluster.close()
        same = bool(np.array_equal(got, want))
        res[f"workers_{n}"] = {"best_s": min(walls), "walls_s": walls, "equal_to_one_process": same,
                               "cpu_s": cpus[walls.index(min(walls))],
                               "load": load(f"pointwise, {n} worker(s)")}
        print(f"  {n} worker(s): {min(walls):.2f} s (runs {', '.join(f'{x:.2f}' for x in walls)}; "
              f"equal to one process: {same})", flush=True)
    res["speedup_2_vs_1"] = res["workers_1"]["best_s"] / res["workers_2"]["best_s"]
    res["speedup_2_vs_one_process"] = res["one_process"]["best_s"] / res["workers_2"]["best_s"]
    out["pointwise"] = res


def _fmt_load(la) -> str:
    return " ".join(f"{x:.2f}" for x in la)


def _load_sentence(out: dict) -> str:
    """What the 1-min load average during the run says about the numbers: above the core count,
    other jobs took part of the cores the workers needed."""
    loads = [la[0] for _, la in out["loads"]]
    lo, hi, cores = min(loads), max(loads), out.get("cpus") or os.cpu_count()
    if hi <= cores:
        return (f"The machine was otherwise quiet: a 1-min load average of {lo:.1f} to {hi:.1f} on {cores} cores, "
                "the benchmark's own processes included.")
    return (f"**The machine is shared and was loaded during this run** (a 1-min load average of {lo:.1f} to "
            f"{hi:.1f} on {cores} cores, from other people's jobs): each single-threaded process got only part of a "
            "core, and the speed-ups below measure how much of the second core the second worker could get, as much "
            "as gradc.distributed.")


def write_md(out: dict, path: Path) -> None:
    m, p = out.get("mlp"), out.get("pointwise")
    L = ["# gradc distributed benchmarks (issue 14)", "",
         f"{out['date']}, git {out['git']}; `python -m benchmarks.distributed`; wall time {out['wall_min']:.1f} min.", "",
         f"Machine: {out['machine']}. Load average (1, 5, 15 min) at start / end: {_fmt_load(out['load_start'])} / "
         f"{_fmt_load(out['load_end'])}. " + _load_sentence(out), "",
         f"Versions: {out['versions']}. Threads: 1 per process (OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS=1); "
         "LocalCluster(processes=True, threads_per_worker=1).", ""]
    if m:
        L += ["## (a) Full-data value+grad of the digits MLP (64 → 32 tanh → 10, mean CE)", "",
              f"{m['rows']:,} rows (the digits and their 8 one-pixel shifts, repeated; {m['data_mb']} MB), "
              f"{m['n_params']:,} parameters, {m['shards']} `.npz` shards loaded by the workers; median of "
              f"{len(m['one_process']['walls_s'])} steps after a warm-up. Overhead = step wall time − the busiest "
              "worker's compute time (Dask task stream); outside the compute span = wall time − (last task's end − first "
              "task's start); tiny step = the same shards with 16 rows each; CPU s = the CPU time the worker processes "
              "(or this process) got during the step, and cores used = CPU s ÷ wall s: on an idle 2-core machine "
              "about 1 for 1 worker and 2 for 2 workers.", "",
              "| run | s / step | rows / s | × 1 worker | CPU s / step (cores used) | CPU s per 10⁶ rows | shards per worker "
              "| busiest worker computes | overhead / step | outside the compute span | tiny step | 1-min load after |",
              "|---|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|"]
        one = m["one_process"]
        L.append(f"| one process | {one['wall_s']:.3f} | {m['rows'] / one['wall_s']:,.0f} | "
                 f"{m['workers_1']['wall_s'] / one['wall_s']:.2f} | {one['cpu_s']:.3f} ({one['cores_used']:.2f}) | "
                 f"{one['cpu_s'] * 1e6 / m['rows']:.3f} | — | {one['wall_s']:.3f} s | — | — | — | {one['load'][0]:.2f} |")
        for n in (1, 2):
            r = m[f"workers_{n}"]
            L.append(f"| {n} worker{'s' if n > 1 else ''} | {r['wall_s']:.3f} | {m['rows'] / r['wall_s']:,.0f} | "
                     f"{m['workers_1']['wall_s'] / r['wall_s']:.2f} | {r['workers_cpu_s']:.3f} ({r['cores_used']:.2f}) | "
                     f"{r['workers_cpu_s'] * 1e6 / m['rows']:.3f} | {' + '.join(map(str, r['shards_per_worker']))} | "
                     f"{r['busiest_worker_compute_s']:.3f} s | "
                     f"{r['overhead_ms']:.1f} ms ({100 * r['overhead_ms'] / 1e3 / r['wall_s']:.1f} %) | "
                     f"{r['outside_compute_span_ms']:.1f} ms | "
                     f"{r['tiny_step_ms']:.1f} ms | {r['load'][0]:.2f} |")
        L += ["", f"Loss: one process {one['value']:.15g}; relative difference of the 1- and 2-worker losses "
              f"{m['workers_1']['rel_diff_value']:.1e}, {m['workers_2']['rel_diff_value']:.1e}.", "",
              f"**Target: 2 workers ≥ 1.6× the throughput of 1 worker — measured {m['speedup_2_vs_1']:.2f}× "
              f"({'met' if m['speedup_2_vs_1'] >= 1.6 else 'missed'})**; 2 workers ÷ one process "
              f"{m['speedup_2_vs_one_process']:.2f}×, 1 worker ÷ one process {m['speedup_1_vs_one_process']:.2f}×.", ""]
    if p:
        L += ["## (b) Point-wise value+grad of the 200-term expression", "",
              f"{p['points']:,} points in [-1, 1]³, 8 chunks persisted on the workers, the result (N × 4 float64) "
              f"gathered to the client; best of {len(p['one_process']['walls_s'])} runs after a warm-up "
              f"(compile {p['compile_s']:.1f} s).", "",
              "| run | best s | all runs s | points / s | × 1 worker | CPU s of the best run (cores used) "
              "| equal to one process | 1-min load after |",
              "|---|--:|---|--:|--:|--:|---|--:|"]
        for key, label in (("one_process", "one process"), ("workers_1", "1 worker"), ("workers_2", "2 workers")):
            r = p[key]
            L.append(f"| {label} | {r['best_s']:.2f} | {', '.join(f'{x:.2f}' for x in r['walls_s'])} | "
                     f"{p['points'] / r['best_s']:,.0f} | {p['workers_1']['best_s'] / r['best_s']:.2f} | "
                     f"{r['cpu_s']:.2f} ({r['cpu_s'] / r['best_s']:.2f}) | "
                     f"{'yes (bit for bit)' if r.get('equal_to_one_process', True) else 'NO'} | {r['load'][0]:.2f} |")
        L += ["", f"**Target: 2 workers ≥ 1.6× one — measured {p['speedup_2_vs_1']:.2f}× "
              f"({'met' if p['speedup_2_vs_1'] >= 1.6 else 'missed'})**; 2 workers ÷ one process "
              f"{p['speedup_2_vs_one_process']:.2f}×.", ""]
    L += ["## Load average during the run", "", "| after | 1 min | 5 min | 15 min |", "|---|--:|--:|--:|"]
    L += [f"| {label} | {la[0]:.2f} | {la[1]:.2f} | {la[2]:.2f} |" for label, la in out["loads"]]
    if out.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in out["notes"]]
    path.write_text("\n".join(L) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=62 * 16173)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--points", type=int, default=10 ** 6)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", choices=("mlp", "pointwise"))
    ap.add_argument("--out", default=str(RESULTS / "distributed"), help="results path without extension")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    import dask
    import distributed
    import numba
    import gradc
    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True).stdout.strip()
    except OSError:
        git = "?"
    out = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "git": git,
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                      f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30:.1f} GiB, {platform.platform()}",
           "versions": f"python {platform.python_version()}, gradc {getattr(gradc, '__version__', '?')}, numpy "
                       f"{np.__version__}, numba {numba.__version__}, dask {dask.__version__}, distributed "
                       f"{distributed.__version__}",
           "load_start": load("start")}
    if args.only in (None, "mlp"):
        bench_mlp(args, out)
    if args.only in (None, "pointwise"):
        bench_pointwise(args, out)
    out["load_end"] = load("end")
    out["wall_min"] = (time.perf_counter() - t_start) / 60
    out["loads"] = LOADS
    base = Path(args.out)
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".json").write_text(json.dumps(out, indent=1), encoding="utf-8")
    write_md(out, base.with_suffix(".md"))
    print(f"wrote {base.with_suffix('.md')} and .json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
