"""The op table: every op gradc knows, one entry each.

An :class:`Op` entry holds everything about one op:

* ``infer(args, attrs) -> (dtype, shape)``: the shape and dtype rule; it raises
  :class:`~gradc.errors.ShapeError` when operands do not fit;
* ``vjp(b, stmt, g) -> [adjoint contribution or None per operand]``: the
  adjoint (VJP) rule, emitting IR statements through the builder ``b``; ``g``
  is the cotangent of ``stmt.out``. ``None`` as the rule means the op is not
  differentiable (masks, labels); ``None`` in the list means no contribution;
* ``jvp(b, stmt, tangents) -> tangent of stmt.out or None``: the forward-mode (JVP) rule;
  ``tangents`` holds one tangent value per operand, None for a zero tangent. Most entries
  need not write one: :func:`jvp_rule` derives it from the traits (``linear``: the op applied
  to the tangents; ``elementwise``: the VJP rule applied to each tangent, since an
  elementwise op's Jacobian is diagonal, ``g ⊙ ∂f/∂a`` either way). An op whose result has
  no rule and is a float raises :class:`~gradc.errors.UnsupportedError` in forward mode
  (:mod:`gradc.ad.forward`), never a zero;
* ``note``: the rule in words, printed as a comment beside adjoint code; or a
  function ``note(stmt, pos) -> str`` giving one note per operand (matmul
  names its operands: ``∂L/∂W = ∂L/∂q xᵀ``);
* ``fold``: a Python function of the operand numbers used by constant folding
  (scalar operands only), or None;
* the template fragment: the Jinja2 macro named like the op in
  ``templates/ops/<family>.j2``, where ``family`` is the module defining it;
* its traits (see the fields of :class:`Op`): what the AD's masking, ``gradc explain``,
  the spec language, the re-rolling pass and the back end need to know about it.

Adding an op is one ``register`` call in ``compiler/ops/<family>.py`` with its traits
(``elementwise=True, loop=True, rollable=True, spelling=...``) and one macro in
``templates/ops/<family>.j2``; the rest of the compiler reads the traits
(tests/test_op_traits.py adds an activation that way and checks it needs nothing else).
VJP rules name the derived values they emit by their role (``name=`` of ``b.emit``):
``W2_T`` for a transpose, ``dtanh`` for a local derivative.

Float dtypes: ``f64`` and ``f32``. An op's float result has the float dtype of
its operands, and mixing them gives ``f64``, as in NumPy (:func:`float_dtype`);
constants are created in the operands' dtype (see :meth:`gradc.ir.Builder.emit`),
so a float32 model stays float32.

Broadcasting is numpy-style rank extension (a scalar or a trailing-shape
operand such as a bias vector ``[32]`` against ``[batch,32]``); reducing an
adjoint back to its operand's shape is done once, generically, by the AD pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import ShapeError, UnsupportedError


#: The default of a constant argument that must be given (see :class:`Const`).
REQUIRED = object()


@dataclass(frozen=True)
class Const:
    """A constant argument of an op's spec function: a number literal in the spec, passed to the
    op as the static attribute ``name`` (never differentiated).

    ``kind`` is ``"number"`` (any finite int or float, passed as a float), ``"int"`` (an integer
    literal), ``"pair"`` (a positive integer or a pair of them, passed as a pair: strides, kernel
    sizes), ``"pair0"`` (the same, zero allowed: pooling's padding), ``"padding"`` (a pair0 or the
    string ``"same"``) or ``"shape"`` (a tuple of positive integers and at most one ``-1``);
    ``default`` is :data:`REQUIRED` or the value used when the argument is left out.
    """

    name: str
    kind: str = "number"
    default: object = REQUIRED


@dataclass(frozen=True)
class Op:
    """One op-table entry: every fact about the op (the rules, and the traits the passes,
    the AD, the front ends and the back end read; no list elsewhere names ops)."""

    name: str
    family: str
    infer: Callable
    vjp: Callable | None
    note: str | Callable = ""
    fold: Callable | None = None
    #: helper functions its template calls (``helper_<name>`` macros of its family's template)
    helpers: tuple[str, ...] = ()
    #: the forward-mode rule (see the module docstring), or None: derived by :func:`jvp_rule`
    jvp: Callable | None = None
    # ---- traits
    #: acts element by element with broadcasting: a `where` mask passes through its VJP, and
    #: ``gradc explain`` shows its local derivatives
    elementwise: bool = False
    #: how a fused loop computes it (gradc.backend.schedule): ``True`` one element at a time (its
    #: macro renders scalar code with ``o.elem``); ``"reduce"`` a sum of a loop value accumulated in
    #: the loop; ``"scatter"`` written into a zero array at an offset; ``"broadcast"`` a scalar
    #: broadcast to the loop's shape; ``"alias"`` another name for a value; False: never in a loop
    loop: bool | str = False
    #: its element code is a vectorizable kernel call (``_exp1`` ...): a loop holding it vectorizes
    kernel: bool = False
    #: ``scalar_call(stmt) -> bool``: its element code calls the C library (a loop holding it does
    #: not vectorize); None: never
    scalar_call: Callable | None = None
    #: a long sum of terms built from it can be re-rolled into a loop over tables (gradc.passes.reroll)
    rollable: bool = False
    #: its operands may be swapped (``a + b == b + a``; gradc.passes.reroll orders them)
    commutative: bool = False
    #: its name as a function in the spec language, or None (not spelled there: an operator such
    #: as ``+`` or ``x[1:]``, or an op only the compiler emits)
    spelling: str | None = None
    #: other names of that function in the spec language (``lgamma`` for ``loggamma``)
    aliases: tuple[str, ...] = ()
    #: the names of its spec function's expression operands (their number is its arity there;
    #: usage messages show them: ``where(cond, a, b)``)
    operands: tuple[str, ...] = ("x",)
    #: how many of the last ``operands`` may be left out (``conv2d(x, W)`` without its bias ``b``)
    optional: int = 0
    #: its spec function takes its operands as one list (``concat([a, b], axis=1)``)
    variadic: bool = False
    #: its spec function's constant arguments after the operands (``leaky_relu(x, 0.2)``, or by
    #: keyword), each a :class:`Const` passed to the op as a static attribute
    consts: tuple[Const, ...] = ()
    #: its spec function's keyword-only constant arguments (``axis=``), :class:`Const` each
    keywords: tuple[Const, ...] = ()
    #: its symbol in ``gradc explain`` graphs (default: its name), or a function
    #: ``symbol(stmt, num) -> str`` of the statement (``num`` formats a number)
    symbol: str | Callable | None = None
    #: its array result is a fresh array the generated function owns (a matrix product):
    #: the memory plan may reuse it
    fresh: bool = False
    #: ``(function, ...)``: the call that writes its result into a given output array
    #: (``np.dot(a, b, out)``), or None
    into: str | None = None
    #: its whole-array rendering may return (a view of) its operand's memory (``x.T``, ``x[1:]``, a
    #: plain binding): the memory plan never lends that operand's array out while it is alive
    view: bool = False
    #: a unary elementwise op that never decreases and is flat only where its derivative is 0
    #: (relu; leaky_relu with a slope >= 0): the largest of its results is its result of the
    #: largest operand, derivatives included. ``True``, or ``monotone(stmt) -> bool``
    monotone: bool | Callable = False
    #: each result element is the largest of some of its first operand's elements (max_pool2d):
    #: it may take the operand of a :attr:`monotone` op instead (gradc.passes.commute)
    selects_max: bool = False
    #: ``((value, form), ...)``: values of its constant attribute ``p`` whose element code is
    #: plain arithmetic, not a C library call (powc: 2 is ``x * x``); its macro reads them as
    #: ``o.op.forms`` (the printer passes the entry as ``o.op``)
    forms: tuple[tuple[float, str], ...] = ()
    #: positions of the operands it is (jointly) linear in, the others giving only a shape or
    #: labels (``expand(g, like)``: ``(0,)``); ``True``: all of them. Its JVP is the op applied
    #: to the tangents (:func:`jvp_rule`)
    linear: tuple[int, ...] | bool = ()


OPS: dict[str, Op] = {}


def register(name: str, infer: Callable, vjp: Callable | None, note: str | Callable = "",
             fold: Callable | None = None, helpers: tuple[str, ...] = (), family: str = "",
             **traits) -> None:
    """Add one op to the table (called at import time by each family module); ``traits``
    are the keyword fields of :class:`Op` (``elementwise=True``, ``loop=True``, ...)."""
    if name in OPS:
        raise RuntimeError(f"op {name} registered twice")
    OPS[name] = Op(name, family, infer, vjp, note, fold, helpers, **traits)


def infer(op: str, args, attrs: dict, loc: str | None = None):
    """Apply ``op``'s shape/dtype rule; errors name the op and the source place."""
    entry = OPS.get(op)
    if entry is None:
        raise UnsupportedError(f"unknown op '{op}'", loc)
    try:
        dtype, shape = entry.infer(list(args), attrs)
    except ShapeError as e:
        if e.where is None:
            raise ShapeError(f"{op}: {e.message}", loc, e.hint) from None
        raise
    return dtype, tuple(shape)


# ------------------------------------------------------------ JVP rules from traits
def jvp_rule(op: Op) -> Callable | None:
    """The forward-mode rule of ``op``: its own ``jvp``, else one derived from its traits
    (``linear``, or ``elementwise`` with a VJP rule), else None (no rule)."""
    if op.jvp is not None:
        return op.jvp
    if op.linear:
        return _linear_jvp
    if op.elementwise and op.vjp is not None:
        return _elementwise_jvp
    return None


def zero_jvp(b, s, ts):
    """The JVP of an op whose result is locally constant (``sign``, an element count)."""
    return None


def like_out(b, t, s):
    """``t`` broadcast to ``s.out``'s shape (a tangent of a broadcast operand)."""
    return t if t.shape == s.out.shape else b.emit("expand", t, s.out)


def zeros_like(b, v):
    """A zero of ``v``'s dtype and shape (a scalar constant, or one broadcast to ``v``)."""
    zero = b.const(0.0, dtype=v.dtype)
    return b.emit("expand", zero, v, name="zeros") if v.shape else zero


def _linear_jvp(b, s, ts):
    """A linear op's JVP is the op itself applied to the tangents (zeros where there are none)."""
    linear = OPS[s.op].linear
    positions = range(len(s.args)) if linear is True else linear
    if all(ts[i] is None for i in positions):
        return None
    args = list(s.args)
    for i in positions:
        args[i] = ts[i] if ts[i] is not None else zeros_like(b, s.args[i])
    return b.emit(s.op, *args, **s.attr)


def _elementwise_jvp(b, s, ts):
    """An elementwise op's Jacobian is diagonal, so its VJP rule applied to a tangent ``t`` of
    operand ``i`` gives ``t ⊙ ∂f/∂a_i`` (the JVP's term for that operand); the terms add up."""
    total = None
    for i, t in enumerate(ts):
        if t is None:
            continue
        c = OPS[s.op].vjp(b, s, t)[i]
        if c is None:
            continue
        c = like_out(b, c, s)
        total = c if total is None else b.emit("add", total, c)
    return total


def bilinear_jvp(b, s, ts):
    """``d(a ∘ c) = da ∘ c + a ∘ dc`` for an op bilinear in its two operands (matmul, outer, the
    convolution's adjoints), applied with the statement's attributes."""
    (a, c), (ta, tc) = s.args[:2], ts[:2]
    terms = [b.emit(s.op, ta, c, **s.attr) if ta is not None else None,
             b.emit(s.op, a, tc, **s.attr) if tc is not None else None]
    terms = [t for t in terms if t is not None]
    return None if not terms else terms[0] if len(terms) == 1 else b.emit("add", *terms)


def reduction_jvp(axis_of: Callable) -> Callable:
    """The JVP of an op each of whose result elements depends on one fiber of its operands along
    the axis ``axis_of(stmt)`` (None: a scalar of the whole arrays), from its VJP rule: the VJP of
    ones gives the weights ``∂y/∂x_i`` of every element, and the tangent is their weighted sum
    ``Σ_i ∂y/∂x_i t_i`` along the fiber (pooling, log-sum-exp, the per-row losses, mse)."""
    def rule(b, s, ts):
        if all(t is None for t in ts):
            return None
        ones = b.const(1.0, dtype=s.out.dtype)
        if s.out.shape:
            ones = b.emit("expand", ones, s.out, name="ones")
        weights = OPS[s.op].vjp(b, s, ones)
        total = None
        for t, w in zip(ts, weights):
            if t is None or w is None:
                continue
            c = b.emit("sum", b.emit("mul", w, t), axis=axis_of(s))
            total = c if total is None else b.emit("add", total, c)
        return total
    return rule


# ------------------------------------------------------------ shared shape rules
def fmt(v) -> str:
    return f"%{v.name}:{v.type_str()}"


def need_float(*vals) -> None:
    for v in vals:
        if v.dtype not in ("f64", "f32"):
            raise ShapeError(f"{fmt(v)} must be float64 or float32",
                             hint="int64 inputs are class labels: use them in pick() or "
                                  "softmax_cross_entropy()")


def float_dtype(*vals) -> str:
    """The float dtype of an op on ``vals`` (all checked to be floats): ``f32`` if every
    operand is float32, else ``f64`` (NumPy's promotion of float32 with float64)."""
    need_float(*vals)
    return "f32" if all(v.dtype == "f32" for v in vals) else "f64"


def broadcast(*vals) -> tuple:
    """NumPy rank-extension broadcasting: every shape must be a suffix of the longest."""
    longest = max((v.shape for v in vals), key=len)
    for v in vals:
        if v.shape != longest[len(longest) - len(v.shape):]:
            shapes = " and ".join(fmt(x) for x in vals)
            raise ShapeError(f"shapes of {shapes} do not broadcast",
                             hint="an operand must be a scalar or match the trailing dimensions")
    return longest


def elementwise_float(args, attrs):
    return float_dtype(*args), broadcast(*args)


def compare_rule(args, attrs):
    need_float(*args)
    return "bool", broadcast(*args)


def same_as_first(args, attrs):
    return args[0].dtype, args[0].shape


def check_axis(v, axis) -> int:
    if axis is None:
        return axis
    if not isinstance(axis, int) or not -v.rank <= axis < v.rank:
        raise ShapeError(f"axis={axis!r} is out of range for {fmt(v)}")
    return axis % v.rank


from . import elementwise, select, reduce, linalg, loss, index, functions, conv  # noqa: E402,F401  (fills OPS)
