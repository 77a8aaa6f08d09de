"""Passes and the AD are pure: they return new functions and change nothing they were given.

For every pass (and :func:`gradc.ad.grad`) on realistic functions -- the example specs, SymPy
expressions, a long sum of like terms that re-rolls and one of unlike terms that splits -- a
deep snapshot of the input (every value's name, dtype and shape, every statement's fields, the
identities of all of them, the lists' lengths and the printed text) is the same after the call.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from gradc.ad import grad
from gradc.ir import format_function, verify
from gradc.passes import coalesce_aliases, cse, dce, fold_constants, optimize, pool_first, reroll, simplify
from gradc.passes.rename import renumber
from gradc.passes.split import split
from gradc.pipeline import lower

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.lowering import unlike_expression  # noqa: E402

SPECS = ["seed_add_mul", "seed_sigmoid_neuron", "seed_norm_wx", "seed_three_layer", "mlp_digits",
         "relu_3layer", "svm_linear", "cnn_digits"]


def snapshot(fn):
    """Everything a pass could change in place, by identity and by value."""
    values = {}
    for v in fn.inputs + fn.outputs + fn.wrt:
        values[id(v)] = v
    for s in fn.stmts:
        for v in (*s.args, s.out):
            values[id(v)] = v
    return {
        "fn": (fn.name, fn.differentiated, fn.source_name, fn.n_primal),
        "lists": [(id(x), len(x)) for x in (fn.inputs, fn.stmts, fn.outputs, fn.wrt)],
        "ids": ([id(v) for v in fn.inputs], [id(v) for v in fn.outputs], [id(v) for v in fn.wrt]),
        "stmts": [(id(s), s.op, tuple(id(a) for a in s.args), id(s.out), s.attrs, s.loc, s.note, s.adjoint)
                  for s in fn.stmts],
        "values": {k: (v.name, v.dtype, v.shape) for k, v in values.items()},
        "text": format_function(fn),
    }


def reroll_expr(K=24, seed=3):
    """sum_k sin(a_k x + b_k y) exp(-c_k z^2) + tanh(x y - k/100): re-rolls into tables."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(-1, 1, K), rng.uniform(-1, 1, K), rng.uniform(0.1, 1, K)
    x, y, z = sp.symbols("x y z")
    return sp.Add(*[sp.sin(sp.Float(a[i]) * x + sp.Float(b[i]) * y) * sp.exp(-sp.Float(c[i]) * z ** 2)
                    + sp.tanh(x * y - sp.Rational(i + 1, 100)) for i in range(K)]), [x, y, z]


def _sources():
    x, y, z = sp.symbols("x y z")
    out = {name: lower(ROOT / "examples" / f"{name}.toml") for name in SPECS}
    out["sympy_xyz"] = lower((x + y) * z, [x, y, z])
    out["sympy_fanout"] = lower(sp.sin(x * y) + sp.exp(x * z) * y + (x + y) ** 2 + sp.Max(x, 0) * 1, [x, y, z])
    out["reroll"] = lower(*reroll_expr())
    out["split"] = lower(*unlike_expression(60))
    return out


@pytest.fixture(scope="module")
def sources():
    return _sources()


def _primal(lowered):
    return lowered.fn


def _optimized(lowered):
    return optimize(lowered.fn)


def _differentiated(lowered):            # forward + adjoint, before any pass: aliases, fan-out sums
    return grad(lowered.fn, lowered.wrt)


def _differentiated_opt(lowered):
    return optimize(grad(optimize(lowered.fn), lowered.wrt))


INPUTS = {"primal": _primal, "optimized": _optimized, "differentiated": _differentiated,
          "differentiated_opt": _differentiated_opt}

PASSES = {
    "fold_constants": lambda fn, lw: fold_constants(fn),
    "simplify": lambda fn, lw: simplify(fn),
    "cse": lambda fn, lw: cse(fn),
    "dce": lambda fn, lw: dce(fn),
    "coalesce_aliases": lambda fn, lw: coalesce_aliases(fn),
    "optimize": lambda fn, lw: optimize(fn),
    "pool_first": lambda fn, lw: pool_first(fn),
    "reroll": lambda fn, lw: reroll(fn),
    "split": lambda fn, lw: split(fn, max_stmts=60),
    "renumber": lambda fn, lw: renumber(fn),
    "grad": lambda fn, lw: None if fn.differentiated else grad(fn, lw.wrt),
    # what the pipeline runs on a function's result: a pass's output must be safe to reuse
    "grad+optimize+renumber": lambda fn, lw: None if fn.differentiated else renumber(optimize(grad(fn, lw.wrt))),
}


@pytest.mark.parametrize("stage", list(INPUTS))
@pytest.mark.parametrize("pass_name", list(PASSES))
def test_pass_leaves_its_input_untouched(sources, pass_name, stage):
    for name, lowered in sources.items():
        fn = INPUTS[stage](lowered)
        before = snapshot(fn)
        result = PASSES[pass_name](fn, lowered)
        assert snapshot(fn) == before, f"{pass_name} changed its input ({name}, {stage})"
        results = [p for p, _, _ in result] if pass_name == "split" and result else [result]
        for r in results:
            if r is not None:
                verify(r)


def test_the_sources_exercise_what_they_should(sources):
    """The long sums do what the pure-pass test relies on: one re-rolls, one splits; the CNN pools
    before its first activation."""
    fn = sources["reroll"].fn
    assert reroll(fn) is not fn
    assert pool_first(sources["cnn_digits"].fn) is not sources["cnn_digits"].fn
    assert split(optimize(sources["split"].fn), max_stmts=60) is not None
    assert any(s.op == "alias" for s in grad(sources["sympy_fanout"].fn, sources["sympy_fanout"].wrt).stmts)


def test_passes_after_split_leave_the_parts_and_the_whole_untouched(sources):
    """The parts share statements with the unsplit function (no defensive copies): differentiating
    and optimizing one part changes neither the whole nor the other parts."""
    lowered = sources["split"]
    whole = optimize(lowered.fn)
    parts = split(whole, max_stmts=60)
    before = [snapshot(whole)] + [snapshot(p) for p, _, _ in parts]
    fulls = [renumber(optimize(grad(renumber(p), lowered.wrt))) for p, _, _ in parts]
    assert [snapshot(whole)] + [snapshot(p) for p, _, _ in parts] == before
    for f in fulls:
        verify(f)


_NO_RUNTIME = """
import sys
from pathlib import Path
import sympy as sp
import gradc.pipeline
sys.path.insert(0, {root!r})
from benchmarks.lowering import unlike_expression
from tests.test_passes_pure import reroll_expr
gradc.pipeline.build(Path({spec!r}).read_text())
gradc.pipeline.build(Path({mlp!r}))
x, y, z = sp.symbols("x y z")
gradc.pipeline.build(sp.sin(x * y) + sp.erf(z) * sp.gamma(x), [x, y, z])
gradc.pipeline.build(*reroll_expr())
assert gradc.pipeline.build(*unlike_expression(60), options=gradc.Options(split_stmts=60)).parts
print(sorted(m for m in sys.modules if m.startswith("gradc.runtime")))
"""


def test_the_pipeline_does_not_import_the_runtime():
    """Spec text and path, SymPy, a re-rolled and a split sum through gradc.pipeline.build, in a
    fresh process: no gradc.runtime module is imported (only the public API joins the two)."""
    import subprocess

    code = _NO_RUNTIME.format(root=str(ROOT), spec=str(ROOT / "examples" / "seed_norm_wx.toml"),
                              mlp=str(ROOT / "examples" / "mlp_digits.toml"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
