"""The IR: printer, verifier and the optimisation passes, on small hand-built functions.

Numbers are checked with a tiny NumPy interpreter of the IR written here
(independent of gradc's code generator), so no Numba compile is needed; the
expected numbers come from closed forms and finite differences.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from gradc import ShapeError, VerifyError
from gradc.ad import grad
from gradc.ir import Builder, Function, Namer, Stmt, Value, format_function, format_stmt, verify
from gradc.passes import cse, dce, fold_constants, optimize, simplify
from gradc.pipeline import build


# ------------------------------------------------------------------ a reference interpreter
def _sum_to(x, shape):
    x = np.asarray(x, dtype=float)
    while x.ndim > len(shape):
        x = x.sum(axis=0)
    return x if shape else float(x)


_NP = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "neg": np.negative,
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "relu": lambda x: np.maximum(x, 0.0),
    "abs": np.abs, "sign": np.sign, "maximum": np.maximum, "minimum": np.minimum, "pow": np.power,
    "gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal, "where": np.where,
    "matmul": np.matmul, "transpose": np.transpose, "outer": np.outer, "alias": lambda x: x,
}


def run_ir(fn: Function, *args):
    """Evaluate ``fn`` with NumPy; returns the list of its outputs."""
    env = {id(v): a for v, a in zip(fn.inputs, args)}
    for s in fn.stmts:
        a = [env[id(x)] for x in s.args]
        at = s.attr
        if s.op == "const":
            r = np.full(at["shape"], at["value"]) if at.get("shape") else at["value"]
        elif s.op == "powc":
            r = np.power(a[0], at["p"])
        elif s.op in ("sum", "mean"):
            r = getattr(np, s.op)(a[0], axis=at.get("axis"))
        elif s.op == "size":
            r = float(np.size(a[0]) if at.get("axis") is None else np.shape(a[0])[at["axis"]])
        elif s.op == "expand":
            g = a[0] if at.get("axis") is None else np.expand_dims(a[0], at["axis"])
            r = np.broadcast_to(g, np.shape(a[1])).copy()
        elif s.op == "sum_to":
            r = _sum_to(a[0], at["shape"])          # sums leading axes: only the rank matters
        else:
            r = _NP[s.op](*a)
        env[id(s.out)] = r
    return [env[id(v)] for v in fn.outputs]


def fd(f, x, eps=1e-6):
    x = np.array(x, dtype=float)
    g = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        g[idx] = (f(xp) - f(xm)) / (2 * eps)
    return g


def fresh(*inputs):
    """A builder whose namer already holds the input names."""
    b = Builder(Namer())
    for v in inputs:
        b.namer.claim(v.name)
    return b


def ops(fn):
    return [s.op for s in fn.stmts]


# ------------------------------------------------------------------ printer
def test_statement_format():
    x = Value("x", "f64", ("batch", 32))
    b = fresh(x)
    h2 = b.emit("mul", x, 2.0, name="h_2")
    h = b.emit("tanh", h2, name="h")
    assert h.name == "h" and h2.name == "h_2"
    assert format_stmt(b.stmts[-1]) == "%h:f64[batch,32] = tanh %h_2"
    assert format_stmt(b.stmts[0]) == "%c:f64[] = const 2.0"
    assert format_stmt(b.stmts[1]) == "%h_2:f64[batch,32] = mul %x, %c"
    s = b.emit("sum", h, axis=1, name="s")
    assert s.shape == ("batch",)
    assert format_stmt(b.stmts[-1]) == "%s:f64[batch] = sum %h {axis=1}"


def test_statement_format_with_location_and_note():
    x = Value("x", "f64", (3,))
    b = fresh(x)
    b.loc = "model.toml:7:5"
    b.note = "tanh: 1 - t^2"
    b.emit("exp", x, name="e")
    line = format_stmt(b.stmts[-1])
    assert line.startswith("%e:f64[3] = exp %x")
    assert line.endswith("; tanh: 1 - t^2  model.toml:7:5")


def test_function_format_one_statement_per_line_and_adjoint_marker():
    x = Value("x", "f64", ("n",))
    w = Value("w", "f64", ())
    b = fresh(x, w)
    t = b.emit("mul", x, w, name="t")
    h = b.emit("tanh", t, name="h")
    out = b.emit("sum", h, name="out")
    fn = Function("f", [x, w], b.stmts, [out], source_name="f.toml")
    text = format_function(fn)
    lines = text.splitlines()
    assert lines[0] == "func f(%x:f64[n], %w:f64[]) {"
    assert lines[1:4] == ["  %t:f64[n] = mul %x, %w", "  %h:f64[n] = tanh %t", "  %out:f64[] = sum %h"]
    assert lines[4:] == ["  return %out", "}"]
    assert "adjoint" not in text

    full = grad(fn, [x, w])
    verify(full)
    text = format_function(full)
    lines = text.splitlines()
    assert "  ; wrt: %x, %w" in lines
    marker = lines.index("  ; ---- adjoint sweep ----")
    assert lines[2:marker] == ["  %t:f64[n] = mul %x, %w", "  %h:f64[n] = tanh %t", "  %out:f64[] = sum %h"]
    assert len(lines) - marker - 3 == len(full.stmts) - full.n_primal    # one statement per line
    assert all(line.startswith("  %") and " = " in line for line in lines[marker + 1:-2])
    assert lines[-2] == f"  return %out, (%{full.outputs[1].name}, %{full.outputs[2].name})"
    ir_only = format_function(full, "ir")
    assert "adjoint sweep" not in ir_only and "%h:f64[n] = tanh %t" in ir_only
    adj_only = format_function(full, "adjoint")
    assert "adjoint sweep" in adj_only and "tanh %t" not in adj_only


def test_pipeline_show_stages_use_the_printer():
    art = build('[inputs]\nx = { shape = ["batch", 3] }\n[params]\nW = { shape = [3, 2] }\n'
                '[graph]\nh = "tanh(x @ W)"\n[output]\nvalue = "sum(h)"\n')
    ir_text = art.show("ir")
    assert "%h:f64[batch,2] = tanh %h_2" in ir_text
    assert "%h_2:f64[batch,2] = matmul %x, %W" in ir_text
    assert "<spec>:6:6" in ir_text
    assert "adjoint sweep" not in ir_text
    adj = art.show("adjoint")
    assert "; ---- adjoint sweep ----" in adj and "%W_bar:f64[3,2]" in adj
    assert adj.splitlines()[-2].strip().startswith("return %") and adj.splitlines()[-2].endswith(", (%W_bar)")
    with pytest.raises(ValueError):
        art.show("llvm")


# ------------------------------------------------------------------ verifier
def _two_stmt_fn(loc=None):
    x = Value("x", "f64", ("batch", 4))
    e = Value("e", "f64", ("batch", 4))
    out = Value("out", "f64", ())
    stmts = [Stmt("exp", (x,), e, loc=loc), Stmt("sum", (e,), out, (("axis", None),), loc=loc)]
    return x, e, out, stmts


def test_verify_accepts_well_formed():
    x, e, out, stmts = _two_stmt_fn()
    verify(Function("f", [x], stmts, [out]))


def test_verify_use_before_definition():
    x, e, out, stmts = _two_stmt_fn(loc="m.toml:7:5")
    fn = Function("f", [x], stmts[::-1], [out], source_name="m.toml")
    with pytest.raises(VerifyError) as info:
        verify(fn)
    msg = str(info.value)
    assert "%e is used by sum before it is defined" in msg
    assert msg.startswith("m.toml:7:5: ")


def test_verify_undefined_operand_without_location_names_op_and_source():
    x, e, out, stmts = _two_stmt_fn()
    ghost = Value("ghost", "f64", ("batch", 4))
    stmts[0] = Stmt("tanh", (ghost,), e)
    with pytest.raises(VerifyError) as info:
        verify(Function("f", [x], stmts, [out], source_name="m.toml"))
    msg = str(info.value)
    assert "%ghost" in msg and "tanh" in msg and "before it is defined" in msg
    assert msg.startswith("m.toml: op tanh: ")


def test_verify_double_assignment_same_value():
    x, e, out, stmts = _two_stmt_fn(loc="m.toml:9:1")
    stmts.insert(1, Stmt("tanh", (x,), e, loc="m.toml:9:1"))
    with pytest.raises(VerifyError, match=r"^m\.toml:9:1: %e is assigned more than once"):
        verify(Function("f", [x], stmts, [out]))


def test_verify_double_assignment_same_name():
    x, e, out, stmts = _two_stmt_fn()
    e2 = Value("e", "f64", ("batch", 4))
    stmts.insert(1, Stmt("tanh", (e,), e2))
    with pytest.raises(VerifyError) as info:
        verify(Function("f", [x], stmts, [out], source_name="m.toml"))
    assert "%e is assigned more than once" in str(info.value)
    assert "op tanh" in str(info.value)


def test_verify_assignment_to_input():
    x, e, out, stmts = _two_stmt_fn()
    stmts.insert(0, Stmt("exp", (x,), x, loc="m.toml:3:2"))
    with pytest.raises(VerifyError, match="%x is assigned more than once"):
        verify(Function("f", [x], stmts, [out]))


def test_verify_wrong_declared_shape():
    x, e, out, stmts = _two_stmt_fn()
    bad = Value("e", "f64", ("batch", 5))
    stmts = [Stmt("exp", (x,), bad, loc="m.toml:4:9"), Stmt("sum", (bad,), out, (("axis", None),))]
    with pytest.raises(VerifyError) as info:
        verify(Function("f", [x], stmts, [out]))
    msg = str(info.value)
    assert msg.startswith("m.toml:4:9: ")
    assert "exp gives f64[batch,4] but %e is declared f64[batch,5]" in msg


def test_verify_wrong_declared_dtype_and_rank():
    x, e, out, stmts = _two_stmt_fn()
    stmts[1] = Stmt("sum", (e,), Value("out", "f64", ("batch",)), (("axis", None),))
    with pytest.raises(VerifyError, match=r"sum gives f64\[\] but %out is declared f64\[batch\]"):
        verify(Function("f", [x], stmts, [stmts[1].out], source_name="m.toml"))
    y = Value("y", "f64", (3,))
    m = Value("m", "f64", (3,))
    with pytest.raises(VerifyError, match=r"gt gives bool\[3\] but %m is declared f64\[3\]"):
        verify(Function("g", [y], [Stmt("gt", (y, y), m, loc="g.toml:2:3")], [m]))


def test_verify_operand_types_that_do_not_fit_name_the_op_and_place():
    a = Value("a", "f64", (3, 4))
    b = Value("b", "f64", (3, 4))
    c = Value("c", "f64", (3, 4))
    with pytest.raises(ShapeError) as info:
        verify(Function("f", [a, b], [Stmt("matmul", (a, b), c, loc="m.toml:5:7")], [c]))
    assert str(info.value).startswith("m.toml:5:7: matmul: ")
    assert "inner dimensions differ" in str(info.value)


def test_verify_output_never_defined():
    x, e, out, stmts = _two_stmt_fn()
    with pytest.raises(VerifyError, match=r"^m\.toml: output %out is never defined"):
        verify(Function("f", [x], stmts[:1], [out], source_name="m.toml"))


def test_verify_duplicate_input_names():
    x = Value("x", "f64", ())
    x2 = Value("x", "f64", ())
    with pytest.raises(VerifyError, match="input name %x is used twice"):
        verify(Function("f", [x, x2], [], [x]))


def test_builder_rejects_bad_operands_with_location():
    a = Value("a", "f64", ("batch", 3))
    b = fresh(a)
    b.loc = "s.toml:2:8"
    with pytest.raises(ShapeError) as info:
        b.emit("add", a, Value("v", "f64", (4,)))
    assert str(info.value).startswith("s.toml:2:8: add: ")
    assert "do not broadcast" in str(info.value)


# ------------------------------------------------------------------ passes
def test_constant_folding_folds_scalar_const_ops():
    x = Value("x", "f64", (3,))
    b = fresh(x)
    two = b.const(2.0)
    three = b.const(3.0)
    five = b.emit("add", two, three, name="five")
    e = b.emit("exp", b.emit("neg", b.const(0.0), name="z"), name="e")     # exp(-0) = 1
    s = b.emit("mul", five, e, name="s")                                     # 5
    cmp_ = b.emit("powc", s, p=2.0, name="sq")                               # 25
    y = b.emit("mul", x, s, name="y")
    out = b.emit("sum", b.emit("add", y, cmp_, name="w"), name="out")
    fn = Function("f", [x], b.stmts, [out])
    folded = fold_constants(fn)
    verify(folded)
    by_name = {st.out.name: st for st in folded.stmts}
    for name, value in (("five", 5.0), ("z", -0.0), ("e", 1.0), ("s", 5.0), ("sq", 25.0)):
        assert by_name[name].op == "const" and by_name[name].attr["value"] == value, name
    assert by_name["y"].op == "mul" and by_name["w"].op == "add"    # array-valued: not folded
    xv = np.array([1.0, -2.0, 0.5])
    assert run_ir(folded, xv)[0] == pytest.approx(run_ir(fn, xv)[0]) == pytest.approx(5 * xv.sum() + 3 * 25)


def test_constant_folding_leaves_non_finite_and_symbolic_sizes():
    x = Value("x", "f64", ("batch", 3))
    b = fresh(x)
    lg = b.emit("log", b.const(0.0), name="lg")                  # -inf: not folded
    inv = b.emit("div", 1.0, b.const(0.0), name="inv")           # inf: not folded
    n_sym = b.emit("size", x, name="n_sym")                      # symbolic batch: not folded
    x2 = Value("x2", "f64", (2, 3))
    b.namer.claim("x2")
    n_axis = b.emit("size", x2, axis=1, name="n_axis")           # concrete: folded to 3
    n_all = b.emit("size", x2, name="n_all")                     # concrete: folded to 6
    gt = b.emit("gt", b.const(2.0), b.const(1.0), name="gt")     # bool: not folded to a float
    fn = Function("f", [x, x2], b.stmts, [lg, inv, n_sym, n_axis, n_all, gt])
    folded = {s.out.name: s for s in fold_constants(fn).stmts}
    assert folded["lg"].op == "log"
    assert folded["inv"].op == "div"
    assert folded["n_sym"].op == "size"
    assert folded["n_axis"].op == "const" and folded["n_axis"].attr["value"] == 3.0
    assert folded["n_all"].op == "const" and folded["n_all"].attr["value"] == 6.0
    assert folded["gt"].op == "gt"


def test_cse_merges_duplicate_statements():
    x = Value("x", "f64", ("n",))
    b = fresh(x)
    t1 = b.emit("tanh", x, name="t1")
    t2 = b.emit("tanh", x, name="t2")
    s0 = b.emit("sum", x, axis=0, name="s0")
    s_all = b.emit("sum", x, name="s_all")          # different attrs: kept apart
    p1 = b.emit("mul", t1, t2, name="p1")
    p2 = b.emit("mul", t2, t1, name="p2")           # the same as p1 once t2 -> t1
    q = b.emit("add", p1, p2, name="q")
    out = b.emit("add", b.emit("sum", q, name="sq"), b.emit("mul", s0, s_all, name="ss"), name="out")
    fn = Function("f", [x], b.stmts, [out])
    merged = cse(fn)
    verify(merged)
    assert ops(merged).count("tanh") == 1
    assert ops(merged).count("sum") == 3
    assert ops(merged).count("mul") == 2             # p1 (= t1 * t1, p2 merged into it) and ss
    q_stmt = next(s for s in merged.stmts if s.out is q)
    assert q_stmt.args[0] is q_stmt.args[1] is p1     # every use now points at the survivor
    p1_stmt = next(s for s in merged.stmts if s.out is p1)
    assert p1_stmt.args[0] is p1_stmt.args[1] is t1
    assert p2 not in [s.out for s in merged.stmts]
    xv = np.array([0.3, -1.2, 2.0])
    want = 2 * np.sum(np.tanh(xv) ** 2) + xv.sum() ** 2
    assert run_ir(merged, xv)[0] == pytest.approx(want)
    assert run_ir(fn, xv)[0] == pytest.approx(want)


def test_cse_follows_chains_of_duplicates():
    x = Value("x", "f64", ())
    b = fresh(x)
    a1 = b.emit("exp", x, name="a1")
    a2 = b.emit("exp", x, name="a2")
    c1 = b.emit("sin", a1, name="c1")
    c2 = b.emit("sin", a2, name="c2")                # same as c1 once a2 -> a1
    out = b.emit("add", c1, c2, name="out")
    merged = cse(Function("f", [x], b.stmts, [out]))
    assert ops(merged) == ["exp", "sin", "add"]
    assert run_ir(merged, 0.7)[0] == pytest.approx(2 * math.sin(math.exp(0.7)))


def test_dce_removes_unused_statements():
    x = Value("x", "f64", (2,))
    b = fresh(x)
    used = b.emit("exp", x, name="used")
    b.emit("log", x, name="dead")
    dead2 = b.emit("sin", x, name="dead2")
    b.emit("mul", dead2, dead2, name="dead3")
    out = b.emit("sum", used, name="out")
    fn = Function("f", [x], b.stmts, [out])
    pruned = dce(fn)
    verify(pruned)
    assert [s.out.name for s in pruned.stmts] == ["used", "out"]
    assert len(fn.stmts) == 5                       # the input function is left alone
    xv = np.array([0.1, 0.2])
    assert run_ir(pruned, xv)[0] == pytest.approx(np.exp(xv).sum())


def test_dce_keeps_everything_an_output_needs():
    x = Value("x", "f64", ())
    b = fresh(x)
    a = b.emit("exp", x, name="a")
    c = b.emit("sin", a, name="c")
    fn = Function("f", [x], b.stmts, [c, a])
    assert [s.out.name for s in dce(fn).stmts] == ["a", "c"]


@pytest.mark.parametrize("op, args, expect", [
    ("mul", ("x", 1.0), "x"), ("mul", (1.0, "x"), "x"),
    ("add", ("x", 0.0), "x"), ("add", (0.0, "x"), "x"),
    ("sub", ("x", 0.0), "x"), ("div", ("x", 1.0), "x"),
])
def test_simplify_removes_identities(op, args, expect):
    x = Value("x", "f64", ("n", 2))
    b = fresh(x)
    t = b.emit(op, *(x if a == "x" else a for a in args), name="t")
    out = b.emit("sum", b.emit("tanh", t, name="h"), name="out")
    fn = Function("f", [x], b.stmts, [out])
    simple = dce(simplify(fn))
    verify(simple)
    assert op not in ops(simple)
    h = next(s for s in simple.stmts if s.out.name == "h")
    assert h.args[0] is x
    xv = np.array([[0.5, -1.0], [2.0, 0.0]])
    assert run_ir(simple, xv)[0] == pytest.approx(np.tanh(xv).sum())


def test_simplify_double_negation_transpose_and_power_one():
    x = Value("x", "f64", (2, 3))
    b = fresh(x)
    n2 = b.emit("neg", b.emit("neg", x, name="n1"), name="n2")
    t2 = b.emit("transpose", b.emit("transpose", n2, name="t1"), name="t2")
    p = b.emit("powc", t2, p=1.0, name="p")
    out = b.emit("sum", b.emit("exp", p, name="e"), name="out")
    fn = Function("f", [x], b.stmts, [out])
    simple = dce(simplify(fn))
    verify(simple)
    assert ops(simple) == ["exp", "sum"]
    xv = np.arange(6.0).reshape(2, 3) / 10
    assert run_ir(simple, xv)[0] == pytest.approx(np.exp(xv).sum())
    assert run_ir(fn, xv)[0] == pytest.approx(np.exp(xv).sum())


def test_simplify_keeps_shape_changing_identity():
    """x * ones([3]) with x a scalar broadcasts: not an identity."""
    x = Value("x", "f64", ())
    b = fresh(x)
    ones = b.const(1.0, shape=(3,))
    y = b.emit("mul", x, ones, name="y")
    z = b.emit("add", b.const(0.0, shape=(3,)), x, name="z")
    out = b.emit("sum", b.emit("add", y, z, name="w"), name="out")
    fn = Function("f", [x], b.stmts, [out])
    simple = dce(simplify(fn))
    verify(simple)
    names = [s.out.name for s in simple.stmts]
    assert "y" in names and "z" in names
    assert run_ir(simple, 2.5)[0] == pytest.approx(15.0)


def test_simplify_turns_named_output_into_alias():
    x = Value("x", "f64", ())
    b = fresh(x)
    out = b.emit("mul", x, 1.0, name="out")
    simple = simplify(Function("f", [x], b.stmts, [out]))
    verify(simple)
    assert simple.outputs[0] is out
    assert [s.op for s in simple.stmts if s.out is out] == ["alias"]
    assert run_ir(simple, 4.0)[0] == 4.0


def test_optimize_result_matches_closed_form_value_and_gradient():
    """The full pipeline of passes on forward + adjoint IR; numbers vs closed forms and FD."""
    x = Value("x", "f64", ("n",))
    w = Value("w", "f64", ())
    b = fresh(x, w)
    one = b.emit("add", b.const(0.5), b.const(0.5), name="one")       # folds to 1
    xs = b.emit("mul", x, one, name="xs")                               # then simplifies away
    t1 = b.emit("tanh", b.emit("mul", xs, w, name="a1"), name="t1")
    t2 = b.emit("tanh", b.emit("mul", xs, w, name="a2"), name="t2")     # duplicate of t1
    b.emit("exp", x, name="unused")
    s = b.emit("add", b.emit("sum", t1, name="s1"), b.emit("sum", t2, name="s2"), name="s")
    out = b.emit("add", s, b.emit("sub", b.emit("mul", w, w, name="ww"), 0.0, name="r"), name="out")
    fn = Function("f", [x, w], b.stmts, [out], source_name="hand")
    verify(fn)
    opt = optimize(fn)
    verify(opt)
    assert ops(opt).count("tanh") == 1
    assert "exp" not in ops(opt)
    assert "sub" not in ops(opt)
    assert len(opt.stmts) < len(fn.stmts)

    xv, wv = np.array([0.3, -0.8, 1.5]), 0.7

    def f_np(xv, wv):
        return 2 * np.tanh(xv * wv).sum() + wv * wv

    assert run_ir(opt, xv, wv)[0] == pytest.approx(f_np(xv, wv), rel=1e-14)
    full = optimize(grad(opt, [x, w]))
    verify(full)
    value, gx, gw = run_ir(full, xv, wv)
    assert value == pytest.approx(f_np(xv, wv), rel=1e-14)
    np.testing.assert_allclose(gx, 2 * wv * (1 - np.tanh(xv * wv) ** 2), rtol=1e-12)
    np.testing.assert_allclose(gx, fd(lambda v: f_np(v, wv), xv), rtol=1e-7)
    assert gw == pytest.approx(float(fd(lambda v: f_np(xv, float(v)), wv)), rel=1e-7)
    # unoptimised AD gives the same numbers
    raw = grad(fn, [x, w])
    verify(raw)
    np.testing.assert_allclose(run_ir(raw, xv, wv)[1], gx, rtol=1e-14)


SPEC_IDENTITIES = """\
[inputs]
x = { shape = ["batch", 3] }

[graph]
h = "sum(x * 1 + 0 - 0) / 1 + exp(0) * (2 + 3) + sum(tanh(x)) + sum(tanh(x))"
unused = "exp(x)"

[output]
value = "h"
wrt = ["x"]
"""


def test_passes_on_a_spec_value_and_gradient():
    art = build(SPEC_IDENTITIES)
    primal_ops = ops(art.primal)
    assert primal_ops.count("tanh") == 1                          # CSE
    assert "exp" not in primal_ops                                # exp(0) folded, unused removed
    assert "mul" not in primal_ops and "sub" not in primal_ops and "div" not in primal_ops   # identities
    consts = [s.attr["value"] for s in art.primal.stmts if s.op == "const"]
    assert consts == [5.0]                                        # exp(0) * (2 + 3) folded
    xv = np.array([[0.1, -0.4, 2.0], [1.0, 0.0, -3.0]])

    def f_np(x):
        return x.sum() + 5.0 + 2 * np.tanh(x).sum()

    assert run_ir(art.primal, xv)[0] == pytest.approx(f_np(xv), rel=1e-14)
    value, gx = run_ir(art.full, xv)
    assert value == pytest.approx(f_np(xv), rel=1e-14)
    np.testing.assert_allclose(gx, fd(f_np, xv), rtol=1e-7)
    np.testing.assert_allclose(gx, 1 + 2 * (1 - np.tanh(xv) ** 2), rtol=1e-13)


def test_passes_preserve_adjoint_of_fan_out_and_broadcast():
    art = build('[inputs]\nX = { shape = ["batch", 3] }\n[params]\nb = { shape = [3] }\ns = { shape = [] }\n'
                '[graph]\nz = "X * s + b"\nh = "sum(z * z) + sum(b * 1) * s"\n[output]\nvalue = "h"\n')
    rng = np.random.default_rng(0)
    X, bv, sv = rng.standard_normal((4, 3)), rng.standard_normal(3), 0.3

    def f_np(X, bv, sv):
        z = X * sv + bv
        return np.sum(z * z) + bv.sum() * sv

    value, gb, gs = run_ir(art.full, X, bv, sv)
    assert value == pytest.approx(f_np(X, bv, sv), rel=1e-13)
    np.testing.assert_allclose(gb, fd(lambda v: f_np(X, v, sv), bv), rtol=1e-7)
    assert gs == pytest.approx(float(fd(lambda v: f_np(X, bv, float(v)), sv)), rel=1e-7)
