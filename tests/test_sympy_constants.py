"""SymPy constants (exact Rationals, pi, E, ..., oo) and rich Piecewise.

Oracles: ``sympy.diff`` evaluated with mpmath (``lambdify``), exact SymPy
arithmetic, and plain Python math; never gradc's own output.
"""
import math

import numpy as np
import pytest
import sympy as sp
from conftest import compiled

import gradc
from gradc.pipeline import build

x, y = sp.symbols("x y")


def sympy_value_and_grad(expr, args, point):
    env = dict(zip(args, point))
    f = sp.lambdify(args, expr, "mpmath")
    grads = [float(sp.lambdify(args, sp.diff(expr, a), "mpmath")(*point)) for a in args]
    return float(f(*point)), grads, env


# ------------------------------------------------------------------ exact constants
def test_rationals_fold_exactly():
    """1/10 + 1/5 folds to 3/10 exactly (in floats 0.1 + 0.2 = 0.30000000000000004)."""
    expr = sp.Mul(sp.Add(sp.Rational(1, 10), sp.Rational(1, 5), evaluate=False), x, evaluate=False)
    art = build(expr, args=[x])
    assert "const 3/10" in art.show("ir")
    f = compiled(expr, args=[x])
    value, (g,) = f.value_and_grad(1.0)
    assert g == float(sp.Rational(3, 10)) == 0.3 and value == 0.3


def test_rational_exponent_derivative_is_exact():
    """d x^(2/3) = 2/3 x^(-1/3): the exponent -1/3 is rendered from the exact Fraction, not
    from 0.6666666666666666 - 1.0 = -0.33333333333333337."""
    expr = x ** sp.Rational(2, 3)
    code = build(expr, args=[x]).code
    assert "** -0.3333333333333333\n" in code or "** (-0.3333333333333333)" in code
    assert "0.33333333333333337" not in code
    f = compiled(expr, args=[x])
    for p in (0.3, 1.7, 8.0):
        value, (g,) = f.value_and_grad(p)
        want_v, (want_g,), _ = sympy_value_and_grad(expr, [x], [p])
        assert value == pytest.approx(want_v, rel=1e-15) and g == pytest.approx(want_g, rel=1e-15)


def test_rational_times_three_is_x():
    expr = sp.Mul(sp.Rational(1, 3), x, 3, evaluate=False) + sp.Mul(sp.Rational(1, 3), 3, y, evaluate=False)
    f = compiled(expr, args=[x, y])
    value, grads = f.value_and_grad(0.1, 0.7)
    assert grads == (pytest.approx(1.0, rel=1e-15), 1.0)          # 1/3 * 3 folds to exactly 1


def test_number_symbols():
    expr = sp.pi * x + sp.E * x ** 2 + sp.EulerGamma + sp.GoldenRatio * sp.sin(x) + sp.Catalan * x ** 3
    f = compiled(expr, args=[x])
    for p in (-0.5, 1.3):
        value, (g,) = f.value_and_grad(p)
        want_v, (want_g,), _ = sympy_value_and_grad(expr, [x], [p])
        assert value == pytest.approx(want_v, rel=1e-14) and g == pytest.approx(want_g, rel=1e-14)


# ------------------------------------------------------------------ oo
def test_infinity_in_comparisons():
    expr = sp.Piecewise((x ** 2, sp.And(x > -sp.oo, x < 3)), (x, x < sp.oo), (0, True))
    assert expr.has(sp.oo)
    f = compiled(expr, args=[x])
    assert f.value_and_grad(2.0) == (4.0, (4.0,))
    assert f.value_and_grad(5.0) == (5.0, (1.0,))
    assert f.value_and_grad(math.inf)[0] == 0.0


@pytest.mark.parametrize("expr, match", [
    (sp.Piecewise((sp.oo, x < 0), (x, True)), "oo"),
    (x * sp.zoo, "ComplexInfinity"),
    (x + sp.nan, "NaN"),
    (sp.I * x, "ImaginaryUnit"),
])
def test_non_finite_values_are_errors(expr, match):
    with pytest.raises(gradc.UnsupportedError, match=match):
        build(expr, args=[x])


# ------------------------------------------------------------------ Piecewise
FIVE = sp.Piecewise(
    (sp.exp(x) * y, sp.And(x < -1, y > 0)),
    (x * y ** 2, sp.Or(x < -1, sp.Not(y < 2))),
    (sp.sin(x * y), x <= 0),
    (x ** 3 - y, sp.And(x > 1, sp.Not(sp.Or(y < -1, y > 1)))),
    (x + y, True))


@pytest.mark.parametrize("point", [(-2.0, 0.5), (-2.0, -0.5), (0.5, 3.0), (-0.5, 0.3), (2.0, 0.2), (0.5, 0.0)])
def test_five_branches_evaluated_in_order(point):
    f = compiled(FIVE, args=[x, y])
    value, grads = f.value_and_grad(*point)
    want_v, want_g, env = sympy_value_and_grad(FIVE, [x, y], list(point))
    assert value == pytest.approx(want_v, rel=1e-14)
    assert list(grads) == pytest.approx(want_g, rel=1e-14)


def test_untaken_log_branch_leaks_no_nan():
    expr = sp.Piecewise((sp.log(x) + sp.sqrt(x), x > 0), (x ** 2, True))
    f = compiled(expr, args=[x])
    assert f.value_and_grad(-3.0) == (9.0, (-6.0,))
    value, (g,) = f.value_and_grad(4.0)
    assert value == pytest.approx(math.log(4) + 2) and g == pytest.approx(0.25 + 0.25)


def test_piecewise_without_true_branch_is_nan_where_nothing_holds():
    """SymPy's value where no condition holds is nan; gradients where a branch holds are exact."""
    expr = sp.Piecewise((x, x > 0), (x ** 2, x < -1))
    f = compiled(expr, args=[x])
    assert np.isnan(f.value_and_grad(-0.5)[0]) and np.isnan(float(expr.subs(x, -0.5)))
    assert f.value_and_grad(2.0) == (2.0, (1.0,))
    assert f.value_and_grad(-2.0) == (4.0, (-4.0,))
