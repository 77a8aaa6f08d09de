"""Elementwise fusion (gradc.backend.schedule, printed by gradc.backend.emit): chains of elementwise statements and their
adjoints over arrays of one shape render as one loop nest, sums accumulate in it, and a slice's
adjoint writes into one zero array. The fused module must give the unfused module's value and
gradients (same math; only the order of summation may differ) and agree with central finite
differences; the structure of the generated code is checked, not its speed.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradc
from gradc.pipeline import build

from conftest import central


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "cache"))


def both(src, tmp_path, tag):
    """(fused, unfused) compiled modules of ``src``."""
    out = []
    for fuse in (True, False):
        out.append(gradc.compile(src, out=tmp_path / f"{tag}_{int(fuse)}.py", options=gradc.Options(fuse=fuse)))
    return out


def body(code: str, fn: str = "value_and_grad") -> str:
    """The text of ``fn``; for ``value_and_grad``, of the functions it runs: the forward sweep
    (``_forward_sweep``), the adjoint sweep (``value_and_grad_into`` when a gradient is an array)
    and ``value_and_grad`` itself."""
    fns = ["_forward_sweep", fn, "value_and_grad_into"] if fn == "value_and_grad" else [fn]
    return "\n".join(code.split(f"def {f}(")[1].split("\n\n\n")[0] for f in fns if f"def {f}(" in code)


def only(code: str, fn: str) -> str:
    """The text of the function ``fn`` alone (``value_and_grad``: its adjoint sweep)."""
    return code.split(f"def {fn}(")[1].split("\n\n\n")[0]




def check(src, args, tmp_path, tag, rtol=1e-12, fd_rtol=1e-6):
    fused, plain = both(src, tmp_path, tag)
    v, g = fused.value_and_grad(*args)
    v0, g0 = plain.value_and_grad(*args)
    assert v == pytest.approx(v0, rel=rtol, abs=rtol)
    assert fused.forward(*args) == pytest.approx(v0, rel=rtol, abs=rtol)
    for a, b in zip(g, g0):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, np.max(np.abs(b))))
    index = {n: k for k, n in enumerate(fused.arg_names)}
    for name, gi in zip(fused.wrt, g):
        fd = central(fused.forward, args, index[name])
        np.testing.assert_allclose(gi, fd, rtol=fd_rtol, atol=fd_rtol * max(1.0, np.max(np.abs(fd))))
    return fused, plain


RANK1 = """
[model]
name = "fuse_rank1"
[inputs]
x = { shape = [50] }
y = { shape = [50] }
[params]
a = { shape = [] }
[graph]
u = "tanh(a * x + y) * exp(-x * x) + sigmoid(x - y) + relu(x) * abs(y)"
f = "sum(u * u + 0.5 * x)"
[output]
value = "f"
wrt = ["x", "y", "a"]
"""


def test_rank1_chain_is_one_loop_and_matches(tmp_path):
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(50), rng.standard_normal(50), 0.7]
    fused, plain = check(RANK1, args, tmp_path, "r1")
    vg = body(fused.source)
    assert vg.count("for _i in range(50):") == 1          # both sweeps, the sum and its adjoint: one loop
    assert "_tanh1(" in vg and "_exp1(" in vg and "_sigmoid1(" in vg   # the vectorizable element kernels
    assert "_vtanh(" not in vg
    # the loop calls the element kernels, so it stays vectorizable: its sums are taken after it
    assert "np.sum(_a_" in vg and " += " not in vg
    assert "for _i in" not in body(plain.source)


MLP = """
[model]
name = "fuse_mlp"
[inputs]
X = { shape = ["batch", 5] }
[params]
W = { shape = [5, 4] }
b = { shape = [4] }
[graph]
h = "tanh(X @ W + b)"
loss = "sum(h * h) + sum(relu(h - 0.1))"
[output]
value = "loss"
"""


def test_rank2_broadcast_and_bias_gradient(tmp_path):
    rng = np.random.default_rng(2)
    args = [rng.standard_normal((7, 5)), rng.standard_normal((5, 4)) * 0.5, rng.standard_normal(4) * 0.1]
    fused, _ = check(MLP, args, tmp_path, "mlp")
    vg = body(fused.source)
    assert "for _i in range(X.shape[0]):" in vg               # a symbolic dim: the argument's size
    assert "for _j in range(4):" in vg
    assert "+ b[_j]" in vg                                    # the bias broadcasts along the rows
    assert "b_grad[_j] += " in vg             # its gradient: a sum over the rows, in the loop, into the result
    assert "_sum_axis(" not in vg
    # another batch size runs the same module
    args2 = [rng.standard_normal((3, 5))] + args[1:]
    v, g = fused.value_and_grad(*args2)
    for gi, fd in zip(g, [central(fused.forward, args2, k) for k in (1, 2)]):
        np.testing.assert_allclose(gi, fd, rtol=1e-6, atol=1e-8)


ROSEN = """
[model]
name = "fuse_rosen"
[inputs]
x = { shape = [40] }
[graph]
t = "x[1:] - x[:-1] ** 2"
f = "sum(100 * t ** 2 + (1 - x[:-1]) ** 2)"
[output]
value = "f"
wrt = ["x"]
"""


def test_slices_scatter_into_one_gradient_array(tmp_path):
    x = np.random.default_rng(3).uniform(-1.5, 1.5, 40)
    fused, _ = check(ROSEN, [x], tmp_path, "rosen", fd_rtol=1e-5)
    vg = body(fused.source)
    assert only(fused.source, "value_and_grad").count("for _i in range(39):") == 1
    assert "x_grad.fill(0.0)" in vg and "x_grad[_i + 1] += " in vg   # scattered into the result array
    assert "np.concatenate" not in vg
    g = 2 * x.copy()
    t = x[1:] - x[:-1] ** 2
    ref = np.zeros_like(x)
    ref[:-1] = -400.0 * t * x[:-1] - 2.0 * (1 - x[:-1])
    ref[1:] += 200.0 * t
    np.testing.assert_allclose(fused.value_and_grad(x)[1][0], ref, rtol=1e-12, atol=1e-12)
    del g


SUMS = """
[model]
name = "fuse_sums"
[inputs]
X = { shape = [6, 3] }
[params]
c = { shape = [3] }
s = { shape = [] }
[graph]
z = "X * c + s"
loss = "sum(sum(where(z > 0, z * z, -z), axis=0) * c) + mean(z) * s"
[output]
value = "loss"
"""


def test_sums_accumulate_in_a_loop_without_kernels(tmp_path):
    src = RANK1.replace("tanh(a * x + y) * exp(-x * x) + sigmoid(x - y)", "sin(a * x + y) * x")
    rng = np.random.default_rng(7)
    fused, _ = check(src, [rng.standard_normal(50), rng.standard_normal(50), 0.7], tmp_path, "acc")
    vg = body(fused.source)
    assert "f += " in vg and "np.sum(" not in vg                 # a C-library call: no vectorizing to keep


def test_reductions_broadcast_scalars_and_where(tmp_path):
    rng = np.random.default_rng(4)
    args = [rng.standard_normal((6, 3)), rng.standard_normal(3), 0.3]
    check(SUMS, args, tmp_path, "sums")


F32 = """
[model]
name = "fuse_f32"
[inputs]
X = { shape = ["batch", 8], dtype = "float32" }
[params]
b = { shape = [8], dtype = "float32" }
[graph]
h = "tanh(X + b) * sigmoid(X) + exp(-X * X)"
loss = "sum(h * h)"
[output]
value = "loss"
"""


def test_float32_stays_float32(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((9, 8)).astype(np.float32)
    b = (0.1 * rng.standard_normal(8)).astype(np.float32)
    fused, plain = both(F32, tmp_path, "f32")
    vg = body(fused.source)
    assert "_tanh1(" in vg and "float64" not in vg
    assert "b_grad.fill(np.float32(0.0))" in vg               # float32 literals
    assert "np.empty((X.shape[0], 8), X.dtype)" in vg          # float32 arrays: an operand's dtype
    assert vg.count("for _i in range(X.shape[0]):") == 1     # both sweeps and the bias gradient: one loop
    v, (gb,) = fused.value_and_grad(X, b)
    v0, (gb0,) = plain.value_and_grad(X, b)
    assert float(np.float32(v)) == v                          # a float32 result (Numba boxes it as a float)
    assert gb.dtype == np.float32
    assert v == pytest.approx(v0, rel=1e-5)
    np.testing.assert_allclose(gb, gb0, rtol=1e-4, atol=1e-5)
    # against a float64 evaluation
    X64, b64 = X.astype(np.float64), b.astype(np.float64)
    h = np.tanh(X64 + b64) / (1 + np.exp(-X64)) + np.exp(-X64 * X64)
    assert v == pytest.approx(float(np.sum(h * h)), rel=1e-5)
    # the same code run on float64 arguments computes in float64 (gradc.runtime.gradcheck relies on it)
    v64, (gb64,) = fused.raw.value_and_grad(X64, b64)
    assert v64 == pytest.approx(float(np.sum(h * h)), rel=1e-13)
    assert gb64.dtype == np.float64
    ref = plain.raw.value_and_grad(X64, b64)
    np.testing.assert_allclose(gb64, ref[1][0], rtol=1e-12)
    sig = [s for s in fused.raw.value_and_grad.nopython_signatures if "float32" in str(s.args[0])][0]
    assert "float64" not in str(sig.return_type), sig.return_type


def test_value_and_grad_into_and_output_deterministic(tmp_path):
    a1, a2 = build(MLP), build(MLP)
    assert a1.code == a2.code                                 # byte-identical for the same input
    assert build(MLP, fuse=False).code != a1.code and build(MLP, fuse=False).key != a1.key
    assert build(MLP, options=gradc.Options(fuse=False)).code == build(MLP, fuse=False).code
    rng = np.random.default_rng(6)
    args = [rng.standard_normal((7, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)]
    fused, _ = both(MLP, tmp_path, "into")
    v, g = fused.value_and_grad(*args)
    outs = [np.empty_like(a) for a in args[1:]]
    v2 = fused.raw.value_and_grad_into(*args, *outs)
    assert v2 == v
    for a, b in zip(outs, g):
        np.testing.assert_array_equal(a, b)


TWO_LAYER = """
[model]
name = "fuse_reuse"
[inputs]
X = { shape = ["batch", 6] }
[params]
W1 = { shape = [6, 5] }
b1 = { shape = [5] }
W2 = { shape = [5, 3] }
[graph]
h = "relu(X @ W1 + b1)"
o = "h @ W2"
loss = "sum(o * o)"
[output]
value = "loss"
"""


def test_loops_reuse_dead_product_buffers_but_never_arguments(tmp_path):
    """A loop's stored value may go into a dead matrix-product result it reads (in place), and
    dead arrays are released after their last loop; arguments, outputs and live names never are."""
    import re
    rng = np.random.default_rng(5)
    args = [rng.standard_normal((4, 6)), rng.standard_normal((6, 5)), rng.standard_normal(5) * 0.1,
            rng.standard_normal((5, 3))]
    fused, _ = check(TWO_LAYER, args, tmp_path, "reuse")
    vg = body(fused.source)
    released = re.findall(r"^\s*(\w+) = np\.empty\(\(0", vg, re.M)
    stored_into = re.findall(r"^\s*(\w+)\[_i, _j\] = ", vg, re.M)
    assert released or any(not n.startswith("_a_") for n in stored_into), vg   # the mechanism is used
    for name in released + stored_into:
        assert name not in fused.arg_names, f"{name} is an argument: {vg}"
    kept = [a.copy() for a in args]
    fused.raw.value_and_grad(*args)
    for a, k in zip(args, kept):
        np.testing.assert_array_equal(a, k)                # the arguments are untouched


def test_unfused_options_have_their_own_cache_entry_and_warm_start():
    """Options(fuse=False) is part of both cache keys: its module is another file, and a second
    compile of it takes the warm-start path (no pipeline run) and loads that same unfused module."""
    unfused = gradc.Options(fuse=False)
    fused = gradc.compile(MLP)
    plain = gradc.compile(MLP, options=unfused)
    assert plain.path != fused.path and plain.source != fused.source
    again = gradc.compile(MLP, options=unfused)
    assert "cache lookup" in again.timings and again.path == plain.path
    assert "cache lookup" in gradc.compile(MLP).timings and gradc.compile(MLP).path == fused.path


def test_cli_option_flags(tmp_path, capsys):
    """``gradc show --stage code --no-fuse`` prints the unfused module (the CLI builds an Options)."""
    from gradc.cli import main

    spec = tmp_path / "fuse_mlp.toml"
    spec.write_text(MLP)
    assert main(["show", str(spec), "--stage", "code", "--no-fuse"]) == 0
    assert capsys.readouterr().out == build(spec, options=gradc.Options(fuse=False)).code.rstrip("\n") + "\n"
    assert main(["show", str(spec), "--stage", "code", "--no-comments"]) == 0
    assert capsys.readouterr().out == build(spec, comments=False).code.rstrip("\n") + "\n"
    assert build(spec, comments=False).code != build(spec).code
