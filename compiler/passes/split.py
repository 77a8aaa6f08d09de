"""Splitting: a long sum of unlike terms becomes a sum of parts, each compiled on its own.

Numba compiles a function in time that grows with its size, and faster than
linearly for long straight-line bodies (measured on 2 shared cores: 4,000 lines
of nested scalar expressions 42 s in one function, 11.7 s as 16 functions of
250, 12–13 s for 8 to 32 parts; gradc's one-op-a-line code grows more gently,
about 1.1 ms a statement: 800 unlike terms, 22,000 statements, 30 s in one
function and 24 s in 37 parts, while 50-statement parts cost more than they
save). :func:`gradc.passes.reroll` turns a sum of
*like* terms into a loop; what is left of a large sum after it, terms that are
not alike, is split here. :func:`split` partitions the summands of the output's
top-level ``add``/``sub`` tree, in their order, into groups whose statements
(each summand with everything it depends on) number at most ``max_stmts``;
each group becomes a primal :class:`~gradc.ir.Function` of its own (same
inputs, its partial sum as output) that the pipeline differentiates, optimizes
and renders as a jitted helper (``_part_<k>`` and ``_part_<k>_forward``), and
``value_and_grad`` adds up the parts' values and gradients (see
:func:`gradc.backend.module.render_module`).

Costs and limits: a subexpression shared by summands of different parts (say
``x·y`` used by every term) is computed once in each part that needs it; the
sum is re-associated part by part (exact up to rounding). An output that is not
a large sum (one huge product, a deep nest) stays one straight-line function.
"""
from __future__ import annotations

from ..ir import Builder, Function, Namer
from ..options import Options
from .reroll import _summands
from .util import count_uses

#: Most statements (constants not counted) of one part's forward sweep when :func:`split` is
#: called without ``max_stmts``: the default of :attr:`gradc.Options.split_stmts` (the pipeline
#: passes its options' value, so changing this has no effect there). A part's value_and_grad is
#: about three times as long. Measured (400 unlike terms): parts of 100 to 800 forward statements
#: compile equally fast, parts of 50 about 25 % slower.
PART_STMTS = Options().split_stmts


def _cone(v, defs, seen: set, out: list):
    """Append to ``out`` the statements ``v`` depends on that are not in ``seen`` (adding them)."""
    stack = [v]
    while stack:
        w = stack.pop()
        s = defs.get(id(w))
        if s is None or id(w) in seen:
            continue
        seen.add(id(w))
        out.append(s)
        stack.extend(s.args)


def split(fn: Function, max_stmts: int | None = None,
          min_stmts: int | None = None) -> list[tuple[Function, int, int]] | None:
    """The parts of ``fn`` (see the module doc), or None if it is not split: its output is not a
    float64 scalar sum, it has at most ``min_stmts`` statements (default ``2 * max_stmts``;
    ``max_stmts`` defaults to :data:`PART_STMTS`), or its summands do not make two parts.

    Each part is ``(part, first, count)``: a new primal function with ``fn``'s inputs whose
    output, named like ``fn``'s, is the signed sum of ``count`` summands starting at summand
    ``first`` (in the order of the top-level sum); the parts' outputs add up to ``fn``'s output.
    """
    out = fn.outputs[0]
    if out.shape or out.dtype != "f64" or fn.differentiated or len(fn.outputs) != 1:
        return None
    max_stmts = PART_STMTS if max_stmts is None else max_stmts
    if min_stmts is None:
        min_stmts = 2 * max_stmts
    if sum(1 for s in fn.stmts if s.op != "const") <= min_stmts:
        return None
    defs = {id(s.out): s for s in fn.stmts}
    leaves, _ = _summands(fn, defs, count_uses(fn))
    if len(leaves) < 2:
        return None
    groups = []                                  # [(leaves, ids of the statements they need)]
    cur, seen, size = [], set(), 0
    for sign, v in leaves:
        added: list = []
        _cone(v, defs, set(seen), added)
        n = sum(1 for s in added if s.op != "const")
        if cur and size + n > max_stmts:
            groups.append((cur, seen))
            cur, seen, size = [], set(), 0
            added = []
            _cone(v, defs, set(), added)
            n = sum(1 for s in added if s.op != "const")
        cur.append((sign, v))
        seen.update(id(s.out) for s in added)
        size += n
    groups.append((cur, seen))
    if len(groups) < 2:
        return None
    parts, first = [], 0
    for k, (terms, needed) in enumerate(groups):
        stmts = [s for s in fn.stmts if id(s.out) in needed]     # shared with fn: passes are pure
        namer = Namer()
        for v in fn.inputs:
            namer.claim(v.name)
        for s in stmts:
            if s.out.name != out.name:
                namer.claim(s.out.name)
        b = Builder(namer, stmts)
        b.hint = "acc"
        terms = sorted(terms, key=lambda p: -p[0])                # positive first
        sign, acc = terms[0]
        if sign < 0:
            acc = b.emit("neg", acc)
        for j, (sign, v) in enumerate(terms[1:]):
            acc = b.emit("add" if sign > 0 else "sub", acc, v, name=out.name if j == len(terms) - 2 else None)
        if acc.name != out.name:
            acc = b.emit("alias", acc, name=out.name)
        part = Function(f"{fn.name}_part{k}", list(fn.inputs), b.stmts, [acc], [], False, fn.source_name)
        parts.append((part, first, len(terms)))
        first += len(terms)
    return parts
