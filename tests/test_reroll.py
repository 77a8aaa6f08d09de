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


# --------------------------------------------------------------------------- coincidences among the constants
# Whether a sum re-rolls must not depend on its numbers: SymPy builds one node for a subexpression
# that several terms share because their constants coincide, merges identical terms (t + t = 2·t),
# drops a coefficient 1 and pulls signs out of odd functions. Each case below has one such
# coincidence (or several) and must still become one loop; the gradient is checked against
# sympy.diff, evaluated numerically.

def rounded_expr(K, seed=7):
    """benchmarks/cases.py's rounded variant: sum_k sin(a_k x + b_k y) exp(-c_k z^2) + tanh(x y - k/100)
    with a ~ U(0.5, 2), b ~ U(-1.5, 1.5), c ~ U(0.1, 1) rounded to 3 decimals (repeated values)."""
    rng = np.random.default_rng(seed)
    a, b, c = (np.round(rng.uniform(lo, hi, K), 3) for lo, hi in ((0.5, 2.0), (-1.5, 1.5), (0.1, 1.0)))
    x, y, z = sp.symbols("x y z")
    expr = sp.Add(*[sp.sin(sp.Float(float(a[i])) * x + sp.Float(float(b[i])) * y)
                    * sp.exp(-sp.Float(float(c[i])) * z ** 2) + sp.tanh(x * y - sp.Rational(i + 1, 100))
                    for i in range(K)])
    return expr, [x, y, z], (a, b, c)


def tables_and_ops(expr, args):
    """The optimized primal IR of ``expr``: its constant tables and the ops of its other statements."""
    fn = build(expr, args).primal
    tables = [s.attr["value"] for s in fn.stmts if s.op == "const" and isinstance(s.attr["value"], tuple)]
    return tables, [s.op for s in fn.stmts if s.op != "const"]


def check_against_sympy(expr, args, points):
    """gradc's value and gradient against sympy.diff, lambdified (an independent oracle)."""
    f = gradc.compile(expr, args=args)
    ref = sp.lambdify(args, [expr] + [sp.diff(expr, a) for a in args], "math")
    for pt in points:
        v, g = f.value_and_grad(*pt)
        want = ref(*pt)
        assert v == pytest.approx(want[0], rel=1e-12, abs=1e-12)
        assert f.forward(*pt) == pytest.approx(want[0], rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(g, want[1:], rtol=1e-10, atol=1e-11)


def test_rounded_coefficients_reroll_like_the_full_precision_ones():
    expr, args, (a, b, c) = rounded_expr(200)
    assert len(set(a)) < 200 and len(set(c)) < 200          # the coincidences this is about
    tables, ops = tables_and_ops(expr, args)
    assert len(tables) >= 4 and all(len(t) == 200 for t in tables)   # a, b, c and k/100 at least
    assert ops.count("sin") == 1 and ops.count("tanh") == 1 and ops.count("exp") == 1
    assert len(ops) < 30                                      # not ~3,000 straight-line statements
    check_against_sympy(expr, args, [(0.3, -0.2, 0.5), (-1.1, 0.7, -0.4)])


def _coincidence_cases():
    x, y, z = sp.symbols("x y z")
    F = lambda v: sp.Float(v)  # noqa: E731
    K = 12
    shared = [F(1.25 if k % 3 == 0 else 0.5 + 0.1 * k) for k in range(K)]      # a_k repeated: a·x shared
    cs = [F(0.5 if k % 2 else 0.25 + 0.05 * k) for k in range(K)]              # c_k repeated: exp shared
    return {
        "repeated coefficient (shared a*x)":
            (sp.Add(*[sp.sin(shared[k] * x + F(0.1 * k - 0.45) * y) for k in range(K)]), [x, y], "sin"),
        "repeated factor (shared exp)":
            (sp.Add(*[sp.cos(F(0.2 * k) * x) * sp.exp(-cs[k] * z ** 2) for k in range(K)]), [x, z], "cos"),
        "identical terms merged (t + t = 2t)":
            (sp.Add(*[sp.sin(F(0.3 * (k % 9) + 0.1) * x + y) for k in range(K)]), [x, y], "sin"),
        "coefficient 1 dropped, integers, rationals":
            (sp.Add(*[w * sp.tanh(q * x - y) for w, q in zip(
                [1, 2, sp.Rational(1, 2), F(1.0), -1, 3, F(0.75), sp.Rational(3, 4), 1, F(2.0), 5, -2],
                [1, F(1.0), sp.Rational(1, 3), 2, F(1.5), 1, 3, F(0.5), sp.Rational(5, 4), 1, 2, 7])]),
             [x, y], "tanh"),
        "signs pulled out of sin, constant summand 0":
            (sp.Add(*[sp.sin(F(0.4 * k - 2.1) * x + sp.Rational(k - 4, 10)) for k in range(K)]), [x], "sin"),
        "quotients with coefficient 1 dropped":
            (sp.Add(*[p * x / (q * y ** 2 + 1) for p, q in zip(
                [1, 2, F(0.5), 1, 3, F(1.0), -1, 2, F(0.25), 4, 1, -3],
                [1, F(2.0), sp.Rational(1, 2), 3, 1, F(0.7), 2, 1, 5, F(1.0), sp.Rational(2, 3), 6])]),
             [x, y], "div"),
    }


@pytest.mark.parametrize("case", list(_coincidence_cases()))
def test_coincidences_among_constants_still_reroll(case):
    expr, args, op = _coincidence_cases()[case]
    tables, ops = tables_and_ops(expr, args)
    assert tables and ops.count(op) == 1, (case, ops)     # every term in the one loop
    assert ops.count("sum") == 1
    check_against_sympy(expr, args, [(0.3, -0.2, 0.5)[:len(args)], (-1.1, 0.7, -0.4)[:len(args)]])


def test_a_term_sympy_reshaped_stays_alone_and_the_rest_rolls():
    # b_5 = 0: SymPy drops the summand 0·y, so that term is not like the others; it stays
    # unrolled beside the loop over the other eleven
    x, y = sp.symbols("x y")
    expr = sp.Add(*[sp.sin(sp.Float(0.5 + 0.1 * k) * x + sp.Float(0.0 if k == 5 else 0.2 * k - 1.1) * y)
                    for k in range(12)])
    tables, ops = tables_and_ops(expr, [x, y])
    assert ops.count("sin") == 2 and ops.count("sum") == 1 and all(len(t) == 11 for t in tables)
    check_against_sympy(expr, [x, y], [(0.3, -0.2), (-1.1, 0.7)])


def test_reroll_leaves_its_input_untouched():
    expr, args, _ = rounded_expr(40)
    from gradc.pipeline import lower
    from gradc.passes import reroll
    fn = lower(expr, args, None, None).fn
    before = [(s.op, s.out.name, tuple(a.name for a in s.args), tuple(s.attrs)) for s in fn.stmts]
    out = reroll(fn)
    assert out is not fn and len(out.stmts) < len(fn.stmts) // 10
    assert [(s.op, s.out.name, tuple(a.name for a in s.args), tuple(s.attrs)) for s in fn.stmts] == before


def test_a_large_shared_subexpression_is_a_leaf_of_every_term():
    # g (about 600 nodes, more than a term may hold) is used by every term: it is computed once,
    # outside the loop, and the terms around it still roll
    x, y = sp.symbols("x y", real=True)       # real: SymPy's cos(... tanh(...)) stays quick
    g = sp.tanh(sp.Add(*[sp.sin(sp.Float(0.01 * j) * x + y) for j in range(1, 120)]))
    expr = sp.Add(*[sp.cos(sp.Float(0.3 + 0.1 * k) * g + sp.Float(0.2 * k - 0.9) * y) for k in range(12)])
    tables, ops = tables_and_ops(expr, [x, y])
    assert ops.count("cos") == 1 and ops.count("tanh") == 1 and ops.count("sum") == 1
    assert len(tables) == 2 and all(len(t) == 12 for t in tables)
    f, ref = gradc.compile(expr, args=[x, y]), sp.lambdify([x, y], expr, "math")
    h = 1e-6
    for pt in [(0.3, -0.2), (-1.1, 0.7)]:
        v, grad = f.value_and_grad(*pt)
        assert v == pytest.approx(ref(*pt), rel=1e-12)
        fd = [(ref(*(p + h * (i == j) for j, p in enumerate(pt))) - ref(*(p - h * (i == j) for j, p in enumerate(pt))))
              / (2 * h) for i in range(2)]              # central differences of SymPy's value
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)
