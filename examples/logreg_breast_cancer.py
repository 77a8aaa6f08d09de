"""L2-regularized logistic regression on scikit-learn's breast-cancer data (Wisconsin
diagnostic, 569 tumours, 30 features, malignant/benign), fitted by SciPy's trust-region
Newton-CG (``trust-ncg``) with gradc's Hessian-vector product, and checked against
scikit-learn's ``LogisticRegression`` with the same C and against L-BFGS-B.

The objective (per example: the cross-entropy of the label from the logit z = x.w + b):

    L(w, b) = mean_i bce(X_i . w + b, y_i) + (lam / 2) |w|^2,   lam = 1 / (C n)

is scikit-learn's ``C sum_i bce_i + |w|^2 / 2`` divided by ``C n`` (same minimizer; the
intercept b is not penalized, as in scikit-learn; its User Guide, "Logistic regression").
The features are standardized with the training set's mean and standard deviation.

    python examples/logreg_breast_cancer.py            # C = 1
    python examples/logreg_breast_cancer.py --C 0.1

The table gives SciPy's (scikit-learn's) iteration and evaluation counts, the time (the best of
--repeat runs; SciPy's L-BFGS-B and scikit-learn call BLAS, so set OPENBLAS_NUM_THREADS=1 on
a busy machine), the objective in plain NumPy, the accuracies and the distance of (w, b) from
scikit-learn's.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import gradc

SPEC = """
[model]
name = "logreg_l2"
description = "L2-regularized logistic regression: mean binary cross-entropy of X @ w + b, plus lam/2 |w|^2"

[inputs]
X = { shape = ["batch", 30] }     # standardized features
y = { shape = ["batch"] }         # labels as floats, 0 or 1
lam = { shape = [] }              # L2 strength, 1 / (C * batch)

[params]
w = { shape = [30] }
b = { shape = [] }

[graph]
z = "X @ w + b"
loss = "mean(binary_cross_entropy(z, y)) + 0.5 * lam * sum(w ** 2)"

[output]
value = "loss"
"""


def model() -> gradc.Compiled:
    """The compiled loss ``loss(X, y, lam, w, b)`` (wrt ``w``: float64 ``[30]``, ``b``)."""
    return gradc.compile(SPEC)


def load(seed: int = 0):
    """The standardized 75 % / 25 % stratified split ``(Xtr, Xte, ytr, yte)`` (labels as float64)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    Xtr, Xte, ytr, yte = train_test_split(data.data, data.target.astype(np.float64), test_size=0.25,
                                          stratify=data.target, random_state=seed)
    mean, std = Xtr.mean(axis=0), Xtr.std(axis=0)
    return (Xtr - mean) / std, (Xte - mean) / std, ytr, yte


def accuracy(w, b, X, y) -> float:
    return float(np.mean(((X @ w + b) > 0) == (y > 0.5)))


def fit(compiled, Xtr, ytr, C: float = 1.0, method: str = "trust-ncg", repeat: int = 1, **options) -> dict:
    """Minimize the loss from w = 0, b = 0 by ``gradc.minimize(method=...)`` (trust-ncg gets
    gradc's ``hessp``); a dict of the parameters, the objective and SciPy's counts (``seconds``:
    the best of ``repeat`` runs)."""
    fixed = {"X": Xtr, "y": ytr, "lam": 1.0 / (C * len(ytr))}
    seconds = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = gradc.minimize(compiled, {"w": np.zeros(Xtr.shape[1]), "b": 0.0}, fixed=fixed, method=method,
                             options={"gtol": 1e-9, **options})
        seconds = min(seconds, time.perf_counter() - t0)
    return {"method": method, "w": res.params["w"], "b": res.params["b"], "loss": float(res.fun),
            "success": bool(res.success), "nit": int(res.nit), "nfev": int(res.nfev),
            "njev": int(res.get("njev", 0)), "nhev": int(res.get("nhev", 0)), "seconds": seconds}


def sklearn_fit(Xtr, ytr, C: float = 1.0, repeat: int = 1) -> dict:
    """scikit-learn's LogisticRegression (L2, lbfgs, tight tolerance) with the same C."""
    from sklearn.linear_model import LogisticRegression

    seconds = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        clf = LogisticRegression(C=C, tol=1e-12, max_iter=100000).fit(Xtr, ytr)
        seconds = min(seconds, time.perf_counter() - t0)
    return {"method": "sklearn", "w": clf.coef_[0], "b": float(clf.intercept_[0]),
            "nit": int(clf.n_iter_[0]), "seconds": seconds}


def objective(w, b, X, y, C) -> float:
    """The loss in plain NumPy (np.logaddexp(0, z) - y z is the cross-entropy from logits)."""
    z = X @ w + b
    return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 / (C * len(y)) * (w @ w))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--C", type=float, default=1.0, help="inverse regularization strength (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split (default 0)")
    p.add_argument("--repeat", type=int, default=3, help="time the best of this many runs (default 3)")
    a = p.parse_args(argv)
    Xtr, Xte, ytr, yte = load(a.seed)
    compiled = model()
    t0 = time.perf_counter()
    flat = compiled.scipy(X=Xtr, y=ytr, lam=1.0)
    flat.fun_and_jac(np.zeros(flat.size))
    flat.hessp(np.zeros(flat.size), np.ones(flat.size))
    print(f"breast cancer: {len(ytr)} training, {len(yte)} test examples, 30 standardized features, C = {a.C}; "
          f"value_and_grad and hvp compiled in {time.perf_counter() - t0:.2f} s")
    rows = [fit(compiled, Xtr, ytr, a.C, "trust-ncg", a.repeat),
            fit(compiled, Xtr, ytr, a.C, "L-BFGS-B", a.repeat, ftol=1e-15),
            sklearn_fit(Xtr, ytr, a.C, a.repeat)]
    ref = rows[-1]
    print(f"{'method':<10} {'nit':>5} {'nfev':>5} {'nhev':>5} {'time (ms)':>9} {'objective':>19} "
          f"{'train acc':>9} {'test acc':>8} {'max|w-w_sk|':>11}")
    for r in rows:
        loss = objective(r["w"], r["b"], Xtr, ytr, a.C)
        dist = max(np.max(np.abs(r["w"] - ref["w"])), abs(r["b"] - ref["b"]))
        print(f"{r['method']:<10} {r['nit']:>5} {r.get('nfev', '-'):>5} {r.get('nhev', '-'):>5} "
              f"{r['seconds'] * 1e3:>9.1f} {loss:>19.15f} {accuracy(r['w'], r['b'], Xtr, ytr):>9.4f} "
              f"{accuracy(r['w'], r['b'], Xte, yte):>8.4f} {dist:>11.1e}")
    trust = rows[0]
    gap = objective(trust["w"], trust["b"], Xtr, ytr, a.C) - objective(ref["w"], ref["b"], Xtr, ytr, a.C)
    dist = max(np.max(np.abs(trust["w"] - ref["w"])), abs(trust["b"] - ref["b"])) / np.max(np.abs(ref["w"]))
    ok = trust["success"] and gap <= 1e-12 and dist < 1e-4
    print(f"trust-ncg - scikit-learn: objective {gap:.1e}, max |difference| / max |w_sk| {dist:.1e}: "
          + ("the same optimum" if ok else "NOT the same optimum"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
