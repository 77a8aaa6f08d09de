"""The compiler pipeline, stage by stage, with no loading or caching.

frontend → verify → optimize → forward function; reverse-mode AD → optimize →
verify → codegen. :func:`build` returns every stage so ``gradc show`` and tests
can look at each.
"""
from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .ad import grad
from . import codegen
from .codegen import fusion, render_module
from .errors import SpecError, UnsupportedError
from .frontends import Lowered
from .ir import Function, format_function, verify
from .passes import dce, optimize, reroll
from .passes.split import split as split_sum


@dataclass
class Artifact:
    """Every stage of one compilation.

    ``primal`` the optimized forward IR; ``full`` forward + adjoint IR;
    ``code`` the module text; ``key`` the cache key (sha256 hex); ``timings``
    seconds per stage (``frontend``, ``passes``, ``ad``, ``render``; :func:`gradc.compile`
    adds ``write`` and ``import``, see :attr:`gradc.Compiled.timings`). ``parts``: when a
    large sum was split (:func:`gradc.passes.split`), one ``(forward, full, first, count)``
    per part (its forward IR, its forward + adjoint IR, its summands ``first`` to
    ``first + count - 1``), rendered as the helpers ``_part_<k>``; ``full`` is then the
    unsplit function's, differentiated only when it is first asked for (``gradc show
    --stage adjoint``), and not what the module runs.
    """

    lowered: Lowered
    primal: Function
    _full: object                 # a Function, or a callable computing it (see full)
    code: str
    key: str
    timings: dict = field(default_factory=dict)
    parts: list = field(default_factory=list)

    @property
    def full(self) -> Function:
        """The forward + adjoint IR (of the whole function, also when it was split)."""
        if callable(self._full):
            self._full = self._full()
        return self._full

    def show(self, stage: str) -> str:
        """Text of one stage: ``ir``, ``adjoint`` (forward + adjoint IR) or ``code``."""
        if stage == "ir":
            return format_function(self.primal)
        if stage == "adjoint":
            return format_function(self.full)
        if stage == "code":
            return self.code
        raise ValueError(f"unknown stage {stage!r}; choose ir, adjoint or code")


def lower(source, args=None, wrt=None, name: str | None = None) -> Lowered:
    """Pick the frontend: a SymPy expression, a spec path, or spec text."""
    sympy = sys.modules.get("sympy")      # a SymPy object means SymPy is imported: no import (0.4 s) for specs
    if sympy is not None and isinstance(source, (sympy.Basic, sympy.MatrixBase)):  # MatrixBase: sympy.Matrix
        from .frontends.sympy import lower as lower_sympy
        return lower_sympy(source, args, wrt, name or "f")
    from .frontends.spec import load_spec
    looks_like_path = isinstance(source, str) and "\n" not in source and "=" not in source
    if isinstance(source, Path) or looks_like_path:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, ValueError) as e:            # ValueError: bad UTF-8, a NUL in the path
            raise SpecError(f"cannot read spec file {path}: {getattr(e, 'strerror', None) or e}") from None
        return load_spec(text, path.name, wrt)
    if isinstance(source, str):
        return load_spec(source, "<spec>", wrt)
    raise UnsupportedError(f"cannot compile a {type(source).__name__}",
                           hint="pass a SymPy expression, a spec path or spec text")


def build(source, args=None, wrt=None, name: str | None = None, comments: bool = True,
          roll: bool = True, fuse: bool | None = None, split: bool = True) -> Artifact:
    """Run the whole pipeline on ``source``; see :func:`lower` for the accepted sources.

    ``comments=False`` renders the code without the adjoint rules' comments;
    ``roll=False`` keeps long sums unrolled (no :func:`~gradc.passes.reroll`: every term
    its own statements, as ``gradc explain`` shows them); ``fuse=False`` renders one whole-array
    statement per elementwise op (no elementwise fusion, see :func:`gradc.codegen.render_stmts`;
    default: :data:`gradc.codegen.FUSE`, on unless switched off with :func:`gradc.codegen.fusion`);
    ``split=False`` (or ``roll=False``) keeps a large sum of unlike terms in one function (no
    :func:`~gradc.passes.split`: no ``_part_<k>`` helpers).
    """
    clock = time.perf_counter
    t0 = clock()
    fuse = codegen.FUSE if fuse is None else fuse
    lowered = lower(source, args, wrt, name)
    verify(lowered.fn)
    t1 = clock()
    rolled = reroll(lowered.fn) if roll else lowered.fn   # long sums of like terms -> loops over
    primal = optimize(rolled)              # tables, first: the passes then run on the small function
    if roll and rolled is lowered.fn:      # nothing rolled as lowered: try again after the passes
        rolled = reroll(primal)
        if rolled is not primal:
            primal = optimize(rolled)
    t2 = clock()
    ad = [0.0]

    def differentiate(fn):
        t = clock()
        adjoint = grad(fn, lowered.wrt)
        ad[0] += clock() - t
        full = optimize(adjoint)
        verify(full)
        return full

    parts = []                          # a large sum of unlike terms: parts compiled one by one,
    for part, first, count in (split_sum(primal) if roll and split else None) or ():
        parts.append((part, differentiate(part), first, count))   # each differentiated on its own
    full = differentiate(primal) if not parts else (lambda: differentiate(primal))
    forward = dce(primal)
    t4 = clock()
    key = hashlib.sha256("\x00".join([
        __version__, lowered.canonical, lowered.source_name,
        ",".join(v.name for v in lowered.wrt)] + ([] if comments else ["no-comments"])
        + ([] if fuse else ["no-fuse"]) + ([] if roll else ["no-roll"])
        + ([] if split else ["no-split"])).encode()).hexdigest()
    with fusion(fuse):
        code = render_module(forward, None if parts else full, version=__version__, source_text=lowered.source_text,
                             source_name=lowered.source_name, source_hash=key[:16],
                             model_name=lowered.model_name, params=lowered.params, roles=lowered.roles,
                             comments=comments, description=lowered.description, parts=parts)
    timings = {"frontend": t1 - t0, "passes": (t4 - t1) - ad[0], "ad": ad[0], "render": clock() - t4}
    return Artifact(lowered, primal, full, code, key, timings, parts)
