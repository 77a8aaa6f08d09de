"""Lowering scale: ``python -m benchmarks.lowering`` prints a Markdown table.

The expression is an unrolled least-squares fit over n numeric data points
(x_j, y_j), one SymPy ``Add`` of n squares in the arguments a..e,

    Σ_j (y_j − m(x_j))²,  m(x) = (a x³ + b x² + c x + d)·exp(−e x) + sin(a x + b)·cos(c x − d) / (1 + e² x²),

about 45 SymPy nodes a term (250 points ≈ 11k nodes). For each size it times
the stages of :func:`gradc.pipeline.build` (the SymPy frontend's lowering; verify,
the passes and reverse-mode AD; rendering the module; best of ``--repeats``) and,
in a fresh process with an empty Numba cache, the first call of the generated
``value_and_grad`` (Numba's compile), stopped after ``--numba-timeout`` seconds.

Options: ``--points 22,88,250,352`` (the default: about 1k, 4k, 11k and 16k nodes),
``--repeats 3``, ``--numba-timeout 600``, ``--no-numba``.

``--unlike 200,800`` adds a second table: a sum of that many *unlike* terms
(:func:`unlike_expression`, which the re-roll pass cannot turn into a loop), its
module split into parts (:mod:`gradc.passes.split`) and, for comparison, in one
function (``gradc.Options(split=False)``): the first call of each, cold.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sympy as sp

ROOT = Path(__file__).resolve().parent.parent
ARGS = sp.symbols("a b c d e")
POINT = (0.3, -0.2, 0.5, 0.1, 0.4)        # a..e where the benchmark evaluates the gradient


def fit_expression(n_points: int, seed: int = 0):
    """The unrolled sum of squares over ``n_points`` data points and its arguments (a, b, c, d, e)."""
    a, b, c, d, e = ARGS
    rng = np.random.default_rng(seed)
    terms = []
    for xj, yj in zip(rng.uniform(-1, 1, n_points), rng.uniform(-1, 1, n_points)):
        x = sp.Float(float(xj))
        model = (a * x ** 3 + b * x ** 2 + c * x + d) * sp.exp(-e * x) \
            + sp.sin(a * x + b) * sp.cos(c * x - d) / (1 + e ** 2 * x ** 2)
        terms.append((sp.Float(float(yj)) - model) ** 2)
    return sp.Add(*terms), list(ARGS)


def unlike_expression(n_terms: int, seed: int = 0, n_vars: int = 6):
    """A sum of ``n_terms`` terms ``f(c₀ xᵢ + c₁ xⱼ xₗ) · g(c₂ xₗ)`` with f, g drawn from nine
    functions (sin, cos, exp, tanh, atan, log(1+u²), sqrt(1+u²), u³, 1/(1+u²)), three distinct
    arguments among ``n_vars`` and 4-digit coefficients: terms of thousands of different shapes,
    about 18 SymPy nodes each. Returns the expression and its arguments x0, x1, ..."""
    rng = np.random.default_rng(seed)
    xs = sp.symbols(f"x0:{n_vars}")
    funcs = [sp.sin, sp.cos, sp.exp, sp.tanh, sp.atan, lambda u: sp.log(1 + u ** 2),
             lambda u: sp.sqrt(1 + u ** 2), lambda u: u ** 3, lambda u: 1 / (1 + u ** 2)]
    terms = []
    for _ in range(n_terms):
        i, j, k = (int(t) for t in rng.choice(n_vars, 3, replace=False))
        f, g = (int(t) for t in rng.integers(0, len(funcs), 2))
        c = [sp.Float(round(float(v), 4)) for v in rng.uniform(0.2, 1.5, 3)]
        terms.append(funcs[f](c[0] * xs[i] + c[1] * xs[j] * xs[k]) * funcs[g](c[2] * xs[k]))
    return sp.Add(*terms), list(xs)


def count_nodes(expr) -> int:
    return sum(1 for _ in sp.preorder_traversal(expr))


def stage_times(expr, args) -> dict:
    """Seconds spent in each stage of gradc.pipeline.build, and the module text: build runs
    whole, with its frontend (``lower``) and ``render_module`` timed through wrappers;
    AD + passes is the rest."""
    from gradc import pipeline

    spent = {"lower": 0.0, "render": 0.0}

    def timed(stage, fn):
        def run(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[stage] += time.perf_counter() - t
        return run

    saved = pipeline.lower, pipeline.render_module
    pipeline.lower, pipeline.render_module = timed("lower", saved[0]), timed("render", saved[1])
    try:
        t = time.perf_counter()
        art = pipeline.build(expr, args=args)
        total = time.perf_counter() - t
    finally:
        pipeline.lower, pipeline.render_module = saved
    return {**spent, "ad": total - spent["lower"] - spent["render"], "total": total, "code": art.code}


def best_of(expr, args, repeats: int) -> dict:
    runs = [stage_times(expr, args) for _ in range(repeats)]
    best = {k: min(r[k] for r in runs) for k in ("lower", "ad", "render", "total")}
    best["lines"] = runs[0]["code"].count("\n")
    return best


_FIRST_CALL = """
import sys, time
sys.path.insert(0, {root!r})
import gradc
from benchmarks.lowering import POINT, fit_expression
expr, args = fit_expression({n})
f = gradc.compile(expr, args=args, out={path!r})
t = time.perf_counter()
f.raw.value_and_grad(*POINT)
print(time.perf_counter() - t)
"""


def _fresh_process(template: str, timeout: float, **fields) -> list[str] | None:
    """Run ``template`` (formatted with ``root``, ``path`` and ``fields``) in a fresh Python with
    empty gradc and Numba caches; the words of its last output line, or None on timeout."""
    with tempfile.TemporaryDirectory(prefix="gradc-lowering-") as tmp:
        env = dict(os.environ, GRADC_CACHE_DIR=tmp, NUMBA_CACHE_DIR=tmp)
        code = template.format(root=str(ROOT), path=str(Path(tmp) / "module.py"), **fields)
        try:
            proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        return proc.stdout.splitlines()[-1].split()


def first_call(n_points: int, timeout: float) -> float | None:
    """Seconds of the first value_and_grad call (Numba's compile) in a fresh process; None on timeout."""
    out = _fresh_process(_FIRST_CALL, timeout, n=n_points)
    return None if out is None else float(out[-1])


_UNLIKE_FIRST_CALL = """
import sys, time
sys.path.insert(0, {root!r})
import gradc
from benchmarks.lowering import unlike_expression
expr, args = unlike_expression({n})
t = time.perf_counter()
f = gradc.compile(expr, args=args, out={path!r}, options=gradc.Options(split={split}))   # False: one function
build = time.perf_counter() - t
t = time.perf_counter()
f.raw.value_and_grad(*[0.1 * (i + 1) for i in range(len(args))])
print(f.source.count("def _part_") // 2, f.source.count("\\n"), build, time.perf_counter() - t)
"""


def unlike_first_call(n_terms: int, split: bool, timeout: float):
    """``(parts, module lines, gradc seconds, first-call seconds)`` in a fresh process with empty
    caches; None on timeout."""
    out = _fresh_process(_UNLIKE_FIRST_CALL, timeout, n=n_terms, split=split)
    if out is None:
        return None
    parts, lines, build, call = out[-4:]
    return int(parts), int(lines), float(build), float(call)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.lowering", description=__doc__.splitlines()[0])
    p.add_argument("--points", default="22,88,250,352", help="data points per size, comma-separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--numba-timeout", type=float, default=600)
    p.add_argument("--no-numba", action="store_true", help="skip the first-call (Numba compile) column")
    p.add_argument("--unlike", default="", help="also time sums of this many unlike terms, split and "
                   "unsplit (comma-separated, e.g. 200,800)")
    opts = p.parse_args(argv)
    print("| points | nodes | lower | AD + passes | render | total | module lines | first call (Numba) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in (int(s) for s in opts.points.split(",") if s):
        expr, args = fit_expression(n)
        t = best_of(expr, args, opts.repeats)
        if opts.no_numba:
            fc = "—"
        else:
            s = first_call(n, opts.numba_timeout)
            fc = f"> {opts.numba_timeout:.0f} s (stopped)" if s is None else f"{s:.1f} s"
        print(f"| {n} | {count_nodes(expr)} | {t['lower']:.3f} s | {t['ad']:.3f} s | {t['render']:.3f} s "
              f"| {t['total']:.3f} s | {t['lines']} | {fc} |", flush=True)
    if opts.unlike:
        print("\n| unlike terms | nodes | split: parts | module lines | gradc | first call "
              "| unsplit: module lines | gradc | first call |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in (int(s) for s in opts.unlike.split(",")):
            row = [f"| {n} | {count_nodes(unlike_expression(n)[0])} "]
            for split in (True, False):
                r = unlike_first_call(n, split, opts.numba_timeout)
                if r is None:
                    row.append(("| — " if split else "") + "| — | — | stopped ")
                else:
                    parts, lines, build, call = r
                    row.append((f"| {parts} " if split else "") + f"| {lines} | {build:.1f} s | {call:.1f} s ")
            print("".join(row) + "|", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
