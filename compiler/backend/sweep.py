"""One sweep printed (schedule, memory plan, printer), and the functions of the module.

:func:`print_sweep` runs the back end's three stages on a list of statements; a
:class:`_Function` is one function of the generated module as the template prints it.
"""
from __future__ import annotations

from ..ir import Value
from ..options import Options
from .emit import Printer, known_dims
from .memory import plan_memory
from .schedule import schedule


def print_sweep(stmts, given: list[Value], names: dict, outputs, opts: Options, tables: dict, *,
                owned=(), targets: dict | None = None) -> tuple[list[str], set, set]:
    """The lines of one sweep, the ids of the ``outputs`` that are arrays it owns, and the ids of
    the loop values it stores in arrays."""
    known = known_dims(given, names)
    items = schedule(stmts, outputs, fuse=opts.fuse, known_dims=set(known))
    plan = plan_memory(items, outputs, given=given, owned=owned, targets=set(targets or ()))
    lines = Printer(names, comments=opts.comments, tables=tables, known=known, targets=targets).sweep(items, plan)
    return lines, plan.owned & {id(v) for v in outputs}, plan.stored


def _fresh_names(base: list[str], taken: set) -> list[str]:
    out = []
    for name in base:
        while name in taken:
            name += "_"
        taken.add(name)
        out.append(name)
    return out


class _Function:
    """One function of the module: ``name(params)``, its docstring lines, body lines, decorator."""

    def __init__(self, name, params, doc, lines, jit=True, inline=False):
        self.name, self.params, self.lines, self.jit, self.inline = name, list(params), lines, jit, inline
        self.doc = [doc] if isinstance(doc, str) else doc


