"""The neural-network ops of issue 3 against independent oracles.

* Activations and binary cross-entropy: the textbook formula written in SymPy
  (naive: ``log(1 + exp(x))``, the probability form of the cross-entropy, the
  Piecewise definitions of leaky ReLU / ELU), differentiated with
  ``sympy.diff`` and evaluated in mpmath at 600 digits, at points that include
  the kinks (the documented conventions are the Piecewise branch conditions)
  and ±1000 (stability).
* Pooling: ``sympy.diff`` of the pooled formula on symbols, the closed forms
  ``(x_i/y)^(p-1)`` and ``softmax(βx)`` of the lecture notes' exercise, and
  central finite differences of NumPy references at ranks 1, 2 and 3.
* max_pool, maxout, svm_hinge: NumPy reference loops, central differences,
  and ties / the hinge kink routed by hand.
* Bad input: errors naming the place (``bad.toml:LINE:COL``).

Specs put several ops into one module (one Numba compile each); every op gets
its own parameter, so its gradient is checked on its own.
"""
from __future__ import annotations

import json

import mpmath
import numpy as np
import pytest
import sympy as sp

from gradc import GradcError, ShapeError, SpecError
from gradc.pipeline import build

from conftest import compiled


# ------------------------------------------------------------------ oracles
def central_diff(f, x, eps=1e-6):
    """Central differences of the scalar function ``f`` of one array ``x``."""
    x = np.array(x, dtype=np.float64)
    g = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        h = eps * max(1.0, abs(float(x[idx])))
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        g[idx] = (f(up) - f(down)) / (2 * h)
    return g


def spec(inputs: dict, params: dict, value: str, wrt=None, name="t") -> str:
    """Spec text; ``inputs``/``params`` map a name to a shape list (``("int64", shape)`` for labels)."""
    lines = ["[model]", f'name = "{name}"', "", "[inputs]"]
    for n, shape in inputs.items():
        if isinstance(shape, tuple):
            lines.append(f'{n} = {{ shape = {json.dumps(shape[1])}, dtype = "{shape[0]}" }}')
        else:
            lines.append(f"{n} = {{ shape = {json.dumps(shape)} }}")
    lines += ["", "[params]"] + [f"{n} = {{ shape = {json.dumps(s)} }}" for n, s in params.items()]
    lines += ["", "[graph]", f"out = {json.dumps(value)}", "", "[output]", 'value = "out"']
    if wrt is not None:
        lines.append(f"wrt = {json.dumps(wrt)}")
    return "\n".join(lines) + "\n"


def call(c, **values):
    value, grads = c.value_and_grad(*(values[n] for n in c.arg_names))
    return value, dict(zip(c.wrt, grads))


# ------------------------------------------------------------------ activations and BCE
x, t = sp.symbols("x t", real=True)
_sig = 1 / (1 + sp.exp(-x))
#: op parameter -> (spec call, SymPy formula in x (and t)); the conventions at the kinks are the
#: branch conditions: leaky_relu takes the slope branch at 0 (max(slope x, x), ties to the first),
#: elu the identity branch (x >= 0).
ACT = {
    "A_leaky": ("leaky_relu(A_leaky)", sp.Piecewise((x, x > 0), (sp.Rational(1, 10) * x, True))),
    "A_leaky2": ("leaky_relu(A_leaky2, slope=0.25)", sp.Piecewise((x, x > 0), (x / 4, True))),
    "A_leaky3": ("leaky_relu(A_leaky3, -0.5)", sp.Piecewise((x, x > 0), (-x / 2, True))),
    "A_elu": ("elu(A_elu, 0.5)", sp.Piecewise((x, x >= 0), ((sp.exp(x) - 1) / 2, True))),
    "A_elu1": ("elu(A_elu1)", sp.Piecewise((x, x >= 0), (sp.exp(x) - 1, True))),
    "A_softplus": ("softplus(A_softplus)", sp.log(1 + sp.exp(x))),
    "A_logsig": ("log_sigmoid(A_logsig)", sp.log(_sig)),
    "A_bce": ("binary_cross_entropy(A_bce, T)", -(t * sp.log(_sig) + (1 - t) * sp.log(1 - _sig))),
}
ACT_NAMES = list(ACT)
# c_<op> scales each term, so a call can isolate one op
ACT_SPEC = spec({"R": ["n"], "T": ["n"], **{"c" + n[1:]: [] for n in ACT_NAMES}},
                {n: ["n"] for n in ACT_NAMES},
                " + ".join(f"c{n[1:]} * sum(R * {call_})" for n, (call_, _) in ACT.items()),
                wrt=ACT_NAMES + ["T"], name="activations")
POINTS = np.array([-1000.0, -40.0, -3.0, -1.0, -1e-300, 0.0, 1e-300, 1e-9, 0.5, 2.0, 40.0, 1000.0])


def _mp(expr, *syms):
    """The SymPy expression as a function of floats, evaluated in mpmath at 600 digits."""
    fn = sp.lambdify(syms, expr, "mpmath")

    def f(*vals):
        with mpmath.workdps(600):
            return float(fn(*(mpmath.mpf(float(v)) for v in vals)))
    return f


def _reference(name, xs, ts):
    """Values and derivatives (w.r.t. x, and t for BCE) of one op at the points."""
    expr = ACT[name][1]
    val, dx, dt = _mp(expr, x, t), _mp(sp.diff(expr, x), x, t), _mp(sp.diff(expr, t), x, t)
    return (np.array([val(a, b) for a, b in zip(xs, ts)]), np.array([dx(a, b) for a, b in zip(xs, ts)]),
            np.array([dt(a, b) for a, b in zip(xs, ts)]))


def _act_args(R, T, A, scale=None):
    scale = scale or {}
    args = {"R": R, "T": T, **{n: A for n in ACT_NAMES}}
    args.update({"c" + n[1:]: scale.get(n, 1.0) for n in ACT_NAMES})
    return args


def test_activations_and_bce_match_sympy_diff_including_kinks_and_extremes():
    c = compiled(ACT_SPEC)
    rng = np.random.default_rng(3)
    R = rng.uniform(0.5, 2.0, POINTS.size) * rng.choice([-1.0, 1.0], POINTS.size)
    T = rng.uniform(0.0, 1.0, POINTS.size)
    T[:3] = [0.0, 1.0, 0.5]
    T[-3:] = [1.0, 0.0, 0.25]
    value, grads = call(c, **_act_args(R, T, POINTS))
    want_value = 0.0
    for name in ACT_NAMES:
        val, dx, dt = _reference(name, POINTS, T)
        want_value += np.sum(R * val)
        assert np.isfinite(grads[name]).all(), name
        np.testing.assert_allclose(grads[name], R * dx, rtol=1e-13, atol=1e-300, err_msg=name)
        if name == "A_bce":
            np.testing.assert_allclose(grads["T"], R * dt, rtol=1e-13, atol=1e-300)
    assert value == pytest.approx(want_value, rel=1e-13)


def test_activation_conventions_at_the_kink():
    """leaky_relu'(0) = slope (the max(slope x, x) tie rule), elu'(0) = 1; values are 0."""
    c = compiled(ACT_SPEC)
    z = np.zeros(3)
    R = np.array([1.0, -2.0, 0.5])
    value, g = call(c, **_act_args(R, np.full(3, 0.5), z,
                                   {n: 0.0 for n in ("A_softplus", "A_logsig", "A_bce")}))
    assert value == 0.0
    np.testing.assert_array_equal(g["A_leaky"], 0.1 * R)
    np.testing.assert_array_equal(g["A_leaky2"], 0.25 * R)
    np.testing.assert_array_equal(g["A_leaky3"], -0.5 * R)
    np.testing.assert_array_equal(g["A_elu"], R)
    np.testing.assert_array_equal(g["A_elu1"], R)


@pytest.mark.parametrize("name, xs, ts, want, dwant", [
    ("A_softplus", [1000.0, -1000.0, 800.0], None, [1000.0, 0.0, 800.0], [1.0, 0.0, 1.0]),
    ("A_logsig", [-1000.0, 1000.0, -800.0], None, [-1000.0, -0.0, -800.0], [1.0, 0.0, 1.0]),
    ("A_bce", [1000.0, 1000.0, -1000.0], [1.0, 0.0, 0.25], [0.0, 1000.0, 250.0], [0.0, 1.0, -0.25]),
], ids=["softplus", "log_sigmoid", "binary_cross_entropy"])
def test_stable_at_huge_arguments(name, xs, ts, want, dwant):
    """One op alone (the others scaled by 0): value and gradient finite and exact at |x| ~ 1000."""
    c = compiled(ACT_SPEC)
    xs = np.array(xs)
    ts = np.array(ts if ts is not None else [0.5] * 3)
    for k in range(3):
        R = np.zeros(3)
        R[k] = 1.0
        scale = {n: float(n == name) for n in ACT_NAMES}
        value, g = call(c, **_act_args(R, ts, xs, scale))
        assert np.isfinite(value) and value == pytest.approx(want[k], abs=1e-12), (name, k, value)
        assert np.isfinite(g[name]).all()
        assert g[name][k] == pytest.approx(dwant[k], abs=1e-12)


# ------------------------------------------------------------------ pooling and maxout, rank 2
POOL_SPEC = spec(
    {"Rm": ["n"], "Rc": [4], "RZ": ["n", 2]},
    {"P": ["n", 4], "Q": ["n", 4], "Q2": ["n", 4], "L": ["n", 4], "L2": ["n", 4], "Z": ["n", 6]},
    "sum(Rm * max_pool(P)) + sum(Rm * lp_pool(Q, 3)) + sum(Rc * lp_pool(Q2, 0.5, axis=0))"
    " + sum(Rm * logavg_pool(L, 2)) + sum(Rc * logavg_pool(L2, -1.5, axis=0)) + sum(RZ * maxout(Z, 3))",
    name="pools")


def np_lp(x, p, axis):
    return np.sum(x ** p, axis=axis) ** (1 / p)


def np_logavg(x, beta, axis):
    return np.log(np.mean(np.exp(beta * x), axis=axis)) / beta


def np_maxout(z, k):
    """out[..., j] = max over pieces q of z[..., q m + j] (pieces are contiguous blocks of m columns)."""
    m = z.shape[-1] // k
    return np.max(np.stack([z[..., q * m:(q + 1) * m] for q in range(k)]), axis=0)


def np_softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _pool_value(Rm, Rc, RZ, P, Q, Q2, L, L2, Z):
    return (np.sum(Rm * P.max(axis=1)) + np.sum(Rm * np_lp(Q, 3, 1)) + np.sum(Rc * np_lp(Q2, 0.5, 0))
            + np.sum(Rm * np_logavg(L, 2, 1)) + np.sum(Rc * np_logavg(L2, -1.5, 0)) + np.sum(RZ * np_maxout(Z, 3)))


def _pool_args(n, seed):
    rng = np.random.default_rng(seed)
    return dict(Rm=rng.standard_normal(n), Rc=rng.standard_normal(4), RZ=rng.standard_normal((n, 2)),
                P=rng.standard_normal((n, 4)), Q=rng.uniform(0.3, 2.0, (n, 4)), Q2=rng.uniform(0.3, 2.0, (n, 4)),
                L=rng.standard_normal((n, 4)), L2=rng.standard_normal((n, 4)), Z=rng.standard_normal((n, 6)))


@pytest.mark.parametrize("n", [1, 3])
def test_pooling_values_and_finite_differences(n):
    c = compiled(POOL_SPEC)
    args = _pool_args(n, n)
    value, grads = call(c, **args)
    assert value == pytest.approx(_pool_value(**args), rel=1e-12)
    for w, g in grads.items():
        def f(v, w=w):
            return _pool_value(**{**args, w: v})
        np.testing.assert_allclose(g, central_diff(f, args[w]), rtol=1e-6, atol=1e-8, err_msg=w)


def test_pooling_closed_forms_of_the_exercise():
    """x'_i = y' (x_i / y)^(p-1) for L_p pooling and y' softmax(βx)_i for log-average pooling."""
    c = compiled(POOL_SPEC)
    args = _pool_args(5, 11)
    _, g = call(c, **args)
    Rm, Rc, Q, Q2, L, L2 = (args[k] for k in ("Rm", "Rc", "Q", "Q2", "L", "L2"))
    np.testing.assert_allclose(g["Q"], Rm[:, None] * (Q / np_lp(Q, 3, 1)[:, None]) ** 2, rtol=1e-12)
    np.testing.assert_allclose(g["Q2"], Rc[None, :] * (Q2 / np_lp(Q2, 0.5, 0)[None, :]) ** -0.5, rtol=1e-12)
    np.testing.assert_allclose(g["L"], Rm[:, None] * np_softmax(2 * L, 1), rtol=1e-12)
    np.testing.assert_allclose(g["L2"], Rc[None, :] * np_softmax(-1.5 * L2, 0), rtol=1e-12)


def test_pooling_gradients_match_sympy_diff():
    c = compiled(POOL_SPEC)
    args = _pool_args(3, 5)
    _, g = call(c, **args)
    xs = sp.symbols("x0:4", positive=True)
    lp = sp.Add(*(xi ** 3 for xi in xs)) ** sp.Rational(1, 3)
    la = sp.log(sp.Add(*(sp.exp(2 * xi) for xi in xs)) / 4) / 2
    for expr, name in ((lp, "Q"), (la, "L")):
        d = [sp.lambdify(xs, sp.diff(expr, xi)) for xi in xs]
        for i, row in enumerate(args[name]):
            want = args["Rm"][i] * np.array([di(*row) for di in d])
            np.testing.assert_allclose(g[name][i], want, rtol=1e-12, err_msg=name)


def test_max_pool_and_maxout_ties_go_to_the_first():
    c = compiled(POOL_SPEC)
    args = _pool_args(2, 0)
    args["P"] = np.array([[1.0, 3.0, 3.0, 0.0], [-2.0, -2.0, -2.0, -2.0]])
    # maxout pieces (k = 3, m = 2): columns (0, 1), (2, 3), (4, 5)
    args["Z"] = np.array([[0.5, 1.0, 0.5, 4.0, 0.25, 4.0], [7.0, -1.0, 7.0, -1.0, 7.0, -1.0]])
    value, g = call(c, **args)
    assert value == pytest.approx(_pool_value(**args), rel=1e-12)
    Rm, RZ = args["Rm"], args["RZ"]
    np.testing.assert_array_equal(g["P"], [[0, Rm[0], 0, 0], [Rm[1], 0, 0, 0]])
    np.testing.assert_array_equal(g["Z"], [[RZ[0, 0], 0, 0, RZ[0, 1], 0, 0], [RZ[1, 0], RZ[1, 1], 0, 0, 0, 0]])


def test_logavg_and_lp_pool_are_stable_for_huge_inputs():
    """β·x = 1000 (and -1.5 · -700 = 1050): finite and correct; lp_pool of 1e200 does not overflow."""
    c = compiled(POOL_SPEC)
    args = _pool_args(2, 1)
    args["L"] = np.array([[500.0, 500.0, 499.0, -500.0], [500.0, 0.0, 0.0, 0.0]])
    args["L2"] = np.array([[-700.0, 1.0, 2.0, 3.0], [-699.0, 1.0, 2.0, 3.0]])
    args["Q"] = np.array([[1e200, 1e200, 1e199, 1e-200], [1.0, 2.0, 3.0, 4.0]])
    value, g = call(c, **args)
    assert np.isfinite(value)
    for name in ("L", "L2", "Q"):
        assert np.isfinite(g[name]).all(), name
    with mpmath.workdps(50):
        def logavg(row, beta):
            return float(mpmath.log(sum(mpmath.exp(beta * mpmath.mpf(v)) for v in row) / len(row)) / beta)
        y_L = np.array([logavg(r, 2) for r in args["L"]])
        y_L2 = np.array([logavg(col, -1.5) for col in args["L2"].T])
        y_Q = np.array([float(sum(mpmath.mpf(v) ** 3 for v in r) ** (mpmath.mpf(1) / 3)) for r in args["Q"]])
    assert y_L[0] == pytest.approx(500.0 + np.log((2 + np.exp(-2.0)) / 4) / 2, rel=1e-15)
    base = args.copy()
    base["L"], base["L2"], base["Q"] = np.ones((2, 4)), np.ones((2, 4)), np.ones((2, 4))
    value_base, _ = call(c, **base)
    # the huge entries change only the L, L2, Q terms: y(1, 1, 1, 1) = 1 for every pooling
    want = (value_base + np.sum(args["Rm"] * (y_L - 1)) + np.sum(args["Rc"] * (y_L2 - 1))
            + np.sum(args["Rm"] * (y_Q - 1)))
    assert value == pytest.approx(want, rel=1e-13)
    np.testing.assert_allclose(g["L"], args["Rm"][:, None] * np_softmax(2 * args["L"], 1), rtol=1e-12)
    np.testing.assert_allclose(g["L2"], args["Rc"][None, :] * np_softmax(-1.5 * args["L2"], 0), rtol=1e-12)
    np.testing.assert_allclose(g["Q"], args["Rm"][:, None] * (args["Q"] / y_Q[:, None]) ** 2, rtol=1e-12)


# ------------------------------------------------------------------ ranks 1 and 3
RANKS_SPEC = spec(
    {"R1": ["n", 4], "R2": [3, 4], "R3": ["n", 3], "R4": ["n", 3, 2], "r": [2]},
    {"Y1": ["n", 3, 4], "Y2": ["n", 3, 4], "Y3": ["n", 3, 4], "Y4": ["n", 3, 4], "v1": [6], "v2": [6], "v3": [6]},
    "sum(R1 * max_pool(Y1)) + sum(R2 * lp_pool(Y2, 2, axis=0)) + sum(R3 * logavg_pool(Y3, 0.7, axis=-1))"
    " + sum(R4 * maxout(Y4, 2)) + 2 * max_pool(v1, axis=0)"
    " + lp_pool(v2, 1.5, axis=0) * logavg_pool(v3, 3, axis=0) + sum(r * maxout(v1, 3))",
    name="pool_ranks")


def _ranks_value(R1, R2, R3, R4, r, Y1, Y2, Y3, Y4, v1, v2, v3):
    return (np.sum(R1 * Y1.max(axis=1)) + np.sum(R2 * np_lp(Y2, 2, 0)) + np.sum(R3 * np_logavg(Y3, 0.7, -1))
            + np.sum(R4 * np_maxout(Y4, 2)) + 2 * v1.max()
            + np_lp(v2, 1.5, 0) * np_logavg(v3, 3, 0) + np.sum(r * np_maxout(v1, 3)))


@pytest.mark.parametrize("n", [1, 2])
def test_pooling_and_maxout_on_vectors_and_rank3_arrays(n):
    c = compiled(RANKS_SPEC)
    rng = np.random.default_rng(20 + n)
    args = dict(R1=rng.standard_normal((n, 4)), R2=rng.standard_normal((3, 4)), R3=rng.standard_normal((n, 3)),
                R4=rng.standard_normal((n, 3, 2)), r=rng.standard_normal(2),
                Y1=rng.standard_normal((n, 3, 4)), Y2=rng.uniform(0.3, 2.0, (n, 3, 4)),
                Y3=rng.standard_normal((n, 3, 4)), Y4=rng.standard_normal((n, 3, 4)),
                v1=rng.standard_normal(6), v2=rng.uniform(0.3, 2.0, 6),
                v3=rng.standard_normal(6))
    args["Y1"] = np.asfortranarray(args["Y1"])           # layouts other than C order work too
    value, grads = call(c, **args)
    assert value == pytest.approx(_ranks_value(**args), rel=1e-12)
    for w, g in grads.items():
        assert np.shape(g) == args[w].shape, w

        def f(v, w=w):
            return _ranks_value(**{**args, w: v})
        np.testing.assert_allclose(g, central_diff(f, args[w]), rtol=1e-6, atol=1e-8, err_msg=w)


# ------------------------------------------------------------------ the SVM hinge loss
SVM_SPEC = spec({"y": ("int64", ["n"]), "R": ["n"]}, {"S": ["n", "k"]}, "sum(R * svm_hinge(S, y))", name="svm")


def np_svm(S, y):
    """The notes' L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + 1), one loop per row."""
    out = np.zeros(S.shape[0])
    for i in range(S.shape[0]):
        for j in range(S.shape[1]):
            if j != y[i]:
                out[i] += max(0.0, S[i, j] - S[i, y[i]] + 1.0)
    return out


@pytest.mark.parametrize("n, k", [(1, 3), (6, 4), (5, 1)])
def test_svm_hinge_value_and_finite_differences(n, k):
    c = compiled(SVM_SPEC)
    assert c.module.CLASSES == {"y": "k"}
    rng = np.random.default_rng(n * 10 + k)
    S = rng.standard_normal((n, k))
    y = rng.integers(0, k, n).astype(np.int64)
    R = rng.uniform(0.5, 2.0, n)
    value, (g,) = c.value_and_grad(y, R, S)
    assert value == pytest.approx(np.sum(R * np_svm(S, y)), rel=1e-13, abs=1e-300)
    np.testing.assert_allclose(g, central_diff(lambda s: np.sum(R * np_svm(s, y)), S), rtol=1e-6, atol=1e-8)


def test_svm_hinge_kink_margin_zero_is_inactive():
    c = compiled(SVM_SPEC)
    S = np.array([[0.0, -1.0, 2.0, 0.5], [1.0, 1.0, 1.0, 1.0]])
    y = np.array([0, 3], dtype=np.int64)
    R = np.array([1.0, 2.0])
    value, (g,) = c.value_and_grad(y, R, S)
    # row 0: margins j=1: 0 (kink, inactive), j=2: 3, j=3: 1.5; row 1: all margins 1
    assert value == pytest.approx(1.0 * (3.0 + 1.5) + 2.0 * 3.0, rel=1e-15)
    np.testing.assert_array_equal(g, [[-2.0, 0.0, 1.0, 1.0], [2.0, 2.0, 2.0, -6.0]])


def test_svm_hinge_rejects_labels_out_of_range():
    c = compiled(SVM_SPEC)
    S = np.zeros((2, 3))
    for bad in ([0, 3], [-1, 0]):
        with pytest.raises(ValueError, match="label"):
            c.value_and_grad(np.array(bad, dtype=np.int64), np.ones(2), S)


# ------------------------------------------------------------------ bad input
HEAD = """\
[inputs]
x = { shape = ["batch", 6] }
v = { shape = ["batch", "w"] }
y = { shape = ["batch"], dtype = "int64" }

[params]
W = { shape = [6, 6] }

[graph]
"""
# the graph entry h is on line 10; its expression starts at column 6


def fails(tmp_path, expr, exc=GradcError):
    path = tmp_path / "bad.toml"
    path.write_text(HEAD + f'h = "{expr}"\n\n[output]\nvalue = "sum(h)"\n', encoding="utf-8")
    with pytest.raises(exc) as info:
        build(path)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("expr, exc, col, what", [
    ("lp_pool(x, 0)", ShapeError, 6, "p must be positive"),
    ("lp_pool(x, -2.5, axis=0)", ShapeError, 6, "p must be positive"),
    ("logavg_pool(x, 0)", ShapeError, 6, "beta must not be 0"),
    ("logavg_pool(x, -0.0)", ShapeError, 6, "beta must not be 0"),
    ("maxout(x, 4)", ShapeError, 6, "k = 4 does not divide the width 6"),
    ("maxout(v, 2)", ShapeError, 6, "concrete width"),
    ("maxout(x, 0)", ShapeError, 6, "positive integer"),
    ("maxout(x, 1.5)", SpecError, 16, "k must be an integer"),
    ("maxout(x)", SpecError, 6, "needs its constant argument k"),
    ("maxout(x @ W, k=2)", None, None, None),
    ("leaky_relu(x, W)", SpecError, 20, "slope must be a number literal"),
    ("elu(x, 2 * 0.5)", SpecError, 13, "alpha must be a number literal"),
    ("leaky_relu(x, 0.1, slope=0.2)", SpecError, 31, "got slope twice"),
    ("leaky_relu(x, 0.1, 0.2)", SpecError, 6, "takes 1 to 2 arguments"),
    ("max_pool(x, 1)", SpecError, 6, "takes 1 argument"),
    ("max_pool(x, axis=2)", ShapeError, 6, "axis=2 is out of range"),
    ("max_pool(x, axis=1.0)", SpecError, 23, "axis= must be an integer"),
    ("lp_pool(x, p=1e999)", SpecError, 19, "must be a finite number"),
    ("svm_hinge(x, x)", ShapeError, 6, "must be int64"),
    ("binary_cross_entropy(x, y)", ShapeError, 6, "must be float64"),
])
def test_bad_arguments_name_the_place(tmp_path, expr, exc, col, what):
    if exc is None:                  # a required constant given by keyword is fine
        path = tmp_path / "ok.toml"
        path.write_text(HEAD + f'h = "{expr}"\n\n[output]\nvalue = "sum(h)"\nwrt = ["W"]\n', encoding="utf-8")
        build(path)
        return
    msg = fails(tmp_path, expr, exc)
    assert msg.startswith(f"bad.toml:10:{col}: "), msg
    assert what in msg, msg


# ------------------------------------------------------------------ concat (issue 13)
CONCAT_SPEC = """
[inputs]
X = { shape = ["batch", 3] }
[params]
W = { shape = [3, 2] }
V = { shape = [3, 4] }
[graph]
h = "concat([tanh(X @ W), X @ V, X], axis=1)"
loss = "sum(h ** 2) + sum(concat([W, V], axis=-1) * 0.5)"
[output]
value = "loss"
outputs = ["h"]
"""


def test_concat_values_gradients_and_errors():
    """concat([a, b, ...], axis) against np.concatenate, its gradient against central differences,
    and a list whose shapes do not fit named at the spec's place."""
    import gradc
    from conftest import central

    c = gradc.compile(CONCAT_SPEC)
    rng = np.random.default_rng(3)
    X, W, V = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal((3, 4))
    loss, h = c.forward(X, W, V)
    want = np.concatenate([np.tanh(X @ W), X @ V, X], axis=1)
    np.testing.assert_allclose(h, want, rtol=1e-13)
    np.testing.assert_allclose(loss, np.sum(want ** 2) + 0.5 * np.sum(np.concatenate([W, V], axis=1)), rtol=1e-13)
    _, (gW, gV) = c.value_and_grad(X, W, V)
    ref = lambda W_, V_: np.sum(np.concatenate([np.tanh(X @ W_), X @ V_, X], axis=1) ** 2) + 0.5 * (W_.sum() + V_.sum())  # noqa: E731
    np.testing.assert_allclose(gW, central(ref, [W, V], 0), rtol=1e-6)
    np.testing.assert_allclose(gV, central(ref, [W, V], 1), rtol=1e-6)
    with pytest.raises(gradc.ShapeError, match=r"<spec>:\d+:\d+: .*does not fit"):
        gradc.compile(CONCAT_SPEC.replace("X @ V, X]", "X @ V, W]"))
