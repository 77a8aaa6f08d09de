"""IR → IR passes. Each takes a :class:`~gradc.ir.Function` and returns a new one; none changes
the function, statements or values it is given (a renamed value is a new value).

* :func:`fold_constants` — evaluate ops whose operands are all constants;
* :func:`simplify` — algebraic identities (x·1, x+0, −(−x), x¹, ...);
* :func:`cse` — common-subexpression elimination;
* :func:`dce` — dead-code elimination (keeps what the outputs need);
* :func:`coalesce_aliases` — give temporaries the name of the alias that binds them;
* :func:`pool_first` — ``max_pool2d(relu(z))`` becomes ``relu(max_pool2d(z))`` (the activation
  on the pooled array; read from the op traits ``selects_max`` and ``monotone``);
* :func:`reroll` — a long sum of like scalar terms becomes a sum over constant tables (a loop);
* :func:`gradc.passes.split.split` — a large sum of unlike terms becomes parts compiled one by one
  (the pipeline differentiates each; import it from its module);
* :func:`optimize` — pool_first, then fold, simplify, CSE and DCE to a fixed point, then coalesce_aliases;
* :func:`renumber` — generated names without gaps after DCE (``h``, ``h_2``, ``h_3``, ...; the
  pipeline's last pass on each function).
"""
from __future__ import annotations

from .commute import pool_first
from .cse import cse
from .dce import dce
from .fold import fold_constants
from .rename import renumber
from .reroll import reroll
from .simplify import coalesce_aliases, simplify


def optimize(fn, max_rounds: int = 4):
    """Run pool_first, then fold, simplify, CSE and DCE until the statement count stops shrinking."""
    fn = pool_first(fn)
    for _ in range(max_rounds):
        n = len(fn.stmts)
        fn = dce(cse(simplify(fold_constants(fn))))
        if len(fn.stmts) == n:
            break
    return dce(coalesce_aliases(fn))
