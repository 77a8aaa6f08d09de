"""Shared test setup.

Generated modules go to one cache folder per test session (or to
``$GRADC_TEST_CACHE`` to keep Numba's machine code between local runs), and
compiled modules are shared across tests through :func:`compiled`, so each
distinct source is compiled by Numba at most once per session.
"""
from __future__ import annotations

import ast
import os
import tempfile

import numpy as np
import pytest

try:
    from hypothesis import HealthCheck, settings
except ImportError:                     # hypothesis comes with the test extra; only test_properties needs it
    settings = None
else:
    # Property tests (tests/test_properties.py) compile one Numba module per example, so the
    # default profile is small and reproducible; HYPOTHESIS_PROFILE=thorough runs hundreds.
    settings.register_profile("ci", max_examples=20, derandomize=True, database=None, deadline=None,
                              print_blob=True, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("thorough", max_examples=300, deadline=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    os.environ["GRADC_CACHE_DIR"] = os.environ.get("GRADC_TEST_CACHE") or tempfile.mkdtemp(prefix="gradc-test-")


_COMPILED: dict = {}


def compiled(source, **kw):
    """``gradc.compile`` memoised per session on (source, options)."""
    import gradc

    key = (str(source) if not hasattr(source, "free_symbols") else __import__("sympy").srepr(source),
           repr(sorted(kw.items(), key=lambda x: x[0])))
    if key not in _COMPILED:
        _COMPILED[key] = gradc.compile(source, **kw)
    return _COMPILED[key]


@pytest.fixture(scope="session")
def compile_cached():
    return compiled


def assert_module_inert(text: str) -> None:
    """A generated module's top level: a docstring, the numba/numpy imports, literal
    assignments, function definitions (decorated to be jitted or Numba typing templates, or plain)
    and the fixed definition of the module's own ArgumentError -- nothing that runs code on import;
    no call of a builtin that runs or imports code anywhere; no line-breaking control characters."""
    from gradc.backend.checks import ARGUMENT_ERROR

    tree = ast.parse(text)
    assert isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant)
    fixed = ast.dump(ast.parse(ARGUMENT_ERROR).body[0])      # `if "ArgumentError" not in globals(): class ...`
    body = [node for node in tree.body[1:] if ast.dump(node) != fixed]
    for node in body:
        if isinstance(node, ast.Import):
            assert [a.name for a in node.names] in (["numba"], ["numpy"])
        elif isinstance(node, ast.Assign):
            ast.literal_eval(node.value)
        else:
            assert isinstance(node, ast.FunctionDef), ast.dump(node)[:200]
            # numba.njit(...), or the template's fixed LLVM intrinsic (a bitcast helper of the exp kernels)
            for dec in node.decorator_list:
                assert ast.unparse(dec).startswith("numba.njit(") or ast.unparse(dec) == "numba.extending.intrinsic"
    for node in (n for top in body for n in ast.walk(top)):
        if isinstance(node, ast.Name):
            assert node.id not in ("eval", "exec", "compile", "__import__", "open", "getattr", "globals")
    for line in text.split("\n"):
        assert "\r" not in line and "\x0c" not in line and "\x00" not in line


def central(f, args, i, h=1e-6):
    """Central differences of the scalar ``f`` w.r.t. argument ``i`` (an array or a float)."""
    a = args[i]
    if np.ndim(a) == 0:
        p, m = list(args), list(args)
        p[i], m[i] = a + h, a - h
        return (f(*p) - f(*m)) / (2 * h)
    g = np.zeros(a.shape)
    for j in np.ndindex(a.shape):
        p, m = list(args), list(args)
        p[i], m[i] = a.copy(), a.copy()
        p[i][j] += h
        m[i][j] -= h
        g[j] = (f(*p) - f(*m)) / (2 * h)
    return g
