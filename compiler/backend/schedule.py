"""The schedule: a sweep of SSA statements as loops-as-data.

:func:`schedule` turns a list of statements into a list of items, each a
:class:`Line` (one statement, rendered whole-array by its op's macro) or a
:class:`Loop` (a loop nest over ``shape`` whose body computes one element of each
statement at a time). What joins a loop is read from the op table's ``loop``
trait (:class:`gradc.ops.Op`):

* ``True``: an elementwise statement (:attr:`Role.ELEM`), one element at a time, its
  operands of the loop's shape, of its trailing axes, or scalars;
* ``"reduce"``: a sum to a scalar or over leading axes of a loop value, accumulated in
  the loop (:attr:`Role.REDUCE`; :attr:`Role.SUM_AFTER` when the loop vectorizes and the
  sum is taken after it, since a floating-point sum is not reassociated);
* ``"scatter"``: a value written into a zero array at an offset (:attr:`Role.SCATTER`), two
  of them added into one array (:attr:`Role.SCATTER_ADD`);
* ``"broadcast"``: a scalar broadcast to the loop's shape (its element is the scalar);
* ``"alias"``: another name for a value (:attr:`Role.ALIAS`: no line, no copy).

Fusion (Halide's and tinygrad's loops-as-data; elementwise fusion as in XLA): while a
loop is gathered, a statement that does not need it moves ahead of it, one that needs
it (or needs such a statement) moves after it, and a loop statement that needs one of
those, or one of the loop's own sums, closes it. The order respects every dependence
(:func:`check_dependences`). Without ``fuse`` only rank-1 loops over the length of a
re-rolled table are formed (:func:`gradc.passes.reroll`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ..ir import FLOATS, Stmt, Value
from ..ops import OPS

#: Deepest loop nest fusion forms (the array's rank).
MAX_LOOP_RANK = 4
#: dtypes a loop computes element by element
LOOP_DTYPES = ("f64", "f32", "bool")


class Role(Enum):
    """What one statement does inside a loop."""
    ELEM = "elem"
    REDUCE = "reduce"
    SUM_AFTER = "sum_after"
    SCATTER = "scatter"
    SCATTER_ADD = "scatter_add"
    ALIAS = "alias"


@dataclass(eq=False)
class Line:
    """One statement rendered on its own (whole arrays)."""
    stmt: Stmt


@dataclass(eq=False)
class Loop:
    """A loop nest over ``shape``; ``body`` in order, ``roles[id(stmt.out)]`` each statement's role."""
    shape: tuple
    body: list[Stmt] = field(default_factory=list)
    roles: dict[int, Role] = field(default_factory=dict)

    def role(self, s: Stmt) -> Role:
        return self.roles[id(s.out)]

    def defines(self) -> set[int]:
        return {id(s.out) for s in self.body}


def stmts_of(item) -> list[Stmt]:
    return [item.stmt] if isinstance(item, Line) else item.body


def loop_reads(s: Stmt) -> tuple[Value, ...]:
    """The operands whose values ``s`` reads in a loop (a broadcast reads only the shape of its second)."""
    return s.args[:1] if OPS[s.op].loop == "broadcast" else s.args


def _suffix(shape, full) -> bool:
    """``shape`` broadcasts against ``full`` as its trailing axes (``()``: a scalar)."""
    return len(shape) <= len(full) and tuple(full[len(full) - len(shape):]) == tuple(shape)


def _loopable(shape, lengths, fuse) -> bool:
    if not shape:
        return False
    if len(shape) == 1 and shape[0] in lengths:
        return True
    return fuse and len(shape) <= MAX_LOOP_RANK


def loop_role(s: Stmt, lengths, fuse: bool):
    """``(role, shape)`` when ``s`` can join a loop over ``shape``, else None (see the module doc)."""
    trait = OPS[s.op].loop
    if not trait:
        return None
    if trait == "reduce":
        a = s.args[0]
        if len(s.args) == 1 and a.dtype in FLOATS and _loopable(a.shape, lengths, fuse) \
                and s.attr.get("axis") is None \
                and (not s.out.shape or (fuse and s.out.rank < a.rank and _suffix(s.out.shape, a.shape))):
            return Role.REDUCE, a.shape
        return None
    if trait == "scatter":
        g, like = s.args
        start = s.attr.get("start")
        if fuse and _loopable(g.shape, lengths, fuse) and g.dtype in FLOATS and like.rank == g.rank \
                and isinstance(start, int) and start >= 0 \
                and all(d == e or isinstance(d, int) for d, e in zip(s.out.shape, g.shape)):
            return Role.SCATTER, g.shape
        return None
    if not _loopable(s.out.shape, lengths, fuse) or s.out.dtype not in LOOP_DTYPES:
        return None
    if trait == "broadcast":
        if s.args[0].shape or s.attr.get("axis") is not None:
            return None
        return Role.ELEM, s.out.shape
    if any(a.dtype not in LOOP_DTYPES for a in s.args):
        return None
    if any(not (_suffix(a.shape, s.out.shape) if fuse else a.shape == s.out.shape) for a in s.args):
        return None
    return Role.ELEM, s.out.shape


def _gather(stmts, lengths, fuse, outputs) -> list:
    """Group the loop statements into loops in an order that respects every dependence (see the module doc)."""
    out, pre, post = [], [], []
    loop: Loop | None = None
    defined: set[int] = set()           # values of the open loop
    barred: set[int] = set()            # values the open loop must not read (its sums, what waits after it)
    later: set[int] = set()             # what waits after it (a broadcast needs even their shape first)
    uses: dict[int, int] = {}
    for s in stmts:
        for a in s.args:
            uses[id(a)] = uses.get(id(a), 0) + 1
    for v in outputs:
        uses[id(v)] = uses.get(id(v), 0) + 2

    def close():
        nonlocal loop, pre, post
        out.extend(pre)
        if loop is not None:
            out.append(loop)
        out.extend(post)
        pre, post, loop = [], [], None

    for s in stmts:
        role = shape = None
        if fuse and loop is not None and s.op == "add" and s.out.dtype in FLOATS \
                and s.args[0].shape == s.args[1].shape == s.out.shape and s.args[0] is not s.args[1] \
                and all(loop.roles.get(id(a)) in (Role.SCATTER, Role.SCATTER_ADD) and uses.get(id(a)) == 1
                        for a in s.args):
            role, shape = Role.SCATTER_ADD, loop.shape
        elif OPS[s.op].loop == "alias" and fuse and (loop is None or id(s.args[0]) not in defined):
            pass                                  # another name for an array: no copy
        elif s.op != "const":
            hit = loop_role(s, lengths, fuse)
            if hit:
                role, shape = hit
        if role is not None:
            if role is not Role.SCATTER_ADD and loop is not None \
                    and (loop.shape != shape or any(id(a) in barred for a in loop_reads(s))
                         or any(id(a) in later for a in s.args)):
                close()
                defined, barred, later = set(), set(), set()
            if loop is None:
                loop = Loop(tuple(shape))
            loop.body.append(s)
            loop.roles[id(s.out)] = role
            defined.add(id(s.out))
            if role is not Role.ELEM:
                barred.add(id(s.out))
        elif loop is not None and any(id(a) in defined or id(a) in barred for a in s.args):
            post.append(Line(s))
            barred.add(id(s.out))
            later.add(id(s.out))
        elif loop is not None:
            pre.append(Line(s))
        else:
            out.append(Line(s))
    close()
    return out


def _nameable(loop: Loop, given: set[int]) -> bool:
    """Every symbolic size of the loop can be read off a value it is given (an argument, or an
    array defined before the loop)."""
    inside = loop.defines()
    dims = {d for s in loop.body for a in s.args if id(a) not in inside for d in a.shape}
    return all(isinstance(d, int) or d in dims or d in given for d in loop.shape)


def schedule(stmts: list[Stmt], outputs=(), *, fuse: bool, tables: bool = True,
             known_dims=frozenset()) -> list:
    """The schedule of ``stmts``: a list of :class:`Line` and :class:`Loop` items.

    ``outputs``: values needed after these statements. ``fuse``: elementwise fusion (else loops
    only over the length of a re-rolled table). ``tables=False``: no loops at all (constant
    tables inline; the plain-Python trace of ``gradc explain``). ``known_dims``: symbolic
    dimensions whose size the caller can name (the arguments' dims).
    """
    lengths = {len(s.attr["value"]) for s in stmts if s.op == "const" and isinstance(s.attr["value"], tuple)}
    if not tables:
        return [Line(s) for s in stmts]
    if not lengths and not fuse:
        return [Line(s) for s in stmts]
    items = []
    for item in _gather(stmts, lengths, fuse, outputs):
        # a loop of aliases and broadcasts only computes nothing; a loop whose size cannot be named
        if isinstance(item, Loop) and ((all(OPS[s.op].loop in ("alias", "broadcast") for s in item.body)
                                        and not lengths) or not _nameable(item, set(known_dims))):
            items.extend(Line(s) for s in item.body)
        else:
            items.append(item)
    roots = alias_roots(items)
    for item in items:
        if not isinstance(item, Loop):
            continue
        # a loop calling the element kernels (exp/tanh/sigmoid) vectorizes, unless it accumulates a
        # scalar (a floating-point sum is not reassociated): such sums are taken after it instead
        if any(OPS[s.op].kernel and item.role(s) is Role.ELEM for s in item.body) \
                and not any(OPS[s.op].scalar_call is not None and OPS[s.op].scalar_call(s) for s in item.body):
            for s in item.body:
                if item.role(s) is Role.REDUCE and not s.out.shape:
                    item.roles[id(s.out)] = Role.SUM_AFTER
        for s in item.body:
            if id(s.out) in roots:
                item.roles[id(s.out)] = Role.ALIAS
    return items


def alias_roots(items) -> dict[int, int]:
    """An alias of a value of its own loop is that value under another name: alias id -> root id."""
    root: dict[int, int] = {}
    for item in items:
        if isinstance(item, Loop):
            for s in item.body:
                if OPS[s.op].loop == "alias" and (item.roles.get(id(s.args[0])) is Role.ELEM
                                                  or (id(s.args[0]) in root and id(s.args[0]) in item.roles)):
                    root[id(s.out)] = root.get(id(s.args[0]), id(s.args[0]))
    return root


def check_dependences(items, given=()) -> None:
    """Raise AssertionError unless every operand is defined before it is read: by an earlier
    item, by the same loop earlier in its body, or among ``given`` (arguments, saved values).
    A loop may not read its own sums or scatters (they are complete only after it)."""
    done = {id(v) for v in given}
    for item in items:
        if isinstance(item, Line):
            s = item.stmt
            assert all(id(a) in done for a in s.args), f"{s.op} %{s.out.name} reads a value not yet defined"
            done.add(id(s.out))
            continue
        seen = set()
        for s in item.body:
            role = item.role(s)
            for a in (loop_reads(s) if role is not Role.SCATTER_ADD else s.args):
                ok = id(a) in done or (id(a) in seen and (item.roles[id(a)] in (Role.ELEM, Role.ALIAS)
                                                          or role is Role.SCATTER_ADD))
                assert ok, f"{s.op} %{s.out.name} reads %{a.name} before it is complete"
            seen.add(id(s.out))
        done |= seen
