"""Re-rolling (gradc.passes.reroll) and the loops codegen renders for it.

A long unrolled sum of like terms compiles to one loop over constant tables
(small code, fast Numba compile) and still gives the right value and gradient.
"""
import numpy as np
import pytest
import sympy as sp

import gradc
from gradc.pipeline import build


def big_expr(K, seed=2600):
    """sum_k sin(a_k x + b_k y) exp(-c_k z^2) + tanh(x y - k/100), as in benchmarks/cases.py."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(-1, 1, K), rng.uniform(-1, 1, K), rng.uniform(0.1, 1, K)
    x, y, z = sp.symbols("x y z")
    expr = sp.Add(*[sp.sin(sp.Float(a[i]) * x + sp.Float(b[i]) * y) * sp.exp(-sp.Float(c[i]) * z ** 2)
                    + sp.tanh(x * y - sp.Rational(i + 1, 100)) for i in range(K)])
    return expr, [x, y, z], (a, b, c)


def big_ref(K, coef, x, y, z):
    a, b, c = coef
    kk = np.arange(1.0, K + 1.0)
    u = a * x + b * y
    e = np.exp(-c * z * z)
    t = np.tanh(x * y - kk / 100.0)
    cu = np.cos(u) * e
    dt = 1.0 - t * t
    return (np.sum(np.sin(u) * e + t),
            (np.sum(cu * a + dt * y), np.sum(cu * b + dt * x), np.sum(np.sin(u) * e * (-2.0 * c * z))))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "cache"))


def test_large_sum_becomes_one_loop_and_is_correct():
    K = 400
    expr, args, coef = big_expr(K)
    f = gradc.compile(expr, args=args, name="big400")
    code = f.source
    body = code.split("def value_and_grad(")[1]
    assert body.count(f"for _i in range({K}):") == 1          # forward and adjoint in one loop
    assert len(body.splitlines()) < 80                         # not ~8,000 straight-line statements
    assert "_TABLE0 = np.array([" in code
    for point in [(0.3, -0.2, 0.5), (-1.1, 0.7, -0.4)]:
        v, g = f.value_and_grad(*point)
        rv, rg = big_ref(K, coef, *point)
        assert v == pytest.approx(rv, rel=1e-12)
        assert f.forward(*point) == pytest.approx(rv, rel=1e-12)
        np.testing.assert_allclose(g, rg, rtol=1e-11, atol=1e-11)
        # central differences of forward as an independent check
        h = 1e-6
        for i in range(3):
            p, m = list(point), list(point)
            p[i] += h
            m[i] -= h
            assert g[i] == pytest.approx((f.forward(*p) - f.forward(*m)) / (2 * h), rel=1e-6, abs=1e-6)


def test_reroll_is_deterministic_and_mixes_signs_and_other_terms():
    x, y = sp.symbols("x y")
    # terms subtracted and added (a negative coefficient becomes a sub), different constants,
    # and a few unlike terms that stay as they are
    terms = [sp.sin(sp.Float(0.1 * (k + 1)) * x + y) * sp.Float((k - 5.5) * (-1) ** k) for k in range(12)]
    expr = sp.Add(*terms) + sp.exp(x) + x * y
    a1, a2 = build(expr, [x, y]), build(expr, [x, y])
    assert a1.code == a2.code
    assert "for _i in range(" in a1.code
    f = gradc.compile(expr, args=[x, y])
    fx, fy = sp.diff(expr, x), sp.diff(expr, y)
    for pt in [(0.4, -0.3), (1.3, 2.0)]:
        v, g = f.value_and_grad(*pt)
        sub = {x: pt[0], y: pt[1]}
        assert v == pytest.approx(float(expr.evalf(subs=sub)), rel=1e-12)
        assert g[0] == pytest.approx(float(fx.evalf(subs=sub)), rel=1e-10)
        assert g[1] == pytest.approx(float(fy.evalf(subs=sub)), rel=1e-10)


def test_few_terms_are_not_rerolled():
    x, y = sp.symbols("x y")
    expr = sp.Add(*[sp.sin(sp.Float(0.5 + k) * x) for k in range(4)]) + y
    code = build(expr, [x, y]).code
    assert "for _i in" not in code and "_TABLE" not in code
