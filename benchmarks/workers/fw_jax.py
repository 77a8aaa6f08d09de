"""JAX: ``jax.jit(jax.value_and_grad(f, argnums=wrt))`` with x64 enabled, results blocked on.

Thread count: the parent sets ``XLA_FLAGS`` before this process starts
(``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` for one
thread). The first call includes tracing and XLA compilation.
"""
from __future__ import annotations

import numpy as np

from benchmarks.worker import Impl, NotApplicable


def setup(threads: int) -> None:
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")


def thread_info() -> dict:
    import jax
    return {"jax_devices": [str(d) for d in jax.devices()]}


def _ce(s, y):
    import jax
    import jax.numpy as jnp
    lse = jax.scipy.special.logsumexp(s, axis=1)
    return jnp.mean(lse - jnp.take_along_axis(s, y[:, None], axis=1)[:, 0])


def _functions():
    import jax.numpy as jnp

    def add_mul(x, y, z):
        return (x + y) * z

    def sigmoid(x0, x1, w0, w1, w2):
        return 1.0 / (1.0 + jnp.exp(-(w0 * x0 + w1 * x1 + w2)))

    def norm_wx(x, W):
        q = W @ x
        return jnp.sum(q * q)

    def mlp_digits(X, y, W1, b1, W2, b2):
        return _ce(jnp.tanh(X @ W1 + b1) @ W2 + b2, y)

    def mlp_784(X, y, W1, b1, W2, b2, W3, b3):
        h1 = jnp.maximum(X @ W1 + b1, 0.0)
        h2 = jnp.maximum(h1 @ W2 + b2, 0.0)
        return _ce(h2 @ W3 + b3, y)

    def rosen(x):
        t = x[1:] - x[:-1] ** 2
        return jnp.sum(100.0 * t * t + (1.0 - x[:-1]) ** 2)

    def big(x, y, z, a, b, c, kk):
        return jnp.sum(jnp.sin(a * x + b * y) * jnp.exp(-c * z * z) + jnp.tanh(x * y - kk / 100.0))

    return {"add_mul": add_mul, "sigmoid_neuron": sigmoid, "norm_wx": norm_wx, "mlp_digits": mlp_digits,
            "mlp_784": mlp_784, "rosenbrock": rosen, "big": big}


def _unrolled(K, consts):
    """The big expression as a Python loop of scalar ops: XLA sees K * ~13 ops (the scaling series)."""
    import jax.numpy as jnp
    a, b, c = ([float(v) for v in consts[n]] for n in ("a", "b", "c"))

    def f(x, y, z):
        acc = 0.0
        for k in range(K):
            acc = acc + jnp.sin(a[k] * x + b[k] * y) * jnp.exp(-c[k] * z ** 2) + jnp.tanh(x * y - (k + 1) / 100)
        return acc
    return f


def build(case, inputs) -> Impl:
    import jax
    import jax.numpy as jnp

    fns = _functions()
    if case.group == "scaling":
        f = _unrolled(case.params["K"], case.consts)
        names = ["x", "y", "z"]
        vals = inputs
    elif "K" in case.params:
        f = fns["big"]
        names = ["x", "y", "z", "a", "b", "c", "kk"]
        vals = {**case.consts, **inputs}
    else:
        key = next((k for k in fns if case.name == k or case.name.startswith(k + "_")), None)
        if key is None:
            raise NotApplicable("no JAX version")
        f = fns[key]
        names = list(inputs)
        vals = inputs
    args = tuple(jax.device_put(jnp.asarray(vals[n])) for n in names)
    argnums = tuple(names.index(n) for n in case.wrt)
    vg_jit = jax.jit(jax.value_and_grad(f, argnums=argnums))
    f_jit = jax.jit(f)
    wrt = case.wrt

    def vg(*a):
        return jax.block_until_ready(vg_jit(*a))

    def fwd(*a):
        return jax.block_until_ready(f_jit(*a))

    def unpack(out):
        v, g = out
        return float(v), {n: np.asarray(x) for n, x in zip(wrt, g)}

    return Impl(vg, fwd, args, unpack)


# --------------------------------------------------------------------------- derivatives (benchmarks/derivatives.py)

def _gauss3(p, t, y):
    """Residuals of a sum of 3 Gaussians, ``p = (a1, b1, c1, a2, b2, c2, a3, b3, c3)``."""
    import jax.numpy as jnp
    a, b, c = p[0::3], p[1::3], p[2::3]
    return jnp.sum(a * jnp.exp(-(t[:, None] - b) ** 2 / (2.0 * c ** 2)), axis=1) - y


def _pick(case, inputs):
    """(f, argument names, values) of a case, as :func:`build` picks them (gauss3: ``f(p, t, y)``)."""
    if case.name.startswith("gauss3"):
        return _gauss3, ["p", "t", "y"], {"p": np.array([inputs[w] for w in case.wrt]), **inputs}
    if "K" in case.params:
        return _functions()["big"], ["x", "y", "z", "a", "b", "c", "kk"], {**case.consts, **inputs}
    fns = _functions()
    key = next((k for k in fns if case.name == k or case.name.startswith(k + "_")), None)
    if key is None:
        raise NotApplicable("no JAX version")
    return fns[key], list(inputs), inputs


def derivative(kind, case, inputs, seeds) -> dict:
    """``{variant: thunk}``, ``thunk() -> (fn, args, to_numpy)``: ``jax.jit`` of
    hvp: ``jax.jvp(grad_wrt, primals, v)`` (forward over reverse), plus ``value_and_grad``;
    hessian: ``jax.hessian(f, argnums)`` (its nested tuple for scalar arguments, as returned);
    jacobian: ``jax.jacfwd`` and ``jax.jacrev`` of ``f(p, t, y)`` w.r.t. the parameter vector ``p``."""
    import jax
    import jax.numpy as jnp

    from benchmarks.worker import dense_hessian

    f, names, vals = _pick(case, inputs)
    args = tuple(jax.device_put(jnp.asarray(vals[n])) for n in names)
    n = len(args)
    idx = tuple(names.index(w) for w in case.wrt) if kind != "jacobian" else (0,)

    def jitted(g):
        fn = jax.jit(g)
        return lambda *a: jax.block_until_ready(fn(*a))

    if kind == "hvp":
        def hvp(*a):
            prim, v = a[:n], a[n:]

            def grad_wrt(*w):
                full = list(prim)
                for i, wi in zip(idx, w):
                    full[i] = wi
                return jax.grad(f, argnums=idx)(*full)
            return jax.jvp(grad_wrt, tuple(prim[i] for i in idx), tuple(v))[1]

        v = tuple(jnp.asarray(seeds[w]) for w in case.wrt)

        def vg():
            impl = build(case, inputs)
            return impl.vg, impl.args, lambda out: np.concatenate([np.ravel(np.asarray(g)) for g in out[1]])
        return {"hvp": lambda: (jitted(hvp), args + v,
                                lambda out: np.concatenate([np.ravel(np.asarray(o)) for o in out])),
                "vg": vg}
    if kind == "hessian":
        return {"hessian": lambda: (jitted(jax.hessian(f, argnums=idx if len(idx) > 1 else idx[0])), args,
                                    dense_hessian)}
    if kind == "jacobian":
        return {"jacobian_fwd": lambda: (jitted(jax.jacfwd(f)), args, np.asarray),
                "jacobian_rev": lambda: (jitted(jax.jacrev(f)), args, np.asarray)}
    raise NotApplicable(f"unknown derivative {kind}")
