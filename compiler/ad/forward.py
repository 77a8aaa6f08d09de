"""Forward-mode automatic differentiation on the IR (JVP).

:func:`jvp` walks the statements in order and, for each one with a tangent among its operands,
applies the op's JVP rule (:func:`gradc.ops.jvp_rule`: the entry's own ``jvp``, or one derived
from its ``linear`` / ``elementwise`` traits), emitting the tangent statements after the given
function's. The result takes one tangent input per ``wrt`` argument (``<w>_dot``, shaped like it)
after the arguments and returns the outputs, then their tangents ``Σ_i ∂y/∂w_i · w_i_dot``.

* Tangents are named ``<primal>_dot``; a zero tangent is no value at all (None), so only the
  statements that depend on a tangent input get tangent statements.
* A float result whose op has no rule raises :class:`~gradc.errors.UnsupportedError` naming the
  op, never a zero tangent (masks and labels, the non-float results, have none).
* Masked select carries over: the tangent of ``where(c, a, b)`` is ``where(c, a_dot, b_dot)``,
  a select, so an inf or NaN tangent of the untaken branch never reaches the result. Applied to
  a gradient function (forward over reverse: Hessian-vector products), the adjoint sweep's masks
  are selects too, and the guarantee holds at second order.

The rules follow JAX's design (one table; each op's forward rule beside its reverse rule:
Bradbury et al., "JAX: composable transformations of Python+NumPy programs", 2018) and the
textbook dual-number view (Griewank & Walther, "Evaluating Derivatives", 2nd ed., 2008, ch. 3).
"""
from __future__ import annotations

from ..errors import UnsupportedError
from ..ir import FLOATS, Builder, Function, Value
from ..ops import OPS, jvp_rule
from .reverse import _namer


def jvp(fn: Function, wrt: list[Value], outputs: list[Value] | None = None) -> Function:
    """``fn`` extended with tangent statements for the tangents of ``wrt`` (float inputs).

    Returns a function with inputs ``fn.inputs + [<w>_dot ...]`` and outputs ``outputs`` (default
    ``fn.outputs``) followed by the tangent of each float one among them (a zero tangent is an
    explicit zero array). ``fn`` is not changed. Raises :class:`UnsupportedError` for an op
    without a JVP rule on a path from a tangent.
    """
    outputs = list(fn.outputs if outputs is None else outputs)
    namer = _namer(fn)
    b = Builder(namer, list(fn.stmts))
    seeds = [Value(namer.fresh(f"{w.name}_dot"), w.dtype, w.shape) for w in wrt]
    tangent: dict[int, Value] = {id(w): t for w, t in zip(wrt, seeds)}
    for s in fn.stmts:
        ts = [tangent.get(id(a)) for a in s.args]
        if all(t is None for t in ts) or s.out.dtype not in FLOATS:
            continue
        rule = jvp_rule(OPS[s.op])
        if rule is None:
            raise UnsupportedError(f"the op {s.op} has no forward-mode (JVP) rule", s.loc or fn.source_name,
                                   "differentiate in reverse mode only (value_and_grad, vjp)")
        b.hint, b.loc, b.adjoint = f"{s.out.name}_dot", s.loc, s.adjoint
        b.note = f"JVP of {s.op}"
        t = rule(b, s, ts)
        if t is None:
            continue
        if t.shape != s.out.shape or t.dtype != s.out.dtype:
            raise UnsupportedError(f"the JVP rule of {s.op} gives {t.type_str()} for {s.out.type_str()}",
                                   s.loc or fn.source_name)
        tangent[id(s.out)] = t
    b.note, b.loc, b.adjoint = "zero: the output does not depend on the tangents", None, False
    out_tangents = []
    for o in outputs:
        if o.dtype not in FLOATS:
            continue
        t = tangent.get(id(o))
        if t is None or any(t is x for x in seeds) or any(t is x for x in out_tangents):
            base = t if t is not None else b.const(0.0, dtype=o.dtype)
            if t is None and o.shape:
                base = b.emit("expand", base, o)
            t = b.emit("alias", base, name=f"{o.name}_dot")
        out_tangents.append(t)
    result = fn.replace(b.stmts, outputs + out_tangents)
    result.inputs = list(fn.inputs) + seeds
    result.differentiated = False
    return result
