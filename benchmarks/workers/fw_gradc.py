"""gradc: the generated module's ``value_and_grad`` and ``forward``, called bare (``m.raw``),
and, as extra variants, value+grad through the public API (``f.value_and_grad(*args)`` and
with keywords, ``f = gradc.compile(...)``) and ``raw.value_and_grad_into``.

The parent sets ``GRADC_CACHE_DIR`` and ``NUMBA_CACHE_DIR``: fresh folders for the cold
run, the same folders again for the warm run (a second process), so ``build`` (which is
``gradc.compile``) plus the first calls measure cold and warm first-call times.
``GRADC_BENCH_FUSE=0`` compiles without elementwise fusion (``gradc.Options(fuse=False)``),
for a before/after comparison.
"""
from __future__ import annotations

import os
import time

import numpy as np

from benchmarks.worker import Impl, NotApplicable, dense_hessian


def setup(threads: int) -> None:
    import gradc  # noqa: F401  (imported here so its import time is not in the first call)


def thread_info() -> dict:
    import numba
    return {"numba_threads": numba.get_num_threads()}


_SOURCE = {}
_OPS = {}


def prepare(case, inputs) -> None:
    if case.gradc_source is not None:   # builds the SymPy expression of the unrolled cases
        _SOURCE[case.name] = case.gradc_source(case)
        if not isinstance(_SOURCE[case.name][0], str):
            import sympy as sp
            _OPS[case.name] = int(sp.count_ops(_SOURCE[case.name][0]))


def build(case, inputs) -> Impl:
    import gradc

    if case.gradc_source is None:
        raise NotApplicable("no gradc source for this case")
    source, kw = _SOURCE[case.name]
    if os.environ.get("GRADC_BENCH_FUSE", "1") == "0":
        kw = {**kw, "options": gradc.Options(fuse=False)}
    t0 = time.perf_counter()
    try:
        m = gradc.compile(source, **kw)
    except gradc.GradcError as e:
        raise NotApplicable(f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
    codegen = time.perf_counter() - t0
    missing = [n for n in m.arg_names if n not in inputs]
    if missing:
        raise NotApplicable(f"compiled module wants arguments {missing} the case does not have")
    args = tuple(inputs[n] for n in m.arg_names)
    wrt = m.wrt

    def unpack(out):
        value, grads = out
        return float(value), {n: np.asarray(g) for n, g in zip(wrt, grads)}

    # timed: the bare Numba dispatchers (m.raw); extra: the call a user makes (the public API,
    # positional and keyword arguments) and, where there are array gradients, output buffers
    extra = {"vg_public": (m.value_and_grad, args),
             "vg_public_kw": (m.value_and_grad, (), {n: inputs[n] for n in m.arg_names})}
    if m.raw.value_and_grad_into is not None:   # output buffers: the gradients into preallocated arrays
        bufs = tuple(np.empty_like(inputs[w]) for w in wrt if np.ndim(inputs[w]))
        extra["vg_into"] = (m.raw.value_and_grad_into, args + bufs)
    return Impl(m.raw.value_and_grad, m.raw.forward, args, unpack, extra=extra,
                info={"codegen_s": codegen, "module": m.path.name, "wrt": list(wrt),
                      **({"sympy_ops": _OPS[case.name]} if case.name in _OPS else {})})


# --------------------------------------------------------------------------- derivatives (benchmarks/derivatives.py)

def derivative(kind, case, inputs, seeds) -> dict:
    """``{variant: thunk}``; ``thunk() -> (fn, args, to_numpy)`` builds (compiles) the variant.

    hvp: the bare dispatcher ``m.module.hvp(*args, *v)``, the public ``m.hvp(*args, v)`` and the
    same module's ``value_and_grad`` (for HVP ÷ value_and_grad); hessian: ``m.module.hessian`` and
    ``m.hessian``; jacobian: ``m.module.jacobian`` with ``Options(jacobian="auto")``, ``m.jacobian``
    and, as variants, ``"fwd"`` and ``"rev"``. The first thunk compiles the module (the parent gives the
    process fresh caches, so its first call is cold); the others reuse it.
    """
    import gradc

    if case.gradc_source is None:
        raise NotApplicable("no gradc source for this case")
    source, kw = case.gradc_source(case)
    made = {}

    def compiled(mode="auto"):
        if mode not in made:
            try:
                made[mode] = gradc.compile(source, **kw, derivatives=[kind],
                                           options=gradc.Options(jacobian=mode))
            except gradc.GradcError as e:
                raise NotApplicable(f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
            if tuple(made[mode].wrt) != tuple(case.wrt):
                raise NotApplicable(f"module wrt {made[mode].wrt} differs from the case's {case.wrt}")
        return made[mode]

    def args_of(m):
        return tuple(inputs[n] for n in m.arg_names)

    def flat(out):                      # a tuple, one entry per wrt -> one float64 vector
        return np.concatenate([np.ravel(np.asarray(o, dtype=np.float64)) for o in out])

    if kind == "hvp":
        v = tuple(seeds[w] for w in case.wrt)
        return {"hvp": lambda: (compiled().module.hvp, args_of(compiled()) + v, flat),
                "hvp_public": lambda: (compiled().hvp, args_of(compiled()) + (v,), flat),
                "vg": lambda: (compiled().raw.value_and_grad, args_of(compiled()), lambda out: flat(out[1]))}
    if kind == "hessian":
        return {"hessian": lambda: (compiled().module.hessian, args_of(compiled()), dense_hessian),
                "hessian_public": lambda: (compiled().hessian, args_of(compiled()), dense_hessian)}
    if kind == "jacobian":
        out = {name: (lambda mode=mode: (compiled(mode).module.jacobian, args_of(compiled(mode)), np.asarray))
               for name, mode in (("jacobian", "auto"), ("jacobian_fwd", "fwd"), ("jacobian_rev", "rev"))}
        out["jacobian_public"] = lambda: (compiled().jacobian, args_of(compiled()), np.asarray)
        return out
    raise NotApplicable(f"unknown derivative {kind}")

