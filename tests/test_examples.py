"""The shipped examples: every spec compiles and passes ``gradc check``; the
lecture notes' worked examples give their published numbers; the digits
training script reaches its accuracy."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import compiled

from gradc.cli import main as gradc_main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPECS = sorted(EXAMPLES.glob("*.toml"))


def call(c, **values):
    """Call ``value_and_grad`` with arguments by name; return (value, {wrt name: grad})."""
    value, grads = c.value_and_grad(*(values[n] for n in c.arg_names))
    return value, dict(zip(c.wrt, grads))


def test_the_examples_are_there():
    names = {p.name for p in SPECS}
    assert {"mlp_digits.toml", "seed_add_mul.toml", "seed_sigmoid_neuron.toml", "seed_norm_wx.toml",
            "seed_three_layer.toml", "seed_relu_2layer.toml"} <= names
    assert (EXAMPLES / "train_digits.py").is_file() and (EXAMPLES / "train_cnn_digits.py").is_file()
    for script in ("compare_optimizers.py", "svm_digits.py", "saliency_digits.py", "class_model_digits.py"):
        assert (EXAMPLES / script).is_file()


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_spec_compiles_and_passes_gradc_check(spec, capsys):
    c = compiled(spec)
    assert c.wrt, "every example differentiates something"
    assert gradc_main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "OK: worst relative error" in out


def test_seed_add_mul_published_numbers():
    # Lecture "Example 1": f(x, y, z) = (x + y) z at (-2, 5, -4): f = -12, grad = (-4, -4, 3).
    c = compiled(EXAMPLES / "seed_add_mul.toml")
    assert c.arg_names == ("x", "y", "z") and c.wrt == ("x", "y", "z")
    value, grads = c.value_and_grad(-2.0, 5.0, -4.0)
    assert value == -12.0
    assert tuple(grads) == (-4.0, -4.0, 3.0)
    assert c.forward(-2.0, 5.0, -4.0) == -12.0


def test_seed_sigmoid_neuron_published_numbers():
    # w = (2, -3, -3), x = (-1, -2): f = 0.73; dw0 = -0.20, dx0 = 0.39, dw1 = -0.39, dx1 = -0.59, dw2 = 0.20
    c = compiled(EXAMPLES / "seed_sigmoid_neuron.toml")
    value, g = call(c, w0=2.0, w1=-3.0, w2=-3.0, x0=-1.0, x1=-2.0)
    assert round(value, 2) == 0.73
    published = {"w0": -0.20, "x0": 0.39, "w1": -0.39, "x1": -0.59, "w2": 0.20}
    assert {k: round(float(v), 2) for k, v in g.items()} == published
    s = 1 / (1 + np.exp(-1.0))           # the exact values: the dot product is 1
    d = s * (1 - s)
    assert value == pytest.approx(s, rel=1e-15)
    exact = {"w0": -1 * d, "x0": 2 * d, "w1": -2 * d, "x1": -3 * d, "w2": d}
    for k in exact:
        assert g[k] == pytest.approx(exact[k], rel=1e-14)


def test_seed_norm_wx_published_numbers():
    # W = [[0.1, 0.5], [-0.3, 0.8]], x = [0.2, 0.4]: q = [0.22, 0.26], f = 0.116,
    # grad_W = 2 q x^T = [[0.088, 0.176], [0.104, 0.208]], grad_x = 2 W^T q = [-0.112, 0.636]
    c = compiled(EXAMPLES / "seed_norm_wx.toml")
    W = np.array([[0.1, 0.5], [-0.3, 0.8]])
    x = np.array([0.2, 0.4])
    value, g = call(c, W=W, x=x)
    assert value == pytest.approx(0.116, abs=1e-12)
    np.testing.assert_allclose(g["W"], [[0.088, 0.176], [0.104, 0.208]], atol=1e-12)
    np.testing.assert_allclose(g["x"], [-0.112, 0.636], atol=1e-12)


def test_seed_three_layer_matches_the_numpy_snippet():
    # the lecture's forward pass, with column vectors, as the oracle for the value
    c = compiled(EXAMPLES / "seed_three_layer.toml")
    rng = np.random.default_rng(1)
    p = c.init_params(seed=1)
    x = rng.standard_normal(3)
    f = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    col = lambda v: v.reshape(-1, 1)  # noqa: E731
    h1 = f(np.dot(p["W1"], col(x)) + col(p["b1"]))
    h2 = f(np.dot(p["W2"], h1) + col(p["b2"]))
    out = np.dot(p["W3"], h2) + col(p["b3"])
    value, g = call(c, x=x, **p)
    assert value == pytest.approx(out.item(), rel=1e-13)
    # the output layer's gradient is plain: d out / d W3 = h2^T, d out / d b3 = 1
    np.testing.assert_allclose(g["W3"], h2.T, rtol=1e-13)
    np.testing.assert_allclose(g["b3"], [1.0])


def test_seed_relu_2layer_matches_numpy_and_routes_the_kink():
    c = compiled(EXAMPLES / "seed_relu_2layer.toml")
    rng = np.random.default_rng(2)
    p = c.init_params(seed=2)
    X = rng.standard_normal((5, 3))
    T = rng.standard_normal((5, 2))
    H = np.maximum(0, X @ p["W1"].T)
    F = H @ p["W2"].T
    value, g = call(c, X=X, T=T, **p)
    assert value == pytest.approx(np.mean((F - T) ** 2), rel=1e-13)
    dF = 2 * (F - T) / F.size
    np.testing.assert_allclose(g["W2"], dF.T @ H, rtol=1e-12)
    np.testing.assert_allclose(g["W1"], ((dF @ p["W2"]) * (X @ p["W1"].T > 0)).T @ X, rtol=1e-12)
    # at a tie max(0, h) with h = 0 routes the gradient to its first argument, the 0
    value, g = call(c, X=np.zeros((2, 3)), T=np.ones((2, 2)), **p)
    assert value == pytest.approx(1.0)
    np.testing.assert_array_equal(g["W1"], 0.0)


def test_train_digits_reaches_95_percent(tmp_path):
    # from another working directory, to check the spec is found beside the script
    compiled(EXAMPLES / "mlp_digits.toml")      # warm gradc's and Numba's cache for the subprocess
    run = subprocess.run([sys.executable, str(EXAMPLES / "train_digits.py")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert len(re.findall(r"^epoch +\d+ +loss [0-9.]+", run.stdout, re.M)) == 80
    m = re.search(r"^test accuracy: ([0-9.]+)$", run.stdout, re.M)
    assert m, run.stdout
    assert float(m.group(1)) >= 0.95, run.stdout


def test_train_cnn_digits_reaches_98_5_percent(tmp_path):
    """Issue 13: the convolutional network of cnn_digits.toml, trained by its script with its
    defaults (a few seconds), classifies at least 98.5 % of the held-out quarter of the digits."""
    compiled(EXAMPLES / "cnn_digits.toml")      # warm gradc's and Numba's cache for the subprocess
    run = subprocess.run([sys.executable, str(EXAMPLES / "train_cnn_digits.py")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    m = re.search(r"^test accuracy: ([0-9.]+)$", run.stdout, re.M)
    assert m, run.stdout
    assert float(m.group(1)) >= 0.985, run.stdout


# ---- the training examples: run as scripts from another folder with fast flags ----------

PNG = b"\x89PNG\r\n\x1a\n"


def run_example(script, *flags, cwd):
    run = subprocess.run([sys.executable, str(EXAMPLES / script), *flags], cwd=cwd,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def warm(spec):
    """JIT forward and value_and_grad of ``spec`` for the argument types the scripts use,
    so that their subprocesses load the machine code from Numba's cache."""
    from gradc.runtime import random_arguments
    c = compiled(EXAMPLES / spec)
    args = random_arguments(c, {"batch": 2})
    c.forward(*args)
    c.value_and_grad(*args)


def assert_png(path):
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 2000


def test_compare_optimizers_script(tmp_path):
    pytest.importorskip("matplotlib")
    warm("mlp_digits.toml")
    out = run_example("compare_optimizers.py", "--epochs", "10", "--no-progress", "--out", "pics", cwd=tmp_path)
    acc = dict(re.findall(r"^ *(\w+): final loss [0-9.]+ +test accuracy ([0-9.]+)", out, re.M))
    assert set(acc) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "deltabardelta"}, out
    assert all(float(v) >= 0.6 for v in acc.values()) and max(map(float, acc.values())) >= 0.95, out
    assert_png(tmp_path / "pics" / "optimizers_digits.png")


def test_svm_digits_script(tmp_path):
    pytest.importorskip("matplotlib")
    warm("svm_linear.toml")
    out = run_example("svm_digits.py", "--epochs", "20", cwd=tmp_path)
    m = re.search(r"^test loss ([0-9.]+) \(NumPy reference ([0-9.]+)\)$", out, re.M)
    assert m and m.group(1) == m.group(2), out               # the generated loss matches NumPy's
    m = re.search(r"^test accuracy: ([0-9.]+)$", out, re.M)
    assert m and float(m.group(1)) >= 0.93, out
    assert_png(tmp_path / "svm_digits_templates.png")
    assert_png(tmp_path / "svm_digits_loss.png")


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_saliency_digits_script(tmp_path, model):
    pytest.importorskip("matplotlib")
    warm(f"{model}_digits.toml")
    warm(f"{model}_digits_class_score.toml")
    epochs = {"cnn": "2", "mlp": "15"}[model]
    out = run_example("saliency_digits.py", "--model", model, "--epochs", epochs, "--images", "4",
                      "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert f"trained {model}_digits.toml for {epochs} epochs" in out, out
    errs = {where: float(e) for e, where in
            re.findall(r"<= ([0-9.e+-]+) for \|d\| ~ 1e-6 (on the strokes|everywhere)", out)}
    assert set(errs) == {"on the strokes", "everywhere"}, out
    assert errs["on the strokes"] < 1e-8, out                 # dS_c/dI is the score's linear part
    if model == "mlp":                                        # smooth (tanh): linear in every direction
        assert errs["everywhere"] < 1e-8, out
    m = re.search(r"(\d+)% of the saliency falls on the strokes \((\d+)% of the pixels\)", out)
    assert m and 0 < int(m.group(1)) < 100, out
    assert_png(tmp_path / "o" / f"saliency_digits_{model}.png")
    assert not (tmp_path / "o" / f"saliency_digits_{'mlp' if model == 'cnn' else 'cnn'}.png").exists()


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_class_model_digits_script(tmp_path, model):
    pytest.importorskip("matplotlib")
    warm(f"{model}_digits.toml")
    warm(f"{model}_digits_class_score.toml")
    flags = {"cnn": ["--epochs", "2", "--steps", "60", "--mu", "0.05"],           # --model cnn is the default
             "mlp": ["--model", "mlp", "--epochs", "15", "--steps", "60"]}
    out = run_example("class_model_digits.py", *flags[model], cwd=tmp_path)
    epochs = flags[model][flags[model].index("--epochs") + 1]
    assert f"trained {model}_digits.toml for {epochs} epochs" in out, out
    rows = dict(re.findall(r"^ *(in \[0, 1\]|unconstrained|in \[0, 1\], no jitter|class mean): (\d+)/10 images", out,
                           re.M))
    jitter = ["in [0, 1], no jitter"] if model == "cnn" else []     # the CNN's default --jitter 1
    assert list(rows) == ["in [0, 1]", "unconstrained", *jitter, "class mean"], out
    assert min(int(rows["in [0, 1]"]), int(rows["unconstrained"])) >= 9, out   # each image is classified as its class
    assert_png(tmp_path / f"class_model_digits_{model}.png")


KINKS = """
[inputs]
x = { shape = SHAPE }
y = { shape = SHAPE }
[graph]
tie = "maximum(x, y) + minimum(x, y)"
kinks = "relu(x) + abs(y)"
masked = "where(x > 0, sqrt(x), 0) + where(y > 0, log(y), 0) + where(y > 0, 1 / y, 0)"
[output]
value = "VALUE"
wrt = ["x", "y"]
"""


@pytest.mark.parametrize("shape", ["[]", "[3]"])
def test_readme_kink_conventions(shape):
    """README's conventions at 0, for scalars and arrays: max/min ties to the first
    argument, relu'(0) = abs'(0) = 0, and where() keeps the untaken branch's inf/NaN out
    (a scalar division by zero must not raise ZeroDivisionError either)."""
    total = "tie + kinks + masked" if shape == "[]" else "sum(tie + kinks + masked)"
    c = compiled(KINKS.replace("SHAPE", shape).replace("VALUE", total))
    zero = 0.0 if shape == "[]" else np.zeros(3)
    value, (gx, gy) = c.value_and_grad(zero, zero)
    assert np.all(value == 0.0)
    np.testing.assert_array_equal(gx, 2.0 + 0 * zero)   # max and min both pick x on the tie
    np.testing.assert_array_equal(gy, 0.0 * zero)
