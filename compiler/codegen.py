"""Code generation: IR → Python module text through the Jinja2 templates.

Each statement renders through the macro named like its op in
``templates/ops/<family>.j2``; constants are inlined as literals; the module
frame is ``templates/module.py.j2``. The output is deterministic: it depends
only on the IR, the source text and the gradc version.

Every string from the source that reaches the module is made harmless here:
names are identifiers (checked by the frontends), the source text and file
name become comment lines of printable characters (:func:`_safe_lines`,
:func:`_safe_name`), and free text (the ``[model] description``, ``doc``
entries) is escaped inside the docstrings (:func:`docstring_text`) so that the
docstring's value is exactly that text. The second line of the module is a
content hash over the rest (:func:`gradc.runtime.loader.seal`), so a
truncated or modified file is detected; it also keeps the source file name off
the first two lines, where Python would read a ``coding:`` declaration.

Float32 models: a float32 constant renders as ``np.float32(...)`` and every
op template writes its own numbers through ``o.lit(...)``, since Numba types a
bare ``0.5`` as float64 and ``0.5 * x`` would turn a float32 array into float64.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from types import SimpleNamespace

import jinja2

from .ir import DTYPE_NAMES, Function, Value
from .ops import OPS


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    folder = resources.files("gradc.templates")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False, trim_blocks=False)
    env.filters["pyrepr"] = repr
    return env


@lru_cache(maxsize=None)
def _family(name: str):
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


def _expr(s, args: list[str], scalar: bool = False) -> str:
    """The right-hand side of ``s`` with operand expressions ``args``; ``scalar``: one
    element of an elementwise statement (every rank taken as 0), for a loop body (``o.elem``
    is then true if the statement's result is an array)."""
    macro = getattr(_family(OPS[s.op].family), s.op)
    dtype = s.out.dtype if s.out.dtype in ("f64", "f32") else \
        ("f32" if any(a.dtype == "f32" for a in s.args) else "f64")
    attrs = {k: v for k, v in s.attrs if k != "dtype"}
    o = SimpleNamespace(rank=0 if scalar else s.out.rank,
                        arg_ranks=[0 if scalar else a.rank for a in s.args],
                        arg_dtypes=[a.dtype for a in s.args], dtype=dtype,
                        elem=scalar and bool(s.out.shape),
                        lit=_LIT[dtype], cast=_CAST[dtype], **attrs)
    return str(macro(o, *args)).strip()


def _line(s, expr: str, comments: bool, target: str | None = None) -> str:
    line = f"{target or s.out.name} = {expr}"
    return line + f"  # {s.note}" if s.note and comments else line


def table_name(values: tuple, tables: dict) -> str:
    """The module-level name of a constant table (``_TABLE0``, ...), numbered by first use."""
    return tables.setdefault(values, f"_TABLE{len(tables)}")


#: Elementwise ops a loop renders one element at a time (their rank-0 template is scalar code,
#: ``o.elem`` set: exp/tanh/sigmoid of an array element call the scalar kernels ``_exp1``/``_tanh1``/
#: ``_sigmoid1``, which LLVM inlines and vectorizes like ``_vexp``); ``sum``/``sum_to`` of a loop's
#: value accumulate in the loop.
LOOP_OPS = frozenset({"alias", "add", "sub", "mul", "div", "neg", "powc", "pow", "exp", "log", "sqrt", "sin",
                      "cos", "tan", "tanh", "sigmoid", "relu", "abs", "sign", "maximum", "minimum",
                      "leaky_relu", "elu", "softplus", "log_sigmoid", "lt", "le", "gt", "ge",
                      "logical_and", "logical_or", "logical_not", "where", "expand"})
#: Elementwise fusion (:func:`render_stmts`): on by default; ``gradc.pipeline.build(fuse=False)``
#: (or ``with fusion(False):``) keeps one whole-array statement per op (loops over re-rolled tables only).
FUSE = True
#: Deepest loop nest fusion renders (the array's rank).
MAX_LOOP_RANK = 4
_INDEX = ("_i", "_j", "_k", "_l")
#: Ops whose element code in a loop is a vectorizable kernel call (``_exp1``, ...), and ops whose
#: element code calls the C library (no loop holding one vectorizes).
KERNEL_OPS = frozenset({"exp", "tanh", "sigmoid"})
SCALAR_CALL_OPS = frozenset({"log", "sin", "cos", "tan", "pow", "elu", "softplus", "log_sigmoid"})
_LOOP_DTYPES = ("f64", "f32", "bool")


@contextmanager
def fusion(enabled: bool):
    """``with fusion(False): ...``: render without elementwise fusion (see :data:`FUSE`)."""
    global FUSE
    old, FUSE = FUSE, bool(enabled)
    try:
        yield
    finally:
        FUSE = old


def _suffix(shape, full) -> bool:
    """``shape`` broadcasts against ``full`` as its trailing axes (``()``: a scalar)."""
    return len(shape) <= len(full) and tuple(full[len(full) - len(shape):]) == tuple(shape)


def _loop_kind(s, lengths, fuse: bool = False):
    """``(kind, shape)`` when ``s`` can join a loop over ``shape``, else None. Kinds:
    ``"elem"`` an elementwise statement computed one element at a time (operands of the
    full shape, of its trailing axes, or scalars); ``"reduce"`` a ``sum``/``sum_to`` of such
    a value to a scalar or over its leading axes, accumulated in the loop; ``"scatter"`` an
    ``unslice`` of such a value (written into a zero array at its offset) and ``"scatter_add"``
    the sum of two of them (both written into one array; see :func:`_schedule`).
    Without ``fuse`` only rank-1 loops over the length of a re-rolled table (``lengths``)."""
    def loopable(shape):
        if not shape:
            return False
        if len(shape) == 1 and shape[0] in lengths:
            return True
        return fuse and len(shape) <= MAX_LOOP_RANK

    if s.op in ("sum", "sum_to") and len(s.args) == 1:
        a = s.args[0]
        if a.dtype in ("f64", "f32") and loopable(a.shape) and s.attr.get("axis") is None \
                and (not s.out.shape or (fuse and s.op == "sum_to" and s.out.rank < a.rank
                                         and _suffix(s.out.shape, a.shape))):
            return "reduce", a.shape
        return None
    if s.op == "unslice":
        g, like = s.args
        start = s.attr.get("start")
        if fuse and loopable(g.shape) and g.dtype in ("f64", "f32") and like.rank == g.rank \
                and isinstance(start, int) and start >= 0 \
                and all(d == e or isinstance(d, int) for d, e in zip(s.out.shape, g.shape)):
            return "scatter", g.shape
        return None
    if s.op not in LOOP_OPS or not loopable(s.out.shape) or s.out.dtype not in _LOOP_DTYPES:
        return None
    if s.op == "expand":
        if s.args[0].shape or s.attr.get("axis") is not None:
            return None
        return "elem", s.out.shape
    if any(a.dtype not in _LOOP_DTYPES for a in s.args):
        return None
    if any(not (a.shape == s.out.shape if not fuse else _suffix(a.shape, s.out.shape)) for a in s.args):
        return None
    return "elem", s.out.shape


def _uses(s):
    """The operands whose values ``s`` reads in a loop (``expand`` reads only the shape of its
    second; as a whole-array statement it needs the array itself)."""
    return s.args[:1] if s.op == "expand" else s.args


def _schedule(stmts, lengths, fuse: bool = False, outputs=()):
    """Group the loop statements (see :func:`_loop_kind`) into loops: ``[("stmt", s) |
    ("loop", shape, [s, ...], kinds)]`` in an order that respects every dependence. While a loop is
    gathered, a statement that does not need it moves ahead of it, one that needs it
    (or needs such a statement) moves after it, and a loop statement that needs one of
    those, or one of the loop's own sums, closes it; so the adjoint statements of a
    re-rolled sum join the loop of its forward statements. An ``add`` of two scatters of
    the loop, each used only there, is a ``scatter_add`` (both go into one zero array).
    ``kinds`` maps each loop statement's result (by id) to its kind."""
    out, pre, post, loop = [], [], [], None     # loop: (shape, stmts, defined ids, ids it must not use, kinds)
    uses: dict[int, int] = {}
    for s in stmts:
        for a in s.args:
            uses[id(a)] = uses.get(id(a), 0) + 1
    for v in outputs:
        uses[id(v)] = uses.get(id(v), 0) + 2

    def close():
        nonlocal loop, pre, post
        out.extend(pre)
        if loop is not None:
            out.append(("loop", loop[0], loop[1], loop[4]))
        out.extend(post)
        pre, post, loop = [], [], None

    for s in stmts:
        if fuse and loop is not None and s.op == "add" and s.out.dtype in ("f64", "f32") \
                and s.args[0].shape == s.args[1].shape == s.out.shape and s.args[0] is not s.args[1] \
                and all(loop[4].get(id(a), "").startswith("scatter") and uses.get(id(a)) == 1 for a in s.args):
            kind, shape = "scatter_add", loop[0]
        elif s.op == "alias" and fuse and (loop is None or id(s.args[0]) not in loop[2]):
            kind, shape = None, None           # another name for an array: no copy
        else:
            hit = _loop_kind(s, lengths, fuse) if s.op != "const" else None
            kind, shape = hit if hit else (None, None)
        if kind:
            if kind != "scatter_add" and loop is not None \
                    and (loop[0] != shape or any(id(a) in loop[3] for a in _uses(s))):
                close()
            if loop is None:
                loop = (shape, [], set(), set(), {})
            loop[1].append(s)
            loop[2].add(id(s.out))
            loop[4][id(s.out)] = kind
            if kind != "elem":
                loop[3].add(id(s.out))
        elif loop is not None and any(id(a) in loop[2] or id(a) in loop[3] for a in s.args):
            post.append(("stmt", s))
            loop[3].add(id(s.out))
        elif loop is not None:
            pre.append(("stmt", s))
        else:
            out.append(("stmt", s))
    close()
    return out


def _dim_exprs(shape, body, names, inside, known: dict) -> list[str] | None:
    """Python expressions for the sizes of ``shape``: the int, ``known[dim]`` (an argument's
    ``X.shape[0]``), or ``<array>.shape[k]`` of an array operand of the loop defined before
    it that has the symbolic dim on axis k."""
    out = []
    for d in shape:
        if isinstance(d, int) or d in known:
            out.append(str(d) if isinstance(d, int) else known[d])
            continue
        found = None
        for s in body:
            for a in s.args:
                if id(a) in inside or d not in a.shape or not names.get(id(a), "").isidentifier():
                    continue
                found = f"{names[id(a)]}.shape[{a.shape.index(d)}]"
                break
            if found:
                break
        if found is None:
            return None
        out.append(found)
    return out


def _zeros(dims: list[str], dtype: str, empty: bool = False, f32: str = "np.float32") -> str:
    """``np.zeros(n)`` / ``np.empty((n, m), ...)``; a float32 array takes the dtype ``f32``
    (an operand's ``X.dtype``: the same code run on float64 arguments computes in float64)."""
    fn = "np.empty" if empty else "np.zeros"
    size = dims[0] if len(dims) == 1 else "(" + ", ".join(dims) + ")"
    dt = {"f64": "", "f32": f", {f32}", "bool": ", np.bool_"}[dtype]
    return f"{fn}({size}{dt})"


def _render_loop(shape, body, kinds, names, stored, comments, lines, known, buffers=(), reused=None) -> bool:
    """Append the lines of one loop nest over ``shape`` (see :func:`render_stmts`); False
    (nothing appended) when a symbolic size cannot be named. ``buffers``: operands of the loop
    that die in it and whose arrays the function itself allocated; a stored value
    (``_a_<name>``) of the same shape and dtype is written into one of them instead of a new
    array, at the end of the loop body (after every read of that element), and after the loop
    it goes by ``_a_<name>`` as usual (``_a_q_bar = q  # ...``); ``reused`` (a list) gets the
    names of the arrays so reused."""
    inside = {id(s.out) for s in body}
    rank = len(shape)
    dims = _dim_exprs(shape, body, names, inside, known)
    if dims is None:
        return False
    idx = _INDEX[:rank]
    f32 = next((f"{names[id(a)]}.dtype" for t in body for a in t.args if id(a) not in inside
                and a.dtype == "f32" and a.shape and names.get(id(a), "").isidentifier()), "np.float32")
    # the array each scatter writes into: its own, or that of the scatter_add that absorbs it
    target: dict[int, Value] = {}
    for s in reversed(body):
        if kinds[id(s.out)] == "scatter_add":
            root = target.setdefault(id(s.out), s.out)
            for a in s.args:
                target[id(a)] = root
    free = [b for b in buffers if id(b) not in inside and tuple(b.shape) == tuple(shape)]
    into: dict[int, str] = {}                           # stored value -> the dead operand it goes into
    for s in body:
        if id(s.out) in stored and kinds[id(s.out)] == "elem" and tuple(s.out.shape) == tuple(shape):
            b = next((b for b in free if b.dtype == s.out.dtype), None)
            if b is not None:
                free.remove(b)
                into[id(s.out)] = names[id(b)]
    for s in body:
        kind = kinds[id(s.out)]
        if id(s.out) in into:
            continue
        if kind.startswith("scatter"):
            if target.get(id(s.out), s.out) is s.out:
                odims = [dims[k] if d == shape[k] else str(d) for k, d in enumerate(s.out.shape)]
                lines.append(f"{s.out.name} = {_zeros(odims, s.out.dtype, f32=f32)}")
        elif kind in ("sum_after", "alias"):
            continue
        elif id(s.out) in stored:
            lines.append(f"_a_{s.out.name} = {_zeros(dims, s.out.dtype, empty=True, f32=f32)}")
        elif not s.out.shape:
            lines.append(f"{s.out.name} = {_LIT['f32' if s.out.dtype == 'f32' else 'f64'](0.0)}")
        elif kind == "reduce":
            lines.append(f"{s.out.name} = {_zeros(dims[rank - s.out.rank:], s.out.dtype, f32=f32)}")
    for k in range(rank):
        lines.append("    " * k + f"for {idx[k]} in range({dims[k]}):")
    pad = "    " * rank

    def at(v, offset=None):
        sub = list(idx[rank - v.rank:])
        if offset is not None:
            axis, start = offset
            sub[axis] = f"{sub[axis]} + {start}" if start else sub[axis]
        return ", ".join(sub)

    for s in body:
        if kinds[id(s.out)] in ("scatter_add", "sum_after"):   # written by its scatters; summed after
            continue
        args = [names[id(a)] if id(a) in inside or not a.shape else f"{names[id(a)]}[{at(a)}]"
                for a in _uses(s)]
        if kinds[id(s.out)] == "reduce":                # a sum: accumulate
            acc = s.out.name if not s.out.shape else f"{s.out.name}[{at(s.out)}]"
            lines.append(pad + _line(s, args[0], comments, acc).replace(" = ", " += ", 1))
            continue
        if s.op == "unslice":
            root = target.get(id(s.out), s.out)
            op = " += " if root is not s.out else " = "
            line = f"{root.name}[{at(s.out, (s.attr['axis'] % s.out.rank, s.attr['start']))}]{op}{args[0]}"
            lines.append(pad + (line + f"  # {s.note}" if s.note and comments else line))
            continue
        if kinds[id(s.out)] == "alias":                  # its operand under another name
            names[id(s.out)] = names[id(s.args[0])]
            continue
        if s.op == "expand" and id(s.out) not in stored:
            names[id(s.out)] = args[0]
            continue
        expr = args[0] if s.op == "expand" else _expr(s, args, scalar=True)
        lines.append(pad + _line(s, expr, comments))
        names[id(s.out)] = s.out.name
        if id(s.out) in stored and id(s.out) not in into:
            lines.append(pad + f"_a_{s.out.name}[{at(s.out)}] = {s.out.name}")
    for s in body:                                      # last: the loop's reads of these elements are done
        if id(s.out) in into:
            lines.append(pad + f"{into[id(s.out)]}[{at(s.out)}] = {s.out.name}")
    for s in body:
        if kinds[id(s.out)] == "alias":
            names[id(s.out)] = names[id(s.args[0])]
        elif kinds[id(s.out)].startswith("scatter"):
            names[id(s.out)] = target.get(id(s.out), s.out).name
        elif id(s.out) in into:
            note = f"  # written into {into[id(s.out)]}'s array, free after the loop" if comments else ""
            lines.append(f"_a_{s.out.name} = {into[id(s.out)]}{note}")
            names[id(s.out)] = f"_a_{s.out.name}"
            if reused is not None:
                reused.append(into[id(s.out)])
        elif id(s.out) in stored:
            names[id(s.out)] = f"_a_{s.out.name}"
        elif kinds[id(s.out)] == "reduce":
            names[id(s.out)] = s.out.name
        elif kinds[id(s.out)] == "sum_after":
            lines.append(_line(s, f"np.sum({names[id(s.args[0])]})", comments))
            names[id(s.out)] = s.out.name
    return True


def render_stmts(stmts, names: dict[int, str], comments: bool = True, tables: dict | None = None,
                 outputs=(), fuse: bool | None = None, cut: list | None = None) -> list[str]:
    """One line per statement (``h = np.tanh(h_2)  # note``); fills ``names``.

    ``comments=False`` leaves out the notes (the adjoint rules' comments). A constant
    table (a ``const`` holding a tuple, from :func:`gradc.passes.reroll`) is a module-level
    array named in ``tables`` (values -> name; without ``tables``, an inline ``np.array``
    and no loops at all).

    Elementwise fusion (``fuse``, default :data:`FUSE`; always for the statements over a
    table's length): consecutive elementwise statements over arrays of one shape, in an order
    that respects every dependence (see :func:`_schedule`), render as one loop nest
    ``for _i in range(n): for _j in range(m):`` computing one element at a time
    (``q = x[_i, _j] + b[_j]``: full-shape operands indexed, trailing-shape ones by their
    axes, scalars as they are); their sums (to a scalar, or ``sum_to`` over leading axes)
    accumulate in the loop, and an ``unslice`` (a slice's adjoint) writes into a zero array
    at its offset, two of them added into one array. Values of a loop used after it (or
    among ``outputs``) are stored in arrays named ``_a_<name>``. ``cut``: if a list, gets
    ``(index of the first line after the last primal statement, whether some loop before it
    holds adjoint statements too)`` when adjoint statements follow that line.
    """
    fuse = FUSE if fuse is None else fuse
    lengths = set()
    for s in stmts:
        if tables is not None and s.op == "const" and isinstance(s.attr["value"], tuple):
            lengths.add(len(s.attr["value"]))
    fuse = fuse and tables is not None
    plan = _schedule(stmts, lengths, fuse, outputs) if lengths or fuse else [("stmt", s) for s in stmts]
    # a loop of aliases and broadcasts only computes nothing: plain statements
    flat = []
    for item in plan:
        if item[0] == "loop" and all(s.op in ("alias", "expand") for s in item[2]) and not lengths:
            flat.extend(("stmt", s) for s in item[2])
        else:
            flat.append(item)
    plan = flat
    # values of a loop needed outside it: stored in arrays
    owner: dict[int, int] = {}
    for k, item in enumerate(plan):
        if item[0] == "loop":
            owner.update((id(s.out), k) for s in item[2] if s.out.shape and item[3][id(s.out)] == "elem")
    # a loop calling the element kernels (exp/tanh/sigmoid) vectorizes, unless it accumulates a
    # scalar (a floating-point sum is not reassociated): such sums are taken after it instead
    for item in plan:
        if item[0] == "loop" and any(s.op in KERNEL_OPS and item[3][id(s.out)] == "elem" for s in item[2]) \
                and not any(s.op in SCALAR_CALL_OPS or (s.op == "powc" and s.attr["p"] not in (2.0, 0.5, -1.0))
                            for s in item[2]):
            for s in item[2]:
                if item[3][id(s.out)] == "reduce" and not s.out.shape:
                    item[3][id(s.out)] = "sum_after"
    # an alias of a value of its own loop is that value under another name (no line, no copy)
    root: dict[int, int] = {}
    for item in plan:
        if item[0] == "loop":
            for s in item[2]:
                if s.op == "alias" and item[3].get(id(s.args[0])) in ("elem", "alias"):
                    item[3][id(s.out)] = "alias"
                    root[id(s.out)] = root.get(id(s.args[0]), id(s.args[0]))
    stored: set[int] = {root.get(id(v), id(v)) for v in outputs if id(v) in owner}
    stored.update(root.get(id(s.args[0]), id(s.args[0])) for item in plan if item[0] == "loop"
                  for s in item[2] if item[3][id(s.out)] == "sum_after" and id(s.args[0]) in owner)
    for k, item in enumerate(plan):
        for s in ([item[1]] if item[0] == "stmt" else item[2]):
            stored.update(root.get(id(a), id(a)) for a in (s.args if item[0] == "stmt" else _uses(s))
                          if owner.get(id(a), k) != k)

    def sweep(item):                   # True: adjoint statements only, False: primal only, None: constants
        ss = [s for s in ([item[1]] if item[0] == "stmt" else item[2]) if s.op != "const"]
        both = {s.adjoint for s in ss}
        return None if not both else (both.pop() if len(both) == 1 else "both")
    sweeps = [sweep(item) for item in plan]
    # where the adjoint sweep starts: after the last item holding primal statements
    last_primal = max((k for k, w in enumerate(sweeps) if w in (False, "both")), default=-1)
    first_adj = next((k for k in range(last_primal + 1, len(plan)) if sweeps[k]), None)
    partly = "both" in sweeps
    # symbolic sizes: from the first value given to these statements that has the dim
    defined = {id(s.out) for s in stmts}
    known: dict = {}
    for s in stmts:
        for a in s.args:
            if id(a) not in defined and names.get(id(a), "").isidentifier():
                for k, d in enumerate(a.shape):
                    if isinstance(d, str):
                        known.setdefault(d, f"{names[id(a)]}.shape[{k}]")
    # Memory of fused loops. A loop allocates its stored values while all its operands are alive,
    # and Numba (its reference-count pruning) releases an array last read in a loop only after the
    # next statement, so neither the loop's outputs nor the matrix product after it could reuse the
    # operands' memory: a fused MLP's heap grew past glibc's trim threshold (twice the largest
    # array freed by munmap), so every call grew, trimmed and re-faulted it (mlp_784: ~1,600 minor
    # faults a call, +55% time; the unfused statements never trimmed). So a stored value goes into
    # a dead operand's array when there is one, and an array whose last use is a loop is released
    # right after it, rebound to an empty array (Numba rejects ``del``).
    last: dict[int, int] = {id(v): len(plan) for v in outputs}
    for k, item in enumerate(plan):
        for s in ([item[1]] if item[0] == "stmt" else item[2]):
            for a in s.args:
                if last.get(id(a), -1) < len(plan):
                    last[id(a)] = k
    given = set(names.values())                     # the arguments and the constants: never released
    consts = {id(s.out) for s in stmts if s.op == "const"}
    # a loop's stored values go into arrays that die in it (:func:`_render_loop`'s ``buffers``),
    # the newest first: arrays the function allocated itself (a matrix product's result, a value
    # stored by an earlier loop), never an argument or a view, used in loops only (a statement
    # could keep a view or another name of it), not an output, no alias of a loop value
    shared = set(root) | set(root.values()) | {id(v) for v in outputs}
    for item in plan:
        if item[0] == "stmt":
            shared.update(id(a) for a in item[1].args)
    owned: dict[int, Value] = {}
    scalar_names: set[int] = set()
    lines = []
    for k, item in enumerate(plan):
        if k == first_adj and cut is not None:
            cut.extend((len(lines), partly))
        args = {id(a) for s in item[2] for a in s.args} if item[0] == "loop" else ()
        buffers = [b for i, b in reversed(owned.items()) if i in args and last.get(i) == k and i not in shared]
        reused: list[str] = []
        if item[0] == "loop" and _render_loop(item[1], item[2], item[3], names, stored, comments, lines, known,
                                              buffers, reused):
            for b in buffers:
                owned.pop(id(b), None)
            owned.update((id(s.out), s.out) for s in item[2] if id(s.out) in stored and item[3][id(s.out)] == "elem")
            inside = {id(s.out) for s in item[2]}
            # an array value a loop computed but did not store is a loop-local scalar name
            scalar_names.update(i for i in inside if i not in stored)
            dead = {names[id(a)]: a.rank for s in item[2] for a in s.args
                    if a.shape and a.dtype in _LOOP_DTYPES and id(a) not in inside and id(a) not in scalar_names
                    and last.get(id(a)) == k and names.get(id(a), "").isidentifier()
                    and names[id(a)] not in given and id(a) not in consts and names[id(a)] not in reused}
            if k == len(plan) - 1:                  # nothing is allocated after the last loop
                dead = {}
            if dead:                                # a name another live value still goes by stays
                for n in {n for i, n in names.items() if n in dead and last.get(i, -1) > k}:
                    del dead[n]
            lines.extend(f"{n} = np.empty({_tuple_text(['0'] * r)}, {n}.dtype)" for n, r in sorted(dead.items()))
            continue
        for s in ([item[1]] if item[0] == "stmt" else item[2]):
            if s.op == "const":
                value = s.attr["value"]
                if isinstance(value, tuple):                # a table: module-level, or inline
                    names[id(s.out)] = table_name(value, tables) if tables is not None else \
                        f"np.array([{', '.join(map(repr, value))}])"
                else:
                    names[id(s.out)] = literal(value, s.out.dtype)
                continue
            lines.append(_line(s, _expr(s, [names[id(a)] for a in s.args]), comments))
            names[id(s.out)] = s.out.name
            if s.op == "matmul" and s.out.rank >= 1:       # `a @ b`: a new array
                owned[id(s.out)] = s.out
    return lines


def table_lines(tables: dict) -> list[str]:
    """Module-level definitions of the constant tables (see :func:`render_stmts`)."""
    out = []
    for values, name in tables.items():
        rows = [", ".join(repr(v) for v in values[i:i + 6]) for i in range(0, len(values), 6)]
        body = ",\n    ".join(rows)
        out.append(f"#: a constant table of {len(values)} terms of a re-rolled sum\n"
                   f"{name} = np.array([\n    {body},\n])")
    return out


def into_parts(full: Function, names: dict[int, str], adjoint_lines: list[str]):
    """The pieces of ``value_and_grad_into`` (see ``templates/module.py.j2``), or None when no
    gradient is an array: ``(out_names, lines, ret)``. ``out_names``: one output-array
    parameter per array gradient, in ``wrt`` order (``<arg>_out``, underscores appended if
    that name is taken); ``lines``: the adjoint sweep with the gradients written into them;
    ``ret``: the value, or ``value, (scalar gradients,)`` when some ``wrt`` argument is a scalar.

    A gradient computed by a matrix product (matrix or vector result) or an outer product (one dtype throughout)
    is written by that product itself (``np.dot(a, b, out)``, ``_outer_into(a, b, out)``: no
    temporary); any other is copied into its array (``out[...] = g``).
    """
    grads = list(zip(full.wrt, full.outputs[1:]))
    if not any(v.shape for v, _ in grads):
        return None
    taken = {v.name for v in full.inputs} | {st.out.name for st in full.stmts}
    out_names = {}
    for v, _ in grads:
        if v.shape:
            name = f"{v.name}_out"
            while name in taken:
                name += "_"
            taken.add(name)
            out_names[v.name] = name
    uses = {}
    for _, g in grads:
        uses[id(g)] = uses.get(id(g), 0) + 1
    direct = {}       # only statements rendered as one top-level line of the adjoint sweep match below
    for st in full.stmts[full.n_primal:]:
        if uses.get(id(st.out)) != 1 or names.get(id(st.out)) != st.out.name \
                or len({st.out.dtype, *(a.dtype for a in st.args)}) != 1:
            continue
        if st.op == "matmul" and st.out.rank >= 1 and st.out.dtype in ("f64", "f32"):  # BLAS gemm/gemv
            direct[st.out.name] = ("np.dot", [names[id(a)] for a in st.args])
        elif st.op == "outer":
            direct[st.out.name] = ("_outer_into", [names[id(a)] for a in st.args])
    target = {names[id(g)]: out_names[v.name] for v, g in grads if v.shape}
    lines, written = [], set()
    for line in adjoint_lines:
        head = line.split(" = ", 1)[0]
        if head in direct and head in target and not line.startswith(" "):
            fn, (a, b) = direct[head]
            lines.append(f"{fn}({a}, {b}, {target[head]})")
            lines.append(f"{head} = {target[head]}")
            written.add(head)
        else:
            lines.append(line)
    for v, g in grads:
        if v.shape and names[id(g)] not in written:
            lines.append(f"{out_names[v.name]}[...] = {names[id(g)]}")
    value = names[id(full.outputs[0])]
    scalars = [names[id(g)] for v, g in grads if not v.shape]
    ret = value if not scalars else f"{value}, ({', '.join(scalars)},)"
    return [out_names[v.name] for v, _ in grads if v.shape], lines, ret


def label_classes(fn: Function) -> dict:
    """Number of classes of each int64 label argument, from the ops that use it (``CLASSES``)."""
    return {s.args[1].name: s.args[0].shape[1] for s in fn.stmts
            if OPS[s.op].helpers and len(s.args) > 1 and s.args[1].dtype == "i64"
            and s.args[1] in fn.inputs}


def _doc(v: Value, role: str = "") -> str:
    shape = "scalar" if not v.shape else "[" + ", ".join(map(str, v.shape)) + "]"
    return docstring_text(f"{v.name}: {DTYPE_NAMES[v.dtype]} {shape}{role}", multiline=False)


def docstring_text(text: str, multiline: bool = True) -> str:
    """``text`` escaped for the inside of a \"\"\"docstring\"\"\" whose value is then exactly ``text``.

    Backslashes and double quotes are escaped (no quote can end the string, no
    ``\\N{...}`` can break it); every non-printable character, including ``\\r``,
    ``\\x0c``, ``\\x85`` and ``\\u2028``, becomes an escape sequence; a newline
    stays a line break if ``multiline``, else it is escaped too (one source line).
    """
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n" and multiline:
            out.append("\n")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])           # '\\n', '\\x0c', '\\u2028', '\\U0001f600'
    return "".join(out)


#: Helpers an op needs only in some of its renderings (``sum`` over an axis, not over all):
#: included when the rendered code calls them (``_<name>(``).
OPTIONAL_HELPERS = frozenset({"sum_axis"})


def _helpers(fns, code: str | None = None) -> list[str]:
    seen: list[tuple[str, str]] = []
    for fn in fns:
        for s in fn.stmts:
            for h in OPS[s.op].helpers:
                if (OPS[s.op].family, h) not in seen:
                    seen.append((OPS[s.op].family, h))
    if code is not None:
        seen = [(fam, h) for fam, h in seen if h not in OPTIONAL_HELPERS or f"_{h}(" in code]
    return [str(getattr(_family(fam), f"helper_{h}")()).strip("\n") for fam, h in seen]


def _safe_lines(text: str) -> list[str]:
    """Source text as comment lines: printable characters only, so nothing can end the comment."""
    return ["".join(ch if ch.isprintable() else "?" for ch in line).rstrip()
            for line in text.splitlines()]


def _safe_name(text: str) -> str:
    """A file name for the header comment and the docstring: no newline, quote or backslash can escape them."""
    return "".join(ch if ch.isprintable() and ch not in "\"'\\" else "?" for ch in text)


def _sweeps(full: Function, comments: bool, tables: dict):
    """``(names, primal_lines, adjoint_lines)`` of ``value_and_grad``'s body."""
    names = {id(v): v.name for v in full.inputs}
    if FUSE or any(s.op == "const" and isinstance(s.attr["value"], tuple) for s in full.stmts):
        # loops (fused elementwise statements, loops over tables) may hold statements of both sweeps
        cut: list = []
        lines = render_stmts(full.stmts, names, comments, tables, full.outputs, cut=cut)
        if cut:
            at, partly = cut
            return names, lines[:at], (["# (partly in the loops above, with the forward sweep)"] if partly
                                       else []) + lines[at:]
        return names, lines, ["# (in the loops above, with the forward sweep)"]
    cut = full.n_primal
    return (names, render_stmts(full.stmts[:cut], names, comments),
            render_stmts(full.stmts[cut:], names, comments))


def _tuple_text(items) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _split_bodies(forward: Function, full: Function, parts, comments: bool, tables: dict, model_name: str):
    """The module's pieces when a large sum is split (:func:`gradc.passes.split`): ``parts``
    holds ``(forward, full, first, count)`` per part, each rendered as two jitted helpers,
    ``_part_<k>_forward`` (its value) and ``_part_<k>`` (value and gradients, its own forward
    and adjoint sweeps); ``forward``, ``value_and_grad`` and ``value_and_grad_into`` call
    them and add up their values and gradients. ``forward``/``full``
    (the unsplit forward function and any forward + adjoint function with the same arguments)
    give the names of the arguments, the output and the gradients.

    Returns ``(blocks, forward_lines, primal_lines, vg_return, into, into_primal_lines)``.
    """
    args = ", ".join(v.name for v in full.inputs)
    value = forward.outputs[0].name
    taken = {v.name for v in full.inputs} | {value}
    grads = []                                   # the gradients' names in the calling functions
    for v in full.wrt:
        name = f"{v.name}_bar"
        while name in taken:
            name += "_"
        taken.add(name)
        grads.append(name)
    total = sum(p[3] for p in parts)
    blocks, forward_lines, lines = [], [], []
    for k, (fwd, fl, first, count) in enumerate(parts):
        fnames = {id(v): v.name for v in fwd.inputs}
        flines = render_stmts(fwd.stmts, fnames, comments, tables, fwd.outputs)
        names, primal_lines, adjoint_lines = _sweeps(fl, comments, tables)
        blocks.append(dict(
            name=f"_part_{k}",
            doc=docstring_text(f"Part {k + 1} of {len(parts)} of {model_name} (summands {first + 1} to "
                               f"{first + count} of the {total} of its top-level sum)", multiline=False),
            forward_lines=flines, forward_return=fnames[id(fwd.outputs[0])],
            primal_lines=primal_lines, adjoint_lines=adjoint_lines,
            vg_return=f"{names[id(fl.outputs[0])]}, {_tuple_text([names[id(g)] for g in fl.outputs[1:]])}"))
        if k == 0:
            forward_lines.append(f"{value} = _part_0_forward({args})")
            lines.append(f"{value}, _grad0 = _part_0({args})")
            lines += [f"{g} = _grad0[{i}]" for i, g in enumerate(grads)]
        else:
            forward_lines.append(f"{value} += _part_{k}_forward({args})")
            lines.append(f"_value{k}, _grad{k} = _part_{k}({args})")
            lines.append(f"{value} += _value{k}")
            lines += [f"{g} = {g} + _grad{k}[{i}]" for i, g in enumerate(grads)]
    # value_and_grad_into: the same calls, then the array gradients copied into the output arrays
    main = Function(full.name, list(full.inputs) + [Value(n, "f64", ()) for n in [value] + grads],
                    [], [Value(value, "f64", ())] + [Value(g, v.dtype, v.shape) for g, v in zip(grads, full.wrt)],
                    list(full.wrt), True, full.source_name)
    into = into_parts(main, {id(v): v.name for v in main.outputs}, [])
    return blocks, forward_lines, lines, f"{value}, {_tuple_text(grads)}", into, lines


def render_module(forward: Function, full: Function | None, *, version: str, source_text: str,
                  source_name: str, source_hash: str, model_name: str, params: dict,
                  roles: dict[str, str], comments: bool = True, description: str = "",
                  parts=()) -> str:
    """Render the generated module's text (see ``templates/module.py.j2``), sealed
    with its content hash on the second line.

    ``comments=False`` leaves the statements' rule comments out; ``description``
    (free text) goes into the module docstring, escaped. ``parts`` (from
    :func:`gradc.pipeline.build`, see :attr:`gradc.pipeline.Artifact.parts`): a large sum
    split into parts, rendered by :func:`_split_bodies`; ``full`` is then not needed (None).
    """
    from gradc.runtime.loader import seal

    tables: dict = {}
    ref = full if full is not None else parts[0][1]          # the arguments, wrt, label classes
    fulls = [full] if full is not None else [part[1] for part in parts]
    fns = [forward] + fulls + [part[0] for part in parts]
    if parts:
        blocks, forward_lines, primal_lines, vg_return, into, into_primal = _split_bodies(
            forward, ref, parts, comments, tables, model_name)
        adjoint_lines = []
        forward_return = forward.outputs[0].name
    else:
        blocks = []
        fwd_names = {id(v): v.name for v in forward.inputs}
        forward_lines = render_stmts(forward.stmts, fwd_names, comments, tables, forward.outputs)
        forward_return = fwd_names[id(forward.outputs[0])]
        names, primal_lines, adjoint_lines = _sweeps(full, comments, tables)
        vg_return = f"{names[id(full.outputs[0])]}, {_tuple_text([names[id(g)] for g in full.outputs[1:]])}"
        # value_and_grad_into repeats the sweeps without the rules' notes (value_and_grad has them)
        into_names, into_primal, into_adjoint = _sweeps(full, False, tables)
        into = into_parts(full, into_names, into_adjoint)
    out = forward.outputs[0]
    return seal(environment().get_template("module.py.j2").render(
        version=version,
        description=docstring_text(description),
        source_name=_safe_name(source_name),
        source_hash=source_hash,
        source_lines=_safe_lines(source_text),
        model_name=model_name,
        arg_names=tuple(v.name for v in ref.inputs),
        shapes={v.name: v.shape for v in ref.inputs},
        dtypes={v.name: DTYPE_NAMES[v.dtype] for v in ref.inputs},
        wrt_names=tuple(v.name for v in ref.wrt),
        output_name=out.name,
        params=params,
        classes={k: v for f in fulls for k, v in label_classes(f).items()},
        helpers=_helpers(fns, "\n".join(forward_lines + primal_lines + adjoint_lines + [
            line for b in blocks for line in b["forward_lines"] + b["primal_lines"] + b["adjoint_lines"]]))
        + table_lines(tables),
        parts=blocks,
        arg_docs=[_doc(v, roles.get(v.name, "")) for v in ref.inputs],
        output_doc=_doc(out),
        forward_lines=forward_lines,
        forward_return=forward_return,
        primal_lines=primal_lines,
        adjoint_lines=adjoint_lines,
        vg_return=vg_return,
        into=into,
        into_primal_lines=into_primal,
    ))
