"""SymPy ``diff`` + ``lambdify`` (``cse=True``, ``math`` module) + ``numba.njit``, for scalar cases.

value_and_grad is one lambdified function returning ``(f, df/dw1, ...)``,
with common subexpressions shared between the value and the derivatives by
``lambdify(..., cse=True)``. The first call includes ``diff``, ``lambdify``
and Numba's JIT compile (the SymPy expression itself is built beforehand,
as for gradc).
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.worker import Impl, NotApplicable


def setup(threads: int) -> None:
    import numba  # noqa: F401
    import sympy  # noqa: F401


def thread_info() -> dict:
    import numba
    return {"numba_threads": numba.get_num_threads()}


_EXPR = {}


def prepare(case, inputs) -> None:
    if case.sympy_expr is not None:
        _EXPR[case.name] = case.sympy_expr(case)


def build(case, inputs) -> Impl:
    import numba
    import sympy as sp

    if case.sympy_expr is None:
        raise NotApplicable("array case: lambdify of scalar SymPy only")
    expr, syms = _EXPR[case.name]
    by_name = {s.name: s for s in syms}
    wrt = case.wrt
    t0 = time.perf_counter()
    grads = [sp.diff(expr, by_name[n]) for n in wrt]
    t_diff = time.perf_counter() - t0
    vg_py = sp.lambdify(syms, (expr, *grads), modules="math", cse=True)
    f_py = sp.lambdify(syms, expr, modules="math", cse=True)
    t_sym = time.perf_counter() - t0
    nj = numba.njit(cache=False, error_model="numpy")
    vg, fwd = nj(vg_py), nj(f_py)
    args = tuple(float(inputs[s.name]) for s in syms)

    def unpack(out):
        return float(out[0]), {n: np.asarray(g) for n, g in zip(wrt, out[1:])}

    return Impl(vg, fwd, args, unpack,
                info={"diff_s": t_diff, "diff_lambdify_s": t_sym})
