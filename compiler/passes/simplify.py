"""Algebraic simplification: x·1 → x, x+0 → x, x−0 → x, x/1 → x, −(−x) → x,
x¹ → x, (xᵀ)ᵀ → x, sum_to to the same shape → x.

A rewritten statement that carries a name worth keeping (an adjoint
contribution such as ``q_bar``, which has a rule note, or an output) becomes an
``alias`` of the surviving operand; other uses are redirected to the operand.
Also ``expand(g)·y → g·y`` for a scalar g (no array of copies of g). Rewrites apply only when the result has the operand's shape
(``x * 1.0`` with x a scalar and 1.0 an array is not an identity).
"""
from __future__ import annotations

from ..ir import Stmt
from .util import count_uses, substitute


def _const(v, defs):
    s = defs.get(id(v))
    return s.attr["value"] if s is not None and s.op == "const" else None


def _identity_operand(s, defs):
    """The operand ``s`` equals, or None."""
    a = s.args
    c = [_const(x, defs) for x in a]
    if s.op == "mul":
        if c[1] == 1.0:
            return a[0]
        if c[0] == 1.0:
            return a[1]
    elif s.op == "add":
        if c[1] == 0.0:
            return a[0]
        if c[0] == 0.0:
            return a[1]
    elif s.op in ("sub", "div") and c[1] == (0.0 if s.op == "sub" else 1.0):
        return a[0]
    elif s.op == "powc" and s.attr["p"] == 1.0:
        return a[0]
    elif s.op in ("neg", "transpose"):
        inner = defs.get(id(a[0]))
        if inner is not None and inner.op == s.op:
            return inner.args[0]
    elif s.op == "sum_to":
        return a[0]
    return None


def _scalar_expand(v, defs):
    """g if v = expand(g, like) with a scalar g and no axis, else None."""
    s = defs.get(id(v))
    if s is not None and s.op == "expand" and s.attr.get("axis") is None and not s.args[0].shape:
        return s.args[0]
    return None


def simplify(fn):
    defs = {}
    repl = {}
    outputs = {id(v) for v in fn.outputs}
    stmts = []
    for s in fn.stmts:
        args = tuple(repl.get(id(a), a) for a in s.args)
        if args != s.args:
            s = Stmt(s.op, args, s.out, s.attrs, s.loc, s.note, s.adjoint)
        if s.op == "mul":
            for i in (0, 1):
                g = _scalar_expand(args[i], defs)
                if g is not None and args[1 - i].shape == s.out.shape:
                    s = Stmt("mul", (g, args[1 - i]), s.out, s.attrs, s.loc, s.note, s.adjoint)
                    break
        keep = _identity_operand(s, defs)
        if keep is not None and keep.shape == s.out.shape and keep.dtype == s.out.dtype:
            if s.note or id(s.out) in outputs:
                s = Stmt("alias", (keep,), s.out, (), s.loc, s.note, s.adjoint)
            else:
                repl[id(s.out)] = keep
                continue
        defs[id(s.out)] = s
        stmts.append(s)
    stmts, outs = substitute(stmts, fn.outputs, repl)
    return fn.replace(stmts, outs)


def coalesce_aliases(fn):
    """Drop ``y = alias x`` when x is a temporary used only there: x's statement defines y instead.

    Keeps aliases of inputs, of outputs and of values used elsewhere, so
    ``x_bar = q_bar`` (fan-out to named values) stays readable. ``fn`` is not changed: the
    statement defining x is replaced by a new one defining the alias's value y.
    """
    uses = count_uses(fn)
    defs = {id(s.out): s for s in fn.stmts}
    named = {}                       # id(statement defining x) -> the alias naming it
    for s in fn.stmts:
        if s.op == "alias":
            src = defs.get(id(s.args[0]))
            if (src is not None and src.op not in ("alias", "const") and uses[id(src.out)] == 1
                    and src.adjoint == s.adjoint and (src.adjoint or not fn.differentiated)):
                named[id(src)] = s
    dropped = {id(a) for a in named.values()}
    stmts = []
    for s in fn.stmts:
        a = named.get(id(s))
        if a is not None:            # x was used only by the alias: nothing else refers to it
            s = Stmt(s.op, s.args, a.out, s.attrs, s.loc, s.note or a.note, s.adjoint)
        elif id(s) in dropped:
            continue
        stmts.append(s)
    return fn.replace(stmts)
