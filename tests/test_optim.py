"""Optimizers against trajectories written out from their formulas, and the
training loop: history, early stopping, restoring the best parameters,
progress output, the loss-curve plot, optimizers by name, learning-rate schedules,
weight decay, shuffling, checkpoints and the errors of bad arguments."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from conftest import compiled

import gradc
from gradc.runtime import (OPTIMIZERS, AdaGrad, Adam, CheckpointError, CosineLR, DeltaBarDelta, History,
                           Momentum, RMSProp, SGD, StepLR, TrainingError, evaluate, load_checkpoint,
                           loss_figure, save_checkpoint, save_loss_curve, train)

# f(θ) = ½ Σ aᵢ (θᵢ − cᵢ)², ∂f/∂θᵢ = aᵢ (θᵢ − cᵢ); an array parameter and a scalar one
A = [1.0, 4.0, 0.25]
C = [1.0, -2.0, 3.0]
THETA0 = [0.0, 0.5, -1.0]
A_S, C_S, S0 = 2.0, -1.5, 1.0
STEPS = 25


def grad(theta, a=A, c=C):
    return [ai * (ti - ci) for ai, ti, ci in zip(a, theta, c)]


def run(opt, steps=STEPS):
    """Take ``steps`` steps on the quadratic; return (array θ, scalar s) and check in-place updates."""
    params = {"theta": np.array(THETA0), "s": S0}
    arr = params["theta"]
    for _ in range(steps):
        g = {"theta": np.array(grad(params["theta"])), "s": A_S * (params["s"] - C_S)}
        opt.step(params, g)
    assert params["theta"] is arr, "arrays are updated in place"
    assert type(params["s"]) is float, "scalars stay Python floats"
    return params["theta"], params["s"]


def reference(update, state0, steps=STEPS):
    """Apply ``update(x, g, state, t) -> (x, state)`` coordinate by coordinate, in plain Python."""
    out = []
    for x, a, c in list(zip(THETA0, A, C)) + [(S0, A_S, C_S)]:
        state = dict(state0)
        for t in range(1, steps + 1):
            x, state = update(x, a * (x - c), state, t)
        out.append(x)
    return out[:-1], out[-1]


def check(opt, update, state0, rtol=1e-12):
    theta, s = run(opt)
    ref_theta, ref_s = reference(update, state0)
    np.testing.assert_allclose(theta, ref_theta, rtol=rtol, atol=1e-14)
    assert s == pytest.approx(ref_s, rel=rtol, abs=1e-14)


def test_sgd_lands_on_the_closed_form():
    lr = 0.1
    theta, s = run(SGD(lr))
    # θ_k − c = (1 − lr·a)^k (θ_0 − c)
    expected = [c + (1 - lr * a) ** STEPS * (t0 - c) for t0, a, c in zip(THETA0, A, C)]
    np.testing.assert_allclose(theta, expected, rtol=1e-12)
    assert s == pytest.approx(C_S + (1 - lr * A_S) ** STEPS * (S0 - C_S), rel=1e-12)


def test_momentum():
    lr, mu = 0.05, 0.9

    def update(x, g, st, t):
        v = mu * st["v"] - lr * g
        return x + v, {"v": v}
    check(Momentum(lr, mu), update, {"v": 0.0})


def test_nesterov_momentum_is_the_look_ahead_method():
    # Sutskever et al. 2013: v ← μv − lr·∇f(θ + μv), θ ← θ + v, with the gradient at the
    # look-ahead point; the optimizer's parameter is that look-ahead point θ + μv.
    lr, mu = 0.05, 0.9
    theta, s = run(Momentum(lr, mu, nesterov=True))
    for got, x0, a, c in list(zip(theta, THETA0, A, C)) + [(s, S0, A_S, C_S)]:
        x, v = x0, 0.0
        for _ in range(STEPS):
            v = mu * v - lr * a * (x + mu * v - c)
            x = x + v
        assert got == pytest.approx(x + mu * v, rel=1e-12, abs=1e-14)


def test_adagrad():
    lr, eps = 0.5, 1e-8

    def update(x, g, st, t):
        r = st["r"] + g * g
        return x - lr * g / (math.sqrt(r) + eps), {"r": r}
    check(AdaGrad(lr, eps), update, {"r": 0.0})


def test_rmsprop():
    lr, rho, eps = 0.01, 0.9, 1e-8

    def update(x, g, st, t):
        r = rho * st["r"] + (1 - rho) * g * g
        return x - lr * g / (math.sqrt(r) + eps), {"r": r}
    check(RMSProp(lr, rho, eps), update, {"r": 0.0})


def test_adam_with_bias_correction():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8

    def update(x, g, st, t):
        m = b1 * st["m"] + (1 - b1) * g
        v = b2 * st["v"] + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        return x - lr * m_hat / (math.sqrt(v_hat) + eps), {"m": m, "v": v}
    check(Adam(lr, b1, b2, eps), update, {"m": 0.0, "v": 0.0})
    # bias correction: the first step moves every coordinate by lr against the gradient's sign
    theta, s = run(Adam(lr, b1, b2, eps), steps=1)
    np.testing.assert_allclose(theta, np.array(THETA0) - lr * np.sign(grad(THETA0)), rtol=1e-7)


def test_delta_bar_delta():
    lr, kappa, phi, th = 0.05, 0.02, 0.3, 0.7

    def update(x, g, st, t):
        rate, bar = st["rate"], st["bar"]
        if bar * g > 0:
            rate = rate + kappa
        elif bar * g < 0:
            rate = rate * (1 - phi)
        return x - rate * g, {"rate": rate, "bar": (1 - th) * g + th * bar}
    check(DeltaBarDelta(lr, kappa, phi, th), update, {"rate": lr, "bar": 0.0})


def test_delta_bar_delta_rates_grow_while_the_sign_holds_and_shrink_when_it_flips():
    # f = ½ θ²: with a small rate θ keeps its sign, so after k steps the rate is lr + (k − 1) κ
    opt = DeltaBarDelta(lr=0.01, kappa=0.01, phi=0.5, theta=0.5)
    p = {"w": np.array([1.0])}
    for _ in range(5):
        opt.step(p, {"w": p["w"].copy()})
    assert opt.state["w"]["rate"][0] == pytest.approx(0.01 + 4 * 0.01)
    # an overshooting rate flips the sign of the derivative every step: the rate halves
    opt = DeltaBarDelta(lr=8.0, kappa=0.01, phi=0.5, theta=0.0)
    p = {"w": np.array([1.0])}
    rates = []
    for _ in range(4):
        opt.step(p, {"w": p["w"].copy()})
        rates.append(opt.state["w"]["rate"][0])
    assert rates == pytest.approx([8.0, 4.0, 2.0, 1.0])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_minimises_the_quadratic_and_ignores_params_without_grads(name):
    settings = {"sgd": {"lr": 0.2}, "momentum": {"lr": 0.05}, "adagrad": {"lr": 0.5},
                "rmsprop": {"lr": 0.05}, "adam": {"lr": 0.05}, "deltabardelta": {"lr": 0.05}}
    opt = OPTIMIZERS[name](**settings[name])
    params = {"theta": np.array(THETA0), "frozen": np.ones(2)}
    f0 = 0.5 * sum(a * (t - c) ** 2 for a, t, c in zip(A, THETA0, C))
    for _ in range(300):
        opt.step(params, {"theta": np.array(grad(params["theta"]))})
    f = 0.5 * sum(a * (t - c) ** 2 for a, t, c in zip(A, params["theta"], C))
    assert f < 1e-3 * f0, (name, params["theta"])
    np.testing.assert_array_equal(params["frozen"], 1.0)
    assert repr(opt).startswith(type(opt).__name__ + "(")


# ---- the training loop ------------------------------------------------------

LINEAR = """
[model]
name = "linear_regression"
[inputs]
X = { shape = ["batch", 3] }
t = { shape = ["batch"] }
[params]
w = { shape = [3] }
b = {}
[graph]
loss = "mse(X @ w + b, t)"
[output]
value = "loss"
"""


@pytest.fixture(scope="module")
def linear():
    c = compiled(LINEAR)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    t = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    return c, {"X": X, "t": t}


def fresh():
    return {"w": np.zeros(3), "b": 0.0}


def test_train_history_and_determinism(linear, capsys):
    c, data = linear
    p1, p2 = fresh(), fresh()
    h1 = train(c, p1, data, epochs=7, batch_size=10, optimizer=SGD(0.05), seed=3, log=None, progress=False)
    h2 = train(c, p2, data, epochs=7, batch_size=10, optimizer=SGD(0.05), seed=3, log=None, progress=False)
    assert isinstance(h1, History) and isinstance(h1, list) and len(h1) == 7
    assert h1 == h2 and h1[-1] < h1[0]
    assert h1.val_loss == [] and h1.stopped_epoch is None and len(h1.examples_per_second) == 7
    np.testing.assert_array_equal(p1["w"], p2["w"])
    assert type(p1["b"]) is float and p1["b"] != 0.0       # the scalar parameter learns too
    assert capsys.readouterr() == ("", "")                  # progress=False, log=None: silent


def test_train_logs_one_line_per_epoch_without_a_bar(linear, capsys):
    c, data = linear
    h = train(c, fresh(), data, epochs=3, batch_size=16, optimizer=SGD(0.05), val_data=data, progress=False)
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 3 and all(line.startswith("epoch") and "val_loss" in line for line in lines)
    assert len(h.val_loss) == 3


def test_early_stopping_on_the_training_loss(linear):
    c, data = linear
    # a zero learning rate: the loss never improves after epoch 1, so patience 2 stops at epoch 3
    h = train(c, fresh(), data, epochs=50, batch_size=64, optimizer=SGD(0.0), patience=2, log=None)
    assert len(h) == 3 and h.stopped_epoch == 3 and h.stop_reason == "early stopping" and h.best_epoch == 1


def test_early_stopping_on_validation_restores_the_best_params(linear):
    c, data = linear
    # validation targets of the opposite sign: fitting the training data makes them worse
    val = {"X": data["X"], "t": -data["t"]}
    p = fresh()
    h = train(c, p, data, epochs=50, batch_size=8, optimizer=SGD(0.05), val_data=val, patience=3,
              restore_best=True, log=None)
    assert h.stop_reason == "early stopping" and len(h) == h.best_epoch + 3 < 50
    assert h.restored and evaluate(c, p, val) == pytest.approx(h.best_loss, rel=1e-12)
    assert h.val_loss[h.best_epoch - 1] == h.best_loss == min(h.val_loss)


def test_training_stops_when_the_loss_diverges(linear):
    c, data = linear
    h = train(c, fresh(), data, epochs=200, batch_size=64, optimizer=SGD(50.0), log=None)
    assert h.stop_reason == "diverged" and len(h) < 200 and not math.isfinite(h[-1])


def test_full_batch_optimizers_take_one_step_per_epoch(linear):
    c, data = linear
    opt = DeltaBarDelta(lr=0.01, kappa=0.01)
    h = train(c, fresh(), data, epochs=6, batch_size=8, optimizer=opt, log=None)
    assert opt.t == 6 and len(h) == 6 and h[-1] < h[0]


def test_progress_bar(linear, capsys):
    pytest.importorskip("tqdm")
    c, data = linear
    train(c, fresh(), data, epochs=3, batch_size=16, optimizer=SGD(0.05), progress=True)
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3                      # the epoch lines still go to stdout
    assert "epoch 3/3" in err and "ex/s" in err and "loss=" in err


def test_save_loss_curve_writes_a_png(linear, tmp_path):
    pytest.importorskip("matplotlib")
    c, data = linear
    h = train(c, fresh(), data, epochs=5, batch_size=16, optimizer=SGD(0.05), val_data=data, log=None)
    for target, hist in ((tmp_path / "one.png", h), (tmp_path / "sub" / "two.png", {"a": h, "b": [3.0, 2.0, 1.0]})):
        assert save_loss_curve(hist, target) == target
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_several_curves_have_distinct_line_styles_and_markers():
    pytest.importorskip("matplotlib")
    curves = {name: [1.0, 0.5, 0.25, 0.2] for name in OPTIMIZERS}         # identical: they overlap
    curves["nesterov"] = [1.0, 0.5, 0.25, 0.2]
    lines = loss_figure(curves).axes[0].get_lines()
    assert len(lines) == len(curves)
    styles = [(line.get_linestyle(), line.get_marker()) for line in lines]
    assert len(set(styles)) == len(styles), styles
    assert len({line.get_linestyle() for line in lines}) >= 4
    single = loss_figure([1.0, 0.5]).axes[0].get_lines()
    assert single[0].get_linestyle() == "-" and single[0].get_marker() in ("None", "", None)


def test_save_loss_curve_without_matplotlib(tmp_path, monkeypatch, capsys):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # makes "import matplotlib..." fail
    assert save_loss_curve([1.0, 0.5], tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()
    assert "matplotlib is not installed" in capsys.readouterr().err


# ---- names, schedules, weight decay, shuffling, checkpoints ------------------

@pytest.mark.parametrize("bad, kw, match", [
    ("missing", {}, r"train: no data or parameter for 't'"),
    ("misspelled", {}, r"train: data key 'T' is not an argument of loss\(X, t, w, b\) \(did you mean 't'\?\)"),
    ("empty", {}, r"train: data is empty"),
    ("not a dict", {}, r"train: data must be a dict"),
    ("lengths", {}, r"train: the data arrays differ in their number of examples: X has 64, t has 63"),
    ("ok", {"batch_size": 0}, r"train: batch_size=0 must be a positive integer or None"),
    ("ok", {"batch_size": 2.5}, r"train: batch_size=2.5 must be a positive integer"),
    ("ok", {"epochs": -1}, r"train: epochs=-1 must be a non-negative integer"),
    ("ok", {"patience": 0}, r"train: patience=0 must be a positive integer"),
    ("ok", {"optimizer": "adm"}, r"train: optimizer='adm' is not one of sgd, .* \(did you mean 'adam'\?\)"),
    ("ok", {"optimizer": 42}, r"train: optimizer=42 has no step\(params, grads\) method"),
    ("ok", {"optimizer": SGD(0.1), "lr": 0.5}, r"train: lr= is for an optimizer given by name"),
    ("ok", {"lr_schedule": "linear"}, r"train: lr_schedule='linear' is not one of step, cosine"),
    ("ok", {"weight_decay": -1.0}, r"train: weight_decay for 'w' is -1.0"),
    ("ok", {"weight_decay": {"W": 0.1}}, r"train: weight_decay names 'W', which are not learned parameters"),
    ("ok", {"val_data": {"X": np.zeros((3, 3))}}, r"train: no val_data or parameter for 't'"),
])
def test_bad_arguments_raise_a_gradc_error_naming_them(linear, bad, kw, match):
    c, data = linear
    data = {"missing": {"X": data["X"]}, "misspelled": {"X": data["X"], "T": data["t"]}, "empty": {},
            "not a dict": [data["X"], data["t"]], "lengths": {"X": data["X"], "t": data["t"][:-1]},
            "ok": data}[bad]
    with pytest.raises(TrainingError, match=match) as info:
        train(c, fresh(), data, epochs=kw.pop("epochs", 1), log=None, **kw)
    assert isinstance(info.value, gradc.GradcError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value) and "(" in str(info.value).rsplit(")", 1)[0]     # one line, with a hint


def test_evaluate_checks_its_data_too(linear):
    c, data = linear
    with pytest.raises(TrainingError, match=r"evaluate: data key 'x' .*did you mean 'X'"):
        evaluate(c, fresh(), {"x": data["X"], "t": data["t"]})


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizers_by_name_are_the_classes(linear, name):
    c, data = linear
    lr = 0.01 if name != "sgd" else 0.05
    by_name = train(c, fresh(), data, epochs=3, batch_size=16, optimizer=name.upper(), lr=lr, log=None)
    by_object = train(c, fresh(), data, epochs=3, batch_size=16, optimizer=OPTIMIZERS[name](lr), log=None)
    assert by_name == by_object and by_name.lr == [lr] * 3


def test_adam_by_name_with_its_default_rate(linear):
    c, data = linear
    h = train(c, fresh(), data, epochs=2, optimizer="adam", log=None)
    assert h.lr == [Adam().lr] * 2


def test_lr_schedules(linear, capsys):
    c, data = linear
    opt = SGD(0.08)
    h = train(c, fresh(), data, epochs=6, batch_size=16, optimizer=opt, lr_schedule="step", progress=False)
    assert h.lr == [0.08, 0.08, 0.04, 0.04, 0.02, 0.02]
    assert opt.lr == 0.08                                    # put back after training
    assert "lr 0.04" in capsys.readouterr().out
    h = train(c, fresh(), data, epochs=4, optimizer="sgd", lr=0.1, lr_schedule=CosineLR(), log=None)
    np.testing.assert_allclose(h.lr, [0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2, 0.05,
                                      0.1 * (1 + math.cos(3 * math.pi / 4)) / 2])
    h = train(c, fresh(), data, epochs=5, optimizer="sgd", lr=0.1, lr_schedule=StepLR(every=2, gamma=0.1),
              log=None)
    np.testing.assert_allclose(h.lr, [0.1, 0.1, 0.01, 0.01, 0.001])
    h = train(c, fresh(), data, epochs=3, optimizer="sgd", lr=0.1, lr_schedule=lambda e, n: 1 / e, log=None)
    np.testing.assert_allclose(h.lr, [0.1, 0.05, 0.1 / 3])


def test_weight_decay_is_the_gradient_of_the_l2_term(linear):
    """weight_decay=λ trains as if the spec's loss had (λ/2)·Σw² added (the bias excluded by a dict)."""
    c, data = linear
    lam = 0.3
    decayed = c.wrt and compiled(LINEAR.replace('loss = "mse(X @ w + b, t)"',
                                                f'loss = "mse(X @ w + b, t) + {lam / 2} * sum(w ** 2)"'))
    p1, p2 = fresh(), fresh()
    train(c, p1, data, epochs=4, batch_size=16, optimizer="sgd", lr=0.05, weight_decay={"w": lam}, log=None)
    train(decayed, p2, data, epochs=4, batch_size=16, optimizer="sgd", lr=0.05, log=None)
    np.testing.assert_allclose(p1["w"], p2["w"], rtol=1e-12)
    assert p1["b"] == pytest.approx(p2["b"], rel=1e-12)
    p3 = fresh()
    train(c, p3, data, epochs=4, batch_size=16, optimizer="sgd", lr=0.05, log=None)
    assert np.linalg.norm(p1["w"]) < np.linalg.norm(p3["w"])        # decay shrinks the weights


def test_shuffling_follows_the_seed(linear):
    c, data = linear
    runs = [train(c, fresh(), data, epochs=3, batch_size=8, optimizer="sgd", lr=0.05, seed=s, shuffle=sh,
                  log=None) for s, sh in ((1, True), (1, True), (2, True), (1, False), (2, False))]
    assert runs[0] == runs[1] and runs[0] != runs[2]        # the seed fixes the order
    assert runs[3] == runs[4] and runs[3] != runs[0]        # shuffle=False: in order, whatever the seed


def test_history_is_plottable(linear):
    c, data = linear
    h = train(c, fresh(), data, epochs=3, batch_size=16, optimizer="sgd", lr=0.05, val_data=data, log=None)
    d = h.as_dict()
    assert d["epoch"] == h.epochs == [1, 2, 3]
    assert d["loss"] == list(h) and d["val_loss"] == h.val_loss and d["lr"] == [0.05] * 3
    assert set(d) == {"epoch", "loss", "val_loss", "lr", "examples_per_second"}
    assert all(len(v) == 3 for v in d.values())


def test_checkpoint_round_trip_and_refusal(linear, tmp_path):
    c, data = linear
    p = fresh()
    train(c, p, data, epochs=3, batch_size=16, optimizer="sgd", lr=0.05, log=None)
    path = save_checkpoint(tmp_path / "lin", c, p, epoch=3)
    assert path == tmp_path / "lin.npz" and path.exists()
    back, extra = load_checkpoint(path, c, with_extra=True)
    assert extra == {"epoch": 3} and set(back) == {"w", "b"}
    np.testing.assert_array_equal(back["w"], p["w"])
    assert type(back["b"]) is float and back["b"] == p["b"]
    assert evaluate(c, back, data) == evaluate(c, p, data)
    other = compiled(LINEAR.replace('name = "linear_regression"', 'name = "other"'))
    with pytest.raises(CheckpointError, match=r"lin.npz was saved from another model .*hash "
                                              + c.module.SOURCE_HASH + r"\), not from .*hash "
                                              + other.module.SOURCE_HASH):
        load_checkpoint(path, other)
    np.savez(tmp_path / "plain.npz", w=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a gradc checkpoint"):
        load_checkpoint(tmp_path / "plain.npz", c)
    with pytest.raises(CheckpointError, match="'W' not an argument"):
        save_checkpoint(tmp_path / "bad.npz", c, {"W": np.zeros(3)})
