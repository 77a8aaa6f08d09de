"""Re-rolling: a long sum of scalar terms of one shape becomes a sum over an array.

Unrolled expressions such as ``Σ_k sin(a_k x + b_k y)·exp(−c_k z²)`` written out
term by term lower to thousands of straight-line scalar statements, and Numba's
compile time grows with every statement (and faster than linearly). This pass
finds the summands of the output's top-level ``add``/``sub`` tree, groups the
summands that are the same expression up to their numeric constants (operands
of ``add`` and ``mul`` may come in either order), and replaces each group of at
least :data:`MIN_GROUP` terms by ``sum(expr)`` where ``expr`` is that expression
applied elementwise to arrays: a constant that differs between the terms becomes
a constant table (a ``const`` whose value is a tuple, one entry per term), a
constant shared by all terms stays a scalar, and values computed outside the
terms (inputs, shared subexpressions such as ``x·y``) broadcast.

AD then differentiates ordinary array ops, and code generation renders the
statements on such tables as one loop (see :func:`gradc.codegen.render_stmts`),
so both sweeps stay small however many terms there are. The result is exact up
to the order of the summation.
"""
from __future__ import annotations

import heapq

from ..ir import Builder, Namer, Stmt

#: Fewest terms of one shape that are re-rolled into a loop.
MIN_GROUP = 8
#: Largest term (in expression-tree nodes) considered.
MAX_TERM = 400
#: Scalar elementwise ops a re-rolled term may contain.
ROLLABLE = frozenset({"add", "sub", "mul", "div", "neg", "powc", "pow", "exp", "log", "sqrt", "sin", "cos",
                      "tan", "tanh", "sigmoid", "relu", "abs", "maximum", "minimum", "leaky_relu", "elu",
                      "softplus", "log_sigmoid", "alias"})
_COMMUTATIVE = frozenset({"add", "mul", "maximum", "minimum"})


def _summands(fn, defs, uses):
    """[(sign, value)] of the output's add/sub tree (inner nodes used once), and its inner stmts."""
    out = fn.outputs[0]
    leaves, inner = [], []
    stack = [(1, out)]
    while stack:
        sign, v = stack.pop()
        s = defs.get(id(v))
        if (s is not None and s.op in ("add", "sub") and not v.shape and v.dtype == "f64"
                and (v is out or uses.get(id(v), 0) == 1) and all(not a.shape for a in s.args)):
            inner.append(s)
            stack.append((sign if s.op == "add" else -sign, s.args[1]))
            stack.append((sign, s.args[0]))
        else:
            leaves.append((sign, v))
    return leaves, inner


def _term(v, defs, index, uses):
    """The statements computed only for the summand ``v`` (its exclusive subgraph), or None."""
    s = defs.get(id(v))
    if s is None or s.op not in ROLLABLE:
        return None
    inside: dict[int, int] = {}
    members = {id(v)}
    heap = [(-index[id(v)], id(v), v)]
    while heap:
        _, _, w = heapq.heappop(heap)
        for a in defs[id(w)].args:
            d = defs.get(id(a))
            if d is None or d.op == "const" or a.shape or a.dtype != "f64" or id(a) in members:
                continue
            inside[id(a)] = inside.get(id(a), 0) + 1
            if inside[id(a)] == uses[id(a)] and d.op in ROLLABLE:
                members.add(id(a))
                heapq.heappush(heap, (-index[id(a)], id(a), a))
        if len(members) > MAX_TERM:
            return None
    return members


class _Shape:
    """The canonical tree of one term: ``key`` (its shape, constants left out) and
    ``consts`` (the constants in the order the canonical tree visits them)."""

    def __init__(self, v, defs, members):
        self.defs, self.members = defs, members
        self.size = 0
        self.key = self._key(v)

    def _key(self, v):
        self.size += 1
        if self.size > MAX_TERM:
            raise OverflowError
        s = self.defs.get(id(v))
        if s is not None and s.op == "const" and not v.shape:
            return "C"
        if id(v) not in self.members:
            if v.shape or v.dtype != "f64":
                raise OverflowError           # an array operand: not a scalar term
            return f"%{v.name}"
        kids = [self._key(a) for a in s.args]
        if s.op in _COMMUTATIVE:
            kids.sort()
        attrs = ",".join(f"{k}={val!r}" for k, val in s.attrs)
        return f"{s.op}{{{attrs}}}({','.join(kids)})"


def _consts(v, defs, members, out):
    """The term's constants in canonical-tree order (must follow :meth:`_Shape._key`'s order)."""
    s = defs.get(id(v))
    if s is not None and s.op == "const" and not v.shape:
        out.append(s.attr["value"])
        return
    if id(v) not in members:
        return
    args = list(s.args)
    if s.op in _COMMUTATIVE:
        keys = [_Shape(a, defs, members).key for a in args]
        args = [a for _, a in sorted(zip(keys, args), key=lambda p: p[0])]
    for a in args:
        _consts(a, defs, members, out)


def _rebuild(b, v, defs, members, slots):
    """Emit the term rooted at ``v`` with its constants taken from ``slots`` (an iterator of
    scalar constants or tables), in the canonical order."""
    s = defs.get(id(v))
    if s is not None and s.op == "const" and not v.shape:
        return next(slots)
    if id(v) not in members:
        return v
    args = list(s.args)
    if s.op in _COMMUTATIVE:
        keys = [_Shape(a, defs, members).key for a in args]
        args = [a for _, a in sorted(zip(keys, args), key=lambda p: p[0])]
    vals = [_rebuild(b, a, defs, members, slots) for a in args]
    b.hint = s.out.name
    return b.emit(s.op, *vals, **dict(s.attrs))


def _fold_signs(fn, uses):
    """``a - c·w`` → ``a + (−c)·w`` and ``−(c·w)`` → ``(−c)·w`` for a scalar constant c and a
    product used once (exact: negation is exact), so terms whose coefficients differ in sign
    (SymPy writes ``0.3x − 0.8y`` with a ``sub``) have one shape."""
    defs = {id(s.out): s for s in fn.stmts}

    def scaled(v):
        d = defs.get(id(v))
        if d is None or d.op != "mul" or v.shape or v.dtype != "f64" or uses.get(id(v)) != 1:
            return None
        for i in (0, 1):
            c = defs.get(id(d.args[i]))
            if c is not None and c.op == "const" and not d.args[i].shape and d.args[i].dtype == "f64":
                return i, c.attr["value"], d
        return None

    if not any(s.op in ("sub", "neg") and scaled(s.args[-1]) for s in fn.stmts):
        return fn
    namer = Namer()
    for v in fn.inputs:
        namer.claim(v.name)
    for s in fn.stmts:
        namer.claim(s.out.name)
    b = Builder(namer, [])
    replaced = {id(s.args[-1]) for s in fn.stmts if s.op in ("sub", "neg") and scaled(s.args[-1])}
    for s in fn.stmts:
        if id(s.out) in replaced:                # the product c·w, rebuilt below as (−c)·w
            continue
        hit = scaled(s.args[-1]) if s.op in ("sub", "neg") else None
        if hit is None:
            b.stmts.append(s)
            continue
        i, c, d = hit
        w = d.args[1 - i]
        b.hint = d.out.name
        prod = b.emit("mul", b.const(-c), w) if i == 0 else b.emit("mul", w, b.const(-c))
        if s.op == "neg":
            b.stmts.append(Stmt("alias", (prod,), s.out, (), s.loc, s.note, s.adjoint))
        else:
            b.stmts.append(Stmt("add", (s.args[0], prod), s.out, (), s.loc, s.note, s.adjoint))
    return fn.replace(b.stmts)


def reroll(fn, min_group: int = MIN_GROUP):
    """Re-roll groups of like summands of ``fn``'s output into array sums (see the module doc).

    Returns ``fn`` itself when nothing qualifies."""
    out = fn.outputs[0]
    if out.shape or out.dtype != "f64" or fn.differentiated:
        return fn

    def count_uses(fn):
        uses: dict[int, int] = {}
        for s in fn.stmts:
            for a in s.args:
                uses[id(a)] = uses.get(id(a), 0) + 1
        for v in fn.outputs:
            uses[id(v)] = uses.get(id(v), 0) + 1
        return uses

    original = fn
    defs = {id(s.out): s for s in fn.stmts}
    uses = count_uses(fn)
    leaves, inner = _summands(fn, defs, uses)
    if len(leaves) < min_group:
        return fn
    fn = _fold_signs(fn, uses)
    defs = {id(s.out): s for s in fn.stmts}
    index = {id(s.out): i for i, s in enumerate(fn.stmts)}
    uses = count_uses(fn)
    leaves, inner = _summands(fn, defs, uses)
    groups: dict[tuple, list] = {}
    order = []
    for sign, v in leaves:
        members = _term(v, defs, index, uses)
        if members is None:
            continue
        try:
            key = _Shape(v, defs, members).key
        except OverflowError:
            continue
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append((sign, v, members))
    rolled = [k for k in order if len(groups[k]) >= min_group]
    if not rolled:
        return original

    namer = Namer()
    for v in fn.inputs:
        namer.claim(v.name)
    for s in fn.stmts:
        if s.out is not out:
            namer.claim(s.out.name)
    b = Builder(namer, [])
    done = set()
    parts = []                                   # (sign, value) of the new top-level sum
    for key in rolled:
        terms = groups[key]
        tables = []
        signs = [float(sign) for sign, _, _ in terms]
        for _, v, members in terms:
            cs = []
            _consts(v, defs, members, cs)
            tables.append(cs)
        slots = []
        for column in zip(*tables):
            if all(c == column[0] for c in column):
                slots.append(b.const(column[0]))
            else:
                values = tuple(float(c) for c in column)
                b.hint = "table"
                slots.append(b.emit("const", value=values, shape=(len(values),), name="table"))
        _, rep_v, rep_members = terms[0]
        body = _rebuild(b, rep_v, defs, rep_members, iter(slots))
        sign = signs[0]
        if any(x != sign for x in signs):        # terms added and subtracted: a table of signs
            b.hint = "sign"
            body = b.emit("mul", body, b.emit("const", value=tuple(signs), shape=(len(signs),), name="sign"))
            sign = 1.0
        if not body.shape:                       # no constant varies: n copies of one term
            total = b.emit("mul", body, float(len(terms)))
        else:
            total = b.emit("sum", body, name=f"{rep_v.name}_sum")
        parts.append((sign, total))
        done.update(id(v) for _, v, _ in terms)
    for sign, v in leaves:                       # the other summands, in their order
        if id(v) not in done:
            parts.append((sign, v))
    parts.sort(key=lambda p: -p[0])              # a leading positive term if there is one
    sign, acc = parts[0]
    if sign < 0:
        acc = b.emit("neg", acc)
    for k, (sign, v) in enumerate(parts[1:]):
        name = out.name if k == len(parts) - 2 else None
        acc = b.emit("add" if sign > 0 else "sub", acc, v, name=name)
    if len(parts) == 1:
        acc = b.emit("alias", acc, name=out.name)
    dead = {id(s.out) for s in inner}
    stmts = [s for s in fn.stmts if id(s.out) not in dead] + b.stmts
    return fn.replace(stmts, [acc] + list(fn.outputs[1:]))

