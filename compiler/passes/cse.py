"""Common-subexpression elimination: one SSA value per distinct (op, operands, attrs).

``alias`` statements are kept: they only give an existing value a readable
name (``x_bar = q_bar``) and cost nothing at run time.
"""
from __future__ import annotations

from .util import substitute


def cse(fn):
    seen: dict[tuple, object] = {}
    repl: dict[int, object] = {}
    stmts = []
    for s in fn.stmts:
        args = []
        for a in s.args:
            while id(a) in repl:
                a = repl[id(a)]
            args.append(a)
        key = (s.op, tuple(id(a) for a in args), s.attrs)
        if s.op != "alias" and key in seen:
            repl[id(s.out)] = seen[key]
            continue
        seen[key] = s.out
        stmts.append(s)
    stmts, outputs = substitute(stmts, fn.outputs, repl)
    return fn.replace(stmts, outputs)
