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


def render_stmts(stmts, names: dict[int, str], comments: bool = True) -> list[str]:
    """One line per statement (``h = np.tanh(h_2)  # note``); fills ``names``.

    ``comments=False`` leaves out the notes (the adjoint rules' comments).
    """
    lines = []
    for s in stmts:
        if s.op == "const":
            names[id(s.out)] = literal(s.attr["value"], s.out.dtype)
            continue
        macro = getattr(_family(OPS[s.op].family), s.op)
        dtype = s.out.dtype if s.out.dtype in ("f64", "f32") else \
            ("f32" if any(a.dtype == "f32" for a in s.args) else "f64")
        attrs = {k: v for k, v in s.attrs if k != "dtype"}
        o = SimpleNamespace(rank=s.out.rank, arg_ranks=[a.rank for a in s.args],
                            arg_dtypes=[a.dtype for a in s.args], dtype=dtype,
                            lit=_LIT[dtype], cast=_CAST[dtype], **attrs)
        expr = str(macro(o, *(names[id(a)] for a in s.args))).strip()
        line = f"{s.out.name} = {expr}"
        if s.note and comments:
            line += f"  # {s.note}"
        lines.append(line)
        names[id(s.out)] = s.out.name
    return lines


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


def _helpers(fns) -> list[str]:
    seen: list[tuple[str, str]] = []
    for fn in fns:
        for s in fn.stmts:
            for h in OPS[s.op].helpers:
                if (OPS[s.op].family, h) not in seen:
                    seen.append((OPS[s.op].family, h))
    return [str(getattr(_family(fam), f"helper_{h}")()).strip("\n") for fam, h in seen]


def _safe_lines(text: str) -> list[str]:
    """Source text as comment lines: printable characters only, so nothing can end the comment."""
    return ["".join(ch if ch.isprintable() else "?" for ch in line).rstrip()
            for line in text.splitlines()]


def _safe_name(text: str) -> str:
    """A file name for the header comment and the docstring: no newline, quote or backslash can escape them."""
    return "".join(ch if ch.isprintable() and ch not in "\"'\\" else "?" for ch in text)


def render_module(forward: Function, full: Function, *, version: str, source_text: str,
                  source_name: str, source_hash: str, model_name: str, params: dict,
                  roles: dict[str, str], comments: bool = True, description: str = "") -> str:
    """Render the generated module's text (see ``templates/module.py.j2``), sealed
    with its content hash on the second line.

    ``comments=False`` leaves the statements' rule comments out; ``description``
    (free text) goes into the module docstring, escaped.
    """
    from gradc.runtime.loader import seal

    fwd_names = {id(v): v.name for v in forward.inputs}
    forward_lines = render_stmts(forward.stmts, fwd_names, comments)
    names = {id(v): v.name for v in full.inputs}
    cut = full.n_primal
    primal_lines = render_stmts(full.stmts[:cut], names, comments)
    adjoint_lines = render_stmts(full.stmts[cut:], names, comments)
    grads = [names[id(g)] for g in full.outputs[1:]]
    grads_txt = "(" + ", ".join(grads) + ("," if len(grads) == 1 else "") + ")"
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
        helpers=_helpers([forward, full]),
        arg_docs=[_doc(v, roles.get(v.name, "")) for v in full.inputs],
        output_doc=_doc(out),
        forward_lines=forward_lines,
        forward_return=fwd_names[id(out)],
        primal_lines=primal_lines,
        adjoint_lines=adjoint_lines,
        vg_return=f"{names[id(full.outputs[0])]}, {grads_txt}",
    ))
