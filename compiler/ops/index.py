"""Basic slicing along one axis: ``x[1:]``, ``x[:-1]``, ``X[:, 2:5]``.

``slice(x; axis, start, stop)`` keeps the half-open range ``start:stop`` (step 1,
bounds normalised to ``0 <= start < stop <= n``) of a concrete-size axis. Its
adjoint pads the cotangent back with zeros (``unslice``), as in any reverse-mode
system (e.g. JAX's ``slice`` transpose rule is a pad).

``element(x; index)`` reads one element (a scalar) at a concrete index tuple; its
adjoint ``unelement(g, like; index)`` scatters g into zeros shaped like ``like``.
``pack(*scalars; shape)`` builds an array from scalars in C order (SymPy's
explicit ``Matrix``); its adjoint reads each element of the cotangent.
"""
from __future__ import annotations

import itertools
import math

from ..errors import ShapeError
from . import check_axis, float_dtype, fmt, need_float, register


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
         "slice: pads the gradient with zeros", family="index", view=True, linear=(0,))
register("unslice", _unslice_rule,
         lambda b, s, g: [b.emit("slice", g, **s.attr), None],
         "unslice: slices the gradient", family="index", loop="scatter", linear=(0,))


# ------------------------------------------------------------ single elements (issue 6: SymPy X[i, j], x[3])
def _index_ok(x, index) -> bool:
    return (isinstance(index, tuple) and len(index) == x.rank and x.rank > 0
            and all(isinstance(i, int) and isinstance(n, int) and 0 <= i < n for i, n in zip(index, x.shape)))


def _element_rule(args, attrs):
    (x,) = args
    need_float(x)
    if not _index_ok(x, attrs.get("index")):
        raise ShapeError(f"index {attrs.get('index')!r} is out of range for {fmt(x)}",
                         hint="one in-range integer per axis of concrete size")
    return x.dtype, ()


def _unelement_rule(args, attrs):
    g, like = args
    _element_rule([like], attrs)
    if g.shape != ():
        raise ShapeError(f"cotangent {fmt(g)} of an element must be a scalar")
    return like.dtype, like.shape


def _pack_rule(args, attrs):
    shape = attrs.get("shape")
    need_float(*args)
    if not (isinstance(shape, tuple) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
        raise ShapeError(f"pack needs a concrete shape, got {shape!r}")
    if len(args) != math.prod(shape) or any(a.shape for a in args):
        raise ShapeError(f"pack of shape {shape} needs {math.prod(shape)} scalars, got {len(args)}")
    return float_dtype(*args), shape


register("element", _element_rule,
         lambda b, s, g: [b.emit("unelement", g, s.args[0], **s.attr)],
         "element: scatters g into a zero array", family="index", linear=(0,))
register("unelement", _unelement_rule,
         lambda b, s, g: [b.emit("element", g, **s.attr), None],
         "unelement: reads the element of g", helpers=("unelement",), family="index",
         linear=(0,))
# an array from scalars in C order (SymPy's explicit Matrix); its adjoint reads each element of g
register("pack", _pack_rule,
         lambda b, s, g: [b.emit("element", g, index=idx) for idx in itertools.product(*map(range, s.out.shape))],
         "pack: each entry gets its element of g", family="index", linear=True)
