"""Arrays from SymPy: explicit Matrix, MatrixSymbol algebra with Trace and applyfunc,
MatrixElement, and IndexedBase with Sum lowered to slices and a reduction.

Oracle: ``sympy.diff`` of the scalar-expanded expression (``as_explicit()`` for
matrix expressions, ``doit()`` for Sums), evaluated by ``lambdify`` with every
array entry replaced by a plain symbol; never gradc's own output.
"""
import numpy as np
import pytest
import sympy as sp
from conftest import compiled
from sympy.matrices.expressions.matexpr import MatrixElement

import gradc
from gradc.pipeline import build

a, b = sp.symbols("a b")
X = sp.MatrixSymbol("X", 3, 3)
W = sp.MatrixSymbol("W", 2, 3)
i, j = sp.symbols("i j", integer=True)
x6 = sp.IndexedBase("x", shape=(6,))
A = sp.IndexedBase("A", shape=(3, 4))
y4 = sp.IndexedBase("y", shape=(4,))


def entries(arg):
    """The scalar SymPy entries of an argument, in C order."""
    if isinstance(arg, sp.Symbol):
        return [arg]
    if isinstance(arg, sp.MatrixSymbol):
        return [arg[r, c] for r in range(arg.shape[0]) for c in range(arg.shape[1])]
    return [arg[idx] for idx in np.ndindex(*(int(d) for d in arg.shape))]


def scalar_form(expr):
    """``expr`` written as one SymPy scalar in the arguments' entries."""
    if isinstance(expr, (sp.MatrixBase, sp.MatrixExpr)):
        m = expr.as_explicit() if isinstance(expr, sp.MatrixExpr) else expr
        assert m.shape == (1, 1)
        expr = m[0, 0]
    expr = expr.replace(lambda e: isinstance(e, sp.Trace), lambda e: e.arg.as_explicit().trace())
    expr = expr.replace(lambda e: isinstance(e, MatrixElement) and not isinstance(e.parent, sp.MatrixSymbol),
                        lambda e: e.parent.as_explicit()[e.i, e.j])
    return expr.doit()


def oracle(expr, args, vals):
    """Value and gradients (shaped like the arguments) by sympy.diff + lambdify."""
    s = scalar_form(expr)
    ents = [e for arg in args for e in entries(arg)]
    plain = sp.symbols(f"e0:{len(ents)}")
    s = s.xreplace(dict(zip(ents, plain)))
    flat = [float(v) for val in vals for v in np.ravel(val)]
    value = float(sp.lambdify(plain, s, "mpmath")(*flat))
    grads_flat = [float(sp.lambdify(plain, sp.diff(s, p), "mpmath")(*flat)) for p in plain]
    grads, k = [], 0
    for val in vals:
        n = np.size(val)
        grads.append(np.reshape(grads_flat[k:k + n], np.shape(val)) if np.ndim(val) else grads_flat[k])
        k += n
    return value, grads


def random_args(args, seed=0, lo=0.2, hi=1.2):
    rng = np.random.default_rng(seed)
    return [rng.uniform(lo, hi) if isinstance(arg, sp.Symbol)
            else rng.uniform(lo, hi, size=tuple(int(d) for d in arg.shape)) for arg in args]


def check(expr, args, seeds=(0, 1)):
    f = compiled(expr, args=args)
    for seed in seeds:
        vals = random_args(args, seed)
        value, grads = f.value_and_grad(*vals)
        want_value, want_grads = oracle(expr, args, vals)
        assert value == pytest.approx(want_value, rel=1e-12, abs=1e-12)
        for g, w, arg in zip(grads, want_grads, args):
            assert np.shape(g) == np.shape(w), arg
            np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-11, err_msg=str(arg))
    return f


def ops_of(expr, args):
    art = build(expr, args=args)
    return [s.op for s in art.primal.stmts], [s.op for s in art.full.stmts]


# ------------------------------------------------------------------ MatrixSymbol algebra
CASES = {
    "trace": (sp.Trace(X.T * X) * a + sp.Trace(X), [X, a]),
    "applyfunc_sin": (sp.ones(1, 3) * X.applyfunc(sp.sin) * sp.ones(3, 1), [X]),
    "applyfunc_special": (sp.Trace(X.applyfunc(sp.erf)) + (sp.ones(1, 3) * X.applyfunc(sp.atan) * sp.ones(3, 1))[0, 0],
                          [X]),                # functions of the op table work on arrays too
    "applyfunc_lambda": (sp.Trace(X.applyfunc(sp.Lambda(b, a * b ** 2 + sp.exp(-b)))), [X, a]),
    "matpow_hadamard": (sp.ones(1, 3) * (a * X ** 2 + sp.HadamardProduct(X, X.T)) * sp.ones(3, 1), [X, a]),
    "explicit_matrix": (sp.ones(1, 2) * sp.Matrix([[2 * X[0, 0], X[1, 2] * a],
                                                   [sp.pi, sp.sin(x6[3])]]).applyfunc(sp.exp) * sp.ones(2, 1),
                        [a, X, x6]),
    "matrix_times_symbol": (sp.Trace(sp.Matrix([[1, a], [0, 2]]) * W * X * W.T), [W, X, a]),
    "element_of_product": ((W * X)[1, 2] * (X.T * X)[0, 0], [X, W]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matrix_expressions_against_sympy_diff(name):
    expr, args = CASES[name]
    check(expr, args)


def test_applyfunc_uses_the_scalar_ops_on_the_array():
    primal, _ = ops_of(*CASES["applyfunc_sin"])
    assert "sin" in primal and "element" not in primal           # one sin on the 3x3 array


def test_trace_adjoint_is_g_times_identity():
    _, full = ops_of(sp.Trace(X), [X])
    assert "trace" in full and "eye" in full


def test_mutable_matrix_result_reduced_by_the_user():
    """A mutable sympy.Matrix (not a SymPy Basic) is accepted; its 1x1 result becomes a scalar."""
    expr = sp.Matrix([[a, b]]) * sp.Matrix([[a], [2 * b]])
    f = gradc.compile(expr, args=[a, b])
    assert f.value_and_grad(3.0, 2.0) == (pytest.approx(17.0), (pytest.approx(6.0), pytest.approx(8.0)))


def test_matrix_valued_result_has_a_forward_and_a_jacobian_but_no_gradient():
    """Issue 11: an array result compiles (it used to be refused): forward gives 2 X, the
    Jacobian of 2 X w.r.t. X is 2 times the identity on the 9 entries (worked by hand), and
    value_and_grad says why there is none."""
    f = gradc.compile(2 * X, args=[X])
    x = np.arange(9.0).reshape(X.shape)
    np.testing.assert_array_equal(f.forward(x), 2 * x)
    (J,) = f.jacobian(x)
    np.testing.assert_array_equal(J.reshape(x.size, x.size), 2 * np.eye(x.size))
    with pytest.raises(gradc.GradcError, match="not a float scalar"):
        f.value_and_grad(x)


def test_inverse_is_unsupported():
    with pytest.raises(gradc.UnsupportedError, match="Inverse"):
        build(sp.Trace(X.I), args=[X])


# ------------------------------------------------------------------ IndexedBase and Sum
def rosenbrock(x, n):
    return sp.Sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2, (i, 0, n - 2))


SUMS = {
    "rosenbrock": (rosenbrock(x6, 6), [x6]),
    "concrete_element": (sp.Sum((x6[i] - x6[0]) ** 2 * a, (i, 1, 4)) + x6[5], [a, x6]),
    "double_sum": (sp.Sum(A[i, j] * y4[j] ** 2 + a, (j, 0, 3), (i, 0, 2)), [A, y4, a]),
    "nested_sum_transposed": (sp.Sum(sp.Sum(A[i, j] * sp.exp(-x6[i + 2]), (i, 0, 2)), (j, 1, 3)), [A, x6]),
    "repeated_terms": (sp.Sum(y4[j] * b, (i, 0, 2), (j, 0, 3)), [y4, b]),
    "index_as_number": (sp.Sum(sp.Rational(1, 3) * i * x6[i] ** 2 + A[j, i] / (i + 1), (i, 1, 3), (j, 0, 2)),
                        [x6, A]),
}


@pytest.mark.parametrize("name", sorted(SUMS))
def test_sums_against_sympy_diff(name):
    expr, args = SUMS[name]
    check(expr, args)


def test_least_squares_sum_is_not_unrolled():
    """Sum((y[i] - a x[i] - b)^2, (i, 0, 249)): a handful of array statements, gradients
    equal to the closed form -2 Σ r·x, -2 Σ r (r the residuals)."""
    x = sp.IndexedBase("x", shape=(250,))
    y = sp.IndexedBase("y", shape=(250,))
    expr = sp.Sum((y[i] - a * x[i] - b) ** 2, (i, 0, 249))
    art = build(expr, args=[x, y, a, b])
    assert len(art.primal.stmts) < 12 and len(art.full.stmts) < 40
    f = compiled(expr, args=[x, y, a, b])
    rng = np.random.default_rng(3)
    xv, yv = rng.normal(size=250), rng.normal(size=250)
    value, (gx, gy, ga, gb) = f.value_and_grad(xv, yv, 0.7, -0.2)
    r = yv - 0.7 * xv + 0.2
    assert value == pytest.approx(np.sum(r ** 2), rel=1e-13)
    assert ga == pytest.approx(-2 * np.sum(r * xv), rel=1e-12)
    assert gb == pytest.approx(-2 * np.sum(r), rel=1e-12)
    np.testing.assert_allclose(gx, -2 * 0.7 * r, rtol=1e-12)
    np.testing.assert_allclose(gy, 2 * r, rtol=1e-12)


def test_rosenbrock_of_250_lowers_to_slices():
    x = sp.IndexedBase("x", shape=(250,))
    primal, _ = ops_of(rosenbrock(x, 250), [x])
    assert primal.count("slice") == 2 and "element" not in primal and primal.count("sum") == 1


@pytest.mark.parametrize("expr, match", [
    (sp.Sum(x6[2 * i], (i, 0, 2)), r"x\[2\*i\]"),
    (sp.Sum(x6[i] * y4[j], (i, 0, 3), (j, 0, 3)), "do not broadcast"),
    (sp.Sum(i * x6[i] * y4[j], (i, 0, 3), (j, 0, 3)), "do not broadcast"),
    (sp.Sum(x6[i], (i, 0, b)), "concrete nonempty ranges"),
    (sp.Sum(x6[i + 1], (i, 0, 5)), "outside the shape"),
    (x6[7], "out of range"),
    (x6[i], "enclosing Sum"),
])
def test_unsupported_index_forms(expr, match):
    with pytest.raises(gradc.UnsupportedError, match=match):
        build(expr, args=[x6, y4, b] if expr.has(y4) else [x6, b])


def test_indexedbase_needs_a_concrete_shape():
    with pytest.raises(gradc.UnsupportedError, match="shape="):
        build(sp.IndexedBase("z")[0], args=[sp.IndexedBase("z")])


def test_mixed_arguments_keep_their_order_and_shapes():
    expr = a * sp.Sum(x6[i] ** 2, (i, 0, 5)) + sp.Trace(W.T * W) * b
    args = [x6, b, W, a]
    f = check(expr, args, seeds=(4,))
    assert f.arg_names == ("x", "b", "W", "a")
    _, grads = f.value_and_grad(*random_args(args, 4))
    assert [np.shape(g) for g in grads] == [(6,), (), (2, 3), ()]
