"""Basic slicing along one axis: ``x[1:]``, ``x[:-1]``, ``X[:, 2:5]``.

``slice(x; axis, start, stop)`` keeps the half-open range ``start:stop`` (step 1,
bounds normalised to ``0 <= start < stop <= n``) of a concrete-size axis. Its
adjoint pads the cotangent back with zeros (``unslice``), as in any reverse-mode
system (e.g. JAX's ``slice`` transpose rule is a pad).
"""
from __future__ import annotations

from ..errors import ShapeError
from . import check_axis, fmt, need_float, register


def _slice_rule(args, attrs):
    (x,) = args
    need_float(x)
    axis = check_axis(x, attrs["axis"])
    if axis is None:
        raise ShapeError("a slice needs an axis")
    n = x.shape[axis]
    start, stop = attrs["start"], attrs["stop"]
    if not isinstance(n, int):
        raise ShapeError(f"cannot slice the symbolic dimension '{n}' of {fmt(x)}",
                         hint="slice an axis of concrete size, or take the whole axis with ':'")
    if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start < stop <= n):
        raise ShapeError(f"slice {start}:{stop} of axis {axis} of {fmt(x)} is empty or out of range")
    return x.dtype, x.shape[:axis] + (stop - start,) + x.shape[axis + 1:]


def _unslice_rule(args, attrs):
    g, like = args
    dtype, shape = _slice_rule([like], attrs)
    if g.shape != shape:
        raise ShapeError(f"cotangent {fmt(g)} does not match the slice of {fmt(like)}")
    return like.dtype, like.shape


register("slice", _slice_rule,
         lambda b, s, g: [b.emit("unslice", g, s.args[0], **s.attr)],
         "slice: pads the gradient with zeros", family="index")
register("unslice", _unslice_rule,
         lambda b, s, g: [b.emit("slice", g, **s.attr), None],
         "unslice: slices the gradient", family="index")
