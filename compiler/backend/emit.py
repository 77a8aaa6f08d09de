"""The printer: a planned schedule → lines of Python. It decides nothing.

Each statement renders through the macro named like its op in
``templates/ops/<family>.j2`` (:func:`expr`); constants are inlined as literals, constant
tables are module-level arrays (:func:`table_name`). A :class:`~.schedule.Loop` prints as
a loop nest ``for _i in range(n): for _j in range(m):`` computing one element of each
statement (``q = x[_i, _j] + b[_j]``: full-shape operands indexed, trailing-shape ones
by their axes, scalars as they are); a value the :class:`~.memory.MemoryPlan` stores lives
in an array ``_a_<name>`` after its loop; sums accumulate (``loss += ...``); scatters
write into a zero array at their offset.

Float32 models: a float32 constant renders as ``np.float32(...)`` and every op template
writes its own numbers through ``o.lit(...)``, since Numba types a bare ``0.5`` as
float64 and ``0.5 * x`` would turn a float32 array into float64.
"""
from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from types import SimpleNamespace

import jinja2

from ..ops import OPS
from .memory import MemoryPlan
from .schedule import LOOP_DTYPES, Line, Loop, Role, loop_reads

_INDEX = ("_i", "_j", "_k", "_l")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    folder = resources.files("gradc.templates")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False, trim_blocks=False)
    env.filters["pyrepr"] = repr
    return env


@lru_cache(maxsize=None)
def family(name: str):
    """The template module ``templates/ops/<name>.j2`` (its macros as attributes)."""
    return environment().get_template(f"ops/{name}.j2").module


def literal(x: float, dtype: str = "f64") -> str:
    """A Python literal for a float constant; negatives are parenthesised.

    ``dtype="f32"`` wraps it as ``np.float32(...)`` (a bare literal is float64 in Numba).
    """
    if dtype == "f32":
        inner = literal(x).strip("()")
        return f"np.float32({inner})"
    if math.isnan(x):
        return "np.nan"
    if math.isinf(x):
        return "np.inf" if x > 0 else "(-np.inf)"
    text = repr(float(x))
    return f"({text})" if x < 0 or text.startswith("-") else text


#: ``o.lit(x)``: a number written by a template (``repr`` for float64, as the templates'
#: own ``1.0`` would read); ``o.cast(expr)``: an int count (``x.size``) as the result's float type.
_LIT = {"f64": lambda x: repr(float(x)), "f32": lambda x: literal(float(x), "f32")}
_CAST = {"f64": lambda e: e, "f32": lambda e: f"np.float32({e})"}


def expr(s, args: list[str], scalar: bool = False) -> str:
    """The right-hand side of ``s`` with operand expressions ``args``; ``scalar``: one
    element of an elementwise statement (every rank taken as 0), for a loop body (``o.elem``
    is then true if the statement's result is an array)."""
    macro = getattr(family(OPS[s.op].family), s.op)
    dtype = s.out.dtype if s.out.dtype in ("f64", "f32") else \
        ("f32" if any(a.dtype == "f32" for a in s.args) else "f64")
    attrs = {k: v for k, v in s.attrs if k != "dtype"}
    o = SimpleNamespace(rank=0 if scalar else s.out.rank,
                        arg_ranks=[0 if scalar else a.rank for a in s.args],
                        arg_dtypes=[a.dtype for a in s.args], dtype=dtype,
                        elem=scalar and bool(s.out.shape),
                        lit=_LIT[dtype], cast=_CAST[dtype], op=OPS[s.op], **attrs)
    return str(macro(o, *args)).strip()


def _assign(s, rhs: str, comments: bool, target: str | None = None, op: str = "=") -> str:
    line = f"{target or s.out.name} {op} {rhs}"
    return line + f"  # {s.note}" if s.note and comments else line


def table_name(values: tuple, tables: dict) -> str:
    """The module-level name of a constant table (``_TABLE0``, ...), numbered by first use."""
    return tables.setdefault(values, f"_TABLE{len(tables)}")


def table_lines(tables: dict) -> list[str]:
    """Module-level definitions of the constant tables."""
    out = []
    for values, name in tables.items():
        rows = [", ".join(repr(v) for v in values[i:i + 6]) for i in range(0, len(values), 6)]
        body = ",\n    ".join(rows)
        out.append(f"#: a constant table of {len(values)} terms of a re-rolled sum\n"
                   f"{name} = np.array([\n    {body},\n])")
    return out


def tuple_text(items) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _alloc(dims: list[str], dtype: str, zeros: bool, f32: str) -> str:
    """``np.zeros(n)`` / ``np.empty((n, m), ...)``; a float32 array takes the dtype ``f32``
    (an operand's ``X.dtype``: the same code run on float64 arguments computes in float64)."""
    fn = "np.zeros" if zeros else "np.empty"
    size = dims[0] if len(dims) == 1 else "(" + ", ".join(dims) + ")"
    dt = {"f64": "", "f32": f", {f32}", "bool": ", np.bool_"}[dtype]
    return f"{fn}({size}{dt})"


def const_name(s, tables: dict | None) -> str:
    value = s.attr["value"]
    if isinstance(value, tuple):                # a table: module-level, or inline
        return table_name(value, tables) if tables is not None else f"np.array([{', '.join(map(repr, value))}])"
    return literal(value, s.out.dtype)


class Printer:
    """Prints one sweep: ``names`` maps value ids to their expressions (filled as it goes);
    ``known`` symbolic dims to expressions; ``targets`` value ids to the output arrays they are
    written into (``value_and_grad``'s ``<wrt>_out``)."""

    def __init__(self, names: dict, *, comments: bool, tables: dict | None, known: dict | None = None,
                 targets: dict | None = None):
        self.names = names
        self.comments = comments
        self.tables = tables
        self.known = known or {}
        self.targets = targets or {}

    def sweep(self, items, plan: MemoryPlan) -> list[str]:
        lines: list[str] = []
        for k, item in enumerate(items):
            if isinstance(item, Line):
                lines += self.line(item.stmt)
            else:
                lines += self.loop(item, plan)
            for v in plan.release.get(k, ()):
                name = self.names[id(v)]
                lines.append(f"{name} = np.empty({tuple_text(['0'] * v.rank)}, {name}.dtype)")
        return lines

    def line(self, s) -> list[str]:
        names = self.names
        if s.op == "const":
            names[id(s.out)] = const_name(s, self.tables)
            return []
        args = [names[id(a)] for a in s.args]
        target = self.targets.get(id(s.out))
        fn = OPS[s.op].into
        if target and fn and s.out.rank >= 1 and len({s.out.dtype, *(a.dtype for a in s.args)}) == 1 \
                and s.out.dtype in ("f64", "f32"):
            names[id(s.out)] = target                       # the product writes the output array itself
            line = f"{fn}({', '.join(args)}, {target})"
            return [line + f"  # {s.note}" if s.note and self.comments else line]
        names[id(s.out)] = s.out.name
        return [_assign(s, expr(s, args), self.comments)]

    def _dims(self, loop: Loop) -> list[str]:
        inside = loop.defines()
        out = []
        for d in loop.shape:
            if isinstance(d, int) or d in self.known:
                out.append(str(d) if isinstance(d, int) else self.known[d])
                continue
            a = next(a for s in loop.body for a in s.args if id(a) not in inside and d in a.shape)
            out.append(f"{self.names[id(a)]}.shape[{a.shape.index(d)}]")
        return out

    def loop(self, loop: Loop, plan: MemoryPlan) -> list[str]:
        names, comments = self.names, self.comments
        inside = loop.defines()
        rank = len(loop.shape)
        dims = self._dims(loop)
        idx = _INDEX[:rank]
        f32 = next((f"{names[id(a)]}.dtype" for t in loop.body for a in t.args if id(a) not in inside
                    and a.dtype == "f32" and a.shape and names[id(a)].isidentifier()), "np.float32")
        # the array each scatter writes into: its own, or that of the scatter-add that absorbs it
        scatter_root = {}
        for s in reversed(loop.body):
            if loop.role(s) is Role.SCATTER_ADD:
                r = scatter_root.setdefault(id(s.out), s.out)
                for a in s.args:
                    scatter_root[id(a)] = r
        array = {}                                          # stored value -> the array it goes into
        lines = []
        for s in loop.body:
            role = loop.role(s)
            target = self.targets.get(id(s.out))
            if role in (Role.SCATTER, Role.SCATTER_ADD):
                if scatter_root.get(id(s.out), s.out) is s.out:
                    if target:
                        lines.append(f"{target}.fill({_LIT[s.out.dtype](0.0)})")
                    else:
                        odims = [dims[k] if d == loop.shape[k] else str(d) for k, d in enumerate(s.out.shape)]
                        lines.append(f"{s.out.name} = {_alloc(odims, s.out.dtype, True, f32)}")
            elif role is Role.REDUCE:
                if not s.out.shape:
                    lines.append(f"{s.out.name} = {_LIT['f32' if s.out.dtype == 'f32' else 'f64'](0.0)}")
                elif target:
                    lines.append(f"{target}.fill({_LIT[s.out.dtype](0.0)})")
                else:
                    lines.append(f"{s.out.name} = {_alloc(dims[rank - s.out.rank:], s.out.dtype, True, f32)}")
            elif id(s.out) in plan.stored:
                buffer = plan.reuse.get(id(s.out))
                if target:
                    array[id(s.out)] = target
                elif buffer is not None:
                    array[id(s.out)] = f"_a_{s.out.name}"
                    note = f"  # {s.out.name} reuses the array of {names[id(buffer)]}, not read after this loop"
                    lines.append(f"_a_{s.out.name} = {names[id(buffer)]}" + (note if comments else ""))
                else:
                    array[id(s.out)] = f"_a_{s.out.name}"
                    lines.append(f"_a_{s.out.name} = {_alloc(dims, s.out.dtype, False, f32)}")
        for k in range(rank):
            lines.append("    " * k + f"for {idx[k]} in range({dims[k]}):")
        pad = "    " * rank

        def at(v, offset=None):
            sub = list(idx[rank - v.rank:])
            if offset is not None:
                axis, start = offset
                sub[axis] = f"{sub[axis]} + {start}" if start else sub[axis]
            return ", ".join(sub)

        late = []                         # writes into reused arrays: after every read of the element
        for s in loop.body:
            role = loop.role(s)
            if role in (Role.SCATTER_ADD, Role.SUM_AFTER):      # written by its scatters; summed after
                continue
            if role is Role.ALIAS:                               # its operand under another name
                names[id(s.out)] = names[id(s.args[0])]
                continue
            args = [names[id(a)] if id(a) in inside or not a.shape else f"{names[id(a)]}[{at(a)}]"
                    for a in loop_reads(s)]
            if role is Role.REDUCE:
                acc = s.out.name if not s.out.shape else f"{self.targets.get(id(s.out), s.out.name)}[{at(s.out)}]"
                lines.append(pad + _assign(s, args[0], comments, acc, "+="))
                continue
            if role is Role.SCATTER:
                r = scatter_root.get(id(s.out), s.out)
                dest = self.targets.get(id(r), r.name)
                op = "+=" if r is not s.out else "="
                where = at(s.out, (s.attr["axis"] % s.out.rank, s.attr["start"]))
                lines.append(pad + _assign(s, args[0], comments, f"{dest}[{where}]", op))
                continue
            if OPS[s.op].loop == "broadcast" and id(s.out) not in plan.stored:
                names[id(s.out)] = args[0]
                continue
            rhs = args[0] if OPS[s.op].loop == "broadcast" else expr(s, args, scalar=True)
            lines.append(pad + _assign(s, rhs, comments))
            names[id(s.out)] = s.out.name
            if id(s.out) in array:
                (late if id(s.out) in plan.reuse else lines).append(
                    pad + f"{array[id(s.out)]}[{at(s.out)}] = {s.out.name}")
        lines += late
        for s in loop.body:
            role = loop.role(s)
            if role is Role.ALIAS:
                names[id(s.out)] = names[id(s.args[0])]
            elif role in (Role.SCATTER, Role.SCATTER_ADD):
                r = scatter_root.get(id(s.out), s.out)
                names[id(s.out)] = self.targets.get(id(r), r.name)
            elif id(s.out) in array:
                names[id(s.out)] = array[id(s.out)]
            elif role is Role.REDUCE:
                names[id(s.out)] = self.targets.get(id(s.out), s.out.name) if s.out.shape else s.out.name
            elif role is Role.SUM_AFTER:
                lines.append(_assign(s, f"np.sum({names[id(s.args[0])]})", comments))
                names[id(s.out)] = s.out.name
        return lines


def print_plain(stmts, names: dict, comments: bool = True) -> list[str]:
    """One line per statement, no loops, constant tables inline (``gradc explain``'s trace)."""
    p = Printer(names, comments=comments, tables=None)
    return [line for s in stmts for line in p.line(s)]


def copy_lines(dst: str, src: str, rank: int) -> list[str]:
    """``dst[...] = src`` for two arrays of one shape, as a loop nest: Numba compiles an array
    assignment through its broadcasting machinery, about a second per statement."""
    idx = [f"_c{k}" for k in range(rank)]
    lines = [" " * 4 * k + f"for {i} in range({dst}.shape[{k}]):" for k, i in enumerate(idx)]
    return lines + [" " * 4 * rank + f"{dst}[{', '.join(idx)}] = {src}[{', '.join(idx)}]"]


def known_dims(values, names: dict) -> dict:
    """Symbolic dims -> ``<name>.shape[k]`` of the first of ``values`` (arguments) that has them."""
    known: dict = {}
    for v in values:
        if v.dtype in LOOP_DTYPES + ("i64",) and names.get(id(v), "").isidentifier():
            for k, d in enumerate(v.shape):
                if isinstance(d, str):
                    known.setdefault(d, f"{names[id(v)]}.shape[{k}]")
    return known
