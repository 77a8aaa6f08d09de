"""The compiler pipeline, stage by stage, with no loading or caching.

frontend → verify → optimize → renumber → forward function; reverse-mode AD → optimize →
renumber → verify → back end (schedule, memory plan, printer), as an
:class:`~gradc.options.Options` says. :func:`build` returns every stage so ``gradc show`` and
tests can look at each.
"""
from __future__ import annotations

import hashlib
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .ad import grad
from .ad.derivatives import derive
from .backend.module import render_module
from .errors import SpecError, UnsupportedError
from .frontends import Lowered
from .ir import FLOATS, Function, format_function, verify
from .options import Options
from .passes import dce, optimize, reroll
from .passes.rename import renumber
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
    _full: object                 # a Function, or a callable computing it (see full), or None
    code: str
    key: str
    timings: dict = field(default_factory=dict)
    parts: list = field(default_factory=list)
    #: the other derivatives of the module (:class:`gradc.ad.derivatives.Derivative`), by kind
    derived: dict = field(default_factory=dict)

    @property
    def full(self) -> Function | None:
        """The forward + adjoint IR (of the whole function, also when it was split); None when
        the value is not a float scalar (no gradient)."""
        if callable(self._full):
            self._full = self._full()
        return self._full

    def show(self, stage: str) -> str:
        """Text of one stage: ``ir``, ``adjoint`` (forward + adjoint IR), ``code``, or the IR of a
        derivative the module offers (``jvp``, ``hessian``, ...)."""
        if stage == "ir":
            return format_function(self.primal)
        if stage == "adjoint":
            if self.full is None:
                raise ValueError("the value is not a float scalar: there is no adjoint sweep of a gradient")
            return format_function(self.full)
        if stage == "code":
            return self.code
        if stage in self.derived:
            return format_function(self.derived[stage].fn)
        raise ValueError(f"unknown stage {stage!r}; choose ir, adjoint, code"
                         + "".join(f", {k}" for k in self.derived))


def lower(source, args=None, wrt=None, name: str | None = None) -> Lowered:
    """Pick the frontend: a SymPy expression, a spec path, or spec text."""
    sympy = sys.modules.get("sympy")      # a SymPy object means SymPy is imported: no import (0.4 s) for specs
    if sympy is not None and (isinstance(source, (sympy.Basic, sympy.MatrixBase)) or (   # MatrixBase: sympy.Matrix
            isinstance(source, (tuple, list)) and source                                   # several outputs
            and all(isinstance(e, (sympy.Basic, sympy.MatrixBase)) for e in source))):
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


def build(source, args=None, wrt=None, name: str | None = None, options: Options | None = None, *,
          comments: bool | None = None, roll: bool | None = None, fuse: bool | None = None,
          split: bool | None = None) -> Artifact:
    """Run the whole pipeline on ``source``; see :func:`lower` for the accepted sources.

    ``options`` (default :class:`~gradc.options.Options`) says how: ``comments``, ``roll``,
    ``split``, ``split_stmts``, ``fuse`` (see there). The keywords ``comments``, ``roll``, ``fuse``
    and ``split`` are shorthands that change those fields of ``options``, e.g. ``roll=False``
    (every term of a long sum its own statements, as ``gradc explain`` shows them).
    """
    options = options or Options()
    changes = {k: v for k, v in (("comments", comments), ("roll", roll), ("fuse", fuse), ("split", split))
               if v is not None}
    if changes:
        options = options.with_(**changes)
    clock = time.perf_counter
    t0 = clock()
    lowered = lower(source, args, wrt, name)
    verify(lowered.fn)
    keep = user_names(lowered)
    t1 = clock()
    rolled = reroll(lowered.fn) if options.roll else lowered.fn   # long sums of like terms -> loops
    primal = optimize(rolled)              # over tables, first: the passes then run on the small function
    if options.roll and rolled is lowered.fn:      # nothing rolled as lowered: try again after the passes
        rolled = reroll(primal)
        if rolled is not primal:
            primal = optimize(rolled)
    primal = renumber(primal, keep)        # no gaps in the names; the adjoints' names derive from these
    t2 = clock()
    ad = [0.0]

    def differentiate(fn):
        t = clock()
        adjoint = grad(fn, lowered.wrt)
        ad[0] += clock() - t
        full = renumber(optimize(adjoint), keep)
        verify(full)
        return full

    value = primal.outputs[0]
    has_grad = value.dtype in FLOATS and value.shape == ()
    parts = []                          # a large sum of unlike terms: parts compiled one by one,
    split_parts = split_sum(primal, max_stmts=options.split_stmts) \
        if options.roll and options.split and has_grad and len(primal.outputs) == 1 else None
    for part, first, count in split_parts or ():
        part = renumber(part, keep)
        parts.append((part, differentiate(part), first, count))   # each differentiated on its own
    full = None if not has_grad else differentiate(primal) if not parts else (lambda: differentiate(primal))
    forward = renumber(dce(primal), keep)
    forward.wrt = list(lowered.wrt)
    derived = {}
    for kind in options.derivatives:
        t = clock()
        d = derive(kind, primal, (full() if callable(full) else full) if has_grad else None, lowered.wrt,
                   options.jacobian)
        fn = renumber(optimize(d.fn), keep)
        verify(fn)
        d.fn, d.seeds = fn, fn.inputs[len(fn.inputs) - len(d.seeds):]
        derived[kind] = d
        ad[0] += clock() - t
    t4 = clock()
    key = hashlib.sha256("\x00".join([
        __version__, lowered.canonical, lowered.source_name, ",".join(v.name for v in lowered.wrt)]
        + ([options.key()] if options.key() else [])).encode()).hexdigest()
    code = render_module(forward, None if parts else full, version=__version__, source_text=lowered.source_text,
                         source_name=lowered.source_name, source_hash=key[:16],
                         model_name=lowered.model_name, params=lowered.params, roles=lowered.roles,
                         description=lowered.description, parts=parts, derived=list(derived.values()),
                         options=options)
    timings = {"frontend": t1 - t0, "passes": (t4 - t1) - ad[0], "ad": ad[0], "render": clock() - t4}
    return Artifact(lowered, primal, full, code, key, timings, parts, derived)


def user_names(lowered: Lowered) -> set[str]:
    """The names a spec's author gave (its graph entries), which renumbering never changes (it
    never changes inputs and outputs either). A SymPy expression names only its arguments."""
    if lowered.source_name == "<sympy expression>":
        return set()
    try:
        graph = tomllib.loads(lowered.source_text).get("graph")
    except tomllib.TOMLDecodeError:
        return set()
    return set(graph) if isinstance(graph, dict) else set()
