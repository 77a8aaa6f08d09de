"""Code generation: IR → Python module text through the Jinja2 templates.

Each statement renders through the macro named like its op in
``templates/ops/<family>.j2``; constants are inlined as literals; the module
frame is ``templates/module.py.j2``. The output is deterministic: it depends
only on the IR, the source text and the gradc version.
"""
from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from types import SimpleNamespace

import jinja2

from .ir import Function, Value
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


def literal(x: float) -> str:
    """A Python literal for a float constant; negatives are parenthesised."""
    if math.isnan(x):
        return "np.nan"
    if math.isinf(x):
        return "np.inf" if x > 0 else "(-np.inf)"
    text = repr(float(x))
    return f"({text})" if x < 0 or text.startswith("-") else text


def render_stmts(stmts, names: dict[int, str], comments: bool = True) -> list[str]:
    """One line per statement (``h = np.tanh(h_2)  # note``); fills ``names``.

    ``comments=False`` leaves out the notes (the adjoint rules' comments).
    """
    lines = []
    for s in stmts:
        if s.op == "const":
            names[id(s.out)] = literal(s.attr["value"])
            continue
        macro = getattr(_family(OPS[s.op].family), s.op)
        o = SimpleNamespace(rank=s.out.rank, arg_ranks=[a.rank for a in s.args], **s.attr)
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
    dtype = {"f64": "float64", "i64": "int64", "bool": "bool"}[v.dtype]
    return f"{v.name}: {dtype} {shape}{role}"


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
                  roles: dict[str, str], comments: bool = True) -> str:
    """Render the generated module's text (see ``templates/module.py.j2``).

    ``comments=False`` leaves the statements' rule comments out.
    """
    fwd_names = {id(v): v.name for v in forward.inputs}
    forward_lines = render_stmts(forward.stmts, fwd_names, comments)
    names = {id(v): v.name for v in full.inputs}
    cut = full.n_primal
    primal_lines = render_stmts(full.stmts[:cut], names, comments)
    adjoint_lines = render_stmts(full.stmts[cut:], names, comments)
    grads = [names[id(g)] for g in full.outputs[1:]]
    grads_txt = "(" + ", ".join(grads) + ("," if len(grads) == 1 else "") + ")"
    out = forward.outputs[0]
    return environment().get_template("module.py.j2").render(
        version=version,
        source_name=_safe_name(source_name),
        source_hash=source_hash,
        source_lines=_safe_lines(source_text),
        model_name=model_name,
        arg_names=tuple(v.name for v in full.inputs),
        shapes={v.name: v.shape for v in full.inputs},
        dtypes={v.name: {"f64": "float64", "i64": "int64", "bool": "bool"}[v.dtype] for v in full.inputs},
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
    )
