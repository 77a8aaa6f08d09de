"""The derivatives a generated module offers besides the gradient, each one IR function built
from the reverse and forward modes (:mod:`.reverse`, :mod:`.forward`).

A :class:`Derivative` is the function and how its entry point uses it:

============================  =====================================================================
kind                          built as
============================  =====================================================================
``jvp``                       forward mode of the outputs: tangent inputs, outputs and tangents
``vjp``                       reverse mode of the float outputs: cotangent inputs, outputs and the
                              cotangents of the ``wrt`` arguments
``jacobian``                  the JVP swept over unit tangents (columns, ``jacfwd``) or the VJP over
                              unit cotangents (rows, ``jacrev``), by the sizes (``mode="auto"``: the
                              fewer seeds) -- of the first output
``hvp``                       forward over reverse: the JVP of the gradient function, ``H v``
``hessian``                   the HVP swept over unit vectors (columns)
``value_grad_hessian``        the same, also returning the value and the gradient
============================  =====================================================================

The sweeps over seeds happen inside the generated function (:mod:`gradc.backend.derivatives`):
the statements that do not depend on the seeds run once before the loop. Forward over reverse
costs a small multiple of the gradient (Griewank & Walther, "Evaluating Derivatives", 2nd ed.,
2008, sec. 5.4: at most about 4 gradients per ``H v``, and ``n`` of them for a dense Hessian).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ShapeError
from ..ir import FLOATS, Function, Value
from .forward import jvp
from .reverse import vjp

#: every derivative a module can offer, besides ``grad`` (value_and_grad)
KINDS = ("jvp", "vjp", "jacobian", "hvp", "hessian", "value_grad_hessian")
#: the derivatives that need a scalar value (its gradient)
NEEDS_GRADIENT = ("hvp", "hessian", "value_grad_hessian")


@dataclass(eq=False)
class Derivative:
    """One derivative of a module: ``fn`` takes the arguments and then the ``seeds`` (tangent or
    cotangent inputs) and returns ``fn.outputs``: the first ``n_base`` are returned as they are
    (the value, the gradient), the rest depend on the seeds.

    ``sweep`` is None (the seeds are the caller's arguments) or ``"columns"`` / ``"rows"``: the
    entry point takes the arguments only and sweeps the seeds over unit vectors itself, a
    forward-mode column or a reverse-mode row of the Jacobian per seed. ``wrt``: the
    differentiated arguments; ``of``: the differentiated outputs."""

    kind: str
    fn: Function
    seeds: list[Value]
    n_base: int
    wrt: list[Value]
    of: list[Value]
    sweep: str | None = None
    mode: str = ""


def _type(v: Value) -> str:
    """``v``'s type in the user's words: ``a float64 array [batch, 10]``, ``a float64 scalar``."""
    from ..ir import DTYPE_NAMES
    return f"a {DTYPE_NAMES[v.dtype]} " + (f"array [{', '.join(map(str, v.shape))}]" if v.shape else "scalar")


def size(shape) -> float:
    """The number of elements of ``shape``, a symbolic dimension counted as 1,000."""
    return math.prod(d if isinstance(d, int) else 1000 for d in shape)


def derive(kind: str, primal: Function, full: Function | None, wrt: list[Value], mode: str = "auto") -> Derivative:
    """The :class:`Derivative` ``kind`` (one of :data:`KINDS`) of the optimized forward function
    ``primal`` (its outputs: the value first) and its gradient function ``full`` (forward and
    adjoint, returning the value and the gradients; None when the value is not a float scalar).

    ``mode`` (``jacobian`` only): ``"fwd"`` (columns), ``"rev"`` (rows) or ``"auto"`` (whichever
    sweeps fewer seeds). Raises :class:`ShapeError` for a derivative the outputs do not have (a
    Hessian of a vector output, a Jacobian of an int output) and
    :class:`~gradc.errors.UnsupportedError` for an op without the rule it needs."""
    value = primal.outputs[0]
    where = next((s.loc for s in primal.stmts if s.out is value and s.loc), None) or primal.source_name
    if kind in NEEDS_GRADIENT and full is None:
        raise ShapeError(f"the {kind.replace('_', ' ')} needs a float scalar value; {value.name} is "
                         f"{_type(value)}", where, "reduce it to a scalar, or ask for its jacobian or vjp")
    if kind == "jvp":
        fn = jvp(primal, wrt)
        return Derivative(kind, fn, fn.inputs[len(primal.inputs):], len(primal.outputs), wrt, list(primal.outputs))
    if kind == "vjp":
        fn = vjp(primal, wrt)
        return Derivative(kind, fn, fn.inputs[len(primal.inputs):], len(primal.outputs), wrt,
                          [o for o in primal.outputs if o.dtype in FLOATS])
    if kind == "jacobian":
        if value.dtype not in FLOATS:
            raise ShapeError(f"the output {value.name} ({_type(value)}) is not a float: it has no Jacobian", where)
        one = primal.replace(list(primal.stmts), [value])
        n_in = sum(size(w.shape) for w in wrt)
        if mode == "auto":
            mode = "fwd" if n_in <= size(value.shape) else "rev"
        if mode not in ("fwd", "rev"):
            raise ShapeError(f"jacobian mode must be 'fwd', 'rev' or 'auto', not {mode!r}", primal.source_name)
        fn = jvp(one, wrt) if mode == "fwd" else vjp(one, wrt)
        return Derivative(kind, fn, fn.inputs[len(primal.inputs):], 1, wrt, [value],
                          "columns" if mode == "fwd" else "rows", mode)
    if kind in NEEDS_GRADIENT:
        fn = jvp(full, wrt, outputs=list(full.outputs))          # value, grads, then their tangents
        tangents = fn.outputs[len(full.outputs) + 1:]
        base = [] if kind != "value_grad_hessian" else list(full.outputs)
        fn = fn.replace(fn.stmts, base + tangents)
        return Derivative(kind, fn, fn.inputs[len(full.inputs):], len(base), wrt, [value],
                          None if kind == "hvp" else "columns")
    raise ShapeError(f"unknown derivative {kind!r}", primal.source_name, "choose from grad, " + ", ".join(KINDS))
