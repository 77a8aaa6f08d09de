"""The typed SSA intermediate representation.

A :class:`Function` is a list of :class:`Stmt` in SSA form: each statement
applies one op (see :mod:`gradc.ops`) to operand :class:`Value` objects and
defines exactly one new value. Every value carries a dtype (``f64``, ``f32``,
``i64`` or ``bool``) and a shape: a tuple whose entries are ints or symbolic dimension
names such as ``"batch"``. Shape ``()`` is a scalar.

After reverse-mode AD (:mod:`gradc.ad`) the same function also holds the
adjoint statements; ``Function.n_primal`` marks where the adjoint sweep starts.
"""
from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from fractions import Fraction

from .errors import VerifyError

Dim = int | str
Shape = tuple[Dim, ...]

DTYPES = ("f64", "f32", "i64", "bool")
FLOATS = ("f64", "f32")
#: IR dtype -> NumPy dtype name
DTYPE_NAMES = {"f64": "float64", "f32": "float32", "i64": "int64", "bool": "bool"}


class Value:
    """One SSA value: a name, a dtype and a shape. Identity is by object."""

    __slots__ = ("name", "dtype", "shape")

    def __init__(self, name: str, dtype: str, shape: Shape):
        self.name = name
        self.dtype = dtype
        self.shape = tuple(shape)

    @property
    def rank(self) -> int:
        return len(self.shape)

    def type_str(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"

    def __repr__(self) -> str:
        return f"%{self.name}:{self.type_str()}"


@dataclass(eq=False)
class Stmt:
    """``out = op(*args)`` with static ``attrs``.

    ``loc`` is the source place (``spec.toml:14:5``) when the statement came
    from a spec; ``note`` is a short human comment (the adjoint rule applied).
    """

    op: str
    args: tuple[Value, ...]
    out: Value
    attrs: tuple[tuple[str, object], ...] = ()
    loc: str | None = None
    note: str | None = None
    adjoint: bool = False

    @property
    def attr(self) -> dict:
        return dict(self.attrs)


@dataclass(eq=False)
class Function:
    """A straight-line SSA function.

    ``inputs`` are the arguments in call order; ``outputs`` the returned
    values (the primal value first, then the gradients in ``wrt`` order);
    ``stmts[:n_primal]`` is the forward sweep, the rest the adjoint sweep.
    """

    name: str
    inputs: list[Value]
    stmts: list[Stmt]
    outputs: list[Value]
    wrt: list[Value] = field(default_factory=list)
    differentiated: bool = False
    source_name: str = "<expr>"

    @property
    def n_primal(self) -> int | None:
        """Index of the first adjoint statement (None before AD)."""
        if not self.differentiated:
            return None
        return sum(1 for s in self.stmts if not s.adjoint)

    def replace(self, stmts: list[Stmt], outputs: list[Value] | None = None) -> "Function":
        """A copy with new statements (and outputs); inputs, wrt and names are shared."""
        return Function(self.name, list(self.inputs), stmts,
                        list(self.outputs if outputs is None else outputs),
                        list(self.wrt), self.differentiated, self.source_name)


# ---------------------------------------------------------------- names
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
#: Names the generated module itself uses; user names may not shadow them.
RESERVED = frozenset({"np", "numba", "math", "forward", "value_and_grad", "ARGS", "WRT",
                      "SHAPES", "DTYPES", "PARAMS", "GRADC_VERSION", "SOURCE_HASH", "OUTPUT", "CLASSES",
                      "value_and_grad_into", "OUTPUTS", "DERIVATIVES", "SEEDS", "jvp", "vjp", "jacobian", "hvp", "hessian",
                      "value_grad_hessian"})


def check_identifier(name: str) -> str | None:
    """Return why ``name`` cannot be a Python identifier in generated code, or None.

    Accepted: ASCII letters, digits and ``_``, starting with a letter; not a
    Python keyword or builtin-shadowing reserved name of the generated module.
    """
    if not isinstance(name, str) or not _IDENT.match(name):
        return "names must be ASCII letters, digits and '_' and start with a letter"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"'{name}' is a Python keyword"
    if name in RESERVED:
        return f"'{name}' is reserved by the generated module"
    if len(name) > 64:
        return "names are at most 64 characters"
    return None


class Namer:
    """Hands out unique SSA names derived from hints (``h``, ``h_2``, ...)."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self._next: dict[str, int] = {}

    def claim(self, name: str) -> str:
        self.used.add(name)
        return name

    def fresh(self, hint: str) -> str:
        hint = re.sub(r"[^A-Za-z0-9_]", "_", hint) or "t"
        if not hint[0].isalpha():
            hint = "t" + hint
        if hint not in self.used and hint not in RESERVED and not keyword.iskeyword(hint):
            return self.claim(hint)
        k = self._next.get(hint, 2)       # resume the count: linear, not quadratic, in the names per hint
        while f"{hint}_{k}" in self.used:
            k += 1
        self._next[hint] = k + 1
        return self.claim(f"{hint}_{k}")


# ---------------------------------------------------------------- building
class Builder:
    """Appends statements to a list, inferring each result's type from the op table.

    ``b.emit("mul", x, 2.0)`` wraps Python numbers as ``const`` values and
    returns the new :class:`Value`. ``hint`` names the results; ``loc`` and
    ``note`` are copied onto every statement emitted.
    """

    def __init__(self, namer: Namer | None = None, stmts: list[Stmt] | None = None):
        self.namer = namer or Namer()
        self.stmts = stmts if stmts is not None else []
        self.hint = "t"
        self.loc: str | None = None
        self.note: str | None = None
        self.adjoint = False
        self._consts: dict[tuple, Value] = {}

    def const(self, value: float | Fraction, shape: Shape = (), dtype: str = "f64") -> Value:
        """A constant; ``dtype`` ``"f32"`` makes a float32 one (the ``dtype`` attribute is
        only present then, so float64 IR prints as before). A float64 ``Fraction`` stays
        exact (SymPy's Rational) until code generation renders it as a float."""
        value = value if isinstance(value, Fraction) and dtype == "f64" else float(value)
        key = (type(value), value, tuple(shape), dtype)
        if key not in self._consts:
            extra = {"dtype": dtype} if dtype != "f64" else {}
            self._consts[key] = self.emit("const", value=value, shape=tuple(shape), name="c", **extra)
        return self._consts[key]

    def emit(self, op: str, *args, name: str | None = None, **attrs) -> Value:
        """Python numbers among ``args`` become constants of the operands' float dtype:
        float32 if every float operand is float32 (so ``0.5 * x`` keeps a float32 ``x``
        float32, as NumPy does with a Python float), else float64."""
        from .ops import infer

        floats = {a.dtype for a in args if isinstance(a, Value) and a.dtype in FLOATS}
        cdtype = "f32" if floats == {"f32"} else "f64"
        vals = tuple(a if isinstance(a, Value) else self.const(a, dtype=cdtype) for a in args)
        attr_items = tuple(sorted(attrs.items()))
        dtype, shape = infer(op, vals, dict(attr_items), self.loc)
        out = Value(self.namer.fresh(name or self.hint), dtype, shape)
        self.stmts.append(Stmt(op, vals, out, attr_items, self.loc, self.note, self.adjoint))
        return out


# ---------------------------------------------------------------- printing
def _fmt_attr(v: object) -> str:
    if isinstance(v, tuple):
        return "(" + ",".join(str(x) for x in v) + ")"
    return repr(v) if isinstance(v, str) else str(v)


def format_stmt(s: Stmt) -> str:
    """One line: ``%h:f64[batch,32] = tanh %h_2`` plus attrs and the source place."""
    ops = ", ".join(f"%{a.name}" for a in s.args)
    attrs = {k: v for k, v in s.attrs if not (s.op == "const" and k == "shape")}
    if s.op == "const":
        v = attrs["value"]
        if isinstance(v, tuple):               # a table (gradc.passes.reroll): the first few entries
            text = "[" + ", ".join(map(repr, v[:4])) + (f", ... ({len(v)} values)]" if len(v) > 4 else "]")
        else:
            text = str(v) if isinstance(v, Fraction) else repr(v)
        line = f"%{s.out.name}:{s.out.type_str()} = const {text}"
    else:
        attr_txt = " {" + ", ".join(f"{k}={_fmt_attr(v)}" for k, v in attrs.items()) + "}" if attrs else ""
        line = f"%{s.out.name}:{s.out.type_str()} = {s.op} {ops}{attr_txt}"
    extra = [x for x in (s.note, s.loc) if x]
    if extra:
        line = f"{line:<56}  ; " + "  ".join(extra)
    return line


def format_function(fn: Function, stage: str = "all") -> str:
    """The readable text form used by ``gradc show``.

    ``stage`` is ``"ir"`` (forward statements only), ``"adjoint"`` (adjoint
    statements only) or ``"all"``.
    """
    params = ", ".join(repr(v) for v in fn.inputs)
    lines = [f"func {fn.name}({params}) {{"]
    if fn.wrt:
        lines.append("  ; wrt: " + ", ".join(f"%{v.name}" for v in fn.wrt))
    cut = fn.n_primal if fn.n_primal is not None else len(fn.stmts)
    if stage in ("ir", "all"):
        lines += ["  " + format_stmt(s) for s in fn.stmts[:cut]]
    if fn.n_primal is not None and stage in ("adjoint", "all"):
        lines.append("  ; ---- adjoint sweep ----")
        lines += ["  " + format_stmt(s) for s in fn.stmts[cut:]]
    outs = [f"%{v.name}" for v in fn.outputs]
    if fn.n_primal is not None:
        ret = f"{outs[0]}, ({', '.join(outs[1:])})"
    else:
        ret = ", ".join(outs)
    lines.append(f"  return {ret}")
    lines.append("}")
    return "\n".join(lines)


# ---------------------------------------------------------------- verifying
def verify(fn: Function) -> None:
    """Check SSA form and every op's type rule; raise :class:`VerifyError`.

    Checks: each value is defined once; every operand is an input or defined
    earlier; names are unique; each statement's result dtype and shape are
    what its op's rule infers; the outputs are defined.
    """
    from .ops import infer

    defined: set[int] = set()
    names: set[str] = set()
    for v in fn.inputs:
        if v.name in names:
            raise VerifyError(f"input name %{v.name} is used twice")
        names.add(v.name)
        defined.add(id(v))
    for s in fn.stmts:
        where = s.loc or f"{fn.source_name}: op {s.op}"
        for a in s.args:
            if id(a) not in defined:
                raise VerifyError(f"%{a.name} is used by {s.op} before it is defined", where)
        if id(s.out) in defined or s.out.name in names:
            raise VerifyError(f"%{s.out.name} is assigned more than once", where)
        dtype, shape = infer(s.op, s.args, s.attr, s.loc)
        if (dtype, tuple(shape)) != (s.out.dtype, s.out.shape):
            raise VerifyError(
                f"{s.op} gives {dtype}[{','.join(map(str, shape))}] but %{s.out.name} "
                f"is declared {s.out.type_str()}", where)
        defined.add(id(s.out))
        names.add(s.out.name)
    for v in fn.outputs:
        if id(v) not in defined:
            raise VerifyError(f"output %{v.name} is never defined", fn.source_name)
