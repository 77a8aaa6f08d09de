"""Large sums compile in pieces: like terms re-roll into loops (gradc.passes.reroll, also
when SymPy writes them with different signs, operand orders and number types), unlike
terms are split into parts (gradc.passes.split), each its own jitted helper.

Numba compiles only small modules here: the big ones are checked on their structure,
and the 300-term one's numbers by running its module as plain Python (Numba's JIT off).
"""
import math
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
import sympy as sp

import gradc
import gradc.passes.split as split_pass
from gradc.pipeline import build

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.lowering import fit_expression, unlike_expression  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "cache"))


def run_python(code: str) -> dict:
    """The generated module executed as plain Python (every njit a no-op): its namespace."""
    old = numba.config.DISABLE_JIT
    numba.config.DISABLE_JIT = True
    try:
        ns: dict = {"__name__": "gradc_generated"}
        exec(compile(code, "<generated>", "exec"), ns)
    finally:
        numba.config.DISABLE_JIT = old
    return ns


def sympy_reference(expr, args, point, wrt=None):
    """Value and gradient (w.r.t. ``wrt``, default all ``args``) from sympy.diff, evaluated in
    floating point term by term (SymPy differentiates a sum of hundreds of terms slowly)."""
    terms = expr.args if isinstance(expr, sp.Add) else (expr,)
    wrt = args if wrt is None else wrt
    f = sp.lambdify(args, [[t] + [sp.diff(t, a) for a in wrt] for t in terms], "math")
    out = f(*point)
    total = [math.fsum(row[i] for row in out) for i in range(len(wrt) + 1)]
    return total[0], total[1:]


def body(code: str, name: str) -> str:
    return code.split(f"def {name}(")[1].split("\n@numba")[0]


def test_unlike_terms_are_split_into_parts_with_the_right_gradient():
    expr, args = unlike_expression(300)
    art = build(expr, args)
    assert len(art.parts) >= 4
    assert art.code == build(expr, args).code                       # deterministic
    assert sum(count for _, _, _, count in art.parts) == 300        # every summand in one part
    for k, (forward, full, first, count) in enumerate(art.parts):
        assert f"def _part_{k}(" in art.code and f"def _part_{k}_forward(" in art.code
        assert sum(1 for s in forward.stmts if s.op != "const") <= 2 * split_pass.PART_STMTS
        assert full.wrt == art.lowered.wrt
    vg = body(art.code, "value_and_grad")
    assert vg.count("= _part_") == len(art.parts) and len(vg.splitlines()) < 400
    point = [0.1 * (i + 1) for i in range(len(args))]
    ns = run_python(art.code)
    value, grads = ns["value_and_grad"](*point)
    some = [0, 3, 5]                                                # sympy.diff at 3 of the 6
    want, want_grads = sympy_reference(expr, args, point, [args[i] for i in some])
    assert value == pytest.approx(want, rel=1e-12)
    assert ns["forward"](*point) == pytest.approx(value, rel=1e-14)
    np.testing.assert_allclose([grads[i] for i in some], want_grads, rtol=1e-11)
    # unsplit (roll=False, as gradc explain builds, or split=False): one function, same numbers
    for unsplit in (build(expr, args, roll=False), build(expr, args, split=False)):
        assert not unsplit.parts and "_part_" not in unsplit.code
    v2, g2 = run_python(build(expr, args, split=False).code)["value_and_grad"](*point)
    assert v2 == pytest.approx(value, rel=1e-13)
    np.testing.assert_allclose(g2, grads, rtol=1e-12)


def test_split_module_compiles_and_runs_with_numba():
    small = gradc.Options(split_stmts=40)                          # small parts: a small module
    expr, args = unlike_expression(24, seed=3)
    f = gradc.compile(expr, args=args, name="split24", options=small)
    assert f.source.count("def _part_") >= 6                     # at least 3 parts, 2 helpers each
    point = [0.3 - 0.1 * i for i in range(len(args))]
    value, grads = f.value_and_grad(*point)
    want, want_grads = sympy_reference(expr, args, point)
    assert value == pytest.approx(want, rel=1e-12)
    assert f.forward(*point) == pytest.approx(value, rel=1e-14)
    np.testing.assert_allclose(grads, want_grads, rtol=1e-11)


def test_split_with_array_arguments_and_value_and_grad_into():
    small = gradc.Options(split_stmts=16)
    W = sp.MatrixSymbol("W", 3, 3)
    x, y = sp.symbols("x y")
    rng = np.random.default_rng(1)
    fs = [sp.sin, sp.cos, sp.exp, sp.tanh, sp.atan]
    terms = []
    for _ in range(5):
        i, j, k = (int(t) for t in rng.integers(0, 3, 3))
        g = fs[int(rng.integers(0, 5))]
        terms.append(g(sp.Float(round(float(rng.uniform(0.2, 1.5)), 3)) * W[i, j] * x
                       + W[j, k] * y ** int(rng.integers(1, 4))))
    expr = sp.Add(*terms)
    f = gradc.compile(expr, args=[W, x, y], name="split_into", options=small)
    assert f.source.count("def _part_") >= 4 and "def value_and_grad_into(" in f.source
    Wv, xv, yv = rng.uniform(-0.5, 0.5, (3, 3)), 0.3, -0.4
    value, (gW, gx, gy) = f.value_and_grad(Wv, xv, yv)
    sub = {x: xv, y: yv, **{W[i, j]: Wv[i, j] for i in range(3) for j in range(3)}}
    assert value == pytest.approx(float(expr.subs(sub)), rel=1e-12)
    assert gx == pytest.approx(float(sp.diff(expr, x).subs(sub)), rel=1e-11)
    assert gW[0, 1] == pytest.approx(float(sp.diff(expr, W[0, 1]).subs(sub)), rel=1e-11, abs=1e-14)
    out = np.full((3, 3), np.nan)
    v2, scalars = f.raw.value_and_grad_into(Wv, xv, yv, out)
    assert v2 == value and scalars == (gx, gy)
    np.testing.assert_array_equal(out, gW)


def test_least_squares_sum_rolls_into_one_loop():
    """The benchmark's least-squares sum (16k SymPy nodes): SymPy writes its terms with
    different signs and operand orders, yet they re-roll into one loop; no Numba here."""
    for n in (22, 352):
        expr, args = fit_expression(n)
        art = build(expr, args)
        assert not art.parts
        assert sum(1 for s in art.primal.stmts if s.op == "sum") == 1
        assert sum(1 for s in art.primal.stmts if s.op != "const") < 60
        vg = body(art.code, "value_and_grad")
        assert vg.count("for _i in range(") == 1 and f"for _i in range({n}):" in vg
        assert len(vg.splitlines()) < 150
    expr, args = fit_expression(22)                                 # a small one through Numba
    point = (0.3, -0.2, 0.5, 0.1, 0.4)
    value, grads = gradc.compile(expr, args=args, name="fit22").value_and_grad(*point)
    want, want_grads = sympy_reference(expr, args, point)
    assert value == pytest.approx(want, rel=1e-11)
    np.testing.assert_allclose(grads, want_grads, rtol=1e-10)


def test_reroll_sees_through_signs_operand_order_and_number_types():
    """Terms SymPy canonicalizes differently (a data value's sign flips sub/add, moves a
    minus sign out of sin, reorders a sum by its coefficients; Integer beside Float) still
    make one group; the re-rolled sum has the right value and gradient."""
    a, b, c = sp.symbols("a b c")
    data = [sp.Float(v) for v in (-0.9, -0.35, 0.2, 0.75, -1.3)] + [sp.Integer(2), sp.Integer(-1), sp.Rational(1, 2)]
    data += [sp.Float(v) for v in np.linspace(-1.2, 1.1, 9)]
    terms = [(sp.Float(0.1 * k) - a * x ** 2 - b * x + c - sp.sin(a * x - b) * sp.exp(-c * x)) ** 2
             for k, x in enumerate(data)]
    expr = sp.Add(*terms)
    art = build(expr, [a, b, c])
    vg = body(art.code, "value_and_grad")
    assert vg.count("for _i in range(") == 1 and f"for _i in range({len(data)}):" in vg
    point = (0.4, -0.3, 0.2)
    value, grads = gradc.compile(expr, args=[a, b, c], name="signs").value_and_grad(*point)
    want, want_grads = sympy_reference(expr, [a, b, c], point)
    assert value == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(grads, want_grads, rtol=1e-11)


def test_small_and_non_sum_functions_are_not_split():
    x, y = sp.symbols("x y")
    small = sp.Add(*[sp.sin(sp.Float(0.1 * k) * x + y) * sp.exp(x * y / (k + 1)) for k in range(5)])
    assert not build(small, [x, y]).parts
    big_product = sp.Mul(*[(1 + sp.sin(sp.Float(0.01 * k) * x * y + x)) for k in range(150)])
    art = build(big_product, [x, y])
    assert not art.parts and "_part_" not in art.code
