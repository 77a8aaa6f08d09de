"""Numerics: the stable ops stay finite and accurate for logits up to ±1e3, and
IEEE special values flow through generated code without exceptions.

Values and gradients are compared with mpmath at 50 digits, on the exact float
inputs. Accuracy: relative error below 1e-12 wherever the true value is a normal
float; where it underflows (|true| < 2.2e-308) the result must be within 1e-300
of it (0 or a subnormal). ``logavg_pool`` is measured against
max(|true|, max |beta x|/|beta|): its result is a difference of the inputs' scale
and log n, so near 0 it is ill-conditioned in the inputs themselves.

One spec holds every op (each with its own symbolic dimensions), so the whole
file costs one Numba compile; values are read per element by calling
``forward`` with one-element arrays and empty arrays elsewhere (their sums are 0).
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from conftest import compiled

mp = mpmath.mp
TINY = 2.2250738585072014e-308          # the smallest normal float64

SPEC = """\
[model]
name = "numerics"

[inputs]
a = { shape = ["na"] }
b = { shape = ["nb"] }
c = { shape = ["nc"] }
z = { shape = ["nz"] }
t = { shape = ["nz"] }
s = { shape = ["r", 3] }
y = { shape = ["r"], dtype = "int64" }
p = { shape = ["rp", 3] }
q = { shape = ["rq", 3] }

[graph]
f = "sum(sigmoid(a)) + sum(log_sigmoid(b)) + sum(softplus(c)) + sum(binary_cross_entropy(z, t))"
g = "sum(softmax_cross_entropy(s, y)) + sum(logavg_pool(p, 1.0, axis=1)) + sum(logavg_pool(q, -0.5, axis=1))"

[output]
value = "f + g"
wrt = ["a", "b", "c", "z", "t", "s", "p", "q"]
"""

ARGS = ("a", "b", "c", "z", "t", "s", "y", "p", "q")
LOGITS = [-1000.0, -745.0, -709.0, -700.0, -100.0, -40.0, -37.5, -20.0, -5.0, -1.0, -1e-5, -0.0, 0.0,
          1e-5, 1.0, 5.0, 20.0, 37.5, 40.0, 100.0, 700.0, 709.0, 745.0, 1000.0]


@pytest.fixture(scope="module")
def c():
    return compiled(SPEC)


def empty_args(**given) -> list:
    """Arguments with every array empty except ``given``."""
    base = {"a": np.zeros(0), "b": np.zeros(0), "c": np.zeros(0), "z": np.zeros(0), "t": np.zeros(0),
            "s": np.zeros((0, 3)), "y": np.zeros(0, dtype=np.int64), "p": np.zeros((0, 3)),
            "q": np.zeros((0, 3))}
    base.update(given)
    return [base[n] for n in ARGS]


def close(got: float, want, what: str, scale=None) -> None:
    """Relative error < 1e-12 against the mpmath value ``want`` (see the module doc)."""
    want_f = float(want)
    assert math.isfinite(got), f"{what}: got {got}, want {want_f:.17g}"
    ref = abs(want) if scale is None else max(abs(want), mp.mpf(scale))
    if ref < TINY:
        assert abs(got - want_f) <= 1e-300, f"{what}: got {got:.17g}, want {want_f:.17g} (underflow)"
        return
    rel = abs(mp.mpf(got) - want) / ref
    assert rel < 1e-12, f"{what}: got {got:.17g}, want {mp.nstr(want, 20)}, relative error {float(rel):.2e}"


def m_sigmoid(x):
    return 1 / (1 + mp.exp(-x))


def m_softplus(x):
    return mp.log1p(mp.exp(x)) if x < 0 else x + mp.log1p(mp.exp(-x))


# ------------------------------------------------------------------ elementwise
@pytest.mark.parametrize("op, value, deriv", [
    ("sigmoid", m_sigmoid, lambda x: m_sigmoid(x) * m_sigmoid(-x)),
    ("log_sigmoid", lambda x: -m_softplus(-x), lambda x: m_sigmoid(-x)),
    ("softplus", m_softplus, m_sigmoid),
])
def test_elementwise_values_and_gradients_against_mpmath(c, op, value, deriv):
    name = {"sigmoid": "a", "log_sigmoid": "b", "softplus": "c"}[op]
    xs = np.array(LOGITS)
    _, grads = c.value_and_grad(*empty_args(**{name: xs}))
    grad = grads[("a", "b", "c").index(name)]
    with mp.workdps(50):
        for x, g in zip(xs, grad):
            close(float(c.forward(*empty_args(**{name: np.array([x])}))), value(mp.mpf(x)), f"{op}({x})")
            close(float(g), deriv(mp.mpf(x)), f"{op}'({x})")


def test_sigmoid_gradient_keeps_its_digits_where_one_minus_s_rounds_to_zero(c):
    """s(1 - s) at x = 40 would be 0 (1 - s rounds to 0); the true value is 4.2e-18."""
    _, grads = c.value_and_grad(*empty_args(a=np.array([40.0, -40.0])))
    np.testing.assert_allclose(grads[0], [4.248354255291589e-18] * 2, rtol=1e-14)


@pytest.mark.parametrize("targets", ["hard", "soft"])
def test_binary_cross_entropy_against_mpmath(c, targets):
    rng = np.random.default_rng(7)
    zs = np.array(LOGITS + list(rng.uniform(-1000, 1000, 20)))
    if targets == "hard":
        ts = np.tile([0.0, 1.0], len(zs))[:len(zs)]
        zs = np.concatenate([zs, zs])
        ts = np.concatenate([ts, 1.0 - ts])
    else:
        ts = np.concatenate([rng.uniform(0, 1, len(zs) - 4), [0.9999999, 1e-7, 0.5, 0.999999999999]])
    _, grads = c.value_and_grad(*empty_args(z=zs, t=ts))
    gz, gt = grads[3], grads[4]
    with mp.workdps(50):
        for z, t, dz, dt in zip(zs, ts, gz, gt):
            Z, T = mp.mpf(z), mp.mpf(t)
            # softplus(z) - z t, written without cancellation (softplus(z) - z = softplus(-z))
            want = (1 - T) * m_softplus(Z) + T * m_softplus(-Z)
            close(float(c.forward(*empty_args(z=np.array([z]), t=np.array([t])))), want, f"bce({z}, {t})")
            # sigmoid(z) - t: exact for hard targets; for soft ones it cancels where sigmoid(z) ~ t,
            # an ill-conditioning of the function itself: measured against the size of its terms
            scale = None if targets == "hard" else m_sigmoid(Z) * (1 - T) + T * m_sigmoid(-Z)
            close(float(dz), (1 - T) * m_sigmoid(Z) - T * m_sigmoid(-Z), f"dbce/dz({z}, {t})", scale)
            close(float(dt), -Z, f"dbce/dt({z}, {t})")


# ------------------------------------------------------------------ rows: softmax CE, log-average pooling
ROWS = np.array([[1000.0, -1000.0, 999.0], [-1000.0, -1000.0, -1000.0], [40.0, 0.0, 0.0],
                 [0.0, 40.0, -40.0], [745.0, 0.0, -745.0], [1e-5, -1e-5, 0.0], [999.5, 1000.0, -3.0],
                 [-700.0, -1.0, 700.0], [3.0, 3.0, 3.0], [20.0, 19.0, -20.0]])


def test_softmax_cross_entropy_against_mpmath(c):
    rng = np.random.default_rng(3)
    rows = np.concatenate([ROWS, rng.uniform(-1000, 1000, (10, 3)), rng.normal(0, 30, (10, 3))])
    n = len(rows)
    for labels in (rows.argmax(axis=1), rows.argmin(axis=1), np.arange(n) % 3):
        y = labels.astype(np.int64)
        _, grads = c.value_and_grad(*empty_args(s=rows, y=y))
        gs = grads[5]
        with mp.workdps(50):
            for i in range(n):
                row = [mp.mpf(v) for v in rows[i]]
                lse = mp.log(mp.fsum(mp.exp(v) for v in row))
                got = float(c.forward(*empty_args(s=rows[i:i + 1], y=y[i:i + 1])))
                # lse - s_y = log1p(sum over the other classes of exp(s_j - s_y)): no cancellation
                want = mp.log1p(mp.fsum(mp.exp(v - row[y[i]]) for j, v in enumerate(row) if j != y[i]))
                close(got, want, f"sce({rows[i]}, {y[i]})")
                for j in range(3):
                    want = mp.exp(row[j] - lse)
                    if j == y[i]:                    # p - 1 = -(the other classes' p), no cancellation
                        want = -mp.fsum(mp.exp(v - lse) for l, v in enumerate(row) if l != j)
                    close(float(gs[i, j]), want, f"dsce/ds[{j}]({rows[i]}, {y[i]})")


@pytest.mark.parametrize("name, beta", [("p", 1.0), ("q", -0.5)])
def test_logavg_pool_against_mpmath(c, name, beta):
    rng = np.random.default_rng(5)
    rows = np.concatenate([ROWS, rng.uniform(-1000, 1000, (10, 3))])
    _, grads = c.value_and_grad(*empty_args(**{name: rows}))
    g = grads[6 if name == "p" else 7]
    with mp.workdps(50):
        B = mp.mpf(beta)
        for i, row in enumerate(rows):
            xs = [mp.mpf(v) for v in row]
            total = mp.fsum(mp.exp(B * v) for v in xs)
            want = mp.log(total / 3) / B
            got = float(c.forward(*empty_args(**{name: rows[i:i + 1]})))
            close(got, want, f"logavg_pool({row}, beta={beta})", scale=max(abs(row)))
            for j in range(3):
                close(float(g[i, j]), mp.exp(B * xs[j]) / total, f"dlogavg/dx[{j}]({row})")


LSE_ALL = """\
[inputs]
x = { shape = ["n"] }
[graph]
v = "logsumexp(x)"
[output]
value = "v"
wrt = ["x"]
"""
LSE_ROWS = """\
[inputs]
S = { shape = ["r", 3] }
[graph]
v = "sum(logsumexp(S, axis=1))"
[output]
value = "v"
wrt = ["S"]
"""


def test_logsumexp_against_mpmath():
    """``logsumexp`` (ln Σ exp, over an axis or everything): M + log1p(Σ_{j≠argmax} exp(x_j - M)),
    so it neither overflows at ±1e3 nor loses a dominant entry's tiny remainder (at [1e-5, -40]
    the value is 1e-5 + 4.2e-18: log(Σ exp) of the shifted terms, or a mean-based form, would
    lose those digits); the gradient is softmax(x)."""
    c, rows_c = compiled(LSE_ALL), compiled(LSE_ROWS)
    rng = np.random.default_rng(11)
    rows = np.concatenate([ROWS, [[1e-5, -40.0, -1000.0], [0.0, -40.0, -40.0], [-1e-5, -745.0, 0.0]],
                           rng.uniform(-1000, 1000, (10, 3)), rng.normal(0, 30, (10, 3))])
    vectors = [np.array(LOGITS), rng.uniform(-1000, 1000, 7), np.array([1000.0]), np.array([-1000.0, -1000.0])]
    with mp.workdps(50):
        for i, row in enumerate(rows):
            xs = [mp.mpf(v) for v in row]
            lse = mp.log(mp.fsum(mp.exp(v) for v in xs))
            value, (gS,) = rows_c.value_and_grad(rows[i:i + 1])
            close(float(value), lse, f"logsumexp({row})")
            for j in range(3):
                close(float(gS[0, j]), mp.exp(xs[j] - lse), f"dlogsumexp/dx[{j}]({row})")
        _, (gS,) = rows_c.value_and_grad(rows)                       # all rows at once: the same gradients
        for i, row in enumerate(rows):
            xs = [mp.mpf(v) for v in row]
            lse = mp.log(mp.fsum(mp.exp(v) for v in xs))
            for j in range(3):
                close(float(gS[i, j]), mp.exp(xs[j] - lse), f"dlogsumexp/dx[{j}]({row}) in a batch")
        for x in vectors:
            xs = [mp.mpf(v) for v in x]
            lse = mp.log(mp.fsum(mp.exp(v) for v in xs))
            value, (gx,) = c.value_and_grad(x)
            close(float(value), lse, f"logsumexp({x})")
            for j in range(len(x)):
                close(float(gx[j]), mp.exp(xs[j] - lse), f"dlogsumexp/dx[{j}]({x})")
    # special values: -inf entries drop out, +inf wins, NaN propagates, an empty row is -inf
    inf, nan = math.inf, math.nan
    f = lambda x: c.forward(np.array(x, dtype=np.float64))                          # noqa: E731
    assert f([-inf, 0.0]) == 0.0 and f([-inf, -inf]) == -inf and f([inf, 1.0]) == inf
    assert math.isnan(f([nan, 1.0])) and math.isnan(f([1.0, nan])) and math.isnan(f([inf, nan]))
    assert f([]) == -inf


# ------------------------------------------------------------------ IEEE special values
def test_nan_and_inf_inputs_propagate_without_exceptions(c):
    nan, inf = math.nan, math.inf
    with np.errstate(all="ignore"):
        value, grads = c.value_and_grad(*empty_args(a=np.array([nan, inf, -inf]), b=np.array([inf]),
                                                    c=np.array([-inf]), s=np.array([[nan, 0.0, 1.0]]),
                                                    y=np.array([1]), p=np.array([[1.0, nan, 2.0]])))
    assert math.isnan(value)
    assert math.isnan(grads[0][0]) and grads[0][1] == 0.0 and grads[0][2] == 0.0    # sigmoid' at ±inf is 0
    assert np.isnan(grads[5]).all() and np.isnan(grads[6]).all()
    # the limits where they are defined: sigmoid(inf) = 1, sigmoid(-inf) = 0, softplus(-inf) = 0
    assert c.forward(*empty_args(a=np.array([inf]))) == 1.0
    assert c.forward(*empty_args(a=np.array([-inf]))) == 0.0
    assert c.forward(*empty_args(c=np.array([-inf]))) == 0.0
    assert c.forward(*empty_args(b=np.array([inf]))) == 0.0


DIVISION = """\
[inputs]
u = {}
v = {}
X = { shape = ["n"] }
Y = { shape = ["n"] }

[graph]
q = "u / v + sum(X / Y) + log(u) + sqrt(v) + u ** -1 + sum(Y ** -3)"

[output]
value = "q"
wrt = ["u", "v", "X", "Y"]
"""


def test_division_by_zero_and_domain_errors_give_inf_and_nan_not_exceptions():
    """error_model="numpy": a scalar 1/0 is inf (Python semantics would raise ZeroDivisionError),
    0/0 and log(-1) are NaN, in scalar and array code alike; 0 ** -3 is inf (Numba's integer
    power would raise, so negative exponents are written as floats)."""
    d = compiled(DIVISION)
    zeros, ones = np.zeros(3), np.ones(3)
    value, (gu, gv, gX, gY) = d.value_and_grad(1.0, 0.0, ones, zeros)     # 1/0, X/0, sqrt'(0)
    assert value == math.inf and gu == math.inf and math.isnan(gv)
    assert np.all(gX == math.inf) and np.all(gY == -math.inf)            # -X/Y^2 - 3 Y^-4
    value, _ = d.value_and_grad(0.0, 0.0, zeros, zeros)                    # 0/0, log(0), 0 ** -1
    assert math.isnan(value)
    assert math.isnan(d.forward(-1.0, -1.0, ones, ones))                   # log(-1), sqrt(-1)
    assert d.forward(2.0, 4.0, ones, 2 * ones) == pytest.approx(2 / 4 + 1.5 + math.log(2) + 2 + 0.5 + 0.375)


def test_zero_input_to_lp_pool_gradient_is_nan_not_an_exception():
    """The L_p pool's adjoint divides by the pooled result; at an all-zero row that is 0/0."""
    e = compiled('[inputs]\nx = { shape = [2, 3] }\n[graph]\nv = "sum(lp_pool(x, 2.0, axis=1))"\n'
                 '[output]\nvalue = "v"\nwrt = ["x"]\n')
    value, (g,) = e.value_and_grad(np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]]))
    assert value == 5.0
    assert np.isnan(g[0]).all() and np.allclose(g[1], [0.6, 0.8, 0.0])


def test_pooling_propagates_nan_and_inf():
    """Found auditing issue 5: lp_pool's scale s = max |x_i| was taken with max(), which drops a
    NaN (max(0.0, nan) is 0.0), so a row with a NaN pooled to 0; and an infinite entry gave
    inf/inf = NaN instead of inf. logavg_pool likewise shifted by an infinite maximum (inf - inf)."""
    nan, inf = math.nan, math.inf
    e = compiled('[inputs]\nx = { shape = [2, 3] }\n[graph]\nv = "sum(lp_pool(x, 2.0, axis=1))"\n'
                 '[output]\nvalue = "v"\nwrt = ["x"]\n')
    for row, want in (([nan, 1.0, 2.0], nan), ([1.0, 2.0, nan], nan), ([inf, 1.0, 2.0], inf),
                      ([inf, nan, 1.0], nan), ([nan, inf, 1.0], nan), ([0.0, 0.0, 0.0], 0.0)):
        got = e.forward(np.array([row, [3.0, 4.0, 0.0]]))
        assert (math.isnan(got) if math.isnan(want) else got == want + 5.0), (row, got)
    c = compiled(SPEC)
    for name, row, want in (("p", [inf, 1.0, 2.0], inf), ("p", [-inf, -inf, -inf], -inf), ("p", [-inf, 0.0, 0.0],
                            math.log(2 / 3)), ("p", [inf, nan, 0.0], nan), ("p", [nan, inf, 0.0], nan),
                            ("q", [-inf, 1.0, 2.0], -inf), ("q", [inf, inf, inf], inf), ("q", [-inf, nan, 0.0], nan)):
        got = c.forward(*empty_args(**{name: np.array([row])}))
        assert (math.isnan(got) if math.isnan(want) else got == pytest.approx(want, rel=1e-15)), (name, row, got)
