"""Assembly of the generated module: the sweeps printed into functions, the helpers they
call, the module frame (``templates/module.j2``), the content seal.

The module reads top to bottom like the lecture: ``_forward_sweep`` (the forward pass,
returning the value and what the adjoint sweep reads; inlined where it is called), ``forward``
(its value), ``value_and_grad`` (the forward sweep, then the adjoint sweep, writing the array
gradients into the output arrays it is given or allocates), ``value_and_grad_into`` (calls it
with the caller's output arrays). The forward sweep is written once (``forward`` gets a sweep
of its own only when the shared one would store arrays just for the adjoint sweep).

Every string from the source that reaches the module is made harmless here: names are
identifiers (checked by the frontends), the source text and file name become comment
lines of printable characters (:func:`safe_lines`, :func:`safe_name`), and free text
(the ``[model] description``, ``doc`` entries) is escaped inside the docstrings
(:func:`docstring_text`). The second line of the module is a content hash over the rest
(:func:`seal`), so a truncated or modified file is detected; it also keeps the source
file name off the first two lines, where Python would read a ``coding:`` declaration.
"""
from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import replace

from ..ir import DTYPE_NAMES, Function, Value
from ..ops import OPS
from ..options import Options
from . import checks  # [call-safety] the entry points' argument checks, gradc's call functions
from . import derivatives
from .emit import const_name, copy_lines, environment, family, known_dims, table_lines, tuple_text
from .memory import plan_memory
from .schedule import Loop, loop_reads, schedule
from .sweep import _fresh_names, _Function, print_sweep

CONTENT = "# content sha256: "


def seal(text: str) -> str:
    """``text`` with the content-hash line inserted after its first line: the SHA-256 of the
    file's UTF-8 bytes without that line (checked by :func:`gradc.runtime.loader.content_status`)."""
    first, _, rest = text.partition("\n")
    digest = hashlib.sha256(f"{first}\n{rest}".encode("utf-8")).hexdigest()
    return f"{first}\n{CONTENT}{digest}\n{rest}"


# ---------------------------------------------------------------- text safety
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


def safe_lines(text: str) -> list[str]:
    """Source text as comment lines: printable characters only, so nothing can end the comment."""
    return ["".join(ch if ch.isprintable() else "?" for ch in line).rstrip() for line in text.splitlines()]


def safe_name(text: str) -> str:
    """A file name for the header comment and the docstring: no newline, quote or backslash can escape them."""
    return "".join(ch if ch.isprintable() and ch not in "\"'\\" else "?" for ch in text)


def _doc(v: Value, role: str = "") -> str:
    shape = "scalar" if not v.shape else "[" + ", ".join(map(str, v.shape)) + "]"
    return docstring_text(f"{v.name}: {DTYPE_NAMES[v.dtype]} {shape}{role}", multiline=False)


# ---------------------------------------------------------------- helpers
def _helper_texts(fns) -> list[str]:
    """The ``helper_<name>`` macros of the ops in ``fns``, in first-use order."""
    seen: list[tuple[str, str]] = []
    for fn in fns:
        for s in fn.stmts:
            for h in OPS[s.op].helpers:
                if (OPS[s.op].family, h) not in seen:
                    seen.append((OPS[s.op].family, h))
    return [str(getattr(family(fam), f"helper_{h}")()).strip("\n") for fam, h in seen]


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def helpers(fns, code: str) -> list[str]:
    """The helper definitions ``code`` calls, with the ones they call, in template order.

    Each helper macro may define several functions (``helper_vmath``: the kernels and the
    element functions); they are split into top-level definitions with :mod:`ast` and only
    those reachable from a name in ``code`` are kept.
    """
    blocks = []                      # (defined name, text, names it uses)
    for text in _helper_texts(fns):
        lines = text.splitlines()
        tree = ast.parse(text)
        for node in tree.body:
            start = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno]) - 1
            while start > 0 and lines[start - 1].startswith("#"):
                start -= 1
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [(a.asname or a.name).split(".")[0] for a in node.names]
            elif hasattr(node, "name"):
                names = [node.name]
            else:
                names = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
            uses = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            blocks.append((names, "\n".join(lines[start:node.end_lineno]), uses))
    defined = {n: i for i, (names, _, _) in enumerate(blocks) for n in names}
    todo = [defined[n] for n in set(_IDENT.findall(code)) if n in defined]
    keep: set[int] = set()
    while todo:
        i = todo.pop()
        if i not in keep:
            keep.add(i)
            todo += [defined[n] for n in blocks[i][2] if n in defined]
    return [blocks[i][1] for i in sorted(keep)]


def label_classes(fn: Function) -> dict:
    """Number of classes of each int64 label argument, from the ops that use it (``CLASSES``):
    a label indexes the second axis of the op's first operand."""
    return {s.args[1].name: s.args[0].shape[1] for s in fn.stmts
            if len(s.args) > 1 and s.args[1].dtype == "i64" and s.args[0].rank == 2
            and any(s.args[1] is v for v in fn.inputs)}


# ---------------------------------------------------------------- sweeps
def _cheap(s) -> bool:
    """An elementwise array statement a loop computes without a kernel or C-library call."""
    op = OPS[s.op]
    return op.loop is True and bool(s.out.shape) and not op.kernel \
        and not (op.scalar_call is not None and op.scalar_call(s))


def rematerialize(primal, adjoint, outputs, stored=frozenset()):
    """Split the values the adjoint sweep reads into those the forward sweep returns (``saved``)
    and those it recomputes: a cheap elementwise array value (:func:`_cheap`) is recomputed in
    the adjoint sweep, in its loops, rather than stored in an array by the forward sweep and
    loaded again (a store, a load and an allocation against a few arithmetic operations;
    transcendental results stay saved). Returns ``(primal, adjoint, saved)``: the adjoint
    statements with the recomputed ones first, in forward order. Only values the forward sweep
    does not store anyway (``stored``: ids) and that only loop statements of the adjoint sweep
    read are recomputed."""
    defined = {id(s.out) for s in primal if s.op != "const"}
    adjoint = _shape_donors(primal, adjoint, outputs, defined)
    need = {id(a) for s in adjoint for a in s.args if id(a) in defined}
    need |= {id(v) for v in outputs[1:] if id(v) in defined}
    whole = {id(a) for s in adjoint if OPS[s.op].loop is not True for a in s.args}
    remat = []
    for s in reversed(primal):
        if id(s.out) in need and _cheap(s) and id(s.out) not in stored and id(s.out) not in whole:
            remat.append(s)
            need.discard(id(s.out))
            need |= {id(a) for a in s.args if id(a) in defined}
    saved = [s.out for s in primal if id(s.out) in need and s.out is not outputs[0]]
    return primal, remat[::-1] + adjoint, saved


def _shape_donors(primal, adjoint, outputs, defined):
    """The adjoint statements with each broadcast's shape operand (``expand(g, like)`` reads only
    ``like``'s shape) replaced by an argument of the same type when ``like`` is a forward value
    read for nothing else: the forward sweep need not keep that array for its shape."""
    readers: dict[int, list] = {}
    for s in adjoint:
        for k, a in enumerate(s.args):
            readers.setdefault(id(a), []).append((s, k))
    # arrays the adjoint sweep has anyway: arguments, and forward values it reads that no loop computes
    read = {id(a) for s in adjoint for k, a in enumerate(s.args) if not (OPS[s.op].loop == "broadcast" and k == 1)}
    donors = [a for s in primal for a in s.args if id(a) not in defined and a.shape] + \
        [s.out for s in primal if id(s.out) in read and s.out.shape and not OPS[s.op].loop]
    out = []
    for s in adjoint:
        if OPS[s.op].loop == "broadcast" and len(s.args) == 2 and id(s.args[1]) in defined \
                and all(OPS[r.op].loop == "broadcast" and k == 1 for r, k in readers[id(s.args[1])]) \
                and all(s.args[1] is not v for v in outputs):
            like = s.args[1]
            donor = next((v for v in donors if v.shape == like.shape and v.dtype == like.dtype), None)
            if donor is not None:
                s = replace(s, args=(s.args[0], donor))
        out.append(s)
    return out


def _forward_doc(forward: Function, out_doc: str) -> list[str]:
    if len(forward.outputs) == 1:
        return [f"The value {out_doc} (the arguments: see the module's docstring)."]
    return [f"The outputs ({', '.join(v.name for v in forward.outputs)}) (the arguments: see the module's docstring):"] \
        + ["    " + _doc(v) for v in forward.outputs]


def _own_forward(forward: Function, opts: Options, tables: dict, doc: list[str]) -> _Function:
    """``forward``: a sweep of its own, returning the outputs (a tuple when there are several)."""
    names = {id(v): v.name for v in forward.inputs}
    lines, _, _ = print_sweep(forward.stmts, list(forward.inputs), names, forward.outputs, opts, tables)
    return _Function("forward", [v.name for v in forward.inputs], doc,
                     lines + [f"return {', '.join(names[id(v)] for v in forward.outputs)}"])


def _shares_elements(item) -> bool:
    """A loop in which an adjoint statement reads a forward value computed in the same loop."""
    if not isinstance(item, Loop):
        return False
    primal = {id(s.out) for s in item.body if not s.adjoint}
    return any(id(a) in primal for s in item.body if s.adjoint for a in loop_reads(s))


def _functions(forward: Function, full: Function, opts: Options, tables: dict, model: str, arg_docs,
               out_doc) -> list[_Function]:
    """``_forward_sweep``, ``forward``, ``value_and_grad`` and ``value_and_grad_into`` (when a
    gradient is an array) of an unsplit differentiated function ``full``."""
    args = [v.name for v in full.inputs]
    primal = [s for s in full.stmts if not s.adjoint]
    adjoint = [s for s in full.stmts if s.adjoint]
    value, grads = full.outputs[0], full.outputs[1:]
    known = set(known_dims(full.inputs, {id(v): v.name for v in full.inputs}))
    fwd_doc = _forward_doc(forward, out_doc)
    taken = set(args) | {s.out.name for s in full.stmts} | {"_forward_sweep"}
    array_grads = [(w, g) for w, g in zip(full.wrt, grads) if w.shape]
    outs = _fresh_names([f"{w.name}_out" for w, _ in array_grads], taken)

    def own_forward(note: str) -> _Function:
        return _own_forward(forward, opts, tables, fwd_doc + ["", note])

    if len(forward.outputs) > 1 or any(_shares_elements(item) for item in schedule(full.stmts, full.outputs, fuse=opts.fuse, known_dims=known)):
        # a loop can compute adjoint statements from the forward values of the same element (a
        # re-rolled sum and its adjoint, Rosenbrock's terms and their scatters): one fused sweep,
        # each element computed once (measured: Rosenbrock n=1,000 3.7 us in two sweeps, 2.2 fused)
        def core(targets: dict) -> tuple[list[str], dict]:
            names = {id(v): v.name for v in full.inputs}
            lines, _, _ = print_sweep(full.stmts, list(full.inputs), names, [value] + grads, opts, tables,
                                      targets=targets)
            return ["# ---- forward and adjoint sweeps, fused: a loop may hold statements of both ----"] \
                + lines, names
        fns = [own_forward("Its own sweep: value_and_grad fuses the forward sweep with the adjoint sweep."
                           if len(forward.outputs) == 1 else "Its own sweep: it returns more than the value.")]
    else:
        alone = plan_memory(schedule(primal, [value], fuse=opts.fuse, known_dims=known), [value], given=full.inputs)
        primal, adjoint, saved = rematerialize(primal, adjoint, [value] + grads, alone.stored)
        # ---- the forward sweep: the value and what the adjoint sweep reads
        names = {id(v): v.name for v in full.inputs}
        fwd_lines, owned, stored = print_sweep(primal, list(full.inputs), names, [value] + saved, opts, tables)
        returned = [names[id(v)] for v in [value] + saved]
        sweep = _Function("_forward_sweep", args, f"The forward sweep of {model}: its value"
                          + (", then the values the adjoint sweep reads." if saved else ".")
                          + " Inlined where it is called.",
                          fwd_lines + [f"return {tuple_text(returned) if saved else returned[0]}"], inline=True)
        if stored - alone.stored:
            # the shared sweep stores loop values in arrays only for the adjoint sweep: forward computes
            # its value without them (its own sweep; a second compile, measured faster)
            fwd = own_forward("Its own sweep: _forward_sweep also stores values for the adjoint sweep.")
        else:
            fwd = _Function("forward", args, fwd_doc,
                            [f"return _forward_sweep({', '.join(args)}){'[0]' if saved else ''}"])

        # ---- the adjoint sweep, after the forward sweep's values
        def core(targets: dict) -> tuple[list[str], dict]:
            names = {id(v): v.name for v in full.inputs}
            names.update((id(s.out), const_name(s, tables)) for s in primal if s.op == "const")
            names.update((id(v), v.name) for v in [value] + saved)
            head = [f"{', '.join([value.name] + [v.name for v in saved])} = _forward_sweep({', '.join(args)})"]
            consts = [s.out for s in primal if s.op == "const"]
            lines, _, _ = print_sweep(adjoint, list(full.inputs) + saved + consts, names, grads, opts, tables,
                                      owned=[v for v in saved if id(v) in owned], targets=targets)
            return head + ["# ---- adjoint sweep ----"] + lines, names
        fns = [sweep, fwd]
    scalar_grads = [g for w, g in zip(full.wrt, grads) if not w.shape]
    vg_doc = [f"(value, grads): the value and its gradients w.r.t. ({', '.join(w.name for w in full.wrt)}),",
              "each shaped like its argument."]
    if not array_grads:
        lines, names = core({})
        fns.append(_Function("value_and_grad", args, vg_doc,
                             lines + [f"return {value.name}, {tuple_text([names[id(g)] for g in grads])}"]))
        return fns
    # the array gradients go into output arrays: given (by value_and_grad_into) or allocated here
    # the arrays the gradients go into: new ones, or the output arrays given (a variable of its own, not
    # the parameter: reassigning a None parameter makes Numba type it as optional, checked on every use)
    grad_arrays = _fresh_names([f"{w.name}_grad" for w, _ in array_grads], taken | set(outs))
    # (a gradient of another dtype than its argument, e.g. of a float32 argument in a float64 product,
    # is computed in its own array and cast by the copy: np.dot cannot write into another dtype)
    targets = {id(g): a for (w, g), a in zip(array_grads, grad_arrays) if g.dtype == w.dtype}
    lines, names = core(targets)
    for (w, g), a in zip(array_grads, grad_arrays):         # what was not computed in place: copied in
        if names[id(g)] != a:
            lines += copy_lines(a, names[id(g)], g.rank)
            names[id(g)] = a
    alloc = [f"if {outs[0]} is None:"] + [f"    {a} = np.empty({w.name}.shape, {w.name}.dtype)"
                                          for (w, _), a in zip(array_grads, grad_arrays)] + [
        "else:", f"    _checked_out('value_and_grad', {', '.join([w.name for w, _ in array_grads] + outs)})"] + [
        f"    {a} = {o}" for a, o in zip(grad_arrays, outs)]
    fns.append(_Function("value_and_grad", args + [f"{o}=None" for o in outs], vg_doc + [
        f"{', '.join(outs)}: output arrays for the array gradients (all or none; C-contiguous, shaped and",
        "typed like their arguments, sharing no memory with any argument), or None: new arrays."],
        alloc + lines + [f"return {value.name}, {tuple_text([names[id(g)] for g in grads])}"]))
    grads_of = "value_and_grad(" + ", ".join(args + outs) + ")"
    ret = f"{grads_of}[0]" if not scalar_grads else \
        f"{value.name}, {tuple_text([f'grads[{k}]' for k, w in enumerate(full.wrt) if not w.shape])}"
    fns.append(_Function(
        "value_and_grad_into", args + outs,
        [f"value_and_grad writing the array gradients into the output arrays {', '.join(outs)};",
         "returns the value" + (" and a tuple of the gradients w.r.t. the scalar arguments." if scalar_grads
                                else ".")],
        ([f"{value.name}, grads = {grads_of}"] if scalar_grads else []) + [f"return {ret}"]))
    return fns


def _split_functions(forward: Function, ref: Function, parts, opts: Options, tables: dict, model: str,
                     arg_docs, out_doc) -> list[_Function]:
    """The module's functions when a large sum is split (:func:`gradc.passes.split.split`): ``parts``
    holds ``(forward, full, first, count)`` per part, each rendered as two jitted helpers,
    ``_part_<k>_forward`` (its value) and ``_part_<k>`` (value and gradients: its own forward and
    adjoint sweeps, fused); ``forward``, ``value_and_grad`` and ``value_and_grad_into`` call them
    and add up their values and gradients."""
    args = [v.name for v in ref.inputs]
    value = forward.outputs[0].name
    grads = _fresh_names([f"{w.name}_bar" for w in ref.wrt], set(args) | {value})
    total = sum(p[3] for p in parts)
    fns, fwd_lines, vg_lines = [], [], []
    for k, (fwd, full, first, count) in enumerate(parts):
        doc = docstring_text(f"Part {k + 1} of {len(parts)} of {model} (summands {first + 1} to "
                             f"{first + count} of the {total} of its top-level sum)", multiline=False)
        names = {id(v): v.name for v in fwd.inputs}
        lines, _, _ = print_sweep(fwd.stmts, list(fwd.inputs), names, fwd.outputs, opts, tables)
        fns.append(_Function(f"_part_{k}_forward", args, [f"{doc}: its value."],
                             lines + [f"return {names[id(fwd.outputs[0])]}"]))
        names = {id(v): v.name for v in full.inputs}
        lines, _, _ = print_sweep(full.stmts, list(full.inputs), names, full.outputs, opts, tables)
        ret = f"{names[id(full.outputs[0])]}, {tuple_text([names[id(g)] for g in full.outputs[1:]])}"
        fns.append(_Function(f"_part_{k}", args, [f"{doc}: its value and gradients w.r.t. "
                                                 f"({', '.join(w.name for w in ref.wrt)})."],
                             lines + [f"return {ret}"]))
        if k == 0:
            fwd_lines.append(f"{value} = _part_0_forward({', '.join(args)})")
            vg_lines.append(f"{value}, _grad0 = _part_0({', '.join(args)})")
            vg_lines += [f"{g} = _grad0[{i}]" for i, g in enumerate(grads)]
        else:
            fwd_lines.append(f"{value} += _part_{k}_forward({', '.join(args)})")
            vg_lines.append(f"_value{k}, _grad{k} = _part_{k}({', '.join(args)})")
            vg_lines.append(f"{value} += _value{k}")
            vg_lines += [f"{g} = {g} + _grad{k}[{i}]" for i, g in enumerate(grads)]
    note = f"# the sum in {len(parts)} parts: each _part_<k> runs its own forward and adjoint sweeps"
    fns.append(_Function("forward", args, [f"The value {out_doc} (the arguments: see the module's docstring)."],
                         fwd_lines + [f"return {value}"]))
    fns.append(_Function("value_and_grad", args, [f"(value, grads): the value and its gradients w.r.t. "
                                                  f"({', '.join(w.name for w in ref.wrt)}).", ],
                         [note] + vg_lines + [f"return {value}, {tuple_text(grads)}"]))
    array = [(w, g) for w, g in zip(ref.wrt, grads) if w.shape]
    if array:
        outs = _fresh_names([f"{w.name}_out" for w, _ in array], set(args) | {value} | set(grads))
        scalars = [g for w, g in zip(ref.wrt, grads) if not w.shape]
        ret = value if not scalars else f"{value}, {tuple_text(scalars)}"
        fns.append(_Function("value_and_grad_into", args + outs,
                             [f"{model}: value_and_grad writing the array gradients into preallocated arrays "
                              "(see value_and_grad)."],
                             [note] + vg_lines + [line for (w, g), o in zip(array, outs)
                                                  for line in copy_lines(o, g, w.rank)]
                             + [f"return {ret}"]))
    return fns


def render_module(forward: Function, full: Function | None, *, version: str, source_text: str,
                  source_name: str, source_hash: str, model_name: str, params: dict,
                  roles: dict[str, str], description: str = "", parts=(), derived=(),
                  options: Options = Options()) -> str:
    """Render the generated module's text (see ``templates/module.j2``), sealed with its content
    hash on the second line.

    ``forward``: the optimized forward function (its ``wrt`` the module's); ``full``: forward +
    adjoint (None when ``parts``: a large sum split by :func:`gradc.pipeline.build`, see
    :attr:`gradc.pipeline.Artifact.parts`; None without ``value_and_grad``: a value that is not a
    float scalar); ``derived``: the other derivatives (:class:`gradc.ad.derivatives.Derivative`).
    ``options.comments=False`` leaves the rules' notes out; ``description`` (free text) goes into
    the module docstring, escaped. Deterministic: the text depends only on the arguments.
    """
    tables: dict = {}
    ref = full if full is not None else parts[0][1] if parts else forward    # arguments, wrt, label classes
    fulls = [full] if full is not None else [p[1] for p in parts]
    arg_docs = [_doc(v, roles.get(v.name, "")) for v in ref.inputs]
    out_doc = _doc(forward.outputs[0])
    if parts:
        fns = _split_functions(forward, ref, parts, options, tables, model_name, arg_docs, out_doc)
    elif full is not None:
        fns = _functions(forward, full, options, tables, model_name, arg_docs, out_doc)
    else:
        fns = [_own_forward(forward, options, tables, _forward_doc(forward, out_doc))]
    for d in derived:
        fns += derivatives.functions(d, options, tables, ref.inputs)
    # [call-safety] the argument checks first in each entry point; gradc's call functions last
    outs = [(o, w) for f in fns if f.name == "value_and_grad_into"
            for o, w in zip(f.params[len(ref.inputs):], [w for w in ref.wrt if w.shape])]
    seeded = {d.kind: d.seeds for d in derived if d.sweep is None}
    for f in fns:
        f.lines[:0] = checks.entry_lines(f.name, f.params, ref.inputs, outs, seeded.get(f.name, ()))
    fns += [_Function(*c, jit=False) for c in checks.calls(ref.inputs, gradient=any(f.name == "value_and_grad"
                                                                                   for f in fns))]
    code = "\n".join(line for f in fns for line in f.lines)
    used = [forward] + fulls + [p[0] for p in parts] + [d.fn for d in derived]
    return seal(environment().get_template("module.j2").render(
        version=version,
        description=docstring_text(description),
        source_name=safe_name(source_name),
        source_hash=source_hash,
        source_lines=safe_lines(source_text),
        model_name=model_name,
        arg_names=tuple(v.name for v in ref.inputs),
        shapes={v.name: v.shape for v in ref.inputs},
        dtypes={v.name: DTYPE_NAMES[v.dtype] for v in ref.inputs},
        wrt_names=tuple(v.name for v in ref.wrt),
        output_name=forward.outputs[0].name,
        params=params,
        classes={k: v for f in [forward] + fulls for k, v in label_classes(f).items()},
        output_names=tuple(v.name for v in forward.outputs),
        derivatives=(("grad",) if fulls else ()) + tuple(d.kind for d in derived),
        seeds={d.kind: tuple((v.name, v.shape, DTYPE_NAMES[v.dtype]) for v in d.seeds) for d in derived
               if d.sweep is None},
        helpers=helpers(used, code) + table_lines(tables) + checks.definitions(ref.inputs, outs, seeded),  # [call-safety]
        functions=fns,
        arg_docs=arg_docs,
        output_doc=out_doc,
    ))


__all__ = ["render_module", "seal", "docstring_text", "safe_name", "safe_lines", "helpers", "label_classes",
           "print_sweep"]
