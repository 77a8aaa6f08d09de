"""IR → IR passes. Each takes a :class:`~gradc.ir.Function` and returns a new one.

* :func:`fold_constants` — evaluate ops whose operands are all constants;
* :func:`simplify` — algebraic identities (x·1, x+0, −(−x), x¹, ...);
* :func:`cse` — common-subexpression elimination;
* :func:`dce` — dead-code elimination (keeps what the outputs need);
* :func:`coalesce_aliases` — give temporaries the name of the alias that binds them;
* :func:`reroll` — a long sum of like scalar terms becomes a sum over constant tables (a loop);
* :func:`gradc.passes.split.split` — a large sum of unlike terms becomes parts compiled one by one
  (the pipeline differentiates each; import it from its module);
* :func:`optimize` — all of them, to a fixed point.
"""
from __future__ import annotations

from .cse import cse
from .dce import dce
from .fold import fold_constants
from .reroll import reroll
from .simplify import coalesce_aliases, simplify


def optimize(fn, max_rounds: int = 4):
    """Run fold, simplify, CSE and DCE until the statement count stops shrinking."""
    for _ in range(max_rounds):
        n = len(fn.stmts)
        fn = dce(cse(simplify(fold_constants(fn))))
        if len(fn.stmts) == n:
            break
    return dce(coalesce_aliases(fn))
