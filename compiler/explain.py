"""Backprop you can see: ``gradc explain`` (the backprop table) and ``gradc show --stage graph``.

The numbers come from a *trace* of one compilation at one point:

* the primal statements, optimized (as in the generated code);
* the adjoint statements exactly as :func:`gradc.ad.grad` emits them, *before*
  the optimization passes, so the cotangent of every node and the contribution
  sent to every operand that ``grad(..., record=...)`` records still exist;
* for every differentiated node, its adjoint rule applied once more to a unit
  cotangent: the *local gradient* ∂node/∂operand (for a scalar node, or
  elementwise for an elementwise array node; for any other array node it is a
  Jacobian and shown as "—": the rule column says how the gradient is mapped).

These statements are rendered with the same per-op templates as the generated
code (:func:`gradc.backend.emit.print_plain`) into a plain-Python (not jitted)
function ``trace(*args) -> {name: value}``, written to gradc's cache through
:mod:`gradc.runtime.loader` and imported. The gradient column is the recorded
contribution itself, not upstream × local recomputed, so the table shows what
the compiled code computes. ``--at`` values are parsed with
:func:`ast.literal_eval` (never evaluated).
"""
from __future__ import annotations

import ast
import hashlib
import html
import itertools
import math
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .ad import Step, grad, note_of
from .backend.emit import environment, print_plain
from .backend.module import helpers, label_classes, safe_name
from .errors import GradcError
from .ir import DTYPE_NAMES, Builder, Function, Namer, Value, verify
from .ops import OPS
from .pipeline import build

IMAGE_FORMATS = ("svg", "png", "pdf")


@dataclass(eq=False)
class Backprop:
    """One traced evaluation: every value of the forward and adjoint sweeps at ``point``.

    ``steps`` are the adjoint sweep's records (reverse order); ``local`` maps
    ``(id(stmt), operand position)`` to the local-gradient value; ``given``
    names the arguments taken from ``--at`` (the others are random); ``trace_path``
    is the trace module's file.
    """

    model_name: str
    source_name: str
    fn: Function
    steps: list[Step]
    local: dict
    values: dict
    consts: dict
    point: dict
    given: list
    dims: dict
    seed: int
    grads: list = field(default_factory=list)
    trace_path: Path | None = None
    #: the source's lines (a spec's text), to name each node by the expression it comes from
    source_lines: list = field(default_factory=list)

    def value(self, v: Value):
        return self.consts[id(v)] if id(v) in self.consts else self.values[v.name]

    @property
    def output(self) -> Value:
        return self.fn.outputs[0]


# ------------------------------------------------------------------ the trace module
def _trace_module(art):
    """Build, write and import the trace module of ``art``; return (module, fn, steps, local, consts)."""
    from gradc.runtime.loader import cache_dir, import_generated, write_atomic

    steps: list[Step] = []
    full = grad(art.primal, art.lowered.wrt, record=steps)
    verify(full)
    namer = Namer()
    for v in full.inputs:
        namer.claim(v.name)
    for s in full.stmts:
        namer.claim(s.out.name)
    b = Builder(namer)
    b.adjoint = True
    local: dict = {}
    for step in steps:
        s = step.stmt
        if s.out.shape == ():
            unit = b.const(1.0)
        elif OPS[s.op].elementwise:
            b.hint = f"{s.out.name}_ones"
            unit = b.emit("expand", 1.0, s.out)
        else:
            continue                                  # a Jacobian: no single local number
        b.hint = f"{s.out.name}_local"
        for pos, r in enumerate(OPS[s.op].vjp(b, s, unit)):
            if r is not None and step.contribs[pos] is not None:
                local[(id(s), pos)] = r
    stmts = full.stmts + b.stmts
    whole = full.replace(stmts)
    consts = {id(s.out): float(s.attr["value"]) for s in stmts if s.op == "const"}
    names = {id(v): v.name for v in full.inputs}
    lines = print_plain(stmts, names)
    returned = [v.name for v in full.inputs] + [s.out.name for s in stmts if s.op != "const"]
    lo = art.lowered
    text = environment().get_template("trace.py.j2").render(
        version=__version__, source_name=safe_name(lo.source_name), model_name=lo.model_name,
        arg_names=tuple(v.name for v in full.inputs),
        shapes={v.name: v.shape for v in full.inputs},
        dtypes={v.name: DTYPE_NAMES[v.dtype] for v in full.inputs},
        classes=label_classes(full), params=lo.params, helpers=helpers([whole], "\n".join(lines)),
        lines=lines, returned=returned)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    path = cache_dir() / f"{lo.model_name}_trace_{digest}.py"
    write_atomic(path, text)
    return import_generated(path), full, steps, local, consts


# ------------------------------------------------------------------ the point
def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def _numbers_only(x) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, (int, float)):
        return True
    return isinstance(x, list) and all(_numbers_only(y) for y in x)


def parse_at(items, module) -> dict:
    """``["x=-2", "W=[[0.1,0.5],[-0.3,0.8]]"]`` → ``{name: ndarray}``, checked against the arguments.

    Values are Python/JSON literals read with :func:`ast.literal_eval`: a number or
    nested lists of numbers. Raises :class:`GradcError` with a one-line message.
    """
    out: dict = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise GradcError(f"--at {_short(item)}: expected NAME=VALUE, e.g. x=-2 or W=[[0.1,0.5],[-0.3,0.8]]")
        if name not in module.ARGS:
            raise GradcError(f"--at {_short(item)}: unknown name '{_short(name)[1:-1]}'; "
                             f"the arguments are {', '.join(module.ARGS)}")
        if name in out:
            raise GradcError(f"--at {name} is given twice")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise GradcError(f"--at {name}: malformed value {_short(text)}",
                             hint="give a number or nested lists of numbers, e.g. 0.5 or [[1,2],[3,4]]") from None
        if isinstance(value, tuple):
            value = list(value)
        if not _numbers_only(value):
            raise GradcError(f"--at {name}: {_short(text)} is not a number or nested lists of numbers")
        try:
            arr = np.array(value, dtype=np.float64)
        except OverflowError:
            raise GradcError(f"--at {name}: a number in {_short(text)} is too large for float64") from None
        except ValueError:
            raise GradcError(f"--at {name}: the nested lists in {_short(text)} are ragged") from None
        if module.DTYPES[name] == "int64":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise GradcError(f"--at {name}: labels must be integers")
            arr = arr.astype(np.int64)
        out[name] = arr
    return out


def _shape_txt(shape) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def bind_dims(given: dict, module, dims: dict) -> dict:
    """Check the ``--at`` arrays' shapes against the declared ones; symbolic dimensions
    take their size from them (they must agree with each other and with ``dims``)."""
    bound = dict(dims)
    source = {d: "--dim" for d in dims}
    for name, arr in given.items():
        declared = module.SHAPES[name]
        ok = arr.ndim == len(declared) and all(
            isinstance(d, str) or d == n for d, n in zip(declared, arr.shape))
        if not ok:
            raise GradcError(f"--at {name}: expected shape {_shape_txt(declared)}, got {_shape_txt(arr.shape)}")
        for d, n in zip(declared, arr.shape):
            if isinstance(d, str):
                if d in bound and bound[d] != n:
                    raise GradcError(f"--at {name}: dimension '{d}' is {n} here but {bound[d]} "
                                     f"from {source[d]}")
                bound[d] = n
                source.setdefault(d, f"--at {name}")
    return bound


def random_point(module, dims: dict, seed: int) -> dict:
    """The point ``gradc check`` uses: standard normal inputs, labels in range, params from
    their init method unless it is ``zeros``."""
    from types import SimpleNamespace

    from gradc.runtime import init_params, random_arguments

    args = random_arguments(module, dims, seed)
    params = init_params(SimpleNamespace(params=module.PARAMS, shapes=module.SHAPES), dims, seed)
    return {n: params[n] if module.PARAMS.get(n, ("zeros",))[0] != "zeros" and n in params else x
            for n, x in zip(module.ARGS, args)}


def backprop(source, at=(), *, wrt=None, dims: dict | None = None, batch: int = 3, seed: int = 0) -> Backprop:
    """Trace ``source`` (a spec path or text, or anything :func:`gradc.pipeline.build` takes)
    at the point ``at`` (``NAME=VALUE`` strings); unnamed arguments are random (``seed``),
    symbolic dimensions sized by ``dims``, the ``at`` arrays, else ``batch``."""
    if batch < 1:
        raise GradcError(f"--batch {batch} must be at least 1")
    art = build(source, wrt=wrt, roll=False)        # every term of a long sum its own steps
    module, full, steps, local, consts = _trace_module(art)
    known = sorted({d for shape in module.SHAPES.values() for d in shape if isinstance(d, str)})
    for d in dims or {}:
        if d not in known:
            has = f"its symbolic dimensions are {', '.join(known)}" if known else "it has no symbolic dimensions"
            raise GradcError(f"--dim {d}: {art.lowered.source_name} has no dimension {d!r}; {has}",
                             hint="name a dimension of the spec's shapes, or leave --dim out")
    given = parse_at(at, module)
    bound = bind_dims(given, module, dict(dims or {}))
    for shape in module.SHAPES.values():
        for d in shape:
            if isinstance(d, str):
                bound.setdefault(d, batch)
    point = random_point(module, bound, seed)
    for name, arr in given.items():
        if module.DTYPES[name] == "int64":
            classes = module.CLASSES.get(name)
            if isinstance(classes, str):
                classes = bound.get(classes)
            if arr.size and (arr.min() < 0 or (classes is not None and arr.max() >= classes)):
                raise GradcError(f"--at {name}: labels must be in [0, {classes})" if classes is not None
                                 else f"--at {name}: labels must be >= 0")
        point[name] = arr
    call = []
    for name in module.ARGS:
        x = point[name]
        if module.DTYPES[name] == "int64":
            call.append(np.ascontiguousarray(x, dtype=np.int64))
        elif np.ndim(x) == 0:
            call.append(np.float64(x))
        else:
            call.append(np.ascontiguousarray(x, dtype=np.float64))
    point = dict(zip(module.ARGS, call))
    try:
        with np.errstate(all="ignore"):
            values = module.trace(*call)
    except (ValueError, ArithmeticError) as e:
        raise GradcError(f"evaluating {art.lowered.model_name} at this point failed: {e}") from None
    used = sorted({d for shape in module.SHAPES.values() for d in shape if isinstance(d, str)})
    return Backprop(art.lowered.model_name, art.lowered.source_name, full, steps, local, values, consts,
                    point, [n for n in module.ARGS if n in given], {d: bound[d] for d in used}, seed,
                    list(full.outputs[1:]), Path(module.__file__), art.lowered.source_text.splitlines())


# ------------------------------------------------------------------ formatting numbers
def fmt_num(x, digits: int = 3) -> str:
    """Integers as integers (``-12``), else ``digits`` decimals (``0.731``); very small or
    large magnitudes in scientific notation."""
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return str(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    if abs(x) < 0.5 * 10.0 ** -digits or abs(x) >= 1e6:
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}f}"


def fmt_value(x, digits: int = 3) -> str:
    """A scalar; an array of at most 4 entries in full (``[0.22, 0.26]``); else its shape and
    mean/min/max (``[4,3] mean 0.12 min -1.3 max 2.1``, or ``[4,3] all 1``); masks as a count
    of true entries."""
    a = np.asarray(x)
    if a.ndim == 0:
        return fmt_num(a.item(), digits)
    if a.dtype == np.bool_:
        return f"{_shape_txt(a.shape)} {int(a.sum())} of {a.size} true"
    if a.size <= 4:
        def nest(y):
            return "[" + ", ".join(nest(z) for z in y) + "]" if isinstance(y, list) else fmt_num(y, digits)
        return nest(a.tolist())
    if a.dtype.kind in "iu":
        return f"{_shape_txt(a.shape)} [{', '.join(str(v) for v in a.reshape(-1)[:4])}, ...]"
    if a.min() == a.max():
        return f"{_shape_txt(a.shape)} all {fmt_num(a.min(), digits)}"
    return (f"{_shape_txt(a.shape)} mean {fmt_num(a.mean(), digits)} min {fmt_num(a.min(), digits)} "
            f"max {fmt_num(a.max(), digits)}")


# ------------------------------------------------------------------ the backprop table
def _point_line(bp: Backprop, digits: int, wrap: bool = True) -> str:
    """``at x = -2, y = 5`` (one argument a line if that is long) and which values are random."""
    parts = [f"{n} = {fmt_value(bp.point[n], digits)}" for n in bp.point]
    line = f"at {', '.join(parts)}"
    if wrap and len(line) > 80:
        width = max(len(n) for n in bp.point)
        line = "at\n" + "\n".join(f"  {n:<{width}} = {fmt_value(bp.point[n], digits)}" for n in bp.point)
    random = [n for n in bp.point if n not in bp.given]
    if random:
        extra = f"seed {bp.seed}" + "".join(f", {d}={n}" for d, n in bp.dims.items())
        line += f"\n({', '.join(random)} drawn at random: {extra})"
    return line


#: the binary operators of the spec language, by the ops they lower to
_BINOPS = {ast.Add: ("add",), ast.Sub: ("sub",), ast.Mult: ("mul",), ast.Div: ("div",),
           ast.Pow: ("pow", "powc"), ast.MatMult: ("matmul",)}


def expression_of(bp: Backprop, stmt, limit: int = 36) -> str:
    """The text of the spec expression ``stmt`` comes from (``mean(softmax_cross_entropy(scores, y))``
    for ``loss_3``), read at its place ``file:line:col`` and abbreviated to ``limit`` characters;
    "" when it cannot be found (a SymPy source, a statement the compiler added)."""
    try:
        _, line, col = (stmt.loc or "").rsplit(":", 2)
        text = bp.source_lines[int(line) - 1]
        col = int(col) - 1
    except (ValueError, IndexError):
        return ""
    starts = [i for i in range(col) if text[i] in "\"'"]
    if not starts:
        return ""
    begin = starts[-1] + 1
    end = text.find(text[starts[-1]], col)
    expr = text[begin:end if end >= 0 else len(text)]
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return ""
    here = [n for n in ast.walk(tree) if getattr(n, "col_offset", None) == col - begin
            and getattr(n, "lineno", 0) == 1 and not isinstance(n, ast.expr_context)]
    if not here:
        return ""

    def names(n) -> tuple:
        if isinstance(n, ast.BinOp):
            return _BINOPS.get(type(n.op), ())
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return ("neg",)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            return tuple(op for op, e in OPS.items() if n.func.id == e.spelling or n.func.id in e.aliases) + (n.func.id,)
        return ()

    # nested expressions of one op starting at one place, (a + b) + c, lower inner first
    same = [t for t in bp.fn.stmts[:bp.fn.n_primal] if t.loc == stmt.loc and t.op == stmt.op]
    k = next((i for i, t in enumerate(same) if t is stmt), 0)
    matches = [n for n in reversed(here) if stmt.op in names(n)]
    # no match: an op the compiler derived; the largest expression there
    node = matches[min(k, len(matches) - 1)] if matches else here[0]
    found = ast.get_source_segment(expr, node) or ""
    return found if len(found) <= limit else found[:limit - 1] + "…"


def fit_columns(head: list[str], rows: list[list[str]], width: int = 0, gap: int = 2) -> list[str]:
    """The lines of a table of ``head`` and ``rows``, columns left-aligned; with ``width`` > 0 and a
    table wider than that, the widest columns are narrowed (none below 10 characters or its
    longest word of at most 21, an op's name) and their cells wrapped at spaces onto more lines."""
    n = len(head)
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(n)]
    if width > 0:                       # no column below 10, or below its longest word of at most 21 (an op)
        words = [max((len(w) for r in rows for w in r[i].split() if len(w) <= 21), default=0) for i in range(n)]
        least = [min(w, max(10, k)) for w, k in zip(widths, words)]
        while sum(widths) + gap * (n - 1) > width:
            i = max(range(n), key=lambda k: widths[k] - least[k])
            if widths[i] <= least[i]:
                break
            widths[i] -= 1

    def render(row: list[str]) -> list[str]:
        cells = [textwrap.wrap(c, w, break_on_hyphens=False) or [""] if len(c) > w else [c]
                 for c, w in zip(row, widths)]
        return [(" " * gap).join(c.ljust(w) for c, w in zip(parts, widths)).rstrip()
                for parts in itertools.zip_longest(*cells, fillvalue="")]

    lines = render(head) + [(" " * gap).join("-" * w for w in widths)]
    for r in rows:
        lines += render(r)
    return lines


def explain_table(bp: Backprop, digits: int = 3, width: int = 0) -> str:
    """The backprop table: one row per node and operand, nodes in reverse order (the adjoint
    sweep's), then the inputs with their gradients. Each node is named by its IR name (as in
    the generated code) and the spec expression it comes from.

    ``width`` > 0 fits the text to that many columns: a table wider than that is split in two,
    as pandas splits a wide frame, the nodes (value, upstream gradient) and then the
    operands (local gradient, gradient sent down, rule), each with its cells wrapped to fit
    (see :func:`fit_columns`)."""
    out = bp.output.name
    head = ["node", "expression", "op", "value", f"upstream ∂{out}/∂node", "operand", "local ∂node/∂operand",
            "gradient", "rule"]
    rows = []
    for step in bp.steps:
        s = step.stmt
        up = fmt_value(bp.value(step.upstream), digits)
        if step.fan_in > 1:
            up += f" (sum of {step.fan_in})"
        first = True
        for pos, (arg, c) in enumerate(zip(s.args, step.contribs)):
            if c is None:
                continue
            loc = bp.local.get((id(s), pos))
            rows.append([s.out.name if first else "", expression_of(bp, s) if first else "", s.op if first else "",
                         fmt_value(bp.value(s.out), digits) if first else "", up if first else "",
                         arg.name, "—" if loc is None else fmt_value(bp.value(loc), digits),
                         fmt_value(bp.value(c), digits), note_of(s, pos)])
            first = False
    grads = {id(w): g for w, g in zip(bp.fn.wrt, bp.grads)}
    for v in bp.fn.inputs:
        g = grads.get(id(v))
        rows.append([v.name, "", "input", fmt_value(bp.point[v.name], digits),
                     "—" if g is None else fmt_value(bp.value(g), digits), "", "", "", ""])
    keep = [i for i in range(len(head)) if i != 1 or any(r[1] for r in rows)]   # no source text: SymPy
    lines = [f"backprop of {bp.model_name} ({bp.source_name}) {_point_line(bp, digits)}",
             f"upstream = ∂{out}/∂node, the gradient arriving from above;",
             "local    = ∂node/∂operand, the op's rule at a unit upstream gradient (— for a Jacobian: see the rule);",
             "gradient = upstream × local, sent down to the operand (an operand feeding several nodes sums them).",
             ""]
    lines = "\n".join(lines).split("\n")
    table = fit_columns([head[i] for i in keep], [[r[i] for i in keep] for r in rows])
    if width <= 0 or max(map(len, table)) <= width:
        return "\n".join(lines + table)
    lines = [part for line in lines for part in (textwrap.wrap(line, width, subsequent_indent="    ")
                                                 if len(line) > width else [line])]
    nodes = [i for i in keep if i < 5]
    node_rows = [[r[i] for i in nodes] for r in rows if r[2]]
    edge_rows = [[r[i] for i in (0, 5, 6, 7, 8)] for r in rows if r[5]]
    return "\n".join(lines + fit_columns([head[i] for i in nodes], node_rows, width) + [
        "", "gradients sent down to each node's operands:", ""]
        + fit_columns([head[i] for i in (0, 5, 6, 7, 8)], edge_rows, width))


# ------------------------------------------------------------------ the graph
def _symbol(s, digits: int) -> str:
    """The node's label in the graph: its op's ``symbol`` (``+``, ``x^2``), else the op's name."""
    sym = OPS[s.op].symbol
    if callable(sym):
        return sym(s, lambda x: fmt_num(x, digits))
    return sym or s.op


def _q(text: str) -> str:
    """A double-quoted DOT string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


#: graphs with more ops than this are laid out top to bottom, their ops grouped by spec line
LARGE_GRAPH = 12
#: ... and so are those whose longest chain of ops times their widest edge label (in characters) is
#: more than this: left to right, a chain of array summaries ("[2,16,8,8] mean ... min ... max ...")
#: makes a strip many screens wide (a CNN's 11 ops, 45-character labels)
WIDE_GRAPH = 450


def graph_dot(bp: Backprop, digits: int = 3) -> str:
    """The computational graph as Graphviz DOT, like the lecture figures: one node per IR op
    (inputs too), each edge labelled with the value flowing forward (green, above) and the
    gradient flowing back along it (red, below).

    A small graph runs left to right, as the lecture figures do; a large one (more than
    :data:`LARGE_GRAPH` ops) runs top to bottom, with the ops of each spec line in a box
    labelled with that line and array summaries on two lines, so that it stays readable on
    a screen."""
    primal = bp.fn.stmts[:bp.fn.n_primal]
    contrib = {}
    for step in bp.steps:
        for pos, c in enumerate(step.contribs):
            if c is not None:
                contrib[(id(step.stmt), pos)] = c
    large = (sum(s.op != "const" for s in primal) > LARGE_GRAPH
             or _chain(primal) * _widest_label(bp, primal, contrib, digits) > WIDE_GRAPH)
    point = _point_line(bp, digits, wrap=False).replace("\n", " ")
    lines = [f"digraph {_q(bp.model_name)} {{",
             "  // " + safe_name(f"gradc show --stage graph: {bp.source_name} {point}"),
             "  // edges: forward value (green, above), gradient of the output (red, below)",
             f"  rankdir={'TB' if large else 'LR'};",
             '  node [shape=ellipse, fontname="Helvetica", fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=10];']

    def node_id(v: Value) -> str:
        return _q("n_" + v.name)

    def cell(text: str) -> str:
        parts = text.split(" mean ", 1) if large else [text]     # "[3,10]" over "mean ... min ... max ..."
        return "<br/>".join(html.escape(p) for p in ([parts[0], "mean " + parts[1]] if len(parts) == 2 else parts))

    def edge(src: Value, dst: str, grad_text: str | None) -> str:
        top = f'<font color="#1b7a1b">{cell(fmt_value(bp.value(src), digits))}</font>'
        label = top if grad_text is None else f'{top}<br/><font color="#c0262d">{cell(grad_text)}</font>'
        return f"  {node_id(src)} -> {dst} [label=<{label}>];"

    for v in bp.fn.inputs:
        shape = "" if not v.shape else " " + _shape_txt(v.shape)
        lines.append(f"  {node_id(v)} [label={_q(v.name + shape)}, shape=plaintext];")
    clusters: dict = {}
    for s in primal:
        if s.op == "const":
            text = f"  {node_id(s.out)} [label={_q(fmt_num(float(s.attr['value']), digits))}, shape=plaintext];"
        else:
            text = f"  {node_id(s.out)} [label={_q(_symbol(s, digits) + chr(10) + s.out.name)}];"
        line = _spec_line(bp, s) if large else None
        if line is None:
            lines.append(text)
        else:
            clusters.setdefault(line, []).append(text)
    for k, (line, members) in enumerate(clusters.items()):
        lines += [f"  subgraph cluster_{k} {{",
                  f"    label={_q(line)}; labeljust=l; style=rounded; color=gray60; fontname=\"Courier\";"]
        lines += ["  " + m for m in members] + ["  }"]
    for s in primal:
        for pos, a in enumerate(s.args):
            c = contrib.get((id(s), pos))
            lines.append(edge(a, node_id(s.out), None if c is None else fmt_value(bp.value(c), digits)))
    out = bp.output
    lines.append(f"  {_q('out')} [label={_q(out.name)}, shape=plaintext];")
    lines.append(edge(out, _q("out"), "1"))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _chain(primal) -> int:
    """The number of ops (constants aside) on the longest path through the graph, plus the edge out."""
    depth: dict = {}
    for s in primal:
        depth[id(s.out)] = (s.op != "const") + max((depth.get(id(a), 0) for a in s.args), default=0)
    return max(depth.values(), default=0) + 1


def _widest_label(bp: Backprop, primal, contrib: dict, digits: int) -> int:
    """The characters of the widest edge label on one line (the value or the gradient)."""
    widths = [len(fmt_value(bp.value(bp.output), digits))]
    for s in primal:
        for pos, a in enumerate(s.args):
            widths.append(len(fmt_value(bp.value(a), digits)))
            if (id(s), pos) in contrib:
                widths.append(len(fmt_value(bp.value(contrib[(id(s), pos)]), digits)))
    return max(widths)


def _spec_line(bp: Backprop, stmt) -> str | None:
    """``file:line: the line's text`` of the spec line ``stmt`` comes from, or None."""
    try:
        name, line, _ = (stmt.loc or "").rsplit(":", 2)
        return f"{name}:{line}: {bp.source_lines[int(line) - 1].strip()}"
    except (ValueError, IndexError):
        return None


def write_graph(dot_text: str, path: Path) -> None:
    """Write DOT text to ``path``: as text, or rendered by Graphviz's ``dot`` for .svg/.png/.pdf."""
    from gradc.runtime.loader import write_atomic

    fmt = path.suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        write_atomic(path, dot_text)
        return
    exe = shutil.which("dot")
    if exe is None:
        raise GradcError(f"writing {path} needs Graphviz's `dot` program, which is not installed",
                         hint="install it with `apt-get install graphviz` (macOS: `brew install graphviz`), "
                              "or write a .dot file")
    try:
        r = subprocess.run([exe, f"-T{fmt}", "-o", str(path)], input=dot_text.encode("utf-8"),
                           capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GradcError(f"running {exe} failed: {e}") from None
    if r.returncode != 0:
        msg = (r.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[0]
        raise GradcError(f"dot could not render {path}: {msg}")
