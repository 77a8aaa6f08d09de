"""Hand-written fused Numba: forward and backward in one ``@njit`` function per case.

Loops for everything elementwise (fused with the reductions and the adjoint),
BLAS (``@`` inside njit) for the matrix products. This is the practical lower
bound for a code generator that targets Numba. No ``fastmath`` (gradc does not
use it either), no on-disk cache: the first call includes the JIT compile.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from benchmarks.worker import Impl, NotApplicable

njit = numba.njit(cache=False, error_model="numpy")


def setup(threads: int) -> None:
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def thread_info() -> dict:
    return {"numba_threads": numba.get_num_threads()}


# ---------------------------------------------------------------- scalar seeds

@njit
def add_mul_vg(x, y, z):
    q = x + y
    return q * z, (z, z, q)


@njit
def add_mul_f(x, y, z):
    return (x + y) * z


@njit
def sigmoid_vg(x0, x1, w0, w1, w2):
    f = 1.0 / (1.0 + math.exp(-(w0 * x0 + w1 * x1 + w2)))
    d = f * (1.0 - f)
    return f, (x0 * d, x1 * d, d, w0 * d, w1 * d)


@njit
def sigmoid_f(x0, x1, w0, w1, w2):
    return 1.0 / (1.0 + math.exp(-(w0 * x0 + w1 * x1 + w2)))


# ---------------------------------------------------------------- ||W x||^2

@njit
def norm_wx_vg(x, W):
    n, m = W.shape
    q = W @ x
    f = 0.0
    gW = np.empty((n, m))
    gx = np.zeros(m)
    for i in range(n):
        qi = q[i]
        f += qi * qi
        t = 2.0 * qi
        for j in range(m):
            gW[i, j] = t * x[j]
            gx[j] += t * W[i, j]
    return f, (gW, gx)


@njit
def norm_wx_f(x, W):
    q = W @ x
    f = 0.0
    for i in range(q.shape[0]):
        f += q[i] * q[i]
    return f


# ---------------------------------------------------------------- MLPs

@njit
def _ce_inplace(S, b, y):
    """Adds the bias to S, returns the mean cross-entropy and overwrites S with dloss/dS."""
    n, k = S.shape
    loss = 0.0
    inv_n = 1.0 / n
    for i in range(n):
        m = -np.inf
        for j in range(k):
            S[i, j] += b[j]
            if S[i, j] > m:
                m = S[i, j]
        sy = S[i, y[i]]
        z = 0.0
        for j in range(k):
            e = math.exp(S[i, j] - m)
            z += e
            S[i, j] = e
        loss += m + math.log(z) - sy
        for j in range(k):
            S[i, j] = S[i, j] / z * inv_n
        S[i, y[i]] -= inv_n
    return loss * inv_n


@njit
def _ce_value(S, b, y):
    n, k = S.shape
    loss = 0.0
    for i in range(n):
        m = -np.inf
        for j in range(k):
            v = S[i, j] + b[j]
            if v > m:
                m = v
        z = 0.0
        for j in range(k):
            z += math.exp(S[i, j] + b[j] - m)
        loss += m + math.log(z) - (S[i, y[i]] + b[y[i]])
    return loss / n


@njit
def mlp_digits_vg(X, y, W1, b1, W2, b2):
    H = X @ W1
    n, h = H.shape
    for i in range(n):
        for j in range(h):
            H[i, j] = math.tanh(H[i, j] + b1[j])
    S = H @ W2
    loss = _ce_inplace(S, b2, y)          # S is now dS
    dW2 = H.T @ S
    db2 = np.zeros(S.shape[1])
    for i in range(n):
        for j in range(S.shape[1]):
            db2[j] += S[i, j]
    dH = S @ W2.T
    db1 = np.zeros(h)
    for i in range(n):
        for j in range(h):
            t = H[i, j]
            d = dH[i, j] * (1.0 - t * t)
            dH[i, j] = d
            db1[j] += d
    dW1 = X.T @ dH
    return loss, (dW1, db1, dW2, db2)


@njit
def mlp_digits_f(X, y, W1, b1, W2, b2):
    H = X @ W1
    n, h = H.shape
    for i in range(n):
        for j in range(h):
            H[i, j] = math.tanh(H[i, j] + b1[j])
    return _ce_value(H @ W2, b2, y)


@njit
def _bias_relu(Z, b):
    n, h = Z.shape
    for i in range(n):
        for j in range(h):
            v = Z[i, j] + b[j]
            Z[i, j] = v if v > 0.0 else 0.0


@njit
def _relu_back(dH, H, db):
    """dH *= (H > 0) in place (H is the ReLU output), db = column sums of the result."""
    n, h = dH.shape
    for i in range(n):
        for j in range(h):
            d = dH[i, j] if H[i, j] > 0.0 else 0.0
            dH[i, j] = d
            db[j] += d


@njit
def mlp_784_vg(X, y, W1, b1, W2, b2, W3, b3):
    H1 = X @ W1
    _bias_relu(H1, b1)
    H2 = H1 @ W2
    _bias_relu(H2, b2)
    S = H2 @ W3
    loss = _ce_inplace(S, b3, y)
    dW3 = H2.T @ S
    db3 = np.zeros(S.shape[1])
    for i in range(S.shape[0]):
        for j in range(S.shape[1]):
            db3[j] += S[i, j]
    dH2 = S @ W3.T
    db2 = np.zeros(H2.shape[1])
    _relu_back(dH2, H2, db2)
    dW2 = H1.T @ dH2
    dH1 = dH2 @ W2.T
    db1 = np.zeros(H1.shape[1])
    _relu_back(dH1, H1, db1)
    dW1 = X.T @ dH1
    return loss, (dW1, db1, dW2, db2, dW3, db3)


@njit
def mlp_784_f(X, y, W1, b1, W2, b2, W3, b3):
    H1 = X @ W1
    _bias_relu(H1, b1)
    H2 = H1 @ W2
    _bias_relu(H2, b2)
    return _ce_value(H2 @ W3, b3, y)


# ---------------------------------------------------------------- Rosenbrock

@njit
def rosen_vg(x):
    n = x.shape[0]
    g = np.zeros(n)
    f = 0.0
    for i in range(n - 1):
        t = x[i + 1] - x[i] * x[i]
        u = 1.0 - x[i]
        f += 100.0 * t * t + u * u
        g[i] += -400.0 * t * x[i] - 2.0 * u
        g[i + 1] += 200.0 * t
    return f, (g,)


@njit
def rosen_f(x):
    f = 0.0
    for i in range(x.shape[0] - 1):
        t = x[i + 1] - x[i] * x[i]
        u = 1.0 - x[i]
        f += 100.0 * t * t + u * u
    return f


# ---------------------------------------------------------------- the big expression (loop over k)

@njit
def big_vg(x, y, z, a, b, c, kk):
    f = 0.0
    gx = 0.0
    gy = 0.0
    gz = 0.0
    xy = x * y
    z2 = z * z
    for k in range(a.shape[0]):
        u = a[k] * x + b[k] * y
        e = math.exp(-c[k] * z2)
        s = math.sin(u)
        t = math.tanh(xy - kk[k] / 100.0)
        f += s * e + t
        ce = math.cos(u) * e
        dt = 1.0 - t * t
        gx += ce * a[k] + dt * y
        gy += ce * b[k] + dt * x
        gz -= 2.0 * c[k] * z * s * e
    return f, (gx, gy, gz)


@njit
def big_f(x, y, z, a, b, c, kk):
    f = 0.0
    xy = x * y
    z2 = z * z
    for k in range(a.shape[0]):
        f += math.sin(a[k] * x + b[k] * y) * math.exp(-c[k] * z2) + math.tanh(xy - kk[k] / 100.0)
    return f


_TABLE = {
    "add_mul": (add_mul_vg, add_mul_f),
    "sigmoid_neuron": (sigmoid_vg, sigmoid_f),
    "norm_wx": (norm_wx_vg, norm_wx_f),
    "mlp_digits": (mlp_digits_vg, mlp_digits_f),
    "mlp_784": (mlp_784_vg, mlp_784_f),
    "rosenbrock": (rosen_vg, rosen_f),
}


def build(case, inputs) -> Impl:
    if case.group == "scaling":
        raise NotApplicable("hand-written loop: its compile time does not depend on the term count")
    if "K" in case.params:
        vg, f = big_vg, big_f
        full = {**case.consts, **inputs}
        args = tuple(full[n] for n in ("x", "y", "z", "a", "b", "c", "kk"))
    else:
        key = next((k for k in _TABLE if case.name == k or case.name.startswith(k + "_")), None)
        if key is None:
            raise NotApplicable("no hand-written Numba version")
        vg, f = _TABLE[key]
        args = tuple(inputs.values())
    wrt = case.wrt

    def unpack(out):
        v, g = out
        return float(v), {n: np.asarray(x) for n, x in zip(wrt, g)}

    return Impl(vg, f, args, unpack)
