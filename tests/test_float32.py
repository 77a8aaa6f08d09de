"""float32 specs: ``dtype = "float32"`` inputs and params compile to float32 code whose
value and gradients match the float64 compile of the same spec to float32 accuracy.

Promotion follows NumPy: float32 with float32 stays float32, float32 with float64
gives float64; number literals take the dtype of the other operands (as a Python
float does in NumPy), so ``2.5 * x`` or ``(1 / 3) * x`` keep a float32 ``x`` float32.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradc
from gradc.cli import main
from gradc.pipeline import build
from gradc.runtime import gradcheck, init_params, random_arguments

from conftest import compiled

#: every op whose template or helper writes numbers or allocates arrays, with constants of every
#: kind (literals, a folded 1 / 3, a constant graph entry, a float32 scalar parameter)
ALL_OPS = """\
[model]
name = "all_ops"

[inputs]
X = { shape = ["batch", 6], dtype = "float32" }
y = { shape = ["batch"], dtype = "int64" }
t = { shape = ["batch", 6], dtype = "float32" }

[params]
W = { shape = [6, 6], dtype = "float32", init = "glorot" }
u = { dtype = "float32", init = "constant", value = 0.7 }

[graph]
lam = "1e-3"
s = "X @ W * 2.5 - 1 / 3 + u"
e = "softplus(s) + log_sigmoid(s) + elu(s, 0.5) + leaky_relu(s) + relu(s) + s ** -2 + abs(s) ** 1.5"
l = "softmax_cross_entropy(s, y) + svm_hinge(s, y) + pick(s, y) + max_pool(s, axis=1) + logavg_pool(s, 2.0, axis=1) + lp_pool(sigmoid(s), 3.0, axis=1) + sum(maxout(s, 3), axis=1) + logsumexp(s, axis=1) + logsumexp(X) / 8"
loss = "sum(e * binary_cross_entropy(s, t)) + mean(l) + mse(s, t) + sum(mean(where(s > 0, s, t), axis=0)) + lam * sum(W ** 2) + u * u"

[output]
value = "loss"
"""


def point(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 6, n).astype(np.int64),
            rng.random((n, 6)).astype(np.float32), (rng.standard_normal((6, 6)) * 0.5).astype(np.float32),
            np.float32(0.7)]


def f64(args):
    return [a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float32
            else float(a) if isinstance(a, np.float32) else a for a in args]


def test_float32_ir_has_no_float64_value():
    art = build(ALL_OPS)
    floats = [s.out for s in art.full.stmts] + art.full.inputs
    assert {v.dtype for v in floats} == {"f32", "i64", "bool"}, [repr(v) for v in floats if v.dtype == "f64"]
    assert "DTYPES = {'X': 'float32', 'y': 'int64', 't': 'float32', 'W': 'float32', 'u': 'float32'}" in art.code
    assert "np.float32(2.5)" in art.code and "np.float32(0.3333333333333333)" in art.code
    assert "np.float32(0.001)" in art.code


def test_float32_matches_float64_to_float32_accuracy():
    """The float32 value and gradients against the same generated code run in float64
    (the raw dispatcher compiles a float64 specialization): one Numba compile of the
    float32 value_and_grad, one of the float64 forward."""
    c = compiled(ALL_OPS)
    args = point()
    v32, g32 = c.value_and_grad(*args)
    sig = [s for s in c.raw.value_and_grad.nopython_signatures if "float32" in str(s.args[0])][0]
    assert "float64" not in str(sig.return_type), sig.return_type     # every result is float32
    assert [g.dtype for g in g32[:1]] == [np.float32]        # the scalar u's gradient comes back as a float
    v64 = c.raw.forward(*f64(args))
    assert v32 == pytest.approx(v64, rel=2e-6)
    assert float(c.forward(*args)) == pytest.approx(v32, rel=1e-6)
    report = gradcheck(c, *args, max_elems=12)                       # differences of the float64 forward
    assert report.worst < 1e-4, report


def test_init_params_and_random_arguments_in_float32():
    c = compiled(ALL_OPS)
    params = init_params(c, {"batch": 4}, seed=1)
    assert params["W"].dtype == np.float32
    assert isinstance(params["u"], np.float32) and params["u"] == np.float32(0.7)
    args = random_arguments(c, {"batch": 4}, seed=1)
    assert [getattr(a, "dtype", None) for a in args] == [np.float32, np.int64, np.float32, np.float32,
                                                         np.float32]


def test_gradc_check_on_a_float32_spec(tmp_path, capsys):
    path = tmp_path / "mlp32.toml"
    path.write_text(MLP32, encoding="utf-8")
    assert main(["check", str(path), "--batch", "5"]) == 0
    out = capsys.readouterr().out
    assert "tolerance 1e-03" in out and out.strip().splitlines()[-1].startswith("OK")


MLP32 = """\
[inputs]
X = { shape = ["batch", 4], dtype = "float32" }
y = { shape = ["batch"], dtype = "int64" }

[params]
W1 = { shape = [4, 8], dtype = "float32", init = "glorot" }
b1 = { shape = [8], dtype = "float32" }
W2 = { shape = [8, 3], dtype = "float32", init = "glorot" }

[graph]
h = "tanh(X @ W1 + b1)"
loss = "mean(softmax_cross_entropy(h @ W2, y)) + 1e-4 * sum(W1 ** 2)"

[output]
value = "loss"
"""


def test_float32_training_step_keeps_float32_and_the_wrapper_checks_dtypes():
    c = compiled(MLP32)
    params = c.init_params({"batch": 8}, seed=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    loss0, grads = c.value_and_grad(X, y, params["W1"], params["b1"], params["W2"])
    assert all(g.dtype == np.float32 for g in grads)
    from gradc.runtime import SGD, train
    history = train(c, params, {"X": X, "y": y}, epochs=20, batch_size=8, optimizer=SGD(0.5), log=None)
    assert history[-1] < loss0 and params["W1"].dtype == np.float32
    with pytest.raises(gradc.ArgumentError, match=r"argument 'X': expected a float32 array, got a float64 "
                                                  r"array of shape \(8, 4\) \(convert it with \.astype"):
        c.value_and_grad(X.astype(np.float64), y, params["W1"], params["b1"], params["W2"])


def test_mixing_float32_and_float64_promotes_to_float64():
    art = build('[inputs]\nx = { shape = [3], dtype = "float32" }\nw = { shape = [3] }\n'
                '[graph]\nh = "x * 2.0"\nv = "sum(h * w)"\n[output]\nvalue = "v"\nwrt = ["x", "w"]\n')
    types = {s.out.name: s.out.dtype for s in art.primal.stmts}
    assert types["h"] == "f32" and types["v"] == "f64"
    assert "%x_bar:f64[3]" in art.show("adjoint")          # the gradient is float64, like NumPy's x * w


def test_float32_scalars():
    c = compiled('[inputs]\nx = { dtype = "float32" }\n[params]\nw = { dtype = "float32" }\n'
                 '[graph]\nf = "w * x ** 3 + sin(x) / 7"\n[output]\nvalue = "f"\nwrt = ["x", "w"]\n')
    value, (gx, gw) = c.value_and_grad(1.5, 2)              # Python numbers are converted to float32
    assert value == pytest.approx(2 * 1.5 ** 3 + np.sin(1.5) / 7, rel=1e-6)
    assert gx == pytest.approx(6 * 1.5 ** 2 + np.cos(1.5) / 7, rel=1e-6)
    assert gw == pytest.approx(1.5 ** 3, rel=1e-6)
    sig = [s for s in c.raw.value_and_grad.nopython_signatures if "float32" in str(s)][0]
    assert str(sig.return_type) == "Tuple(float32, UniTuple(float32 x 2))"


def test_a_float32_argument_of_a_float64_product_gets_its_gradient_cast(tmp_path):
    """Found by the thorough profile (array property): in sum(exp(exp(a0 @ a1))) with a0 float64
    and a1 float32, the product is float64, and value_and_grad wrote ∂L/∂a1 = a0ᵀ ∂L/∂out_2 with
    np.dot straight into a1's float32 output array, which Numba refuses to type. The gradient is
    now computed in float64 and cast into the float32 array. Oracle: the derivative written out
    with NumPy in float64, d/da0 = g a1ᵀ, d/da1 = a0ᵀ g, g = exp(exp(z)) exp(z), z = a0 @ a1."""
    path = tmp_path / "mixed.toml"
    path.write_text("\n".join(["[inputs]", "a0 = { shape = [1, 2] }", 'a1 = { shape = [2, 1], dtype = "float32" }',
                               "[graph]", 'out = "sum(exp(exp((a0 @ a1))))"', "[output]", 'value = "out"',
                               'wrt = ["a0", "a1"]', ""]))
    f = gradc.compile(path)
    a0 = np.array([[0.54784675, -0.92085314]])
    a1 = np.array([[-1.836106], [-1.9338895]], dtype=np.float32)
    value, (g0, g1) = f.value_and_grad(a0, a1)
    z = a0 @ a1.astype(np.float64)
    g = np.exp(np.exp(z)) * np.exp(z)
    assert value == pytest.approx(float(np.sum(np.exp(np.exp(z)))), rel=1e-14)
    assert g0.dtype == np.float64 and g1.dtype == np.float32
    np.testing.assert_allclose(g0, g @ a1.astype(np.float64).T, rtol=1e-14)
    np.testing.assert_allclose(g1, (a0.T @ g).astype(np.float32), rtol=1e-6)
    out = (np.empty_like(a0), np.empty_like(a1))
    assert f.raw.value_and_grad_into(a0, a1, *out) == pytest.approx(value, rel=1e-15)
    np.testing.assert_array_equal(out[1], g1)
