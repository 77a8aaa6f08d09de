"""The derivatives besides the gradient (issue 11), each against an independent oracle.

* Hessians (and HVPs, JVPs) of ~50 scalar SymPy expressions over the whole SymPy op set vs
  ``sympy.diff`` twice, evaluated in mpmath at 50 digits (``strategies.evaluate``), at several
  points each. To keep Numba's compile time down, the expressions are compiled in a few groups:
  each group is the sum of its expressions, expression ``k`` in its own symbols ``x_k, y_k``, so
  the Hessian of the sum is block diagonal with expression ``k``'s Hessian as block ``k`` (and
  every other entry exactly 0): one module per group, each expression compiled once.
* JVPs, VJPs, Jacobians, HVPs and Hessians of array programs (specs: matmul, broadcasting,
  reductions, softmax cross-entropy, slicing, pooling, maxout, logsumexp, the losses, where)
  vs central finite differences of NumPy references written here; ``hvp`` vs finite
  differences of ``value_and_grad`` and vs ``hessian @ v``; ``jvp`` vs ``jacobian @ t``;
  ``vjp`` vs ``cᵀ jacobian``.
* Masked selects at second order (no NaN from an untaken branch); named outputs; bad input.
"""
from __future__ import annotations

import json
import math

import mpmath
import numpy as np
import pytest
import sympy as sp

import gradc
from gradc import ArgumentError, GradcError

from conftest import compiled
from strategies import MP, MP_DPS, evaluate, for_diff, kink_gaps

# ====================================================================== scalar SymPy Hessians
x, y = sp.symbols("x y", real=True)
R = sp.Rational

#: (id, expression in x and y, three points (x, y) in its domain, away from its kinks)
EXPRESSIONS = [
    # arithmetic and powers
    ("poly", x * y + x / y - 3 * x ** 2 + y ** 3 * x, [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("rational", (x ** 2 + 1) / (y ** 2 + 2) - x / (1 + x ** 2 * y ** 2), [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("powc", x ** R(-3, 2) * y + y ** R(5, 3) + x ** 7 / 20, [(0.3, 0.7), (1.2, 2.5), (2.0, 0.4)]),
    ("pow", x ** y + y ** x, [(0.3, 0.7), (1.2, 2.5), (2.0, 0.4)]),
    ("pow_self", x ** x * y, [(0.3, 0.7), (1.2, -2.5), (2.0, 0.4)]),
    ("exp_base", 2 ** x * 3 ** (x * y) + sp.Float(0.5) ** y, [(0.3, 0.7), (-1.2, 0.5), (1.0, -0.4)]),
    ("sqrt", sp.sqrt(x ** 2 + y ** 2 + 1) + sp.sqrt(x) * y, [(0.3, 0.7), (1.2, -2.5), (2.0, 0.4)]),
    ("cbrt", sp.cbrt(x) * y + sp.real_root(y, 3) * x, [(0.3, 0.7), (1.2, -2.5), (2.0, -0.4)]),
    ("exp_log", sp.exp(-x * y) + sp.log(x ** 2 + y ** 2) + sp.log(x, 10) * y, [(0.3, 0.7), (1.2, -2.5), (2.0, 0.4)]),
    ("rosenbrock", (1 - x) ** 2 + 100 * (y - x ** 2) ** 2, [(0.3, 0.7), (-1.2, 1.0), (1.0, 1.0)]),
    ("constants", sp.pi * x ** 2 + sp.E * y + sp.EulerGamma * x * y ** 2 + sp.GoldenRatio * sp.Catalan * x ** 3,
     [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("quartic_quotient", (x - y) ** 4 / (1 + x ** 2), [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    # trigonometric and hyperbolic
    ("trig", sp.sin(x) * sp.cos(y) + sp.tan(x * y), [(0.3, 0.7), (-1.2, 0.5), (2.0, -0.4)]),
    ("cot_sec", sp.cot(x) + sp.sec(y) * x, [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("csc", sp.csc(x * y) + sp.csc(x) * y, [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("asin_acos", sp.asin(x * y) + sp.acos(x - y), [(0.3, 0.7), (-0.6, -0.5), (0.2, -0.4)]),
    ("atan_acot", sp.atan(x / y) + sp.acot(x * y) * y, [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("sinh_cosh_tanh", sp.sinh(x) * sp.cosh(y) + sp.tanh(x * y), [(0.3, 0.7), (-1.2, 0.5), (2.0, -0.4)]),
    ("coth_sech_csch", sp.coth(x) + sp.sech(y) * x + sp.csch(x + y), [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("asinh_acosh", sp.asinh(x * y) + sp.acosh(x ** 2 + y ** 2 + R(11, 10)), [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("atanh", sp.atanh(x * y / 4) + sp.atanh(x) * y, [(0.3, 0.7), (-0.6, 2.5), (0.5, -0.4)]),
    # special functions
    ("erf_erfc", sp.erf(x * y) + sp.erfc(x - y) * x, [(0.3, 0.7), (-1.2, 0.5), (2.0, -0.4)]),
    ("gamma", sp.gamma(x * y + 2) + sp.gamma(x) * y, [(0.3, 0.7), (1.2, 2.5), (2.0, -0.4)]),
    ("gamma_negative", sp.gamma(x) * y ** 2, [(-0.5, 0.7), (-1.3, 2.5), (-2.7, -0.4)]),
    ("loggamma", sp.loggamma(x ** 2 + y ** 2 + R(1, 2)) + sp.loggamma(x) * y, [(0.3, 0.7), (1.2, 2.5), (4.0, -0.4)]),
    ("digamma", sp.digamma(x + y ** 2 + 1) * x + sp.digamma(x), [(0.3, 0.7), (1.2, 2.5), (12.0, -0.4)]),
    ("polygamma", sp.polygamma(1, x * y + 1) + sp.polygamma(3, x + 2) * y, [(0.3, 0.7), (1.2, 2.5), (2.0, 0.4)]),
    ("polygamma_negative", sp.polygamma(2, x) * y, [(-0.5, 0.7), (-1.3, 2.5), (-2.7, -0.4)]),
    ("sinc", sp.sinc(x * y) + sp.sinc(x) * y, [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("sinc_small", sp.sinc(x) * y ** 2, [(0.05, 0.7), (-0.001, 2.5), (0.9, -0.4)]),
    ("lambertw", sp.LambertW(x * y) + sp.LambertW(sp.exp(x)) * y, [(0.3, 0.7), (-1.2, 0.25), (2.0, 3.4)]),
    ("lambertw_large", sp.LambertW(x) * y, [(5.0, 0.7), (40.0, 2.5), (-0.3, -0.4)]),
    ("atan2", sp.atan2(y, x) * x + sp.atan2(x, y + 3), [(0.3, 0.7), (-1.2, 2.5), (-2.0, -0.4)]),
    # kinks, selects and piecewise-constant functions
    ("abs", sp.Abs(x * y - 1) * x ** 2 + sp.Abs(y) ** 3, [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("max_min", sp.Max(x, y) ** 2 + sp.Min(x * y, 1) * x, [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("max3", sp.Max(x, y, x * y) ** 3 + sp.Min(sp.sin(x), sp.cos(y), x * y) * y, [(0.3, 0.7), (-1.2, 2.5), (2.0, 1.4)]),
    ("piecewise", sp.Piecewise((x ** 2 * y, x > y), (sp.sin(x) * y, True)), [(0.3, 0.7), (-1.2, -2.5), (2.0, -0.4)]),
    ("piecewise_and_or", sp.Piecewise((sp.exp(x) * y, (x >= 0) & (y > 0)), (x * y ** 2, (x <= -1) | (y < -1)),
                                      (sp.cos(x * y), True)), [(0.3, 0.7), (-1.2, 2.5), (0.5, -0.4)]),
    ("piecewise_log", sp.Piecewise((sp.log(x), x > 0), (x ** 2, True)) * y, [(0.3, 0.7), (-1.2, 2.5), (-2.0, -0.4)]),
    ("floor_ceil", sp.floor(x) * y ** 2 + sp.ceiling(y) * x ** 3, [(0.3, 0.7), (-1.2, 2.5), (2.5, -0.4)]),
    ("frac", sp.frac(x) * y ** 2 + sp.frac(y) ** 3, [(0.3, 0.7), (-1.2, 2.5), (2.5, -0.4)]),
    ("mod", sp.Mod(x, y) * x + sp.Mod(x * y, 3) ** 2, [(0.3, 0.7), (-1.1, 2.5), (2.5, -0.4)]),
    ("heaviside", sp.Heaviside(x) * x ** 2 * y + sp.Heaviside(y, 0) * y ** 3, [(0.3, 0.7), (-1.2, 2.5), (2.5, -0.4)]),
    ("sign", sp.sign(x) * x ** 2 * y + sp.sign(y - 1) * sp.exp(y), [(0.3, 0.7), (-1.2, 2.5), (2.5, -0.4)]),
    # forms of the nn activations and losses, written in SymPy
    ("sigmoid_like", 1 / (1 + sp.exp(-x * y)) + x / (1 + sp.exp(y)), [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("softplus_like", sp.log(1 + sp.exp(x - y)) + y * sp.log(1 + sp.exp(-x)), [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("softsign_like", x / (1 + sp.Abs(x)) * y, [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("gelu_like", x * (1 + sp.erf(x * y / sp.sqrt(2))) / 2, [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("log_mixture", sp.log(sp.exp(-(x - 1) ** 2) + sp.exp(-(y + 1) ** 2) + sp.exp(-x * y)),
     [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
    ("nested", sp.exp(sp.sin(x * y)) * sp.log(2 + sp.cos(x)) + sp.sqrt(1 + sp.tanh(x) ** 2) / (2 + sp.sin(y)),
     [(0.3, 0.7), (-1.2, 2.5), (2.0, -0.4)]),
]

#: Expressions per module: the Hessian sweep's code grows with the group, Numba's compile time with it.
GROUP = 9
GROUPS = [EXPRESSIONS[i:i + GROUP] for i in range(0, len(EXPRESSIONS), GROUP)]
N_POINTS = 3


def _symbols(k):
    return sp.Symbol(f"x_{k}", real=True), sp.Symbol(f"y_{k}", real=True)


class ExactDerivatives:
    """Value, gradient and Hessian of ``expr(x, y)`` by ``sympy.diff`` (twice), evaluated in
    mpmath at 50 digits; Abs/Max/Min/sign/floor/... differentiated by their a.e. derivatives
    (``strategies.for_diff``)."""

    def __init__(self, expr):
        self.expr = expr
        smooth = for_diff(expr)
        self.grad = [sp.diff(smooth, v) for v in (x, y)]
        self.hess = [[sp.diff(g, v) for v in (x, y)] for g in self.grad]
        self.gaps = kink_gaps(expr)

    def at(self, point):
        env = dict(zip((x, y), point))
        with mpmath.workdps(MP_DPS):
            for gap in self.gaps:              # a test's own check: its points are away from the kinks
                assert abs(evaluate(gap, env, MP)) > 1e-3, f"{self.expr} at {point}: too close to a kink"
            value = float(evaluate(self.expr, env, MP))
            grad = np.array([float(evaluate(g, env, MP)) for g in self.grad])
            hess = np.array([[float(evaluate(h, env, MP)) for h in row] for row in self.hess])
        return value, grad, hess


class HessianGroup:
    """One module: the sum of the group's expressions, expression ``k`` in ``x_k, y_k``."""

    def __init__(self, entries):
        self.entries = entries
        self.args = [s for k in range(len(entries)) for s in _symbols(k)]
        total = sum((e.subs({x: _symbols(k)[0], y: _symbols(k)[1]}, simultaneous=True)
                     for k, (_, e, _) in enumerate(entries)), sp.S.Zero)
        self.c = compiled(total, args=self.args, derivatives=["hessian", "hvp", "jvp", "value_grad_hessian"])
        self.exact = [ExactDerivatives(e) for _, e, _ in entries]
        self.points = []                       # per point index: the call arguments, exact values
        for i in range(N_POINTS):
            args = [float(v) for _, _, pts in entries for v in pts[i]]
            self.points.append((args, [ex.at(pts[i]) for ex, (_, _, pts) in zip(self.exact, entries)]))

    def block_diagonal(self, exact):
        n = 2 * len(self.entries)
        H = np.zeros((n, n))
        for k, (_, _, h) in enumerate(exact):
            H[2 * k:2 * k + 2, 2 * k:2 * k + 2] = h
        return H


_GROUP_CACHE: dict = {}


def _group(i):
    if i not in _GROUP_CACHE:
        _GROUP_CACHE[i] = HessianGroup(GROUPS[i])
    return _GROUP_CACHE[i]


@pytest.fixture(params=range(len(GROUPS)), ids=[f"group{i}" for i in range(len(GROUPS))])
def group(request):
    return _group(request.param)


#: Groups whose HVP and JVP are checked too (each entry point is a Numba compile of its own; the
#: Hessian is the HVP swept over unit vectors, so every group's HVP code is checked through it)
SEEDED = [0, 1, len(GROUPS) - 1]


@pytest.fixture(params=SEEDED, ids=[f"group{i}" for i in SEEDED])
def seeded_group(request):
    return _group(request.param)


def _assert_blocks(got, want, entries, what, rtol=1e-9, atol=1e-11):
    """``got`` vs ``want`` (vectors or matrices over the group's 2k variables), reported per
    expression: block ``k`` is expression ``k``'s."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, want {want.shape}"
    assert np.all(np.isfinite(got)), f"{what}: not finite: {got}"
    for k, (name, expr, _) in enumerate(entries):
        rows = slice(2 * k, 2 * k + 2)
        g, w = got[rows], want[rows]
        scale = max(1.0, float(np.max(np.abs(w))))
        bad = np.abs(g - w) > rtol * np.abs(w) + atol * scale
        assert not np.any(bad), f"{what} of {name} = {expr}: got {g.tolist()}, want {w.tolist()}"


def test_the_expressions_cover_the_sympy_op_set():
    """The expressions reach every op the SymPy front end lowers to (the scalar functions of
    docs/sympy_functions.md and the arithmetic); a new one must get an expression here."""
    from gradc.pipeline import build
    ops = set()
    for k in range(len(GROUPS)):
        for name, e, _ in GROUPS[k]:
            ops |= {s.op for s in build(e, args=[x, y]).primal.stmts}
    sympy_ops = {"add", "sub", "mul", "div", "neg", "powc", "pow", "exp", "log", "sqrt", "sin", "cos", "tan",
                 "tanh", "abs", "sign", "maximum", "minimum", "where", "lt", "le", "gt", "ge", "logical_and",
                 "logical_or", "cot", "sec", "csc", "asin", "acos", "atan", "acot", "sinh", "cosh", "coth", "sech",
                 "csch", "asinh", "acosh", "atanh", "erf", "erfc", "gamma", "loggamma", "digamma", "polygamma",
                 "sinc", "lambertw", "atan2", "heaviside", "floor", "ceil", "frac", "mod"}
    assert len(EXPRESSIONS) >= 40
    assert not sympy_ops - ops, f"no expression reaches {sorted(sympy_ops - ops)}"


def test_hessian_matches_sympy_diff_twice(group):
    c = group.c
    for args, exact in group.points:
        H = c.hessian(*args)
        assert isinstance(H, np.ndarray) and H.shape == (len(args), len(args))
        want = group.block_diagonal(exact)
        _assert_blocks(H, want, group.entries, f"Hessian at {args}")
        # the blocks between expressions are exactly zero (they share no variable)
        off = H.copy()
        for k in range(len(group.entries)):
            off[2 * k:2 * k + 2, 2 * k:2 * k + 2] = 0.0
        assert np.all(off == 0.0), f"entries between independent expressions: {off[off != 0]}"


def test_value_grad_hessian_matches_sympy():
    group = _group(0)
    c = group.c
    args, exact = group.points[0]
    value, grads, H = c.value_grad_hessian(*args)
    assert value == pytest.approx(sum(v for v, _, _ in exact), rel=1e-12, abs=1e-12)
    _assert_blocks(np.array(grads), np.concatenate([g for _, g, _ in exact]), group.entries, "gradient")
    _assert_blocks(H, group.block_diagonal(exact), group.entries, "Hessian of value_grad_hessian")


def test_hvp_matches_sympy_hessian_times_v(seeded_group):
    group = seeded_group
    c = group.c
    rng = np.random.default_rng(11)
    for args, exact in group.points:
        v = rng.standard_normal(len(args))
        Hv = c.hvp(*args, tuple(v))
        assert isinstance(Hv, tuple) and len(Hv) == len(args)
        want = group.block_diagonal(exact) @ v
        _assert_blocks(np.array(Hv), want, group.entries, f"H v at {args}", rtol=1e-9, atol=1e-10)


def test_jvp_matches_sympy_gradient_dot_tangent(seeded_group):
    group = seeded_group
    c = group.c
    rng = np.random.default_rng(12)
    for args, exact in group.points:
        t = rng.standard_normal(len(args))
        value, tangent = c.jvp(*args, tuple(t))
        want_value = sum(v for v, _, _ in exact)
        want = sum(float(g @ t[2 * k:2 * k + 2]) for k, (_, g, _) in enumerate(exact))
        scale = sum(float(np.abs(g) @ np.abs(t[2 * k:2 * k + 2])) for k, (_, g, _) in enumerate(exact))
        assert value == pytest.approx(want_value, rel=1e-12, abs=1e-12)
        assert abs(tangent - want) <= 1e-9 * max(1.0, scale), f"JVP at {args}: {tangent} vs {want}"


# ====================================================================== array programs (specs)
def spec_text(name, inputs, params, graph, value, wrt=None, outputs=None):
    """Spec text: ``inputs``/``params`` map a name to a shape (``("int64", shape)`` for labels);
    ``graph`` a list of (name, expression)."""
    def decl(n, shape):
        if isinstance(shape, tuple):
            return f'{n} = {{ shape = {json.dumps(shape[1])}, dtype = "{shape[0]}" }}'
        return f"{n} = {{ shape = {json.dumps(shape)} }}"
    lines = ["[model]", f'name = "{name}"', "", "[inputs]"] + [decl(n, s) for n, s in inputs.items()]
    lines += ["", "[params]"] + [decl(n, s) for n, s in params.items()]
    lines += ["", "[graph]"] + [f"{n} = {json.dumps(e)}" for n, e in graph]
    lines += ["", "[output]", f'value = "{value}"']
    if wrt is not None:
        lines.append(f"wrt = {json.dumps(wrt)}")
    if outputs is not None:
        lines.append(f"outputs = {json.dumps(outputs)}")
    return "\n".join(lines) + "\n"


def np_lp(x, p, axis):
    return np.sum(x ** p, axis=axis) ** (1 / p)


def np_logavg(x, beta, axis):
    return np.log(np.mean(np.exp(beta * x), axis=axis)) / beta


def np_logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def np_maxout(z, k):
    m = z.shape[-1] // k
    return np.max(np.stack([z[..., q * m:(q + 1) * m] for q in range(k)]), axis=0)


def np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def np_softplus(z):
    return np.logaddexp(0.0, z)


def np_softmax_ce(s, y):
    return np_logsumexp(s, 1) - s[np.arange(len(y)), y]


def np_svm_hinge(s, y):
    margins = s - s[np.arange(len(y)), y][:, None] + 1.0
    margins[np.arange(len(y)), y] = 0.0
    return np.sum(np.maximum(margins, 0.0), axis=1)


def np_bce(z, t):
    return -(t * np.log(np_sigmoid(z)) + (1 - t) * np.log(np_sigmoid(-z)))


# ---- a vector/array output: matmul, bias, slicing, mean with an axis, pooling, maxout, logsumexp, relu
VECTOR = spec_text(
    "vec", {"X": [4, 3]}, {"W": [3, 6], "b": [6]},
    [("h", "tanh(X @ W + b)"),
     ("z", "h[1:] * 2.0 + mean(h, axis=0)"),
     ("p", "logsumexp(z, axis=1) + sum(z * z, axis=1)"),
     ("col", "sum(z, axis=0)"),
     ("out", "maxout(z, 3) * col[:2] + transpose(transpose(relu(z[:, 4:])) * p)")],
    "out", wrt=["X", "W", "b"])


def vector_ref(X, W, b):
    h = np.tanh(X @ W + b)
    z = h[1:] * 2.0 + h.mean(axis=0)
    p = np_logsumexp(z, 1) + np.sum(z * z, axis=1)
    return np_maxout(z, 3) * z.sum(axis=0)[:2] + (np.maximum(z[:, 4:], 0.0).T * p).T


# ---- scalar losses: a classifier (softmax CE, SVM hinge, BCE, MSE, where), and pooling/activations
CLASSIFIER = spec_text(
    "clf", {"X": [5, 3], "y": ("int64", [5]), "t": [5, 4]}, {"W": [3, 4], "b": [4]},
    [("scores", "X @ W + b"),
     ("loss", "mean(softmax_cross_entropy(scores, y)) + 0.5 * mean(svm_hinge(scores, y))"
              " + mean(binary_cross_entropy(scores, t)) + mse(sigmoid(scores), t)"
              " + 0.1 * sum(where(scores > 0, scores * scores, softplus(scores))) + 1e-2 * sum(W ** 2)"
              " + 0.1 * sum(elu(scores, 0.5) + leaky_relu(scores, 0.2) ** 2 + log_sigmoid(scores)"
              " + softsign(scores) + relu(scores) ** 3)")],
    "loss", outputs=["scores"])


def classifier_ref(X, y, t, W, b):
    s = X @ W + b
    elu = np.where(s >= 0, s, 0.5 * (np.exp(s) - 1))
    leaky = np.where(s > 0, s, 0.2 * s)
    return (np.mean(np_softmax_ce(s, y)) + 0.5 * np.mean(np_svm_hinge(s, y)) + np.mean(np_bce(s, t))
            + np.mean((np_sigmoid(s) - t) ** 2) + 0.1 * np.sum(np.where(s > 0, s * s, np_softplus(s)))
            + 1e-2 * np.sum(W ** 2)
            + 0.1 * np.sum(elu + leaky ** 2 - np_softplus(-s) + s / (1 + np.abs(s)) + np.maximum(s, 0) ** 3))


POOLING = spec_text(
    "pools", {"X": [3, 4]}, {"V": [3, 4], "a": [4]},
    [("z", "X * V + a"),
     ("loss", "sum(max_pool(z)) + sum(lp_pool(exp(z), 3) ** 2) + sum(lp_pool(exp(z), 1.5, axis=0))"
              " + sum(logavg_pool(z, 2) ** 2) + sum(logavg_pool(z, -1.5, axis=0))"
              " + sum(logsumexp(z, axis=0) ** 2) + logsumexp(z) + sum(maxout(z, 2) ** 2)")],
    "loss", wrt=["V", "a"])


def pooling_ref(X, V, a):
    z = X * V + a
    return (np.sum(z.max(axis=1)) + np.sum(np_lp(np.exp(z), 3, 1) ** 2) + np.sum(np_lp(np.exp(z), 1.5, 0))
            + np.sum(np_logavg(z, 2, 1) ** 2) + np.sum(np_logavg(z, -1.5, 0))
            + np.sum(np_logsumexp(z, 0) ** 2) + np_logsumexp(z.ravel(), 0) + np.sum(np_maxout(z, 2) ** 2))


def fd_jacobian(f, args, i, h=1e-6):
    """Central differences of the array function ``f`` w.r.t. ``args[i]``: ``out.shape + arg.shape``."""
    a = np.asarray(args[i], dtype=np.float64)
    out_shape = np.shape(f(*args))
    J = np.zeros(out_shape + a.shape)
    for idx in np.ndindex(a.shape):
        p, m = list(args), list(args)
        p[i], m[i] = a.copy(), a.copy()
        p[i][idx] += h
        m[i][idx] -= h
        J[(Ellipsis,) + idx] = (np.asarray(f(*p)) - np.asarray(f(*m))) / (2 * h)
    return J


def fd_hessian(f, args, i, j, h=1e-4):
    """Second-order central differences of the scalar ``f``: the block ``args[i].shape + args[j].shape``."""
    ai, aj = np.asarray(args[i], dtype=np.float64), np.asarray(args[j], dtype=np.float64)
    H = np.zeros(ai.shape + aj.shape)
    for p in np.ndindex(ai.shape):
        for q in np.ndindex(aj.shape):
            vals = []
            for si, sj in ((h, h), (h, -h), (-h, h), (-h, -h)):
                a = list(args)
                a[i] = np.array(a[i], dtype=np.float64)
                a[j] = a[i] if j == i else np.array(a[j], dtype=np.float64)
                a[i][p] += si
                a[j][q] += sj
                vals.append(f(*a))
            H[p + q] = (vals[0] - vals[1] - vals[2] + vals[3]) / (4 * h * h)
    return H


def assert_close(got, want, what, rtol, atol):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, want {want.shape}"
    assert np.all(np.isfinite(got)), f"{what}: not finite"
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    err = np.abs(got - want)
    assert np.all(err <= rtol * np.abs(want) + atol * scale), \
        f"{what}: worst error {np.max(err):.3e} at {np.unravel_index(np.argmax(err), err.shape)}; got {got}, want {want}"


def _args(c, values):
    return [values[n] for n in c.arg_names]


def _draw(shapes, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return {n: (rng.integers(0, s[1][0] if False else 4, size=s[1]) if isinstance(s, tuple)
                else scale * rng.standard_normal(s)) for n, s in shapes.items()}


def vector_points():
    return [_draw({"X": [4, 3], "W": [3, 6], "b": [6]}, seed) for seed in (1, 2)]


def classifier_points():
    out = []
    for seed in (3, 4):
        v = _draw({"X": [5, 3], "W": [3, 4], "b": [4]}, seed)
        rng = np.random.default_rng(seed + 100)
        v["y"] = rng.integers(0, 4, size=5).astype(np.int64)
        v["t"] = rng.uniform(0, 1, size=(5, 4))
        out.append(v)
    return out


def pooling_points():
    out = []
    for seed in (5, 6):
        v = _draw({"X": [3, 4], "V": [3, 4], "a": [4]}, seed)
        v["X"] = v["X"] * 0.7
        out.append(v)
    return out


def _wrt_index(c, values):
    return [c.arg_names.index(w) for w in c.wrt]


@pytest.fixture(scope="module")
def vector_model():
    return compiled(VECTOR, derivatives=["jacobian", "jvp", "vjp"])


def test_jacobian_of_an_array_output_matches_finite_differences(vector_model):
    c, mode = vector_model, "auto: rows"
    for values in vector_points():
        args = _args(c, values)
        J = c.jacobian(*args)
        assert isinstance(J, tuple) and len(J) == len(c.wrt)
        for w, Jw in zip(c.wrt, J):
            i = c.arg_names.index(w)
            assert Jw.shape == (3, 2) + values[w].shape
            assert_close(Jw, fd_jacobian(vector_ref, args, i), f"d out/d {w} ({mode})", 1e-6, 1e-7)


def test_jvp_of_an_array_output_matches_finite_differences_and_the_jacobian(vector_model):
    c = vector_model
    rng = np.random.default_rng(21)
    for values in vector_points():
        args = _args(c, values)
        tangents = tuple(rng.standard_normal(values[w].shape) for w in c.wrt)
        out, out_dot = c.jvp(*args, tangents)
        np.testing.assert_allclose(out, vector_ref(*args), rtol=1e-12, atol=1e-12)
        # the directional derivative, by central differences along the tangents
        h = 1e-6
        plus, minus = list(args), list(args)
        for w, t in zip(c.wrt, tangents):
            i = c.arg_names.index(w)
            plus[i], minus[i] = args[i] + h * t, args[i] - h * t
        assert_close(out_dot, (vector_ref(*plus) - vector_ref(*minus)) / (2 * h), "jvp vs FD", 1e-6, 1e-7)
        J = c.jacobian(*args)
        by_jacobian = sum(np.tensordot(Jw, t, axes=t.ndim) for Jw, t in zip(J, tangents))
        assert_close(out_dot, by_jacobian, "jvp vs jacobian @ t", 1e-12, 1e-12)


def test_vjp_of_an_array_output_matches_finite_differences_and_the_jacobian(vector_model):
    c = vector_model
    rng = np.random.default_rng(22)
    for values in vector_points():
        args = _args(c, values)
        cot = rng.standard_normal((3, 2))
        out, grads = c.vjp(*args, cot)
        np.testing.assert_allclose(out, vector_ref(*args), rtol=1e-12, atol=1e-12)
        assert isinstance(grads, tuple) and len(grads) == len(c.wrt)
        J = c.jacobian(*args)
        for w, g, Jw in zip(c.wrt, grads, J):
            i = c.arg_names.index(w)
            assert np.shape(g) == values[w].shape
            want = np.tensordot(cot, fd_jacobian(vector_ref, args, i), axes=2)
            assert_close(g, want, f"vjp d/d{w} vs FD", 1e-6, 1e-7)
            assert_close(g, np.tensordot(cot, Jw, axes=2), f"vjp d/d{w} vs cᵀ jacobian", 1e-12, 1e-12)


#: what each scalar model is compiled with (Numba compiles each entry point on its first call: the
#: pooling helpers are slow to compile, so that model is checked by its Hessian only)
DERIVATIVES = {"classifier": ["hessian", "hvp", "jvp", "vjp"], "pooling": ["hessian"]}
SCALAR_MODELS = {"classifier": (CLASSIFIER, classifier_ref, classifier_points),
                 "pooling": (POOLING, pooling_ref, pooling_points)}


@pytest.fixture(scope="module", params=sorted(SCALAR_MODELS))
def scalar_model(request):
    text, ref, points = SCALAR_MODELS[request.param]
    return compiled(text, derivatives=DERIVATIVES[request.param]), ref, points()


def test_hessian_blocks_match_second_differences_of_the_reference(scalar_model):
    c, ref, points = scalar_model
    for values in points:
        args = _args(c, values)
        wi = _wrt_index(c, values)
        H = c.hessian(*args)
        assert isinstance(H, tuple) and len(H) == len(wi) and all(len(row) == len(wi) for row in H)
        for r, i in enumerate(wi):
            for k, j in enumerate(wi):
                assert H[r][k].shape == values[c.wrt[r]].shape + values[c.wrt[k]].shape
                assert_close(H[r][k], fd_hessian(ref, args, i, j), f"H[{c.wrt[r]}][{c.wrt[k]}]", 2e-5, 2e-6)
            # symmetric: H[i][j] is H[j][i] transposed
            for k in range(len(wi)):
                a, b = H[r][k], H[k][r]
                ra = values[c.wrt[r]].ndim
                np.testing.assert_allclose(a, np.moveaxis(b, range(b.ndim - ra, b.ndim), range(ra)),
                                           rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def classifier_model():
    return compiled(CLASSIFIER, derivatives=DERIVATIVES["classifier"]), classifier_ref, classifier_points()


def test_hvp_matches_differences_of_the_gradient_and_the_hessian(classifier_model):
    c, ref, points = classifier_model
    rng = np.random.default_rng(23)
    for values in points:
        args = _args(c, values)
        value, grads = c.value_and_grad(*args)
        assert value == pytest.approx(ref(*args), rel=1e-12)
        for w, g in zip(c.wrt, grads):           # the gradient itself, against the reference
            assert_close(g, fd_jacobian(ref, args, c.arg_names.index(w)), f"d/d{w}", 1e-6, 1e-7)
        v = tuple(rng.standard_normal(values[w].shape) for w in c.wrt)
        Hv = c.hvp(*args, v)
        assert isinstance(Hv, tuple) and len(Hv) == len(c.wrt)
        h = 1e-6
        plus, minus = list(args), list(args)
        for w, t in zip(c.wrt, v):
            i = c.arg_names.index(w)
            plus[i], minus[i] = args[i] + h * t, args[i] - h * t
        gp, gm = c.value_and_grad(*plus)[1], c.value_and_grad(*minus)[1]
        H = c.hessian(*args)
        for r, w in enumerate(c.wrt):
            assert Hv[r].shape == values[w].shape
            assert_close(Hv[r], (gp[r] - gm[r]) / (2 * h), f"(H v)_{w} vs FD of value_and_grad", 1e-6, 1e-7)
            by_hessian = sum(np.tensordot(H[r][k], v[k], axes=v[k].ndim) for k in range(len(v)))
            assert_close(Hv[r], by_hessian, f"(H v)_{w} vs hessian @ v", 1e-11, 1e-12)


def test_jvp_of_a_scalar_loss_matches_the_gradient_and_finite_differences(classifier_model):
    c, ref, points = classifier_model
    rng = np.random.default_rng(24)
    for values in points:
        args = _args(c, values)
        t = tuple(rng.standard_normal(values[w].shape) for w in c.wrt)
        out, out_dot = c.jvp(*args, t)
        if len(c.outputs) > 1:                   # the classifier also returns its scores
            (value, *_), (value_dot, *_) = out, out_dot
        else:
            value, value_dot = out, out_dot
        assert value == pytest.approx(ref(*args), rel=1e-12)
        h = 1e-6
        plus, minus = list(args), list(args)
        for w, tw in zip(c.wrt, t):
            i = c.arg_names.index(w)
            plus[i], minus[i] = args[i] + h * tw, args[i] - h * tw
        fd = (ref(*plus) - ref(*minus)) / (2 * h)
        assert value_dot == pytest.approx(fd, rel=1e-6, abs=1e-7)
        grads = c.value_and_grad(*args)[1]
        dot = sum(float(np.sum(g * tw)) for g, tw in zip(grads, t))
        assert value_dot == pytest.approx(dot, rel=1e-11, abs=1e-12)


@pytest.mark.parametrize("mode", ["auto", "fwd", "rev"])
def test_sympy_matrix_output_jacobian_is_an_m_by_n_array(mode):
    """The brief's example: residuals a exp(-b k); the Jacobian vs SymPy's, in both sweeps
    (auto: columns, 2 seeds for 5 rows); jvp vs the Jacobian times the tangent."""
    a, b = sp.symbols("a b", real=True)
    r = sp.Matrix([a * sp.exp(-b * k) + sp.sin(a * b) / (k + 1) for k in range(5)])
    c = compiled(r, args=[a, b], options=gradc.Options(derivatives=("jacobian", "jvp", "vjp"), jacobian=mode))
    Jsym = r.jacobian([a, b])
    for pa, pb in [(1.0, 0.5), (-2.0, 1.3)]:
        J = c.jacobian(pa, pb)
        assert isinstance(J, np.ndarray) and J.shape == (5, 2)
        want = np.array(Jsym.subs({a: sp.Float(pa, 30), b: sp.Float(pb, 30)}).evalf(30), dtype=np.float64)
        np.testing.assert_allclose(J, want, rtol=1e-14, atol=1e-15)
        if mode != "auto":
            continue
        out, (ca, cb) = c.vjp(pa, pb, np.arange(1.0, 6.0))
        np.testing.assert_allclose([ca, cb], np.arange(1.0, 6.0) @ want, rtol=1e-13)
        out, out_dot = c.jvp(pa, pb, (0.25, -1.5))
        np.testing.assert_allclose(out, [pa * math.exp(-pb * k) + math.sin(pa * pb) / (k + 1) for k in range(5)],
                                   rtol=1e-14)
        np.testing.assert_allclose(out_dot, want @ [0.25, -1.5], rtol=1e-13, atol=1e-15)


# ====================================================================== named outputs
def test_named_outputs_forward_returns_the_loss_and_the_scores():
    c = compiled(CLASSIFIER, derivatives=DERIVATIVES["classifier"])
    assert c.outputs == ("loss", "scores")
    for values in classifier_points():
        args = _args(c, values)
        loss, scores = c.forward(*args)
        X, W, b = values["X"], values["W"], values["b"]
        np.testing.assert_allclose(scores, X @ W + b, rtol=1e-14, atol=1e-14)
        assert loss == pytest.approx(classifier_ref(*args), rel=1e-12)
        assert c.value_and_grad(*args)[0] == loss
        # the tangent of the scores is X @ W' + b', exactly linear
        rng = np.random.default_rng(7)
        tW, tb = rng.standard_normal(W.shape), rng.standard_normal(b.shape)
        (l2, s2), (_, s_dot) = c.jvp(*args, (tW, tb))
        assert l2 == loss
        np.testing.assert_allclose(s2, scores, rtol=0, atol=0)
        np.testing.assert_allclose(s_dot, X @ tW + tb, rtol=1e-13, atol=1e-13)


def test_vjp_of_named_outputs_sums_the_cotangents():
    """vjp of (loss, scores) with cotangents (c_loss, C): c_loss ∇loss + (Xᵀ C, Σ_rows C)."""
    c = compiled(CLASSIFIER, derivatives=DERIVATIVES["classifier"])
    rng = np.random.default_rng(8)
    for values in classifier_points():
        args = _args(c, values)
        C = rng.standard_normal((5, 4))
        (loss, scores), (gW, gb) = c.vjp(*args, (0.5, C))
        idx_W, idx_b = c.arg_names.index("W"), c.arg_names.index("b")
        want_W = 0.5 * fd_jacobian(classifier_ref, args, idx_W) + values["X"].T @ C
        want_b = 0.5 * fd_jacobian(classifier_ref, args, idx_b) + C.sum(axis=0)
        assert_close(gW, want_W, "vjp W", 1e-6, 1e-7)
        assert_close(gb, want_b, "vjp b", 1e-6, 1e-7)


# ====================================================================== masked selects at second order
def test_hessian_of_the_untaken_log_branch_is_exactly_two():
    """Piecewise((log(x), x > 0), (x**2, True)): at x = -1 and at x = 0 the log branch (whose
    derivatives are NaN / -inf there) is not taken; the Hessian is exactly 2, no NaN."""
    x1 = sp.Symbol("x", real=True)
    c = compiled(sp.Piecewise((sp.log(x1), x1 > 0), (x1 ** 2, True)), args=[x1],
                 derivatives=["hessian", "hvp", "value_grad_hessian"])
    for point in (-1.0, 0.0, -1e-300):
        H = c.hessian(point)
        assert H.shape == (1, 1) and H[0, 0] == 2.0, (point, H)
        assert c.hvp(point, 1.5) == (3.0,)
        value, (g,), H2 = c.value_grad_hessian(point)
        assert (value, g, H2[0, 0]) == (point ** 2, 2 * point, 2.0)
    for point in (0.5, 3.0):                        # the log branch: -1/x^2
        assert c.hessian(point)[0, 0] == pytest.approx(-1 / point ** 2, rel=1e-15)


WHERE_SQRT = spec_text("masked", {}, {"x": [5]},
                       [("f", "sum(where(x > 0, sqrt(x) * x, x * x * x) + where(x > 0, log(x), 0.5 * x * x))")], "f")


def test_where_with_sqrt_and_log_in_the_untaken_branch_gives_no_nan():
    """where(x > 0, sqrt(x) x, x³) + where(x > 0, log x, x²/2) at x with zeros and negatives:
    the sqrt/log branches' derivatives are inf/NaN at 0 and below, not taken there. Exact
    values: d²/dx² is 6x + 1 for x ≤ 0, 3/(4√x) - 1/x² for x > 0 (the Hessian is diagonal)."""
    c = compiled(WHERE_SQRT, derivatives=["hessian", "hvp"])
    xs = np.array([0.0, -1.0, 2.0, 0.0, -0.25])
    want = np.where(xs > 0, 0.75 / np.sqrt(np.where(xs > 0, xs, 1.0)) - 1 / np.where(xs > 0, xs, 1.0) ** 2, 6 * xs + 1)
    (H,), = c.hessian(xs)
    assert np.all(np.isfinite(H))
    np.testing.assert_allclose(H, np.diag(want), rtol=1e-15, atol=0)
    v = np.array([1.0, 2.0, -1.0, 0.5, 3.0])
    (Hv,) = c.hvp(xs, v)
    assert np.all(np.isfinite(Hv))
    np.testing.assert_allclose(Hv, want * v, rtol=1e-15, atol=0)


# ====================================================================== bad input
@pytest.fixture(scope="module")
def classifier_args():
    c = compiled(CLASSIFIER, derivatives=DERIVATIVES["classifier"])
    values = classifier_points()[0]
    return c, values, _args(c, values)


@pytest.mark.parametrize("kind", ["hessian", "hvp", "value_grad_hessian"])
def test_a_hessian_of_a_vector_output_is_an_error_naming_the_place(kind):
    c = compiled(VECTOR, derivatives=["jacobian", "jvp", "vjp"])
    values = vector_points()[0]
    args = _args(c, values)
    with pytest.raises(gradc.ShapeError) as info:
        if kind == "hvp":
            c.hvp(*args, tuple(values[w] for w in c.wrt))
        else:
            getattr(c, kind)(*args)
    e = info.value
    assert kind.replace("_", " ") in e.message and "out" in e.message and "[3, 2]" in e.message
    line = VECTOR.split("\n").index(next(l for l in VECTOR.split("\n") if l.startswith("out = "))) + 1
    assert e.where and e.where.startswith(f"<spec>:{line}:"), e.where  # the line of out
    assert "jacobian" in (e.hint or "") and "scalar" in (e.hint or "")


def test_a_value_without_a_gradient_has_no_value_and_grad():
    c = compiled(VECTOR, derivatives=["jacobian", "jvp", "vjp"])
    with pytest.raises(GradcError, match="no gradient"):
        c.value_and_grad(*_args(c, vector_points()[0]))


def test_wrt_an_int_input_is_an_error_naming_it():
    with pytest.raises(gradc.SpecError, match="'y', an int64 input"):
        gradc.compile(CLASSIFIER, wrt=["y", "W"], derivatives=["jacobian"])


@pytest.mark.parametrize("case, seeds, names", [
    ("hvp: v of the wrong shape", lambda W, b: ("hvp", (W, np.ones(3))), "'b_dot'"),
    ("hvp: v transposed", lambda W, b: ("hvp", (W.T, b)), "'W_dot'"),
    ("hvp: too few", lambda W, b: ("hvp", (W,)), "2 seed(s)"),
    ("hvp: an int array", lambda W, b: ("hvp", (W.astype(np.int64), b)), "'W_dot'"),
    ("jvp: tangent of the wrong shape", lambda W, b: ("jvp", (W, np.ones((1, 4)))), "'b_dot'"),
    ("jvp: too many", lambda W, b: ("jvp", (W, b, b)), "2 seed(s)"),
    ("jvp: a list, not an array", lambda W, b: ("jvp", (W.tolist(), b)), "'W_dot'"),
    ("vjp: cotangent of the wrong shape", lambda W, b: ("vjp", (1.0, np.ones((5, 3)))), "'scores_ct'"),
    ("vjp: one cotangent for two outputs", lambda W, b: ("vjp", (1.0,)), "2 seed(s)"),
])
def test_seeds_of_the_wrong_shape_or_count_are_argument_errors(classifier_args, case, seeds, names):
    c, values, args = classifier_args
    kind, s = seeds(values["W"], values["b"])
    with pytest.raises(ArgumentError) as info:
        getattr(c, kind)(*args, s)
    assert str(info.value).startswith(f"{kind}: ") and names in str(info.value), str(info.value)


def test_seeds_missing_is_an_argument_error(classifier_args):
    c, values, args = classifier_args
    with pytest.raises(ArgumentError, match="then the v"):
        c.hvp(*args)
    with pytest.raises(ArgumentError, match="then the tangents"):
        c.jvp(*args)


def test_an_op_without_a_jvp_rule_is_an_unsupported_error_naming_it(monkeypatch):
    """No op lacks a rule today: a toy stand-in, sinh without its traits, shows what happens to
    a new one -- an error at compile time naming the op, never a zero tangent."""
    import dataclasses

    from gradc.ops import OPS, jvp_rule
    from gradc.pipeline import build

    toy = dataclasses.replace(OPS["sinh"], elementwise=False, jvp=None, linear=())
    assert jvp_rule(toy) is None
    monkeypatch.setitem(OPS, "sinh", toy)
    u = sp.Symbol("u", real=True)
    for kind in ("jvp", "hvp", "hessian"):
        with pytest.raises(gradc.UnsupportedError, match="sinh has no forward-mode"):
            build(sp.sinh(u) * u, args=[u], options=gradc.Options(derivatives=(kind,)))


def test_every_op_has_a_forward_rule_or_no_float_result():
    """The masks (comparisons, logical ops) have no tangent; every other op of the table has a
    JVP rule, its own or derived from its traits (forward over reverse needs them all)."""
    from gradc.ops import OPS, jvp_rule
    masks = {"lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not"}
    missing = sorted(n for n, op in OPS.items() if jvp_rule(op) is None and n not in masks)
    assert not missing, f"ops without a JVP rule: {missing}"


def test_hvp_of_a_product_of_one_by_one_matrices():
    """Found by the JVP reachability check (tests/test_properties.py) on a matrix tree: the memory
    plan released an array a broadcast had read only for its shape, before its definition
    (a KeyError when rendering). f = u m² v for 1x1 matrices; its H v against SymPy's Hessian of
    the scalar expression."""
    M0, u, v = sp.MatrixSymbol("M0", 1, 1), sp.MatrixSymbol("u", 1, 1), sp.MatrixSymbol("v", 1, 1)
    f = gradc.compile(u.T * sp.HadamardPower(M0, 2) * v, args=[M0, u, v], derivatives=["hvp"])
    m, a, b = sp.symbols("m a b")
    point = {m: 0.7, a: -1.3, b: 2.1}
    H = np.array(sp.hessian(a * m ** 2 * b, (m, a, b)).subs(point), dtype=float)
    vec = np.array([0.5, -2.0, 1.5])
    got = f.hvp(*[np.full((1, 1), float(point[s])) for s in (m, a, b)], tuple(np.full((1, 1), x) for x in vec))
    np.testing.assert_allclose(np.array([g.item() for g in got]), H @ vec, rtol=1e-12)
