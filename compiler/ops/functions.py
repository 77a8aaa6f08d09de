"""Elementary and special functions of SymPy (issue 6): one op each, elementwise.

The table :data:`UNARY` lists the plain unary ops with their derivative (built
in IR from the operand ``x`` and the result ``y``; the adjoint is ``g`` times it),
the note printed beside adjoint code, the constant-folding function and the
template helpers (``templates/ops/functions.j2``); the ops with attributes or
two operands follow it, one ``_reg`` call each. ``docs/sympy_functions.md``
is the same table for users, with the SymPy class of each op.

Derivatives are the textbook ones, written where it matters for accuracy near
the edges of the domain: asin' = 1/√((1−x)(1+x)) (not 1 − x², which loses the
digits of x near ±1), coth' = −1/sinh² (not 1 − coth², which cancels for large
x), LambertW' = e^(−W)/(1+W) (= W/(x(1+W)), finite at x = 0; 1 + W from the
series at the branch point −1/e, op ``lambertw_vjp``), and sinc' by its series
near 0 (op ``sinc_vjp``). digamma, polygamma(n, ·) and LambertW have no
Numba implementation: the generated module carries helper functions
(recurrence + asymptotic series with Bernoulli numbers, a Taylor series at
digamma's positive root, reflection for x < 0; Halley iteration for W),
accurate to ~1e-15 relative (tests/test_sympy_functions.py, against mpmath and
scipy.special).

Piecewise-constant functions and kinks: values exact; the gradient is the
derivative almost everywhere, i.e. 0 for sign, heaviside, floor and ceil, 1 for
frac, (1, −floor(a/b)) for mod(a, b); at the jumps themselves the same formula
is used (the one-sided value, never a Dirac delta or NaN).
"""
from __future__ import annotations

import math

from ..errors import ShapeError
from . import Const, elementwise_float, register


def _neg(b, v, name=None):
    return b.emit("neg", v, name=name)


def _mul(b, *vs, name=None):
    """The product of ``vs`` from the left; ``name`` names the result."""
    acc = vs[0]
    for k, v in enumerate(vs[1:], 2):
        acc = b.emit("mul", acc, v, name=name if k == len(vs) else None)
    return acc


def _one_minus_sq(b, x):
    """(1 − x)(1 + x): 1 − x² without losing the digits of x near ±1."""
    return b.emit("mul", b.emit("sub", 1.0, x), b.emit("add", 1.0, x))


def _sqrt(b, v):
    return b.emit("sqrt", v)


def _fold_acot(x):
    return math.atan(1.0 / x) if x != 0 else math.pi / 2


_HELPER = ("math",)            # `import math` in the generated module, then the op's own helpers

#: op -> (derivative d(b, x, y, n) = f'(x) built in IR from the operand x and the result y, its
#: last value named n (``dasin``), the note beside adjoint code, the constant-folding function, the
#: template helpers); the adjoint rule is g * d(x, y).
UNARY = {
    "cot": (lambda b, x, y, n: _neg(b, b.emit("add", 1.0, _mul(b, y, y)), name=n),
            "cot: -(1 + cot^2) (reuses the result)", lambda x: 1.0 / math.tan(x), ()),
    "sec": (lambda b, x, y, n: _mul(b, y, b.emit("tan", x), name=n), "sec: sec tan",
            lambda x: 1.0 / math.cos(x), ()),
    "csc": (lambda b, x, y, n: _neg(b, _mul(b, y, y, b.emit("cos", x)), name=n), "csc: -csc cot = -csc^2 cos",
            lambda x: 1.0 / math.sin(x), ()),
    "asin": (lambda b, x, y, n: b.emit("div", 1.0, _sqrt(b, _one_minus_sq(b, x)), name=n),
             "asin: 1/sqrt((1 - x)(1 + x))", math.asin, ()),
    "acos": (lambda b, x, y, n: b.emit("div", -1.0, _sqrt(b, _one_minus_sq(b, x)), name=n),
             "acos: -1/sqrt((1 - x)(1 + x))", math.acos, ()),
    "atan": (lambda b, x, y, n: b.emit("div", 1.0, b.emit("add", 1.0, _mul(b, x, x)), name=n),
             "atan: 1/(1 + x^2)", math.atan, ()),
    "acot": (lambda b, x, y, n: b.emit("div", -1.0, b.emit("add", 1.0, _mul(b, x, x)), name=n),
             "acot: -1/(1 + x^2) (acot(0) = pi/2: SymPy's value at the jump)", _fold_acot, ()),
    "sinh": (lambda b, x, y, n: b.emit("cosh", x, name=n), "sinh: cosh", math.sinh, ()),
    "cosh": (lambda b, x, y, n: b.emit("sinh", x, name=n), "cosh: sinh", math.cosh, ()),
    "coth": (lambda b, x, y, n: b.emit("div", -1.0, _mul(b, b.emit("sinh", x), b.emit("sinh", x)), name=n),
             "coth: -1/sinh^2", lambda x: 1.0 / math.tanh(x), ()),
    "sech": (lambda b, x, y, n: _neg(b, _mul(b, y, b.emit("tanh", x)), name=n), "sech: -sech tanh",
             lambda x: 1.0 / math.cosh(x), ()),
    "csch": (lambda b, x, y, n: _neg(b, b.emit("div", y, b.emit("tanh", x)), name=n),
             "csch: -csch coth = -csch/tanh", lambda x: 1.0 / math.sinh(x), ()),
    "asinh": (lambda b, x, y, n: b.emit("div", 1.0, _sqrt(b, b.emit("add", 1.0, _mul(b, x, x))), name=n),
              "asinh: 1/sqrt(1 + x^2)", math.asinh, ()),
    "acosh": (lambda b, x, y, n: b.emit("div", 1.0, _sqrt(b, _mul(b, b.emit("sub", x, 1.0), b.emit("add", x, 1.0))),
                                        name=n),
              "acosh: 1/sqrt((x - 1)(x + 1))", math.acosh, ()),
    "atanh": (lambda b, x, y, n: b.emit("div", 1.0, _one_minus_sq(b, x), name=n), "atanh: 1/((1 - x)(1 + x))",
              math.atanh, ()),
    "erf": (lambda b, x, y, n: _mul(b, 2.0 / math.sqrt(math.pi), b.emit("exp", _neg(b, _mul(b, x, x))), name=n),
            "erf: 2/sqrt(pi) exp(-x^2)", math.erf, _HELPER + ("erf",)),
    "erfc": (lambda b, x, y, n: _mul(b, -2.0 / math.sqrt(math.pi), b.emit("exp", _neg(b, _mul(b, x, x))), name=n),
             "erfc: -2/sqrt(pi) exp(-x^2)", math.erfc, _HELPER + ("erfc",)),
    "gamma": (lambda b, x, y, n: _mul(b, y, b.emit("digamma", x), name=n),
              "gamma: gamma digamma (reuses the result)", math.gamma, _HELPER + ("gamma",)),
    "loggamma": (lambda b, x, y, n: b.emit("digamma", x, name=n), "loggamma: digamma", math.lgamma,
                 _HELPER + ("loggamma",)),
    "digamma": (lambda b, x, y, n: b.emit("polygamma", x, n=1, name=n), "digamma: polygamma(1, x)", None,
                _HELPER + ("polygamma",)),
}


def _reg(name, infer, vjp, note="", fold=None, helpers=(), **traits):
    """Every op here is elementwise; ``traits`` are the other fields of :class:`~gradc.ops.Op`."""
    register(name, infer, vjp, note, fold, helpers, family="functions", elementwise=True, **traits)


def _scaled(name, derivative):
    """The adjoint rule g * f'(x), with f'(x) named by its role (``dasin``)."""
    return lambda b, s, g: [b.emit("mul", g, derivative(b, s.args[0], s.out, "d" + name))]


for _name, (_d, _note, _fold, _helpers) in UNARY.items():
    _reg(_name, elementwise_float, _scaled(_name, _d), _note, _fold, _helpers, spelling=_name,
         aliases=("lgamma",) if _name == "loggamma" else ())


# ------------------------------------------------------------ ops with attributes or two operands
def _polygamma_rule(args, attrs):
    n = attrs.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ShapeError(f"the order n={n!r} must be an integer constant >= 0")
    return elementwise_float(args, attrs)


def _heaviside_rule(args, attrs):
    h0 = attrs.get("h0")
    if not isinstance(h0, float) or not math.isfinite(h0):
        raise ShapeError(f"the value at 0, h0={h0!r}, must be a finite number")
    return elementwise_float(args, attrs)


def _sinc(x):
    return math.sin(x) / x if x != 0 else 1.0


_reg("polygamma", _polygamma_rule,
     lambda b, s, g: [b.emit("mul", g, b.emit("polygamma", s.args[0], n=s.attr["n"] + 1))],
     "polygamma: polygamma(n + 1, x)", helpers=_HELPER + ("polygamma",),
     spelling="polygamma", consts=(Const("n", "int"),))
def _vjp_jvp(b, s, ts, second):
    """The JVP of ``f_vjp(g, x) = g f'(x)``: ``g' f'(x) + g f''(x) x'``."""
    tg, tx = ts
    g, x = s.args
    terms = []
    if tg is not None:
        terms.append(b.emit(s.op, tg, x))
    if tx is not None:
        terms.append(b.emit("mul", b.emit("mul", g, second(b, x)), tx))
    if not terms:
        return None
    total = terms[0] if len(terms) == 1 else b.emit("add", *terms)
    return total if total.shape == s.out.shape else b.emit("expand", total, s.out)


def _sinc2(b, x):
    """sinc''(x) = -sinc(x) - 2 sinc'(x)/x, and its series -1/3 + x²/10 for |x| < 1e-3 (where the
    formula divides by ~0; the series' next term x⁴/168 is below 1e-14 there)."""
    d1 = b.emit("sinc_vjp", 1.0, x)
    formula = b.emit("sub", b.emit("neg", b.emit("sinc", x)), b.emit("div", b.emit("mul", 2.0, d1), x))
    series = b.emit("add", -1.0 / 3.0, b.emit("mul", 0.1, b.emit("mul", x, x)))
    return b.emit("where", b.emit("lt", b.emit("abs", x), 1e-3), series, formula, name="d2sinc")


def _lambertw2(b, x):
    """W''(x) = -W'(x)² (2 + W)/(1 + W), from W' = exp(-W)/(1 + W) (differentiated once more)."""
    w = b.emit("lambertw", x)
    d1 = b.emit("lambertw_vjp", 1.0, x)
    ratio = b.emit("div", b.emit("add", 2.0, w), b.emit("add", 1.0, w))
    return b.emit("neg", b.emit("mul", b.emit("mul", d1, d1), ratio), name="d2lambertw")


_reg("sinc", elementwise_float, lambda b, s, g: [b.emit("sinc_vjp", g, s.args[0])],
     "sinc: (x cos x - sin x)/x^2 (a series near 0; sinc(0) = 1, sinc'(0) = 0)", _sinc, _HELPER + ("sinc",),
     spelling="sinc")
_reg("sinc_vjp", elementwise_float, None, helpers=_HELPER + ("sinc",), jvp=lambda b, s, ts: _vjp_jvp(b, s, ts, _sinc2))
_reg("lambertw", elementwise_float, lambda b, s, g: [b.emit("lambertw_vjp", g, s.args[0])],
     "lambertw: W/(x(1 + W)) = exp(-W)/(1 + W) (1 + W from the series at the branch point -1/e)",
     helpers=_HELPER + ("lambertw",), spelling="lambertw")
_reg("lambertw_vjp", elementwise_float, None, helpers=_HELPER + ("lambertw",),
     jvp=lambda b, s, ts: _vjp_jvp(b, s, ts, _lambertw2))
_reg("atan2", elementwise_float,
     lambda b, s, g: _atan2_vjp(b, s.args[0], s.args[1], g),
     "atan2(y, x): (x dy - y dx)/(x^2 + y^2) (jump across x < 0, y = 0: the a.e. derivative)",
     math.atan2, spelling="atan2", operands=("y", "x"))


def _atan2_vjp(b, y, x, g):
    r2 = b.emit("add", _mul(b, x, x), _mul(b, y, y), name="r2")
    return [b.emit("div", _mul(b, g, x), r2), _neg(b, b.emit("div", _mul(b, g, y), r2))]


# piecewise constant and kinks: values exact, the derivative almost everywhere (also used at the jumps)
_reg("heaviside", _heaviside_rule, lambda b, s, g: [None],
     "heaviside: 0 almost everywhere (the jump at 0 has value h0, derivative 0)",
     spelling="heaviside", consts=(Const("h0", "number", 0.5),))
_reg("floor", elementwise_float, lambda b, s, g: [None], "floor: 0 almost everywhere (0 at the integers too)",
     lambda x: float(math.floor(x)), spelling="floor")
_reg("ceil", elementwise_float, lambda b, s, g: [None], "ceil: 0 almost everywhere (0 at the integers too)",
     lambda x: float(math.ceil(x)), spelling="ceil")
_reg("frac", elementwise_float, lambda b, s, g: [g], "frac: 1 almost everywhere (1 at the integers too)",
     lambda x: x - math.floor(x), spelling="frac")
_reg("mod", elementwise_float,
     lambda b, s, g: [g, _neg(b, _mul(b, g, b.emit("floor", b.emit("div", s.args[0], s.args[1]))))],
     "mod(a, b) = a - b floor(a/b): 1 to a, -floor(a/b) to b (the same formula at the jumps)",
     lambda a, b: a % b, spelling="mod", operands=("a", "b"))
