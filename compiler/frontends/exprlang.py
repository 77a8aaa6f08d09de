"""The spec expression language: parsed with :mod:`ast` against a whitelist, lowered to IR.

Grammar (a subset of Python expressions; nothing here is ever evaluated):

* numbers (``2``, ``1e-4``), names of inputs, params and earlier graph entries;
* ``+ - * / ** @``, unary ``-``, one comparison ``< <= > >=`` (a mask for ``where``);
* calls of the functions in :data:`FUNCTIONS` (the ops whose table entry has a ``spelling``,
  see :mod:`gradc.ops`): expression operands first, then
  constant arguments (number literals such as the slope of ``leaky_relu(x, 0.2)``,
  passed to the op as static attributes, never differentiated), and keyword
  constants such as ``axis=`` where the function's :class:`Signature` lists them.

Everything else (attributes, subscripts, lambdas, comprehensions, strings,
f-strings, starred arguments, ``and``/``or``) is a :class:`SpecError` naming
the construct and its place. Limits: :data:`MAX_CHARS` characters,
:data:`MAX_NODES` syntax nodes, :data:`MAX_DEPTH` levels of nesting.
"""
from __future__ import annotations

import ast
import difflib
import math
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Callable

from ..errors import ShapeError, SpecError
from ..ir import DTYPE_NAMES, Builder, Value
from ..ops import OPS, REQUIRED, Const

MAX_CHARS = 4000
MAX_NODES = 2000
MAX_DEPTH = 64

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.MatMult: "matmul"}
_CMPOPS = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge"}


def _op(op):
    """Lowering of a function that is exactly one op: operands in order, constants as attributes."""
    return lambda b, *xs, **attrs: b.emit(op, *xs, **attrs)


@dataclass(frozen=True)
class Signature:
    """How one spec function is called.

    ``operands`` names the expression arguments (positional, first; these are
    lowered to IR values and may be differentiated); ``consts`` are constant
    arguments that follow them positionally (or are given by keyword);
    ``keywords`` are keyword-only constants such as ``axis=``. ``lower(builder,
    *operands, **constants)`` emits the IR; every constant is passed, defaults
    filled in.
    """

    operands: tuple[str, ...]
    lower: Callable
    consts: tuple[Const, ...] = ()
    keywords: tuple[Const, ...] = ()
    optional: int = 0
    #: its operands come as one list literal (``concat([a, b], axis=1)``)
    variadic: bool = False

    def usage(self, name: str) -> str:
        parts = list(self.operands[:len(self.operands) - self.optional]) + \
            [f"[{o}]" for o in self.operands[len(self.operands) - self.optional:]]
        parts += [c.name if c.default is REQUIRED else f"{c.name}={c.default!r}" for c in self.consts]
        parts += [f"{c.name}={c.default!r}" for c in self.keywords]
        return f"{name}({', '.join(parts)})"


def _functions() -> dict[str, Signature]:
    """Spec function name -> its :class:`Signature`, from the op table: every op with a
    ``spelling`` (and its ``aliases``) is the one-op function of its operands and constants."""
    out = {}
    for op in OPS.values():
        if op.spelling is not None:
            sig = Signature(op.operands, _op(op.name), op.consts, op.keywords, op.optional, op.variadic)
            out.update((name, sig) for name in (op.spelling, *op.aliases))
    return out


#: Spec function name -> its :class:`Signature` (derived from the op table's spellings).
FUNCTIONS = _functions()


def _char_name(ch: str) -> str:
    """``U+0445 (CYRILLIC SMALL LETTER HA)``: a character named without printing it raw."""
    return f"U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed')})"


def _describe(node: ast.AST) -> str:
    names = {ast.Attribute: "attribute access (x.attr)", ast.Subscript: "indexing (x[...])",
             ast.Lambda: "lambda", ast.ListComp: "a comprehension", ast.GeneratorExp: "a generator",
             ast.SetComp: "a comprehension", ast.DictComp: "a comprehension", ast.JoinedStr: "an f-string",
             ast.Starred: "starred arguments", ast.BoolOp: "'and'/'or'", ast.IfExp: "'x if c else y'",
             ast.NamedExpr: "':='", ast.Await: "await", ast.List: "a list", ast.Tuple: "a tuple",
             ast.Dict: "a dict", ast.Set: "a set"}
    return names.get(type(node), type(node).__name__)


def _in_user_words(message: str, nodes, vals) -> str:
    """``message`` with each operand's IR spelling (``%loss_2:f64[64,4]``) replaced by the
    expression the user wrote for it and its type (``'h * 2' (float64 [64, 4])``)."""
    for node, v in zip(nodes, vals):
        text = ast.unparse(node)
        shape = "scalar" if not v.shape else "[" + ", ".join(map(str, v.shape)) + "]"
        message = message.replace(f"%{v.name}:{v.type_str()}", f"'{text[:60]}' ({DTYPE_NAMES[v.dtype]} {shape})")
    return message


class ExprLowerer:
    """Lowers expression strings of one spec into a shared :class:`Builder`.

    ``env`` maps names to values; ``where(node)`` turns an ast node into a
    ``file:line:col`` string (set by the spec loader for each expression).
    """

    def __init__(self, builder: Builder, env: dict[str, Value]):
        self.b = builder
        self.env = env
        self.place = lambda node: None
        #: id of a Value -> its number, for the constants of the spec (literals and what folds from them)
        self.constants: dict[int, float] = {}

    def parse(self, text: str, place) -> ast.Expression:
        """Parse and check one expression string; ``place(col)`` names a column."""
        if not isinstance(text, str):
            raise SpecError("an expression must be a string", place(0))
        if len(text) > MAX_CHARS:
            raise SpecError(f"expression is {len(text)} characters long; the limit is {MAX_CHARS}", place(0))
        for i, ch in enumerate(text):
            # Python folds look-alike letters (NFKC: fullwidth 'ｘ' is 'x') and accepts any
            # Unicode letter (Cyrillic 'х'); a spec expression is plain ASCII, so neither can hide
            if not (" " <= ch <= "~" or ch in "\t\n\r"):
                raise SpecError(f"character {_char_name(ch)} is not allowed in an expression", place(i),
                                "expressions are ASCII: names, numbers, operators and parentheses")
        try:
            with warnings.catch_warnings():           # "invalid decimal literal" and the like: errors below
                warnings.simplefilter("ignore", SyntaxWarning)
                tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as e:
            raise SpecError(f"syntax error in expression {text.strip()!r}: {e.msg}",
                            place((e.offset or 1) - 1)) from None
        except (RecursionError, MemoryError, ValueError):
            raise SpecError("expression is nested too deeply to parse", place(0)) from None
        nodes = 0
        stack = [(tree, 0)]
        while stack:
            node, depth = stack.pop()
            nodes += 1
            if depth > MAX_DEPTH or nodes > MAX_NODES:
                raise SpecError(f"expression is too large (limits: depth {MAX_DEPTH}, {MAX_NODES} nodes)",
                                place(0))
            stack.extend((c, depth + 1) for c in ast.iter_child_nodes(node))
        return tree

    def lower(self, text: str, place) -> Value:
        tree = self.parse(text, place)
        offset = len(text) - len(text.lstrip())
        self.place = lambda node: place(getattr(node, "col_offset", 0) + offset)
        return self._lower(tree.body)

    # iterative post-order walk over the checked ast
    def _lower(self, root: ast.AST) -> Value:
        done: dict[int, object] = {}
        stack = [(root, False)]
        while stack:
            node, ready = stack.pop()
            kids = self._children(node)
            if not ready:
                if isinstance(node, ast.Call):          # reject a bad call before its arguments
                    self._check_callee(node)
                stack.append((node, True))
                stack.extend((k, False) for k in reversed(kids))
                continue
            self.b.loc = self.place(node)
            vals = self._weak([done[id(k)] for k in kids])
            try:
                done[id(node)] = self._build(node, vals)
            except ShapeError as e:          # name the operands by the text the user wrote, not %t_3
                raise ShapeError(_in_user_words(e.message, kids, vals), e.where, e.hint) from None
            self._fold(node, done[id(node)])
        return done[id(root)]

    def _weak(self, vals: list) -> list:
        """Numbers adopt the float dtype of the other operands, as a Python float does in NumPy:
        in ``2.5 * x`` or ``(1 / 3) * x`` with a float32 ``x`` the constant becomes a float32 one
        (the float64 constant it replaces is left to dead-code elimination). Float64 specs are
        unchanged."""
        floats = {v.dtype for v in vals if v.dtype in ("f64", "f32") and id(v) not in self.constants}
        if floats != {"f32"}:
            return vals
        out = []
        for v in vals:
            if id(v) in self.constants and v.dtype == "f64" and not v.shape:
                c = self.b.const(self.constants[id(v)], dtype="f32")
                self.constants[id(c)] = self.constants[id(v)]
                v = c
            out.append(v)
        return out

    def _fold(self, node, out: Value) -> None:
        """Track constant subexpressions; one whose value overflows float64 is an error.

        ``10 ** 10 ** 10`` or ``exp(1000)`` written with numbers only would otherwise
        compile to code that computes inf at run time. A pole (``1 / 0``, ``log(0)``)
        is left alone: it gives inf or NaN at run time, as IEEE arithmetic does.
        """
        if isinstance(node, ast.Constant):
            return
        s = self.b.stmts[-1] if self.b.stmts else None
        if s is None or s.out is not out or not s.args or not all(id(a) in self.constants for a in s.args):
            return
        vals = [self.constants[id(a)] for a in s.args]
        try:
            if s.op == "powc":
                r = vals[0] ** s.attr["p"]
            elif OPS[s.op].fold is not None:
                r = OPS[s.op].fold(*vals)
            else:
                return
        except OverflowError:
            r = math.inf
        except (ArithmeticError, ValueError):
            return
        if isinstance(r, bool) or not isinstance(r, (int, float)):
            return                          # a mask, or a complex power of a negative number
        if math.isinf(r):
            self._fail(node, "this constant expression overflows float64 (its magnitude exceeds 1.8e308)",
                       "use a smaller constant")
        if not math.isnan(r):
            self.constants[id(out)] = float(r)

    def _children(self, node):
        if isinstance(node, ast.BinOp):
            return [node.left, node.right]
        if isinstance(node, ast.UnaryOp):
            return [node.operand]
        if isinstance(node, ast.Compare):
            return [node.left, *node.comparators]
        if isinstance(node, ast.Subscript):         # x[1:], X[:, :-1]: the bounds are constants
            return [node.value]
        if isinstance(node, ast.Call):              # constant arguments are attributes, not values
            sig = FUNCTIONS.get(getattr(node.func, "id", None))
            if sig is not None and sig.variadic and node.args and isinstance(node.args[0], (ast.List, ast.Tuple)):
                return list(node.args[0].elts)     # concat([a, b], axis=1): the list's items
            return list(node.args if sig is None else node.args[:len(sig.operands)])
        return []

    def _subscript(self, node: ast.Subscript, x):
        """Basic slicing with constant bounds and step 1, one ``slice`` op per sliced axis."""
        parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if len(parts) > x.rank:
            self._fail(node, f"{len(parts)} indices for %{x.name} of rank {x.rank}")
        for axis, part in enumerate(parts):
            if not isinstance(part, ast.Slice):
                self._fail(node, "only slices such as x[1:] or X[:, :-1] are allowed",
                           "integer and array indexing are not supported; use x[i:i+1]")
            if part.step is not None and self._number(part.step) != 1:
                self._fail(node, "slices take no step")
            bounds = []
            for bound in (part.lower, part.upper):
                value = None if bound is None else self._number(bound)
                if bound is not None and (not isinstance(value, int) or isinstance(value, bool)):
                    self._fail(node, "slice bounds must be integer constants")
                bounds.append(value)
            if bounds == [None, None]:
                continue
            n = x.shape[axis]
            start, stop = bounds
            if isinstance(n, int):
                start = 0 if start is None else (start + n if start < 0 else start)
                stop = n if stop is None else (stop + n if stop < 0 else stop)
            x = self.b.emit("slice", x, axis=axis, start=start, stop=stop)
        return x

    def _fail(self, node, message, hint=None):
        raise SpecError(message, self.place(node), hint)

    def _number(self, node):
        """The value of a numeric literal (or -literal), else None."""
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = self._number(node.operand)
            return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        return None

    def _build(self, node, vals):
        b = self.b
        if isinstance(node, ast.Subscript):
            return self._subscript(node, vals[0])
        if isinstance(node, ast.Constant):
            if type(node.value) not in (int, float):
                self._fail(node, f"only numbers are allowed as constants, not {node.value!r}"[:200])
            if isinstance(node.value, int) and abs(node.value) > 2 ** 53:
                self._fail(node, "integer constant is too large (the limit is 2**53)")
            if not math.isfinite(float(node.value)):
                self._fail(node, "constant must be finite")
            c = b.const(float(node.value))
            self.constants[id(c)] = float(node.value)
            return c
        if isinstance(node, ast.Name):
            if node.id not in self.env:
                close = difflib.get_close_matches(node.id, list(self.env), n=1)
                self._fail(node, f"undefined name '{node.id}'",
                           f"did you mean '{close[0]}'?" if close else
                           "declare it in [inputs] or [params], or define it in [graph]")
            return self.env[node.id]
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                p = self._number(node.right)
                if p is not None:
                    if not math.isfinite(float(p)) or abs(p) > 1e6:
                        self._fail(node, "exponent is too large")
                    return b.emit("powc", vals[0], p=float(p))
                return b.emit("pow", vals[0], vals[1])
            op = _BINOPS.get(type(node.op))
            if op is None:
                self._fail(node, f"operator {type(node.op).__name__} is not allowed",
                           "use + - * / ** @")
            return b.emit(op, vals[0], vals[1])
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return b.emit("neg", vals[0])
            if isinstance(node.op, ast.UAdd):
                return vals[0]
            self._fail(node, f"operator {type(node.op).__name__} is not allowed")
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _CMPOPS:
                self._fail(node, "only one comparison <, <=, > or >= is allowed here")
            return b.emit(_CMPOPS[type(node.ops[0])], vals[0], vals[1])
        if isinstance(node, ast.Call):
            return self._call(node, vals)
        self._fail(node, f"{_describe(node)} is not allowed in a spec expression",
                   "use names, numbers, + - * / ** @, comparisons and the documented functions")

    def _check_callee(self, node: ast.Call) -> str:
        if not isinstance(node.func, ast.Name):
            self._fail(node, f"only plain function names can be called, not {_describe(node.func)}")
        name = node.func.id
        if name not in FUNCTIONS:
            close = difflib.get_close_matches(name, list(FUNCTIONS), n=1)
            self._fail(node, f"unknown function '{name}'",
                       f"did you mean '{close[0]}'?" if close else "known: " + ", ".join(sorted(FUNCTIONS)))
        return name

    def _call(self, node: ast.Call, vals):
        name = self._check_callee(node)
        sig = FUNCTIONS[name]
        if any(isinstance(a, ast.Starred) for a in node.args):
            self._fail(node, "starred arguments are not allowed")
        n_min = len(sig.operands) - sig.optional   # required constants may also come by keyword
        n_max = len(sig.operands) + len(sig.consts)
        if sig.optional and sig.consts:
            raise AssertionError("an op with optional operands takes its constants by keyword")
        if not n_min <= len(node.args) <= n_max:
            takes = f"{n_min}" if n_min == n_max else f"{n_min} to {n_max}"
            self._fail(node, f"{name}() takes {takes} argument{'s' if n_max != 1 else ''}, got {len(node.args)}",
                       f"call it as {sig.usage(name)}")
        given = dict(zip((c.name for c in sig.consts), node.args[len(sig.operands):]))
        if sig.variadic and not (isinstance(node.args[0], (ast.List, ast.Tuple)) and len(node.args[0].elts) >= 1):
            self._fail(node, f"{name}() takes a list of arrays first", f"call it as {name}([a, b], axis=1)")
        vals = vals if sig.variadic else vals[:len(node.args)]
        by_name = {c.name: c for c in sig.consts + sig.keywords}
        for kw in node.keywords:
            if kw.arg is None or kw.arg not in by_name:
                accepted = ", ".join(by_name)
                self._fail(node, f"{name}() has no keyword argument '{kw.arg or '**'}'"
                           + (f"; it accepts {accepted}" if accepted else ""))
            if kw.arg in given:
                self._fail(kw.value, f"{name}() got {kw.arg} twice")
            given[kw.arg] = kw.value
        consts = {}
        for c in sig.consts + sig.keywords:
            if c.name not in given:
                if c.default is REQUIRED:
                    self._fail(node, f"{name}() needs its constant argument {c.name}",
                               f"call it as {sig.usage(name)}")
                consts[c.name] = c.default
                continue
            consts[c.name] = self._constant(name, c, given[c.name])
        return sig.lower(self.b, *vals, **consts)

    def _constant(self, fname: str, c: Const, node: ast.AST):
        """The checked value of constant argument ``c`` written as ``node``."""
        what = f"{c.name}=" if c.name == "axis" else f"{fname}(): {c.name}"
        if c.kind in ("pair", "pair0", "padding", "shape"):
            return self._sizes(what, c, node)
        value = self._number(node)
        if c.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                self._fail(node, f"{what} must be an integer", "write an integer literal such as 2")
            if abs(value) > 2 ** 53:
                self._fail(node, f"{what} is too large")
            return value
        if value is None or isinstance(value, bool):
            self._fail(node, f"{what} must be a number literal, not an expression",
                       f"{c.name} is a constant of the op (not differentiated)")
        if not math.isfinite(float(value)) or (isinstance(value, int) and abs(value) > 2 ** 53):
            self._fail(node, f"{what} must be a finite number")
        return float(value)


    def _sizes(self, what: str, c: Const, node: ast.AST):
        """A constant of sizes (see :class:`gradc.ops.Const`): ``2``, ``(2, 1)``, ``"same"``, ``(-1, 64)``."""
        if c.kind == "padding" and isinstance(node, ast.Constant) and node.value == "same":
            return "same"
        items = node.elts if isinstance(node, (ast.Tuple, ast.List)) else [node]
        values = [self._number(n) for n in items]
        lowest = {"pair": 1, "pair0": 0, "padding": 0, "shape": -1}[c.kind]
        ok = all(isinstance(v, int) and not isinstance(v, bool) and lowest <= v <= 2 ** 31 and (v != 0 or lowest == 0)
                 for v in values)
        if c.kind == "shape":
            ok = ok and isinstance(node, (ast.Tuple, ast.List)) and values and values.count(-1) <= 1
            if not ok:
                self._fail(node, f"{what} must be a tuple of positive integers with at most one -1",
                           "for example (-1, 64)")
            return tuple(values)
        if not ok or len(values) not in (1, 2) or (len(values) == 1 and isinstance(node, (ast.Tuple, ast.List))):
            kinds = {"pair": "a positive integer or a pair of them", "pair0": "an integer >= 0 or a pair of them",
                     "padding": 'an integer >= 0, a pair of them or "same"'}
            self._fail(node, f"{what} must be {kinds[c.kind]}", "for example 2 or (2, 1)")
        return (values[0], values[0]) if len(values) == 1 else tuple(values)


def names_used(tree: ast.Expression) -> list[str]:
    """Names an expression refers to, in order of first appearance (excluding called function names)."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    seen = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and id(n) not in called and n.id not in seen:
            seen.append(n.id)
    return seen
