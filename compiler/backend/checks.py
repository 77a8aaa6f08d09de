"""The argument checks of the generated module, and the plain-Python functions behind gradc's call.

Every jitted entry point (``forward``, ``value_and_grad``, ``value_and_grad_into``) starts by
checking the shapes of its array arguments (:func:`entry_lines`): each fixed dimension with an
integer compare, each symbolic dimension (``"batch"``) against its first occurrence;
``value_and_grad_into``, and ``value_and_grad`` given output arrays, also check that those are
shaped like their arguments. A mismatch raises the module's ``ArgumentError`` (one raise site per
entry point, with the function, the arrays' names and their shapes; gradc's class names the
argument at fault, the expected shape and the one given), so no entry point reads out of bounds.
The definitions this needs (:func:`definitions`): ``ArgumentError`` (the module's own
``ValueError`` subclass, unless gradc's loader put :class:`gradc.ArgumentError`'s class there
first), ``_checked`` and ``_checked_out`` (the module's arguments and output arrays).

Types are not checked here (type checks in jitted code cost ~0.3 s of compile time per entry
point, measured on the digits MLP; gradc's public call makes them): an array of another rank does
not type, an array of another float dtype is computed in that dtype (a float64 array where
float32 is declared: :func:`gradc.runtime.gradcheck` relies on it). Scalars are not checked here.

:func:`calls` gives the module's ``_call_forward`` and ``_call_value_and_grad``, functions with
explicit parameters that call the dispatcher and hand anything that fails (and ``out=``) to
``_failed``. :class:`gradc.Compiled` makes its ``forward`` and ``value_and_grad`` from them,
with those names bound to its own dispatcher and slow path (see :mod:`gradc.api`).

Names and dimensions reach the text only as identifiers (checked by the frontends) inside
``repr`` string literals.
"""
from __future__ import annotations

from ..ir import Value

#: The module's exception class, unless gradc's loader already put gradc's there.
ARGUMENT_ERROR = '''\
# imported by gradc, the module has gradc.ArgumentError's class already (its loader put it here)
if "ArgumentError" not in globals():
    class ArgumentError(ValueError):
        """Arrays of the wrong shapes: ArgumentError(where, "arguments X W", X.shape, W.shape) (see SHAPES)."""

        def __str__(self):
            return f"{self.args[0]}: the {self.args[1]} have shapes {self.args[2:]} (see SHAPES)"'''

#: The functions that start with the checks of their arguments.
ENTRY_POINTS = ("forward", "value_and_grad", "value_and_grad_into", "jvp", "vjp", "jacobian", "hvp", "hessian",
                "value_grad_hessian")

#: The checks are compiled once and called by each entry point (not inlined: compile time).
_JIT = '@numba.njit(cache=True, error_model="numpy")'


def _conditions(arrays: list[Value]) -> list[str]:
    """Integer compares that are true when a shape is wrong: each fixed dimension, and each
    symbolic dimension against its first occurrence (in argument order)."""
    first: dict = {}
    out = []
    for v in arrays:
        for k, d in enumerate(v.shape):
            if isinstance(d, int):
                out.append(f"{v.name}.shape[{k}] != {d}")
            elif d in first:
                src, j = first[d]
                out.append(f"{v.name}.shape[{k}] != {src}.shape[{j}]")
            else:
                first[d] = (v.name, k)
    return out


def _check_function(name: str, params: list[str], conditions: list[str], what: str, got: list[str],
                    doc: str) -> str:
    """A jitted ``name(params)`` raising ``ArgumentError(_where, what, *got)`` when any of the
    ``conditions`` holds: one raise site (each costs compile time); ``what`` names the arrays whose
    shapes ``got`` are (gradc's class, :func:`gradc.errors._shape_message`, names the one at fault)."""
    cond = " or ".join(conditions) or "False"
    return "\n".join([_JIT, f"def {name}({', '.join(params)}):", f'    """{doc}"""',
                      f"    if {cond}:",
                      f"        raise ArgumentError({', '.join([params[0], repr(what)] + got)})"])


def _checked(inputs: list[Value]) -> str:
    """``_checked(_where, <array arguments>)``: their shapes against SHAPES (symbolic dimensions in
    argument order, like :class:`gradc.api.ArgumentChecker`)."""
    arrays = [v for v in inputs if v.shape]
    what = "arguments " + " ".join(v.name for v in arrays)
    return _check_function("_checked", ["_where"] + [v.name for v in arrays], _conditions(arrays), what,
                           [f"{v.name}.shape" for v in arrays],
                           "The array arguments of the entry point _where against SHAPES: ArgumentError if not.")


def _checked_out(outputs: list[tuple[str, Value]]) -> str:
    """``_checked_out(_where, <arguments>, <output arrays>)`` of ``value_and_grad_into``: each output
    array shaped like its argument."""
    params = ["_where"] + [v.name for _, v in outputs] + [o for o, _ in outputs]
    what = "outputs " + " ".join(o for o, _ in outputs) + " of " + " ".join(v.name for _, v in outputs)
    return _check_function("_checked_out", params, [f"{o}.shape != {v.name}.shape" for o, v in outputs],
                           what, [f"{v.name}.shape" for _, v in outputs] + [f"{o}.shape" for o, _ in outputs],
                           "The output arrays of value_and_grad_into, shaped like their arguments.")


def _checked_seeds(function: str, inputs: list[Value], seeds: list[Value]) -> str:
    """``_checked_<function>(_where, <array arguments>, <array seeds>)``: the arguments and the seeds
    (tangents shaped like their arguments, cotangents like their outputs) of a derivative's entry
    point, symbolic dimensions consistent across both."""
    arrays = [v for v in list(inputs) + list(seeds) if v.shape]
    what = "arguments " + " ".join(v.name for v in arrays)
    return _check_function(f"_checked_{function}", ["_where"] + [v.name for v in arrays], _conditions(arrays), what,
                           [f"{v.name}.shape" for v in arrays],
                           f"The array arguments and seeds of {function} against SHAPES: ArgumentError if not.")


def definitions(inputs: list[Value], outputs: list[tuple[str, Value]] = (), seeded: dict | None = None) -> list[str]:
    """The module-level definitions the checks use (text blocks, each a top-level statement or
    definition, for the module's helper section): none without array arguments or seeds.

    ``inputs``: the module's arguments; ``outputs``: ``(name, argument)`` per output array of
    ``value_and_grad_into`` (its parameters after the arguments), in order; ``seeded``: the seeds
    (tangent or cotangent inputs) of each derivative entry point that takes them, by name."""
    seeded = {f: seeds for f, seeds in (seeded or {}).items() if any(v.shape for v in seeds)}
    if not any(v.shape for v in inputs) and not seeded:
        return []
    return [ARGUMENT_ERROR] + ([_checked(inputs)] if any(v.shape for v in inputs) else []) \
        + ([_checked_out(list(outputs))] if outputs else []) \
        + [_checked_seeds(f, inputs, seeds) for f, seeds in seeded.items()]


def entry_lines(function: str, params: list[str], inputs: list[Value], outputs: list[tuple[str, Value]] = (),
                seeds: list[Value] = ()) -> list[str]:
    """The lines that start the body of the function ``function(params)``: the checks, for the
    entry points ``forward``, ``value_and_grad`` and ``value_and_grad_into`` (whose ``params``
    end with the names in ``outputs``) and the derivatives' (``seeds``: the tangent or cotangent
    parameters after the arguments of ``jvp``, ``vjp``, ``hvp``); nothing for any other function
    (sweeps, ``_part_<k>``) or without array arguments."""
    if any(v.shape for v in seeds):
        arrays = [v.name for v in list(inputs) + list(seeds) if v.shape]
        return [f"_checked_{function}({', '.join([repr(function)] + arrays)})"]
    arrays = [v.name for v in inputs if v.shape]
    if function not in ENTRY_POINTS or not arrays:
        return []
    lines = [f"_checked({', '.join([repr(function)] + arrays)})"]
    if function == "value_and_grad_into" and outputs:
        outs = [o for o, _ in outputs]
        assert params[len(params) - len(outs):] == outs, (params, outs)
        lines.append(f"_checked_out({', '.join([repr(function)] + [v.name for _, v in outputs] + outs)})")
    return lines


def calls(inputs: list[Value], gradient: bool = True) -> list[tuple[str, list[str], list[str], list[str]]]:
    """The plain-Python functions ``_call_forward``, ``_call_value_and_grad`` and ``_failed`` as
    ``(name, params, docstring lines, body lines)``.

    Each ``_call_`` function takes the arguments by position or by name (a missing one is ``...``,
    reported by gradc), calls the dispatcher and returns its result; a call that fails, and
    ``value_and_grad(..., out=grads)`` (``out`` after the arguments, by position or by name: a
    keyword-only parameter would cost a dictionary look-up per call), go to
    ``_failed(dispatcher, args, out)``, which gradc
    replaces (Python's checks with their messages, scalar conversion, ``out=``); the module's own
    calls the dispatcher again (its error is raised). ``out`` is not a parameter of a model that
    has an argument named ``out``.
    """
    names = [v.name for v in inputs]
    args = f"({', '.join(names)}{',' if len(names) == 1 else ''})"
    call = ", ".join(names)
    params = [f"{n}=..." for n in names]
    fwd = ("_call_forward", params, ["forward, for gradc's Compiled.forward: a call that fails goes to _failed."],
           ["try:", f"    return forward({call})", "except Exception:", "    pass",
            f"return _failed(forward, {args}, None)"])
    out = "out" not in names
    vg = ("_call_value_and_grad", params + (["out=None"] if out else []),
          ["value_and_grad, for gradc's Compiled.value_and_grad: a call that fails"
           + (", and out=, go" if out else " goes") + " to _failed."],
          (["if out is None:"] if out else [])
          + [("    " if out else "") + line for line in
             ["try:", f"    return value_and_grad({call})", "except Exception:", "    pass"]]
          + [f"return _failed(value_and_grad, {args}, {'out' if out else 'None'})"])
    failed = ("_failed", ["function", "args", "out"],
              ["The _call_ functions' slow path (gradc's Compiled replaces it): the call again, raising its error."],
              ["if out is not None:",
               "    raise TypeError(\"value_and_grad: out= needs gradc; call value_and_grad_into\")",
               "return function(*args)"])
    return [fwd, vg, failed] if gradient else [fwd, failed]
