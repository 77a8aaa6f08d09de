"""Renumbering: generated names without gaps.

Names are handed out as ``h``, ``h_2``, ``h_3``, ... (:class:`gradc.ir.Namer`), and the AD names
fan-out contributions ``x_bar_1``, ``x_bar_2``. After dead-code elimination and CSE some of them
are gone, leaving gaps (``f_d_2`` with no ``f_d``, ``h_3`` with no ``h_2``). :func:`renumber`
gives the values of each base name the names ``base``, ``base_2``, ``base_3``, ... in definition
order. A name without a numeric suffix is never changed (the unsuffixed ``base`` stays with the
value that has it), nor are the inputs', the outputs' and the ``keep`` names (a spec's graph
entries, which may end in a number such as ``layer_1``): only generated suffixes move.

Constants come last: the generated code never names them (a scalar is a literal, a table a
module-level ``_TABLE<k>``), so they take the numbers after those of the values it names
(``loss_d``, ``loss_d_2``, ``loss_d_3`` for values, then ``loss_d_4`` for a constant among
them), and an unsuffixed constant name yields to a value that needs it.
"""
from __future__ import annotations

import keyword
import re

from ..ir import RESERVED, Stmt, Value

_SUFFIX = re.compile(r"(.+)_([1-9][0-9]*)\Z")


def renumber(fn, keep=()):
    """A copy of ``fn`` whose generated ``<base>_<k>`` names are renumbered without gaps (see the
    module doc); renamed values are new :class:`~gradc.ir.Value` objects, ``fn`` is unchanged."""
    user = {v.name for v in fn.inputs} | {v.name for v in fn.outputs} | set(keep)
    values = [s.out for s in fn.stmts if s.op != "const" and s.out.name not in user]
    consts = [s.out for s in fn.stmts if s.op == "const" and s.out.name not in user]
    taken = user | {v.name for v in values if not _SUFFIX.match(v.name)}
    nxt: dict[str, int] = {}
    new: dict[int, Value] = {}

    def assign(v, base):
        k = nxt.get(base, 1)
        while True:
            name = base if k == 1 else f"{base}_{k}"
            if name not in taken and name not in RESERVED and not keyword.iskeyword(name):
                break
            k += 1
        nxt[base] = k + 1
        taken.add(name)
        if name != v.name:
            new[id(v)] = Value(name, v.dtype, v.shape)

    for v in values:
        m = _SUFFIX.match(v.name)
        if m is not None:
            assign(v, m.group(1))
    for v in consts:
        m = _SUFFIX.match(v.name)
        if m is None and v.name not in taken:
            taken.add(v.name)
        else:
            assign(v, v.name if m is None else m.group(1))
    stmts = []
    for s in fn.stmts:
        args = tuple(new.get(id(a), a) for a in s.args)
        out = new.get(id(s.out), s.out)
        if out is not s.out or any(a is not b for a, b in zip(args, s.args)):
            s = Stmt(s.op, args, out, s.attrs, s.loc, s.note, s.adjoint)
        stmts.append(s)
    return fn.replace(stmts, [new.get(id(v), v) for v in fn.outputs])
