"""Pool before the activation: ``P(f(z)) → f(P(z))`` for a max-selecting op P (``selects_max``:
max_pool2d) of a monotone elementwise op f (``monotone``: relu, leaky_relu with a slope ≥ 0).

The two are equal element for element: f never decreases, so the largest f(z) of a window is f of
its largest z. So are their derivatives: where f(z) ties but z does not, f is flat and f' = 0 at
every tied element; ties in z are ties in f(z), and both route to the first. The rewritten form
applies f to the pooled array, k² times smaller for k × k windows, and its adjoint masks the pooled
cotangent: a CNN's ``max_pool2d(relu(conv2d(...)))`` passes over its largest arrays once less
in each sweep (digits CNN value+grad 3.46 → 3.10 ms). Only when f(z) has no other use (else both
would be computed).
"""
from __future__ import annotations

from ..ir import Stmt, Value
from ..ops import OPS
from .util import count_uses


def _monotone(s) -> bool:
    m = OPS[s.op].monotone
    return m(s) if callable(m) else bool(m)


def pool_first(fn):
    """A copy of ``fn`` with each ``P(f(z))`` written ``f(P(z))`` (see the module doc); ``fn`` itself
    unchanged, and returned as is when nothing matches."""
    uses = count_uses(fn)
    defs = {id(s.out): s for s in fn.stmts}
    taken = {v.name for v in fn.inputs} | {s.out.name for s in fn.stmts}
    drop, new = set(), {}
    for s in fn.stmts:
        f = defs.get(id(s.args[0])) if OPS[s.op].selects_max and s.args else None
        if f is None or not _monotone(f) or uses[id(f.out)] != 1:
            continue
        z = f.args[0]
        dtype, shape = OPS[s.op].infer([z], s.attr)
        k = 2
        while f"{s.out.name}_{k}" in taken:
            k += 1
        pooled = Value(f"{s.out.name}_{k}", dtype, shape)
        taken.add(pooled.name)
        drop.add(id(f))
        new[id(s)] = [Stmt(s.op, (z,), pooled, s.attrs, s.loc, s.note, s.adjoint),
                      Stmt(f.op, (pooled,), s.out, f.attrs, f.loc, f.note, f.adjoint)]
    if not new:
        return fn
    stmts = [t for s in fn.stmts if id(s) not in drop for t in new.get(id(s), [s])]
    return fn.replace(stmts)
