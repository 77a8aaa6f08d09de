"""Shared helpers of the passes: counting uses, rewriting operands after values are replaced."""
from __future__ import annotations

from ..ir import Stmt, Value


def substitute(stmts: list[Stmt], outputs: list[Value], repl: dict[int, Value]):
    """Replace every use of a value ``v`` with ``repl[id(v)]`` (following chains)."""
    def get(v: Value) -> Value:
        while id(v) in repl:
            v = repl[id(v)]
        return v

    new = []
    for s in stmts:
        args = tuple(get(a) for a in s.args)
        if any(a is not b for a, b in zip(args, s.args)):
            s = Stmt(s.op, args, s.out, s.attrs, s.loc, s.note, s.adjoint)
        new.append(s)
    return new, [get(v) for v in outputs]


def count_uses(fn) -> dict[int, int]:
    """How many times each value (by ``id``) is an operand of a statement or an output of ``fn``."""
    uses: dict[int, int] = {}
    for s in fn.stmts:
        for a in s.args:
            uses[id(a)] = uses.get(id(a), 0) + 1
    for v in fn.outputs:
        uses[id(v)] = uses.get(id(v), 0) + 1
    return uses
