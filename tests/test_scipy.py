"""SciPy as a client (gradc.optimize, issue 11 point 7): the flat-vector view agrees with the
structured entry points (fun with forward, jac with value_and_grad, hess with central
differences of jac, hessp with hess @ p, the least-squares Jacobian with central differences
of the residuals), flatten/unflatten, the errors, and the examples converge to the known minima
(Rosenbrock: x = 1; NIST Misra1a: the certified values; logistic regression: scikit-learn's
optimum)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from conftest import compiled

import gradc
from gradc.optimize import Flat

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str):
    """The example script ``examples/<name>.py`` imported as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# a scalar loss of a matrix, a vector and a scalar, wrt in an order other than the arguments';
# exp(0.3 c) |v|^2 couples c and v in the Hessian
LOSS = """
[inputs]
X = { shape = ["batch", 3] }
t = { shape = ["batch"] }
[params]
W = { shape = [3, 2] }
v = { shape = [2] }
c = { shape = [] }
[graph]
h = "tanh(X @ W)"
p = "h @ v + c"
loss = "mean((p - t) ** 2) + 0.1 * sum(W ** 2) + exp(0.3 * c) * sum(v ** 2)"
[output]
value = "loss"
wrt = ["v", "W", "c"]
"""

# residuals of shape [batch, 3] (m = 3 batch) in a vector and a scalar
RESIDUALS = """
[inputs]
X = { shape = ["batch", 3] }
[params]
w = { shape = [3] }
c = { shape = [] }
[graph]
r = "tanh(X * w) + c * X ** 2"
[output]
value = "r"
"""

# a wrt argument whose dimension no fixed argument has
SYMBOLIC = """
[params]
w = { shape = ["k"] }
[graph]
f = "sum(w ** 2 - w)"
[output]
value = "f"
"""

RNG = np.random.default_rng(11)
X5 = RNG.standard_normal((5, 3))
T5 = RNG.standard_normal(5)


@pytest.fixture(scope="module")
def loss():
    return compiled(LOSS)


@pytest.fixture(scope="module")
def flat(loss):
    return loss.scipy(X=X5, t=T5)


@pytest.fixture(scope="module")
def residuals():
    return compiled(RESIDUALS)


def point(seed=0):
    rng = np.random.default_rng(seed)
    return {"v": rng.standard_normal(2), "W": rng.standard_normal((3, 2)), "c": float(rng.standard_normal())}


def central_jacobian(f, x, h=1e-6):
    """Central differences of ``f`` (vector -> scalar or vector) at ``x``: shape out.shape + (n,)."""
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        cols.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    return np.stack(cols, axis=-1)


# ---------------------------------------------------------------- layout
def test_flatten_packs_wrt_order_c_order_and_round_trips(flat):
    p = point()
    x = flat.flatten(p)
    assert x.dtype == np.float64 and x.shape == (2 + 6 + 1,) == (flat.size,)
    np.testing.assert_array_equal(x, np.concatenate([p["v"], p["W"].ravel(order="C"), [p["c"]]]))
    back = flat.unflatten(x)
    assert list(back) == ["v", "W", "c"]
    assert type(back["c"]) is float and back["c"] == p["c"]
    for k in ("v", "W"):
        assert back[k].shape == p[k].shape and back[k].dtype == np.float64
        np.testing.assert_array_equal(back[k], p[k])
    back["W"][0, 0] = 123.0                      # a copy, not a view of x
    assert x[2] == p["W"][0, 0]
    np.testing.assert_array_equal(flat.flatten(flat.unflatten(x)), x)
    assert flat.flatten({"v": [1, 2], "W": np.ones((3, 2)), "c": 3}).tolist() == [1, 2] + [1] * 6 + [3]


# ---------------------------------------------------------------- a scalar loss
def args(loss, p, X=X5, t=T5):
    return tuple({"X": X, "t": t, **p}[n] for n in loss.arg_names)


def test_fun_and_jac_agree_with_forward_and_value_and_grad(loss, flat):
    for seed in range(3):
        p = point(seed)
        x = flat.flatten(p)
        value, grads = loss.value_and_grad(*args(loss, p))
        assert flat.fun(x) == loss.forward(*args(loss, p)) == value
        g = flat.jac(x)
        assert g.shape == (9,) and g.dtype == np.float64
        np.testing.assert_array_equal(g, np.concatenate([np.ravel(gr) for gr in grads]))
        f2, g2 = flat.fun_and_jac(x)
        assert f2 == value
        np.testing.assert_array_equal(g2, g)


def test_fun_then_jac_at_the_same_x_is_one_call(loss):
    f = loss.scipy(X=X5, t=T5)
    x = f.flatten(point(1))
    f.fun(x)
    g = f.jac(x)
    assert f.calls == {"value_and_grad": 1}
    g[:] = 0.0                                   # the cached gradient is not handed out
    assert np.any(f.jac(x) != 0.0) and f.calls == {"value_and_grad": 1}
    x[0] += 0.5                                  # SciPy may change x in place: a new point
    value = f.fun(x)
    assert f.calls == {"value_and_grad": 2}
    assert value == loss.forward(*args(loss, f.unflatten(x)))


def test_hess_matches_central_differences_of_jac(flat):
    for seed in range(2):
        x = flat.flatten(point(seed))
        H = flat.hess(x)
        assert H.shape == (9, 9) and H.dtype == np.float64
        np.testing.assert_allclose(H, central_jacobian(flat.jac, x), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(H, H.T, rtol=1e-12, atol=1e-14)
        assert abs(H[0, 8]) > 1e-3                # the v-c block is there (exp(0.3 c) |v|^2)


def test_hessp_is_hess_times_p(flat):
    rng = np.random.default_rng(5)
    for seed in range(2):
        x = flat.flatten(point(seed))
        H = flat.hess(x)
        for _ in range(3):
            p = rng.standard_normal(9)
            hp = flat.hessp(x, p)
            assert hp.shape == (9,) and hp.dtype == np.float64
            np.testing.assert_allclose(hp, H @ p, rtol=1e-12, atol=1e-12)


def test_all_scalar_wrt_hess_and_hessp_vs_sympy():
    a, b, s = sp.symbols("a b s")
    expr = (1 - a) ** 2 + 100 * (b - a ** 2) ** 2 + s * sp.sin(a * b)
    c = compiled(expr, args=[a, b, s], wrt=[a, b])
    f = c.scipy(s=0.7)
    x = np.array([-0.4, 0.9])
    exact = np.array(sp.hessian(expr, (a, b)).subs({a: x[0], b: x[1], s: 0.7}).evalf(30), dtype=float)
    np.testing.assert_allclose(f.hess(x), exact, rtol=1e-13)
    grad = [float(sp.diff(expr, v).subs({a: x[0], b: x[1], s: 0.7})) for v in (a, b)]
    np.testing.assert_allclose(f.jac(x), grad, rtol=1e-13)
    p = np.array([0.3, -2.0])
    np.testing.assert_allclose(f.hessp(x, p), exact @ p, rtol=1e-13)
    assert f.unflatten(x) == {"a": -0.4, "b": 0.9}


def test_float32_wrt_arguments_are_passed_as_float32():
    c = compiled(LOSS.replace("shape = [3, 2] }", "shape = [3, 2], dtype = \"float32\" }"))
    f = c.scipy(X=X5, t=T5)
    p = point(2)
    x = f.flatten(p)
    back = f.unflatten(x)
    assert back["W"].dtype == np.float32 and back["v"].dtype == np.float64
    value, grads = c.value_and_grad(*args(c, back))
    assert grads[1].dtype == np.float32
    g = f.jac(x)
    assert g.dtype == np.float64 and f.fun(x) == value
    np.testing.assert_array_equal(g, np.concatenate([np.ravel(gr) for gr in grads]))


# ---------------------------------------------------------------- residuals
def test_residual_fun_and_jacobian_vs_forward_and_central_differences(residuals):
    X = RNG.standard_normal((4, 3))
    f = residuals.scipy(X=X)
    assert f.residual and f.size == 4
    for seed in range(2):
        rng = np.random.default_rng(seed)
        p = {"w": rng.standard_normal(3), "c": float(rng.standard_normal())}
        x = f.flatten(p)
        r = f.fun(x)
        assert r.shape == (12,) and r.dtype == np.float64
        np.testing.assert_array_equal(r, residuals.forward(X, p["w"], p["c"]).ravel())
        np.testing.assert_allclose(r, (np.tanh(X * p["w"]) + p["c"] * X ** 2).ravel(), rtol=1e-14)
        J = f.jac(x)
        assert J.shape == (12, 4)
        np.testing.assert_allclose(J, central_jacobian(f.fun, x), rtol=1e-7, atol=1e-9)


def test_misra1a_jacobian_vs_central_differences():
    ex = example("fit_misra1a")
    c = compiled(ex.SPEC)
    f = c.scipy(x=ex.X, y=ex.Y)
    for b1, b2 in [(500.0, 1e-4), (250.0, 5e-4)]:
        x = f.flatten({"b1": b1, "b2": b2})
        J = f.jac(x)
        assert J.shape == (14, 2)
        # the exact Jacobian of b1 (1 - exp(-b2 x)) - y, and central differences with steps for each scale
        exact = np.column_stack([1 - np.exp(-b2 * ex.X), b1 * ex.X * np.exp(-b2 * ex.X)])
        np.testing.assert_allclose(J, exact, rtol=1e-13)
        fd = np.column_stack([(f.fun(x + e) - f.fun(x - e)) / (2 * e.sum()) for e in np.diag([1e-3, 1e-9])])
        np.testing.assert_allclose(J, fd, rtol=1e-6)


# ---------------------------------------------------------------- errors
def test_missing_unknown_and_wrt_fixed_arguments(loss):
    with pytest.raises(gradc.ArgumentError, match="argument 't'.*missing fixed argument"):
        loss.scipy(X=X5)
    with pytest.raises(gradc.ArgumentError, match="argument 'Z'.*not an argument"):
        loss.scipy(X=X5, t=T5, Z=1.0)
    with pytest.raises(gradc.ArgumentError, match="argument 'W'.*is differentiated"):
        loss.scipy(X=X5, t=T5, W=np.zeros((3, 2)))
    with pytest.raises(gradc.ArgumentError, match="argument 't'.*batch = 5"):
        loss.scipy(X=X5, t=np.zeros(4))
    with pytest.raises(gradc.ArgumentError, match="argument 'X'.*rank 2"):
        loss.scipy(X=np.zeros(5), t=T5)
    with pytest.raises(gradc.ArgumentError, match="minimize.*fixed must be a dict"):
        gradc.minimize(loss, point(), fixed=[X5, T5])


def test_wrong_vector_length_and_bad_params(flat):
    x = flat.flatten(point())
    for call in (flat.fun, flat.jac, flat.hess, flat.unflatten, lambda z: flat.hessp(z, x)):
        with pytest.raises(gradc.ArgumentError, match=r"shape \(9,\).*got shape \(8,\)"):
            call(x[:-1])
    with pytest.raises(gradc.ArgumentError, match=r"hessp: p: .*got shape \(10,\)"):
        flat.hessp(x, np.zeros(10))
    with pytest.raises(gradc.ArgumentError, match="argument 'c'.*missing"):
        flat.flatten({"v": np.zeros(2), "W": np.zeros((3, 2))})
    with pytest.raises(gradc.ArgumentError, match="argument 'X'.*not a wrt argument \\(it is fixed\\)"):
        flat.flatten({**point(), "X": X5})
    with pytest.raises(gradc.ArgumentError, match=r"argument 'W'.*expected shape \(3, 2\), got \(2, 3\)"):
        flat.flatten({**point(), "W": np.zeros((2, 3))})


def test_scalar_and_residual_methods_are_not_mixed(loss, residuals):
    f = residuals.scipy(X=X5)
    x = f.flatten({"w": np.zeros(3), "c": 0.0})
    for name in ("hess", "fun_and_jac"):
        with pytest.raises(gradc.GradcError, match=f"{name}: r is an array.*least_squares"):
            getattr(f, name)(x)
    with pytest.raises(gradc.GradcError, match="hessp: r is an array"):
        f.hessp(x, x)
    with pytest.raises(gradc.GradcError, match="minimize: r is an array"):
        gradc.minimize(residuals, {"w": np.zeros(3), "c": 0.0}, fixed={"X": X5})
    with pytest.raises(gradc.GradcError, match="least_squares: loss is a scalar.*gradc.minimize"):
        gradc.least_squares(loss, point(), fixed={"X": X5, "t": T5})


def test_symbolic_dimension_of_a_wrt_argument_from_the_initial_params():
    c = compiled(SYMBOLIC)
    f = Flat(c)
    assert f.size is None
    with pytest.raises(gradc.ArgumentError, match="dimension\\(s\\) k .*not known yet.*flatten"):
        f.fun(np.zeros(4))
    assert f.flatten({"w": np.zeros(4)}).shape == (4,) and f.size == 4 and f.shapes == {"w": (4,)}
    with pytest.raises(gradc.ArgumentError, match=r"argument 'w'.*expected shape \(4,\), got \(3,\)"):
        f.flatten({"w": np.zeros(3)})
    res = gradc.minimize(c, {"w": np.zeros(6)}, method="BFGS")    # f = sum(w^2 - w): w = 1/2
    np.testing.assert_allclose(res.params["w"], 0.5, atol=1e-7)
    assert res.params["w"].shape == (6,)


# ---------------------------------------------------------------- the wrappers and the examples
def test_minimize_gives_each_method_its_derivatives(loss):
    fixed = {"X": X5, "t": T5}
    res = {m: gradc.minimize(loss, point(), fixed=fixed, method=m, options={"gtol": 1e-9})
           for m in ("trust-exact", "trust-ncg", "BFGS")}
    assert res["trust-exact"].nhev > 0 and res["trust-ncg"].nhev > 0
    ref = res["BFGS"].x
    for m, r in res.items():
        assert r.success, (m, r.message)
        np.testing.assert_allclose(r.x, ref, atol=1e-6)
        assert np.max(np.abs(loss.scipy(**fixed).jac(r.x))) < 1e-8
        np.testing.assert_array_equal(loss.scipy(**fixed).flatten(r.params), r.x)


def test_rosenbrock_example_converges_to_one(capsys):
    ex = example("scipy_rosenbrock")
    rows = ex.run(n=10)
    assert [r["method"] for r in rows] == ["Newton-CG", "trust-exact", "L-BFGS-B"]
    for r in rows:
        assert r["success"] and r["error"] < 1e-6 and r["f"] < 1e-12, r
        assert r["x"].shape == (10,)
    assert rows[0]["nhev"] > 0 and rows[1]["nhev"] > 0 and rows[2]["nhev"] == 0
    x = np.random.default_rng(0).standard_normal(10)
    assert ex.model(10).forward(x) == pytest.approx(ex.rosen(x), rel=1e-14)
    assert ex.main(["--n", "10", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^(Newton-CG|trust-exact|L-BFGS-B) +(hessp|hess|grad) +\d+", out, re.M)) == 3, out
    assert "all converged to x = 1" in out


def test_misra1a_example_reproduces_nist_certified_values(capsys):
    ex = example("fit_misra1a")
    c = ex.model()
    for start in ex.STARTS.values():
        r = ex.fit(c, start)
        assert r["success"]
        assert r["params"]["b1"] == pytest.approx(2.3894212918E+02, rel=1e-8)
        assert r["params"]["b2"] == pytest.approx(5.5015643181E-04, rel=1e-8)
        assert max(ex.relative_errors(r).values()) < 1e-8
    assert ex.main([]) == 0
    out = capsys.readouterr().out
    assert "agrees with NIST's certified values" in out, out


def test_logreg_example_matches_scikit_learn(capsys):
    pytest.importorskip("sklearn")
    ex = example("logreg_breast_cancer")
    Xtr, Xte, ytr, yte = ex.load()
    c = ex.model()
    r = ex.fit(c, Xtr, ytr, 1.0, "trust-ncg")
    assert r["success"] and r["nhev"] > 0
    sk = ex.sklearn_fit(Xtr, ytr, 1.0)
    np.testing.assert_allclose(r["w"], sk["w"], atol=1e-5)
    assert r["b"] == pytest.approx(sk["b"], abs=1e-5)
    assert ex.objective(r["w"], r["b"], Xtr, ytr, 1.0) <= ex.objective(sk["w"], sk["b"], Xtr, ytr, 1.0) + 1e-12
    assert ex.accuracy(r["w"], r["b"], Xte, yte) > 0.94
    assert ex.main(["--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "the same optimum" in out, out


def test_the_module_docstring_example():
    import doctest

    import gradc.optimize
    result = doctest.testmod(gradc.optimize)
    assert result.attempted >= 4 and result.failed == 0
