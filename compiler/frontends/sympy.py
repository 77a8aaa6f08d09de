"""SymPy frontend: lower a SymPy expression to the primal IR.

Accepted (anything else raises :class:`~gradc.errors.UnsupportedError` naming
the SymPy class): numbers and constants (pi, E, EulerGamma, ...), Symbol, Add,
Mul (with quotients), Pow (integer, rational, real and symbolic exponents),
exp, log, sqrt, sin, cos, tan, tanh, Abs, Max, Min, Piecewise with
relational conditions (<, <=, >, >=) combined by And, Or, Not (and ITE, which SymPy
writes for a condition on a Piecewise); and
MatrixSymbol algebra: MatMul, MatAdd, Transpose, scalar multiples,
HadamardProduct, HadamardPower. A 1×1 matrix result becomes a scalar.

The walk is iterative (no recursion limit) and memoised on the SymPy node, so
each distinct subexpression becomes exactly one SSA value.
"""
from __future__ import annotations

import hashlib

import sympy as sp

from ..errors import GradcError, UnsupportedError
from ..ir import Builder, Function, Namer, Value, check_identifier
from . import Lowered

_UNARY = {sp.exp: "exp", sp.log: "log", sp.sin: "sin", sp.cos: "cos", sp.tan: "tan",
          sp.tanh: "tanh", sp.Abs: "abs"}
_COMPARE = {sp.StrictLessThan: "lt", sp.LessThan: "le", sp.StrictGreaterThan: "gt", sp.GreaterThan: "ge"}


def _show(expr, limit: int = 200) -> str:
    """The start of ``str(expr)`` for error messages; SymPy's printer recurses, so deep trees get a placeholder."""
    try:
        text = str(expr)
    except RecursionError:
        return f"<a {type(expr).__name__} expression too deep to print>"
    return text if len(text) <= limit else text[:limit] + "..."


def _chain(b, op: str, vals):
    """Fold an n-ary SymPy node into binary ops: op(op(v0, v1), v2) ..."""
    acc = vals[0]
    for v in vals[1:]:
        acc = b.emit(op, acc, v)
    return acc


def _is_neg(term) -> bool:
    return isinstance(term, (sp.Mul, sp.Number)) and term.could_extract_minus_sign() and term != 0


class _Lowerer:
    def __init__(self, expr, args):
        self.expr = expr
        self.b = Builder(Namer())
        self.memo: dict = {}
        self.kids: dict = {}
        self.inputs: list[Value] = []
        for a in args:
            if not isinstance(a, (sp.Symbol, sp.MatrixSymbol)):
                raise UnsupportedError(f"argument {a!r} is a {type(a).__name__}, not a Symbol or MatrixSymbol",
                                       _show(expr))
            name = str(a.name)
            why = check_identifier(name)
            if why:
                raise UnsupportedError(f"symbol name '{name}' cannot be a Python argument: {why}", _show(expr),
                                       "rename the symbol")
            shape = tuple(int(d) for d in a.shape) if isinstance(a, sp.MatrixSymbol) else ()
            if name in self.b.namer.used:
                raise UnsupportedError(f"two arguments are named '{name}'", _show(expr))
            v = Value(self.b.namer.claim(name), "f64", shape)
            self.inputs.append(v)
            self.memo[a] = v

    def fail(self, node, why: str = "is not supported"):
        raise UnsupportedError(f"SymPy class {type(node).__name__} {why} (in {_show(node, 80)})", _show(self.expr))

    # -- the children a node needs lowered first, and how to build it from them
    def children(self, node):
        if node in self.kids:
            return self.kids[node]
        if isinstance(node, (sp.Symbol, sp.MatrixSymbol)):
            raise UnsupportedError(f"free symbol '{node}' is not in args", _show(self.expr),
                                   "list every symbol of the expression in args")
        if isinstance(node, sp.MatrixExpr):     # MatAdd/MatMul subclass Add/Mul: keep them whole
            kids = list(node.args)
        elif isinstance(node, sp.Add):
            kids = [-t if _is_neg(t) else t for t in node.args]
        elif isinstance(node, sp.Mul):
            kids = []
            for f in node.args:
                if isinstance(f, sp.Pow) and f.exp.is_Number and f.exp < 0:
                    kids.append(f.base if f.exp == -1 else sp.Pow(f.base, -f.exp, evaluate=False))
                elif not (f == -1):
                    kids.append(f)
        elif isinstance(node, sp.Pow):
            e = node.exp
            if e.is_Number and e < 0:
                kids = [node.base if e == -1 else sp.Pow(node.base, -e, evaluate=False)]
            elif e.is_Number:
                kids = [node.base]
            else:
                kids = [node.base, e]
        elif isinstance(node, sp.Piecewise):
            kids = [x for pair in node.args for x in pair if x is not sp.true]
        elif isinstance(node, sp.ITE):       # SymPy's form of a condition on a Piecewise p: p < 1 with
            kids = [node.to_nnf()]           # p = Piecewise((x, c), (y, True)) is ITE(c, x < 1, y < 1)
        elif isinstance(node, (sp.Basic)) and not node.args:
            kids = []
        else:
            kids = list(node.args)
        self.kids[node] = kids
        return kids

    def build(self, node, vals):
        b = self.b
        if isinstance(node, (sp.Integer, sp.Rational, sp.Float)) or isinstance(node, sp.NumberSymbol):
            return b.const(float(node))
        if node in (sp.oo, -sp.oo, sp.zoo, sp.nan) or isinstance(node, sp.core.numbers.ImaginaryUnit):
            self.fail(node, "is not a finite real number")
        if isinstance(node, sp.Add) and not isinstance(node, sp.MatAdd):
            acc = None
            for term, v in zip(node.args, vals):
                if acc is None:
                    acc = b.emit("neg", v) if _is_neg(term) else v
                else:
                    acc = b.emit("sub" if _is_neg(term) else "add", acc, v)
            return acc
        if isinstance(node, sp.Mul) and not isinstance(node, sp.MatMul):
            num, den, k = [], [], 0
            for f in node.args:
                if f == -1:
                    continue
                target = den if isinstance(f, sp.Pow) and f.exp.is_Number and f.exp < 0 else num
                target.append(vals[k])
                k += 1
            acc = _chain(b, "mul", num) if num else b.const(1.0)
            if den:
                acc = b.emit("div", acc, _chain(b, "mul", den))
            return b.emit("neg", acc) if -1 in node.args else acc
        if isinstance(node, sp.Pow):
            e = node.exp
            if e.is_Number and e < 0:
                return b.emit("div", 1.0, vals[0])
            if e.is_Number:
                if not e.is_real:
                    self.fail(node, "has a complex exponent")
                if e == sp.Rational(1, 2):
                    return b.emit("sqrt", vals[0])
                return b.emit("powc", vals[0], p=float(e))
            return b.emit("pow", vals[0], vals[1])
        for cls, op in _UNARY.items():
            if isinstance(node, cls):
                if len(vals) != 1:
                    self.fail(node, f"with {len(vals)} arguments is not supported")
                return b.emit(op, vals[0])
        if isinstance(node, (sp.Max, sp.Min)):
            return _chain(b, "maximum" if isinstance(node, sp.Max) else "minimum", vals)
        for cls, op in _COMPARE.items():
            if isinstance(node, cls):
                return b.emit(op, vals[0], vals[1])
        if isinstance(node, (sp.And, sp.Or)):
            return _chain(b, "logical_and" if isinstance(node, sp.And) else "logical_or", vals)
        if isinstance(node, sp.Not):
            return b.emit("logical_not", vals[0])
        if isinstance(node, sp.ITE):         # lowered as its And/Or/Not form (see children)
            return vals[0]
        if isinstance(node, sp.Piecewise):
            it = iter(vals)
            pieces = []
            for e, c in node.args:
                pieces.append((next(it), None if c is sp.true else next(it)))
            acc = b.const(float("nan"))          # SymPy's value where no condition holds
            for v, c in reversed(pieces):
                acc = v if c is None else b.emit("where", c, v, acc)
            return acc
        # ---- matrix algebra
        if isinstance(node, sp.MatMul):
            acc = None
            scale = None
            for f, v in zip(node.args, vals):
                if v.shape:
                    acc = v if acc is None else b.emit("matmul", acc, v)
                else:
                    scale = v if scale is None else b.emit("mul", scale, v)
            return acc if scale is None else b.emit("mul", scale, acc)
        if isinstance(node, (sp.MatAdd, sp.HadamardProduct)):
            return _chain(b, "add" if isinstance(node, sp.MatAdd) else "mul", vals)
        if isinstance(node, sp.Transpose):
            return b.emit("transpose", vals[0])
        if isinstance(node, sp.HadamardPower):
            if not node.exp.is_Number:
                self.fail(node, "with a symbolic exponent is not supported")
            return b.emit("powc", vals[0], p=float(node.exp))
        self.fail(node)

    def run(self) -> Value:
        stack = [(self.expr, False)]
        while stack:
            node, ready = stack.pop()
            if node in self.memo:
                continue
            kids = self.children(node)
            if ready:
                self.memo[node] = self.build(node, [self.memo[k] for k in kids])
                continue
            stack.append((node, True))
            stack.extend((k, False) for k in reversed(kids) if k not in self.memo)
        return self.memo[self.expr]


def _digest(expr) -> str:
    """A structural hash of ``expr`` (like hashing ``srepr``), computed iteratively:
    SymPy's own printers recurse and overflow on deep trees."""
    memo: dict = {}
    stack = [(expr, False)]
    while stack:
        node, ready = stack.pop()
        if node in memo:
            continue
        if not isinstance(node, sp.Basic) or isinstance(node, (sp.Atom, sp.MatrixSymbol)) or not node.args:
            memo[node] = sp.srepr(node)
        elif ready:
            inner = ",".join(memo[a] for a in node.args)
            memo[node] = hashlib.sha256(f"{type(node).__name__}({inner})".encode()).hexdigest()
        else:
            stack.append((node, True))
            stack.extend((a, False) for a in node.args if a not in memo)
    return memo[expr]


def lower(expr, args, wrt=None, name: str = "f") -> Lowered:
    """Lower a SymPy expression to the primal IR.

    ``args`` (Symbols or MatrixSymbols) fix the generated functions' argument
    order; ``wrt`` (default: all args) the gradient's. Raises
    :class:`UnsupportedError` for unsupported classes or free symbols missing
    from ``args``.
    """
    if not isinstance(expr, sp.Basic):
        raise UnsupportedError(f"expected a SymPy expression, got {type(expr).__name__}")
    if args is None:
        raise UnsupportedError("a SymPy expression needs args=[...] to fix the argument order", _show(expr))
    why = check_identifier(name)
    if why:                                # the name becomes the docstring's and the cache file's
        raise GradcError(f"name={name!r} is not allowed: {why}"[:300], "gradc.compile",
                         "name the function with a plain identifier such as f")
    lw = _Lowerer(expr, list(args))
    out = lw.run()
    b = lw.b
    if out.shape and all(d == 1 for d in out.shape):
        out = b.emit("item", out)
    if any(out is v for v in lw.inputs) or any(s.op == "const" and s.out is out for s in b.stmts):
        out = b.emit("alias", out)
    out.name = b.namer.fresh(name)
    fn = Function(name, lw.inputs, b.stmts, [out], source_name="<sympy>")
    by_name = {v.name: v for v in lw.inputs}
    wrt_vals = []
    for w in (args if wrt is None else wrt):
        key = str(getattr(w, "name", w))
        if key not in by_name:
            raise UnsupportedError(f"wrt names '{key}', which is not in args", _show(expr))
        wrt_vals.append(by_name[key])
    try:
        # SymPy's term ordering is superlinear; large expressions print in stored order
        shown = sp.sstr(expr) if len(lw.memo) < 500 else sp.sstr(expr, order="none")
    except RecursionError:                       # SymPy's printers recurse; deep trees overflow them
        shown = f"<expression of {len(lw.memo)} distinct subexpressions, too deep to print>"
    text = f"{name}({', '.join(v.name for v in lw.inputs)}) = {shown}"
    canonical = _digest(expr) + "|" + ",".join(f"{v.name}:{v.shape}" for v in lw.inputs)
    return Lowered(fn, wrt_vals, text, "<sympy expression>", name,
                   hashlib.sha256(canonical.encode()).hexdigest(), {}, {})
