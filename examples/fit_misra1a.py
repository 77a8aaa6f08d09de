"""NIST StRD nonlinear regression "Misra1a" fitted by Levenberg-Marquardt
(``scipy.optimize.least_squares(method="lm")``) with gradc's generated Jacobian.

The model (NIST: "Misra, D., NIST (1978), Dental Research Monomolecular Adsorption Study"),
14 observations, lower level of difficulty:

    y = b1 (1 - exp(-b2 x)) + e

Data, starting values and certified values: NIST Statistical Reference Datasets,
https://www.itl.nist.gov/div898/strd/nls/data/misra1a.shtml . gradc compiles the residual
vector r = b1 (1 - exp(-b2 x)) - y of shape [n] and its Jacobian dr/d(b1, b2), shape [n, 2];
the standard errors are sqrt(diag(s^2 (J^T J)^-1)) with s^2 = RSS / (n - 2) (the usual
linearized estimate NIST certifies).

    python examples/fit_misra1a.py

prints the fit from NIST's two starting points and the relative error of each result against
the certified value (NIST asks for agreement to about 6 significant digits).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import gradc

SPEC = """
[model]
name = "misra1a"
description = "NIST StRD Misra1a residuals: b1 (1 - exp(-b2 x)) - y"

[inputs]
x = { shape = ["n"] }
y = { shape = ["n"] }

[params]
b1 = { shape = [] }
b2 = { shape = [] }

[graph]
r = "b1 * (1 - exp(-b2 * x)) - y"

[output]
value = "r"
"""

# NIST StRD Misra1a data (x: predictor, y: response)
X = np.array([77.6, 114.9, 141.1, 190.8, 239.9, 289.0, 332.8, 378.4, 434.8, 477.3, 536.8, 593.1,
              689.1, 760.0])
Y = np.array([10.07, 14.73, 17.94, 23.93, 29.61, 35.18, 40.02, 44.82, 50.76, 55.05, 61.01, 66.40,
              75.47, 81.78])

#: NIST's starting values
STARTS = {"start 1": {"b1": 500.0, "b2": 1e-4}, "start 2": {"b1": 250.0, "b2": 5e-4}}

#: NIST's certified values
CERTIFIED = {"b1": 2.3894212918E+02, "b2": 5.5015643181E-04}
CERTIFIED_SE = {"b1": 2.7070075241E+00, "b2": 7.2668688436E-06}
CERTIFIED_RSS = 1.2455138894E-01


def model() -> gradc.Compiled:
    """The compiled residuals ``r(x, y, b1, b2)`` (``x``, ``y``: float64 ``[n]``; wrt ``b1, b2``)."""
    return gradc.compile(SPEC)


def fit(compiled: gradc.Compiled, start: dict, **kwargs) -> dict:
    """Fit from ``start`` by ``least_squares(method="lm")`` with gradc's Jacobian; returns the
    parameters, their standard errors, the residual sum of squares and SciPy's counts."""
    options = {"method": "lm", "xtol": 1e-15, "ftol": 1e-15, "gtol": 1e-15, **kwargs}
    t0 = time.perf_counter()
    res = gradc.least_squares(compiled, start, fixed={"x": X, "y": Y}, **options)
    seconds = time.perf_counter() - t0
    J = compiled.scipy(x=X, y=Y).jac(res.x)
    rss = float(np.sum(res.fun ** 2))
    se = np.sqrt(np.diag(rss / (len(X) - len(res.x)) * np.linalg.inv(J.T @ J)))
    return {"params": res.params, "se": dict(zip(compiled.wrt, se)), "rss": rss, "nfev": int(res.nfev),
            "njev": int(res.njev), "seconds": seconds, "success": bool(res.success)}


def relative_errors(result: dict) -> dict:
    """|fitted / certified - 1| for b1, b2, their standard errors and the RSS."""
    err = {k: abs(result["params"][k] / v - 1) for k, v in CERTIFIED.items()}
    err.update({f"se({k})": abs(result["se"][k] / v - 1) for k, v in CERTIFIED_SE.items()})
    err["RSS"] = abs(result["rss"] / CERTIFIED_RSS - 1)
    return err


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    compiled = model()
    fit(compiled, STARTS["start 1"])                         # compile and JIT before timing
    print("NIST StRD Misra1a, y = b1 (1 - exp(-b2 x)), 14 observations; least_squares(method='lm'), gradc Jacobian")
    print(f"{'start':<8} {'quantity':<7} {'fitted':>18} {'certified':>18} {'rel. error':>10}")
    worst = 0.0
    for name, start in STARTS.items():
        r = fit(compiled, start)
        err = relative_errors(r)
        fitted = {**r["params"], **{f"se({k})": v for k, v in r["se"].items()}, "RSS": r["rss"]}
        certified = {**CERTIFIED, **{f"se({k})": v for k, v in CERTIFIED_SE.items()}, "RSS": CERTIFIED_RSS}
        for k in fitted:
            print(f"{name:<8} {k:<7} {fitted[k]:>18.10e} {certified[k]:>18.10e} {err[k]:>10.1e}")
        print(f"{name:<8} {r['nfev']} residual and {r['njev']} Jacobian evaluations in {r['seconds'] * 1e3:.1f} ms")
        worst = max(worst, *err.values())
    ok = worst < 1e-6
    print(f"worst relative error {worst:.1e}: " + ("agrees with NIST's certified values" if ok
                                                    else "does NOT agree with NIST's certified values"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
