"""Gradients of random expression trees, proven against independent oracles, for every op.

Strategies (``tests/strategies.py``) draw random trees over the whole op table;
the properties:

* scalar SymPy trees: value and gradient == ``sympy.diff`` of the same tree,
  evaluated in mpmath at 50 digits (relative 1e-9, at well-conditioned points);
* SymPy matrix trees: == the same math written per element (``as_explicit``)
  and differentiated by ``sympy.diff`` w.r.t. each matrix entry;
* spec (array) trees, at batch size 1 and 2..3: value == an independent NumPy
  implementation run on mpmath numbers, gradient == its central differences at
  50 digits (effectively exact; relative 1e-9), and == central finite
  differences of gradc's own ``forward`` in float64 (step chosen per dtype);
* everywhere: ``forward`` == the value of ``value_and_grad``; compiling the same
  tree twice (also in another process, other hash seed) gives identical files;
* every op of ``gradc.ops.OPS`` occurs in the IR of some tree the strategies
  draw: a new op fails :func:`test_every_op_is_reachable_by_the_strategies`
  until a strategy produces it.

Numba compiles each distinct module once (0.1-4 s), so every compiled tree is
checked at several points. Example counts come from the Hypothesis profile
(``tests/conftest.py``): ``ci`` by default, ``HYPOTHESIS_PROFILE=thorough`` for
hundreds of examples per property.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, Phase, assume, event, find, given, note, settings
from hypothesis.errors import NoSuchExample
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from gradc.ops import OPS
from gradc.pipeline import build

from conftest import compiled
from strategies import (ARRAY_PRODUCTIONS, IMAGE_STAGES, IMAGE_TREE_PRODUCTIONS, MATRIX_PRODUCTIONS, MP_DPS, N, SCALAR_PRODUCTIONS, XS, ArrayTree,
                        Backend, Node, Reject, SymbolicOracle, array_trees, matrix_oracle, matrix_trees,
                        scalar_trees)

#: Examples per property in the loaded profile (ci: 20). Properties whose modules compile fast
#: (scalar SymPy trees) or that compile nothing run more; the array and matrix properties (the
#: slowest Numba compiles: 1-4 s per module) fewer.
EXAMPLES = settings().max_examples
CHEAP = settings(max_examples=3 * EXAMPLES)
SLOW = settings(max_examples=max(1, 3 * EXAMPLES // 4))

#: Tolerances against an exact oracle at a well-conditioned point, per precision: relative,
#: plus ``atol`` times the largest gradient entry (for entries that cancel to ~0).
TOL = {"float64": {"rtol": 1e-9, "atol": 1e-11}, "float32": {"rtol": 2e-4, "atol": 2e-5}}

#: Central-difference step (relative to max(1, |x|)) per dtype: about eps^(1/3).
FD_STEP = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 5e-3}
#: Accepted FD error (relative to max(1, |fd|), plus 4x the Richardson estimate) per dtype.
FD_TOL = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-2}

#: Deeper trees, and rank-3 arrays (slow to compile), in the thorough profile only.
THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
DEPTH = 4 if THOROUGH else 3
MAX_RANK = 3 if THOROUGH else 2
#: Inner nodes of an array tree at most: each shrink step of a failing tree compiles a Numba
#: module (0.1-4 s), and Hypothesis stops shrinking after 5 minutes.
MAX_NODES = 10


def tally(what: str) -> None:
    """``hypothesis.event`` inside a property; nothing in the example-based tests that reuse its checks."""
    if currently_in_test_context():
        event(what)


def compile_kwargs(tree) -> dict:
    return {"args": list(tree.args)} if hasattr(tree, "args") else {}


def assert_close(got, want, scale, what, precision="float64"):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    rtol, atol = TOL[precision]["rtol"], TOL[precision]["atol"] * scale
    err = np.abs(got - want)
    bad = err > rtol * np.abs(want) + atol
    assert not np.any(bad), (f"{what}: got {got}, want {want}; worst error {np.max(err):.3e} "
                             f"(rtol {rtol}, atol {atol:.1e})")


def assert_forward_matches(c, args, value, what):
    fwd = c.forward(*args)
    np.testing.assert_allclose(fwd, value, rtol=1e-15, atol=0, err_msg=f"{what}: forward != value_and_grad's value")


# ================================================================== scalar SymPy trees
COORD = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False)
POINTS = st.lists(st.tuples(COORD, COORD, COORD), min_size=6, max_size=6)


@CHEAP
@given(tree=scalar_trees(max_depth=DEPTH), points=POINTS)
def test_scalar_tree_gradient_matches_sympy_diff(tree, points):
    oracle = SymbolicOracle(tree.expr, list(XS))
    wanted = []
    for pt in points:
        try:
            wanted.append((pt, oracle.at(dict(zip(XS, pt)))))
        except Reject as why:
            event(f"scalar point rejected: {why}")
    assume(wanted)                                   # compile only trees with a well-conditioned point
    c = compiled(tree.expr, args=list(XS))
    for pt, (want, want_grads, scale) in wanted:
        note(f"point {pt}")
        value, grads = c.value_and_grad(*pt)
        assert_close(value, want, 1.0, f"value of {tree.expr} at {pt}")
        assert_close(grads, want_grads, scale, f"gradient of {tree.expr} at {pt}")
        assert_forward_matches(c, pt, value, str(tree.expr))


# ================================================================== SymPy matrix trees
@SLOW
@given(tree=matrix_trees(max_depth=DEPTH - 1), seed=st.integers(0, 2 ** 32 - 1))
def test_matrix_tree_gradient_matches_elementwise_sympy(tree, seed):
    oracle = matrix_oracle(tree)
    rng = np.random.default_rng(seed)
    wanted = []
    for _ in range(3):
        args = [rng.uniform(-2, 2, a.shape) if isinstance(a, sp.MatrixSymbol) else float(rng.uniform(-2, 2))
                for a in tree.args]
        env = {}
        for a, v in zip(tree.args, args):
            if isinstance(a, sp.MatrixSymbol):
                env.update({a[i, j]: float(v[i, j]) for i in range(a.shape[0]) for j in range(a.shape[1])})
            else:
                env[a] = v
        try:
            wanted.append((args, oracle.at(env)))
        except Reject as why:
            event(f"matrix point rejected: {why}")
    assume(wanted)
    c = compiled(tree.expr, args=list(tree.args))
    for args, (want, want_grads, scale) in wanted:
        value, grads = c.value_and_grad(*args)
        assert_close(value, want, 1.0, f"value of {tree.expr}")
        k = 0
        for a, g in zip(tree.args, grads):
            size = int(np.prod(a.shape)) if isinstance(a, sp.MatrixSymbol) else 1
            want_g = np.reshape(want_grads[k:k + size], a.shape if isinstance(a, sp.MatrixSymbol) else ())
            k += size
            assert_close(g, want_g, scale, f"d/d{a.name} of {tree.expr}")
        assert_forward_matches(c, args, value, str(tree.expr))


# ================================================================== spec (array) trees
MP_STEP = mpmath.mpf(10) ** -20      # central differences at 50 digits: error ~1e-30 relative
BIG = {"float64": 1e4, "float32": 1e3}   # skip points with larger intermediates (cancellation)
GAP = 1e-4                           # ... or closer than this to a kink (float64 FD would cross it)


def exact_gradients(tree, args):
    """Value and gradients of the mpmath NumPy reference; central differences at 50 digits.

    Raises :class:`Reject` at ill-conditioned points (huge intermediates, near a kink)."""
    B = Backend(mp=True, limit=BIG[tree.precision])
    env = tree.env(args, B)
    value = tree.root.fn((env, B))
    if not np.isfinite(float(value)):
        raise Reject("the mpmath reference is not finite")
    if B.big > BIG[tree.precision]:
        raise Reject("huge intermediate")
    if B.margins and min(B.margins) < GAP:
        raise Reject("near a kink")
    grads = {}
    for name in tree.inputs:
        x = env[name]
        g = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(x.shape):
            vals = []
            for step in (MP_STEP, -MP_STEP):
                xp = x.copy()
                xp[idx] = xp[idx] + step
                vals.append(tree.root.fn(({**env, name: xp}, Backend(mp=True))))
            g[idx] = (vals[0] - vals[1]) / (2 * MP_STEP)
        grads[name] = g.astype(np.float64)
    return float(value), grads


def fd_of_forward(c, call_args, i):
    """Central differences of gradc's ``forward`` w.r.t. argument ``i``, in the argument's dtype.

    Returns ``(fd, err, kink)`` per entry: the difference quotient at step h/2; its
    disagreement with step h (a Richardson estimate of the error; large where a kink
    lies within the step), or, if larger, the quotient's round-off ~ eps |f| / h (a large
    value carries it into every quotient alike, so the two steps need not disagree); and
    whether a kink lies within the step h/2: the one-sided quotients (f(x+h) - f(x)) / h and
    (f(x) - f(x-h)) / h disagree by about |f''| h on a smooth function, halving with the step,
    but by about twice the slope on either side of a kink at any step within which it lies
    (a kink very close to x can fool the Richardson estimate: both central quotients then
    straddle it alike). Steps are the ones actually representable in the dtype."""
    x = np.asarray(call_args[i])
    fd, err, kink = np.zeros(x.shape), np.zeros(x.shape), np.zeros(x.shape, dtype=bool)
    center = float(c.forward(*call_args))
    for idx in np.ndindex(x.shape):
        h0 = FD_STEP[x.dtype] * max(1.0, abs(float(x[idx])))
        quot, gaps = [], []
        for h in (h0, h0 / 2):
            vals, points = [], []
            for step in (h, -h):
                xp = x.copy()
                xp[idx] = xp[idx] + x.dtype.type(step)
                points.append(float(xp[idx]))
                args = list(call_args)
                args[i] = xp if x.shape else xp[()]
                vals.append(float(c.forward(*args)))
            quot.append((vals[0] - vals[1]) / (points[0] - points[1]))
            gaps.append(abs((vals[0] - center) / (points[0] - float(x[idx]))
                            - (center - vals[1]) / (float(x[idx]) - points[1])))
            roundoff = np.finfo(np.float64).eps * max(abs(v) for v in vals) / abs(points[0] - points[1])
        fd[idx], err[idx] = quot[1], max(abs(quot[0] - quot[1]), 4 * roundoff)
        noise = 8 * np.finfo(x.dtype).eps * max(abs(v) for v in vals + [center]) / abs(points[0] - float(x[idx]))
        kink[idx] = gaps[1] > max(0.75 * gaps[0], noise)
    return fd, err, kink


def check_float64_reference(tree, args, want):
    """The float64 NumPy reference checks the mpmath one (a second, independent route to the
    value). It is written as stably as the ops (``Backend``: shifted log-sum-exp, scaled
    p-norms, ``logaddexp``); where it still overflows, the point has no float64 reference (an
    event), which is not a failure of gradc: gradc is compared with the mpmath value anyway."""
    with np.errstate(all="ignore"):
        ref = np.asarray(tree.evaluate(args, Backend(mp=False)), dtype=np.float64)
    if not np.all(np.isfinite(ref)):
        tally("float64 NumPy reference overflowed: not compared")
        return
    np.testing.assert_allclose(ref, want, rtol=1e-9, atol=1e-11,
                               err_msg="the float64 NumPy reference disagrees with the mpmath one")


def check_array_point(c, tree, n, args, want, want_grads):
    precision = tree.precision
    call_args = [args[a] for a in c.arg_names]
    value, grads = c.value_and_grad(*call_args)
    scale = max([1.0] + [float(np.max(np.abs(g))) for g in want_grads.values() if g.size])
    assert_close(value, want, max(1.0, abs(want)), f"value at batch {n}", precision)
    assert_forward_matches(c, call_args, value, tree.text)
    check_float64_reference(tree, args, want)
    assert len(grads) == len(tree.wrt)
    for w, g in zip(c.wrt, grads):
        arg = np.asarray(args[w])
        assert np.shape(g) == arg.shape, f"d/d{w}: shape {np.shape(g)}, argument {arg.shape}"
        pure = precision == "float64" or set(tree.dtypes.values()) == {"float32"}
        if pure and arg.shape:                  # (Numba returns scalars as Python floats)
            assert np.asarray(g).dtype == arg.dtype, f"d/d{w} is {np.asarray(g).dtype}, argument {arg.dtype}"
        assert_close(g, want_grads[w], scale, f"d/d{w} at batch {n}", precision)
        fd, err, kink = fd_of_forward(c, call_args, c.arg_names.index(w))
        smooth = ~kink & ((err <= 1e-4 * np.maximum(1.0, np.abs(fd))) if arg.dtype == np.float64 else (err <= 1e-1))
        tally(f"FD entries skipped (kink within the step): {int(np.sum(~smooth))}")
        tol = FD_TOL[arg.dtype] * np.maximum(1.0, np.abs(fd)) + 4 * err
        bad = smooth & (np.abs(np.asarray(g, dtype=np.float64) - fd) > tol)
        assert not np.any(bad), f"d/d{w} at batch {n}: gradient {g} vs finite differences {fd}"


@SLOW
@given(tree=array_trees(max_depth=DEPTH, max_rank=MAX_RANK, max_nodes=MAX_NODES), seed=st.integers(0, 2 ** 32 - 1), batch=st.integers(2, 3))
def test_array_tree_gradient_matches_exact_reference_and_finite_differences(tree, seed, batch):
    note(tree.source)
    rng = np.random.default_rng(seed)
    wanted = []
    for n in (1, batch):
        for _attempt in range(3):
            args = tree.draw_args(rng, n)
            try:
                with mpmath.workdps(MP_DPS):
                    wanted.append((n, args, *exact_gradients(tree, args)))
                break
            except Reject as why:
                event(f"array point rejected: {why}")
    assume(wanted)
    c = compiled(tree.source)
    assert c.arg_names == tuple(tree.arg_names())
    for n, args, want, want_grads in wanted:
        note(f"batch {n}: {args}")
        check_array_point(c, tree, n, args, want, want_grads)


#: Trees around a small CNN (``array_trees(focus="image")``: conv2d, pooling, reshape/flatten; plain
#: array trees draw them rarely): a few in the ci profile (the convolution helpers compile slowly).
IMAGES = settings(max_examples=max(2, EXAMPLES // 8))


@IMAGES
@given(tree=array_trees(max_depth=DEPTH - 1, max_rank=MAX_RANK, max_nodes=MAX_NODES, focus="image"),
       seed=st.integers(0, 2 ** 32 - 1), batch=st.integers(2, 3))
def test_image_tree_gradient_matches_exact_reference_and_finite_differences(tree, seed, batch):
    test_array_tree_gradient_matches_exact_reference_and_finite_differences.hypothesis.inner_test(tree, seed, batch)


# ================================================================== determinism
ALL_TREES = st.one_of(scalar_trees(), matrix_trees(), array_trees())


@CHEAP
@given(tree=ALL_TREES)
def test_compiling_the_same_tree_twice_gives_identical_files(tree):
    first = build(tree.source, **compile_kwargs(tree))
    second = build(tree.source, **compile_kwargs(tree))
    assert first.code == second.code
    assert first.key == second.key
    if isinstance(tree.source, sp.Basic):         # a structurally equal, freshly built expression
        again = from_srepr(sp.srepr(tree.source))
        if again == tree.source:                  # (srepr does not round-trip every matrix expression)
            assert build(again, **compile_kwargs(tree)).code == first.code


_SREPR_NAMES = """{**vars(sp), "Str": sp.core.symbol.Str,
                   "ExprCondPair": sp.functions.elementary.piecewise.ExprCondPair,
                   "MatrixElement": sp.matrices.expressions.matexpr.MatrixElement,
                   "ElementwiseApplyFunction": __import__("sympy.matrices.expressions.applyfunc",
                                                          fromlist=["_"]).ElementwiseApplyFunction}"""


def from_srepr(text: str):
    """The SymPy expression ``srepr`` printed (``eval`` of text this test wrote itself)."""
    return eval(text, eval(_SREPR_NAMES))  # noqa: S307


def draw_examples(strategy, n: int) -> list:
    """``n`` examples of ``strategy``, the same on every run (no shrinking, no database)."""
    out = []

    @settings(max_examples=n, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(tree):
        out.append(tree)

    collect()
    return out


_REBUILD = r"""
import hashlib, json, sys
import sympy as sp
from gradc.pipeline import build
out = []
for item in json.load(sys.stdin):
    if item["kind"] == "spec":
        art = build(item["source"])
    else:
        names = eval(NAMES)
        art = build(eval(item["source"], names), args=[eval(a, names) for a in item["args"]])
    out.append(hashlib.sha256(art.code.encode()).hexdigest())
print(json.dumps(out))
"""


def test_generated_files_do_not_depend_on_the_process_or_its_hash_seed():
    trees = (draw_examples(scalar_trees(), 6) + draw_examples(matrix_trees(), 4)
             + draw_examples(array_trees(), 8))
    items, here = [], []
    for t in trees:
        kw = compile_kwargs(t)
        here.append(hashlib.sha256(build(t.source, **kw).code.encode()).hexdigest())
        if isinstance(t.source, sp.Basic):
            items.append({"kind": "sympy", "source": sp.srepr(t.source), "args": [sp.srepr(a) for a in kw["args"]]})
        else:
            items.append({"kind": "spec", "source": t.source})
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    proc = subprocess.run([sys.executable, "-c", f"NAMES = {_SREPR_NAMES!r}\n" + _REBUILD], input=json.dumps(items), capture_output=True,
                          text=True, env=env, cwd=Path(__file__).parent, timeout=300)
    assert proc.returncode == 0, proc.stderr
    there = json.loads(proc.stdout)
    differ = [i for i, (a, b) in enumerate(zip(here, there)) if a != b]
    assert not differ, f"generated code differs across processes for {[trees[i] for i in differ]}"


# ================================================================== op coverage
FAMILIES = {"scalar": (scalar_trees(), SCALAR_PRODUCTIONS),
            "matrix": (matrix_trees(), MATRIX_PRODUCTIONS),
            "array": (array_trees(), tuple(p for p in ARRAY_PRODUCTIONS if p not in IMAGE_TREE_PRODUCTIONS)),
            "image": (array_trees(focus="image"), IMAGE_TREE_PRODUCTIONS)}


FIND = settings(max_examples=3000, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
                suppress_health_check=list(HealthCheck))


def ir_ops(art) -> set:
    """Ops of the generated functions: the optimized forward IR and forward + adjoint IR."""
    return {s.op for s in art.primal.stmts} | {s.op for s in art.full.stmts}


#: ops that only forward mode emits (the JVP of an op whose tangent is routed like its adjoint):
#: reached in the jvp/hvp IR of a tree, which the properties compile and check as well
FORWARD_ONLY = {"max_pool2d_jvp"}


def forward_mode_ops(art) -> set:
    from gradc.ad.derivatives import derive

    if art.full is None:
        return set()
    return {s.op for kind in ("jvp", "hvp") for s in derive(kind, art.primal, art.full, art.lowered.wrt).fn.stmts}


def test_every_op_is_reachable_by_the_strategies():
    """Each production of each strategy is drawn (in a fixed sample); compiling one tree per
    production (pipeline only, no Numba) must produce every op of the table, adjoint helpers
    (``*_vjp``, ``sum_to``, ``expand``, ``size``, ``outer``, ``alias``, ``const``, ...) included,
    and the ops only forward mode emits (:data:`FORWARD_ONLY`) in the jvp/hvp IR."""
    reached: dict[str, str] = {}
    built: dict[tuple, set] = {}
    never_drawn = []
    for family, (strategy, productions) in FAMILIES.items():
        sample = draw_examples(strategy, 200)
        for prod in productions:
            having = [t for t in sample if prod in t.productions]
            if not having:                        # rare in the sample: search for one
                try:
                    having = [find(strategy, lambda t, prod=prod: prod in t.productions, settings=FIND)]
                except NoSuchExample:
                    never_drawn.append(f"{family}:{prod}")
                    continue
            # a few of the smallest and of the largest trees (SymPy may simplify a production away)
            having = sorted({str(t.source): t for t in having}.values(), key=lambda t: len(str(t.source)))
            for t in having[:3] + having[3:][-2:]:
                key = (family, str(t.source))
                if key not in built:
                    art = build(t.source, **compile_kwargs(t))
                    built[key] = ir_ops(art)
                    if family == "image" and prod in IMAGE_STAGES:
                        built[key] |= forward_mode_ops(art) & FORWARD_ONLY
                for op in built[key]:
                    reached.setdefault(op, f"{family}:{prod}")
    assert not never_drawn, f"productions never drawn: {never_drawn}"
    missing = sorted(set(OPS) - set(reached))
    assert not missing, (f"ops no strategy reaches: {missing}; add them to tests/strategies.py "
                         f"(reached: {sorted(reached)})")


# ================================================================== regressions found by the properties
def _fd(f, args, i, h=1e-6):
    x = np.array(args[i], dtype=np.float64)
    g = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        vals = []
        for step in (h, -h):
            xp = x.copy()
            xp[idx] += step
            vals.append(f(*[xp if j == i else a for j, a in enumerate(args)]))
        g[idx] = (vals[0] - vals[1]) / (2 * h)
    return g


def test_regression_matmul_of_float32_and_float64_operands():
    """Found by the array property (`relu(abs(a0)) @ log(exp(a1))`, a0 float64, a1 float32): Numba's
    np.dot and @ reject operands of two dtypes, so the module did not compile. All four product
    forms, and their adjoints (outer products, transposed products), mixed."""
    src = "\n".join(["[inputs]", 'v = { shape = [3] }', 'w = { shape = [3], dtype = "float32" }',
                     'A = { shape = ["n", 3], dtype = "float32" }', 'B = { shape = [3, 2] }', "[graph]",
                     'out = "v @ w + sum(A @ v) + sum(w @ B) + sum(transpose(A) @ (A @ B))"',
                     "[output]", 'value = "out"', 'wrt = ["v", "w", "A", "B"]', ""])
    c = compiled(src)

    def ref(v, w, A, B):
        return v @ w + np.sum(A @ v) + np.sum(w @ B) + np.sum(A.T @ (A @ B))

    rng = np.random.default_rng(5)
    for n in (1, 3):
        args = [rng.standard_normal(3), rng.standard_normal(3).astype(np.float32),
                rng.standard_normal((n, 3)).astype(np.float32), rng.standard_normal((3, 2))]
        exact = [a.astype(np.float64) for a in args]
        value, grads = c.value_and_grad(*args)
        assert value == pytest.approx(ref(*exact), rel=1e-6)
        assert c.forward(*args) == value
        for i, g in enumerate(grads):
            assert g.shape == args[i].shape
            np.testing.assert_allclose(g, _fd(ref, exact, i), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["piecewise_in_condition", "literal_false", "literal_true"])
def test_regression_condition_on_a_piecewise_is_lowered(case):
    """Found by the scalar property: SymPy writes a comparison of a Piecewise inside a Piecewise
    condition as ``ITE(c, a, b)`` (``ITE(x1 > 0, x0 < 1, x2 < 1)``), which the SymPy frontend
    rejected as unsupported although the user wrote only Piecewise and ``<``; then (thorough
    profile) an ITE with a literal ``False`` branch, ``ITE(x2 <= E, x1 < -E, False)``."""
    x0, x1, x2 = XS
    cond = {"piecewise_in_condition": sp.Piecewise((x0, x1 > 0), (x2, True)) < 1,
            "literal_false": sp.ITE(x1 > 0, x0 < 1, False),
            "literal_true": sp.ITE(x1 > 0, True, x2 < 1)}[case]
    expr = sp.Piecewise((x0 * x1, cond), (sp.sin(x2), True))
    assert expr.has(sp.ITE)
    c = compiled(expr, args=list(XS))
    oracle = SymbolicOracle(expr, list(XS))
    for pt in [(0.5, 1.5, 3.0), (2.0, 1.5, 3.0), (2.0, -1.5, 0.5), (2.0, -1.5, 3.0)]:   # all four branches
        want, want_grads, scale = oracle.at(dict(zip(XS, pt)))
        value, grads = c.value_and_grad(*pt)
        assert_close(value, want, 1.0, f"value at {pt}")
        assert_close(grads, want_grads, scale, f"gradient at {pt}")


def test_regression_logavg_pool_of_a_huge_argument():
    """Found by the array property (thorough profile): at a0 = 1.33467734, x = exp(exp(a0))^2 =
    1993.29 and the float64 NumPy reference ``log(mean(exp(x)))`` overflowed to inf, failing the
    property where gradc was right. The oracle here is ``math``/mpmath, written out:
    y = (1/β) ln((1/n) Σ exp(β x_i)), dy/da_i = softmax(βx)_i · 2 x_i e^(a_i)."""
    src = "\n".join(["[inputs]", 'a0 = { shape = ["n"] }', "[graph]",
                     'out = "logavg_pool((exp(exp(a0)) ** 2), 1, axis=0)"', "[output]", 'value = "out"',
                     'wrt = ["a0"]', ""])
    c = compiled(src)
    a = 1.33467734
    x = math.exp(math.exp(a)) ** 2
    value, (grad,) = c.value_and_grad(np.array([a]))
    assert value == pytest.approx(x, rel=1e-13) and value == pytest.approx(1993.2865239396833, rel=1e-13)
    assert grad[0] == pytest.approx(2 * x * math.exp(a), rel=1e-12)
    assert grad[0] == pytest.approx(15144.074246643877, rel=1e-12)
    with mpmath.workdps(50):                 # two and three rows: the softmax weights matter
        for point in ([a, 1.2], [a, a - 1e-3, -0.5], [-1.0, a]):
            xs = [mpmath.exp(mpmath.exp(mpmath.mpf(v))) ** 2 for v in point]
            m = max(xs)
            total = mpmath.fsum(mpmath.exp(xi - m) for xi in xs)
            want = m + mpmath.log(total / len(xs))
            want_grad = [mpmath.exp(xi - m) / total * 2 * xi * mpmath.exp(mpmath.mpf(v)) for xi, v in zip(xs, point)]
            value, (grad,) = c.value_and_grad(np.array(point))
            assert value == pytest.approx(float(want), rel=1e-12), point
            scale = max(float(g) for g in want_grad)
            np.testing.assert_allclose(grad, [float(g) for g in want_grad], rtol=1e-9, atol=1e-11 * scale)


def test_regression_logavg_pool_of_a_huge_argument_through_the_property():
    """The same point through the property's own checks: the mpmath reference with its central
    differences, the float64 NumPy reference (now shifted by the maximum: finite and equal to
    mpmath's), and central differences of ``forward``."""
    a0 = Node("a0", (N,), lambda c: c[0]["a0"])
    x = Node("(exp(exp(a0)) ** 2)", (N,), lambda c: c[1].seen(c[1].exp(c[1].exp(a0.fn(c))) ** 2))
    root = Node(f"logavg_pool({x.text}, 1, axis=0)", (), lambda c: c[1].logavg(x.fn(c), 1.0, 0))
    tree = ArrayTree(root, {"a0": (N,)}, {}, frozenset(), {"a0": "float64"})
    c = compiled(tree.source)
    for point in ([1.33467734], [1.33467734, 1.0], [1.2, 1.33467734, -0.3]):
        args = {"a0": np.array(point)}
        with mpmath.workdps(MP_DPS):
            want, want_grads = exact_gradients(tree, args)
        assert want == pytest.approx(float(mpmath.log(mpmath.fsum(
            mpmath.exp(mpmath.exp(mpmath.exp(mpmath.mpf(v))) ** 2) for v in point) / len(point))), rel=1e-14)
        with np.errstate(over="ignore"):               # what the reference computed before
            assert not np.isfinite(np.log(np.mean(np.exp(np.exp(np.exp(args["a0"])) ** 2))))
        assert float(tree.evaluate(args, Backend(mp=False))) == pytest.approx(want, rel=1e-12)
        check_array_point(c, tree, len(point), args, want, want_grads)


def test_regression_kink_next_to_the_point_is_seen_by_the_finite_differences():
    """Found by the array property (thorough profile): out = |tanh(cos(s))| + 0.5, s = sum(a0), in
    float32 at a point where s = -1.5707 lies within 1e-4 of -pi/2, where cos, and so abs's
    operand, changes sign. gradc's gradient is right, sign(tanh(cos s)) sech^2(cos s) (-sin s)
    (= -1 here, written out below with math); the central differences at both steps straddled
    the kink alike (about -0.009), so the Richardson estimate missed it. The one-sided
    quotients see it: the point is now a kink, not a failure."""
    src = "\n".join(["[inputs]", 'a0 = { shape = [3, 1], dtype = "float32" }', "[graph]",
                     'out = "lp_pool((abs(tanh(cos(sum(a0, axis=0)))) + 0.5), 1, axis=0)"', "[output]",
                     'value = "out"', 'wrt = ["a0"]', ""])
    c = compiled(src)
    a0 = np.array([[-1.6757183], [-1.6645943], [1.769479]], dtype=np.float32)
    s = float(np.sum(a0, dtype=np.float32))
    assert abs(s + math.pi / 2) < 1e-4
    u = float(np.cos(np.float32(s)))                      # abs's operand's sign, as float32 computes it
    want = math.copysign(1.0, math.tanh(u)) * (1 - math.tanh(u) ** 2) * -math.sin(s)
    _, (grad,) = c.value_and_grad(a0)
    np.testing.assert_allclose(grad, np.full((3, 1), want), rtol=1e-5)
    fd, err, kink = fd_of_forward(c, [a0], 0)
    assert np.all(np.abs(fd - want) > 0.5) and np.all(err < 0.1)   # what fooled the Richardson estimate
    assert np.all(kink)
    # and away from the kink, the same function is smooth there: no kink, and the differences agree
    a1 = a0 + np.float32(0.3)
    fd1, _, kink1 = fd_of_forward(c, [a1], 0)
    assert not np.any(kink1)
    np.testing.assert_allclose(fd1, c.value_and_grad(a1)[1][0], rtol=1e-2, atol=1e-3)


EXTREME = [np.array([1993.2865239396833, 1.0, -3.0]), np.array([-800.0, -799.5, -1500.0]),
           np.array([750.0, 749.0, 0.25]), np.array([40.0, -60.0, 120.0])]


@pytest.mark.parametrize("x", EXTREME, ids=["huge", "very_negative", "overflowing_exp", "mixed"])
def test_float64_references_are_as_stable_as_the_ops(x):
    """The float64 helpers of ``strategies.Backend`` (which check the mpmath reference) stay
    finite and accurate where ``exp`` overflows or underflows and the op does not; mpmath
    (50 digits, unbounded exponents) is the oracle, computed here plainly."""
    F, M = Backend(mp=False), Backend(mp=True)
    with mpmath.workdps(MP_DPS):
        X = M.arr(x)

        def close(got, want, what):
            got, want = (np.vectorize(float, otypes=[np.float64])(np.asarray(v, dtype=object)) for v in (got, want))
            assert np.all(np.isfinite(got)), f"{what}: float64 reference overflowed: {got}"
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-40, err_msg=what)   # (an oracle of 1e-52 rounds to 0)

        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in X))
        close(F.logsumexp(x), lse, "logsumexp")
        close(M.logsumexp(X), lse, "logsumexp (mpmath)")
        rows = np.stack([x, x[::-1]])
        close(F.logsumexp(rows, axis=1), [lse, lse], "logsumexp axis=1")
        close(F.logsumexp(rows, axis=0), [mpmath.log(mpmath.exp(X[i]) + mpmath.exp(X[-1 - i])) for i in range(3)],
              "logsumexp axis=0")
        for beta in (1.0, -1.0, 2.0, 0.5):
            want = mpmath.log(mpmath.fsum(mpmath.exp(beta * v) for v in X) / 3) / beta
            close(F.logavg(x, beta, 0), want, f"logavg beta={beta}")
            close(M.logavg(X, beta, 0), want, f"logavg beta={beta} (mpmath)")
        pos = np.abs(x) * 1e3 + 0.5           # up to 2e6: x^3 fine, but 1e6^p sums test the scaling
        P = M.arr(pos)
        for p in (1.0, 2.0, 3.0, 0.5, 1.5):
            want = mpmath.fsum(v ** p for v in P) ** (1 / mpmath.mpf(p))
            close(F.lp(pos, p, 0), want, f"lp p={p}")
        close(F.lp(np.array([1e300, 3e299]), 2.0, 0), mpmath.sqrt(mpmath.mpf(1e300) ** 2 + mpmath.mpf(3e299) ** 2),
              "lp of entries whose squares overflow")
        for y in (0.0, 0.3, 1.0):
            want = [-(y * mpmath.log(1 / (1 + mpmath.exp(-v))) + (1 - y) * mpmath.log(mpmath.exp(-v) / (1 + mpmath.exp(-v))))
                    for v in X]
            close(F.bce(x, y), want, f"bce y={y}")
            close(M.bce(X, y), want, f"bce y={y} (mpmath)")
        close(F.softplus(x), [mpmath.log(1 + mpmath.exp(v)) for v in X], "softplus")
        close(F.log_sigmoid(x), [-mpmath.log(1 + mpmath.exp(-v)) for v in X], "log_sigmoid")
        scores = np.stack([x, x[::-1] - 2.0])
        labels = np.array([0, 2])
        want = [mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row)) - mpmath.mpf(float(row[k]))
                for row, k in zip(scores, labels)]
        close(F.softmax_ce(scores, labels), want, "softmax_cross_entropy")
        close(M.softmax_ce(M.arr(scores), labels), want, "softmax_cross_entropy (mpmath)")


# ================================================================== forward mode: JVP and HVP (issue 11)
#: Each example compiles a module with the jvp and hvp entry points besides value_and_grad (three
#: Numba compiles): a few examples in the ci profile, dozens in the thorough one.
FEW = settings(max_examples=max(2, EXAMPLES // 4))
FEWER = settings(max_examples=max(1, EXAMPLES // 10))
#: The HVP's central differences of value_and_grad along v: the step, and the accepted error
#: (relative to max(1, |fd|), plus 4x the Richardson estimate and the rounding of the gradients).
HVP_STEP, HVP_TOL = 1e-5, 1e-6


def hvp_by_differences(c, args, wrt_pos, v):
    """Central differences of ``value_and_grad``'s gradients along ``v`` (one array or number per
    ``wrt`` argument, at positions ``wrt_pos``): ``(fd, err, rounding)`` per ``wrt`` argument,
    the quotient at step h/2, its disagreement with step h (large where a kink lies within the
    step) and the size of the rounding error of the gradients divided by the step."""
    quots, gmax = [], 0.0
    for h in (HVP_STEP, HVP_STEP / 2):
        grads = []
        for sign in (1.0, -1.0):
            a = list(args)
            for p, t in zip(wrt_pos, v):
                a[p] = args[p] + sign * h * t
            g = c.value_and_grad(*a)[1]
            gmax = max([gmax] + [float(np.max(np.abs(x))) for x in g])
            grads.append(g)
        quots.append([(np.asarray(gp) - np.asarray(gm)) / (2 * h) for gp, gm in zip(*grads)])
    rounding = 64 * np.finfo(np.float64).eps * max(1.0, gmax) / HVP_STEP
    return [(q2, np.abs(q1 - q2), rounding) for q1, q2 in zip(*quots)]


def check_hvp(Hv, by_differences, what):
    for k, (got, (fd, err, rounding)) in enumerate(zip(Hv, by_differences)):
        got = np.asarray(got, dtype=np.float64)
        assert got.shape == fd.shape, f"{what}: (H v)_{k} has shape {got.shape}, want {fd.shape}"
        smooth = err <= 1e-4 * np.maximum(1.0, np.abs(fd)) + rounding
        tally(f"HVP entries skipped (kink within the step): {int(np.sum(~smooth))}")
        tol = HVP_TOL * np.maximum(1.0, np.abs(fd)) + 4 * err + rounding
        bad = smooth & ~(np.abs(got - fd) <= tol)          # (a NaN is bad)
        assert not np.any(bad), f"{what}: (H v)_{k} = {got}, differences of the gradient {fd} (± {tol})"


@FEW
@given(tree=scalar_trees(max_depth=DEPTH), points=POINTS, seed=st.integers(0, 2 ** 32 - 1))
def test_scalar_tree_jvp_and_hvp_match_sympy_and_differences_of_the_gradient(tree, points, seed):
    """jvp == value and gradient · t of ``sympy.diff`` (mpmath); hvp == central differences of
    ``value_and_grad`` along v."""
    oracle = SymbolicOracle(tree.expr, list(XS))
    wanted = []
    for pt in points:
        try:
            wanted.append((pt, oracle.at(dict(zip(XS, pt)))))
        except Reject as why:
            event(f"scalar point rejected: {why}")
    assume(wanted)
    c = compiled(tree.expr, args=list(XS), derivatives=["jvp", "hvp"])
    rng = np.random.default_rng(seed)
    for pt, (want, want_grads, scale) in wanted[:3]:
        note(f"point {pt}")
        t = rng.standard_normal(3)
        value, tangent = c.jvp(*pt, tuple(t))
        assert_close(value, want, 1.0, f"jvp's value of {tree.expr} at {pt}")
        want_t = float(np.dot(want_grads, t))
        size = float(np.sum(np.abs(np.multiply(want_grads, t))))
        assert abs(tangent - want_t) <= 1e-9 * size + 1e-11 * scale * float(np.sum(np.abs(t))), \
            f"jvp of {tree.expr} at {pt} along {t}: {tangent}, want {want_t}"
        Hv = c.hvp(*pt, tuple(t))
        assert isinstance(Hv, tuple) and len(Hv) == 3
        check_hvp([np.asarray(h) for h in Hv], hvp_by_differences(c, list(pt), [0, 1, 2], list(t)),
                  f"hvp of {tree.expr} at {pt} along {t}")


@FEWER
@given(tree=array_trees(max_depth=DEPTH, max_rank=MAX_RANK, max_nodes=MAX_NODES), seed=st.integers(0, 2 ** 32 - 1),
       batch=st.integers(1, 3))
def test_array_tree_jvp_and_hvp_match_the_exact_gradient_and_its_differences(tree, seed, batch):
    """jvp == Σ exact gradient · t (the mpmath reference's 50-digit differences); hvp ==
    central differences of ``value_and_grad`` along v. float64 trees (float32 has no room for
    second differences)."""
    assume(tree.precision == "float64")
    note(tree.source)
    rng = np.random.default_rng(seed)
    args = tree.draw_args(rng, batch)
    try:
        with mpmath.workdps(MP_DPS):
            want, want_grads = exact_gradients(tree, args)
    except Reject as why:
        event(f"array point rejected: {why}")
        assume(False)
    c = compiled(tree.source, derivatives=["jvp", "hvp"])
    call_args = [args[a] for a in c.arg_names]
    tangents = tuple(rng.standard_normal(np.shape(args[w])) for w in c.wrt)
    value, tangent = c.jvp(*call_args, tangents)
    assert_close(value, want, max(1.0, abs(want)), f"jvp's value at batch {batch}")
    want_t = sum(float(np.sum(want_grads[w] * t)) for w, t in zip(c.wrt, tangents))
    size = sum(float(np.sum(np.abs(want_grads[w] * t))) for w, t in zip(c.wrt, tangents))
    assert abs(tangent - want_t) <= 1e-9 * size + 1e-11 * max(1.0, size), \
        f"jvp at batch {batch}: {tangent}, want {want_t}"
    wrt_pos = [c.arg_names.index(w) for w in c.wrt]
    Hv = c.hvp(*call_args, tangents)
    assert isinstance(Hv, tuple) and len(Hv) == len(c.wrt)
    check_hvp(Hv, hvp_by_differences(c, call_args, wrt_pos, list(tangents)), f"hvp at batch {batch}")


@settings(max_examples=max(1, EXAMPLES // 20))
@given(tree=array_trees(max_depth=DEPTH - 1, max_rank=MAX_RANK, max_nodes=MAX_NODES, focus="image"),
       seed=st.integers(0, 2 ** 32 - 1), batch=st.integers(1, 3))
def test_image_tree_jvp_and_hvp_match_the_exact_gradient_and_its_differences(tree, seed, batch):
    test_array_tree_jvp_and_hvp_match_the_exact_gradient_and_its_differences.hypothesis.inner_test(tree, seed, batch)


#: ops that never get a tangent: constants, and the masks (comparisons and their logic)
NO_TANGENT = {"const", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not"}


def test_every_jvp_rule_is_reached_by_the_strategies(monkeypatch):
    """Forward mode and forward over reverse (the jvp and hvp IR, :func:`gradc.ad.derivatives.derive`,
    of trees drawn as in :func:`test_every_op_is_reachable_by_the_strategies`; no Numba) apply
    the JVP rule of every op of the table but the constants and masks: the properties above
    exercise every rule."""
    import gradc.ad.forward as forward
    from gradc.ad.derivatives import derive

    applied: set[str] = set()
    rule_of = forward.jvp_rule

    def recording(op):
        applied.add(op.name)
        return rule_of(op)

    monkeypatch.setattr(forward, "jvp_rule", recording)
    for family, (strategy, productions) in FAMILIES.items():
        sample = draw_examples(strategy, 200)
        for prod in productions:
            having = [t for t in sample if prod in t.productions]
            if not having:
                having = [find(strategy, lambda t, prod=prod: prod in t.productions, settings=FIND)]
            having = sorted({str(t.source): t for t in having}.values(), key=lambda t: len(str(t.source)))
            for t in having[:2] + having[2:][-1:]:
                art = build(t.source, **compile_kwargs(t))
                for kind in ("jvp", "hvp"):
                    derive(kind, art.primal, art.full, art.lowered.wrt)
    # (the JVP rule of a FORWARD_ONLY op would apply at third order only: no kind derives it)
    missing = sorted(set(OPS) - applied - NO_TANGENT - FORWARD_ONLY)
    assert not missing, f"JVP rules no strategy reaches: {missing} (reached: {sorted(applied)})"
