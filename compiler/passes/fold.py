"""Constant folding: scalar ops whose operands are all constants become constants.

Uses each op's ``fold`` function from the op table. Results that are not
finite (log(0), 1/0) are left unfolded so the generated code shows the op.
``size`` folds when the shape is concrete; an ``alias`` of a constant becomes
the constant. Exact operands (``Fraction`` constants from SymPy's Rational)
fold exactly where the op's fold function keeps them exact (+ - * /, integer powers).
"""
from __future__ import annotations

import math
import struct
from fractions import Fraction

from ..ir import Stmt
from ..ops import OPS


def _exact(value):
    """An exact Fraction (from SymPy's Rational operands) stays exact; anything else is a float."""
    return value if isinstance(value, Fraction) else float(value)


def _const_stmt(s, value):
    if s.out.dtype == "f32":                 # a float32 constant holds a float32 number
        value = float(value)
        value = struct.unpack("f", struct.pack("f", value))[0] if abs(value) < 3.4e38 else value
        attrs = (("dtype", "f32"), ("shape", ()), ("value", value))
    else:
        attrs = (("shape", ()), ("value", _exact(value)))
    return Stmt("const", (), s.out, attrs, s.loc, s.note, s.adjoint)


def fold_constants(fn):
    consts: dict[int, float] = {}
    stmts = []
    for s in fn.stmts:
        if s.op == "const":
            if not s.out.shape:
                consts[id(s.out)] = s.attr["value"]
            stmts.append(s)
            continue
        value = None
        if s.op == "size":
            axis = s.attr.get("axis")
            dims = s.args[0].shape if axis is None else (s.args[0].shape[axis],)
            if all(isinstance(d, int) for d in dims):
                value = math.prod(dims)
        elif s.op == "alias" and id(s.args[0]) in consts:
            value = consts[id(s.args[0])]
        elif s.op == "powc" and id(s.args[0]) in consts:
            try:
                value = consts[id(s.args[0])] ** s.attr["p"]
            except (ArithmeticError, ValueError):
                value = None
            if value is not None and (isinstance(value, complex) or not math.isfinite(value)):
                value = None
        elif (OPS[s.op].fold and s.out.dtype in ("f64", "f32") and not s.out.shape
              and all(id(a) in consts for a in s.args)):
            try:
                value = OPS[s.op].fold(*(consts[id(a)] for a in s.args))
            except (ArithmeticError, ValueError):
                value = None
            if value is not None and (isinstance(value, complex) or not math.isfinite(value)):
                value = None
        if value is None:
            stmts.append(s)
        else:
            consts[id(s.out)] = _exact(value) if s.out.dtype == "f64" else float(value)
            stmts.append(_const_stmt(s, value))
    return fn.replace(stmts)
