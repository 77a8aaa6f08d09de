"""Renumbering (gradc.passes.rename.renumber): after dead-code elimination the generated names
have no gaps -- each base name's values are base, base_2, base_3, ... in definition order --
while the inputs', the outputs' and the spec's own names never change; SSA form still holds and
the compiled module still gives the right gradient.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import sympy as sp

import gradc
from gradc.ad import grad
from gradc.ir import Builder, Function, Namer, Value, format_function, verify
from gradc.passes import dce, optimize
from gradc.passes.rename import renumber
from gradc.pipeline import build, lower, user_names

from conftest import central

SUFFIX = re.compile(r"(.+)_([1-9][0-9]*)\Z")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "cache"))


def names(fn, consts=True):
    return [s.out.name for s in fn.stmts if consts or s.op != "const"]


def gaps(fn, keep=(), consts=True):
    """Base names whose generated numbers leave a gap: {base: sorted numbers (1 = unsuffixed)}.
    ``consts=False``: among the values the generated code names (it inlines constants)."""
    fixed = {v.name for v in fn.inputs + fn.outputs} | set(keep)
    all_names = set(names(fn, consts)) | {v.name for v in fn.inputs}
    groups: dict[str, set] = {}
    for n in names(fn, consts):
        m = SUFFIX.match(n)
        if m and n not in fixed:
            groups.setdefault(m.group(1), set()).add(int(m.group(2)))
    out = {}
    for base, nums in groups.items():
        if any(SUFFIX.match(n) and SUFFIX.match(n).group(1) == base for n in fixed - {base}):
            continue                          # a user name such as layer_1 takes a number of its own
        nums = nums | ({1} if base in all_names else set())
        if nums != set(range(1, len(nums) + 1)):
            out[base] = sorted(nums)
    return out


def gapped():
    """h, h_2, h_3 then dead code removed: h_2 and the first t are gone."""
    x = Value("x", "f64", ())
    b = Builder()
    b.namer.claim("x")
    b.hint = "h"
    h = b.emit("sin", x)
    b.emit("cos", x)                          # h_2: dead
    h3 = b.emit("exp", h)
    b.hint = "t"
    b.emit("neg", x)                          # t: dead
    t2 = b.emit("mul", h3, x)
    t3 = b.emit("add", t2, h)
    out = b.emit("alias", t3, name="f")
    return Function("g", [x], b.stmts, [out])


def test_gaps_are_closed_in_definition_order():
    fn = dce(gapped())
    assert names(fn) == ["h", "h_3", "t_2", "t_3", "f"]
    r = renumber(fn)
    assert names(r) == ["h", "h_2", "t", "t_2", "f"]
    verify(r)
    assert gaps(r) == {} and gaps(fn) != {}
    assert format_function(renumber(r)) == format_function(r)          # idempotent


def test_the_unsuffixed_name_stays_with_its_value():
    """A graph entry ``h`` defined after its temporaries h_2, h_5 keeps ``h``; they become h_2, h_3."""
    x = Value("x", "f64", ())
    b = Builder()
    b.namer.claim("x")
    b.namer.claim("h")
    b.hint = "h"
    a = b.emit("sin", x)                      # h_2
    b.emit("cos", x)                          # h_3: dead
    b.emit("tan", x)                          # h_4: dead
    c = b.emit("exp", a)                      # h_5
    h = b.emit("mul", c, x, name="hh")
    h.name = "h"                              # as the spec frontend names a graph entry
    out = b.emit("add", h, a, name="f")
    r = renumber(dce(Function("g", [x], b.stmts, [out])))
    assert names(r) == ["h_2", "h_3", "h", "f"]
    verify(r)


def test_user_names_never_change():
    """Inputs, outputs and the ``keep`` names (a spec's graph entries) keep even a number."""
    x = Value("x_3", "f64", ())
    b = Builder()
    b.namer.claim("x_3")
    layer = b.emit("sin", x, name="layer_4")
    t = b.emit("exp", layer, name="t_7")
    out = b.emit("mul", t, x, name="y_9")
    fn = Function("g", [x], b.stmts, [out])
    assert names(renumber(fn, keep={"layer_4"})) == ["layer_4", "t", "y_9"]
    assert names(renumber(fn)) == ["layer", "t", "y_9"]
    assert renumber(fn).inputs[0] is x


def test_adjoint_names_follow_the_same_rule():
    x, y, z = sp.symbols("x y z")
    lw = lower(sp.sin(x * y) + sp.exp(x * z) * y + (x + y) ** 2, [x, y, z])
    full = optimize(grad(optimize(lw.fn), lw.wrt))
    assert "x_bar_1" in names(full) and "c" not in names(full)          # as the AD names them
    r = renumber(full)
    verify(r)
    assert gaps(r) == {}
    bars = [n for n in names(r) if n.startswith("x_bar")]
    assert bars == ["x_bar_2", "x_bar_3", "x_bar_4", "x_bar"]           # the gradient keeps x_bar
    assert [v.name for v in r.outputs] == [v.name for v in full.outputs]
    assert r.n_primal == full.n_primal and r.wrt == full.wrt


def test_reserved_and_keyword_bases_stay_numbered():
    x = Value("x", "f64", ())
    b = Builder(Namer())
    b.namer.claim("x")
    t = b.emit("sin", x, name="lambda")       # the Namer makes it lambda_2
    u = b.emit("cos", t, name="forward")      # forward_2
    out = b.emit("add", t, u, name="f")
    assert names(renumber(Function("g", [x], b.stmts, [out]))) == ["lambda_2", "forward_2", "f"]


NUMBERED_SPEC = """
[model]
name = "numbered"
[inputs]
x = { shape = [3] }
[params]
W_1 = { shape = [4, 3] }
b_1 = { shape = [4] }
W_2 = { shape = [1, 4] }
[graph]
z_1 = "W_1 @ x + b_1"
a_1 = "tanh(z_1)"
z_2 = "W_2 @ a_1"
f = "sum(z_2 * z_2) + sum(a_1 * a_1)"
[output]
value = "f"
"""


MSE_SPEC = """
[model]
name = "mse_consts"
[inputs]
X = { shape = [3, 2] }
T = { shape = [2] }
[params]
W = { shape = [2, 2] }
[graph]
loss = "mse(X @ W, T)"
[output]
value = "loss"
wrt = ["W", "T"]
"""


def test_constants_take_the_numbers_after_the_named_values():
    """mse's rule names a constant like the values around it (loss_d_3 = const 6.0 among loss_d,
    loss_d_2, loss_d_4); the code inlines it, so it is numbered after them."""
    full = build(MSE_SPEC).full
    consts = {s.out.name for s in full.stmts if s.op == "const"}
    assert gaps(full) == {} and gaps(full, consts=False) == {}, format_function(full)
    assert "loss_d_4" in consts
    assert [n for n in names(full, consts=False) if n.startswith("loss_d")] == ["loss_d", "loss_d_2", "loss_d_3"]


@pytest.mark.parametrize("source", ["seed_sigmoid_neuron", "seed_three_layer", "mlp_digits", "relu_3layer",
                                    "svm_linear", "numbered", "mse"])
def test_pipeline_output_has_no_gaps_and_keeps_user_names(source):
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / f"{source}.toml"
    art = build({"numbered": NUMBERED_SPEC, "mse": MSE_SPEC}.get(source, path))
    keep = user_names(art.lowered)
    if source == "numbered":
        assert keep == {"z_1", "a_1", "z_2", "f"}
    for fn in (art.primal, art.full):
        verify(fn)
        assert gaps(fn, keep) == {} and gaps(fn, keep, consts=False) == {}, format_function(fn)
        assert keep <= set(names(fn))                                   # every graph entry kept its name
        assert [v.name for v in fn.inputs] == [v.name for v in art.lowered.fn.inputs]


def test_split_parts_have_no_gaps():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.lowering import unlike_expression

    expr, args = unlike_expression(60)
    art = build(expr, args, options=gradc.Options(split_stmts=60))
    assert len(art.parts) >= 2
    for forward, full, _, _ in art.parts:
        for fn in (forward, full):
            verify(fn)
            assert gaps(fn) == {}, format_function(fn)




def test_renumbered_modules_give_the_right_gradient():
    """Modules whose names were renumbered (fan-out adjoints, dead temporaries, numbered user
    names) against central finite differences."""
    x, y, z = sp.symbols("x y z")
    f = gradc.compile(sp.sin(x * y) + sp.exp(x * z) * y + (x + y) ** 2, args=[x, y, z])
    assert "x_bar_1" not in f.source and "x_bar_4" in f.source
    point = (0.3, -0.7, 0.5)
    _, g = f.value_and_grad(*point)
    for i in range(3):
        assert g[i] == pytest.approx(central(f.forward, point, i), rel=1e-7)

    m = gradc.compile(NUMBERED_SPEC)
    assert all(f"{n} = " in m.source for n in ("z_1", "a_1", "z_2"))
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(m.shapes[n]) for n in m.arg_names]
    _, grads = m.value_and_grad(*args)
    for name, g in zip(m.wrt, grads):
        i = m.arg_names.index(name)
        np.testing.assert_allclose(g, central(m.forward, args, i), rtol=1e-6, atol=1e-8)
