"""The op table: every op gradc knows, one entry each.

An :class:`Op` entry holds everything about one op:

* ``infer(args, attrs) -> (dtype, shape)``: the shape and dtype rule; it raises
  :class:`~gradc.errors.ShapeError` when operands do not fit;
* ``vjp(b, stmt, g) -> [adjoint contribution or None per operand]``: the
  adjoint (VJP) rule, emitting IR statements through the builder ``b``; ``g``
  is the cotangent of ``stmt.out``. ``None`` as the rule means the op is not
  differentiable (masks, labels); ``None`` in the list means no contribution;
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

    ``kind`` is ``"number"`` (any finite int or float, passed as a float) or ``"int"`` (an integer
    literal); ``default`` is :data:`REQUIRED` or the value used when the argument is left out.
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
    #: ``((value, form), ...)``: values of its constant attribute ``p`` whose element code is
    #: plain arithmetic, not a C library call (powc: 2 is ``x * x``); its macro reads them as
    #: ``o.op.forms`` (the printer passes the entry as ``o.op``)
    forms: tuple[tuple[float, str], ...] = ()


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


from . import elementwise, select, reduce, linalg, loss, index, functions  # noqa: E402,F401  (fills OPS)
