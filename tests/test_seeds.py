"""The lecture notes' worked examples (/work/shared/seeds), reproduced exactly.

* f(x, y, z) = (x + y) z at (-2, 5, -4): f = -12, grad = (-4, -4, 3).
* f(w, x) = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))) at w = (2, -3, -3), x = (-1, -2):
  f = 0.73, grads (w0, x0, w1, x1, w2) = (-0.20, 0.39, -0.39, -0.59, 0.20).
* f(x, W) = ||W x||^2 at W = [[0.1, 0.5], [-0.3, 0.8]], x = [0.2, 0.4]:
  q = W x = [0.22, 0.26], f = 0.116, df/dq = 2q = [0.44, 0.52],
  grad W = [[0.088, 0.176], [0.104, 0.208]], grad x = [-0.112, 0.636].
* the forward pass of a 3-layer sigmoid network (3 -> 4 -> 4 -> 1).

The references are the published numbers, closed forms written out by hand,
and central finite differences, never gradc's own output.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from conftest import compiled

# ------------------------------------------------------------------ (x + y) z
ADD_MUL_SPEC = """
[model]
name = "add_mul"

[inputs]
x = { shape = [] }
y = { shape = [] }
z = { shape = [] }

[graph]
q = "x + y"
f = "q * z"

[output]
value = "f"
wrt = ["x", "y", "z"]
"""


def test_add_mul_sympy():
    x, y, z = sp.symbols("x y z")
    f = compiled((x + y) * z, args=[x, y, z])
    value, grads = f.value_and_grad(-2.0, 5.0, -4.0)
    assert value == pytest.approx(-12.0, abs=1e-12)
    np.testing.assert_allclose(grads, (-4.0, -4.0, 3.0), rtol=0, atol=1e-12)
    assert f.forward(-2.0, 5.0, -4.0) == pytest.approx(-12.0, abs=1e-12)


def test_add_mul_spec():
    f = compiled(ADD_MUL_SPEC)
    assert f.arg_names == ("x", "y", "z") and f.wrt == ("x", "y", "z")
    value, grads = f.value_and_grad(-2.0, 5.0, -4.0)
    assert value == pytest.approx(-12.0, abs=1e-12)
    np.testing.assert_allclose(grads, (-4.0, -4.0, 3.0), rtol=0, atol=1e-12)


# ------------------------------------------------------------------ sigmoid neuron
W_NEURON = (2.0, -3.0, -3.0)
X_NEURON = (-1.0, -2.0)
NEURON_SPEC = """
[model]
name = "sigmoid_neuron"

[inputs]
x0 = { shape = [] }
x1 = { shape = [] }

[params]
w0 = { shape = [] }
w1 = { shape = [] }
w2 = { shape = [] }

[graph]
dot = "w0 * x0 + w1 * x1 + w2"
f = "1 / (1 + exp(-dot))"

[output]
value = "f"
wrt = ["w0", "x0", "w1", "x1", "w2"]
"""


def _neuron_closed_form():
    w0, w1, w2 = W_NEURON
    x0, x1 = X_NEURON
    s = 1.0 / (1.0 + math.exp(-(w0 * x0 + w1 * x1 + w2)))
    d = s * (1.0 - s)                     # d sigma / d dot = (1 - sigma) sigma
    return s, (d * x0, d * w0, d * x1, d * w1, d)   # order: w0, x0, w1, x1, w2


def _check_neuron(value, grads):
    assert round(value, 2) == 0.73
    assert tuple(round(g, 2) for g in grads) == (-0.20, 0.39, -0.39, -0.59, 0.20)
    want_value, want_grads = _neuron_closed_form()
    assert value == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(grads, want_grads, rtol=1e-12, atol=1e-15)


def test_sigmoid_neuron_sympy():
    w0, x0, w1, x1, w2 = sp.symbols("w0 x0 w1 x1 w2")
    expr = 1 / (1 + sp.exp(-(w0 * x0 + w1 * x1 + w2)))
    f = compiled(expr, args=[w0, x0, w1, x1, w2])
    point = (W_NEURON[0], X_NEURON[0], W_NEURON[1], X_NEURON[1], W_NEURON[2])
    value, grads = f.value_and_grad(*point)
    _check_neuron(value, grads)
    assert f.forward(*point) == value


@pytest.mark.parametrize("activation", ["1 / (1 + exp(-dot))", "sigmoid(dot)"], ids=["explicit", "sigmoid_op"])
def test_sigmoid_neuron_spec(activation):
    f = compiled(NEURON_SPEC.replace('"1 / (1 + exp(-dot))"', f'"{activation}"'))
    assert f.arg_names == ("x0", "x1", "w0", "w1", "w2")
    args = dict(x0=X_NEURON[0], x1=X_NEURON[1], w0=W_NEURON[0], w1=W_NEURON[1], w2=W_NEURON[2])
    value, grads = f.value_and_grad(*(args[n] for n in f.arg_names))
    _check_neuron(value, grads)


# ------------------------------------------------------------------ ||W x||^2
W_SEED = np.array([[0.1, 0.5], [-0.3, 0.8]])
X_SEED = np.array([0.2, 0.4])
GRAD_W_SEED = np.array([[0.088, 0.176], [0.104, 0.208]])
GRAD_X_SEED = np.array([-0.112, 0.636])

NORM_SPEC = """
[model]
name = "norm_wx"

[inputs]
x = { shape = [2] }

[params]
W = { shape = [2, 2] }

[graph]
q = "W @ x"
f = "sum(q ** 2)"

[output]
value = "f"
wrt = ["W", "x"]
"""

L2_SPEC = """
[inputs]
q = { shape = [2] }

[graph]
f = "sum(q ** 2)"

[output]
value = "f"
wrt = ["q"]
"""


def _check_norm(value, gW, gx):
    assert value == pytest.approx(0.116, abs=1e-12)
    np.testing.assert_allclose(gW, GRAD_W_SEED, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.ravel(gx), GRAD_X_SEED, rtol=0, atol=1e-12)
    # grad W = 2 q x^T, so its first column recovers the seed's q = [0.22, 0.26]
    np.testing.assert_allclose(np.asarray(gW)[:, 0] / (2 * X_SEED[0]), [0.22, 0.26], atol=1e-12)


def test_norm_wx_matrix_symbol():
    W = sp.MatrixSymbol("W", 2, 2)
    x = sp.MatrixSymbol("x", 2, 1)
    f = compiled((W * x).T * (W * x), args=[W, x])
    value, (gW, gx) = f.value_and_grad(W_SEED, X_SEED.reshape(2, 1))
    assert np.shape(gW) == (2, 2) and np.shape(gx) == (2, 1)
    _check_norm(value, gW, gx)


def test_norm_wx_spec():
    f = compiled(NORM_SPEC)
    assert f.arg_names == ("x", "W") and f.wrt == ("W", "x")
    value, (gW, gx) = f.value_and_grad(X_SEED, W_SEED)
    assert np.shape(gW) == (2, 2) and np.shape(gx) == (2,)
    _check_norm(value, gW, gx)
    assert f.forward(X_SEED, W_SEED) == pytest.approx(0.116, abs=1e-12)


def test_l2_gate_gradient_is_2q():
    f = compiled(L2_SPEC)
    value, (gq,) = f.value_and_grad(np.array([0.22, 0.26]))
    assert value == pytest.approx(0.116, abs=1e-12)
    np.testing.assert_allclose(gq, [0.44, 0.52], rtol=0, atol=1e-12)


# ------------------------------------------------------------------ 3-layer sigmoid network
def three_layer_spec(column: bool) -> str:
    """Seed 000's forward pass; ``column`` keeps its (n, 1) column vectors, else 1-D vectors
    and a squared error against a target input."""
    if column:
        shapes = dict(x="[3, 1]", b1="[4, 1]", b2="[4, 1]", b3="[1, 1]")
        inputs = "x = { shape = [3, 1] }"
        loss = 'loss = "sum(out)"'
        wrt = '"x", '
    else:
        shapes = dict(x="[3]", b1="[4]", b2="[4]", b3="[1]")
        inputs = "x = { shape = [3] }\nt = { shape = [1] }"
        loss = 'loss = "sum((out - t) ** 2)"'
        wrt = ""
    return f"""
[model]
name = "three_layer"

[inputs]
{inputs}

[params]
W1 = {{ shape = [4, 3] }}
b1 = {{ shape = {shapes['b1']} }}
W2 = {{ shape = [4, 4] }}
b2 = {{ shape = {shapes['b2']} }}
W3 = {{ shape = [1, 4] }}
b3 = {{ shape = {shapes['b3']} }}

[graph]
h1 = "sigmoid(W1 @ x + b1)"
h2 = "sigmoid(W2 @ h1 + b2)"
out = "W3 @ h2 + b3"
{loss}

[output]
value = "loss"
wrt = [{wrt}"W1", "b1", "W2", "b2", "W3", "b3"]
"""


def numpy_three_layer(column, x, W1, b1, W2, b2, W3, b3, t=None):
    """The seed's snippet, verbatim, in NumPy (the independent reference)."""
    f = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731  activation function (use sigmoid)
    h1 = f(np.dot(W1, x) + b1)
    h2 = f(np.dot(W2, h1) + b2)
    out = np.dot(W3, h2) + b3
    return float(np.sum(out)) if column else float(np.sum((out - t) ** 2))


def central_fd(fun, args, index, h=1e-6):
    a = np.array(args[index], dtype=float)
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        plus, minus = list(args), list(args)
        ap, am = a.copy(), a.copy()
        ap[idx] += h
        am[idx] -= h
        plus[index], minus[index] = ap, am
        g[idx] = (fun(*plus) - fun(*minus)) / (2 * h)
    return g


@pytest.mark.parametrize("column", [True, False], ids=["column_vectors_sum_out", "flat_vectors_squared_error"])
def test_three_layer_sigmoid_network(column):
    f = compiled(three_layer_spec(column))
    rng = np.random.default_rng(42)
    vals = {name: rng.standard_normal(shape) for name, shape in f.shapes.items()}
    if column:
        assert f.arg_names == ("x", "W1", "b1", "W2", "b2", "W3", "b3")
    else:
        assert f.arg_names == ("x", "t", "W1", "b1", "W2", "b2", "W3", "b3")
    args = [vals[n] for n in f.arg_names]

    def reference(*a):
        kw = dict(zip(f.arg_names, a))
        return numpy_three_layer(column, **kw)

    value, grads = f.value_and_grad(*args)
    assert value == pytest.approx(reference(*args), rel=1e-12)
    assert f.forward(*args) == pytest.approx(value, rel=1e-15)
    assert len(grads) == len(f.wrt)
    for name, g in zip(f.wrt, grads):
        want = central_fd(reference, args, f.arg_names.index(name))
        assert np.shape(g) == np.shape(vals[name]), name
        assert np.any(want != 0.0), name
        np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-9, err_msg=name)
