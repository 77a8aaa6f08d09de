"""Dead-code elimination: drop statements no output depends on."""
from __future__ import annotations


def dce(fn):
    live = {id(v) for v in fn.outputs}
    kept = []
    for s in reversed(fn.stmts):
        if id(s.out) in live:
            kept.append(s)
            live.update(id(a) for a in s.args)
    kept.reverse()
    return fn.replace(kept)
