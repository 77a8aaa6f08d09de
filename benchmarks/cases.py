"""The benchmark cases: inputs, a float64 NumPy reference and gradc's source for each.

A :class:`Case` is plain data plus functions; every framework worker
(``benchmarks/workers/*.py``) builds its own implementation of the same
function from it and is checked against :meth:`Case.reference`.

Conventions:

* ``inputs()`` returns ``{name: value}`` in a fixed order (float64 scalars as
  Python floats, arrays as float64 / int64 NumPy arrays), deterministic.
* ``wrt`` lists the differentiated inputs; gradients are compared by name.
* ``consts`` holds case constants that are baked into the function rather than
  passed (the big expression's coefficients in its unrolled form).
* ``gradc_source()`` returns ``(source, kwargs)`` for :func:`gradc.compile`;
  a case gradc cannot express still defines it, and the worker reports the
  :class:`gradc.GradcError` as "n/a" (so the case lights up when gradc learns it).
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@dataclass
class Case:
    name: str
    title: str
    kind: str                                  # "scalar" or "array"
    make_inputs: Callable[[], dict]
    wrt: tuple
    reference_fn: Callable                     # (case, inputs) -> (value, {name: grad})
    gradc_source: Callable | None = None       # (case) -> (source, compile kwargs)
    sympy_expr: Callable | None = None         # (case) -> (expr, [arg symbols]) for the SymPy peer
    params: dict = field(default_factory=dict)
    quick: bool = False                        # part of --quick
    group: str = "main"                        # "main" or "scaling"
    layers: tuple = ()                         # MLP (in, out) pairs: matmul-bound cases
    batch: int = 0
    expected: dict | None = None               # worked values from the lecture notes
    note: str = ""

    @cached_property
    def _inputs(self):
        return self.make_inputs()

    def inputs(self) -> dict:
        return self._inputs

    def reference(self, inputs=None):
        return self.reference_fn(self, self._inputs if inputs is None else inputs)

    @cached_property
    def consts(self) -> dict:
        if "K" in self.params:
            return bigexpr_consts(self.params["K"], self.params.get("coef", "full"))
        return {}

    def matmul_flops(self) -> tuple[int, int] | None:
        """(forward, value+grad) matmul flops for MLP cases, else None.

        Forward: 2·B·in·out per layer. The gradient adds 2·B·in·out per layer for
        dW and, for every layer but the first (whose input is data), 2·B·in·out for dX.
        """
        if not self.layers:
            return None
        fwd = sum(2 * self.batch * i * o for i, o in self.layers)
        bwd = fwd + sum(2 * self.batch * i * o for i, o in self.layers[1:])
        return fwd, fwd + bwd


# --------------------------------------------------------------------------- helpers

def _softmax_ce(s, y):
    """Mean softmax cross-entropy and its gradient w.r.t. the scores."""
    n = s.shape[0]
    m = s.max(axis=1, keepdims=True)
    e = np.exp(s - m)
    z = e.sum(axis=1, keepdims=True)
    lse = (m + np.log(z))[:, 0]
    loss = float(np.mean(lse - s[np.arange(n), y]))
    ds = e / z
    ds[np.arange(n), y] -= 1.0
    return loss, ds / n


def _glorot(rng, fan_in, fan_out):
    lim = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-lim, lim, size=(fan_in, fan_out))


# --------------------------------------------------------------------------- (x + y) z

def _add_mul_ref(case, a):
    x, y, z = a["x"], a["y"], a["z"]
    q = x + y
    return q * z, {"x": z, "y": z, "z": q}


# --------------------------------------------------------------------------- sigmoid neuron

def _sigmoid_ref(case, a):
    s = a["w0"] * a["x0"] + a["w1"] * a["x1"] + a["w2"]
    f = 1.0 / (1.0 + math.exp(-s))
    d = f * (1.0 - f)
    return f, {"w0": a["x0"] * d, "w1": a["x1"] * d, "w2": d, "x0": a["w0"] * d, "x1": a["w1"] * d}


def _sigmoid_sympy(case):
    import sympy as sp
    x0, x1, w0, w1, w2 = sp.symbols("x0 x1 w0 w1 w2")
    return 1 / (1 + sp.exp(-(w0 * x0 + w1 * x1 + w2))), [x0, x1, w0, w1, w2]


def _add_mul_sympy(case):
    import sympy as sp
    x, y, z = sp.symbols("x y z")
    return (x + y) * z, [x, y, z]


# --------------------------------------------------------------------------- ||W x||^2

def _norm_wx_inputs(n):
    if n == 2:   # the lecture notes' worked example
        return lambda: {"x": np.array([0.2, 0.4]), "W": np.array([[0.1, 0.5], [-0.3, 0.8]])}

    def make():
        rng = np.random.default_rng(512)
        return {"x": rng.standard_normal(n), "W": rng.standard_normal((n, n)) / math.sqrt(n)}
    return make


def _norm_wx_ref(case, a):
    W, x = a["W"], a["x"]
    q = W @ x
    return float(q @ q), {"W": 2.0 * np.outer(q, x), "x": 2.0 * (W.T @ q)}


def _norm_wx_source(case):
    n = case.params["n"]
    if n == 2:
        return str(EXAMPLES / "seed_norm_wx.toml"), {}
    return f"""
[model]
name = "bench_norm_wx_{n}"
[inputs]
x = {{ shape = [{n}] }}
[params]
W = {{ shape = [{n}, {n}] }}
[graph]
q = "W @ x"
f = "sum(q ** 2)"
[output]
value = "f"
wrt = ["W", "x"]
""", {}


# --------------------------------------------------------------------------- MLPs

def _digits_inputs():
    from sklearn.datasets import load_digits
    d = load_digits()
    X = np.ascontiguousarray(d.data[:256] / 16.0)
    y = d.target[:256].astype(np.int64)
    rng = np.random.default_rng(64)
    return {"X": X, "y": y,
            "W1": _glorot(rng, 64, 128), "b1": 0.01 * rng.standard_normal(128),
            "W2": _glorot(rng, 128, 10), "b2": 0.01 * rng.standard_normal(10)}


def _digits_ref(case, a):
    X, y = a["X"], a["y"]
    h = np.tanh(X @ a["W1"] + a["b1"])
    s = h @ a["W2"] + a["b2"]
    loss, ds = _softmax_ce(s, y)
    dh = ds @ a["W2"].T
    dz = dh * (1.0 - h * h)
    return loss, {"W1": X.T @ dz, "b1": dz.sum(0), "W2": h.T @ ds, "b2": ds.sum(0)}


DIGITS_SPEC = """
[model]
name = "bench_mlp_digits"
[inputs]
X = { shape = ["batch", 64] }
y = { shape = ["batch"], dtype = "int64" }
[params]
W1 = { shape = [64, 128], init = "glorot" }
b1 = { shape = [128] }
W2 = { shape = [128, 10], init = "glorot" }
b2 = { shape = [10] }
[graph]
h = "tanh(X @ W1 + b1)"
scores = "h @ W2 + b2"
loss = "mean(softmax_cross_entropy(scores, y))"
[output]
value = "loss"
"""


def _mlp784_inputs():
    rng = np.random.default_rng(784)
    B = 128
    return {"X": rng.uniform(0.0, 1.0, size=(B, 784)), "y": rng.integers(0, 10, size=B).astype(np.int64),
            "W1": _glorot(rng, 784, 512), "b1": 0.01 * rng.standard_normal(512),
            "W2": _glorot(rng, 512, 256), "b2": 0.01 * rng.standard_normal(256),
            "W3": _glorot(rng, 256, 10), "b3": 0.01 * rng.standard_normal(10)}


def _mlp784_ref(case, a):
    X, y = a["X"], a["y"]
    z1 = X @ a["W1"] + a["b1"]
    h1 = np.maximum(z1, 0.0)
    z2 = h1 @ a["W2"] + a["b2"]
    h2 = np.maximum(z2, 0.0)
    s = h2 @ a["W3"] + a["b3"]
    loss, ds = _softmax_ce(s, y)
    dh2 = ds @ a["W3"].T
    dz2 = dh2 * (z2 > 0)
    dh1 = dz2 @ a["W2"].T
    dz1 = dh1 * (z1 > 0)
    return loss, {"W1": X.T @ dz1, "b1": dz1.sum(0), "W2": h1.T @ dz2, "b2": dz2.sum(0),
                  "W3": h2.T @ ds, "b3": ds.sum(0)}


MLP784_SPEC = """
[model]
name = "bench_mlp_784"
[inputs]
X = { shape = ["batch", 784] }
y = { shape = ["batch"], dtype = "int64" }
[params]
W1 = { shape = [784, 512], init = "glorot" }
b1 = { shape = [512] }
W2 = { shape = [512, 256], init = "glorot" }
b2 = { shape = [256] }
W3 = { shape = [256, 10], init = "glorot" }
b3 = { shape = [10] }
[graph]
h1 = "relu(X @ W1 + b1)"
h2 = "relu(h1 @ W2 + b2)"
scores = "h2 @ W3 + b3"
loss = "mean(softmax_cross_entropy(scores, y))"
[output]
value = "loss"
"""


# --------------------------------------------------------------------------- extended Rosenbrock

def _rosen_inputs(n):
    def make():
        rng = np.random.default_rng(n)
        return {"x": rng.uniform(-1.5, 1.5, size=n)}
    return make


def _rosen_ref(case, a):
    x = a["x"]
    t = x[1:] - x[:-1] ** 2
    u = 1.0 - x[:-1]
    f = float(np.sum(100.0 * t * t + u * u))
    g = np.zeros_like(x)
    g[:-1] = -400.0 * t * x[:-1] - 2.0 * u
    g[1:] += 200.0 * t
    return f, {"x": g}


def _rosen_source(case):
    # Array form with slices x[1:], x[:-1]; gradc slices axes of concrete size only, so the
    # spec fixes n (one module per size, as for ||Wx||^2).
    n = case.params["n"]
    return f"""
[model]
name = "bench_rosenbrock_{n}"
[inputs]
x = {{ shape = [{n}] }}
[graph]
t = "x[1:] - x[:-1] ** 2"
f = "sum(100 * t ** 2 + (1 - x[:-1]) ** 2)"
[output]
value = "f"
wrt = ["x"]
""", {}


# --------------------------------------------------------------------------- the big scalar expression
# f(x, y, z) = sum_{k=1..K} sin(a_k x + b_k y) * exp(-c_k z^2) + tanh(x y - k/100), with two sets of
# coefficients: "full" (uniform, full precision) and "rounded" (as read from a table: 3 decimals, so
# values repeat; SymPy then shares subexpressions between terms, which re-rolling must see through)

BIG_POINT = {"x": 0.3, "y": -0.2, "z": 0.5}
_BIG_MAX = 3200


def bigexpr_consts(K: int, coef: str = "full") -> dict:
    """The coefficients a_k, b_k, c_k and kk = 1..K (d_k = kk/100).

    ``"full"``: a, b ~ U(-1, 1), c ~ U(0.1, 1) at full precision, one fixed stream (size K takes
    its first K). ``"rounded"``: a ~ U(0.5, 2), b ~ U(-1.5, 1.5), c ~ U(0.1, 1), each rounded to
    3 decimals, K values of each drawn from ``numpy.random.default_rng(7)`` (issue 10's variant).
    """
    if coef == "rounded":
        rng = np.random.default_rng(7)
        a, b, c = (np.round(rng.uniform(lo, hi, K), 3) for lo, hi in ((0.5, 2.0), (-1.5, 1.5), (0.1, 1.0)))
        return {"a": a, "b": b, "c": c, "kk": np.arange(1.0, K + 1.0)}
    rng = np.random.default_rng(2600)
    a = rng.uniform(-1.0, 1.0, _BIG_MAX)
    b = rng.uniform(-1.0, 1.0, _BIG_MAX)
    c = rng.uniform(0.1, 1.0, _BIG_MAX)
    return {"a": a[:K].copy(), "b": b[:K].copy(), "c": c[:K].copy(), "kk": np.arange(1.0, K + 1.0)}


def bigexpr_sympy(K: int, coef: str = "full"):
    """The unrolled SymPy expression (about 13 ops a term) and its argument symbols."""
    import sympy as sp
    x, y, z = sp.symbols("x y z")
    k = bigexpr_consts(K, coef)
    terms = [sp.sin(sp.Float(float(k["a"][i])) * x + sp.Float(float(k["b"][i])) * y)
             * sp.exp(-sp.Float(float(k["c"][i])) * z ** 2) + sp.tanh(x * y - sp.Rational(i + 1, 100))
             for i in range(K)]
    return sp.Add(*terms), [x, y, z]


def _big_unrolled_inputs():
    return dict(BIG_POINT)


def _big_array_inputs(K):
    def make():
        return {**bigexpr_consts(K), **BIG_POINT}
    return make


def _big_ref(case, a):
    k = a if "a" in a else case.consts
    x, y, z = a["x"], a["y"], a["z"]
    u = k["a"] * x + k["b"] * y
    e = np.exp(-k["c"] * z * z)
    s = np.sin(u)
    t = np.tanh(x * y - k["kk"] / 100.0)
    f = float(np.sum(s * e + t))
    cu = np.cos(u) * e
    dt = 1.0 - t * t
    return f, {"x": float(np.sum(cu * k["a"] + dt * y)), "y": float(np.sum(cu * k["b"] + dt * x)),
               "z": float(np.sum(s * e * (-2.0 * k["c"] * z)))}


def _big_unrolled_source(case):
    coef = case.params.get("coef", "full")
    expr, args = bigexpr_sympy(case.params["K"], coef)
    return expr, {"args": args, "name": f"bench_bigexpr_{'' if coef == 'full' else coef + '_'}{case.params['K']}"}


def _big_sympy(case):
    return bigexpr_sympy(case.params["K"], case.params.get("coef", "full"))


BIG_ARRAY_SPEC = """
[model]
name = "bench_bigexpr_array"
[inputs]
a = { shape = ["K"] }
b = { shape = ["K"] }
c = { shape = ["K"] }
kk = { shape = ["K"] }
x = { shape = [] }
y = { shape = [] }
z = { shape = [] }
[graph]
f = "sum(sin(a * x + b * y) * exp(-c * z ** 2) + tanh(x * y - kk / 100))"
[output]
value = "f"
wrt = ["x", "y", "z"]
"""


# --------------------------------------------------------------------------- the table

def _all_cases() -> list[Case]:
    cases = [
        Case("add_mul", "(x+y)z at (-2, 5, -4)", "scalar", lambda: {"x": -2.0, "y": 5.0, "z": -4.0},
             ("x", "y", "z"), _add_mul_ref,
             gradc_source=lambda c: (str(EXAMPLES / "seed_add_mul.toml"), {}),
             sympy_expr=_add_mul_sympy, quick=True,
             expected={"value": -12.0, "grads": {"x": -4.0, "y": -4.0, "z": 3.0}}),
        Case("sigmoid_neuron", "sigmoid neuron (seed)", "scalar",
             lambda: {"x0": -1.0, "x1": -2.0, "w0": 2.0, "w1": -3.0, "w2": -3.0},
             ("w0", "w1", "w2", "x0", "x1"), _sigmoid_ref,
             gradc_source=lambda c: (str(EXAMPLES / "seed_sigmoid_neuron.toml"), {}),
             sympy_expr=_sigmoid_sympy, quick=True,
             expected={"value": 0.7310585786300049,
                       "grads": {"w0": -0.19661193324148185, "w1": -0.3932238664829637,
                                 "w2": 0.19661193324148185, "x0": 0.3932238664829637,
                                 "x1": -0.5898357997244456}}),
        Case("norm_wx_2", "‖Wx‖², n=2 (seed)", "array", _norm_wx_inputs(2), ("W", "x"), _norm_wx_ref,
             gradc_source=_norm_wx_source, params={"n": 2}, quick=True,
             expected={"value": 0.116, "grads": {"W": [[0.088, 0.176], [0.104, 0.208]], "x": [-0.112, 0.636]}}),
        Case("norm_wx_512", "‖Wx‖², n=512", "array", _norm_wx_inputs(512), ("W", "x"), _norm_wx_ref,
             gradc_source=_norm_wx_source, params={"n": 512}),
        Case("mlp_digits", "digits MLP 64→128 tanh→10, CE, 256 rows", "array", _digits_inputs,
             ("W1", "b1", "W2", "b2"), _digits_ref, gradc_source=lambda c: (DIGITS_SPEC, {}),
             layers=((64, 128), (128, 10)), batch=256),
        Case("mlp_784", "MLP 784→512→256→10 ReLU, CE, batch 128", "array", _mlp784_inputs,
             ("W1", "b1", "W2", "b2", "W3", "b3"), _mlp784_ref, gradc_source=lambda c: (MLP784_SPEC, {}),
             layers=((784, 512), (512, 256), (256, 10)), batch=128),
    ]
    for n in (10, 1000, 100_000):
        cases.append(Case(f"rosenbrock_{n}", f"ext. Rosenbrock (array), n={n:,}", "array", _rosen_inputs(n),
                          ("x",), _rosen_ref, gradc_source=_rosen_source, params={"n": n}, quick=(n == 10)))
    cases += [
        Case("bigexpr_unrolled", "Σ₁²⁰⁰ sin·exp + tanh, unrolled SymPy", "scalar", _big_unrolled_inputs,
             ("x", "y", "z"), _big_ref, gradc_source=_big_unrolled_source, sympy_expr=_big_sympy,
             params={"K": 200}, note="peers other than gradc and SymPy use the array form"),
        Case("bigexpr_rounded", "Σ₁²⁰⁰ sin·exp + tanh, unrolled SymPy, coefficients to 3 decimals", "scalar",
             _big_unrolled_inputs, ("x", "y", "z"), _big_ref, gradc_source=_big_unrolled_source,
             sympy_expr=_big_sympy, params={"K": 200, "coef": "rounded"},
             note="peers other than gradc and SymPy use the array form"),
        Case("bigexpr_array", "Σ₁²⁰⁰ sin·exp + tanh, array form", "array", _big_array_inputs(200),
             ("x", "y", "z"), _big_ref, gradc_source=lambda c: (BIG_ARRAY_SPEC, {}), params={"K": 200},
             quick=True),
    ]
    for coef, prefix, what in (("full", "scaling_", ""), ("rounded", "scaling_rounded_", ", rounded coefficients")):
        for K in (50, 200, 800, 3200):
            cases.append(Case(f"{prefix}{K}", f"compile scaling{what}, {K} terms", "scalar", _big_unrolled_inputs,
                              ("x", "y", "z"), _big_ref, gradc_source=_big_unrolled_source, sympy_expr=_big_sympy,
                              params={"K": K, "coef": coef}, group="scaling"))
    return cases


CASES: dict[str, Case] = {c.name: c for c in _all_cases()}


def select(patterns: str | None, quick: bool = False, scaling: bool = True) -> list[Case]:
    """Cases matching comma-separated fnmatch ``patterns`` (default: all, or the quick ones)."""
    if patterns:
        pats = [p.strip() for p in patterns.split(",") if p.strip()]
        out = [c for c in CASES.values() if any(fnmatch.fnmatchcase(c.name, p) for p in pats)]
        unknown = [p for p in pats if not any(fnmatch.fnmatchcase(c, p) for c in CASES)]
        if unknown:
            raise SystemExit(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(CASES)}")
        return out
    out = [c for c in CASES.values() if (c.quick or not quick)]
    if not scaling:
        out = [c for c in out if c.group != "scaling"]
    return out
