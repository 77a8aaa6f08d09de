"""SymPy functions (issue 6): each function's value and derivative against SymPy.

Numba compiles are batched: one module per group, whose expression is a sum of
``f_i(x_i)`` over separate symbols, so gradient component ``i`` tests ``f_i``;
each module is called at several points (near the domain edges too). Oracle:
``sympy.diff`` of each term evaluated in mpmath at 30 digits. The helpers the
generated code carries (digamma, polygamma, LambertW, sinc') are checked on
arrays against ``scipy.special`` and mpmath.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.special as ss
import sympy as sp

from conftest import compiled
from gradc.errors import UnsupportedError
from gradc.pipeline import build

E1 = float(1 / mpmath.e)

#: (SymPy function of one argument, points inside its domain; the first points near its edges)
SMOOTH = [
    (sp.cot, [1e-6, 3.14159, -0.7, 2.0, 40.0]),
    (sp.sec, [1.5707, -1.2, 0.0, 3.0, 1e-8]),
    (sp.csc, [1e-6, 3.1415, -0.5, 2.0, 7.5]),
    (sp.asin, [0.999999, -0.9999999999, 0.0, 0.3, -0.7]),
    (sp.acos, [-0.999999, 0.9999999999, 0.0, 0.3, -0.7]),
    (sp.atan, [1e8, -1e-9, 0.0, 0.5, -3.0]),
    (sp.acot, [1e-9, -1e-9, 1e8, 0.5, -3.0]),
    (sp.sinh, [-30.0, 1e-9, 0.0, 0.7, 3.0]),
    (sp.cosh, [-30.0, 1e-9, 0.0, 0.7, 3.0]),
    (sp.coth, [1e-6, -30.0, 20.0, 0.7, -2.0]),
    (sp.sech, [40.0, -1e-9, 0.0, 0.7, -3.0]),
    (sp.csch, [1e-6, -30.0, 20.0, 0.7, -2.0]),
    (sp.asinh, [1e8, -1e-9, 0.0, 0.5, -3.0]),
    (sp.acosh, [1.000001, 1e8, 1.5, 2.0, 10.0]),
    (sp.atanh, [0.999999, -0.9999999999, 0.0, 0.3, -0.7]),
    (sp.erf, [6.0, -1e-9, 0.0, 0.5, -2.0]),
    (sp.erfc, [6.0, -1e-9, 0.0, 0.5, -2.0]),
    (sp.gamma, [1e-6, -0.5, 4.5, 1.4616, 30.0]),
    (sp.loggamma, [1e-6, 1e6, 0.5, 1.4616, 2.0]),
    (sp.digamma, [1e-6, -2.5, 1.4616321449683622, 3.7, 1e6]),
    (lambda x: sp.polygamma(1, x), [1e-6, -2.5, 1.5, 3.7, 1e6]),
    (lambda x: sp.polygamma(3, x), [1e-3, -0.3, 1.5, 3.7, 100.0]),
    (sp.sinc, [0.0, 1e-9, 0.3, -0.999, 1.0, 4.4934, -20.0]),
    (sp.LambertW, [-0.3678794411714, -0.2, 0.0, 1e-9, 2.5, 1e10]),
]
#: relative tolerance of every derivative above, also at the points near the domain edges
RTOL = 1e-12


def _mp(x):
    return mpmath.mpf(float(x))


def _oracle(f):
    """(value(x), derivative(x)) of the SymPy function ``f`` in mpmath."""
    t = sp.Symbol("t", real=True)
    expr = f(t)
    dexpr = sp.diff(expr, t)
    val, der = sp.lambdify(t, expr, "mpmath"), sp.lambdify(t, dexpr, "mpmath")

    def at(x):
        with mpmath.workdps(30):
            v = val(_mp(x))
            try:
                d = der(_mp(x))
            except ZeroDivisionError:            # sinc'(0), LambertW'(0): 0/0 in SymPy's formula
                with mpmath.workdps(60):
                    h = mpmath.mpf(10) ** -25
                    d = (val(_mp(x) + h) - val(_mp(x) - h)) / (2 * h)
            return complex(v).real, complex(d).real
    return at


def _group(table):
    xs = sp.symbols(f"x0:{len(table)}", real=True)
    expr = sp.Add(*(f(x) for (f, _), x in zip(table, xs)))
    return compiled(expr, args=list(xs)), [_oracle(f) for f, _ in table]


def _close(got, want, rtol):
    return abs(got - want) <= rtol * abs(want) + 1e-300


def test_smooth_functions_match_sympy_diff():
    fn, oracles = _group(SMOOTH)
    rows = max(len(p) for _, p in SMOOTH)
    for r in range(rows):
        point = [p[r % len(p)] for _, p in SMOOTH]
        value, grads = fn.value_and_grad(*point)
        want_value = 0.0
        scale = 0.0
        for (f, _), at, x, g in zip(SMOOTH, oracles, point, grads):
            v, d = at(x)
            want_value += v
            scale += abs(v)
            assert _close(g, d, RTOL), f"{f}'({x!r}) = {g!r}, SymPy says {d!r}"
        assert abs(value - want_value) <= 1e-13 * scale, (point, value, want_value)
        assert fn.forward(*point) == value


# ------------------------------------------------------------------ SymPy's own spellings
x, y = sp.symbols("x y", real=True)
z = sp.Symbol("z")                     # not declared real: real_root writes a Piecewise on im(z)


@pytest.mark.parametrize("expr, points", [
    (sp.log(x, 3) + sp.log(y, 10), [(0.5, 7.0), (1e-300, 1e300)]),            # log(x)/log(3)
    (2 ** x + sp.log(y, 2), [(-3.0, 0.25), (10.5, 3.0)]),                       # exp2, log2
    (x ** y, [(2.0, 3.0), (0.5, -1.7), (7.0, 0.0)]),                             # symbolic powers
    (sp.real_root(x, 3) + sp.cbrt(y), [(-8.0, 8.0), (0.001, 27.0), (-1e-9, 2.0)]),
    (sp.real_root(z, 3) + sp.root(y, 4), [(16.0, -8.0), (0.5, 5.0)]),                 # (y, z)
    (sp.atan2(y, x), [(1.0, 1.0), (-1.0, 1e-300), (-2.0, -3.0), (1e-3, -1e3)]),
    (sp.atan2(x, y) + sp.sqrt(x) + sp.EulerGamma * x + sp.GoldenRatio * y, [(3.0, 0.5)]),
])
def test_sympy_spellings_match_sympy_diff(expr, points):
    args = sorted(expr.free_symbols, key=lambda s: s.name)
    fn = compiled(expr, args=args)
    # the oracle on real symbols (gradc's arguments are real); d sign(x)/dx = 2 DiracDelta(x) is 0 at x != 0
    real = [sp.Symbol(a.name, real=True) for a in args]
    rexpr = expr.xreplace(dict(zip(args, real)))
    derivs = [sp.lambdify(real, sp.diff(rexpr, a).replace(sp.DiracDelta, lambda *e: sp.S.Zero), "mpmath")
              for a in real]
    value = sp.lambdify(real, rexpr, "mpmath")
    for p in points:
        v, grads = fn.value_and_grad(*p)
        with mpmath.workdps(30):
            want = complex(value(*map(_mp, p))).real
            assert _close(v, want, 1e-13)
            for g, d in zip(grads, derivs):
                assert _close(g, complex(d(*map(_mp, p))).real, 1e-12), (expr, p)


def test_cbrt_is_the_principal_root_nan_for_negative_x():
    """SymPy's cbrt(x) is x**(1/3), complex for x < 0: NaN; real_root(x, 3) is the real one."""
    fn = compiled(sp.cbrt(x), args=[x])
    assert math.isnan(fn.forward(-8.0))
    assert fn.forward(8.0) == 2.0


def test_power_gradient_wrt_the_exponent():
    fn = compiled(x ** y, args=[x, y])
    _, (gx, gy) = fn.value_and_grad(2.0, 3.0)
    assert gx == pytest.approx(12.0, rel=1e-15) and gy == pytest.approx(8 * math.log(2), rel=1e-15)


# ------------------------------------------------------------------ kinks: exact values, a.e. gradients
KINKS = [  # (expression in a, b; [(a, b, value, (da, db))])
    (sp.sign(x), [(-2.5, 0, -1.0, (0.0,)), (0.0, 0, 0.0, (0.0,)), (3.0, 0, 1.0, (0.0,))]),
    (sp.Heaviside(x), [(-1.0, 0, 0.0, (0.0,)), (0.0, 0, 0.5, (0.0,)), (1e-300, 0, 1.0, (0.0,))]),
    (sp.Heaviside(x, 1), [(0.0, 0, 1.0, (0.0,)), (-1e-300, 0, 0.0, (0.0,))]),
    (sp.floor(x), [(2.0, 0, 2.0, (0.0,)), (-2.5, 0, -3.0, (0.0,)), (2.9999999999999996, 0, 2.0, (0.0,))]),
    (sp.ceiling(x), [(2.0, 0, 2.0, (0.0,)), (-2.5, 0, -2.0, (0.0,)), (2.0000000000000004, 0, 3.0, (0.0,))]),
    (sp.frac(x), [(2.0, 0, 0.0, (1.0,)), (-2.25, 0, 0.75, (1.0,)), (5.5, 0, 0.5, (1.0,))]),
    (sp.Mod(x, y), [(5.5, 2.0, 1.5, (1.0, -2.0)), (-5.5, 2.0, 0.5, (1.0, 3.0)), (5.5, -2.0, -0.5, (1.0, 3.0)),
                    (6.0, 2.0, 0.0, (1.0, -3.0)), (0.3, 0.1, float(np.mod(0.3, 0.1)), (1.0, -2.0))]),
]


@pytest.mark.parametrize("expr, cases", KINKS, ids=[type(e).__name__ for e, _ in KINKS])
def test_kinks_exact_values_and_almost_everywhere_gradients(expr, cases):
    args = [x, y][:len(cases[0][3])]
    fn = compiled(expr, args=args)
    for a, b, value, grads in cases:
        point = (a, b)[:len(args)]
        v, g = fn.value_and_grad(*point)
        assert v == value and tuple(g) == grads, (expr, point, v, g)
        if a != int(a) or expr.func in (sp.sign, sp.Heaviside):    # SymPy agrees away from the jumps
            if not (expr.func is sp.Heaviside and a == 0):
                assert v == pytest.approx(float(expr.subs({x: a, y: b})), abs=1e-15)


def test_piecewise_masks_the_untaken_branch_of_a_function():
    """asin(2) is NaN, and its derivative too: the untaken branch must not leak it."""
    fn = compiled(sp.Piecewise((sp.asin(x) + sp.acosh(y), x < 1), (x * y, True)), args=[x, y])
    v, (gx, gy) = fn.value_and_grad(2.0, 0.5)
    assert (v, gx, gy) == (1.0, 0.5, 2.0)


# ------------------------------------------------------------------ arrays: helpers vs scipy and mpmath
#: out = sum(c_k * f_k(x_k)): the gradient w.r.t. c_k is f_k(x) elementwise, w.r.t. x_k c_k f_k'(x)
ARRAY_FNS = ["loggamma(x0)", "digamma(x1)", "polygamma(x2, 2)", "polygamma(x3, 5)", "lambertw(x4)",
             "sinc(x5)", "erf(x6)", "erfc(x7)", "gamma(x8)", "asin(x9)", "atanh(x10)", "heaviside(x11, 0.25)",
             "mod(x12, x13)"]
ARRAY_SPEC = "\n".join([
    "[model]", 'name = "fns"', "", "[inputs]",
    *(f'{n} = {{ shape = ["n"], dtype = "{{dtype}}" }}' for n in [f"x{k}" for k in range(14)]),
    *(f'c{k} = {{ shape = ["n"], dtype = "{{dtype}}" }}' for k in range(len(ARRAY_FNS))),
    "", "[graph]", 'out = "' + " + ".join(f"sum(c{k} * {f})" for k, f in enumerate(ARRAY_FNS)) + '"',
    "", "[output]", 'value = "out"',
    "wrt = [" + ", ".join(f'"x{k}"' for k in range(14)) + ", " + ", ".join(f'"c{k}"' for k in range(len(ARRAY_FNS))) + "]",
    ""])


def _reference():
    """Per function: (values, derivatives) at x, from scipy.special and mpmath."""
    def mp_vec(f):
        return np.vectorize(lambda t: float(f(mpmath.mpf(float(t)))))

    with mpmath.workdps(30):
        return [
            (lambda t: ss.gammaln(t), lambda t: ss.digamma(t), mp_vec(mpmath.loggamma), mp_vec(mpmath.digamma)),
            (ss.digamma, lambda t: ss.polygamma(1, t), mp_vec(mpmath.digamma), mp_vec(lambda u: mpmath.polygamma(1, u))),
            (lambda t: ss.polygamma(2, t), lambda t: ss.polygamma(3, t),
             mp_vec(lambda u: mpmath.polygamma(2, u)), mp_vec(lambda u: mpmath.polygamma(3, u))),
            (lambda t: ss.polygamma(5, t), lambda t: ss.polygamma(6, t),
             mp_vec(lambda u: mpmath.polygamma(5, u)), mp_vec(lambda u: mpmath.polygamma(6, u))),
        ]


def _points(rng, n=64):
    pos = np.concatenate([rng.uniform(0.05, 25.0, n - 8), [1e-5, 0.5, 1.0, 1.4616321449683622, 1.46, 2.0, 1e3, 1e7]])
    neg = np.concatenate([rng.uniform(-6.0, 0.0, n - 4), [-0.5, -1.25, -3.7, -1e-4]])
    return pos, neg


def test_array_helpers_match_scipy_and_mpmath():
    fn = compiled(ARRAY_SPEC.replace("{dtype}", "float64"))
    rng = np.random.default_rng(6)
    n = 64
    pos, neg = _points(rng, n)
    neg = neg[np.abs(neg - np.round(neg)) > 1e-3]               # away from the poles
    neg = np.resize(neg, n)
    xs = {f"x{k}": rng.uniform(-0.99, 0.99, n) for k in range(14)}
    xs.update(x0=pos, x1=pos, x2=neg, x3=pos, x4=np.concatenate([rng.uniform(-E1, 5, n - 4), [-E1 + 1e-9, 0, 1e-12, 1e300]]),
              x5=np.concatenate([rng.uniform(-30, 30, n - 4), [0.0, 1e-9, 0.5, -0.999]]),
              x6=rng.uniform(-6, 6, n), x7=rng.uniform(-6, 6, n), x8=rng.uniform(0.1, 20, n),
              x11=np.concatenate([rng.uniform(-1, 1, n - 1), [0.0]]),
              x12=rng.uniform(-10, 10, n), x13=np.where(rng.random(n) < 0.5, -1, 1) * rng.uniform(0.5, 3, n))
    cs = {f"c{k}": np.ones(n) for k in range(len(ARRAY_FNS))}
    names = [f"x{k}" for k in range(14)] + [f"c{k}" for k in range(len(ARRAY_FNS))]
    value, grads = fn.value_and_grad(*[{**xs, **cs}[a] for a in names])
    g = dict(zip(names, grads))
    # digamma family: against scipy and mpmath, values (grad wrt c) and derivatives (grad wrt x)
    inputs = {"c0": "x0", "c1": "x1", "c2": "x2", "c3": "x3"}
    for (cname, xname), (sv, sd, mv, md) in zip(inputs.items(), _reference()):
        t = xs[xname]
        for got, scipy_ref, mp_ref in ((g[cname], sv(t), mv(t)), (g[xname], sd(t), md(t))):
            # (loggamma's roots 1 and 2: the C library's lgamma is accurate to 1e-16 absolute there)
            np.testing.assert_allclose(got, mp_ref, rtol=1e-14 if xname != "x2" else 5e-14, atol=1e-16,
                                       err_msg=cname)
            np.testing.assert_allclose(got, scipy_ref, rtol=1e-12, err_msg=cname)
    # LambertW: W and W' = exp(-W)/(1 + W)
    t = xs["x4"]
    with mpmath.workdps(30):
        w = np.array([float(mpmath.lambertw(mpmath.mpf(float(u))).real) for u in t])
    np.testing.assert_allclose(g["c4"], w, rtol=1e-14, atol=1e-300)
    far = t > -E1 + 1e-6                                   # (scipy loses digits near the branch point)
    np.testing.assert_allclose(g["c4"][far], ss.lambertw(t[far]).real, rtol=1e-13)
    np.testing.assert_allclose(g["x4"][far], (np.exp(-w) / (1 + w))[far], rtol=1e-12)
    # sinc and its series near 0
    t = xs["x5"]
    with mpmath.workdps(30):
        dsinc = np.array([float(mpmath.diff(lambda u: mpmath.sinc(u), mpmath.mpf(float(u)))) for u in t])
    np.testing.assert_allclose(g["c5"], np.sinc(t / np.pi), rtol=1e-14)
    np.testing.assert_allclose(g["x5"], dsinc, rtol=1e-11, atol=1e-16)
    np.testing.assert_allclose(g["c6"], ss.erf(xs["x6"]), rtol=1e-14)
    np.testing.assert_allclose(g["c7"], ss.erfc(xs["x7"]), rtol=1e-13)
    np.testing.assert_allclose(g["c8"], ss.gamma(xs["x8"]), rtol=1e-13)
    np.testing.assert_allclose(g["x8"], ss.gamma(xs["x8"]) * ss.digamma(xs["x8"]), rtol=1e-12)
    np.testing.assert_allclose(g["c9"], np.arcsin(xs["x9"]), rtol=1e-15)
    np.testing.assert_allclose(g["c10"], np.arctanh(xs["x10"]), rtol=1e-15)
    np.testing.assert_array_equal(g["c11"], np.where(xs["x11"] > 0, 1.0, np.where(xs["x11"] < 0, 0.0, 0.25)))
    np.testing.assert_array_equal(g["x11"], 0.0)
    np.testing.assert_array_equal(g["c12"], np.mod(xs["x12"], xs["x13"]))
    np.testing.assert_array_equal(g["x13"], -np.floor(xs["x12"] / xs["x13"]))


def test_float32_arrays_stay_float32():
    fn = compiled(ARRAY_SPEC.replace("{dtype}", "float32"))
    rng = np.random.default_rng(7)
    n = 8
    names = [f"x{k}" for k in range(14)] + [f"c{k}" for k in range(len(ARRAY_FNS))]
    vals = {nm: (rng.uniform(0.2, 0.9, n) if nm[0] == "x" else np.ones(n)).astype(np.float32) for nm in names}
    value, grads = fn.value_and_grad(*[vals[nm] for nm in names])
    assert all(gr.dtype == np.float32 for gr in grads)
    g = dict(zip(names, grads))
    np.testing.assert_allclose(g["c1"], ss.digamma(vals["x1"].astype(float)), rtol=1e-5)
    np.testing.assert_allclose(g["x0"], ss.digamma(vals["x0"].astype(float)), rtol=1e-5)


def test_noncontiguous_array_through_a_helper():
    spec = "\n".join(["[model]", 'name = "t"', "[inputs]", "X = { shape = [3, 4] }", "[graph]",
                      'out = "sum(erf(transpose(X)) * digamma(transpose(X) + 2.0))"', "[output]", 'value = "out"',
                      'wrt = ["X"]'])
    fn = compiled(spec)
    X = np.linspace(0.1, 2.0, 12).reshape(3, 4)
    v, (g,) = fn.value_and_grad(X)
    assert v == pytest.approx(float(np.sum(ss.erf(X) * ss.digamma(X + 2))), rel=1e-14)
    want = 2 / np.sqrt(np.pi) * np.exp(-X * X) * ss.digamma(X + 2) + ss.erf(X) * ss.polygamma(1, X + 2)
    np.testing.assert_allclose(g, want, rtol=1e-13)


# ------------------------------------------------------------------ what is not supported says so
@pytest.mark.parametrize("expr, words", [
    (sp.LambertW(x, -1), ["LambertW", "principal branch"]),
    (sp.polygamma(sp.Symbol("n", integer=True), x), ["polygamma", "constant integer order"]),
    (sp.besselj(0, x), ["besselj", "docs/sympy_functions.md"]),
    (sp.zeta(x), ["zeta", "docs/sympy_functions.md"]),
    (sp.root(x, 3, 1), ["Pow", "real_root"]),
])
def test_unsupported_functions_name_the_class_and_the_way_out(expr, words):
    args = sorted(expr.free_symbols, key=lambda s: s.name)
    with pytest.raises(UnsupportedError) as e:
        build(expr, args=args)
    for w in words:
        assert w in str(e.value)


def test_functions_of_constants_fold():
    """A spec's function of a number is folded to a constant (Python's math in the op table)."""
    spec = "\n".join(["[model]", 'name = "t"', "[inputs]", "x = { shape = [] }", "[graph]",
                      'out = "x * (asin(0.5) + atan2(1.0, 2.0) + floor(2.5) + mod(5.5, 2.0) + erf(0.5) + sinc(0.0))"',
                      "[output]", 'value = "out"', 'wrt = ["x"]'])
    fn = compiled(spec)
    want = math.asin(0.5) + math.atan2(1, 2) + 2 + 1.5 + math.erf(0.5) + 1
    v, (g,) = fn.value_and_grad(2.0)
    assert g == pytest.approx(want, rel=1e-15)
    assert "arcsin" not in open(fn.path).read()


def test_every_function_has_a_spec_spelling():
    """Each op of compiler/ops/functions.py (but the adjoint helpers) is spelled in spec expressions."""
    from gradc.frontends.exprlang import FUNCTIONS
    from gradc.ops import OPS

    ops = {name for name, op in OPS.items() if op.family == "functions" and not name.endswith("_vjp")}
    calls = {"atan2": "atan2(x, x + 1.0)", "mod": "mod(x, 0.5 + x * x)", "polygamma": "polygamma(x, 2)",
             "heaviside": "heaviside(x, 1.0)", "loggamma": "lgamma(x)", "ceil": "ceil(x)"}
    spelled = [calls.get(op, f"{op}(x)") for op in sorted(ops)]
    assert all(c.split("(")[0] in FUNCTIONS for c in spelled)
    spec = "\n".join(["[model]", 'name = "t"', "[inputs]", "x = { shape = [3] }", "[graph]",
                      'out = "sum(' + " + ".join(spelled) + ')"', "[output]", 'value = "out"', 'wrt = ["x"]'])
    art = build(spec)
    reached = {s.op for s in art.full.stmts}
    assert ops <= reached, sorted(ops - reached)
    assert {"sinc_vjp", "lambertw_vjp"} <= reached
