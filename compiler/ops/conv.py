"""Convolutional networks: 2-D convolution and pooling over images, reshaping.

PyTorch's conventions (``torch.nn.functional``), so models carry over:

* ``conv2d(x, W[, b]; stride, padding, dilation)``: input ``x: [N, C, H, W]``, weights
  ``W: [O, C, kh, kw]``, optional bias ``b: [O]``; cross-correlation
  ``y[n, o, p, q] = b[o] + Σ_{c,i,j} W[o, c, i, j] x[n, c, p·sh − ph + i·dh, q·sw − pw + j·dw]``
  (zero outside the image: the padding), ``y: [N, O, Ho, Wo]`` with
  ``Ho = ⌊(H + 2 ph − dh (kh − 1) − 1) / sh⌋ + 1``. ``stride``, ``padding``, ``dilation`` are an
  integer or a pair (height, width); ``padding="same"`` (stride 1, an odd effective kernel)
  keeps ``H × W``. Its adjoints (Goodfellow, Bengio & Courville, "Deep Learning", 2016, sec. 9.5;
  Dumoulin & Visin, "A guide to convolution arithmetic", 2016): ``∂L/∂W`` is the correlation of
  the input with ``∂L/∂y`` (``conv2d_vjp_w``), ``∂L/∂x`` the full convolution of ``∂L/∂y`` with
  the flipped weights (``conv2d_vjp_x``, a transposed convolution), ``∂L/∂b`` the sum of
  ``∂L/∂y`` over the batch and the positions. The three are bilinear, so their JVPs and VJPs are
  each other (a convolution's VJP is a transposed convolution and back).
* ``max_pool2d(x, k; stride=k, padding=0)`` and ``avg_pool2d(...)`` over the two trailing axes of
  ``x: [N, C, H, W]`` (windows ``kh × kw``; padding at most half the window; the average counts
  the padding, PyTorch's ``count_include_pad=True``). The max pool routes the gradient to the
  **first** maximum of each window in row-major order (the notes' max gate), summed where windows
  overlap; its JVP reads the tangent there (``max_pool2d_jvp``).
* ``global_avg_pool2d(x)``: the mean over ``H × W``, ``[N, C]``.
* ``reshape(x, shape)`` (one ``-1`` at most; a symbolic batch dimension is the ``-1``),
  ``flatten(x, start=1)``: C-order reshapes (linear; the adjoint reshapes back).
* ``concat([a, b, ...], axis=0)``: arrays joined along one axis of concrete sizes (linear; the
  adjoint slices each operand's part of the cotangent back out).

The lowering (``templates/ops/conv.j2``) is im2col + one BLAS GEMM per convolution and adjoint,
per chunk of images (the patches of several images as the columns of one matrix, the batch axis
last so that the copies are long runs), and direct loops for pooling; 2 × 2 windows at stride 2
without padding get unrolled helpers, the adjoint one pass that writes each element once
(``_max_pool2d_2x2``, ``_max_pool2d_2x2_vjp``, chosen by the macro when the module is
generated); other adjoints scatter into zeros at the first maxima. ``max_pool2d`` of a monotone
activation pools first (:mod:`gradc.passes.commute`, from the ops' ``selects_max`` and
``monotone`` traits).
"""
from __future__ import annotations

import math

from ..errors import ShapeError
from . import Const, REQUIRED, bilinear_jvp, float_dtype, fmt, need_float, register, zeros_like

#: ``stride=``, ``dilation=``: an integer or a pair; ``padding=``: also ``"same"``
STRIDE = Const("stride", "pair", (1, 1))
PADDING = Const("padding", "padding", (0, 0))
DILATION = Const("dilation", "pair", (1, 1))


def _reg(name, infer, vjp, note="", **traits):
    register(name, infer, vjp, note, family="conv", **traits)


def _image(x, what="x"):
    need_float(x)
    if x.rank != 4:
        raise ShapeError(f"{fmt(x)} must be a batch of images [N, C, H, W]",
                         hint="reshape it, e.g. reshape(X, (-1, 1, 8, 8))")
    if not all(isinstance(d, int) for d in x.shape[1:]):
        raise ShapeError(f"the channels, height and width of {fmt(x)} must be numbers",
                         hint="only the batch dimension may be symbolic")
    return x.shape


def _out_size(n, k, s, p, d, where):
    size = (n + 2 * p - d * (k - 1) - 1) // s + 1
    if size < 1:
        raise ShapeError(f"the {where} window {d * (k - 1) + 1} is larger than the padded input {n + 2 * p}",
                         hint="use a smaller kernel, more padding or a larger input")
    return size


def _padding(attrs, kh, kw, stride, dilation):
    pad = attrs.get("padding", (0, 0))
    if pad == "same":
        if stride != (1, 1):
            raise ShapeError('padding="same" needs stride 1', hint="give the padding as numbers")
        if (dilation[0] * (kh - 1)) % 2 or (dilation[1] * (kw - 1)) % 2:
            raise ShapeError('padding="same" needs an odd kernel (with its dilation)',
                             hint="give the padding as numbers")
        return dilation[0] * (kh - 1) // 2, dilation[1] * (kw - 1) // 2
    return pad


def conv_geometry(x_shape, w_shape, attrs):
    """``(stride, padding, dilation, (Ho, Wo))`` of a convolution (padding resolved)."""
    stride, dilation = attrs.get("stride", (1, 1)), attrs.get("dilation", (1, 1))
    kh, kw = w_shape[2], w_shape[3]
    pad = _padding(attrs, kh, kw, stride, dilation)
    ho = _out_size(x_shape[2], kh, stride[0], pad[0], dilation[0], "height")
    wo = _out_size(x_shape[3], kw, stride[1], pad[1], dilation[1], "width")
    return stride, pad, dilation, (ho, wo)


def _conv_rule(args, attrs):
    x, w = args[:2]
    n, c, h, wd = _image(x)
    need_float(w)
    if w.rank != 4 or not all(isinstance(d, int) for d in w.shape):
        raise ShapeError(f"the weights {fmt(w)} must be [C_out, C_in, kh, kw] numbers")
    if w.shape[1] != c:
        raise ShapeError(f"the weights {fmt(w)} take {w.shape[1]} input channels, the images {fmt(x)} have {c}",
                         hint="W's second dimension is the input's channels")
    if len(args) == 3 and args[2].shape != (w.shape[0],):
        raise ShapeError(f"the bias {fmt(args[2])} must have one entry per output channel ({w.shape[0]})")
    *_, (ho, wo) = conv_geometry(x.shape, w.shape, attrs)
    return float_dtype(*args), (n, w.shape[0], ho, wo)


def _conv_vjp_x_rule(args, attrs):
    g, w = args
    need_float(g, w)
    n, o = g.shape[:2]
    h, wd = attrs["size"]
    return float_dtype(g, w), (n, w.shape[1], h, wd)


def _conv_vjp_w_rule(args, attrs):
    g, x = args
    need_float(g, x)
    return float_dtype(g, x), (g.shape[1], x.shape[1]) + tuple(attrs["kernel"])


def _sum_but_channels(b, g):
    """``g: [N, O, Ho, Wo]`` summed to ``[O]`` (the bias's adjoint)."""
    return b.emit("sum", b.emit("sum", b.emit("sum", g, axis=0), axis=1), axis=1, name="db")


def _conv_attrs(s):
    return {k: v for k, v in s.attrs if k in ("stride", "padding", "dilation")}


def _conv_vjp(b, s, g):
    x, w = s.args[:2]
    attrs = _conv_attrs(s)
    out = [b.emit("conv2d_vjp_x", g, w, size=x.shape[2:], **attrs),
           b.emit("conv2d_vjp_w", g, x, kernel=w.shape[2:], **attrs)]
    return out + ([_sum_but_channels(b, g)] if len(s.args) == 3 else [])


def _conv_jvp(b, s, ts):
    x, w = s.args[:2]
    tx, tw = ts[:2]
    tb = ts[2] if len(ts) == 3 else None
    attrs = _conv_attrs(s)
    terms = []
    if tx is not None or tb is not None:           # conv(x', W) + b'
        terms.append(b.emit("conv2d", tx if tx is not None else zeros_like(b, x), w,
                            *([tb] if tb is not None else []), **attrs))
    if tw is not None:
        terms.append(b.emit("conv2d", x, tw, **attrs))
    return None if not terms else terms[0] if len(terms) == 1 else b.emit("add", *terms)


def _conv_note(s, pos):
    return ("conv2d: ∂L/∂x = the full convolution of ∂L/∂y with the flipped weights",
            "conv2d: ∂L/∂W = the correlation of the input with ∂L/∂y",
            "conv2d: ∂L/∂b = ∂L/∂y summed over the batch and the positions")[pos]


_reg("conv2d", _conv_rule, _conv_vjp, _conv_note, jvp=_conv_jvp, helpers=("conv",), spelling="conv2d",
     operands=("x", "W", "b"), optional=1, keywords=(STRIDE, PADDING, DILATION), fresh=True)
# bilinear in (g, W) and in (g, x): their JVPs apply them to one tangent at a time; their VJPs are the
# other convolutions (<u, vjp_x(g, W)> = <g, conv2d(u, W)> = <vjp_w(g, u), W>)
_reg("conv2d_vjp_x", _conv_vjp_x_rule,
     lambda b, s, u: [b.emit("conv2d", u, s.args[1], **_conv_attrs(s)),
                      b.emit("conv2d_vjp_w", s.args[0], u, kernel=s.args[1].shape[2:], **_conv_attrs(s))],
     "conv2d_vjp_x: the convolution of the cotangent, and its correlation with g",
     jvp=bilinear_jvp, helpers=("conv",), fresh=True)
_reg("conv2d_vjp_w", _conv_vjp_w_rule,
     lambda b, s, u: [b.emit("conv2d", s.args[1], u, **_conv_attrs(s)),
                      b.emit("conv2d_vjp_x", s.args[0], u, size=s.args[1].shape[2:], **_conv_attrs(s))],
     "conv2d_vjp_w: the convolution with the cotangent, and the transposed convolution of g",
     jvp=bilinear_jvp, helpers=("conv",), fresh=True)


# ------------------------------------------------------------ pooling
def _pool_geometry(x, attrs):
    kh, kw = attrs["k"]
    stride = attrs.get("stride") or (kh, kw)
    ph, pw = attrs.get("padding", (0, 0))
    if ph > kh // 2 or pw > kw // 2:
        raise ShapeError(f"padding ({ph}, {pw}) is more than half the window ({kh}, {kw})",
                         hint="pad at most k // 2 on each side (as PyTorch)")
    ho = _out_size(x.shape[2], kh, stride[0], ph, 1, "height")
    wo = _out_size(x.shape[3], kw, stride[1], pw, 1, "width")
    return ho, wo


def _pool_rule(args, attrs):
    x = args[0]
    _image(x)
    if attrs.get("padding") == "same":
        raise ShapeError('pooling takes numbers as padding, not "same"')
    ho, wo = _pool_geometry(x, attrs)
    return x.dtype, x.shape[:2] + (ho, wo)


def _pool_back_rule(args, attrs):
    """``op(g, x)``: g shaped like the pooled x, the result like x."""
    g, x = args
    _image(x)
    if g.shape != _pool_rule([x], attrs)[1]:
        raise ShapeError(f"{fmt(g)} does not match the pooled {fmt(x)}")
    return float_dtype(g, x), x.shape


def _pool_attrs(s):
    return {k: v for k, v in s.attrs}


KERNEL = Const("k", "pair")
POOL_STRIDE = Const("stride", "pair", None)
POOL_PADDING = Const("padding", "pair0", (0, 0))

_reg("max_pool2d", _pool_rule, lambda b, s, g: [b.emit("max_pool2d_vjp", g, s.args[0], **_pool_attrs(s))],
     "max_pool2d: routes g to the first maximum of each window",
     jvp=lambda b, s, ts: None if ts[0] is None else b.emit("max_pool2d_jvp", ts[0], s.args[0], **_pool_attrs(s)),
     helpers=("pool",), spelling="max_pool2d", consts=(KERNEL,), keywords=(POOL_STRIDE, POOL_PADDING), fresh=True,
     selects_max=True)
# routing: linear in g (or the tangent t); in x piecewise constant (the maxima move only at ties)
_reg("max_pool2d_vjp", _pool_back_rule,
     lambda b, s, u: [b.emit("max_pool2d_jvp", u, s.args[1], **_pool_attrs(s)), None],
     "max_pool2d_vjp: reads the cotangent at each window's maximum", linear=(0,), helpers=("pool",), fresh=True)
_reg("max_pool2d_jvp", lambda args, attrs: (float_dtype(*args), _pool_rule([args[1]], attrs)[1]),
     lambda b, s, u: [b.emit("max_pool2d_vjp", u, s.args[1], **_pool_attrs(s)), None],
     "max_pool2d_jvp: routes the cotangent to each window's maximum", linear=(0,), helpers=("pool",), fresh=True)
_reg("avg_pool2d", _pool_rule, lambda b, s, g: [b.emit("avg_pool2d_vjp", g, s.args[0], **_pool_attrs(s))],
     "avg_pool2d: spreads g / (kh kw) over each window", linear=(0,), helpers=("pool",), spelling="avg_pool2d",
     consts=(KERNEL,), keywords=(POOL_STRIDE, POOL_PADDING), fresh=True)
_reg("avg_pool2d_vjp", _pool_back_rule, lambda b, s, u: [b.emit("avg_pool2d", u, **_pool_attrs(s)), None],
     "avg_pool2d_vjp: the average pool of the cotangent", linear=(0,), helpers=("pool",), fresh=True)


def _global_rule(args, attrs):
    n, c, _, _ = _image(args[0])
    return args[0].dtype, (n, c)


def _global_back_rule(args, attrs):
    g, x = args
    if g.shape != x.shape[:2]:
        raise ShapeError(f"{fmt(g)} does not match the pooled {fmt(x)}")
    return float_dtype(g, x), x.shape


_reg("global_avg_pool2d", _global_rule, lambda b, s, g: [b.emit("global_avg_pool2d_vjp", g, s.args[0])],
     "global_avg_pool2d: spreads g / (H W) over each image", linear=(0,), helpers=("pool",),
     spelling="global_avg_pool2d", fresh=True)
_reg("global_avg_pool2d_vjp", _global_back_rule, lambda b, s, u: [b.emit("global_avg_pool2d", u), None],
     "global_avg_pool2d_vjp: the mean of the cotangent", linear=(0,), helpers=("pool",), fresh=True)


# ------------------------------------------------------------ reshaping
def reshaped(x, shape):
    """``shape`` with its ``-1`` resolved against ``x``'s (a symbolic batch dimension of ``x`` is
    the ``-1`` when the other sizes account for the rest)."""
    if not isinstance(shape, tuple) or not shape:
        raise ShapeError(f"the new shape must be a tuple of sizes, got {shape!r}")
    if sum(d == -1 for d in shape) > 1 or any(not isinstance(d, (int, str)) or d == 0 or
                                              (isinstance(d, int) and d < -1) for d in shape):
        raise ShapeError(f"the new shape {shape} may hold positive sizes and one -1")
    known = math.prod(d for d in x.shape if isinstance(d, int))
    symbolic = [d for d in x.shape if isinstance(d, str)]
    given = math.prod(d for d in shape if isinstance(d, int) and d > 0)
    named = [d for d in shape if isinstance(d, str)]
    if -1 in shape:
        if symbolic and not named and known == given and len(symbolic) == 1:
            fill = symbolic[0]
        elif not symbolic and known % given == 0:
            fill = known // given
        else:
            raise ShapeError(f"cannot reshape {fmt(x)} to {shape}: the sizes disagree",
                             hint="the product of the sizes must stay the same")
        shape = tuple(fill if d == -1 else d for d in shape)
    if sorted(map(str, symbolic)) != sorted(map(str, (d for d in shape if isinstance(d, str)))) or \
            known != math.prod(d for d in shape if isinstance(d, int)):
        raise ShapeError(f"cannot reshape {fmt(x)} to {shape}: the sizes disagree",
                         hint="the product of the sizes must stay the same")
    return shape


def _reshape_rule(args, attrs):
    (x,) = args
    need_float(x)
    shape = reshaped(x, tuple(attrs["shape"]))
    if sum(isinstance(d, str) for d in shape) > 1:
        raise ShapeError(f"cannot reshape {fmt(x)}: at most one dimension may be symbolic")
    return x.dtype, shape


def _flatten_rule(args, attrs):
    (x,) = args
    need_float(x)
    start = attrs.get("start", 1)
    if not isinstance(start, int) or not 0 <= start < x.rank:
        raise ShapeError(f"start={start!r} is out of range for {fmt(x)}")
    tail = x.shape[start:]
    if not all(isinstance(d, int) for d in tail):
        raise ShapeError(f"cannot flatten the symbolic dimensions of {fmt(x)}")
    return x.dtype, x.shape[:start] + (math.prod(tail),)


def _back(b, s, g):
    return [b.emit("reshape", g, shape=s.args[0].shape)]


_reg("reshape", _reshape_rule, _back, "reshape: reshapes g back", linear=(0,), spelling="reshape",
     consts=(Const("shape", "shape", REQUIRED),))
_reg("flatten", _flatten_rule, _back, "flatten: reshapes g back", linear=(0,), spelling="flatten",
     consts=(Const("start", "int", 1),))


def _concat_rule(args, attrs):
    need_float(*args)
    first = args[0]
    if first.rank == 0:
        raise ShapeError(f"cannot concatenate the scalar {fmt(first)}")
    axis = attrs.get("axis", 0)
    if not isinstance(axis, int) or not -first.rank <= axis < first.rank:
        raise ShapeError(f"axis={axis!r} is out of range for {fmt(first)}")
    axis %= first.rank
    for v in args:
        if v.rank != first.rank or v.shape[:axis] + v.shape[axis + 1:] != first.shape[:axis] + first.shape[axis + 1:]:
            raise ShapeError(f"{fmt(v)} does not fit {fmt(first)} beside it along axis {axis}",
                             hint="every other dimension must agree")
        if not isinstance(v.shape[axis], int):
            raise ShapeError(f"cannot concatenate along the symbolic dimension '{v.shape[axis]}' of {fmt(v)}")
    return float_dtype(*args), first.shape[:axis] + (sum(v.shape[axis] for v in args),) + first.shape[axis + 1:]


def _concat_vjp(b, s, g):
    axis = s.attr.get("axis", 0) % s.out.rank
    out, start = [], 0
    for v in s.args:
        n = v.shape[axis]
        out.append(b.emit("slice", g, axis=axis, start=start, stop=start + n) if n != s.out.shape[axis] else g)
        start += n
    return out


_reg("concat", _concat_rule, _concat_vjp, "concat: slices each operand's part of g", linear=True,
     spelling="concat", operands=("xs",), variadic=True, keywords=(Const("axis", "int", 0),), fresh=True)
