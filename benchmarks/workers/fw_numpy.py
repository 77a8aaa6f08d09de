"""Hand-written NumPy: the cases' float64 reference implementations themselves.

Forward-only uses the same code without the backward part where that is a
separate function, so the cost ratio compares like with like.
"""
from __future__ import annotations

import math

import numpy as np

from benchmarks.worker import Impl


def setup(threads: int) -> None:
    pass


def _fwd(case):
    name = case.name
    if name == "add_mul":
        return lambda x, y, z: (x + y) * z
    if name == "sigmoid_neuron":
        return lambda x0, x1, w0, w1, w2: 1.0 / (1.0 + math.exp(-(w0 * x0 + w1 * x1 + w2)))
    if name.startswith("norm_wx"):
        def f(x, W):
            q = W @ x
            return float(q @ q)
        return f
    if name == "mlp_digits":
        from benchmarks.cases import _softmax_ce

        def f(X, y, W1, b1, W2, b2):
            return _softmax_ce(np.tanh(X @ W1 + b1) @ W2 + b2, y)[0]
        return f
    if name == "mlp_784":
        def f(X, y, W1, b1, W2, b2, W3, b3):
            h1 = np.maximum(X @ W1 + b1, 0.0)
            h2 = np.maximum(h1 @ W2 + b2, 0.0)
            s = h2 @ W3 + b3
            m = s.max(axis=1, keepdims=True)
            lse = (m + np.log(np.exp(s - m).sum(axis=1, keepdims=True)))[:, 0]
            return float(np.mean(lse - s[np.arange(s.shape[0]), y]))
        return f
    if name.startswith("rosenbrock"):
        def f(x):
            t = x[1:] - x[:-1] ** 2
            u = 1.0 - x[:-1]
            return float(np.sum(100.0 * t * t + u * u))
        return f
    if "K" in case.params:
        def f(x, y, z, a, b, c, kk):
            return float(np.sum(np.sin(a * x + b * y) * np.exp(-c * z * z) + np.tanh(x * y - kk / 100.0)))
        return f
    return None


def _vg_add_mul(x, y, z):
    q = x + y
    return q * z, (z, z, q)


def _vg_sigmoid(x0, x1, w0, w1, w2):
    f = 1.0 / (1.0 + math.exp(-(w0 * x0 + w1 * x1 + w2)))
    d = f * (1.0 - f)
    return f, (x0 * d, x1 * d, d, w0 * d, w1 * d)


_SCALAR = {"add_mul": (_vg_add_mul, ("x", "y", "z")), "sigmoid_neuron": (_vg_sigmoid, ("w0", "w1", "w2", "x0", "x1"))}


def build(case, inputs) -> Impl:
    if case.name in _SCALAR:   # plain Python floats and math: no NumPy call is faster here
        fn, wrt = _SCALAR[case.name]
        return Impl(fn, _fwd(case), tuple(inputs.values()),
                    lambda out: (float(out[0]), dict(zip(wrt, out[1]))))
    names = list(inputs)
    if "K" in case.params:   # both forms of the big expression: coefficients passed as arrays
        names = ["x", "y", "z", "a", "b", "c", "kk"]
        full = {**case.consts, **inputs}
        args = tuple(full[n] for n in names)
    else:
        args = tuple(inputs[n] for n in names)

    def vg(*a):
        return case.reference_fn(case, dict(zip(names, a)))

    def unpack(out):
        v, g = out
        return float(v), {k: np.asarray(x) for k, x in g.items()}

    return Impl(vg, _fwd(case), args, unpack)
