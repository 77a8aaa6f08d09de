"""User-facing errors of gradc.

Every error a user can cause (a bad spec, an unsupported SymPy class, a shape
mismatch) is a subclass of :class:`GradcError`. The CLI prints these as one
line without a traceback; any other exception is a bug in gradc.
"""
from __future__ import annotations


class GradcError(Exception):
    """Base class of every error caused by the user's input.

    ``where`` names the place (``spec.toml:12:9``, or an expression and op),
    ``hint`` says what to do. ``str(err)`` joins them into one readable line.
    """

    def __init__(self, message: str, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
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


class ShapeError(GradcError):
    """Operand shapes or dtypes do not fit an op's rule."""


class UnsupportedError(GradcError):
    """The input uses a construct gradc does not compile (names the class or op)."""


class VerifyError(GradcError):
    """The IR violates SSA form or an op's shape/dtype rule (a gradc bug or a bad hand-built IR)."""


class ArgumentError(ShapeError):
    """A call of a compiled function got the wrong number, shapes or dtypes of arguments.

    ``where`` names the function and the argument (``value_and_grad: argument 'X'``).
    """


class CacheError(GradcError):
    """A generated module is unreadable, truncated or was modified after gradc wrote it."""


class CacheWarning(UserWarning):
    """A corrupt cache entry was found (and rebuilt): reported once per entry."""
