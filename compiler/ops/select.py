"""Comparisons (masks), boolean logic and ``where`` (piecewise select).

Masks are not differentiable. The adjoint of ``where(c, a, b)`` routes g to the
taken branch; the AD pass additionally re-applies the mask to every adjoint
computed inside a branch (see ``gradc.ad``), so a NaN or inf in the untaken
branch's derivative never reaches the gradient.
"""
from __future__ import annotations

import operator

from ..errors import ShapeError
from . import broadcast, compare_rule, float_dtype, fmt, like_out, need_float, register


def _bool_rule(args, attrs):
    for v in args:
        if v.dtype != "bool":
            raise ShapeError(f"{fmt(v)} must be a mask (a comparison)")
    return "bool", broadcast(*args)


def _where_rule(args, attrs):
    c, x, y = args
    if c.dtype != "bool":
        raise ShapeError(f"the condition {fmt(c)} must be a comparison such as x > 0")
    return float_dtype(x, y), broadcast(c, x, y)


for _name, _fn in (("lt", operator.lt), ("le", operator.le), ("gt", operator.gt), ("ge", operator.ge)):
    # spelled as the comparison operators < <= > >= in specs
    register(_name, compare_rule, None, fold=_fn, family="select", elementwise=True, loop=True)
register("logical_and", _bool_rule, None, family="select", elementwise=True, loop=True)
register("logical_or", _bool_rule, None, family="select", elementwise=True, loop=True)
register("logical_not", _bool_rule, None, family="select", elementwise=True, loop=True)
register("where", _where_rule,
         lambda b, s, g: [None, b.emit("where", s.args[0], g, 0.0), b.emit("where", s.args[0], 0.0, g)],
         "where: routes g to the taken branch", family="select",
         elementwise=True, loop=True, spelling="where", operands=("cond", "a", "b"),
         jvp=lambda b, s, ts: None if ts[1] is None and ts[2] is None else like_out(
             b, b.emit("where", s.args[0], 0.0 if ts[1] is None else ts[1], 0.0 if ts[2] is None else ts[2]), s))
