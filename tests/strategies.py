"""Hypothesis strategies: random expression trees over gradc's whole op table, with oracles.

Three tree families; each strategy returns a tree object that knows its source
(what gradc compiles), the grammar *productions* it used (``productions``;
every family lists all of its own in ``*_PRODUCTIONS``, so a test can check
that they cover every op of ``gradc.ops.OPS``), and how to evaluate itself
without gradc:

* :func:`scalar_trees`: SymPy expressions in ``x0, x1, x2`` (SymPy frontend):
  ``+ - * /``, unary minus, numbers and constants, integer / negative /
  rational / real / symbolic powers, ``exp log sqrt sin cos tan tanh Abs Max
  Min`` and ``Piecewise`` with ``< <= > >=`` conditions combined by ``And Or
  Not``. Oracle: ``sympy.diff`` of the same tree (Abs/Max/Min as plain
  functions with their derivatives, see :func:`for_diff`), evaluated in mpmath at
  50 digits by :func:`evaluate`.
* :func:`matrix_trees`: SymPy ``MatrixSymbol`` algebra (``MatMul MatAdd
  Transpose``, scalar multiples, ``HadamardProduct HadamardPower``, ``Trace``,
  elements ``M[i, j]``, explicit ``ImmutableMatrix``, ``applyfunc``) of random
  compatible shapes (dimensions 1..3), reduced to a 1x1 result ``u.T M v``.
  Oracle: the same math written per element (``as_explicit()``), differentiated
  by ``sympy.diff`` with respect to each matrix entry.
* :func:`array_trees`: spec text (expression language) over float64, float32
  or mixed-precision arrays of rank 0..3 with a symbolic batch dimension ``n``:
  every spec function, broadcasting of scalars and bias (trailing-shape)
  operands, reductions with and without ``axis`` (also negative), matmul in all
  four vector/matrix forms with random compatible shapes, transpose, slicing,
  maxout, pooling, losses, the int64-label ops, softmax/log_softmax along an
  axis, concat, small CNNs (``image``: conv2d, max/avg/global pooling,
  reshape/flatten; ``focus="image"`` draws one at the root) and inputs the
  value does not depend on. Oracle: :meth:`ArrayTree.evaluate`, an independent NumPy
  implementation of the same tree that runs on float64 arrays or on object
  arrays of mpmath numbers (then central differences at 50 digits are, for
  all purposes, exact derivatives).

Inputs of ``log``, ``sqrt``, real and symbolic powers, ``lp_pool`` and
denominators are made positive by construction (``u*u + 1/2``, ``exp(u)``,
``|u| + 1/2``, ...), so every point of R^n is inside the domain; points where
the math is ill-conditioned (near a kink or a branch boundary, huge
intermediates, catastrophic cancellation) are recognised by the oracles and
rejected by the tests, never compared loosely.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement
from hypothesis import assume, reject
from hypothesis import strategies as st

MP_DPS = 50

# ================================================================== scalar SymPy trees
XS = sp.symbols("x0 x1 x2", real=True)

#: Leaves and inner productions of :func:`scalar_trees`.
SCALAR_LEAVES = ("symbol", "number", "constant")
SCALAR_NODES = ("add", "sub", "mul", "neg", "div", "powi", "pow_neg", "sqrt", "powr", "pow",
                "exp", "log", "sin", "cos", "tan", "tanh", "abs", "max", "min", "piecewise", "function")
SCALAR_CONDS = ("lt", "le", "gt", "ge", "and", "or", "not")
SCALAR_POS = ("pos_square", "pos_exp", "pos_abs")
#: The functions of issue 6 (one "function" node picks one), by the argument they get: any real
#: number, a value in (-1, 1) (tanh(u)), > 1, > 0 (pos), > -1/4 (LambertW) or two arguments.
SCALAR_FUNCTIONS = {
    "real": ("cot", "sec", "csc", "atan", "acot", "sinh", "cosh", "coth", "sech", "csch", "asinh",
             "erf", "erfc", "sinc", "sign", "heaviside", "heaviside_h0", "floor", "ceiling", "frac"),
    "unit": ("asin", "acos", "atanh"), "above_one": ("acosh",),
    "positive": ("gamma", "loggamma", "digamma", "polygamma"), "lambertw": ("lambertw",),
    "two": ("atan2", "mod")}
SCALAR_PRODUCTIONS = (SCALAR_LEAVES + SCALAR_NODES + SCALAR_CONDS + SCALAR_POS
                      + sum(SCALAR_FUNCTIONS.values(), ()))

_NUMBERS = (sp.Rational(1, 2), sp.Integer(2), sp.Integer(-3), sp.Float(0.75), sp.Rational(-2, 3))


@dataclass
class ScalarTree:
    expr: sp.Expr
    productions: frozenset
    args: tuple = XS

    @property
    def source(self):
        return self.expr

    def __repr__(self):
        return f"ScalarTree({sp.srepr(self.expr)})"


@st.composite
def scalar_trees(draw, max_depth: int = 3) -> ScalarTree:
    """A random SymPy expression in ``XS`` of depth <= ``max_depth`` (plus positivity wrappers)."""
    used: set[str] = set()

    def pick(options):
        name = draw(st.sampled_from(options))
        used.add(name)
        return name

    def leaf():
        kind = pick(("symbol", "symbol", "symbol", "number", "constant"))
        if kind == "symbol":
            return draw(st.sampled_from(XS))
        if kind == "number":
            return draw(st.sampled_from(_NUMBERS))
        return draw(st.sampled_from((sp.pi, sp.E)))

    def pos(d):
        """A positive expression built on a random subtree (domain of log, sqrt, real powers)."""
        u = gen(d)
        kind = pick(SCALAR_POS)
        if kind == "pos_square":
            return u ** 2 + draw(st.sampled_from((sp.Rational(1, 2), sp.Integer(1))))
        if kind == "pos_exp":
            return sp.exp(u)
        return sp.Abs(u) + sp.Rational(1, 2)

    def cond(d):
        kind = pick(SCALAR_CONDS)
        if kind in ("and", "or"):
            a, b = cond(0), cond(0)
            return sp.And(a, b) if kind == "and" else sp.Or(a, b)
        if kind == "not":
            return sp.Not(sp.And(cond(0), cond(0)))
        rel = {"lt": sp.Lt, "le": sp.Le, "gt": sp.Gt, "ge": sp.Ge}[kind]
        return rel(gen(d), gen(d))

    def gen(d):
        if d <= 0 or draw(st.integers(0, 5)) == 3:
            return leaf()
        p = pick(SCALAR_NODES + ("function",) * 4)     # 31 functions: drawn more often, each still rare
        k = d - 1
        if p == "add":
            return gen(k) + gen(k)
        if p == "sub":
            return gen(k) - gen(k)
        if p == "mul":
            return gen(k) * gen(k)
        if p == "neg":
            return -gen(k)
        if p == "div":
            return gen(k) / (pos(k) * draw(st.sampled_from((1, -1))))
        if p == "powi":
            return gen(k) ** draw(st.sampled_from((2, 3)))
        if p == "pow_neg":
            return pos(k) ** draw(st.sampled_from((sp.Integer(-1), sp.Integer(-2), sp.Rational(-1, 2))))
        if p == "sqrt":
            return sp.sqrt(pos(k))
        if p == "powr":
            return pos(k) ** draw(st.sampled_from((sp.Rational(3, 2), sp.Float(0.7), sp.Rational(1, 3))))
        if p == "pow":
            return pos(k) ** gen(k)
        if p in ("exp", "sin", "cos", "tan", "tanh"):
            return getattr(sp, p)(gen(k))
        if p == "log":
            return sp.log(pos(k))
        if p == "abs":
            return sp.Abs(gen(k))
        if p in ("max", "min"):
            n = draw(st.integers(2, 3))
            args = [gen(k) for _ in range(n)]
            try:
                return (sp.Max if p == "max" else sp.Min)(*args)
            except (AttributeError, TypeError):
                # SymPy's own error while it compares the arguments (Max(frac(x0), acosh(1 + exp(2)))
                # raises AttributeError in Max._is_connected, SymPy 1.14): no tree, not a gradc failure
                reject()
        if p == "function":
            return function(k)
        assert p == "piecewise"
        pieces = [(gen(k), cond(k)) for _ in range(draw(st.integers(1, 2)))]
        return sp.Piecewise(*pieces, (gen(k), True))

    def variable(d):
        """A subtree with a symbol in it (SymPy would fold a function of a constant away)."""
        u = gen(d)
        return u if u.free_symbols else u + draw(st.sampled_from(XS))

    def function(k):
        name = pick(sum(SCALAR_FUNCTIONS.values(), ()))
        kind = next(kind for kind, names in SCALAR_FUNCTIONS.items() if name in names)
        if kind == "two":
            a = variable(k)
            if name == "mod":
                return sp.Mod(a, pos(k) * draw(st.sampled_from((1, -1))))
            return sp.atan2(a, gen(k))
        u = {"real": variable, "unit": lambda d: sp.tanh(variable(d)), "above_one": lambda d: pos(d) + 1,
             "positive": pos, "lambertw": lambda d: pos(d) - sp.Rational(1, 4)}[kind](k)
        if name == "heaviside_h0":
            return sp.Heaviside(u, draw(st.sampled_from((sp.Integer(0), sp.Integer(1), sp.Rational(1, 3)))))
        if name == "polygamma":
            return sp.polygamma(draw(st.sampled_from((1, 2, 3))), u)
        return _SYMPY_FUNCTIONS[name](u)

    expr = gen(max_depth)
    assume(expr.free_symbols)       # (a constant tree, often one SymPy folded, has nothing to differentiate)
    assume(not expr.has(sp.nan, sp.zoo, sp.I))      # SymPy's value of cot(0), coth(x - x), ...
    return ScalarTree(expr, frozenset(used))


_SYMPY_FUNCTIONS = {"ceiling": sp.ceiling, "heaviside": sp.Heaviside, "lambertw": sp.LambertW,
                    **{n: getattr(sp, n) for n in sum(SCALAR_FUNCTIONS.values(), ())
                       if n not in ("ceiling", "heaviside", "heaviside_h0", "lambertw") and hasattr(sp, n)}}


# ------------------------------------------------------------------ evaluating SymPy trees
class Reject(Exception):
    """The point is outside the oracle's well-conditioned region (or outside the domain)."""


class _Num:
    """Scalar arithmetic in float64 (``float``) or in mpmath (``mp``)."""

    def __init__(self, kind: str):
        self.kind = kind
        m = mpmath if kind == "mp" else math
        self.exp, self.log, self.sin, self.cos, self.tan, self.tanh = (
            m.exp, m.log, m.sin, m.cos, m.tan, m.tanh)

    def num(self, x):
        if self.kind == "mp":
            if isinstance(x, sp.Rational):
                return mpmath.mpf(int(x.p)) / int(x.q)
            return mpmath.mpf(x) if not isinstance(x, sp.Basic) else mpmath.mpf(str(sp.Float(x, MP_DPS)))
        return float(x)

    def check(self, v):
        if isinstance(v, (complex, mpmath.mpc)):
            raise Reject("complex value")
        if self.kind == "float" and not math.isfinite(v):
            raise Reject("float overflow")
        return v


FLOAT, MP = _Num("float"), _Num("mp")


def evaluate(expr, env: dict, num: _Num, nodes: list | None = None, limit: float | None = None):
    """Value of the SymPy scalar ``expr`` with symbols (or matrix entries) from ``env``.

    An evaluator of its own (no lambdify): every node is computed with ``num``;
    ``nodes``, if given, collects ``(node, value)`` of every expression node.
    Raises :class:`Reject` for complex values and float64 overflow, and as soon as an
    expression node exceeds ``limit`` in magnitude (mpmath has no overflow: ``tan`` of
    ``exp(exp(exp(x)))``, 10^702, or ``exp`` of it would run for hours).
    """
    memo: dict = {}

    def ev(e):
        if e in memo:
            return memo[e]
        v = _ev(e)
        memo[e] = v
        if isinstance(e, sp.Expr) and not e.is_number:
            if nodes is not None:
                nodes.append((e, v))
            if limit is not None and abs(v) > limit:
                raise Reject("huge intermediate")
        return v

    def _ev(e):
        if e is sp.true:
            return True
        if e is sp.false:
            return False
        if isinstance(e, (sp.Symbol, MatrixElement)):
            return num.num(env[e])
        if e.is_Number or isinstance(e, sp.NumberSymbol):
            return num.num(e)
        try:
            if isinstance(e, sp.Add):
                acc = ev(e.args[0])
                for a in e.args[1:]:
                    acc = acc + ev(a)
                return num.check(acc)
            if isinstance(e, sp.Mul):
                acc = ev(e.args[0])
                for a in e.args[1:]:
                    acc = acc * ev(a)
                return num.check(acc)
            if isinstance(e, sp.Pow):
                b, x = ev(e.base), ev(e.exp)
                if b < 0 and not e.exp.is_integer:
                    raise Reject("negative base of a real power")
                return num.check(b ** x)
            special = _SPECIAL.get(type(e))
            if special is not None:
                return num.check(special(num, *[ev(a) for a in e.args]))
            for cls in (sp.exp, sp.log, sp.sin, sp.cos, sp.tan, sp.tanh):
                if isinstance(e, cls):
                    return num.check(getattr(num, cls.__name__)(ev(e.args[0])))
            if isinstance(e, (sp.Abs, _Abs)):
                return abs(ev(e.args[0]))
            if isinstance(e, (sp.Max, _Max)):
                return max(ev(a) for a in e.args)
            if isinstance(e, (sp.Min, _Min)):
                return min(ev(a) for a in e.args)
            if isinstance(e, _Sign):
                v = ev(e.args[0])
                return num.num((v > 0) - (v < 0))
            if isinstance(e, _Step):
                return num.num(1 if ev(e.args[0]) >= 0 else 0)
            if isinstance(e, sp.Piecewise):
                for val, c in e.args:
                    if ev(c):
                        return ev(val)
                raise Reject("no Piecewise condition holds")
            if isinstance(e, sp.core.relational.Relational):
                a, b = ev(e.lhs), ev(e.rhs)
                return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[e.rel_op]
            if isinstance(e, sp.And):
                return all([ev(a) for a in e.args])
            if isinstance(e, sp.Or):
                return any([ev(a) for a in e.args])
            if isinstance(e, sp.Not):
                return not ev(e.args[0])
            if isinstance(e, sp.ITE):            # SymPy's rewrites of nested conditions
                return ev(e.args[1]) if ev(e.args[0]) else ev(e.args[2])
            if isinstance(e, sp.Xor):
                return sum(bool(ev(a)) for a in e.args) % 2 == 1
            if isinstance(e, sp.Implies):
                return (not ev(e.args[0])) or bool(ev(e.args[1]))
            if isinstance(e, sp.Equivalent):
                return len({bool(ev(a)) for a in e.args}) == 1
        except (OverflowError, ValueError, ZeroDivisionError) as exc:
            raise Reject(f"{type(exc).__name__} in {type(e).__name__}") from None
        raise NotImplementedError(f"evaluate: SymPy class {type(e).__name__}")

    return ev(expr)


class _Abs(sp.Function):
    """``|u|`` for the oracle's ``sympy.diff``: derivative ``sign(u)`` (SymPy's own Abs needs to
    know that ``u`` is real, else it differentiates through ``re``/``im``)."""

    def fdiff(self, argindex=1):
        return _Sign(self.args[0])


class _Sign(sp.Function):
    def fdiff(self, argindex=1):
        return sp.S.Zero


class _Step(sp.Function):
    """1 where the argument is >= 0, else 0: the derivative of a binary max or min."""

    def fdiff(self, argindex=1):
        return sp.S.Zero


class _Max(sp.Function):
    nargs = 2

    def fdiff(self, argindex=1):
        step = _Step(self.args[0] - self.args[1])
        return step if argindex == 1 else 1 - step


class _Min(sp.Function):
    nargs = 2

    def fdiff(self, argindex=1):
        step = _Step(self.args[1] - self.args[0])
        return step if argindex == 1 else 1 - step


class _Floor(sp.Function):
    """floor/ceiling/Heaviside for the oracle's ``sympy.diff``: derivative 0 (away from the jumps)."""

    def fdiff(self, argindex=1):
        return sp.S.Zero


class _Ceil(_Floor):
    pass


class _Heaviside(_Floor):
    pass


class _Frac(sp.Function):
    def fdiff(self, argindex=1):
        return sp.S.One


class _Mod(sp.Function):
    """a - b floor(a/b): derivative 1 w.r.t. a and -floor(a/b) w.r.t. b (away from the jumps)."""

    def fdiff(self, argindex=1):
        return sp.S.One if argindex == 1 else -_Floor(self.args[0] / self.args[1])


def _real_mp(z):
    return z.real if isinstance(z, mpmath.mpc) and z.imag == 0 else z


def _fn(mp_fn, float_fn=None):
    """``f(num, *args)``: mpmath in the mp backend; in float64 ``float_fn``, else mpmath at 16 digits."""
    def f(num, *args):
        if num.kind == "mp":
            return _real_mp(mp_fn(*args))
        if float_fn is not None:
            return float_fn(*args)
        with mpmath.workdps(16):
            r = _real_mp(mp_fn(*(mpmath.mpf(a) for a in args)))
        return complex(r) if isinstance(r, mpmath.mpc) else float(r)
    return f


def _step(num, x, h0=0.5):
    return num.num(1) if x > 0 else num.num(0) if x < 0 else h0


def _floor(num, x):
    return mpmath.floor(x) if num.kind == "mp" else float(math.floor(x))


def _mod(num, a, b):
    return a - b * _floor(num, a / b)


#: Values of the SymPy functions of issue 6 (and of their stand-ins in :func:`for_diff`).
_SPECIAL = {
    sp.cot: _fn(mpmath.cot, lambda x: 1 / math.tan(x)), sp.sec: _fn(mpmath.sec, lambda x: 1 / math.cos(x)),
    sp.csc: _fn(mpmath.csc, lambda x: 1 / math.sin(x)), sp.asin: _fn(mpmath.asin, math.asin),
    sp.acos: _fn(mpmath.acos, math.acos), sp.atan: _fn(mpmath.atan, math.atan),
    sp.acot: _fn(lambda x: mpmath.acot(x) if x else mpmath.pi / 2),
    sp.sinh: _fn(mpmath.sinh, math.sinh), sp.cosh: _fn(mpmath.cosh, math.cosh),
    sp.coth: _fn(mpmath.coth, lambda x: 1 / math.tanh(x)), sp.sech: _fn(mpmath.sech, lambda x: 1 / math.cosh(x)),
    sp.csch: _fn(mpmath.csch, lambda x: 1 / math.sinh(x)), sp.asinh: _fn(mpmath.asinh, math.asinh),
    sp.acosh: _fn(mpmath.acosh, math.acosh), sp.atanh: _fn(mpmath.atanh, math.atanh),
    sp.erf: _fn(mpmath.erf, math.erf), sp.erfc: _fn(mpmath.erfc, math.erfc),
    sp.gamma: _fn(mpmath.gamma, math.gamma), sp.loggamma: _fn(mpmath.loggamma, math.lgamma),
    sp.polygamma: _fn(lambda n, x: mpmath.polygamma(int(n), x)), sp.sinc: _fn(mpmath.sinc),
    sp.LambertW: _fn(mpmath.lambertw), sp.atan2: _fn(mpmath.atan2, math.atan2),
    sp.sign: lambda num, x: num.num((x > 0) - (x < 0)),
    sp.Heaviside: _step, _Heaviside: _step, sp.floor: _floor, _Floor: _floor,
    sp.ceiling: lambda num, x: -_floor(num, -x), _Ceil: lambda num, x: -_floor(num, -x),
    sp.frac: lambda num, x: x - _floor(num, x), _Frac: lambda num, x: x - _floor(num, x),
    sp.Mod: _mod, _Mod: _mod,
}


def for_diff(expr):
    """``expr`` with Abs, Max and Min as plain functions with the derivatives above (binary
    max/min chained), for ``sympy.diff``: no sign/Heaviside of unknown realness, and no
    Piecewise folding (which may build, and then fail on, complex branch values). The
    point filter keeps away from the kinks, where these derivatives are conventions."""
    def chain(cls):
        def build(*args):
            acc = args[0]
            for b in args[1:]:
                acc = cls(acc, b)
            return acc
        return build
    expr = expr.replace(sp.Abs, _Abs)
    for cls, stand_in in ((sp.sign, _Sign), (sp.Heaviside, _Heaviside), (sp.floor, _Floor),
                          (sp.ceiling, _Ceil), (sp.frac, _Frac), (sp.Mod, _Mod)):
        expr = expr.replace(cls, stand_in)
    expr = expr.replace(sp.Max, chain(_Max))
    return expr.replace(sp.Min, chain(_Min))


def kink_gaps(expr) -> list:
    """Expressions whose zeros are kinks or branch boundaries of ``expr`` (relations, Abs, Max, Min)."""
    gaps = []
    for e in sp.preorder_traversal(expr):
        if isinstance(e, sp.core.relational.Relational):
            gaps.append(e.lhs - e.rhs)
        elif isinstance(e, sp.Abs):
            gaps.append(e.args[0])
        elif isinstance(e, (sp.Max, sp.Min)):
            gaps += [a - b for i, a in enumerate(e.args) for b in e.args[i + 1:]]
        elif isinstance(e, (sp.sign, sp.Heaviside, sp.acot, sp.atan2)):   # jumps at 0 (atan2: y = 0)
            gaps.append(e.args[0])
        elif isinstance(e, (sp.floor, sp.ceiling, sp.frac)):              # jumps at the integers
            gaps.append(sp.sin(sp.pi * e.args[0]))
        elif isinstance(e, sp.Mod):
            gaps.append(sp.sin(sp.pi * e.args[0] / e.args[1]))
    return gaps


@dataclass
class SymbolicOracle:
    """Value and gradient of a SymPy scalar ``expr`` w.r.t. ``wrt`` (symbols or matrix entries).

    :meth:`at` returns ``(value, grads, scale)`` (exact to ~50 digits; ``scale`` is
    max(1, largest |gradient entry|)), or raises :class:`Reject` if the point is
    ill-conditioned: a kink or branch boundary closer than ``GAP``, an intermediate
    above ``BIG`` in magnitude, or float64 evaluation of SymPy's own derivative
    expressions (a route independent of gradc) off by more than ``COND_RTOL``
    relative (``COND_RTOL``·scale absolute): then float64 cannot be expected to
    match to the tests' 1e-9 either.
    """

    expr: sp.Expr
    wrt: list
    GAP = 1e-6
    BIG = 1e8
    COND_RTOL = 1e-12
    derivs: list = field(init=False)
    gaps: list = field(init=False)

    def __post_init__(self):
        smooth = for_diff(self.expr)
        self.derivs = [sp.diff(smooth, w) for w in self.wrt]
        self.gaps = kink_gaps(self.expr)

    def at(self, env: dict):
        with mpmath.workdps(MP_DPS):
            nodes: list = []
            value = evaluate(self.expr, env, MP, nodes, limit=self.BIG)
            for _, v in nodes:
                if abs(v) > self.BIG:
                    raise Reject("huge intermediate")
            for gap in self.gaps:
                if abs(evaluate(gap, env, MP)) < self.GAP:
                    raise Reject("near a kink")
            grads = [evaluate(d, env, MP) for d in self.derivs]
            scale = max([1.0] + [abs(float(g)) for g in grads])
            for d, g in zip(self.derivs, grads):
                f = evaluate(d, env, FLOAT)
                if abs(f - g) > self.COND_RTOL * (abs(g) + scale):
                    raise Reject("ill-conditioned derivative")
            fv = evaluate(self.expr, env, FLOAT)
            if abs(fv - value) > self.COND_RTOL * (abs(value) + 1):
                raise Reject("ill-conditioned value")
            return float(value), [float(g) for g in grads], scale


# ================================================================== SymPy matrix trees
MATRIX_PRODUCTIONS = ("matrix_symbol", "matmul", "matadd", "matsub", "transpose", "scalar_mul",
                      "number_mul", "hadamard_product", "hadamard_power", "trace", "element", "explicit",
                      "applyfunc", "quadratic_form")


@dataclass
class MatrixTree:
    expr: sp.Expr
    args: tuple
    productions: frozenset

    @property
    def source(self):
        return self.expr

    def __repr__(self):
        return f"MatrixTree({sp.srepr(self.expr)}, args={[a.name for a in self.args]})"


S_MAT = sp.Symbol("s", real=True)


@st.composite
def matrix_trees(draw, max_depth: int = 3) -> MatrixTree:
    """``u.T M v`` for a random matrix expression ``M`` of random shape (dims 1..3).

    SymPy simplifies ``A - A`` to a ZeroMatrix and writes ``A*A`` as ``MatPow``; gradc
    rejects both (documented, tested in test_sympy_frontend.py), so such draws are filtered out."""
    used: set[str] = set()
    symbols: dict[tuple, list] = {}
    count = [0]

    def pick(options):
        name = draw(st.sampled_from(options))
        used.add(name)
        return name

    def symbol(shape):
        pool = symbols.setdefault(shape, [])
        if pool and draw(st.booleans()):
            return draw(st.sampled_from(pool))
        m = sp.MatrixSymbol(f"M{count[0]}", *shape)
        count[0] += 1
        pool.append(m)
        used.add("matrix_symbol")
        return m

    dim = st.integers(1, 3)

    def gen(shape, d):
        r, c = shape
        if d <= 0 or draw(st.integers(0, 4)) == 2:
            return symbol(shape)
        p = pick(MATRIX_PRODUCTIONS[1:-1])
        k = d - 1
        if p == "matmul":
            inner = draw(dim)
            return gen((r, inner), k) * gen((inner, c), k)
        if p == "matadd":
            return gen(shape, k) + gen(shape, k)
        if p == "matsub":
            return gen(shape, k) - gen(shape, k)
        if p == "transpose":
            return gen((c, r), k).T
        if p == "scalar_mul":
            return S_MAT * gen(shape, k)
        if p == "number_mul":
            return draw(st.sampled_from((sp.Integer(2), sp.Rational(-1, 2), sp.Float(1.5)))) * gen(shape, k)
        if p == "hadamard_product":
            return sp.HadamardProduct(gen(shape, k), gen(shape, k))
        if p == "trace":                       # a scalar tr(M) times a matrix
            m = draw(dim)
            return sp.Trace(gen((m, m), k)) * gen(shape, k)
        if p == "element":                     # an element M[p, q] of a matrix expression times a matrix
            m, n = draw(dim), draw(dim)
            return gen((m, n), k)[draw(st.integers(0, m - 1)), draw(st.integers(0, n - 1))] * gen(shape, k)
        if p == "explicit":                    # an explicit Matrix of scalar entries
            inner = gen(shape, k)
            return sp.ImmutableMatrix(r, c, lambda i, j: inner[i, j] * S_MAT + (i - j))
        if p == "applyfunc":
            return gen(shape, k).applyfunc(draw(st.sampled_from((sp.sin, sp.exp, sp.tanh))))
        assert p == "hadamard_power"
        return sp.HadamardPower(gen(shape, k), draw(st.sampled_from((2, 3))))

    shape = (draw(dim), draw(dim))
    try:
        body = gen(shape, max_depth)
        expr = sp.MatrixSymbol("u", shape[0], 1).T * body * sp.MatrixSymbol("v", shape[1], 1)
    except TypeError as e:
        # SymPy's own bug, not gradc's (SymPy 1.14; found by the thorough profile, and depending on
        # SymPy's cache, so not reproducible on its own): building a scalar times a matrix
        # expression, SymPy asked an assumption of tanh(M0) (a matrix symbol inside a scalar
        # function), computed im(M0) % (pi/2), and MatAdd raised "Mix of Matrix and Scalar
        # symbols": no tree
        if "Mix of Matrix and Scalar" not in str(e):
            raise
        reject()
    used.add("quadratic_form")
    assume(not expr.has(sp.ZeroMatrix, sp.Identity, sp.MatPow))
    args = sorted(expr.free_symbols, key=lambda a: a.name)
    return MatrixTree(expr, tuple(args), frozenset(used))


def matrix_oracle(tree: MatrixTree):
    """The tree written per element: a SymPy scalar in the matrix entries, and the entries per arg."""
    explicit = tree.expr.as_explicit()[0, 0]
    explicit = explicit.replace(lambda e: isinstance(e, sp.Trace), lambda e: e.arg.as_explicit().trace())
    explicit = explicit.replace(lambda e: isinstance(e, MatrixElement) and not isinstance(e.parent, sp.MatrixSymbol),
                                lambda e: e.parent.as_explicit()[e.i, e.j])
    entries = []
    for a in tree.args:
        if isinstance(a, sp.MatrixSymbol):
            entries += [a[i, j] for i in range(a.shape[0]) for j in range(a.shape[1])]
        else:
            entries.append(a)
    return SymbolicOracle(explicit, entries)


# ================================================================== array (spec) trees
N = "n"          # the symbolic batch dimension of array trees
DIMS = (1, 2, 3)

UNARY = ("exp", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "abs", "softplus", "log_sigmoid", "softsign")
ARRAY_LEAVES = ("input", "number", "float64", "float32", "mixed")
ARRAY_NODES = UNARY + (
    "neg", "log", "sqrt", "powc", "powc_pos", "pow", "leaky_relu", "elu",
    "add", "sub", "mul", "div", "maximum", "minimum", "where", "binary_cross_entropy",
    "sum", "mean", "sum_axis", "mean_axis", "max_pool", "lp_pool", "logavg_pool", "mse",
    "logsumexp", "logsumexp_axis", "matmul", "transpose", "maxout", "pick", "softmax_cross_entropy", "svm_hinge", "slice",
    "softmax", "log_softmax", "concat", "image")
#: The convolutional productions (issue 13): an ``image`` node of shape ``[B, F]`` is a small CNN,
#: a batch of images (a 4-D input, ``image_input``, or a reshaped subtree, ``reshape``) through one
#: or two ``conv2d`` / ``max_pool2d`` / ``avg_pool2d`` stages (``image_relu`` between them), back to
#: ``[B, F]`` by ``global_avg_pool2d``, ``flatten`` or ``reshape``.
IMAGE_STAGES = ("conv2d", "max_pool2d", "avg_pool2d")
IMAGE_HEADS = ("global_avg_pool2d", "flatten", "reshape")
IMAGE_PRODUCTIONS = ("image_input", "image_relu", "conv2d_bias", "conv2d_same") + IMAGE_STAGES + IMAGE_HEADS
ARRAY_EXTRA = ("broadcast", "unused_input", "lt", "le", "gt", "ge", "pos_square", "pos_exp", "pos_abs", "pos_softplus") \
    + IMAGE_PRODUCTIONS
ARRAY_PRODUCTIONS = ARRAY_LEAVES + ARRAY_NODES + ARRAY_EXTRA
#: the productions of ``array_trees(focus="image")`` that plain array trees draw rarely
IMAGE_TREE_PRODUCTIONS = ("image",) + IMAGE_PRODUCTIONS


@dataclass(frozen=True)
class Node:
    """One node of an array tree: its spec text, shape and an evaluator ``fn(ctx)``."""
    text: str
    shape: tuple
    fn: object = field(compare=False, repr=False)


class Backend:
    """NumPy on float64 arrays (``mp=False``) or on object arrays of mpmath numbers.

    ``margins`` collects distances to kinks (where, max/min, relu, abs, ...) and
    ``big`` the largest intermediate magnitude, so a test can skip ill-conditioned points.
    """

    def __init__(self, mp: bool, limit: float | None = None):
        self.mp = mp
        self.margins: list[float] = []
        self.big = 0.0
        self.limit = limit          # raise Reject as soon as ``big`` exceeds it (see :meth:`seen`)
        if mp:
            vec = lambda f: np.vectorize(f, otypes=[object])  # noqa: E731
            self.exp, self.log, self.sin, self.cos, self.tan, self.tanh = map(
                vec, (mpmath.exp, mpmath.log, mpmath.sin, mpmath.cos, mpmath.tan, mpmath.tanh))
            self._abs = vec(abs)
        else:
            self.exp, self.log, self.sin, self.cos, self.tan, self.tanh = (
                np.exp, np.log, np.sin, np.cos, np.tan, np.tanh)
            self._abs = np.abs

    def arr(self, x):
        if self.mp:
            return np.vectorize(lambda v: mpmath.mpf(float(v)), otypes=[object])(np.asarray(x, dtype=np.float64))
        return np.asarray(x, dtype=np.float64)

    def abs(self, x):
        return self._abs(np.asarray(x))

    def margin(self, d):
        d = np.asarray(d)
        if d.size:
            self.margins.append(float(np.min(self.abs(d))))

    def seen(self, x):
        x = np.asarray(x)
        if x.size and x.dtype != bool:
            self.big = max(self.big, float(np.max(self.abs(x))))
            if self.limit is not None and self.big > self.limit:     # before mpmath runs exp or tan
                raise Reject("huge intermediate")                     # of 10^702 (hours)
        return x

    # ---- functions built from the above (independent of gradc's formulas where it matters)
    #
    # The float64 versions must not overflow, underflow or cancel where the op itself is
    # stable: they check the mpmath reference, and a reference that overflows where gradc is
    # right would fail the property for nothing (issue 15: ``log(mean(exp(x)))`` at x = 1993).
    # So float64 shifts every log-sum-exp by its maximum and scales every p-norm by its
    # largest entry; mpmath (unbounded exponents, 50 digits) computes the textbook formula,
    # with ``log1p`` where ``log(1 + tiny)`` would keep too few digits for central differences.
    def sigmoid(self, x):
        return 1 / (1 + self.exp(-x))

    def log1p(self, x):
        if self.mp:
            return np.vectorize(mpmath.log1p, otypes=[object])(x)
        return np.log1p(x)

    def softplus(self, x):
        if self.mp:
            return self.log1p(self.exp(x))
        return np.logaddexp(0.0, x)

    def logsumexp(self, x, axis=None):
        """``ln Σ exp(x)`` over ``axis`` (None: the whole array)."""
        x = np.asarray(x)
        if self.mp:
            return self.log(np.sum(self.exp(x), axis=axis))
        m = np.max(x, axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        out = np.log(np.sum(np.exp(x - m), axis=axis)) + (np.squeeze(m) if axis is None else np.squeeze(m, axis))
        return out

    def logavg(self, x, beta, axis):
        """``(1/β) ln mean(exp(β x))`` over ``axis`` (log-average pooling)."""
        x = np.asarray(x)
        if self.mp:
            return self.log(np.mean(self.exp(beta * x), axis=axis)) / beta
        return (self.logsumexp(beta * x, axis) - np.log(x.shape[axis])) / beta

    def lp(self, x, p, axis):
        """``(Σ x^p)^(1/p)`` over ``axis``, for positive ``x`` (Lp pooling)."""
        x = np.asarray(x)
        if self.mp:
            return np.sum(x ** p, axis=axis) ** (1 / p)
        s = np.max(x, axis=axis, keepdims=True)
        return np.squeeze(s, axis) * np.sum((x / s) ** p, axis=axis) ** (1 / p)

    def bce(self, z, y):
        """Binary cross-entropy of logits ``z`` and targets ``y``. mpmath: the probability form
        ``-(y ln σ(z) + (1-y) ln(1-σ(z)))`` with ``ln σ(z) = -log1p(e^-z)`` and ``1-σ(z) = σ(-z)``
        (``1 - σ(z)`` itself rounds to 0 at 50 digits for z > 115, and loses the digits central
        differences need from z ~ 40); float64: ``max(z, 0) - z y + log1p(e^-|z|)``."""
        if self.mp:
            log_sig, log_sig_neg = -self.log1p(self.exp(-z)), -self.log1p(self.exp(z))
            return -(y * log_sig + (1 - y) * log_sig_neg)
        return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))

    def softmax_ce(self, scores, labels):
        """Softmax cross-entropy per row of ``scores`` ([n, k]) with int labels ([n])."""
        scores = np.asarray(scores)
        picked = scores[np.arange(scores.shape[0]), labels]
        return self.logsumexp(scores, axis=1) - picked

    def log_sigmoid(self, x):
        return -self.softplus(-x)

    def softmax(self, x, axis, log=False):
        """``exp(x_i) / Σ_j exp(x_j)`` along ``axis`` (``log``: its logarithm). mpmath: the textbook
        formula; float64: shifted by the maximum of each line (no overflow)."""
        x = np.asarray(x)
        if self.mp:
            e = self.exp(x)
            s = np.sum(e, axis=axis, keepdims=True)
            return x - self.log(s) if log else e / s
        z = x - np.max(x, axis=axis, keepdims=True)
        s = np.sum(np.exp(z), axis=axis, keepdims=True)
        return z - np.log(s) if log else np.exp(z) / s

    # ---- images [N, C, H, W] (PyTorch's definitions, one output position at a time)
    def conv2d(self, x, w, b, stride, padding, dilation):
        """Cross-correlation, zero outside the image: ``y[n, o, p, q] = b[o] + Σ_{c,i,j} w[o, c, i, j]
        x[n, c, p sh − ph + i dh, q sw − pw + j dw]``."""
        x, w = np.asarray(x), np.asarray(w)
        N, C, H, W = x.shape
        O, _, kh, kw = w.shape
        (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
        Ho, Wo = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        y = np.zeros((N, O, Ho, Wo), dtype=x.dtype)
        for p in range(Ho):
            for q in range(Wo):
                for i in range(kh):
                    for j in range(kw):
                        hi, wi = p * sh - ph + i * dh, q * sw - pw + j * dw
                        if 0 <= hi < H and 0 <= wi < W:
                            y[:, :, p, q] += x[:, :, hi, wi] @ w[:, :, i, j].T        # [N, C] @ [C, O]
        if b is not None:
            y = y + np.asarray(b)[None, :, None, None]
        return self.seen(y)

    def _windows(self, x, k, stride, padding):
        """The windows of a pooling as ``{(p, q): [N, C, m]}``, the m in-image entries row-major."""
        x = np.asarray(x)
        (kh, kw), (sh, sw), (ph, pw) = k, stride, padding
        H, W = x.shape[2:]
        Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
        return (Ho, Wo), {(p, q): np.stack([x[:, :, p * sh - ph + i, q * sw - pw + j]
                                            for i in range(kh) for j in range(kw)
                                            if 0 <= p * sh - ph + i < H and 0 <= q * sw - pw + j < W], axis=-1)
                          for p in range(Ho) for q in range(Wo)}

    def max_pool2d(self, x, k, stride, padding):
        """The maximum of each window (the padding never wins); its kink: the top two entries."""
        (Ho, Wo), wins = self._windows(x, k, stride, padding)
        y = np.empty(np.shape(x)[:2] + (Ho, Wo), dtype=np.asarray(x).dtype)
        for (p, q), v in wins.items():
            self.top_two_gap(v, -1)
            y[:, :, p, q] = np.max(v, axis=-1)
        return y

    def avg_pool2d(self, x, k, stride, padding):
        """The sum of each window's in-image entries over ``kh kw`` (PyTorch's count_include_pad)."""
        (Ho, Wo), wins = self._windows(x, k, stride, padding)
        y = np.empty(np.shape(x)[:2] + (Ho, Wo), dtype=np.asarray(x).dtype)
        for (p, q), v in wins.items():
            y[:, :, p, q] = np.sum(v, axis=-1) / (k[0] * k[1])
        return y

    def global_avg_pool2d(self, x):
        x = np.asarray(x)
        return np.sum(np.sum(x, axis=3), axis=2) / (x.shape[2] * x.shape[3])

    def softsign(self, x):
        return x / (1 + self.abs(x))

    def relu(self, x):
        self.margin(x)
        return np.where(x > 0, x, 0 * x)

    def kink_abs(self, x):
        self.margin(x)
        return self.abs(x)

    def maximum(self, a, b, first_wins_ge=True):
        self.margin(a - b)
        return np.where(a >= b, a, b) if first_wins_ge else np.where(a <= b, a, b)

    def top_two_gap(self, x, axis):
        """Distance between the largest and second largest entry along ``axis`` (kink of max)."""
        if x.shape[axis] > 1:
            s = np.sort(np.moveaxis(np.asarray(x), axis, -1), axis=-1)
            self.margin(s[..., -1] - s[..., -2])


def _fmt(x) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


def _sum(B, x, axis=None):
    return np.sum(x, axis=axis) if axis is not None else np.sum(x)


@dataclass
class ArrayTree:
    """A spec with one graph entry ``out = text``; ``inputs`` name -> shape, ``labels`` name -> classes,
    ``dtypes`` float input name -> ``"float64"`` or ``"float32"``."""
    root: Node
    inputs: dict
    labels: dict
    productions: frozenset
    dtypes: dict = field(default_factory=dict)
    size: int = 0          # inner nodes (see array_trees' max_nodes)

    @property
    def precision(self) -> str:
        """``float32`` if any float input is float32 (it limits the accuracy), else ``float64``."""
        return "float32" if "float32" in self.dtypes.values() else "float64"

    @property
    def text(self) -> str:
        return self.root.text

    @property
    def wrt(self) -> list:
        return list(self.inputs)

    @property
    def source(self) -> str:
        lines = ["[model]", 'name = "prop"', "", "[inputs]"]
        for n, shape in self.inputs.items():
            dtype = "" if self.dtypes.get(n, "float64") == "float64" else f', dtype = "{self.dtypes[n]}"'
            lines.append(f"{n} = {{ shape = {_toml_shape(shape)}{dtype} }}")
        for n in self.labels:
            lines.append(f'{n} = {{ shape = ["{N}"], dtype = "int64" }}')
        lines += ["", "[graph]", f'out = "{self.text}"', "", "[output]", 'value = "out"',
                  "wrt = [" + ", ".join(f'"{w}"' for w in self.wrt) + "]", ""]
        return "\n".join(lines)

    def arg_names(self) -> list:
        return list(self.inputs) + list(self.labels)

    def draw_args(self, rng: np.random.Generator, n: int) -> dict:
        """Float inputs uniform in [-2, 2] in their dtype (``n`` rows), labels uniform in [0, k)."""
        out = {}
        for name, shape in self.inputs.items():
            dims = tuple(n if d == N else d for d in shape)
            x = rng.uniform(-2.0, 2.0, dims).astype(self.dtypes.get(name, "float64"))
            out[name] = x[()] if not dims else x         # a NumPy scalar of the dtype for shape []
        for name, k in self.labels.items():
            out[name] = rng.integers(0, k, n).astype(np.int64)
        return out

    def evaluate(self, args: dict, B: Backend):
        return self.root.fn((self.env(args, B), B))

    def env(self, args: dict, B: Backend) -> dict:
        return {k: (v if k in self.labels else B.arr(v)) for k, v in args.items()}

    def __repr__(self):
        return f"ArrayTree({self.text!r}, inputs={self.inputs}, labels={self.labels})"


def _toml_shape(shape) -> str:
    return "[" + ", ".join(f'"{d}"' if isinstance(d, str) else str(d) for d in shape) + "]"


@st.composite
def array_trees(draw, max_depth: int = 3, max_rank: int = 3, max_nodes: int | None = None,
                focus: str | None = None) -> ArrayTree:
    """A random spec expression whose value is a float scalar, built top-down from shapes.

    Operands have rank <= ``max_rank`` (rank 3 only in one tree of four: Numba compiles
    rank-3 broadcasting slowly, up to 10 s per module). At most ``max_nodes`` inner nodes
    (positivity wrappers included; then only leaves), so that a failing tree of the thorough
    profile shrinks within Hypothesis's time limit: every shrink step compiles a Numba module.
    The choice "leaf here" is the integer 0, the shrinker's first try. ``focus="image"``: the value
    is the sum or mean of an ``image`` node (a small CNN, rare among the other productions)."""
    used: set[str] = set()
    n_inner = [0]
    inputs: dict[str, tuple] = {}
    labels: dict[str, int] = {}
    dtypes: dict[str, str] = {}

    def pick(options):
        name = draw(st.sampled_from(options))
        used.add(name)
        return name

    precision = pick(("float64", "float64", "float64", "float32", "mixed"))

    def var(shape):
        same = [n for n, s in inputs.items() if s == shape]
        used.add("input")
        if same and draw(st.booleans()):
            name = draw(st.sampled_from(same))
        else:
            name = f"a{len(inputs)}"
            inputs[name] = shape
            mixed = precision == "mixed" and draw(st.booleans())
            dtypes[name] = "float32" if precision == "float32" or mixed else "float64"
        return Node(name, shape, lambda c, name=name: c[0][name])

    def number():
        used.add("number")
        v = draw(st.sampled_from((0.5, 2.0, -1.5, 3.0, 0.25)))
        return Node(_fmt(v), (), lambda c, v=v: v)

    def suffix(shape):
        """``shape`` or, for a broadcast operand, one of its trailing parts (a bias or a scalar)."""
        j = draw(st.integers(0, len(shape)))
        if j:
            used.add("broadcast")
        return shape[j:]

    def pos(shape, d):
        u = gen(shape, d)
        n_inner[0] += 1
        kind = pick(("pos_square", "pos_exp", "pos_abs", "pos_softplus"))
        if kind == "pos_square":
            return Node(f"({u.text} * {u.text} + 0.5)", shape, lambda c: u.fn(c) * u.fn(c) + 0.5)
        if kind == "pos_exp":
            return Node(f"exp({u.text})", shape, lambda c: c[1].seen(c[1].exp(u.fn(c))))
        if kind == "pos_abs":
            return Node(f"(abs({u.text}) + 0.5)", shape, lambda c: c[1].abs(u.fn(c)) + 0.5)
        return Node(f"(softplus({u.text}) + 0.1)", shape, lambda c: c[1].softplus(u.fn(c)) + 0.1)

    def candidates(shape, top):
        r = len(shape)
        out = [] if top else list(UNARY) + ["neg", "log", "sqrt", "powc", "powc_pos", "pow", "leaky_relu",
                                            "elu", "add", "sub", "mul", "div", "maximum", "minimum",
                                            "where", "binary_cross_entropy"]
        if r <= 2:
            out.append("matmul")
        if r <= 1 or (r == 2 and rank3):     # rank-3 operands: rarely (Numba compiles them slowly)
            out += ["sum_axis", "mean_axis", "max_pool", "lp_pool", "logavg_pool", "logsumexp_axis"]
        if r == 0:
            out += ["sum", "mean", "mse"] * (3 if top else 1) + ["logsumexp"]
        if r == 2:
            out.append("transpose")
        if r >= 1 and isinstance(shape[-1], int) and shape[-1] <= 3:
            out.append("maxout")
        if shape == (N,):
            out += ["pick", "softmax_cross_entropy", "svm_hinge"] * 2
        if any(isinstance(dim, int) for dim in shape):
            out.append("slice")
        if r >= 1:
            out += ["softmax", "log_softmax"]
        if any(isinstance(dim, int) and dim >= 2 for dim in shape):
            out.append("concat")
        if r == 2 and isinstance(shape[1], int):
            out += ["image"] * 4          # (one choice of many: a small CNN drawn as often as a label op)
        return out

    any_dim = st.sampled_from(DIMS + (N,))

    def any_shape():
        r = draw(st.sampled_from((1, 2, 1, 2, 3) if rank3 else (1, 2)))
        return tuple(draw(any_dim) for _ in range(r))

    def pair(v):
        """A pair of sizes spelled as one integer when both are equal (or, at random, as the pair)."""
        return str(v[0]) if v[0] == v[1] and draw(st.booleans()) else f"({v[0]}, {v[1]})"

    def stage(kind, c_out, size):
        """The input ``(C, H, W)``, the text (of the input text) and the evaluator (of the input's
        and the context) of one stage whose output is ``[B, c_out, *size]``."""
        if kind == "conv2d":
            c_in = draw(st.integers(1, 2))
            if draw(st.integers(0, 3)) == 0:                 # "same": stride 1, odd kernel
                used.add("conv2d_same")
                kern = (draw(st.sampled_from((1, 3))), draw(st.sampled_from((1, 3))))
                dil = draw(st.integers(1, 2))
                geom, dilation = (1, 1), (dil, dil)
                pad = (dil * (kern[0] - 1) // 2, dil * (kern[1] - 1) // 2)
                spell = "padding='same'" + (f", dilation={dil}" if dil > 1 else "")
                size_in = size
            else:
                kern = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
                big = max(size) > 2                          # keep the images small (mpmath's time)
                geom = (1, 1) if big else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
                dilation = (1, 1) if big else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
                pad = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
                size_in = []
                for a in range(2):
                    lo = (size[a] - 1) * geom[a] + dilation[a] * (kern[a] - 1) + 1 - 2 * pad[a]
                    if lo < 1:                               # padding more than the image needs
                        pad = tuple(0 if b == a else pad[b] for b in range(2))
                        lo = (size[a] - 1) * geom[a] + dilation[a] * (kern[a] - 1) + 1
                    size_in.append(lo + draw(st.integers(0, geom[a] - 1)))
                size_in = tuple(size_in)
                parts = ([f"stride={pair(geom)}"] if geom != (1, 1) or draw(st.integers(0, 3)) == 0 else []) \
                    + ([f"padding={pair(pad)}"] if pad != (0, 0) or draw(st.integers(0, 3)) == 0 else []) \
                    + ([f"dilation={pair(dilation)}"] if dilation != (1, 1) else [])
                spell = ", ".join(parts)
            w = var((c_out, c_in) + kern)
            bias = gen((c_out,), 0) if draw(st.booleans()) else None
            if bias is not None:
                used.add("conv2d_bias")
            args = w.text + (f", {bias.text}" if bias is not None else "") + (f", {spell}" if spell else "")
            return ((c_in,) + tuple(size_in), lambda t: f"conv2d({t}, {args})",
                    lambda x, c: c[1].conv2d(x, w.fn(c), None if bias is None else bias.fn(c),
                                             geom, pad, dilation))
        kern = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        if kern == (1, 1):
            kern = (2, 2)
        own_stride = draw(st.booleans())                     # (the default stride is the window)
        stride = (draw(st.integers(1, kern[0])), draw(st.integers(1, kern[1]))) if own_stride else kern
        pad = (draw(st.integers(0, kern[0] // 2)), draw(st.integers(0, kern[1] // 2)))
        if any((size[a] - 1) * stride[a] + kern[a] - 2 * pad[a] < 1 for a in range(2)):
            pad = (0, 0)                                     # (an image of no pixel otherwise)
        size_in = tuple((size[a] - 1) * stride[a] + kern[a] - 2 * pad[a] + draw(st.integers(0, stride[a] - 1))
                        for a in range(2))
        size_out = tuple((size_in[a] + 2 * pad[a] - kern[a]) // stride[a] + 1 for a in range(2))
        assert size_out == tuple(size), (size_in, kern, stride, pad, size)
        spell = pair(kern) + (f", stride={pair(stride)}" if own_stride else "") + \
            (f", padding={pair(pad)}" if pad != (0, 0) or draw(st.integers(0, 3)) == 0 else "")
        method = kind
        return ((c_out,) + size_in, lambda t: f"{kind}({t}, {spell})",
                lambda x, c: getattr(c[1], method)(x, kern, stride, pad))

    def image(shape, d):
        """``[B, F]``: a batch of small images through one or two convolutional stages and back."""
        B, F = shape
        head = pick(IMAGE_HEADS)
        if head == "global_avg_pool2d":
            channels, size = F, (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        else:                                                # channels * height * width == F
            channels = draw(st.sampled_from([c for c in range(1, F + 1) if F % c == 0]))
            h = draw(st.sampled_from([c for c in range(1, F // channels + 1) if (F // channels) % c == 0]))
            size = (h, F // channels // h)
        stages = []
        for _ in range(draw(st.integers(1, 2))):
            kind = pick(IMAGE_STAGES)
            c_out = channels if not stages else stages[-1][0][0]
            out_size = size if not stages else stages[-1][0][1:]
            stages.append(stage(kind, c_out, out_size))
        relu = [draw(st.integers(0, 3)) == 0 for _ in stages]
        C, H, W = stages[-1][0]
        if draw(st.booleans()):
            used.add("image_input")
            src = var((B, C, H, W))
            text, fn = src.text, src.fn
        else:
            used.add("reshape")
            flat = gen((B, C * H * W), d)
            lead = "-1" if draw(st.booleans()) or not isinstance(B, int) else str(B)
            text = f"reshape({flat.text}, ({lead}, {C}, {H}, {W}))"
            fn = lambda c: flat.fn(c).reshape((-1, C, H, W))        # noqa: E731
        for (_, spell, evaluate), act in zip(reversed(stages), reversed(relu)):
            text = spell(text)
            fn = lambda c, f=fn, ev=evaluate: ev(f(c), c)                 # noqa: E731
            if act:
                used.add("image_relu")
                text = f"relu({text})"
                fn = lambda c, f=fn: c[1].relu(f(c))                      # noqa: E731
        if head == "global_avg_pool2d":
            return Node(f"global_avg_pool2d({text})", shape, lambda c: c[1].global_avg_pool2d(fn(c)))
        if head == "flatten":
            spell = f"flatten({text})" if draw(st.booleans()) else f"flatten({text}, start=1)"
        else:
            spell = f"reshape({text}, (-1, {F}))"

        def back(c):
            y = fn(c)
            return y.reshape((y.shape[0], F))
        return Node(spell, shape, back)

    def gen(shape, d, top=False):
        full = max_nodes is not None and n_inner[0] >= max_nodes
        if not top and (d <= 0 or full or draw(st.integers(0, 5)) == 0):
            return number() if shape == () and draw(st.integers(0, 3)) == 1 else var(shape)
        n_inner[0] += 1
        p = pick(candidates(shape, top))
        k = d - 1
        if p in UNARY:
            a = gen(shape, k)
            fn = {"relu": lambda c: c[1].relu(a.fn(c)), "abs": lambda c: c[1].kink_abs(a.fn(c))}.get(
                p, lambda c: c[1].seen(getattr(c[1], p)(a.fn(c))))
            return Node(f"{p}({a.text})", shape, fn)
        if p == "neg":
            a = gen(shape, k)
            return Node(f"(-{a.text})", shape, lambda c: -a.fn(c))
        if p in ("log", "sqrt"):
            a = pos(shape, k)
            if p == "log":
                return Node(f"log({a.text})", shape, lambda c: c[1].log(a.fn(c)))
            return Node(f"sqrt({a.text})", shape, lambda c: a.fn(c) ** 0.5)
        if p == "powc":
            a, e = gen(shape, k), draw(st.sampled_from((2, 3)))
            return Node(f"({a.text} ** {e})", shape, lambda c: c[1].seen(a.fn(c) ** e))
        if p == "powc_pos":
            a, e = pos(shape, k), draw(st.sampled_from((-1, -2, 0.5, 1.5, -0.5)))
            return Node(f"({a.text} ** {e})", shape, lambda c: c[1].seen(a.fn(c) ** e))
        if p == "pow":
            if draw(st.booleans()):            # the base or the exponent is broadcast
                a, b = pos(shape, k), gen(suffix(shape), k)
            else:
                a, b = pos(suffix(shape), k), gen(shape, k)
            return Node(f"({a.text} ** {b.text})", shape, lambda c: c[1].seen(a.fn(c) ** b.fn(c)))
        if p == "leaky_relu":
            a, slope = gen(shape, k), draw(st.sampled_from((None, 0.2, -0.5)))
            s = 0.1 if slope is None else slope
            text = f"leaky_relu({a.text})" if slope is None else f"leaky_relu({a.text}, {_fmt(slope)})"

            def leaky(c):
                x = a.fn(c)
                c[1].margin(x)
                return np.where(x > 0, x, s * x)
            return Node(text, shape, leaky)
        if p == "elu":
            a, alpha = gen(shape, k), draw(st.sampled_from((None, 0.5, 2.0)))
            al = 1.0 if alpha is None else alpha
            text = f"elu({a.text})" if alpha is None else f"elu({a.text}, alpha={_fmt(alpha)})"

            def elu(c):
                x = a.fn(c)
                c[1].margin(x)
                return np.where(x >= 0, x, al * (c[1].exp(x) - 1))
            return Node(text, shape, elu)
        if p in ("add", "sub", "mul", "div", "maximum", "minimum", "binary_cross_entropy"):
            a = gen(shape, k)
            other = suffix(shape)
            b = pos(other, k) if p == "div" else gen(other, k)
            if p != "div" and draw(st.booleans()):
                a, b = b, a
            if p in ("add", "sub", "mul", "div"):
                sym = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[p]
                f = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
                     "div": lambda x, y: x / y}[p]
                return Node(f"({a.text} {sym} {b.text})", shape, lambda c: c[1].seen(f(a.fn(c), b.fn(c))))
            if p in ("maximum", "minimum"):
                return Node(f"{p}({a.text}, {b.text})", shape,
                            lambda c: c[1].maximum(a.fn(c), b.fn(c), p == "maximum"))

            return Node(f"binary_cross_entropy({a.text}, {b.text})", shape, lambda c: c[1].bce(a.fn(c), b.fn(c)))
        if p == "where":
            cmp = pick(("lt", "le", "gt", "ge"))
            l, r = gen(suffix(shape), k), gen(suffix(shape), k)
            a, b = gen(shape, k), gen(suffix(shape), k)
            if draw(st.booleans()):
                a, b = b, a
            sym = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}[cmp]
            op = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal}[cmp]

            def where(c):
                x, y = l.fn(c), r.fn(c)
                c[1].margin(x - y)
                return np.where(op(x, y), a.fn(c), b.fn(c)) + 0 * (x - y)   # broadcast like gradc
            return Node(f"where({l.text} {sym} {r.text}, {a.text}, {b.text})", shape, where)
        if p in ("sum", "mean"):
            child = gen(any_shape(), k)
            f = np.sum if p == "sum" else np.mean
            return Node(f"{p}({child.text})", shape, lambda c: f(child.fn(c)))
        if p == "logsumexp":          # over the whole array (stable, like gradc: no huge intermediate)
            child = gen(any_shape(), k)
            return Node(f"logsumexp({child.text})", shape, lambda c: c[1].logsumexp(child.fn(c)))
        if p == "mse":
            a = gen(any_shape(), k)
            b = gen(suffix(a.shape), k)
            if draw(st.booleans()):
                a, b = b, a

            def mse(c):
                d = a.fn(c) - b.fn(c)
                return np.sum(d * d) / d.size
            return Node(f"mse({a.text}, {b.text})", shape, mse)
        if p in ("sum_axis", "mean_axis", "max_pool", "lp_pool", "logavg_pool", "logsumexp_axis"):
            axis = draw(st.integers(0, len(shape)))
            child_shape = shape[:axis] + (draw(any_dim),) + shape[axis:]
            spell = axis - len(child_shape) if draw(st.booleans()) else axis    # also negative axes
            if p == "lp_pool":
                child = pos(child_shape, k)
            else:
                child = gen(child_shape, k)
            if p == "logsumexp_axis":
                return Node(f"logsumexp({child.text}, axis={spell})", shape,
                            lambda c: c[1].logsumexp(child.fn(c), axis=axis))
            if p in ("sum_axis", "mean_axis"):
                name = p[:-5]
                f = np.sum if name == "sum" else np.mean
                return Node(f"{name}({child.text}, axis={spell})", shape, lambda c: f(child.fn(c), axis=axis))
            if p == "max_pool":
                def max_pool(c):
                    x = child.fn(c)
                    c[1].top_two_gap(x, axis)
                    return np.max(x, axis=axis)
                return Node(f"max_pool({child.text}, axis={spell})", shape, max_pool)
            if p == "lp_pool":
                pp = draw(st.sampled_from((1.0, 2.0, 3.0, 0.5, 1.5)))
                return Node(f"lp_pool({child.text}, {_fmt(pp)}, axis={spell})", shape,
                            lambda c: c[1].lp(child.fn(c), pp, axis))
            beta = draw(st.sampled_from((1.0, -1.0, 2.0, 0.5)))
            return Node(f"logavg_pool({child.text}, {_fmt(beta)}, axis={spell})", shape,
                        lambda c: c[1].logavg(child.fn(c), beta, axis))
        if p == "matmul":
            inner = draw(any_dim)
            if len(shape) == 2:
                a, b = gen((shape[0], inner), k), gen((inner, shape[1]), k)
            elif len(shape) == 1 and draw(st.booleans()):
                a, b = gen((shape[0], inner), k), gen((inner,), k)
            elif len(shape) == 1:
                a, b = gen((inner,), k), gen((inner, shape[0]), k)
            else:
                a, b = gen((inner,), k), gen((inner,), k)
            return Node(f"({a.text} @ {b.text})", shape, lambda c: c[1].seen(np.matmul(a.fn(c), b.fn(c))))
        if p == "transpose":
            a = gen((shape[1], shape[0]), k)
            return Node(f"transpose({a.text})", shape, lambda c: a.fn(c).T)
        if p == "maxout":
            kk = draw(st.integers(1, 3))
            m = shape[-1]
            z = gen(shape[:-1] + (kk * m,), k)

            def maxout(c):
                x = z.fn(c)
                pieces = x.reshape(x.shape[:-1] + (kk, m))
                c[1].top_two_gap(pieces, -2)
                return np.max(pieces, axis=-2)
            return Node(f"maxout({z.text}, {kk})", shape, maxout)
        if p in ("softmax", "log_softmax"):
            a = gen(shape, k)
            axis = draw(st.integers(-len(shape), len(shape) - 1))
            default = axis in (-1, len(shape) - 1) and draw(st.booleans())
            text = f"{p}({a.text})" if default else f"{p}({a.text}, axis={axis})"
            return Node(text, shape, lambda c: c[1].seen(c[1].softmax(a.fn(c), axis, p == "log_softmax")))
        if p == "image":
            return image(shape, k)
        if p == "concat":         # concat([a, b(, c)], axis=k): the parts of a concrete axis
            axis = draw(st.sampled_from([i for i, dim in enumerate(shape) if isinstance(dim, int) and dim >= 2]))
            cuts = sorted(draw(st.sets(st.integers(1, shape[axis] - 1), min_size=1, max_size=2)))
            sizes = [b - a for a, b in zip([0] + cuts, cuts + [shape[axis]])]
            parts = [gen(shape[:axis] + (m,) + shape[axis + 1:], k) for m in sizes]
            spell = "" if axis == 0 and draw(st.booleans()) else \
                f", axis={axis - len(shape) if draw(st.booleans()) else axis}"
            return Node(f"concat([{', '.join(q.text for q in parts)}]{spell})", shape,
                        lambda c: np.concatenate([q.fn(c) for q in parts], axis=axis))
        if p == "slice":          # x[1:3], X[:, :-1]: a concrete axis of the operand, cut to `shape`
            axis = draw(st.sampled_from([i for i, dim in enumerate(shape) if isinstance(dim, int)]))
            full = shape[axis] + draw(st.integers(0, 2))
            start = draw(st.integers(0, full - shape[axis]))
            stop = start + shape[axis]
            a = gen(shape[:axis] + (full,) + shape[axis + 1:], k)
            lo = "" if start == 0 and draw(st.booleans()) else str(start - full if draw(st.booleans()) else start)
            hi = "" if stop == full and draw(st.booleans()) else str(stop - full if stop < full and draw(st.booleans())
                                                                     else stop)
            index = [":"] * axis + [f"{lo}:{hi}"] + [":"] * draw(st.integers(0, len(shape) - axis - 1))
            cut = (slice(None),) * axis + (slice(start, stop),)
            return Node(f"{a.text}[{', '.join(index)}]", shape, lambda c: a.fn(c)[cut])
        assert p in ("pick", "softmax_cross_entropy", "svm_hinge"), p
        classes = draw(st.integers(1, 3))
        s = gen((N, classes), k)
        y = f"y{classes}"
        labels[y] = classes

        def label_op(c):
            sc, lab = s.fn(c), c[0][y]
            rows = np.arange(sc.shape[0])
            picked = sc[rows, lab]
            if p == "pick":
                return picked
            if p == "softmax_cross_entropy":
                return c[1].softmax_ce(sc, lab)
            margins = sc - picked[:, None] + 1
            others = np.ones(sc.shape, dtype=bool)
            others[rows, lab] = False
            c[1].margin(margins[others])
            return np.sum(np.where(others & (margins > 0), margins, 0 * margins), axis=1)
        return Node(f"{p}({s.text}, {y})", shape, label_op)

    rank3 = max_rank >= 3 and draw(st.integers(0, 3)) == 3
    if focus == "image":
        used.add("image")
        n_inner[0] += 2
        body = image((draw(st.sampled_from((N, 1, 2))), draw(st.integers(1, 3))), max_depth - 1)
        red = pick(("sum", "mean"))
        f = np.sum if red == "sum" else np.mean
        root = Node(f"{red}({body.text})", (), lambda c: f(body.fn(c)))
    else:
        root = gen((), max_depth, top=True)
    if draw(st.integers(0, 5)) == 2:          # an input the value does not depend on: zero gradient
        used.add("unused_input")
        name = f"a{len(inputs)}"
        inputs[name] = any_shape()
        dtypes[name] = "float32" if precision == "float32" else "float64"
    return ArrayTree(root, inputs, labels, frozenset(used), dtypes, n_inner[0])
