"""Numba's on-disk cache of a generated module must load in any process.

Numba records the name a module was imported under in its cached machine code
and re-imports that name when it loads the cache. A process in which the
file's stem is taken imports the file under a path-derived fallback name; a
later process that imports it under its stem must still load that cache.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import gradc

PICK = """
[inputs]
s = { shape = ["batch", 3] }
y = { shape = ["batch"], dtype = "int64" }
[graph]
v = "sum(pick(s, y))"
[output]
value = "v"
wrt = ["s"]
"""


def test_a_cache_written_under_the_fallback_name_loads_in_another_process(tmp_path):
    path = tmp_path / "pick_mod.py"
    gradc.compile(PICK, out=path)           # its helper functions (_pick...) need the module's globals
    call = textwrap.dedent(f"""
        import numpy as np, gradc
        c = gradc.load({str(path)!r})
        value, (g,) = c.value_and_grad(np.ones((2, 3)), np.array([0, 2]))
        print(value, g.sum())
    """)
    taken = "import sys, types; sys.modules['pick_mod'] = types.ModuleType('pick_mod')\n"
    for prelude in (taken, ""):             # first writes Numba's cache, then loads it
        run = subprocess.run([sys.executable, "-c", prelude + call], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == ["2.0", "2.0"]
    assert list(tmp_path.glob("__pycache__/pick_mod.value_and_grad-*.nbi"))
