"""Output buffers: ``value_and_grad(*args, out=grads)`` and the generated
``value_and_grad_into`` write the gradients into the arrays passed (checked
against central finite differences), return those very arrays, and reject
buffers of the wrong shape, dtype or layout, or that alias an argument."""
from __future__ import annotations

import numpy as np
import pytest

import gradc
from gradc.runtime import gradcheck

MLP = """\
[model]
name = "into_mlp"
[inputs]
X = { shape = ["batch", 5] }
y = { shape = ["batch"], dtype = "int64" }
[params]
W1 = { shape = [5, 7], init = "glorot" }
b1 = { shape = [7] }
W2 = { shape = [7, 3], init = "glorot" }
b2 = { shape = [3] }
[graph]
h = "tanh(X @ W1 + b1)"
s = "sigmoid(h @ W2 + b2)"
loss = "mean(softmax_cross_entropy(exp(s), y))"
[output]
value = "loss"
"""

MIXED = """\
[model]
name = "into_mixed"
[inputs]
x = { shape = [4] }
[params]
a = { shape = [] }
W = { shape = [4, 4] }
[graph]
q = "W @ x"
f = "sum(q ** 2) * a + a ** 2"
[output]
value = "f"
wrt = ["W", "a", "x"]
"""


def _central(m, args, name, h=1e-6):
    """The central-difference gradient w.r.t. argument ``name`` (every element)."""
    i = m.arg_names.index(name)
    base = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]
    if not isinstance(base[i], np.ndarray):
        up, dn = list(base), list(base)
        up[i], dn[i] = base[i] + h, base[i] - h
        return (m.forward(*up) - m.forward(*dn)) / (2 * h)
    g = np.zeros_like(base[i])
    for k in np.ndindex(base[i].shape):
        up, dn = [a.copy() if isinstance(a, np.ndarray) else a for a in base], \
                 [a.copy() if isinstance(a, np.ndarray) else a for a in base]
        up[i][k] += h
        dn[i][k] -= h
        g[k] = (m.forward(*up) - m.forward(*dn)) / (2 * h)
    return g


def _mlp_args(m):
    rng = np.random.default_rng(0)
    p = m.init_params(dims={"batch": 6}, seed=1)
    return (rng.standard_normal((6, 5)), rng.integers(0, 3, 6).astype(np.int64),
            p["W1"], rng.standard_normal(7) * 0.1, p["W2"], rng.standard_normal(3) * 0.1)


def test_out_buffers_hold_the_gradients_and_are_returned():
    m = gradc.compile(MLP)
    args = _mlp_args(m)
    bufs = tuple(np.full_like(args[m.arg_names.index(w)], np.nan) for w in m.wrt)
    value, grads = m.value_and_grad(*args, out=bufs)
    assert all(g is b for g, b in zip(grads, bufs))
    ref_value, ref_grads = m.value_and_grad(*args)
    assert value == ref_value
    for w, g, r in zip(m.wrt, grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(g, _central(m, args, w), rtol=1e-6, atol=1e-8)
    assert gradcheck(m, *args).worst < 1e-6
    # called again with other inputs, the same buffers are overwritten (nothing accumulates)
    args2 = (args[0] * 0.5,) + args[1:]
    _, grads2 = m.value_and_grad(*args2, out=bufs)
    _, ref2 = m.value_and_grad(*args2)
    for g, r in zip(grads2, ref2):
        np.testing.assert_allclose(g, r, rtol=1e-13, atol=1e-15)


def test_raw_into_writes_the_arrays_and_returns_the_value():
    m = gradc.compile(MLP)
    args = _mlp_args(m)
    bufs = [np.empty_like(args[m.arg_names.index(w)]) for w in m.wrt]
    ptrs = [b.ctypes.data for b in bufs]
    value = m.raw.value_and_grad_into(*args, *bufs)
    assert isinstance(value, float)
    assert [b.ctypes.data for b in bufs] == ptrs
    ref_value, ref_grads = m.raw.value_and_grad(*args)
    assert value == ref_value
    for b, r in zip(bufs, ref_grads):
        np.testing.assert_allclose(b, r, rtol=1e-13, atol=1e-15)
    assert "np.dot(" in m.source and "W1_grad)" in m.source  # the weight gradients: BLAS writes them in place


def test_scalar_and_array_gradients_mixed():
    m = gradc.compile(MIXED)
    rng = np.random.default_rng(3)
    args = {"x": rng.standard_normal(4), "a": 0.7, "W": rng.standard_normal((4, 4))}
    args = tuple(args[n] for n in m.arg_names)
    bufs = tuple(None if w == "a" else np.empty_like(args[m.arg_names.index(w)]) for w in m.wrt)
    value, grads = m.value_and_grad(*args, out=bufs)
    assert grads[0] is bufs[0] and grads[2] is bufs[2] and isinstance(grads[1], float)
    for w, g in zip(m.wrt, grads):
        np.testing.assert_allclose(g, _central(m, args, w), rtol=1e-6, atol=1e-8)
    raw = m.raw.value_and_grad_into(*args, bufs[0], bufs[2])
    assert raw[0] == value and raw[1] == (grads[1],)


def test_bad_buffers_are_rejected():
    m = gradc.compile(MLP)
    args = _mlp_args(m)
    good = [np.empty_like(args[m.arg_names.index(w)]) for w in m.wrt]
    with pytest.raises(gradc.ArgumentError, match="tuple of 4"):
        m.value_and_grad(*args, out=good[:3])
    for bad in (np.empty((7, 5)), np.empty((5, 7), np.float32), np.empty((7, 5)).T, args[2]):
        with pytest.raises(gradc.ArgumentError, match="W1"):
            m.value_and_grad(*args, out=[bad] + good[1:])
    with pytest.raises(gradc.ArgumentError, match="shares memory"):
        m.value_and_grad(*args, out=[good[0], good[1], good[2], good[1][:3]])


def test_float32_model_writes_float32_buffers():
    spec = MIXED.replace('x = { shape = [4] }', 'x = { shape = [4], dtype = "float32" }') \
                .replace('a = { shape = [] }', 'a = { shape = [], dtype = "float32" }') \
                .replace('W = { shape = [4, 4] }', 'W = { shape = [4, 4], dtype = "float32" }') \
                .replace('name = "into_mixed"', 'name = "into_mixed_f32"')
    m = gradc.compile(spec)
    rng = np.random.default_rng(4)
    args = {"x": rng.standard_normal(4).astype(np.float32), "a": np.float32(0.7),
            "W": rng.standard_normal((4, 4)).astype(np.float32)}
    args = tuple(args[n] for n in m.arg_names)
    bufs = tuple(None if w == "a" else np.empty_like(args[m.arg_names.index(w)]) for w in m.wrt)
    value, grads = m.value_and_grad(*args, out=bufs)
    ref_value, ref = m.value_and_grad(*args)
    assert value == ref_value and grads[0] is bufs[0] and grads[2] is bufs[2]
    for g, r in zip(grads, ref):
        if isinstance(g, np.ndarray):
            assert g.dtype == np.float32
        np.testing.assert_array_equal(g, r)      # a scalar gradient comes back as value_and_grad gives it
