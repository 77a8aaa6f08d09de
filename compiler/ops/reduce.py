"""Reductions (sum, mean over the whole array or one axis) and their adjoint helpers.

``sum_to`` (sum leading axes away: the adjoint of rank-extension broadcasting),
``expand`` (broadcast a cotangent back to an operand's shape: the adjoint of a
sum) and ``size`` (an element count as a float, for means) exist mainly for
adjoint code but are ordinary ops with their own rules.
"""
from __future__ import annotations

from ..errors import ShapeError
from . import check_axis, fmt, need_float, register


def _reduced(v, axis):
    return () if axis is None else v.shape[:axis] + v.shape[axis + 1:]


def _reduce_rule(args, attrs):
    (x,) = args
    need_float(x)
    return "f64", _reduced(x, check_axis(x, attrs.get("axis")))


def _sum_to_rule(args, attrs):
    (x,) = args
    shape = tuple(attrs["shape"])
    if x.shape[len(x.shape) - len(shape):] != shape or len(shape) > len(x.shape):
        raise ShapeError(f"cannot sum {fmt(x)} down to [{','.join(map(str, shape))}]")
    return "f64", shape


def _expand_rule(args, attrs):
    g, like = args
    axis = check_axis(like, attrs.get("axis"))
    want = like.shape if axis is None else _reduced(like, axis)
    if axis is None and g.shape != like.shape[len(like.shape) - len(g.shape):]:
        raise ShapeError(f"cannot broadcast {fmt(g)} to the shape of {fmt(like)}")
    if axis is not None and g.shape != want:
        raise ShapeError(f"{fmt(g)} does not match {fmt(like)} reduced over axis {axis}")
    return "f64", like.shape


def _size_rule(args, attrs):
    check_axis(args[0], attrs.get("axis"))
    return "f64", ()


def _expand_vjp(b, s, g):
    axis = s.attr.get("axis")
    if axis is None:
        return [b.emit("sum_to", g, shape=s.args[0].shape), None]
    return [b.emit("sum", g, axis=axis), None]


register("sum", _reduce_rule,
         lambda b, s, g: [b.emit("expand", g, s.args[0], axis=s.attr.get("axis"))],
         "sum: copies g to every summed element", family="reduce")
register("mean", _reduce_rule,
         lambda b, s, g: [b.emit("expand", b.emit("div", g, b.emit("size", s.args[0], axis=s.attr.get("axis"))),
                                 s.args[0], axis=s.attr.get("axis"))],
         "mean: copies g/n to every element", family="reduce")
register("sum_to", _sum_to_rule, lambda b, s, g: [b.emit("expand", g, s.args[0])],
         "sum_to: broadcasts g back", family="reduce")
register("expand", _expand_rule, _expand_vjp, "expand: sums g back", family="reduce")
register("size", _size_rule, None, family="reduce")
