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
from .codegen import render_module
from .errors import SpecError, UnsupportedError
from .frontends import Lowered
from .ir import Function, format_function, verify
from .passes import dce, optimize, reroll


@dataclass
class Artifact:
    """Every stage of one compilation.

    ``primal`` the optimized forward IR; ``full`` forward + adjoint IR;
    ``code`` the module text; ``key`` the cache key (sha256 hex); ``timings``
    seconds per stage (``frontend``, ``passes``, ``ad``, ``render``; :func:`gradc.compile`
    adds ``write`` and ``import``, see :attr:`gradc.Compiled.timings`).
    """

    lowered: Lowered
    primal: Function
    full: Function
    code: str
    key: str
    timings: dict = field(default_factory=dict)

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
          roll: bool = True) -> Artifact:
    """Run the whole pipeline on ``source``; see :func:`lower` for the accepted sources.

    ``comments=False`` renders the code without the adjoint rules' comments;
    ``roll=False`` keeps long sums unrolled (no :func:`~gradc.passes.reroll`: every term
    its own statements, as ``gradc explain`` shows them).
    """
    clock = time.perf_counter
    t0 = clock()
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
    adjoint = grad(primal, lowered.wrt)
    t3 = clock()
    full = optimize(adjoint)
    verify(full)
    forward = dce(primal)
    t4 = clock()
    key = hashlib.sha256("\x00".join([
        __version__, lowered.canonical, lowered.source_name,
        ",".join(v.name for v in lowered.wrt)] + ([] if comments else ["no-comments"])).encode()).hexdigest()
    code = render_module(forward, full, version=__version__, source_text=lowered.source_text,
                         source_name=lowered.source_name, source_hash=key[:16],
                         model_name=lowered.model_name, params=lowered.params, roles=lowered.roles,
                         comments=comments, description=lowered.description)
    timings = {"frontend": t1 - t0, "passes": (t2 - t1) + (t4 - t3), "ad": t3 - t2, "render": clock() - t4}
    return Artifact(lowered, primal, full, code, key, timings)
