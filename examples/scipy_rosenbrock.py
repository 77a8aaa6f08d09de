"""The extended (chained) Rosenbrock function of n variables,

    f(x) = sum_{i=1}^{n-1} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2,

minimized with SciPy from gradc's generated derivatives: Newton-CG with the Hessian-vector
product (``hessp``, forward over reverse, never forming H), trust-exact with the dense Hessian
(``hess``) and L-BFGS-B with the gradient only. The global minimum is f = 0 at x = (1, ..., 1)
(Rosenbrock 1960; this n-variable form as in SciPy's tutorial, "Unconstrained minimization of
multivariate scalar functions", and scipy.optimize.rosen).

    python examples/scipy_rosenbrock.py            # n = 100, from x0 = 0
    python examples/scipy_rosenbrock.py --n 20

The table gives the iterations, the function, gradient and Hessian (or Hessian-vector product)
evaluations SciPy reports, and the optimizer's time (the best of --repeat runs); the
derivatives are compiled before the clock starts (their compile time is printed separately).
From x0 = 0 every method reaches x = 1. (From the classic start (-1.2, 1, -1.2, 1, ...)
trust-exact ends in the other local minimum of the chained function, f = 3.9866 near
x_1 = -1, which exists for n >= 4: Kok & Sandrock 2009, "Locating and characterizing the
stationary points of the extended Rosenbrock function", Evolutionary Computation 17(3).)
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.optimize

import gradc

SPEC = """
[model]
name = "rosenbrock_{n}"
description = "the extended Rosenbrock function of {n} variables"

[params]
x = {{ shape = [{n}] }}

[graph]
f = "sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)"

[output]
value = "f"
"""

#: method, SciPy options (tolerances tight enough for |x - 1| < 1e-6)
METHODS = (
    ("Newton-CG", {"xtol": 1e-10}),
    ("trust-exact", {"gtol": 1e-10}),
    ("L-BFGS-B", {"gtol": 1e-10, "ftol": 1e-15, "maxiter": 20000}),
)


def rosen(x: np.ndarray) -> float:
    """The function in plain NumPy (the formula above), a cross-check of the generated value."""
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))


def model(n: int) -> gradc.Compiled:
    """The compiled spec for ``n`` variables (``x``: float64 ``[n]``)."""
    return gradc.compile(SPEC.format(n=n))


def warm(compiled: gradc.Compiled, n: int) -> float:
    """Compile (and JIT) value_and_grad, hvp and hessian; return the seconds it took."""
    t0 = time.perf_counter()
    flat = compiled.scipy()
    x = np.zeros(n)
    flat.fun_and_jac(x)
    flat.hessp(x, x)
    flat.hess(x)
    return time.perf_counter() - t0


def solve(compiled: gradc.Compiled, method: str, options: dict, x0: np.ndarray, repeat: int = 1) -> dict:
    """Minimize from ``x0`` by ``method``; a row of the table (a dict). ``seconds``: the best of
    ``repeat`` runs (the machine may be busy)."""
    seconds = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        if method == "L-BFGS-B":        # the Flat view used directly: one value_and_grad per point
            flat = compiled.scipy()
            res = scipy.optimize.minimize(flat.fun_and_jac, x0, jac=True, method=method, options=options)
            res.params = flat.unflatten(res.x)
        else:                           # gradc.minimize passes hessp (Newton-CG) or hess (trust-exact)
            res = gradc.minimize(compiled, {"x": x0}, method=method, options=options)
        seconds = min(seconds, time.perf_counter() - t0)
    x = res.params["x"]
    return {"method": method, "uses": {"Newton-CG": "hessp", "trust-exact": "hess"}.get(method, "grad"),
            "success": bool(res.success), "nit": int(res.nit), "nfev": int(res.nfev),
            "njev": int(res.get("njev", 0)), "nhev": int(res.get("nhev", 0)), "seconds": seconds,
            "f": float(res.fun), "error": float(np.max(np.abs(x - 1.0))), "x": x}


def run(n: int = 100, x0: np.ndarray | None = None, repeat: int = 1) -> list[dict]:
    """Every method of :data:`METHODS` on the n-variable function from ``x0`` (default 0)."""
    compiled = model(n)
    x0 = np.zeros(n) if x0 is None else x0
    return [solve(compiled, m, dict(opts), x0, repeat) for m, opts in METHODS]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="number of variables (default 100)")
    p.add_argument("--repeat", type=int, default=3, help="time the best of this many runs (default 3)")
    a = p.parse_args(argv)
    compiled = model(a.n)
    print(f"extended Rosenbrock, n = {a.n}, x0 = 0; derivatives compiled in {warm(compiled, a.n):.2f} s")
    x1 = np.full(a.n, 1.0)
    assert compiled.forward(x1) == rosen(x1) == 0.0
    rows = run(a.n, repeat=a.repeat)
    print(f"{'method':<12} {'uses':<6} {'nit':>5} {'nfev':>5} {'njev':>5} {'nhev':>5} {'time (s)':>9} "
          f"{'f(x*)':>10} {'max|x*-1|':>10}")
    for r in rows:
        print(f"{r['method']:<12} {r['uses']:<6} {r['nit']:>5} {r['nfev']:>5} {r['njev']:>5} {r['nhev']:>5} "
              f"{r['seconds']:>9.3f} {r['f']:>10.2e} {r['error']:>10.2e}")
    ok = all(r["success"] and r["error"] < 1e-6 for r in rows)
    print("all converged to x = 1" if ok else "NOT all converged to x = 1")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
