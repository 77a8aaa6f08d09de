"""Frontends: SymPy expressions (:mod:`.sympy`) and TOML model specs (:mod:`.spec`).

Both lower their input to the same primal IR and describe it with a :class:`Lowered`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Function, Value


@dataclass
class Lowered:
    """A lowered source: the primal function plus what the back end and the runtime need.

    ``fn.outputs == [value]``; ``wrt`` the inputs to differentiate (default);
    ``source_text`` is shown in the generated header; ``canonical`` is hashed
    for the cache key; ``params`` maps parameter names to initialiser options;
    ``roles`` maps argument names to a short description for docstrings
    (free text: :mod:`gradc.backend.module` escapes it).
    """

    fn: Function
    wrt: list[Value]
    source_text: str
    source_name: str
    model_name: str
    canonical: str
    params: dict = field(default_factory=dict)
    roles: dict = field(default_factory=dict)
    data_ranges: dict = field(default_factory=dict)
    #: free text for the generated module's docstring (``[model] description``); escaped by gradc.backend.module
    description: str = ""
