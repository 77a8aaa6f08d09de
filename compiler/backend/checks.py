"""The argument checks of the generated module, and the plain-Python functions behind gradc's call.

Every jitted entry point (``forward``, ``value_and_grad``, ``value_and_grad_into``) starts by
checking its array arguments (:func:`entry_lines`): the dtype and rank at compile time, each
fixed dimension with an integer compare, each symbolic dimension (``"batch"``) against its first
occurrence; ``value_and_grad_into`` also checks its output arrays (C-contiguous, writeable,
shaped like their arguments). A mismatch raises the module's ``ArgumentError`` naming the
function, the argument, the expected shape and the one given, so no entry point reads out of
bounds. The definitions this needs (:func:`definitions`): ``ArgumentError`` (the module's own
``ValueError`` subclass, unless gradc's loader put :class:`gradc.ArgumentError`'s class there
first), ``_arg`` (one argument's check, typed by a ``numba.extending.overload`` at compile time:
an argument of another type raises instead of being computed with, and the rest of the function
is typed with the declared type, so that it still compiles), ``_checked`` and ``_checked_out``
(the module's arguments and output arrays). A float64 array passes where float32 is declared (the
same code then computes in float64; :func:`gradc.runtime.gradcheck` relies on it). Scalars are
not checked here.

:func:`calls` gives the module's ``_call_forward`` and ``_call_value_and_grad``, functions with
explicit parameters that call the dispatcher and hand anything that fails (and ``out=``) to
``_failed``. :class:`gradc.Compiled` makes its ``forward`` and ``value_and_grad`` from them,
with those names bound to its own dispatcher and slow path (see :mod:`gradc.api`).

Names and dimensions reach the text only as identifiers (checked by the frontends) inside
``repr`` string literals.
"""
from __future__ import annotations

from ..ir import DTYPE_NAMES, Value

#: The module's exception class, unless gradc's loader already put gradc's there.
ARGUMENT_ERROR = '''\
if "ArgumentError" not in globals():       # imported by gradc: its loader put gradc.ArgumentError's class here
    class ArgumentError(ValueError):
        """An argument of the wrong type or shape: ArgumentError(where, *parts of the message)."""

        def __str__(self):
            return f"{self.args[0]}: " + " ".join(map(str, self.args[1:]))'''

#: One array argument's check (see the module docstring).
ARG_CHECK = '''\
def _arg(where, name, x, kind):
    """The array argument x, checked against kind: its dtype and shape, "float64[batch, 3]" (then
    "C": a C-contiguous writeable output array). Jitted code runs _arg_typing's check; run as
    plain Python (NUMBA_DISABLE_JIT=1), x passes unchecked."""
    return x


@numba.extending.overload(_arg, prefer_literal=True)
def _arg_typing(where, name, x, kind):
    """At compile time: whether the type of x fits kind (a float64 array also fits where float32
    is declared). At run time: x, once its fixed dimensions are compared with kind's; if its type
    does not fit, ArgumentError (and, for the typing of the caller only, an empty array of kind)."""
    want, layout = kind.literal_value.split("]")
    dtype, dims = want.split("[")
    sizes = tuple(int(d) if d.isdigit() else -1 for d in dims.split(", "))
    fits = (isinstance(x, numba.types.Array) and x.ndim == len(sizes)
            and str(x.dtype) in (dtype, "float64" if dtype == "float32" else dtype)
            and (not layout or x.layout == "C" and x.mutable))
    if fits:
        shape = f"expected shape [{dims}], got"

        def checked(where, name, x, kind):
            for k in range(len(sizes)):
                if sizes[k] >= 0 and x.shape[k] != sizes[k]:
                    raise ArgumentError(where + ": argument '" + name + "'", shape, x.shape)
            return x
        return checked
    expected = (f"expected {'an' if dtype[0] in 'aeiou' else 'a'} {dtype} array of shape [{dims}]"
                + (", C-contiguous and writeable" if layout else "") + f", got {x}")
    empty, np_dtype = (0,) * len(sizes), np.dtype(dtype).type

    def rejected(where, name, x, kind):
        if len(where) >= 0:        # always; the return gives the call the declared type
            raise ArgumentError(where + ": argument '" + name + "'", expected)
        return np.empty(empty, np_dtype)
    return rejected'''

_JIT = '@numba.njit(cache=True, error_model="numpy", inline="always")'


def _kind(v: Value, output: bool = False) -> str:
    return f"{DTYPE_NAMES[v.dtype]}[{', '.join(map(str, v.shape))}]{'C' if output else ''}"


def _shape_text(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _names(names: list[str]) -> str:
    """``a, b`` (several names), ``a`` (one): what ``_checked`` returns and its caller assigns."""
    return ", ".join(names)


def _checked(inputs: list[Value]) -> str:
    """``_checked(_where, <array arguments>)``: each array argument through ``_arg``, then its
    symbolic dimensions against their first occurrence (in argument order, like
    :class:`gradc.api.ArgumentChecker`)."""
    arrays = [v for v in inputs if v.shape]
    lines, first = [], {}
    for v in arrays:
        lines.append(f"{v.name} = _arg(_where, {v.name!r}, {v.name}, {_kind(v)!r})")
        for k, d in enumerate(v.shape):
            if isinstance(d, int):
                continue
            if d not in first:
                first[d] = (v.name, k)
                continue
            src, j = first[d]
            lines += [f"if {v.name}.shape[{k}] != {src}.shape[{j}]:",
                      f"    raise ArgumentError(_where + {': argument ' + repr(v.name)!r},",
                      f"                        {'expected shape ' + _shape_text(v.shape) + ' with ' + d + ' ='!r}, "
                      f"{src}.shape[{j}], {'(from ' + repr(src) + '), got'!r}, {v.name}.shape)"]
    return "\n".join([_JIT, f"def _checked(_where, {_names([v.name for v in arrays])}):",
                      '    """The array arguments of the entry point _where, checked against DTYPES and SHAPES (see',
                      '    _arg; a symbolic dimension must have one size in all of them): ArgumentError if not."""']
                     + ["    " + line for line in lines] + [f"    return {_names([v.name for v in arrays])}"])


def _checked_out(outputs: list[tuple[str, Value]]) -> str:
    """``_checked_out(<arguments>, <output arrays>)`` of ``value_and_grad_into``."""
    lines = []
    for out, v in outputs:
        lines.append(f"{out} = _arg('value_and_grad_into', {out!r}, {out}, {_kind(v, output=True)!r})")
        if any(not isinstance(d, int) for d in v.shape):
            lines += [f"if {out}.shape != {v.name}.shape:",
                      f"    raise ArgumentError({'value_and_grad_into: argument ' + repr(out)!r},",
                      f"                        'expected shape', {v.name}.shape, "
                      f"{'(that of ' + repr(v.name) + '), got'!r}, {out}.shape)"]
    params = [v.name for _, v in outputs] + [o for o, _ in outputs]
    return "\n".join([_JIT, f"def _checked_out({', '.join(params)}):",
                      '    """The output arrays of value_and_grad_into: C-contiguous, writeable, of their arguments\'',
                      '    dtypes and shapes (see _arg): ArgumentError if not."""']
                     + ["    " + line for line in lines] + [f"    return {_names([o for o, _ in outputs])}"])


def definitions(inputs: list[Value], outputs: list[tuple[str, Value]] = ()) -> list[str]:
    """The module-level definitions the checks use (text blocks, each a top-level statement or
    definition, for the module's helper section): none without array arguments.

    ``inputs``: the module's arguments; ``outputs``: ``(name, argument)`` per output array of
    ``value_and_grad_into`` (its parameters after the arguments), in order."""
    if not any(v.shape for v in inputs):
        return []
    return [ARGUMENT_ERROR, ARG_CHECK, _checked(inputs)] + ([_checked_out(list(outputs))] if outputs else [])


def entry_lines(function: str, params: list[str], inputs: list[Value], outputs: list[tuple[str, Value]] = ()) -> list[str]:
    """The lines that start the body of the function ``function(params)``: the checks, for the
    entry points ``forward``, ``value_and_grad`` and ``value_and_grad_into`` (whose ``params``
    end with the names in ``outputs``); nothing for any other function (sweeps, ``_part_<k>``)
    or without array arguments."""
    arrays = [v.name for v in inputs if v.shape]
    if function not in ("forward", "value_and_grad", "value_and_grad_into") or not arrays:
        return []
    lines = [f"{_names(arrays)} = _checked({function!r}, {_names(arrays)})"]
    if function == "value_and_grad_into" and outputs:
        outs = [o for o, _ in outputs]
        assert params[len(params) - len(outs):] == outs, (params, outs)
        lines.append(f"{_names(outs)} = _checked_out({', '.join([v.name for _, v in outputs] + outs)})")
    return lines


def calls(inputs: list[Value]) -> list[tuple[str, list[str], list[str], list[str]]]:
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
              ["The _call_ functions' slow path: the call again, raising its error. gradc's Compiled",
               "replaces it: its checks name what each argument must be; it converts scalars, fills out=."],
              ["if out is not None:",
               "    raise TypeError(\"value_and_grad: out= needs gradc; call value_and_grad_into\")",
               "return function(*args)"])
    return [fwd, vg, failed]
