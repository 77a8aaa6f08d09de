"""SymPy frontend: lower a SymPy expression to the primal IR.

Accepted (anything else raises :class:`~gradc.errors.UnsupportedError` naming
the SymPy class): numbers and constants (pi, E, EulerGamma, ...), Symbol, Add,
Mul (with quotients), Pow (integer, rational, real and symbolic exponents),
exp, log, sqrt, sin, cos, tan, tanh, Abs, Max, Min, the trigonometric,
hyperbolic, special and piecewise-constant functions of docs/sympy_functions.md
(one op each: ``_UNARY``, ``_BINARY`` and :meth:`_Lowerer.function`), Piecewise with
relational conditions (<, <=, >, >=, Eq, Ne) combined by And, Or, Not (and ITE, which SymPy
writes for a condition on a Piecewise); and
MatrixSymbol algebra: MatMul, MatAdd, Transpose, scalar multiples,
HadamardProduct, HadamardPower, MatPow (positive integer powers), Trace,
elements ``X[i, j]``, explicit ``Matrix``/``ImmutableMatrix`` (packed from their
entries) and ``X.applyfunc(f)`` (``f`` lowered through the same ops as on
scalars). A 1×1 matrix result becomes a scalar. ``IndexedBase`` arguments
(with a concrete shape) and ``Sum`` over concrete ranges: inside the Sum,
``x[i + k]`` becomes the slice ``x[lo+k : hi+k+1]``, the summand array ops and
the Sum a ``sum`` reduction (see :meth:`_Lowerer.sum_body`); ``x[3]`` is one
element. Rational constants stay exact (``Fraction``) until code generation;
``oo`` is accepted as an operand of comparisons and Max/Min only.

The walk is iterative (no recursion limit) and memoised on the SymPy node, so
each distinct subexpression becomes exactly one SSA value.
"""
from __future__ import annotations

import hashlib
import itertools
import math
from fractions import Fraction

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions.matexpr import MatrixElement

from ..errors import GradcError, UnsupportedError
from ..ir import Builder, Function, Namer, Value, check_identifier
from . import Lowered

_UNARY = {sp.exp: "exp", sp.log: "log", sp.sin: "sin", sp.cos: "cos", sp.tan: "tan",
          sp.tanh: "tanh", sp.Abs: "abs"}
_COMPARE = {sp.StrictLessThan: "lt", sp.LessThan: "le", sp.StrictGreaterThan: "gt", sp.GreaterThan: "ge"}
# functions (issue 6; compiler/ops/functions.py, docs/sympy_functions.md): one op per SymPy class
_UNARY.update({
    sp.cot: "cot", sp.sec: "sec", sp.csc: "csc", sp.asin: "asin", sp.acos: "acos", sp.atan: "atan",
    sp.acot: "acot", sp.sinh: "sinh", sp.cosh: "cosh", sp.coth: "coth", sp.sech: "sech", sp.csch: "csch",
    sp.asinh: "asinh", sp.acosh: "acosh", sp.atanh: "atanh", sp.erf: "erf", sp.erfc: "erfc",
    sp.gamma: "gamma", sp.loggamma: "loggamma", sp.digamma: "digamma", sp.sinc: "sinc",
    sp.sign: "sign", sp.floor: "floor", sp.ceiling: "ceil", sp.frac: "frac"})
_BINARY = {sp.atan2: "atan2", sp.Mod: "mod"}
_UNSUPPORTED_FUNCTION = ("is not supported: rewrite it with the functions listed in docs/sympy_functions.md, "
                         "or compute it outside and pass its value as an argument")


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


def _exponent(e):
    """A constant exponent: exact (Fraction) for a Rational, else a float."""
    return Fraction(int(e.p), int(e.q)) if isinstance(e, sp.Rational) else float(e)


def _is_neg(term) -> bool:
    return isinstance(term, (sp.Mul, sp.Number)) and term.could_extract_minus_sign() and term != 0


class _Lowerer:
    def __init__(self, expr, args):
        self.expr = expr
        self.b = Builder(Namer())
        self.memo: dict = {}
        self.kids: dict = {}
        self.inputs: list[Value] = []
        self.passthrough: set = set()      # placeholders of applyfunc: their one child is the array
        self.sum_sizes: dict = {}          # Sum -> number of terms it adds
        self.infs: set[int] = set()        # ids of the constants +-inf (oo)
        for a in args:
            if not isinstance(a, (sp.Symbol, sp.MatrixSymbol, sp.IndexedBase)):
                raise UnsupportedError(f"argument {a!r} is a {type(a).__name__}, not a Symbol, MatrixSymbol "
                                       "or IndexedBase", _show(expr))
            if isinstance(a, sp.IndexedBase) and (a.shape is None or not all(d.is_Integer for d in a.shape)):
                raise UnsupportedError(f"IndexedBase '{a}' has no concrete shape", _show(expr),
                                       f"declare it as IndexedBase('{a}', shape=(n,)) with a number n")
            name = str(a.name)
            why = check_identifier(name)
            if why:
                raise UnsupportedError(f"symbol name '{name}' cannot be a Python argument: {why}", _show(expr),
                                       "rename the symbol")
            shape = tuple(int(d) for d in a.shape) if not isinstance(a, sp.Symbol) else ()
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
        if isinstance(node, (sp.Symbol, sp.MatrixSymbol, sp.IndexedBase)):
            raise UnsupportedError(f"free symbol '{node}' is not in args", _show(self.expr),
                                   "list every symbol of the expression in args (a summation index "
                                   "only inside its Sum's x[i + k])")
        if isinstance(node, sp.ImmutableMatrix):
            kids = list(node)                   # the entries in C order
        elif isinstance(node, ElementwiseApplyFunction):
            d = sp.Dummy("e")                   # f(d) with d standing for the array: the scalar ops, on arrays
            self.kids[d] = [node.expr]
            self.passthrough.add(d)
            kids = [node.function(d)]
        elif isinstance(node, (sp.Indexed, MatrixElement)):
            kids = [node.args[0]]               # the array; the indices are static
        elif isinstance(node, sp.Sum):
            kids = [self.sum_body(node)]
        elif isinstance(node, sp.MatrixExpr):     # MatAdd/MatMul subclass Add/Mul: keep them whole
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
        if node in self.passthrough:
            return vals[0]
        if isinstance(node, sp.Rational):        # Integer too: exact until code generation
            return b.const(Fraction(int(node.p), int(node.q)))
        if isinstance(node, sp.Float) or isinstance(node, sp.NumberSymbol):
            return b.const(float(node))
        if node in (sp.oo, -sp.oo):
            v = b.const(math.inf if node is sp.oo else -math.inf)
            self.infs.add(id(v))
            return v
        if node in (sp.zoo, sp.nan) or isinstance(node, sp.core.numbers.ImaginaryUnit):
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
        special = self.function(node, vals)
        if special is not None:
            return special
        if isinstance(node, sp.Pow):
            e = node.exp
            if e.is_Number and e < 0:
                return b.emit("div", 1.0, vals[0])
            if e.is_Number:
                if not e.is_real:
                    self.fail(node, "has a complex exponent")
                if e == sp.Rational(1, 2):
                    return b.emit("sqrt", vals[0])
                return b.emit("powc", vals[0], p=_exponent(e))
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
        # ---- arrays: elements, explicit matrices, sums over index ranges, matrix algebra
        if isinstance(node, (sp.Indexed, MatrixElement)):
            index = node.indices if isinstance(node, sp.Indexed) else (node.i, node.j)
            if not all(i.is_Integer for i in index):
                self.fail(node, "needs integer indices, or x[i + k] with i the index of an enclosing Sum")
            if any(not 0 <= int(i) < n for i, n in zip(index, vals[0].shape)):
                self.fail(node, f"is out of range for the shape {vals[0].shape}")
            return b.emit("element", vals[0], index=tuple(int(i) for i in index))
        if isinstance(node, sp.ImmutableMatrix):
            return b.emit("pack", *vals, shape=tuple(int(d) for d in node.shape))
        if isinstance(node, sp.Sum):
            v, n = vals[0], self.sum_sizes[node]
            total = b.emit("sum", v, axis=None) if v.shape else v
            repeat = n // math.prod(v.shape)     # terms the summand does not vary over
            return total if repeat == 1 else b.emit("mul", total, float(repeat))
        if isinstance(node, ElementwiseApplyFunction):
            return vals[0]
        if isinstance(node, sp.Trace):
            return b.emit("trace", vals[0])
        if isinstance(node, sp.MatPow):
            if isinstance(node, sp.Inverse) or node.exp.is_negative:
                self.fail(node, "(a matrix inverse) is not supported")
            if not (node.exp.is_Integer and node.exp > 0):
                self.fail(node, "with an exponent other than a positive integer is not supported")
            return _chain(b, "matmul", [vals[0]] * int(node.exp))
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
            return b.emit("powc", vals[0], p=_exponent(node.exp))
        self.fail(node, _UNSUPPORTED_FUNCTION if isinstance(node, sp.Function) else "is not supported")

    def function(self, node, vals):
        """Functions with two operands or static arguments (issue 6), re/im of an input and
        Eq/Ne (SymPy's real_root writes Eq(im(z), 0)); None for any other node."""
        b = self.b
        for cls, op in _BINARY.items():
            if isinstance(node, cls):
                return b.emit(op, vals[0], vals[1])
        if isinstance(node, sp.Heaviside):
            h0 = node.args[1] if len(node.args) > 1 else sp.S.Half
            if not (h0.is_Number and h0.is_real):
                self.fail(node, "needs a number as its value at 0 (Heaviside(x, 0.5))")
            return b.emit("heaviside", vals[0], h0=float(h0))
        if isinstance(node, sp.polygamma):
            n = node.args[0]
            if not (n.is_Integer and n >= 0):
                self.fail(node, "needs a constant integer order n >= 0: polygamma(2, x), not polygamma(n, x)")
            return b.emit("digamma", vals[1]) if n == 0 else b.emit("polygamma", vals[1], n=int(n))
        if isinstance(node, sp.LambertW):
            if len(node.args) > 1 and node.args[1] != 0:
                self.fail(node, "is supported on the principal branch only: LambertW(x) (k = 0, x >= -1/e); "
                                "for another branch compute w outside (w*exp(w) = x) and pass it as an argument")
            return b.emit("lambertw", vals[0])
        if isinstance(node, (sp.re, sp.im)):
            if not isinstance(node.args[0], sp.Symbol):
                self.fail(node, "is supported of an argument only (every argument is real)")
            return vals[0] if isinstance(node, sp.re) else b.const(0.0)
        if isinstance(node, (sp.Eq, sp.Ne)):
            eq = b.emit("logical_and", b.emit("le", vals[0], vals[1]), b.emit("ge", vals[0], vals[1]))
            return eq if isinstance(node, sp.Eq) else b.emit("logical_not", eq)
        if (isinstance(node, sp.Pow) and node.base.is_Number and node.base < 0 and node.exp.is_Number
                and not node.exp.is_integer):        # (-1)**(2/3) from root(x, 3, 1): not a real number
            self.fail(node, "is not a real number (use real_root(x, n) for the real root of a negative x)")
        return None

    def sum_body(self, node):
        """The summand of ``node`` (a Sum over concrete ranges; nested Sums merge) with each
        ``x[i + k]`` replaced by a placeholder bound to the slice ``x[lo+k : hi+k+1]``, and
        the index ``i`` used as a number by the array ``lo, ..., hi`` (a ``pack`` of constants).

        The summation indices are the axes of a grid; each array reference must cover a
        trailing part of the grid (for two indices also transposed), so the summand
        broadcasts; ``sum_sizes`` keeps the number of terms."""
        body, limits = node.function, list(node.limits)
        while isinstance(body, sp.Sum):        # Sum(Sum(f, (j, ..)), (i, ..)) = Sum(f, (j, ..), (i, ..))
            limits = list(body.limits) + limits
            body = body.function
        ranges = {}
        for lim in limits:
            if len(lim) != 3 or not (lim[1].is_Integer and lim[2].is_Integer) or lim[2] < lim[1] \
                    or lim[0] in ranges:
                self.fail(node, f"with the limits {lim} is not supported: sum over concrete nonempty ranges "
                                "such as (i, 0, 9), each index once")
            ranges[lim[0]] = (int(lim[1]), int(lim[2]))
        refs = []                              # (Indexed, base value, [(dummy, offset) per axis])
        for t in sorted(body.atoms(sp.Indexed), key=sp.default_sort_key):
            index = t.indices
            if not any(i.free_symbols & set(ranges) for i in index):
                continue                        # x[3]: one element
            if t.base not in self.memo:
                self.children(t.base)           # raises: not an argument
            axes = []
            for i in index:
                d = [s for s in i.free_symbols if s in ranges]
                k = i - d[0] if len(d) == 1 else None
                if k is None or not k.is_Integer or any(d[0] == a for a, _ in axes):
                    self.fail(node, f"is not supported for the index {i} of {t}: write x[i + k] with one "
                                    "summation index i and an integer k per axis, each index once")
                lo, hi = ranges[d[0]]
                if lo + k < 0 or hi + k >= self.memo[t.base].shape[len(axes)]:
                    self.fail(node, f"reads {t} outside the shape {self.memo[t.base].shape} of {t.base}")
                axes.append((d[0], int(k)))
            refs.append((t, axes))
        held = body.xreplace({t: sp.Dummy() for t, _ in refs})
        refs += [(d, [(d, 0)]) for d in sorted(set(ranges) & held.free_symbols, key=str)]
        orders = list(itertools.permutations(ranges))
        for order in orders:                   # the first grid order all references fit
            fit = all([d for d, _ in axes] == list(order[len(order) - len(axes):])
                      or (len(axes) == 2 and [d for d, _ in axes][::-1] == list(order[-2:])) for _, axes in refs)
            if fit:
                break
        else:
            self.fail(node, "mixes array references that do not broadcast (such as x[i]*y[j]); write "
                            "it as a matrix expression (x.T*y with MatrixSymbols) or as separate Sums")
        subs = {}
        for t, axes in refs:
            if t in ranges:                    # the summation index as a number
                lo, hi = ranges[t]
                subs[t] = sp.Dummy(str(t))
                self.memo[subs[t]] = self.b.emit("pack", *map(Fraction, range(lo, hi + 1)), shape=(hi - lo + 1,))
                continue
            v = self.memo[t.base]
            for axis, (d, k) in enumerate(axes):
                lo, hi = ranges[d]
                if (lo + k, hi + k + 1) != (0, v.shape[axis]):
                    v = self.b.emit("slice", v, axis=axis, start=lo + k, stop=hi + k + 1)
            if [d for d, _ in axes] != list(order[len(order) - len(axes):]):
                v = self.b.emit("transpose", v)
            subs[t] = sp.Dummy(str(t.base))
            self.memo[subs[t]] = v
        body = body.xreplace(subs)
        self.sum_sizes[node] = math.prod(hi - lo + 1 for lo, hi in ranges.values())
        return body

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

    ``expr``: an expression, a matrix expression or ``sympy.Matrix`` (an array output; a column
    or row ``Matrix`` of explicit entries becomes a vector ``[m]``, a 1×1 one a scalar), or a tuple
    of them (several outputs: ``forward`` returns them all, the first is the value that
    ``value_and_grad``, ``jacobian`` and ``hessian`` differentiate; named ``f``, ``f_2``, ...
    after ``name``). ``args`` (Symbols or MatrixSymbols) fix the generated functions' argument
    order; ``wrt`` (default: all args) the gradient's. Raises
    :class:`UnsupportedError` for unsupported classes or free symbols missing
    from ``args``.
    """
    exprs = list(expr) if isinstance(expr, (tuple, list)) else [expr]
    if not exprs:
        raise UnsupportedError("expected a SymPy expression, got an empty tuple")
    exprs = [sp.ImmutableMatrix(e) if isinstance(e, sp.MatrixBase) and not isinstance(e, sp.Basic) else e
             for e in exprs]                    # a mutable sympy.Matrix
    for e in exprs:
        if not isinstance(e, sp.Basic):
            raise UnsupportedError(f"expected a SymPy expression, got {type(e).__name__}")
    expr = exprs[0] if len(exprs) == 1 else sp.Tuple(*exprs)
    if args is None:
        raise UnsupportedError("a SymPy expression needs args=[...] to fix the argument order", _show(expr))
    why = check_identifier(name)
    if why:                                # the name becomes the docstring's and the cache file's
        raise GradcError(f"name={name!r} is not allowed: {why}"[:300], "gradc.compile",
                         "name the function with a plain identifier such as f")
    lw = _Lowerer(exprs[0], list(args))
    outs = []
    for e in exprs:
        lw.expr = e
        outs.append(lw.run())
    b = lw.b
    for s in b.stmts:
        if s.op not in ("lt", "le", "gt", "ge", "maximum", "minimum") and any(id(a) in lw.infs for a in s.args):
            raise UnsupportedError(f"oo is an operand of {s.op}", _show(expr),
                                   "oo is accepted only in comparisons (x < oo) and Max/Min")
    outputs = []
    for k, out in enumerate(outs):
        if id(out) in lw.infs:
            raise UnsupportedError("the expression's value is oo", _show(expr))
        if out.shape and all(d == 1 for d in out.shape):
            out = b.emit("item", out)
        elif out.rank == 2 and 1 in out.shape:        # a column or row of explicit entries: a vector
            packed = next((s for s in b.stmts if s.out is out and s.op == "pack"), None)
            if packed is not None:
                out = b.emit("pack", *packed.args, shape=(max(out.shape),))
        if any(out is v for v in lw.inputs) or any(s.op == "const" and s.out is out for s in b.stmts) \
                or any(out is o for o in outputs):
            out = b.emit("alias", out)
        out.name = b.namer.fresh(name if k == 0 else f"{name}_{k + 1}")
        outputs.append(out)
    fn = Function(name, lw.inputs, b.stmts, outputs, source_name="<sympy>")
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
