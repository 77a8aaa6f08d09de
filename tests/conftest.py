"""Shared test setup.

Generated modules go to one cache folder per test session (or to
``$GRADC_TEST_CACHE`` to keep Numba's machine code between local runs), and
compiled modules are shared across tests through :func:`compiled`, so each
distinct source is compiled by Numba at most once per session.
"""
from __future__ import annotations

import os
import tempfile

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
