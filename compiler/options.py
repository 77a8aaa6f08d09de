"""The compile options: one immutable object passed down the pipeline explicitly.

No stage reads a global flag: :func:`gradc.pipeline.build` takes an :class:`Options`
and hands it (or the fields it needs) to the passes and the back end, and
:meth:`Options.key` is what the cache keys include, so two option sets never share
a cache entry.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Options:
    """How to compile.

    ``fuse``: elementwise statements over arrays become fused loop nests
    (:mod:`gradc.backend.schedule`); False renders one whole-array statement per op.
    ``comments``: the adjoint rules' notes as comments beside the generated code.
    ``roll``: re-roll long sums of like terms into loops over constant tables
    (:func:`gradc.passes.reroll`). ``split``: split a large sum of unlike terms into
    jitted parts (:func:`gradc.passes.split.split`; only with ``roll``).
    ``split_stmts``: the most statements (constants not counted) of one part's forward sweep;
    a sum of more than twice as many is split. ``derivatives``: what the module offers besides
    ``forward`` and (for a float scalar value) ``value_and_grad``: any of ``jvp``, ``vjp``,
    ``jacobian``, ``hvp``, ``hessian``, ``value_grad_hessian`` (:mod:`gradc.ad.derivatives`), in
    any order. ``jacobian``: how ``jacobian`` sweeps its seeds, ``"fwd"`` (columns), ``"rev"``
    (rows) or ``"auto"`` (the fewer).
    """

    fuse: bool = True
    comments: bool = True
    roll: bool = True
    split: bool = True
    split_stmts: int = 200
    derivatives: tuple[str, ...] = ()
    jacobian: str = "auto"

    def __post_init__(self):
        from .ad.derivatives import KINDS
        from .errors import GradcError
        kinds = tuple(self.derivatives) if not isinstance(self.derivatives, str) else (self.derivatives,)
        unknown = [k for k in kinds if k not in KINDS + ("grad",)]
        if unknown:
            raise GradcError(f"unknown derivative(s) {', '.join(map(repr, unknown))}", "Options(derivatives=...)",
                             "choose from grad, " + ", ".join(KINDS))
        if self.jacobian not in ("auto", "fwd", "rev"):
            raise GradcError(f"jacobian={self.jacobian!r}", "Options(jacobian=...)", "choose auto, fwd or rev")
        # one canonical order, without 'grad' (always there when the value has a gradient)
        object.__setattr__(self, "derivatives", tuple(k for k in KINDS if k in kinds))

    def with_(self, **changes) -> "Options":
        """A copy with some fields changed (``opts.with_(fuse=False)``)."""
        return replace(self, **changes)

    def key(self) -> str:
        """The options as text for a cache key: only the fields that differ from the defaults
        (so the default options add nothing and existing keys stay valid)."""
        default = Options()
        return ",".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                        if getattr(self, f.name) != getattr(default, f.name))


DEFAULT = Options()
