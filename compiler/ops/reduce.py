"""Reductions (sum, mean over the whole array or one axis) and their adjoint helpers.

``sum_to`` (sum leading axes away: the adjoint of rank-extension broadcasting),
``expand`` (broadcast a cotangent back to an operand's shape: the adjoint of a
sum) and ``size`` (an element count as a float, for means) exist mainly for
adjoint code but are ordinary ops with their own rules.

Pooling over one axis ``a`` (lecture notes, XJTLU INT305 "Exercise 1: pooling
units"; the result is ``x``'s shape without axis ``a``, float64; n = size of axis a):

* ``max_pool(x; axis)``: ``y = max_i x_i``; the adjoint routes g to the
  maximum, **ties to the first** (lowest index) maximum, like the max gate.
* ``lp_pool(x; p, axis)``: ``y = (Σ_i x_i^p)^(1/p)`` for positive inputs and
  p > 0, computed as ``s (Σ_i (x_i/s)^p)^(1/p)`` with ``s = max_i |x_i|`` (no
  overflow for large x or p); adjoint ``x'_i = y' (x_i / y)^(p-1)``.
* ``logavg_pool(x; beta, axis)``: ``y = (1/β) ln((1/n) Σ_i exp(β x_i))`` for
  β ≠ 0, computed with the log-sum-exp shift ``M = max_i β x_i``; adjoint
  ``x'_i = y' softmax(βx)_i = y' exp(β (x_i - y)) / n`` (bounded by y' since
  β(x_i - y) ≤ ln n).

``maxout(z; k)`` (Goodfellow et al. 2013, "Maxout Networks"; the notes'
``max(w_1ᵀx + b_1, w_2ᵀx + b_2)``): the last axis of ``z: f64[..., k·m]`` is
split into k **contiguous pieces of m columns** (piece q holds columns
``q·m .. q·m + m - 1``), so ``z = x @ [W_1 | W_2 | ... | W_k] + [b_1 | ... | b_k]``
gives ``out[..., j] = max_q z[..., q·m + j]``, shape ``[..., m]``. k must be a
positive integer dividing the (concrete) width. The adjoint routes g to the
winning piece, **ties to the first** piece.

The adjoints are fused loops too: ``max_pool_vjp``, ``maxout_vjp`` (routing),
``lp_pool_vjp`` and ``logavg_pool_vjp`` (the closed forms above, given x and the
pooled result y); they exist for adjoint code only and are not differentiable.
The loops are helper functions of the generated module
(``templates/ops/reduce.j2``): one loop over a ``[pre, n, post]`` view serves
every rank and axis, and compiles far faster in Numba than the equivalent
broadcast array expressions.
"""
from __future__ import annotations

import math

from ..errors import ShapeError
from . import Const, check_axis, float_dtype, fmt, need_float, reduction_jvp, register, zero_jvp

#: ``axis=`` of sum, mean and logsumexp in specs: None reduces the whole array
AXIS = Const("axis", "int", None)
#: ``axis=`` of pooling in specs: over the columns by default
POOL_AXIS = Const("axis", "int", 1)


def _reduced(v, axis):
    return () if axis is None else v.shape[:axis] + v.shape[axis + 1:]


def _reduce_rule(args, attrs):
    (x,) = args
    need_float(x)
    return x.dtype, _reduced(x, check_axis(x, attrs.get("axis")))


def _sum_to_rule(args, attrs):
    (x,) = args
    shape = tuple(attrs["shape"])
    if x.shape[len(x.shape) - len(shape):] != shape or len(shape) > len(x.shape):
        raise ShapeError(f"cannot sum {fmt(x)} down to [{','.join(map(str, shape))}]")
    return x.dtype, shape


def _expand_rule(args, attrs):
    g, like = args
    axis = check_axis(like, attrs.get("axis"))
    want = like.shape if axis is None else _reduced(like, axis)
    if axis is None and g.shape != like.shape[len(like.shape) - len(g.shape):]:
        raise ShapeError(f"cannot broadcast {fmt(g)} to the shape of {fmt(like)}")
    if axis is not None and g.shape != want:
        raise ShapeError(f"{fmt(g)} does not match {fmt(like)} reduced over axis {axis}")
    return g.dtype, like.shape


def _size_rule(args, attrs):
    check_axis(args[0], attrs.get("axis"))
    # the element count in the array's float dtype: dividing a float32 adjoint by it stays float32
    return args[0].dtype if args[0].dtype in ("f64", "f32") else "f64", ()


def _expand_vjp(b, s, g):
    axis = s.attr.get("axis")
    if axis is None:
        return [b.emit("sum_to", g, shape=s.args[0].shape), None]
    return [b.emit("sum", g, axis=axis), None]


register("sum", _reduce_rule,
         lambda b, s, g: [b.emit("expand", g, s.args[0], axis=s.attr.get("axis"))],
         "sum: copies g to every summed element", helpers=("sum_axis",), family="reduce",
         loop="reduce", spelling="sum", keywords=(AXIS,), linear=(0,))
register("mean", _reduce_rule,
         lambda b, s, g: [b.emit("expand", b.emit("div", g, b.emit("size", s.args[0], axis=s.attr.get("axis"))),
                                 s.args[0], axis=s.attr.get("axis"))],
         "mean: copies g/n to every element", helpers=("sum_axis",), family="reduce",
         spelling="mean", keywords=(AXIS,), linear=(0,))
register("sum_to", _sum_to_rule, lambda b, s, g: [b.emit("expand", g, s.args[0])],
         "sum_to: broadcasts g back", helpers=("sum_axis",), family="reduce", loop="reduce",
         view=True, linear=(0,))
register("expand", _expand_rule, _expand_vjp, "expand: sums g back", family="reduce", loop="broadcast",
         linear=(0,))
register("size", _size_rule, None, family="reduce", jvp=zero_jvp)


# ------------------------------------------------------------ pooling and maxout (issue 3)
def _pool_rule(const: str | None = None):
    def rule(args, attrs):
        (x,) = args
        need_float(x)
        if x.rank == 0:
            raise ShapeError(f"cannot pool the scalar {fmt(x)}", hint="pooling needs an array")
        axis = attrs.get("axis")
        if axis is None:
            raise ShapeError("pooling needs an axis")
        axis = check_axis(x, axis)
        if const is not None:
            value = attrs.get(const)
            if not isinstance(value, float) or not math.isfinite(value):
                raise ShapeError(f"{const} must be a finite number, got {value!r}")
            if const == "p" and value <= 0:
                raise ShapeError(f"p must be positive, got p = {value!r}",
                                 hint="L_p pooling (sum x_i^p)^(1/p) is defined for p > 0")
            if const == "beta" and value == 0:
                raise ShapeError("beta must not be 0",
                                 hint="(1/beta) ln(mean(exp(beta x))) tends to mean(x) as beta -> 0; use mean(x, axis=...)")
        return x.dtype, _reduced(x, axis)
    return rule


def _pool_vjp_rule(args, attrs):
    g, x = args
    need_float(g, x)
    axis = check_axis(x, attrs.get("axis"))
    if g.shape != _reduced(x, axis):
        raise ShapeError(f"{fmt(g)} does not match {fmt(x)} reduced over axis {axis}")
    return float_dtype(g, x), x.shape


def _maxout_width(z, k) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ShapeError(f"k must be a positive integer, got k = {k!r}")
    need_float(z)
    if z.rank == 0:
        raise ShapeError(f"cannot split the scalar {fmt(z)} into pieces")
    width = z.shape[-1]
    if not isinstance(width, int):
        raise ShapeError(f"the last dimension of {fmt(z)} is the symbolic '{width}'; maxout needs a "
                         f"concrete width to split into k = {k} pieces", hint="declare that dimension as a number")
    if width % k:
        raise ShapeError(f"k = {k} does not divide the width {width} of {fmt(z)}",
                         hint="the last dimension must be k * m for m outputs")
    return width // k


def _maxout_rule(args, attrs):
    (z,) = args
    m = _maxout_width(z, attrs.get("k"))
    return z.dtype, z.shape[:-1] + (m,)


def _maxout_vjp_rule(args, attrs):
    g, z = args
    m = _maxout_width(z, attrs.get("k"))
    if g.shape != z.shape[:-1] + (m,):
        raise ShapeError(f"cotangent {fmt(g)} does not match maxout of {fmt(z)} with k = {attrs['k']}")
    return float_dtype(g, z), z.shape


def _pool_vjp_with_result_rule(args, attrs):
    g, x, y = args
    if y.shape != g.shape:
        raise ShapeError(f"the pooled result {fmt(y)} and its cotangent {fmt(g)} differ in shape")
    return _pool_vjp_rule([g, x], attrs)


def _axis(s):
    return s.attr.get("axis")


def _weights_jvp(b, s, ts, c, by_ratio):
    """The JVP of ``lp_pool_vjp(g, x, y) = G w`` (w = (x/Y)^(p-1), ``by_ratio``) and of
    ``logavg_pool_vjp(g, x, y) = G w`` (w = exp(β(x - Y))/n), G and Y broadcast along the axis:
    ``G' w + G dw``, with ``dw = (p - 1) w (x'/x - Y'/Y)`` (for x, y > 0, lp pooling's domain) and
    ``dw = β w (x' - Y')``. The weights w are the op itself applied to ones."""
    tg, tx, ty = ts
    g, x, y = s.args
    axis = s.attr["axis"]
    total = b.emit(s.op, tg, x, y, **s.attr) if tg is not None else None
    if tx is None and ty is None:
        return total
    w = b.emit(s.op, b.emit("expand", b.const(1.0, dtype=y.dtype), y, name="ones") if y.shape
               else b.const(1.0, dtype=y.dtype), x, y, **s.attr, name="weights")
    terms = []
    if tx is not None:
        terms.append(b.emit("div", tx, x) if by_ratio else tx)
    if ty is not None:
        big_y = b.emit("expand", y, x, axis=axis)
        ty = b.emit("expand", ty, x, axis=axis)
        terms.append(b.emit("neg", b.emit("div", ty, big_y) if by_ratio else ty))
    rate = terms[0] if len(terms) == 1 else b.emit("add", *terms)
    dw = b.emit("mul", b.emit("mul", c, w), rate)
    c_term = b.emit("mul", b.emit("expand", g, x, axis=axis), dw)
    return c_term if total is None else b.emit("add", total, c_term)


def _maxout_jvp(b, s, ts):
    """The tangent of the winning piece: ``Σ_q (w ⊙ t)[..., q m : (q + 1) m]`` with ``w`` the
    routing of ones (1 at each winner)."""
    (t,) = ts
    if t is None:
        return None
    z, k = s.args[0], s.attr["k"]
    m = s.out.shape[-1]
    w = b.emit("maxout_vjp", b.emit("expand", b.const(1.0, dtype=s.out.dtype), s.out, name="ones"), z, k=k)
    routed = b.emit("mul", w, t)
    pieces = [b.emit("slice", routed, axis=z.rank - 1, start=q * m, stop=(q + 1) * m) if k > 1 else routed
              for q in range(k)]
    total = pieces[0]
    for p in pieces[1:]:
        total = b.emit("add", total, p)
    return total


register("max_pool", _pool_rule(), lambda b, s, g: [b.emit("max_pool_vjp", g, s.args[0], axis=s.attr["axis"])],
         "max_pool: routes g to the maximum (ties to the first)", helpers=("max_pool",), family="reduce",
         spelling="max_pool", keywords=(POOL_AXIS,), jvp=reduction_jvp(_axis))
# routing: linear in g; in x it is piecewise constant (the routing changes only at ties)
register("max_pool_vjp", _pool_vjp_rule, None, helpers=("max_pool_vjp",), family="reduce", linear=(0,))
register("lp_pool", _pool_rule("p"),
         lambda b, s, g: [b.emit("lp_pool_vjp", g, s.args[0], s.out, **s.attr)],
         "lp_pool: g (x_i / y)^(p-1)", helpers=("lp_pool",), family="reduce",
         spelling="lp_pool", consts=(Const("p"),), keywords=(POOL_AXIS,), jvp=reduction_jvp(_axis))
register("lp_pool_vjp", _pool_vjp_with_result_rule, None, helpers=("lp_pool_vjp",), family="reduce",
         jvp=lambda b, s, ts: _weights_jvp(b, s, ts, s.attr["p"] - 1.0, by_ratio=True))
register("logavg_pool", _pool_rule("beta"),
         lambda b, s, g: [b.emit("logavg_pool_vjp", g, s.args[0], s.out, **s.attr)],
         "logavg_pool: g softmax(beta x) = g exp(beta (x - y)) / n", helpers=("logavg_pool",), family="reduce",
         spelling="logavg_pool", consts=(Const("beta"),), keywords=(POOL_AXIS,), jvp=reduction_jvp(_axis))
register("logavg_pool_vjp", _pool_vjp_with_result_rule, None, helpers=("logavg_pool_vjp",), family="reduce",
         jvp=lambda b, s, ts: _weights_jvp(b, s, ts, s.attr["beta"], by_ratio=False))
register("maxout", _maxout_rule, lambda b, s, g: [b.emit("maxout_vjp", g, s.args[0], k=s.attr["k"])],
         "maxout: routes g to the winning piece (ties to the first)", helpers=("maxout",), family="reduce",
         spelling="maxout", operands=("z",), consts=(Const("k", "int"),), jvp=_maxout_jvp)
register("maxout_vjp", _maxout_vjp_rule, None, helpers=("maxout_vjp",), family="reduce", linear=(0,))


# ------------------------------------------------------------ log-sum-exp (issue 5: numerics)
def _logsumexp_vjp(b, s, g):
    """g softmax(x) = g exp(x - y), with y the op's own result (each factor <= 1: no overflow)."""
    x, axis = s.args[0], s.attr.get("axis")
    soft = b.emit("exp", b.emit("sub", x, b.emit("expand", s.out, x, axis=axis)), name="softmax")
    return [b.emit("mul", b.emit("expand", g, x, axis=axis), soft)]


# logsumexp(x; axis): ln Σ_i exp(x_i) over one axis or (axis None) the whole array, computed as
# M + log1p(Σ_{i ≠ argmax} exp(x_i - M)) with M the (first) maximum: finite for any finite input,
# and a dominant entry keeps the tiny rest that log(1 + 1e-30) would round away.
register("logsumexp", _reduce_rule, _logsumexp_vjp, "logsumexp: g softmax(x) = g exp(x - y)",
         helpers=("logsumexp",), family="reduce", spelling="logsumexp", keywords=(AXIS,),
         jvp=reduction_jvp(_axis))


# ------------------------------------------------------------ softmax as a value (issue 13)
def _softmax_rule(args, attrs):
    (x,) = args
    need_float(x)
    if check_axis(x, attrs.get("axis")) is None:
        raise ShapeError("softmax needs an axis")
    return x.dtype, x.shape


def _along(b, s, v):
    """``Σ_axis v`` broadcast back along the axis (the softmax's row sums)."""
    axis = s.attr["axis"]
    return b.emit("expand", b.emit("sum", v, axis=axis), s.args[0], axis=axis)


def _softmax_back(b, s, g):
    """y ⊙ (g − Σ_axis g ⊙ y): the VJP (and, g a tangent, the JVP) of y = softmax(x)."""
    return b.emit("mul", s.out, b.emit("sub", g, _along(b, s, b.emit("mul", g, s.out))))


def _log_softmax_back(b, s, g, transpose: bool):
    """The VJP ``g − softmax ⊙ Σ_axis g`` (``transpose``) and the JVP ``t − Σ_axis softmax ⊙ t`` of
    y = log_softmax(x), with softmax = exp(y)."""
    p = b.emit("exp", s.out, name="softmax")
    return b.emit("sub", g, b.emit("mul", p, _along(b, s, g)) if transpose else _along(b, s, b.emit("mul", p, g)))


# softmax(x; axis) = exp(x - logsumexp(x)) along one axis (default the last), log_softmax(x; axis) =
# x - logsumexp(x): values (not only inside the loss), each computed with the max shift
register("softmax", _softmax_rule, lambda b, s, g: [_softmax_back(b, s, g)], "softmax: y (g - sum(g y))",
         helpers=("softmax",), family="reduce", spelling="softmax", keywords=(Const("axis", "int", -1),),
         jvp=lambda b, s, ts: None if ts[0] is None else _softmax_back(b, s, ts[0]))
register("log_softmax", _softmax_rule, lambda b, s, g: [_log_softmax_back(b, s, g, True)],
         "log_softmax: g - softmax sum(g)", helpers=("softmax",), family="reduce", spelling="log_softmax",
         keywords=(Const("axis", "int", -1),),
         jvp=lambda b, s, ts: None if ts[0] is None else _log_softmax_back(b, s, ts[0], False))
