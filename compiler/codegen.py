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
    element of an elementwise statement (every rank taken as 0), for a loop body."""
    macro = getattr(_family(OPS[s.op].family), s.op)
    dtype = s.out.dtype if s.out.dtype in ("f64", "f32") else \
        ("f32" if any(a.dtype == "f32" for a in s.args) else "f64")
    attrs = {k: v for k, v in s.attrs if k != "dtype"}
    o = SimpleNamespace(rank=0 if scalar else s.out.rank,
                        arg_ranks=[0 if scalar else a.rank for a in s.args],
                        arg_dtypes=[a.dtype for a in s.args], dtype=dtype,
                        lit=_LIT[dtype], cast=_CAST[dtype], **attrs)
    return str(macro(o, *args)).strip()


def _line(s, expr: str, comments: bool, target: str | None = None) -> str:
    line = f"{target or s.out.name} = {expr}"
    return line + f"  # {s.note}" if s.note and comments else line


def table_name(values: tuple, tables: dict) -> str:
    """The module-level name of a constant table (``_TABLE0``, ...), numbered by first use."""
    return tables.setdefault(values, f"_TABLE{len(tables)}")


#: Elementwise ops a loop over a table renders one element at a time (their rank-0 template
#: is scalar code); ``sum``/``sum_to`` of such a loop's value accumulate in the loop.
LOOP_OPS = frozenset({"alias", "add", "sub", "mul", "div", "neg", "powc", "pow", "exp", "log", "sqrt", "sin",
                      "cos", "tan", "tanh", "sigmoid", "relu", "abs", "sign", "maximum", "minimum",
                      "leaky_relu", "elu", "softplus", "log_sigmoid", "lt", "le", "gt", "ge",
                      "logical_and", "logical_or", "logical_not", "where", "expand"})


def _loop_kind(s, lengths) -> str | None:
    """``"elem"`` if ``s`` is an elementwise statement over a table length, ``"reduce"`` if it
    sums such a value to a scalar, else None."""
    if s.op in ("sum", "sum_to") and not s.out.shape and len(s.args) == 1 and s.args[0].rank == 1 \
            and s.args[0].shape[0] in lengths and s.attr.get("axis") is None:
        return "reduce"
    if s.op not in LOOP_OPS or s.out.rank != 1 or s.out.shape[0] not in lengths:
        return None
    if s.op == "expand" and (s.args[0].shape or s.attr.get("axis") is not None):
        return None
    if s.out.dtype not in ("f64", "f32", "bool"):
        return None
    if any(a.shape not in ((), s.out.shape) for a in s.args):
        return None
    return "elem"


def _schedule(stmts, lengths):
    """Group the loop statements (see :func:`_loop_kind`) into loops: ``[("stmt", s) |
    ("loop", n, [s, ...])]`` in an order that respects every dependence. While a loop is
    gathered, a statement that does not need it moves ahead of it, one that needs it
    (or needs such a statement) moves after it, and a loop statement that needs one of
    those, or one of the loop's own sums, closes it; so the adjoint statements of a
    re-rolled sum join the loop of its forward statements."""
    out, pre, post, loop = [], [], [], None     # loop: (n, stmts, defined ids, ids it must not use)

    def close():
        nonlocal loop, pre, post
        out.extend(pre)
        if loop is not None:
            out.append(("loop", loop[0], loop[1]))
        out.extend(post)
        pre, post, loop = [], [], None

    for s in stmts:
        kind = _loop_kind(s, lengths) if s.op != "const" else None
        n = (s.args[0] if kind == "reduce" else s.out).shape[0] if kind else None
        if kind:
            if loop is not None and (loop[0] != n or any(id(a) in loop[3] for a in s.args)):
                close()
            if loop is None:
                loop = (n, [], set(), set())
            loop[1].append(s)
            loop[2].add(id(s.out))
            if kind == "reduce":
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


def render_stmts(stmts, names: dict[int, str], comments: bool = True, tables: dict | None = None,
                 outputs=()) -> list[str]:
    """One line per statement (``h = np.tanh(h_2)  # note``); fills ``names``.

    ``comments=False`` leaves out the notes (the adjoint rules' comments). A constant
    table (a ``const`` holding a tuple, from :func:`gradc.passes.reroll`) is a module-level
    array named in ``tables`` (values -> name; without ``tables``, an inline ``np.array``
    and no loops); the elementwise statements over a table's
    length render as one ``for`` loop computing one element at a time, with their sums
    accumulated in it; values of the loop used after it (or among ``outputs``) are stored
    in arrays named ``_a_<name>``.
    """
    lengths = set()
    for s in stmts:
        if tables is not None and s.op == "const" and isinstance(s.attr["value"], tuple):
            lengths.add(len(s.attr["value"]))
    plan = _schedule(stmts, lengths) if lengths else [("stmt", s) for s in stmts]
    # values of a loop needed outside it: stored in arrays
    owner: dict[int, int] = {}
    for k, item in enumerate(plan):
        if item[0] == "loop":
            owner.update((id(s.out), k) for s in item[2] if s.out.shape)
    stored: set[int] = {id(v) for v in outputs if id(v) in owner}
    for k, item in enumerate(plan):
        for s in ([item[1]] if item[0] == "stmt" else item[2]):
            stored.update(id(a) for a in s.args if owner.get(id(a), k) != k)
    lines = []
    for item in plan:
        if item[0] == "stmt":
            s = item[1]
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
            continue
        _, n, body = item
        inside = {id(s.out) for s in body}
        for s in body:
            if id(s.out) in stored:
                dt = "" if s.out.dtype == "f64" else (", np.float32" if s.out.dtype == "f32" else ", np.bool_")
                lines.append(f"_a_{s.out.name} = np.empty({n}{dt})")
            elif not s.out.shape:
                lines.append(f"{s.out.name} = {_LIT[s.out.dtype if s.out.dtype == 'f32' else 'f64'](0.0)}")
        lines.append(f"for _i in range({n}):")
        for s in body:
            args = [names[id(a)] if id(a) in inside or not a.shape else f"{names[id(a)]}[_i]" for a in s.args]
            if not s.out.shape:                             # a sum: accumulate
                lines.append("    " + _line(s, args[0], comments).replace(" = ", " += ", 1))
                continue
            if s.op == "expand" and id(s.out) not in stored:
                names[id(s.out)] = args[0]
                continue
            expr = args[0] if s.op == "expand" else _expr(s, args, scalar=True)
            lines.append("    " + _line(s, expr, comments))
            names[id(s.out)] = s.out.name
            if id(s.out) in stored:
                lines.append(f"    _a_{s.out.name}[_i] = {s.out.name}")
        for s in body:
            if id(s.out) in stored:
                names[id(s.out)] = f"_a_{s.out.name}"
            elif not s.out.shape:
                names[id(s.out)] = s.out.name
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
    if any(s.op == "const" and isinstance(s.attr["value"], tuple) for s in full.stmts):
        # loops over tables may hold statements of both sweeps
        lines = render_stmts(full.stmts, names, comments, tables, full.outputs)
        return names, lines, ["# (in the loops above, with the forward sweep)"]
    cut = full.n_primal
    return (names, render_stmts(full.stmts[:cut], names, comments),
            render_stmts(full.stmts[cut:], names, comments))


def render_module(forward: Function, full: Function, *, version: str, source_text: str,
                  source_name: str, source_hash: str, model_name: str, params: dict,
                  roles: dict[str, str], comments: bool = True, description: str = "") -> str:
    """Render the generated module's text (see ``templates/module.py.j2``), sealed
    with its content hash on the second line.

    ``comments=False`` leaves the statements' rule comments out; ``description``
    (free text) goes into the module docstring, escaped.
    """
    from gradc.runtime.loader import seal

    tables: dict = {}
    fwd_names = {id(v): v.name for v in forward.inputs}
    forward_lines = render_stmts(forward.stmts, fwd_names, comments, tables, forward.outputs)
    names, primal_lines, adjoint_lines = _sweeps(full, comments, tables)
    grads = [names[id(g)] for g in full.outputs[1:]]
    grads_txt = "(" + ", ".join(grads) + ("," if len(grads) == 1 else "") + ")"
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
        arg_names=tuple(v.name for v in full.inputs),
        shapes={v.name: v.shape for v in full.inputs},
        dtypes={v.name: DTYPE_NAMES[v.dtype] for v in full.inputs},
        wrt_names=tuple(v.name for v in full.wrt),
        output_name=out.name,
        params=params,
        classes=label_classes(full),
        helpers=_helpers([forward, full], "\n".join(forward_lines + primal_lines + adjoint_lines))
        + table_lines(tables),
        arg_docs=[_doc(v, roles.get(v.name, "")) for v in full.inputs],
        output_doc=_doc(out),
        forward_lines=forward_lines,
        forward_return=fwd_names[id(out)],
        primal_lines=primal_lines,
        adjoint_lines=adjoint_lines,
        vg_return=f"{names[id(full.outputs[0])]}, {grads_txt}",
        into=into,
        into_primal_lines=into_primal,
    ))
