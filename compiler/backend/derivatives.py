"""The entry points of the derivatives besides the gradient (:class:`gradc.ad.derivatives.Derivative`).

``jvp``, ``vjp`` and ``hvp`` are one fused sweep of their function, the seeds (tangents,
cotangents, ``v``) among the parameters. ``jacobian``, ``hessian`` and ``value_grad_hessian``
sweep the seeds themselves, inside the jitted function:

* the statements that do not depend on a seed (the forward sweep; for a Hessian also the adjoint
  sweep) run once, before the loop;
* ``for _k in range(_n):`` sets the ``_k``-th unit seed (a scalar seed to 1.0, or one element of
  a seed array), runs the statements that depend on the seeds, and writes the results, ravelled,
  into row ``_k`` of ``_M`` (``_n`` seeds by the results' total size); then resets the seed;
* the blocks of ``_M`` (transposed for forward-mode columns) are the result: for a Jacobian one
  array of shape ``output.shape + wrt.shape`` per wrt argument (a 2-D ``(m, n)`` array when the
  output is a vector and every wrt argument a scalar), for a Hessian the blocks
  ``H[i][j]`` of shape ``wrt_i.shape + wrt_j.shape`` (an ``(n, n)`` array when every wrt argument
  is a scalar).
"""
from __future__ import annotations

import math

from ..ad.derivatives import Derivative
from ..ir import Value
from ..options import Options
from .emit import known_dims, literal, tuple_text
from .sweep import _Function, print_sweep

_NP_DTYPE = {"f64": "np.float64", "f32": "np.float32"}


def _one(items: list[str]) -> str:
    return items[0] if len(items) == 1 else tuple_text(items)


def _sum(terms: list[str]) -> str:
    """``terms`` added up: a number when every term is one, else a parenthesised sum."""
    if all(t.isdigit() for t in terms):
        return str(sum(map(int, terms)))
    number = sum(int(t) for t in terms if t.isdigit())
    rest = [t for t in terms if not t.isdigit()] + ([str(number)] if number else [])
    return rest[0] if len(rest) == 1 else "(" + " + ".join(rest) + ")"


def _depends(fn, seeds: list[Value]) -> set[int]:
    """Ids of the values of ``fn`` that depend on a seed."""
    dep = {id(v) for v in seeds}
    for s in fn.stmts:
        if any(id(a) in dep for a in s.args):
            dep.add(id(s.out))
    return dep


DOCS = {
    "jvp": "(outputs, tangents): the outputs and their tangents for the tangents {seeds} of ({wrt}) (forward mode).",
    "vjp": "(outputs, cotangents): the outputs and the cotangents of ({wrt}) for the cotangents {seeds} "
           "of the outputs (reverse mode).",
    "hvp": "The Hessian-vector products H v, one per argument of ({wrt}), for v = {seeds} (forward over reverse).",
    "jacobian": "The Jacobian of {of} w.r.t. ({wrt}), {how}.",
    "hessian": "The Hessian of {of} w.r.t. ({wrt}), {how}.",
    "value_grad_hessian": "(value, grads, hessian): the value, its gradients w.r.t. ({wrt}) and its Hessian, {how}.",
}


def functions(d: Derivative, opts: Options, tables: dict, args: list[Value]) -> list[_Function]:
    """The entry point of ``d`` (its name is ``d.kind``); ``args`` are the module's arguments."""
    fn = d.fn
    arg_names = [v.name for v in args]
    fmt = dict(wrt=", ".join(w.name for w in d.wrt), seeds=", ".join(v.name for v in d.seeds),
               of=", ".join(o.name for o in d.of))
    names = {id(v): v.name for v in fn.inputs}
    if d.sweep is None:
        lines, _, _ = print_sweep(fn.stmts, list(fn.inputs), names, fn.outputs, opts, tables)
        outs = [names[id(v)] for v in fn.outputs]
        base, rest = outs[:d.n_base], outs[d.n_base:]
        ret = {"jvp": lambda: f"{_one(base)}, {_one(rest)}", "vjp": lambda: f"{_one(base)}, {tuple_text(rest)}",
               "hvp": lambda: tuple_text(rest)}[d.kind]()
        return [_Function(d.kind, arg_names + [v.name for v in d.seeds], [DOCS[d.kind].format(**fmt)],
                          lines + [f"return {ret}"])]
    return [_swept(d, opts, tables, args, names, fmt)]


def _swept(d: Derivative, opts: Options, tables: dict, args: list[Value], names: dict, fmt: dict) -> _Function:
    fn = d.fn
    known = known_dims(args, {id(v): v.name for v in args})

    def dims(shape) -> list[str]:
        return [str(x) if isinstance(x, int) else known[x] for x in shape]

    def size(shape) -> str:
        if all(isinstance(x, int) for x in shape):
            return str(math.prod(shape))
        return " * ".join(dims(shape))

    dep = _depends(fn, d.seeds)
    hoisted = [s for s in fn.stmts if id(s.out) not in dep]
    swept = [s for s in fn.stmts if id(s.out) in dep]
    read = {id(a) for s in swept for a in s.args}
    consts = [s for s in hoisted if s.op == "const" and id(s.out) in read]
    kept = [s.out for s in hoisted if s.op != "const" and id(s.out) in read]
    base = fn.outputs[:d.n_base]
    results = fn.outputs[d.n_base:]
    lines, _, _ = print_sweep(hoisted, list(args), names, base + kept, opts, tables)
    lines = ["# ---- once: what does not depend on the seed ----"] + lines
    body, _, _ = print_sweep(consts + swept, list(args) + kept + list(d.seeds), names, results, opts, tables)

    # the seeds: zero, one unit entry at a time
    seed_sizes = [size(v.shape) for v in d.seeds]
    result_sizes = [size(v.shape) for v in results]
    n_seed = _sum(seed_sizes)
    n_result = _sum(result_sizes)
    for v in d.seeds:
        if v.shape:
            lines += [f"{v.name} = np.zeros({tuple_text(dims(v.shape))}, {_NP_DTYPE[v.dtype]})",
                      f"_{v.name}_flat = {v.name}.reshape({size(v.shape)})"]
        else:
            lines.append(f"{v.name} = {literal(0.0, v.dtype)}")
    lines.append(f"_M = np.empty(({n_seed}, {n_result}), {_NP_DTYPE[results[0].dtype]})")

    def offsets(sizes):
        """The running sums of ``sizes`` (texts): numbers when they are, else parenthesised sums."""
        out, acc = [], []
        for n in sizes:
            out.append(_sum(acc))
            acc.append(n)
        return out + [_sum(acc)]

    seed_off, result_off = offsets(seed_sizes), offsets(result_sizes)

    def set_seed(value: float) -> list[str]:
        """Seed ``_k`` (of the seeds in order, each ravelled) set to ``value``."""
        out, last = [], len(d.seeds) - 1
        for i, (v, off) in enumerate(zip(d.seeds, seed_off)):
            target = (f"_{v.name}_flat[_k - {off}]" if off != "0" else f"_{v.name}_flat[_k]") if v.shape else v.name
            assign = f"{target} = {literal(value, v.dtype)}"
            if last == 0:
                return [assign]
            out += ["else:" if i == last else f"{'if' if i == 0 else 'elif'} _k < {seed_off[i + 1]}:", "    " + assign]
        return out

    loop = set_seed(1.0) + body
    for v, off, n in zip(results, result_off, result_sizes):
        if v.shape:      # element by element: a slice assignment costs Numba seconds of compile time
            loop += [f"_r = {names[id(v)]}.ravel()", f"for _j in range({n}):",
                     f"    _M[_k, {off} + _j] = _r[_j]" if off != "0" else "    _M[_k, _j] = _r[_j]"]
        else:
            loop.append(f"_M[_k, {off}] = {names[id(v)]}")
    loop += set_seed(0.0)
    lines += [f"# ---- the seeds: one unit {'tangent' if d.sweep == 'columns' else 'cotangent'} per step "
              f"({'a column' if d.sweep == 'columns' else 'a row'} of the Jacobian) ----",
              f"for _k in range({n_seed}):"] + ["    " + x for x in loop]

    # the result: blocks of J = _M.T (columns) or _M (rows), rows of J the results, columns the wrt
    rows, cols = (results, d.wrt) if d.sweep == "columns" else (d.seeds, d.wrt)
    row_off, col_off = (result_off, seed_off) if d.sweep == "columns" else (seed_off, result_off)
    J = "_M.T" if d.sweep == "columns" else "_M"

    def block(i, j) -> str:
        shape = rows[i].shape + cols[j].shape
        r = f"{row_off[i]}:{row_off[i + 1]}"
        c = f"{col_off[j]}:{col_off[j + 1]}"
        if not shape:
            return f"{J}[{row_off[i]}, {col_off[j]}]"
        return f"np.ascontiguousarray({J}[{r}, {c}]).reshape({tuple_text(dims(shape))})"

    scalar_wrt = all(not w.shape for w in d.wrt)
    if d.kind == "jacobian":
        how = ("by forward mode, one column per unit tangent (jacfwd)" if d.sweep == "columns"
               else "by reverse mode, one row per unit cotangent (jacrev)")
        of = d.of[0]
        if scalar_wrt and len(of.shape) == 1:
            ret = f"np.ascontiguousarray({J})"
            how += f"; an array [{', '.join(map(str, of.shape))}, {len(d.wrt)}]"
        else:
            ret = tuple_text([block(0, j) for j in range(len(d.wrt))])
            how += "; one array of shape output.shape + wrt.shape per wrt argument"
    else:
        how = "by forward over reverse, one Hessian-vector product per unit vector"
        if scalar_wrt:
            ret = f"np.ascontiguousarray({J})"
            how += f"; an array [{len(d.wrt)}, {len(d.wrt)}]"
        else:
            ret = tuple_text([tuple_text([block(i, j) for j in range(len(d.wrt))]) for i in range(len(d.wrt))])
            how += "; the blocks H[i][j] of shape wrt_i.shape + wrt_j.shape"
        if d.kind == "value_grad_hessian":
            ret = f"{names[id(base[0])]}, {tuple_text([names[id(g)] for g in base[1:]])}, {ret}"
    doc = DOCS[d.kind].format(how=how, **fmt)
    return _Function(d.kind, [v.name for v in args], [doc], lines + [f"return {ret}"])
