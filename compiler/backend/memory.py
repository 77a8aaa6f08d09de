"""The memory plan of a schedule: which loop values live in arrays, which dead arrays they
reuse, which arrays are released after a loop.

Why: a fused loop allocates its stored values while all its operands are alive, and
Numba (its reference-count pruning) releases an array last read in a loop only after
the next statement, so neither the loop's outputs nor the matrix product after it
could reuse the operands' memory: a fused MLP's heap grew past glibc's trim threshold
(twice the largest array freed by munmap), so every call grew, trimmed and re-faulted
it (mlp_784: ~1,600 minor faults a call, +55 % time). So a stored value goes into a
dead operand's array when there is one (:attr:`MemoryPlan.reuse`), and an array whose
last use is a loop is released right after it (:attr:`MemoryPlan.release`; the printer
rebinds it to an empty array, as Numba rejects ``del``).

Only arrays the function owns are reused or released: those a loop stored, fresh results
(the op trait ``fresh``: a matrix product) and owned values handed in (``owned``: the
forward sweep's saved arrays, in the adjoint sweep); never an argument, a constant, a
value a whole-array statement reads (it could keep a view or another name of it), an
output or an alias of a loop value.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Value
from ..ops import OPS
from .schedule import LOOP_DTYPES, Line, Loop, Role, alias_roots, loop_reads, stmts_of


@dataclass
class MemoryPlan:
    """``stored``: ids of loop values kept in arrays after their loop (``_a_<name>``);
    ``reuse``: stored value id -> the dead array (a :class:`Value`) it is written into;
    ``release``: item index -> arrays released after that item; ``roots``: alias id -> the
    loop value it names; ``owned``: ids of the arrays the function owns at the end (of those
    still alive)."""

    stored: set[int] = field(default_factory=set)
    reuse: dict[int, Value] = field(default_factory=dict)
    release: dict[int, list[Value]] = field(default_factory=dict)
    roots: dict[int, int] = field(default_factory=dict)
    owned: set[int] = field(default_factory=set)


def plan_memory(items: list, outputs=(), *, given=(), owned=(), targets=frozenset()) -> MemoryPlan:
    """The :class:`MemoryPlan` of the schedule ``items``.

    ``outputs``: values needed after the items; ``given``: values handed in (arguments,
    saved values); ``owned``: those of ``given`` the function may reuse and release;
    ``targets``: ids of values written into output arrays (never reused or released).
    """
    roots = alias_roots(items)
    plan = MemoryPlan(roots=roots)
    root = lambda i: roots.get(i, i)                                   # noqa: E731
    owner: dict[int, int] = {}            # loop value -> index of its loop
    for k, item in enumerate(items):
        if isinstance(item, Loop):
            owner.update((id(s.out), k) for s in item.body
                         if s.out.shape and item.role(s) in (Role.ELEM, Role.ALIAS))
    stored = plan.stored
    stored.update(root(id(v)) for v in outputs if id(v) in owner)
    for k, item in enumerate(items):
        for s in stmts_of(item):
            if isinstance(item, Loop) and item.role(s) is Role.SUM_AFTER and id(s.args[0]) in owner:
                stored.add(root(id(s.args[0])))
            reads = s.args if isinstance(item, Line) else loop_reads(s)
            stored.update(root(id(a)) for a in reads if owner.get(id(a), k) != k)

    last: dict[int, int] = {id(v): len(items) for v in outputs}
    for k, item in enumerate(items):
        for s in stmts_of(item):
            for a in s.args:
                if last.get(id(a), -1) < len(items):
                    last[id(a)] = k
    never = {id(v) for v in given if not any(v is o for o in owned)} | set(targets)
    never.update(id(s.out) for item in items for s in stmts_of(item) if s.op == "const")
    shared = set(roots) | set(roots.values()) | {id(v) for v in outputs} | set(targets)
    for item in items:
        if isinstance(item, Line):
            shared.update(id(a) for a in item.stmt.args)
    # where each value is defined: a broadcast in a loop reads only the shape of its second operand,
    # so a schedule may put it before that operand's definition, which is then no read to release after
    defined = {id(s.out): k for k, item in enumerate(items) for s in stmts_of(item)}
    live: dict[int, Value] = {id(v): v for v in owned if v.shape}     # owned arrays, oldest first
    loop_scalars: set[int] = set()
    for k, item in enumerate(items):
        if isinstance(item, Line):
            s = item.stmt
            if OPS[s.op].fresh and s.out.rank >= 1:
                live[id(s.out)] = s.out
            continue
        inside = item.defines()
        reads = {id(a) for s in item.body for a in s.args}
        buffers = [b for i, b in reversed(live.items()) if i in reads and last.get(i) == k and i not in shared]
        free = [b for b in buffers if id(b) not in inside and tuple(b.shape) == tuple(item.shape)]
        for s in item.body:
            if id(s.out) in stored and id(s.out) not in targets and item.role(s) is Role.ELEM \
                    and tuple(s.out.shape) == tuple(item.shape):
                b = next((b for b in free if b.dtype == s.out.dtype), None)
                if b is not None:
                    free.remove(b)
                    plan.reuse[id(s.out)] = b
        for b in buffers:
            live.pop(id(b), None)
        live.update((id(s.out), s.out) for s in item.body if id(s.out) in stored and item.role(s) is Role.ELEM)
        loop_scalars |= inside - stored
        if k == len(items) - 1:                 # nothing is allocated after the last loop
            continue
        reused = {id(b) for s in item.body for b in [plan.reuse.get(id(s.out))] if b is not None}
        dead = {}
        for s in item.body:
            for a in s.args:
                i = id(a)
                if a.shape and a.dtype in LOOP_DTYPES and i not in inside and i not in loop_scalars \
                        and last.get(i) == k and i not in never and i not in reused and defined.get(i, -1) <= k \
                        and last.get(root(i), -1) <= k \
                        and not any(root(j) == root(i) and last.get(j, -1) > k for j in roots):
                    dead[i] = a
        if dead:
            plan.release[k] = list(dead.values())
    # an array a whole-array statement may have taken a view of (x.T, x[1:]) is not handed on as
    # owned: the view, saved for a later sweep, would see its memory reused
    viewed = {id(a) for item in items if isinstance(item, Line) and OPS[item.stmt.op].view
              for a in item.stmt.args}
    plan.owned = set(live) - viewed
    return plan
