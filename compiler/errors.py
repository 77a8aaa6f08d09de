"""User-facing errors of gradc.

Every error a user can cause (a bad spec, an unsupported SymPy class, a shape
mismatch) is a subclass of :class:`GradcError`. The CLI prints these as one
line without a traceback; any other exception is a bug in gradc.
"""
from __future__ import annotations


class GradcError(Exception):
    """Base class of every error caused by the user's input.

    ``where`` names the place (``spec.toml:12:9``, or an expression and op),
    ``hint`` says what to do (each class has a :attr:`default_hint` for raise
    sites that know nothing more specific). ``str(err)`` joins them into one
    readable line.
    """

    #: The hint used when the raise site gives none.
    default_hint: str | None = None

    def __init__(self, message: str, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint if hint is not None else self.default_hint
        super().__init__(self._format())

    def _format(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return one_line(text)


def one_line(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\n``, ``\\u2028``): an error
    message quotes untrusted names and file names, and must stay one readable line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class SpecError(GradcError):
    """The model spec (TOML or its expression language) is malformed."""

    default_hint = "see 'The spec format' in gradc's README"


class ShapeError(GradcError):
    """Operand shapes or dtypes do not fit an op's rule."""

    default_hint = "check the shapes the operands are declared with; the README's expression language section says how they broadcast"


class UnsupportedError(GradcError):
    """The input uses a construct gradc does not compile (names the class or op)."""

    default_hint = "gradc's README lists the SymPy classes and spec functions it compiles"


class VerifyError(GradcError):
    """The IR violates SSA form or an op's shape/dtype rule (a gradc bug or a bad hand-built IR)."""

    default_hint = "gradc's frontends always build valid IR: unless you built this IR by hand, please report it as a bug"


class ArgumentError(ShapeError, ValueError):
    """A call of a compiled function got the wrong number, shapes or dtypes of arguments.

    ``where`` names the function and the argument (``value_and_grad: argument 'X'``). Also a
    ``ValueError``, like the ``ArgumentError`` a generated module defines when it is imported
    without gradc.
    """

    default_hint = "the compiled object's .arg_names, .shapes and .dtypes list what each argument must be"


class _GeneratedArgumentError(ArgumentError):
    """:class:`ArgumentError` as the generated code raises it (see :func:`argument_error_class`):
    ``ArgumentError(where, *parts)``, the message being the parts (text, sizes and shape tuples
    known only at run time) joined by spaces."""

    def __init__(self, where: str, *parts):
        if parts and isinstance(parts[0], str) and parts[0].split(" ", 1)[0] in ("arguments", "outputs"):
            where, message = _shape_message(type(self).__module__, where, parts[0], parts[1:])
            super().__init__(message, where)
            return
        super().__init__(" ".join(map(str, parts)), where)

    def __reduce__(self):
        return type(self), (self.where, self.message)


def _shape_message(module_name: str, where: str, what: str, shapes: tuple) -> tuple[str, str]:
    """``(where, message)`` for the generated checks' ``ArgumentError(where, what, *shapes)``, one
    raise site per entry point (each costs compile time): ``what`` is ``"arguments X y W"`` (the
    array arguments, ``shapes`` theirs) or ``"outputs W_out of W"`` (``shapes``: the arguments',
    then the output arrays'). The message names the first argument that does not fit, as
    :class:`gradc.api.ArgumentChecker` does for the same arrays."""
    import sys

    import numpy as np

    kind, *names = what.split()
    if kind == "outputs":
        n = names.index("of")
        outs, args = names[:n], names[n + 1:]
        for o, a, sa, so in zip(outs, args, shapes[:len(args)], shapes[len(args):]):
            if tuple(so) != tuple(sa):
                return f"{where}: argument '{o}'", f"expected shape {tuple(sa)} (that of '{a}'), got {tuple(so)}"
    module = sys.modules.get(module_name)
    if kind == "arguments" and module is not None:
        from .api import ArgumentChecker
        given = dict(zip(names, shapes))
        fake = {n: np.lib.stride_tricks.as_strided(np.zeros(1, module.DTYPES[n]), tuple(sh), (0,) * len(sh))
                for n, sh in given.items()}                  # arrays of those shapes, no memory
        try:
            ArgumentChecker(module.ARGS, module.SHAPES, module.DTYPES)(
                where, tuple(fake.get(n, 0) for n in module.ARGS), {})
        except ArgumentError as e:
            return e.where, e.message
    return where, f"the {kind} {', '.join(names)} have shapes {', '.join(map(str, shapes))}"


def argument_error_class(module_name: str) -> type:
    """The ``ArgumentError`` class for the generated module named ``module_name``: a subclass of
    :class:`ArgumentError` taking the generated code's arguments (see :class:`_GeneratedArgumentError`).

    gradc's loader puts it into the module before running it (the module defines its own
    ``ValueError`` subclass only when imported without gradc). It is named
    ``<module_name>.ArgumentError``: Numba's cached machine code refers to the class it raises by
    that name, so code cached by any process raises the class of the module imported in this one.
    """
    return type("ArgumentError", (_GeneratedArgumentError,),
                {"__module__": module_name, "__qualname__": "ArgumentError", "__doc__": ArgumentError.__doc__})


class CacheError(GradcError):
    """A generated module is unreadable, truncated or was modified after gradc wrote it."""

    default_hint = "delete the file and compile the spec again"


class CacheWarning(UserWarning):
    """A corrupt cache entry was found (and rebuilt): reported once per entry."""
