"""Array ops of the spec language against independent oracles.

Every case is a small spec text ``out = <expr>``; the oracle is a NumPy
implementation of the same expression: the value must match it, and every
gradient must match central finite differences *of the NumPy reference*
(never of gradc's own output). Specs use symbolic dimensions, so one compiled
module is called at several random sizes (always including batch size 1).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import compiled

SEEDS = (0, 1, 2)


# ------------------------------------------------------------------ oracles
def fd_grad(f, args, i, eps=1e-6):
    """Central finite differences of the scalar function ``f(*args)`` w.r.t. ``args[i]``."""
    x = np.array(args[i], dtype=np.float64)
    g = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        h = eps * max(1.0, abs(float(x[idx])))
        vals = []
        for step in (h, -h):
            xp = x.copy()
            xp[idx] += step
            call = list(args)
            call[i] = xp if x.shape else float(xp)
            vals.append(float(f(*call)))
        g[idx] = (vals[0] - vals[1]) / (2 * h)
    return g


def np_softmax_ce(s, y):
    """Per-row -log softmax(s)[y] via an independent max-shifted log-sum-exp."""
    m = np.max(s, axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.sum(np.exp(s - m), axis=1))
    return lse - s[np.arange(s.shape[0]), y]


def np_softmax(s):
    e = np.exp(s - np.max(s, axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------ harness
def make_spec(inputs: dict, expr: str, wrt: list[str], params: dict | None = None, name="t") -> str:
    """A spec with ``out = expr``; ``inputs``/``params`` map name -> (shape, kind)."""
    lines = ["[model]", f'name = "{name}"', "", "[inputs]"]
    for n, (shape, kind) in inputs.items():
        dt = ', dtype = "int64"' if kind == "label" else ""
        lines.append(f"{n} = {{ shape = {json.dumps(shape)}{dt} }}")
    if params:
        lines += ["", "[params]"]
        for n, (shape, _kind) in params.items():
            lines.append(f"{n} = {{ shape = {json.dumps(shape)} }}")
    lines += ["", "[graph]", f"out = {json.dumps(expr)}", "", "[output]", 'value = "out"',
              f"wrt = {json.dumps(wrt)}", ""]
    return "\n".join(lines)


def draw(rng, shape, kind, dims):
    shape = tuple(dims[d] if isinstance(d, str) else d for d in shape)
    if kind == "label":
        return rng.integers(0, dims["k"], shape).astype(np.int64)
    if kind == "pos":
        x = rng.uniform(0.5, 2.0, shape)
    elif kind == "small":
        x = rng.uniform(-1.0, 1.0, shape)
    else:
        x = rng.standard_normal(shape)
    return x if shape else float(x)


def dims_for(seed):
    """Random sizes for the symbolic dims; batch 1 for the first draw of each seed set."""
    rng = np.random.default_rng(1000 + seed)
    out = []
    for batch in (1, int(rng.integers(2, 6))):
        out.append({"batch": batch, "k": int(rng.integers(1, 5)), "m": int(rng.integers(1, 5)),
                    "n": int(rng.integers(1, 5))})
    out[1]["k"] = max(out[1]["k"], 2)
    return out


def run_case(inputs, expr, wrt, ref, params=None, seeds=SEEDS, rtol=1e-5, atol=1e-7, check_forward=False):
    """Compile once; at every size check value == ref and grads == FD(ref).

    ``forward`` is checked only where asked (each first call costs a Numba compile)."""
    params = params or {}
    c = compiled(make_spec(inputs, expr, wrt, params))
    decl = {**inputs, **params}
    assert c.arg_names == tuple(decl)
    assert c.wrt == tuple(wrt)
    names = list(c.arg_names)

    def f(*a):
        return ref(**dict(zip(names, a)))

    for seed in seeds:
        for dims in dims_for(seed):
            rng = np.random.default_rng(seed)
            args = [draw(rng, *decl[n], dims) for n in names]
            want = f(*args)
            value, grads = c.value_and_grad(*args)
            np.testing.assert_allclose(value, want, rtol=1e-10, atol=1e-12, err_msg=f"{expr} value {dims}")
            if check_forward:
                np.testing.assert_allclose(c.forward(*args), want, rtol=1e-10, atol=1e-12)
            assert len(grads) == len(wrt)
            for w, g in zip(wrt, grads):
                i = names.index(w)
                g = np.asarray(g)
                assert g.shape == np.shape(args[i]), (expr, w, g.shape)
                np.testing.assert_allclose(g, fd_grad(f, args, i), rtol=rtol, atol=atol,
                                           err_msg=f"d({expr})/d{w} at {dims}, seed {seed}")
    return c


# ------------------------------------------------------------------ matmul
def test_matmul_matrix_matrix():
    run_case({"R": (["m", "n"], "normal")}, "sum(R * (A @ B))", ["A", "B"],
             lambda R, A, B: np.sum(R * (A @ B)),
             params={"A": (["m", "k"], "normal"), "B": (["k", "n"], "normal")})


def test_matmul_matrix_vector():
    run_case({"R": (["m"], "normal"), "A": (["m", "k"], "normal"), "v": (["k"], "normal")},
             "sum(R * (A @ v))", ["A", "v"], lambda R, A, v: np.sum(R * (A @ v)))


def test_matmul_vector_matrix():
    run_case({"R": (["n"], "normal"), "v": (["k"], "normal"), "B": (["k", "n"], "normal")},
             "sum(R * (v @ B))", ["v", "B"], lambda R, v, B: np.sum(R * (v @ B)))


def test_matmul_vector_vector():
    run_case({"u": (["k"], "normal"), "v": (["k"], "normal")},
             "sin(u @ v) + 3 * (u @ v)", ["u", "v"], lambda u, v: np.sin(u @ v) + 3 * (u @ v))


def test_matmul_chain_with_concrete_dims():
    run_case({"X": (["batch", 3], "normal"), "w": ([2], "normal")},
             "sum(tanh(X @ W) @ w)", ["X", "W", "w"],
             lambda X, W, w: np.sum(np.tanh(X @ W) @ w), params={"W": ([3, 2], "normal")})


def test_transpose():
    run_case({"R": (["k", "batch"], "normal"), "A": (["batch", "k"], "normal")},
             "sum(R * transpose(A)) + sum(transpose(A) @ A)", ["A"],
             lambda R, A: np.sum(R * A.T) + np.sum(A.T @ A))


# ------------------------------------------------------------------ broadcasting
def test_broadcast_bias_vector_and_scalar_over_batch():
    run_case({"R": (["batch", "k"], "normal"), "X": (["batch", "k"], "normal")},
             "sum(R * (X * s + b)) + sum(R * (b - X)) + sum(R * X / (s * s + b * b + 1))", ["X", "b", "s"],
             lambda R, X, b, s: (np.sum(R * (X * s + b)) + np.sum(R * (b - X))
                                 + np.sum(R * X / (s * s + b * b + 1))),
             params={"b": (["k"], "normal"), "s": ([], "normal")})


def test_broadcast_scalar_input_against_matrix_and_constants():
    run_case({"R": (["batch", "k"], "normal"), "X": (["batch", "k"], "normal"), "s": ([], "pos")},
             "sum(R * (2 - X)) * s + sum(R * maximum(X, s)) + sum(s / (X * X + 1))", ["X", "s"],
             lambda R, X, s: (np.sum(R * (2 - X)) * s + np.sum(R * np.maximum(X, s))
                              + np.sum(s / (X * X + 1))))


def test_scalar_only_spec_with_arguments_named_like_builtins():
    """Scalars only; the arguments are called max and min (the generated code must not rely on builtins)."""
    run_case({"max": ([], "pos"), "min": ([], "normal")},
             "log(max) * min + exp(min) / max + maximum(max, min) - minimum(max, min) + sqrt(max) * tanh(min)"
             " + relu(min) + abs(min) + sigmoid(max)", ["max", "min"],
             lambda max, min: (np.log(max) * min + np.exp(min) / max + np.maximum(max, min) - np.minimum(max, min)
                               + np.sqrt(max) * np.tanh(min) + np.maximum(min, 0) + np.abs(min)
                               + 1 / (1 + np.exp(-max))),
             check_forward=True)


# ------------------------------------------------------------------ reductions
def test_reductions_whole_and_axes():
    run_case({"R0": (["k"], "normal"), "R1": (["batch"], "normal"), "A": (["batch", "k"], "normal"),
              "v": (["k"], "normal")},
             "sum(A * A) + sum(R0 * sum(A, axis=0)) + sum(R1 * sin(sum(A, axis=1))) + sum(R1 * sum(A, axis=-1))"
             " + mean(A * A * A) + sum(R0 * mean(A, axis=0)) + sum(R1 * sin(mean(A, axis=1)))"
             " + mean(R1 * mean(A, axis=-1)) + sum(v, axis=0) * mean(v * v) + exp(mean(v, axis=0))",
             ["A", "v"],
             lambda R0, R1, A, v: (np.sum(A * A) + np.sum(R0 * A.sum(axis=0)) + np.sum(R1 * np.sin(A.sum(axis=1)))
                                   + np.sum(R1 * A.sum(axis=-1)) + np.mean(A ** 3) + np.sum(R0 * A.mean(axis=0))
                                   + np.sum(R1 * np.sin(A.mean(axis=1))) + np.mean(R1 * A.mean(axis=-1))
                                   + v.sum() * np.mean(v * v) + np.exp(v.mean())))


# ------------------------------------------------------------------ elementwise
# One parameter per op in one spec (one Numba compile); each op's gradient is
# then the gradient with respect to its own parameter.
UNARY = {
    "exp": (np.exp, "normal"),
    "log": (np.log, "pos"),
    "sqrt": (np.sqrt, "pos"),
    "sin": (np.sin, "normal"),
    "cos": (np.cos, "normal"),
    "tan": (np.tan, "small"),
    "tanh": (np.tanh, "normal"),
    "sigmoid": (lambda x: 1.0 / (1.0 + np.exp(-x)), "normal"),
    "relu": (lambda x: np.maximum(x, 0.0), "normal"),
    "abs": (np.abs, "normal"),
}
UNARY_OPS = sorted(UNARY)


def _unary_ref(R, **a):
    return sum(np.sum(UNARY[op][0](a["A_" + op])) for op in UNARY_OPS) + np.sum(R * a["A_exp"])


def _unary_case(check=True):
    inputs = {"R": (["batch", "k"], "normal")}
    params = {f"A_{op}": (["batch", "k"], UNARY[op][1]) for op in UNARY_OPS}
    expr = " + ".join(f"sum({op}(A_{op}))" for op in UNARY_OPS) + " + sum(R * A_exp)"
    if check:
        return run_case(inputs, expr, list(params), _unary_ref, params=params)
    return compiled(make_spec(inputs, expr, list(params), params))


def test_unary_elementwise_on_arrays():
    _unary_case()


def test_unary_closed_forms():
    """The same derivatives against textbook closed forms, not finite differences."""
    c = _unary_case(check=False)
    rng = np.random.default_rng(7)
    x = rng.uniform(0.3, 1.2, (3, 4))
    R = rng.standard_normal(x.shape)
    closed = {"exp": np.exp(x), "log": 1 / x, "sqrt": 0.5 / np.sqrt(x), "sin": np.cos(x),
              "cos": -np.sin(x), "tan": 1 / np.cos(x) ** 2, "tanh": 1 / np.cosh(x) ** 2,
              "sigmoid": np.exp(-x) / (1 + np.exp(-x)) ** 2, "relu": np.ones_like(x),
              "abs": np.ones_like(x)}
    _, grads = c.value_and_grad(R, *([x] * len(UNARY_OPS)))
    closed["exp"] = closed["exp"] + R
    for op, g in zip(UNARY_OPS, grads):
        np.testing.assert_allclose(g, closed[op], rtol=1e-12, atol=1e-14, err_msg=op)
    # the kinks' other side: relu' = 0 and |x|' = -1 for x < 0
    _, grads = c.value_and_grad(R, *([-x] * len(UNARY_OPS)))
    got = dict(zip(UNARY_OPS, grads))
    np.testing.assert_array_equal(got["relu"], 0.0)
    np.testing.assert_array_equal(got["abs"], -1.0)
    np.testing.assert_allclose(got["sin"], np.cos(-x), rtol=1e-12)
    # exactly at the kink: relu'(0) = 0 and |x|'(0) = 0
    z = np.zeros_like(x)
    _, grads = c.value_and_grad(R, *([z] * len(UNARY_OPS)))
    got = dict(zip(UNARY_OPS, grads))
    np.testing.assert_array_equal(got["relu"], 0.0)
    np.testing.assert_array_equal(got["abs"], 0.0)


BINARY = ({"R": (["batch", "k"], "normal"), "A": (["batch", "k"], "pos"), "B": (["batch", "k"], "normal"),
           "C": (["batch", "k"], "normal")},
          "sum(R * maximum(A, B)) + sum(R * minimum(A, B)) + sum(R * A ** B) + sum(B / A)"
          " + sum(R * (A * B - B)) + sum(R * maximum(C, 0.25)) + sum(R * minimum(-0.5, C))",
          ["A", "B", "C"],
          lambda R, A, B, C: (np.sum(R * np.maximum(A, B)) + np.sum(R * np.minimum(A, B))
                              + np.sum(R * A ** B) + np.sum(B / A) + np.sum(R * (A * B - B))
                              + np.sum(R * np.maximum(C, 0.25)) + np.sum(R * np.minimum(-0.5, C))))


def test_binary_elementwise_on_arrays():
    run_case(*BINARY)


def test_maximum_minimum_ties_go_to_the_first_operand():
    c = compiled(make_spec(*BINARY[:3]))
    R = np.array([[1.0, -2.0, 0.5]])
    A = np.array([[0.5, 1.5, 2.0]])
    B = A.copy()
    C = np.array([[0.25, -0.5, 0.25]])
    _, (gA, gB, gC) = c.value_and_grad(R, A, B, C)
    # at A == B both maximum and minimum route g to A
    np.testing.assert_allclose(gA, 2 * R + R * B * A ** (B - 1) - B / A ** 2 + R * B, rtol=1e-13)
    np.testing.assert_allclose(gB, R * A ** B * np.log(A) + 1 / A + R * (A - 1), rtol=1e-13)
    np.testing.assert_allclose(gC, [[1.0, 0.0, 0.5]], rtol=1e-13)


POWERS = ["2", "3", "0.5", "-1", "-2", "2.5", "0"]


def test_pow_constant_exponents():
    params = {f"A{i}": (["batch", "k"], "pos") for i in range(len(POWERS))}
    expr = " + ".join(f"sum(R * A{i} ** {p})" for i, p in enumerate(POWERS)) + " + sum(-R * A0 ** -1.5) + sum(-(-A1))"

    def ref(R, **a):
        return (sum(np.sum(R * a[f"A{i}"] ** float(p)) for i, p in enumerate(POWERS))
                + np.sum(-R * a["A0"] ** -1.5) + np.sum(a["A1"]))

    run_case({"R": (["batch", "k"], "normal")}, expr, list(params), ref, params=params)


def test_pow_array_exponent_gradient_both_sides():
    run_case({"R": (["batch", "k"], "normal"), "A": (["batch", "k"], "pos"), "B": (["k"], "normal")},
             "sum(R * A ** B) + sum(2 ** B)", ["A", "B"],
             lambda R, A, B: np.sum(R * A ** B) + np.sum(2.0 ** B))


# ------------------------------------------------------------------ comparisons and where
def test_comparisons_and_where():
    run_case({"R": (["batch", "k"], "normal"), "A": (["batch", "k"], "normal"), "B": (["batch", "k"], "normal")},
             "sum(R * where(A < B, A * A, sin(B))) + sum(where(A <= 0.1, exp(B), A))"
             " + sum(R * where(A > B, B, cos(A))) + sum(where(0.2 >= B, 0, B * B))", ["A", "B"],
             lambda R, A, B: (np.sum(R * np.where(A < B, A * A, np.sin(B)))
                              + np.sum(np.where(A <= 0.1, np.exp(B), A))
                              + np.sum(R * np.where(A > B, B, np.cos(A)))
                              + np.sum(np.where(0.2 >= B, 0.0, B * B))))


def test_comparison_ties_route_gradient_by_operator():
    """At A == B, <= / >= take the first branch and < / > the second (closed form)."""
    c = compiled(make_spec({"A": (["n"], "normal"), "B": (["n"], "normal")},
                           "sum(where(A <= B, 2 * A, 3 * B)) + sum(where(A < B, 5 * A, 7 * B))", ["A", "B"]))
    A = np.array([1.0, 2.0, -1.0])
    B = np.array([1.0, 1.0, 0.0])
    value, (gA, gB) = c.value_and_grad(A, B)
    assert value == pytest.approx((2 * 1 + 3 * 1 + 2 * -1) + (7 * 1 + 7 * 1 + 5 * -1))
    np.testing.assert_array_equal(gA, [2.0, 0.0, 7.0])
    np.testing.assert_array_equal(gB, [7.0, 10.0, 0.0])


def test_where_broadcast_bias_branch_and_scalar_condition():
    run_case({"R": (["batch", "k"], "normal"), "A": (["batch", "k"], "normal"), "b": (["k"], "normal"),
              "s": ([], "normal")},
             "sum(R * where(A > b, b * A, exp(b))) + where(s > 0, s * s, -s)", ["A", "b", "s"],
             lambda R, A, b, s: (np.sum(R * np.where(A > b, b * A, np.exp(b)))
                                 + (s * s if s > 0 else -s)))


def test_masked_sqrt_and_log_have_no_nan_at_zero_and_negatives():
    c = compiled(make_spec({"x": (["n"], "normal"), "z": (["m"], "normal")},
                           "sum(where(x > 0, sqrt(x), 0)) + 10 * sum(where(z <= 0, -z, log(z)))", ["x", "z"]))
    x = np.array([-2.0, -1e-300, 0.0, 1e-12, 0.25, 4.0])
    z = np.array([-3.0, 0.0, 0.5, 2.0])
    value, (gx, gz) = c.value_and_grad(x, z)
    assert value == pytest.approx(1e-6 + 0.5 + 2.0 + 10 * (3.0 + np.log(0.5) + np.log(2.0)), rel=1e-12)
    assert not np.isnan(gx).any(), gx
    np.testing.assert_array_equal(gx[:3], 0.0)
    np.testing.assert_allclose(gx[3:], 0.5 / np.sqrt(x[3:]), rtol=1e-12)
    assert np.isfinite(gz).all(), gz
    np.testing.assert_allclose(gz, [-10.0, -10.0, 20.0, 5.0], rtol=1e-12)


# ------------------------------------------------------------------ labels and losses
PICK = ({"R": (["batch"], "normal"), "y": (["batch"], "label")}, "sum(R * exp(pick(S, y)))", ["S"])
PICK_PARAMS = {"S": (["batch", "k"], "normal")}


def test_pick_rowwise():
    run_case(*PICK, lambda R, y, S: np.sum(R * np.exp(S[np.arange(S.shape[0]), y])), params=PICK_PARAMS,
             check_forward=True)


def test_pick_repeated_labels_closed_form():
    c = compiled(make_spec(*PICK, params=PICK_PARAMS))
    S = np.arange(12.0).reshape(4, 3) / 10
    y = np.array([2, 2, 0, 1], dtype=np.int64)
    R = np.array([1.0, -2.0, 0.5, 3.0])
    value, (g,) = c.value_and_grad(R, y, S)
    picked = np.array([0.2, 0.5, 0.6, 1.0])
    assert value == pytest.approx(np.sum(R * np.exp(picked)), rel=1e-13)
    want = np.zeros((4, 3))
    want[[0, 1, 2, 3], [2, 2, 0, 1]] = R * np.exp(picked)
    np.testing.assert_allclose(g, want, rtol=1e-13, atol=0)


def test_label_out_of_range_is_rejected():
    c = compiled(make_spec(*PICK, params=PICK_PARAMS))
    with pytest.raises(ValueError, match="label"):
        c.value_and_grad(np.ones(2), np.array([0, 3], dtype=np.int64), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="label"):
        c.value_and_grad(np.ones(2), np.array([-1, 0], dtype=np.int64), np.zeros((2, 3)))


SCE = ({"R": (["batch"], "normal"), "y": (["batch"], "label")},
       "sum(R * softmax_cross_entropy(S, y)) + mean(softmax_cross_entropy(S, y))", ["S"])


def test_softmax_cross_entropy_fd():
    run_case(*SCE, lambda R, y, S: np.sum(R * np_softmax_ce(S, y)) + np.mean(np_softmax_ce(S, y)),
             params=PICK_PARAMS, check_forward=True)


def test_softmax_cross_entropy_huge_logits_match_logsumexp():
    c = compiled(make_spec(*SCE, params=PICK_PARAMS))
    S = np.array([[1000.0, 0.0, -1000.0],
                  [1000.0, 1000.0, 999.0],
                  [-1000.0, -1001.0, -1000.0],
                  [750.0, -750.0, 0.0]])
    y = np.array([1, 2, 0, 0], dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # the naive formula overflows here
        naive = -np.log(np.exp(S)[np.arange(4), y] / np.exp(S).sum(axis=1))
    assert not np.isfinite(naive).all()
    per_row = np_softmax_ce(S, y)
    np.testing.assert_allclose(per_row, [1000.0, 1.0 + np.log(2 + np.exp(-1.0)),
                                         np.log(2 + np.exp(-1.0)), 0.0], rtol=1e-12, atol=1e-12)
    R = np.array([1.0, 0.5, -2.0, 3.0])
    want = np.sum(R * per_row) + np.mean(per_row)
    value, (g,) = c.value_and_grad(R, y, S)
    assert np.isfinite(value)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(c.forward(R, y, S), want, rtol=1e-12)
    onehot = np.eye(3)[y]
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g, (R[:, None] + 1 / 4) * (np_softmax(S) - onehot), rtol=1e-12, atol=1e-300)


def test_mse_including_broadcast_operands():
    """mse of a [k] prediction against [batch,k] targets averages over all batch*k entries."""
    run_case({"P": (["batch", "k"], "normal"), "T": (["batch", "k"], "normal"), "p": (["k"], "normal")},
             "mse(P, T) + mse(P * P, 1) + mse(p, T) + mse(T, 2 * p)", ["P", "T", "p"],
             lambda P, T, p: (np.mean((P - T) ** 2) + np.mean((P * P - 1) ** 2) + np.mean((p - T) ** 2)
                              + np.mean((T - 2 * p) ** 2)), check_forward=True)


# ------------------------------------------------------------------ saliency: wrt a data input
SALIENCY = """
[model]
name = "saliency"

[inputs]
X = { shape = ["batch", 4] }
y = { shape = ["batch"], dtype = "int64" }

[params]
W1 = { shape = [4, 5], init = "glorot" }
b1 = { shape = [5] }
W2 = { shape = [5, 3], init = "glorot" }

[graph]
h = "tanh(X @ W1 + b1)"
loss = "mean(softmax_cross_entropy(h @ W2, y))"

[output]
value = "loss"
wrt = ["X"]
"""


def test_saliency_gradient_wrt_data_input():
    c = compiled(SALIENCY)
    assert c.wrt == ("X",)

    def ref(X, y, W1, b1, W2):
        return np.mean(np_softmax_ce(np.tanh(X @ W1 + b1) @ W2, y))

    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for n in (1, 5):
            args = [rng.standard_normal((n, 4)), rng.integers(0, 3, n).astype(np.int64),
                    rng.standard_normal((4, 5)), rng.standard_normal(5), rng.standard_normal((5, 3))]
            value, grads = c.value_and_grad(*args)
            assert len(grads) == 1
            np.testing.assert_allclose(value, ref(*args), rtol=1e-12)
            np.testing.assert_allclose(grads[0], fd_grad(ref, args, 0), rtol=1e-5, atol=1e-8)
