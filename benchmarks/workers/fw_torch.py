"""PyTorch eager autograd (CPU, float64): forward, then ``torch.autograd.grad``.

``torch.set_num_threads(N)`` and ``set_num_interop_threads(N)`` from ``--threads``.
Forward-only runs under ``torch.no_grad()``. There is no compile step: the
first call is eager dispatch plus lazy initialisation.
"""
from __future__ import annotations

import numpy as np

from benchmarks.worker import Impl, NotApplicable


def setup(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass


def thread_info() -> dict:
    import torch
    return {"torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads()}


def _functions():
    import torch
    import torch.nn.functional as F

    def add_mul(x, y, z):
        return (x + y) * z

    def sigmoid(x0, x1, w0, w1, w2):
        return 1.0 / (1.0 + torch.exp(-(w0 * x0 + w1 * x1 + w2)))

    def norm_wx(x, W):
        q = W @ x
        return torch.sum(q * q)

    def mlp_digits(X, y, W1, b1, W2, b2):
        return F.cross_entropy(torch.tanh(X @ W1 + b1) @ W2 + b2, y)

    def mlp_784(X, y, W1, b1, W2, b2, W3, b3):
        h1 = torch.relu(X @ W1 + b1)
        h2 = torch.relu(h1 @ W2 + b2)
        return F.cross_entropy(h2 @ W3 + b3, y)

    def rosen(x):
        t = x[1:] - x[:-1] ** 2
        return torch.sum(100.0 * t * t + (1.0 - x[:-1]) ** 2)

    def big(x, y, z, a, b, c, kk):
        return torch.sum(torch.sin(a * x + b * y) * torch.exp(-c * z * z) + torch.tanh(x * y - kk / 100.0))

    return {"add_mul": add_mul, "sigmoid_neuron": sigmoid, "norm_wx": norm_wx, "mlp_digits": mlp_digits,
            "mlp_784": mlp_784, "rosenbrock": rosen, "big": big}


def build(case, inputs) -> Impl:
    import torch

    if case.group == "scaling":
        raise NotApplicable("eager: no compile step whose cost grows with the term count")
    fns = _functions()
    if "K" in case.params:
        f = fns["big"]
        names = ["x", "y", "z", "a", "b", "c", "kk"]
        vals = {**case.consts, **inputs}
    else:
        key = next((k for k in fns if case.name == k or case.name.startswith(k + "_")), None)
        if key is None:
            raise NotApplicable("no PyTorch version")
        f = fns[key]
        names = list(inputs)
        vals = inputs
    args = []
    for n in names:
        v = vals[n]
        t = torch.tensor(v, dtype=torch.float64) if np.ndim(v) == 0 else torch.from_numpy(np.ascontiguousarray(v))
        if n in case.wrt:
            t.requires_grad_(True)
        args.append(t)
    args = tuple(args)
    wrt_t = tuple(args[names.index(n)] for n in case.wrt)
    wrt = case.wrt

    def vg(*a):
        loss = f(*a)
        return loss, torch.autograd.grad(loss, wrt_t)

    def fwd(*a):
        with torch.no_grad():
            return f(*a)

    def unpack(out):
        v, g = out
        return float(v.detach()), {n: x.detach().numpy() for n, x in zip(wrt, g)}

    return Impl(vg, fwd, args, unpack, unpack_fwd=lambda v: float(v))


# --------------------------------------------------------------------------- derivatives (benchmarks/derivatives.py)

def _gauss3(p, t, y):
    """Residuals of a sum of 3 Gaussians, ``p = (a1, b1, c1, a2, b2, c2, a3, b3, c3)``."""
    import torch
    a, b, c = p[0::3], p[1::3], p[2::3]
    return torch.sum(a * torch.exp(-(t[:, None] - b) ** 2 / (2.0 * c ** 2)), dim=1) - y


def _pick(case, inputs):
    """(f, argument names, values) of a case, as :func:`build` picks them (gauss3: ``f(p, t, y)``)."""
    if case.name.startswith("gauss3"):
        return _gauss3, ["p", "t", "y"], {"p": np.array([inputs[w] for w in case.wrt]), **inputs}
    if "K" in case.params:
        return _functions()["big"], ["x", "y", "z", "a", "b", "c", "kk"], {**case.consts, **inputs}
    fns = _functions()
    key = next((k for k in fns if case.name == k or case.name.startswith(k + "_")), None)
    if key is None:
        raise NotApplicable("no PyTorch version")
    return fns[key], list(inputs), inputs


def derivative(kind, case, inputs, seeds) -> dict:
    """``{variant: thunk}``, ``thunk() -> (fn, args, to_numpy)``, eager ``torch.func``:
    hvp: ``torch.func.jvp(grad_wrt, primals, v)`` with ``grad_wrt = torch.func.grad(f, argnums)``,
    plus autograd value_and_grad (the main suite's); hessian: ``torch.func.hessian(f, argnums)``;
    jacobian: ``torch.func.jacfwd`` and ``jacrev`` of ``f(p, t, y)`` w.r.t. ``p``."""
    import torch
    from torch.func import grad, hessian, jacfwd, jacrev, jvp

    from benchmarks.worker import dense_hessian

    f, names, vals = _pick(case, inputs)

    def tensor(x):
        return torch.tensor(x, dtype=torch.float64) if np.ndim(x) == 0 else torch.from_numpy(np.ascontiguousarray(x))
    args = tuple(tensor(vals[nm]) for nm in names)
    n = len(args)
    idx = tuple(names.index(w) for w in case.wrt) if kind != "jacobian" else (0,)

    def flat(out):
        return np.concatenate([np.ravel(o.detach().numpy()) for o in out])

    if kind == "hvp":
        def hvp(*a):
            prim, v = a[:n], a[n:]

            def grad_wrt(*w):
                full = list(prim)
                for i, wi in zip(idx, w):
                    full[i] = wi
                return grad(f, argnums=idx)(*full)
            return jvp(grad_wrt, tuple(prim[i] for i in idx), tuple(v))[1]

        v = tuple(tensor(seeds[w]) for w in case.wrt)

        def vg():
            impl = build(case, inputs)
            return impl.vg, impl.args, lambda out: flat(out[1])
        return {"hvp": lambda: (hvp, args + v, flat), "vg": vg}
    if kind == "hessian":
        h = hessian(f, argnums=idx if len(idx) > 1 else idx[0])
        return {"hessian": lambda: (h, args, lambda H: dense_hessian(
            [[b.detach().numpy() for b in row] for row in H] if isinstance(H, tuple) else H.detach().numpy()))}
    if kind == "jacobian":
        return {"jacobian_fwd": lambda: (jacfwd(f), args, lambda J: J.detach().numpy()),
                "jacobian_rev": lambda: (jacrev(f), args, lambda J: J.detach().numpy())}
    raise NotApplicable(f"unknown derivative {kind}")
