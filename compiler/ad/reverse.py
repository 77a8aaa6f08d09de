"""Reverse-mode automatic differentiation on the IR.

:func:`grad` appends the adjoint sweep to a primal function: it seeds the
output's adjoint (cotangent) with 1, walks the primal statements in reverse,
applies each op's adjoint (VJP) rule from the op table, and sums the
contributions where a value fans out to several uses. The result is one
function returning ``(value, (grad_1, ..., grad_n))`` in ``wrt`` order.

* Only values on a path from a ``wrt`` input to the output get adjoints.
* A contribution whose shape differs from its operand's (broadcasting) is
  summed back with ``sum_to``; this is the one generic step every rule shares.
* Adjoints are named ``<primal>_bar``; fan-out contributions ``<primal>_bar_<k>``.
* Masked select: the adjoint of ``where(c, a, b)`` sends ``where(c, g, 0)`` into
  branch ``a``. Inside a branch the same mask is re-applied to each adjoint an
  elementwise rule produces, so an inf/NaN derivative of the untaken branch
  (``where(x > 0, sqrt(x), 0)`` at x = 0) gives 0, not NaN. The mask goes
  through elementwise rules only, and is applied before a broadcast operand's
  ``sum_to``. JAX users write the "double where" by hand for this; here the
  compiler does it.
* Each contribution's defining statement carries the op's note (its rule in
  words; see :func:`note_of`) as a comment.
* ``record``: pass a list and :func:`grad` appends one :class:`Step` per primal
  statement it differentiates (in reverse order): the cotangent that arrived at
  the statement and the contribution sent to each operand. ``gradc explain``
  and ``gradc show --stage graph`` read it (before any optimization pass, so
  all these values still exist).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ShapeError
from ..ir import FLOATS, Builder, Function, Namer, Stmt, Value
from ..ops import OPS


@dataclass(eq=False)
class Step:
    """The adjoint sweep at one primal statement.

    ``upstream`` is the adjoint (cotangent) of ``stmt.out``, the sum of
    ``fan_in`` contributions; ``contribs[i]`` is the contribution sent to
    ``stmt.args[i]`` (after any mask and ``sum_to``), or None.
    """

    stmt: Stmt
    upstream: Value
    fan_in: int
    contribs: list


def note_of(stmt: Stmt, pos: int) -> str:
    """The comment for the contribution to operand ``pos`` of ``stmt``: the op's
    ``note``, or ``note(stmt, pos)`` when the op table gives a function."""
    note = OPS[stmt.op].note
    return note(stmt, pos) if callable(note) else note


def _relevant(fn: Function, wrt: list[Value], outputs: list[Value]) -> set[int]:
    """Ids of values that depend on some wrt input and that some of ``outputs`` depends on."""
    dep = {id(v) for v in wrt}
    for s in fn.stmts:
        if any(id(a) in dep for a in s.args):
            dep.add(id(s.out))
    need = {id(o) for o in outputs}
    for s in reversed(fn.stmts):
        if id(s.out) in need:
            need.update(id(a) for a in s.args)
    return dep & need


def grad(fn: Function, wrt: list[Value], record: list | None = None) -> Function:
    """Return ``fn`` extended with the adjoint sweep for the gradient w.r.t. ``wrt``.

    ``fn.outputs[0]`` must be a float scalar; every ``wrt`` value must be a
    float input. Raises :class:`ShapeError` otherwise. If ``record`` is a
    list, a :class:`Step` per differentiated statement is appended to it.
    ``fn`` is not changed: the result shares its statements and values (no pass changes them).
    The result returns ``(value, (grad_1, ..., grad_n))``.
    """
    out = fn.outputs[0]
    if out.dtype not in FLOATS or out.shape != ():
        raise ShapeError(f"the output {out.name} ({out.type_str()}) must be a float scalar to take a gradient",
                         fn.source_name, "reduce it with sum() or mean(), or ask for its vjp or jacobian")
    return _reverse(fn, wrt, {id(out): None}, [out], record, _namer(fn))


def vjp(fn: Function, wrt: list[Value]) -> Function:
    """Reverse mode of every float output: ``fn`` with one cotangent input per float output
    (``<output>_ct``, shaped like it, after the arguments) and the adjoint sweep; it returns the
    outputs, then the cotangents of the ``wrt`` inputs (``Σ_k ct_kᵀ ∂y_k/∂w``), in order.

    Raises :class:`ShapeError` for a ``wrt`` that is not a float input or no float output."""
    namer = _namer(fn)
    seeds = {id(o): Value(namer.fresh(f"{o.name}_ct"), o.dtype, o.shape) for o in fn.outputs if o.dtype in FLOATS}
    if not seeds:
        raise ShapeError("no output is a float: nothing to differentiate", fn.source_name)
    result = _reverse(fn, wrt, seeds, list(fn.outputs), None, namer)
    cts = [seeds[id(o)] for o in fn.outputs if id(o) in seeds]
    result.inputs = list(fn.inputs) + cts
    result.differentiated = False
    return result


def _namer(fn: Function) -> Namer:
    """A namer that knows every name of ``fn``."""
    namer = Namer()
    for v in fn.inputs:
        namer.claim(v.name)
    for s in fn.stmts:
        namer.claim(s.out.name)
    return namer


def _reverse(fn: Function, wrt: list[Value], seeds: dict, outputs: list[Value], record, namer: Namer) -> Function:
    """The adjoint sweep from ``seeds`` (output id -> its cotangent value, None: the constant 1),
    returning ``outputs`` and then the gradients."""
    for w in wrt:
        if w.dtype not in FLOATS:
            raise ShapeError(f"cannot differentiate with respect to %{w.name}:{w.type_str()}",
                             fn.source_name, "only float inputs have gradients; remove it from wrt")
    b = Builder(namer, list(fn.stmts))
    b.adjoint = True
    outs = [o for o in fn.outputs if id(o) in seeds]
    relevant = _relevant(fn, wrt, outs)

    # how many adjoint contributions each value will receive (to name them)
    fan_in: dict[int, int] = {}
    for s in fn.stmts:
        if id(s.out) in relevant and OPS[s.op].vjp is not None:
            for a in s.args:
                if id(a) in relevant:
                    fan_in[id(a)] = fan_in.get(id(a), 0) + 1

    contribs: dict[int, list[Value]] = {id(o): [seeds[id(o)] or b.const(1.0, dtype=o.dtype)] for o in outs}
    masks: dict[int, tuple | None] = {}     # value id -> (mask, taken) if its adjoint is masked

    def adjoint_of(v: Value) -> Value | None:
        cs = contribs.get(id(v))
        if not cs:
            return None
        if len(cs) == 1:
            return cs[0]
        b.note = f"fan-out: sums {len(cs)} contributions"
        total = cs[0]
        for k, c in enumerate(cs[1:]):
            total = b.emit("add", total, c, name=f"{v.name}_bar" if k == len(cs) - 2 else f"{v.name}_acc")
        b.note = None
        return total

    for s in reversed(fn.stmts):
        if id(s.out) not in relevant:
            continue
        rule = OPS[s.op].vjp
        g = adjoint_of(s.out)
        if rule is None or g is None:
            continue
        mask = masks.get(id(s.out))
        elementwise = OPS[s.op].elementwise
        b.hint = f"{s.out.name}_d"
        b.loc = s.loc
        first_new = len(b.stmts)
        results = rule(b, s, g)
        sent = [None] * len(s.args)
        for pos, (arg, c) in enumerate(zip(s.args, results)):
            if c is None or id(arg) not in relevant:
                continue
            arg_mask = None
            if s.op == "where" and c.shape == arg.shape == s.out.shape:
                arg_mask = (s.args[0], pos == 1)
            elif mask is not None and elementwise and c.shape == s.out.shape:
                m, taken = mask
                c = b.emit("where", m, c, 0.0) if taken else b.emit("where", m, 0.0, c)
                arg_mask = mask if arg.shape == s.out.shape else None
            if c.shape != arg.shape:
                c = b.emit("sum_to", c, shape=arg.shape)
            k = len(contribs.setdefault(id(arg), []))
            name = f"{arg.name}_bar" if fan_in.get(id(arg), 1) == 1 else f"{arg.name}_bar_{k + 1}"
            defining = next((st for st in b.stmts[first_new:] if st.out is c), None)
            if defining is not None and c.name.startswith(b.hint):
                c.name = namer.fresh(name)   # c is new (this rule just made it): nothing of fn changes
            else:                                # an existing value: give it the adjoint's name
                c = b.emit("alias", c, name=name)
                defining = b.stmts[-1]
            defining.note = defining.note or note_of(s, pos)
            contribs[id(arg)].append(c)
            sent[pos] = c
            prev = masks.get(id(arg), "unset")
            masks[id(arg)] = arg_mask if prev in ("unset", arg_mask) else None
        if record is not None:
            record.append(Step(s, g, len(contribs[id(s.out)]), sent))
    grads = []
    for w in wrt:
        gw = adjoint_of(w)
        if gw is None:                          # the output does not depend on w
            b.note = "zero: the output does not depend on it"
            zero = b.const(0.0, dtype=w.dtype)
            gw = b.emit("expand", zero, w, name=f"{w.name}_bar") if w.shape else b.emit("alias", zero, name=f"{w.name}_bar")
            b.note = None
        grads.append(gw)
    result = fn.replace(b.stmts, list(outputs) + grads)
    result.wrt = list(wrt)
    result.differentiated = True
    return result
