"""The back end: optimized SSA functions → the generated module's text.

* :mod:`.schedule` — loops as data: which statements run as fused loop nests over a shape,
  which accumulate, which scatter (:class:`~.schedule.Loop`, :class:`~.schedule.Line`);
* :mod:`.memory` — the memory plan over a schedule: which loop values are stored in arrays,
  which dead arrays they reuse, which arrays are released after a loop;
* :mod:`.emit` — the printer: a planned schedule → lines of Python, each statement through its
  op's macro in ``templates/ops/<family>.j2``; it decides nothing;
* :mod:`.checks` — the argument checks the generated entry points run;
* :mod:`.module` — assembly of the module text (``templates/module.j2``), the helpers it
  calls, its content seal.
"""
