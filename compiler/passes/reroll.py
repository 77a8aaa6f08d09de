"""Re-rolling: a long sum of scalar terms of one shape becomes a sum over an array.

Unrolled expressions such as ``Σ_k sin(a_k x + b_k y)·exp(−c_k z²)`` written out
term by term lower to thousands of straight-line scalar statements, and Numba's
compile time grows with every statement (and faster than linearly). This pass
finds the summands of the output's top-level ``add``/``sub`` tree, groups the
summands that are the same expression up to their numeric constants and signs
(compared in a canonical form, see :func:`_canon`: each term read as a tree, whatever it
shares with other terms because some of their constants coincide; the term written
``c · product``; sums and products flattened, their
operands sorted, signs moved into constant factors, a coefficient 1 and a constant
summand 0 written out), and replaces each group of at
least :data:`MIN_GROUP` terms by ``sum(expr)`` where ``expr`` is that expression
applied elementwise to arrays: a constant that differs between the terms becomes
a constant table (a ``const`` whose value is a tuple, one entry per term), a
constant shared by all terms stays a scalar, and the parts of a term that hold no
varying constant (inputs, ``x·y``) stay scalars, computed once, that broadcast. The
statements of the replaced terms go (dead-code elimination) unless something else uses them.

AD then differentiates ordinary array ops, and the back end schedules the
statements on such tables as one loop (:mod:`gradc.backend.schedule`, with or without
fusion), so both sweeps stay small however many terms there are. The result is exact up
to the order of the sums and products inside a term and of the summation (rounding).
A coefficient that is ±1 in every term is left out again (``sub`` for −1); one that
is ±1 in some terms only becomes a table of signs.
"""
from __future__ import annotations

import math
from fractions import Fraction

from ..ir import Builder, Namer
from ..ops import OPS
from .dce import dce
from .util import count_uses

#: Fewest terms of one shape that are re-rolled into a loop.
MIN_GROUP = 8
#: Largest term (in expression-tree nodes) considered.
MAX_TERM = 400


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


def _sizes(fn):
    """``{id(value): n}`` for every scalar float64 value a term may contain (a rollable op):
    ``n`` is the size of its expression *tree*, shared subexpressions counted once per use,
    an operand larger than :data:`MAX_TERM` counted as 1 (it is a leaf of the term); capped
    at ``MAX_TERM + 1``."""
    size: dict[int, int] = {}
    for s in fn.stmts:
        if OPS[s.op].rollable and not s.out.shape and s.out.dtype == "f64":
            n = 1 + sum(k if k <= MAX_TERM else 1 for k in (size.get(id(a), 1) for a in s.args))
            size[id(s.out)] = min(n, MAX_TERM + 1)
    return size


_NUMBER = (int, float, Fraction)


def _num_text(x) -> str:
    """An attribute in a term's key: numbers by value (``Fraction(2, 1)``, ``2`` and ``2.0`` alike)."""
    if isinstance(x, _NUMBER) and not isinstance(x, bool):
        return repr(float(x))
    return repr(x)


def _int_parity(p):
    """0 or 1 for an even or odd integer exponent, None for any other."""
    if isinstance(p, _NUMBER) and not isinstance(p, bool) and math.isfinite(p) and p == int(p):
        return int(p) % 2
    return None


class _Node:
    """One node of a term's canonical tree.

    ``kind`` is ``"C"`` (a scalar constant, ``value``), ``"%"`` (a value computed outside the
    term, ``value``), ``"sum"`` (an n-ary sum of ``kids``), ``"mul"`` (an n-ary product of
    ``kids``) or an op name (``kids`` its operands; ``attrs``). ``key`` is the shape: the tree
    without its constants. ``name`` is the name of the statement the node came from (a name
    hint for the rebuilt statement).
    """

    __slots__ = ("kind", "value", "kids", "attrs", "key", "name")

    def __init__(self, kind, value=None, kids=(), attrs=(), name="t"):
        self.kind, self.value, self.kids, self.attrs, self.name = kind, value, kids, attrs, name
        if kind in ("C", "%"):
            self.key = "C" if kind == "C" else f"%{value.name}"
        else:
            text = ",".join(f"{n}={_num_text(x)}" for n, x in attrs)
            self.key = f"{kind}{{{text}}}(" + ",".join(k.key for k in kids) + ")"


def _const(value):
    return _Node("C", value=value)


def _key(node):
    return node.key


def _absorb(sign, node):
    """``(sign, node)`` with a negative sign moved into a constant, or a constant factor of a
    product or quotient, where there is one (exact: negation is exact); else as it was."""
    if sign > 0:
        return sign, node
    if node.kind == "C":
        return 1, _const(-node.value)
    if node.kind in ("mul", "div"):
        for i, kid in enumerate(node.kids):
            if kid.kind == "C":
                kids = list(node.kids)
                kids[i] = _const(-kid.value)
                return 1, _Node(node.kind, kids=kids, name=node.name)
    return sign, node


def _scaled(sign, node):
    """``sign · node`` as a summand (of a sum, or of the top-level sum): a constant, or a product
    with a constant factor (``x`` becomes ``1·x``, ``−x`` becomes ``(−1)·x``), so that a
    coefficient SymPy folded away (a data value of ±1; ``t + t`` merged into ``2·t``) or a sign
    matches a coefficient of the other terms; the factors ±1 are left out again when the terms
    are rebuilt."""
    sign, node = _absorb(sign, node)
    if node.kind == "C" or (node.kind == "mul" and any(k.kind == "C" for k in node.kids)):
        return node
    kids = list(node.kids) if node.kind == "mul" else [node]
    return _Node("mul", kids=sorted(kids + [_const(float(sign))], key=_key), name=node.name)


def _affine(sign, node):
    """``sign · node`` as an operand of a function, a power or a quotient: a constant, or a sum
    ``c₀ + Σ cᵢ·productᵢ`` (:func:`_scaled` summands), so that a constant summand 0 SymPy left
    out (``sin(a·x)`` beside ``sin(a·x + d)``) matches too; a sign goes into the summands'
    constants (exact). A constant summand 0 is left out again when the terms are rebuilt."""
    if node.kind == "sum":
        return _Node("sum", kids=[_absorb(sign, k)[1] for k in node.kids], name=node.name)
    if node.kind == "C":
        return _absorb(sign, node)[1]
    return _Node("sum", kids=sorted([_const(0.0), _scaled(sign, node)], key=_key), name=node.name)


def _canon(v, defs, size):
    """``(sign, node)``: the term rooted at ``v`` as ``sign · node`` in canonical form.

    The term is read as a tree: a subexpression shared with other terms or used twice (SymPy
    builds one node for ``a·x`` in every term whose ``a`` is the same) is unfolded like any
    other, so sharing, which follows from coincidences among the constants, never shows in
    the key. Only operands that are not rollable scalar expressions of at most
    :data:`MAX_TERM` nodes (inputs, array elements, large subexpressions) are leaves.

    Sums (``add``/``sub``/``neg`` trees) and products (``mul`` trees) are flattened and their
    operands sorted by key; signs move outwards through ``neg``, ``mul``, ``div``, ``abs`` and
    integer ``powc`` (exact rewrites) into a constant factor where there is one; the summands
    of a sum are written ``c · product`` (:func:`_scaled`), a sum without a constant summand
    gets one, 0, and the operands of a function, a power or a quotient are such sums
    (:func:`_affine`). So SymPy's
    canonical forms of terms that differ only in their numbers (``c·x − y`` beside
    ``c·x + y``, ``−(u)·v`` beside ``u·v``, ``k − w`` beside ``−k − w``, ``a`` beside ``c·a``
    and ``u`` beside ``u + k`` where a data value was 1 or 0, sums whose operands SymPy orders
    by their coefficients) get one key.
    """
    s = defs.get(id(v))
    if s is not None and s.op == "const" and not v.shape:
        if v.dtype != "f64":
            raise OverflowError
        return 1, _const(s.attr["value"])
    if size.get(id(v), MAX_TERM + 1) > MAX_TERM:
        if v.shape or v.dtype != "f64":
            raise OverflowError               # an array operand: not a scalar term
        return 1, _Node("%", value=v)
    op, name = s.op, s.out.name
    if op == "alias":
        return _canon(s.args[0], defs, size)
    if op == "neg":
        sign, n = _canon(s.args[0], defs, size)
        return _absorb(-sign, n)
    if op in ("add", "sub"):
        kids = []
        for a, sa in zip(s.args, (1, 1 if op == "add" else -1)):
            sign, n = _canon(a, defs, size)
            for kid in (n.kids if n.kind == "sum" else [n]):
                kids.append(_scaled(sign * sa, kid))
        if not any(k.kind == "C" for k in kids):     # a constant summand of 0 SymPy left out
            kids.append(_const(0.0))
        return 1, _Node("sum", kids=sorted(kids, key=_key), name=name)
    if op == "div":                                  # x/y beside 2·x/y, x/(c·y) beside x/y
        return 1, _Node(op, kids=[_affine(*_canon(a, defs, size)) for a in s.args], name=name)
    if op == "mul":
        pairs = [_canon(a, defs, size) for a in s.args]
        kids = []
        for _, n in pairs:
            kids.extend(n.kids if n.kind == "mul" else [n])
        return _absorb(pairs[0][0] * pairs[1][0], _Node(op, kids=sorted(kids, key=_key), name=name))
    parity = _int_parity(s.attr.get("p")) if op == "powc" else None
    if op == "abs" or parity is not None:
        sign, n = _canon(s.args[0], defs, size)
        return (sign if parity == 1 else 1), _Node(op, kids=[_affine(1, n)], attrs=s.attrs, name=name)
    kids = [_affine(*_canon(a, defs, size)) for a in s.args]
    if OPS[op].commutative:
        kids.sort(key=_key)
    return 1, _Node(op, kids=kids, attrs=s.attrs, name=name)


def _slots(node, out):
    """The term's constants in canonical-tree order (must follow :func:`_emit`'s order)."""
    if node.kind == "C":
        out.append(node.value)
    for kid in node.kids:
        _slots(kid, out)
    return out


def _emit(b, node, slots):
    """Emit the canonical tree ``node`` with its constants taken from ``slots`` (an iterator,
    in :func:`_slots`' order, of numbers shared by all terms and of tables). Returns
    ``(sign, value)``: a shared factor ±1 of a product is left out, its sign returned."""
    if node.kind == "C":
        c = next(slots)
        return 1, (b.const(c) if isinstance(c, _NUMBER) else c)
    if node.kind == "%":
        return 1, node.value
    if node.kind == "mul":
        sign, vals = 1, []
        for kid in node.kids:
            if kid.kind == "C":
                c = next(slots)
                if isinstance(c, _NUMBER) and abs(c) == 1:
                    sign *= 1 if c > 0 else -1
                    continue
                vals.append(b.const(c) if isinstance(c, _NUMBER) else c)
            else:
                s, v = _emit(b, kid, slots)
                sign *= s
                vals.append(v)
        b.hint = node.name
        if not vals:
            return sign, b.const(1.0)
        acc = vals[0]
        for v in vals[1:]:
            acc = b.emit("mul", acc, v)
        return sign, acc
    parts = []
    for kid in node.kids:
        if node.kind == "sum" and kid.kind == "C":     # a constant summand: left out if 0
            c = next(slots)
            if not isinstance(c, _NUMBER) or c != 0:
                parts.append((1, b.const(c) if isinstance(c, _NUMBER) else c))
            continue
        parts.append(_emit(b, kid, slots))
    b.hint = node.name
    if node.kind == "sum":
        if not parts:                                  # constant summands only, all 0
            return 1, b.const(0.0)
        first = next((k for k, (sign, _) in enumerate(parts) if sign > 0), 0)
        acc = parts[first][1] if parts[first][0] > 0 else b.emit("neg", parts[first][1])
        for k, (sign, v) in enumerate(parts):
            if k != first:
                acc = b.emit("add" if sign > 0 else "sub", acc, v)
        return 1, acc
    if node.kind == "div":
        (s0, x), (s1, y) = parts
        return s0 * s1, b.emit("div", x, y)
    parity = _int_parity(dict(node.attrs).get("p")) if node.kind == "powc" else None
    if node.kind == "abs" or parity is not None:   # as in _canon: the sign of the operand moves out
        (s0, x), = parts
        return (s0 if parity == 1 else 1), b.emit(node.kind, x, **dict(node.attrs))
    args = [v if sign > 0 else b.emit("neg", v) for sign, v in parts]
    return 1, b.emit(node.kind, *args, **dict(node.attrs))


def reroll(fn, min_group: int = MIN_GROUP):
    """Re-roll groups of like summands of ``fn``'s output into array sums (see the module doc).

    Returns ``fn`` itself when nothing qualifies."""
    out = fn.outputs[0]
    if out.shape or out.dtype != "f64" or fn.differentiated:
        return fn
    defs = {id(s.out): s for s in fn.stmts}
    leaves, inner = _summands(fn, defs, count_uses(fn))
    if len(leaves) < min_group:
        return fn
    size = _sizes(fn)
    groups: dict[str, list] = {}
    for sign, v in leaves:
        if size.get(id(v), MAX_TERM + 1) > MAX_TERM:
            continue
        try:
            tsign, node = _canon(v, defs, size)
        except OverflowError:
            continue
        # the term itself as c · product: a coefficient SymPy merged (2·t for t + t) or left out
        # (a data value of 1), and the sign it was added with, become the constant c
        node = _scaled(sign * tsign, node)
        groups.setdefault(node.key, []).append((v, node))
    rolled = [k for k, terms in groups.items() if len(terms) >= min_group]   # in order of first term
    if not rolled:
        return fn

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
        slots = []                               # a number shared by all the terms, or a table
        for column in zip(*[_slots(node, []) for _, node in terms]):
            if all(c == column[0] for c in column):
                slots.append(column[0])
            else:
                b.hint = "sign" if all(abs(c) == 1 for c in column) else "table"
                slots.append(b.emit("const", value=tuple(float(c) for c in column), shape=(len(column),),
                                    name=b.hint))
        rep_v, rep_node = terms[0]
        sign, body = _emit(b, rep_node, iter(slots))
        if not body.shape:                       # no constant varies: n copies of one term
            total = b.emit("mul", body, float(len(terms)))
        else:
            total = b.emit("sum", body, name=f"{rep_v.name}_sum")
        parts.append((sign, total))
        done.update(id(v) for v, _ in terms)
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
    inner = {id(s.out) for s in inner}           # the old sum; the rolled terms' statements are
    stmts = [s for s in fn.stmts if id(s.out) not in inner] + b.stmts   # dropped by dce unless
    return dce(fn.replace(stmts, [acc] + list(fn.outputs[1:])))          # something else uses them
