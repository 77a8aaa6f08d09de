"""Elementwise arithmetic and math functions (scalars or arrays, broadcasting).

Adjoint rules are the textbook derivatives (e.g. CS231n backprop notes; any
calculus table); where the derivative is a function of the result it reuses
the primal result: exp' = exp, tanh' = 1 - t², sigmoid' = s(1 - s) (computed
as s(x)·s(−x), which keeps its relative accuracy where 1 − s rounds to 0),
sqrt' = 1/(2√x). Kinks: relu'(0) = 0, |x|'(0) = 0 (sign(0) = 0).

Activations of the lecture notes (XJTLU INT305 Lecture 5, after CS231n
"Neural Networks Part 1"), float64 scalars or arrays, result shaped like ``x``;
constants (slope, alpha) are static attributes of the op:

* ``leaky_relu(x; slope=0.1) = x if x > 0 else slope·x`` (the notes' ``max(0.1x, x)``
  for slope ≤ 1); derivative 1 for x > 0 and ``slope`` for x ≤ 0. At the kink
  x = 0 it is ``slope``: that is the notes' max gate (dz/dx = 1 if x ≥ y, ties to
  the first argument) applied to ``max(slope·x, x)``, and relu'(0) = 0 is its
  slope-0 case; ``maximum(0.1 * x, x)`` written in a spec gives the same gradient.
* ``elu(x; alpha=1) = x if x ≥ 0 else alpha·(eˣ − 1)`` (computed with expm1);
  derivative 1 for x ≥ 0 (so ELU'(0) = 1, the notes' x ≥ 0 branch) and
  ``alpha·eˣ`` for x < 0 (computed as ``alpha·exp(min(x, 0))``, not from the
  result: ``y + alpha`` cancels to 0 for x ≪ 0).
* ``softplus(x) = log(1 + eˣ)``, computed as ``max(x, 0) + log1p(exp(−|x|))`` (no
  overflow for large |x|); derivative sigmoid(x).
* ``log_sigmoid(x) = log σ(x) = −softplus(−x)``, computed as
  ``min(x, 0) − log1p(exp(−|x|))``; derivative ``1 − σ(x) = σ(−x)``.
* ``softsign(x) = x / (1 + |x|)`` (Bergstra et al. 2009, "Quadratic polynomials learn
  better image features"; Glorot & Bengio 2010); derivative ``1 / (1 + |x|)²``.

Each entry carries its traits (``gradc.ops.Op``): ``loop=True`` for the ops a fused
loop computes one element at a time, ``kernel=True`` for exp/tanh/sigmoid (vectorizable
element kernels), ``scalar_call`` for those whose element code calls the C library,
``rollable=True`` for those a re-rolled sum may contain, ``spelling`` for the spec function.
"""
from __future__ import annotations

import math
from fractions import Fraction

from ..errors import ShapeError
from . import Const, elementwise_float, need_float, register, zero_jvp


def _reg(name, infer, vjp, note="", fold=None, helpers=(), **traits):
    register(name, infer, vjp, note, fold, helpers=helpers, family="elementwise", **traits)


def _const_rule(args, attrs):
    return attrs.get("dtype", "f64"), tuple(attrs.get("shape", ()))


def _powc_rule(args, attrs):
    need_float(args[0])
    if not isinstance(attrs.get("p"), (float, Fraction)) or not math.isfinite(attrs["p"]):
        raise ShapeError("the exponent must be a finite number")
    return args[0].dtype, args[0].shape


def _unary(args, attrs):
    return elementwise_float(args, attrs)


def libm(stmt) -> bool:
    """``scalar_call=libm``: the op's element code always calls the C library."""
    return True


#: Exponents of ``powc`` with element code of their own (``x * x``, ``np.sqrt(x)``, ``1 / x``;
#: templates/ops/elementwise.j2 reads them as ``o.op.forms``); any other calls the C library's pow.
POWC_FORMS = ((2.0, "square"), (0.5, "sqrt"), (-1.0, "reciprocal"))

_reg("const", _const_rule, None, jvp=zero_jvp)
# `alias` names an existing value (`x_bar = q_bar`); renders as a plain binding, no copy.
_reg("alias", lambda args, attrs: (args[0].dtype, args[0].shape), lambda b, s, g: [g],
     elementwise=True, loop="alias", rollable=True, view=True, linear=(0,))

# binary arithmetic (spelled as operators in specs: + - * / ** and unary -)
_reg("add", elementwise_float, lambda b, s, g: [g, g],
     "add: distributes the gradient", lambda x, y: x + y,
     elementwise=True, loop=True, rollable=True, commutative=True, symbol="+")
_reg("sub", elementwise_float, lambda b, s, g: [g, b.emit("neg", g)],
     "sub: +g to the left, -g to the right", lambda x, y: x - y,
     elementwise=True, loop=True, rollable=True, symbol="-")
_reg("mul", elementwise_float,
     lambda b, s, g: [b.emit("mul", g, s.args[1]), b.emit("mul", g, s.args[0])],
     "mul: swaps the inputs", lambda x, y: x * y,
     elementwise=True, loop=True, rollable=True, commutative=True, symbol="*")
_reg("div", elementwise_float,
     lambda b, s, g: [b.emit("div", g, s.args[1]),
                      b.emit("neg", b.emit("mul", g, b.emit("div", s.out, s.args[1])))],
     "div: d(x/y) = dx/y - (x/y) dy/y", lambda x, y: x / y,
     elementwise=True, loop=True, rollable=True, symbol="/")
_reg("neg", _unary, lambda b, s, g: [b.emit("neg", g)], "neg: -g", lambda x: -x,
     elementwise=True, loop=True, rollable=True, symbol="-x")
_reg("powc", _powc_rule,
     lambda b, s, g: [b.emit("mul", g, b.emit("mul", s.attr["p"], b.emit("powc", s.args[0], p=s.attr["p"] - 1),
                                               name="dpow"))],
     "pow: d(x^p) = p x^(p-1)",
     elementwise=True, loop=True, rollable=True, forms=POWC_FORMS,
     scalar_call=lambda s: s.attr["p"] not in dict(POWC_FORMS),
     symbol=lambda s, num: f"x^{num(float(s.attr['p']))}")
_reg("pow", elementwise_float,
     lambda b, s, g: [b.emit("mul", g, b.emit("mul", s.args[1],
                                               b.emit("pow", s.args[0], b.emit("sub", s.args[1], 1.0)),
                                               name="dpow_dx")),
                      b.emit("mul", g, b.emit("mul", s.out, b.emit("log", s.args[0]), name="dpow_dy"))],
     "pow: d(x^y) = y x^(y-1) dx + x^y log(x) dy", lambda x, y: x ** y,
     elementwise=True, loop=True, rollable=True, scalar_call=libm, symbol="x^y")

# unary math
_reg("exp", _unary, lambda b, s, g: [b.emit("mul", g, s.out)], "exp: exp' = exp (reuses the result)", math.exp,
     helpers=("vmath",), elementwise=True, loop=True, kernel=True, rollable=True, spelling="exp")
_reg("log", _unary, lambda b, s, g: [b.emit("div", g, s.args[0])], "log: 1/x", math.log,
     elementwise=True, loop=True, scalar_call=libm, rollable=True, spelling="log")
_reg("sqrt", _unary, lambda b, s, g: [b.emit("div", b.emit("mul", 0.5, g), s.out)],
     "sqrt: 1/(2 sqrt(x)) (reuses the result)", math.sqrt,
     elementwise=True, loop=True, rollable=True, spelling="sqrt")
_reg("sin", _unary, lambda b, s, g: [b.emit("mul", g, b.emit("cos", s.args[0], name="dsin"))], "sin: cos",
     math.sin, elementwise=True, loop=True, scalar_call=libm, rollable=True, spelling="sin")
_reg("cos", _unary, lambda b, s, g: [b.emit("neg", b.emit("mul", g, b.emit("sin", s.args[0])))],
     "cos: -sin", math.cos, elementwise=True, loop=True, scalar_call=libm, rollable=True, spelling="cos")
_reg("tan", _unary,
     lambda b, s, g: [b.emit("mul", g, b.emit("add", 1.0, b.emit("mul", s.out, s.out), name="dtan"))],
     "tan: 1 + tan^2 (reuses the result)", math.tan,
     elementwise=True, loop=True, scalar_call=libm, rollable=True, spelling="tan")
_reg("tanh", _unary,
     lambda b, s, g: [b.emit("mul", g, b.emit("sub", 1.0, b.emit("mul", s.out, s.out), name="dtanh"))],
     "tanh: 1 - t^2 (reuses the result)", math.tanh, helpers=("vmath",),
     elementwise=True, loop=True, kernel=True, rollable=True, spelling="tanh")
# sigmoid' = s(1 - s), computed as s(x) s(-x): for x = 40, 1 - s rounds to 0 but s(-40) = 4.2e-18
_reg("sigmoid", _unary,
     lambda b, s, g: [b.emit("mul", g, b.emit("mul", s.out, b.emit("sigmoid", b.emit("neg", s.args[0])),
                                               name="dsigmoid"))],
     "sigmoid: s(1 - s) = s(x) s(-x) (reuses the result)", lambda x: _sigmoid(x), helpers=("vmath",),
     elementwise=True, loop=True, kernel=True, rollable=True, spelling="sigmoid")
_reg("relu", _unary,
     lambda b, s, g: [b.emit("where", b.emit("gt", s.out, 0.0, name="relu_mask"), g, 0.0)],
     "relu: routes g where relu(x) > 0, i.e. x > 0 (relu'(0) = 0; reads the result)",
     lambda x: max(x, 0.0),
     elementwise=True, loop=True, rollable=True, spelling="relu", monotone=True)
_reg("abs", _unary, lambda b, s, g: [b.emit("mul", g, b.emit("sign", s.args[0], name="dabs"))],
     "abs: sign(x) (|x|'(0) = 0)", abs, elementwise=True, loop=True, rollable=True, spelling="abs")
_reg("sign", _unary, None, fold=lambda x: float((x > 0) - (x < 0)), jvp=zero_jvp,
     elementwise=True, loop=True, spelling="sign")
_reg("maximum", elementwise_float,
     lambda b, s, g: _route(b, b.emit("ge", s.args[0], s.args[1], name="maximum_mask"), g),
     "max: routes to the larger input", max,
     elementwise=True, loop=True, rollable=True, commutative=True, spelling="maximum", operands=("a", "b"),
     symbol="max")
_reg("minimum", elementwise_float,
     lambda b, s, g: _route(b, b.emit("le", s.args[0], s.args[1], name="minimum_mask"), g),
     "min: routes to the smaller input", min,
     elementwise=True, loop=True, rollable=True, commutative=True, spelling="minimum", operands=("a", "b"),
     symbol="min")


def _route(b, first_wins, g):
    """The max/min gate: the whole g goes to the chosen input, zero to the other."""
    return [b.emit("where", first_wins, g, 0.0), b.emit("where", first_wins, 0.0, g)]


# ------------------------------------------------------------ activations (issue 3)
def _activation_rule(name):
    """Elementwise float rule plus a finite-number check of the constant attribute ``name``."""
    def rule(args, attrs):
        value = attrs.get(name)
        if not isinstance(value, float) or not math.isfinite(value):
            raise ShapeError(f"{name} must be a finite number, got {value!r}")
        return elementwise_float(args, attrs)
    return rule


def _sigmoid(x):
    """1 / (1 + e^-x) without overflow (exp of a non-positive number only)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    t = math.exp(x)
    return t / (1.0 + t)


def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


_reg("leaky_relu", _activation_rule("slope"),
     lambda b, s, g: [b.emit("where", b.emit("gt", s.args[0], 0.0, name="leaky_relu_mask"), g,
                             b.emit("mul", g, s.attr["slope"]))],
     "leaky_relu: g where x > 0, slope*g where x <= 0 (the max(slope*x, x) tie rule at 0)",
     elementwise=True, loop=True, rollable=True, spelling="leaky_relu", consts=(Const("slope", "number", 0.1),),
     monotone=lambda s: s.attr["slope"] >= 0)
_reg("elu", _activation_rule("alpha"),
     lambda b, s, g: [b.emit("where", b.emit("ge", s.args[0], 0.0, name="elu_mask"), g,
                             b.emit("mul", g, b.emit("mul", s.attr["alpha"],
                                                     b.emit("exp", b.emit("minimum", s.args[0], 0.0)),
                                                     name="delu")))],
     "elu: g where x >= 0, g alpha e^x where x < 0",
     elementwise=True, loop=True, scalar_call=libm, rollable=True, spelling="elu",
     consts=(Const("alpha", "number", 1.0),))
_reg("softplus", _unary, lambda b, s, g: [b.emit("mul", g, b.emit("sigmoid", s.args[0], name="dsoftplus"))],
     "softplus: sigmoid(x)", _softplus,
     elementwise=True, loop=True, scalar_call=libm, rollable=True, spelling="softplus")
_reg("log_sigmoid", _unary,
     lambda b, s, g: [b.emit("mul", g, b.emit("sigmoid", b.emit("neg", s.args[0]), name="dlog_sigmoid"))],
     "log_sigmoid: 1 - sigmoid(x) = sigmoid(-x)", lambda x: -_softplus(-x),
     elementwise=True, loop=True, scalar_call=libm, rollable=True, spelling="log_sigmoid")


def _softsign_vjp(b, s, g):
    """g / (1 + |x|)^2, from the operand (1 - |y| = 1/(1 + |x|) would cancel for large |x|)."""
    den = b.emit("add", 1.0, b.emit("abs", s.args[0]))
    return [b.emit("mul", g, b.emit("div", 1.0, b.emit("mul", den, den), name="dsoftsign"))]


# softsign(x) = x / (1 + |x|) (Bergstra et al. 2009; Glorot & Bengio 2010), derivative 1/(1 + |x|)^2
_reg("softsign", _unary, _softsign_vjp, "softsign: 1/(1 + |x|)^2", lambda x: x / (1.0 + abs(x)),
     elementwise=True, loop=True, rollable=True, spelling="softsign")
