"""Basic slicing x[a:b] in the spec language: values vs NumPy, gradients vs
central differences of an independent NumPy function, and clear errors."""
import numpy as np
import pytest

import gradc
from gradc.pipeline import build

from conftest import compiled

ROSENBROCK = """\
[inputs]
x = { shape = [7] }

[graph]
f = "sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)"

[output]
value = "f"
wrt = ["x"]
"""

BLOCKS = """\
[inputs]
X = { shape = [4, 5] }

[graph]
f = "sum(X[:, 1:4] ** 2) + sum(X[1:2] * X[-1:]) + sum(tanh(X[1:, :-2]))"

[output]
value = "f"
wrt = ["X"]
"""


def rosenbrock(x):
    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def blocks(X):
    return np.sum(X[:, 1:4] ** 2) + np.sum(X[1:2] * X[-1:]) + np.sum(np.tanh(X[1:, :-2]))


def central_differences(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("spec, ref, shape", [(ROSENBROCK, rosenbrock, (7,)), (BLOCKS, blocks, (4, 5))],
                         ids=["rosenbrock", "2d-blocks"])
def test_slices_value_and_gradient(spec, ref, shape):
    c = compiled(spec)
    rng = np.random.default_rng(4)
    for _ in range(3):
        x = rng.normal(size=shape)
        value, (g,) = c.value_and_grad(x)
        assert value == pytest.approx(ref(x), rel=1e-12)
        np.testing.assert_allclose(g, central_differences(ref, x), rtol=1e-6, atol=1e-6)


def test_rosenbrock_minimum_has_zero_gradient():
    value, (g,) = compiled(ROSENBROCK).value_and_grad(np.ones(7))
    assert value == 0.0 and np.all(g == 0.0)


@pytest.mark.parametrize("expr, message", [
    ("sum(x[3:1])", "empty or out of range"),
    ("sum(x[0:9])", "empty or out of range"),
    ("sum(x[0])", "only slices"),
    ("sum(x[::2])", "no step"),
    ("sum(x[a:])", "integer constants"),
    ("sum(x[1:, 2:])", "2 indices"),
    ("sum(B[1:])", "symbolic dimension 'n'"),
])
def test_bad_slices_name_the_place(expr, message):
    spec = f"""\
[inputs]
x = {{ shape = [7] }}
B = {{ shape = ["n", 2] }}

[graph]
f = "{expr}"

[output]
value = "f"
wrt = ["x"]
"""
    with pytest.raises(gradc.GradcError, match=message) as err:
        build(spec)
    assert "<spec>:6:" in str(err.value)
