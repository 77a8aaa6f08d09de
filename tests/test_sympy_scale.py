"""Scale: a 10,000-node SymPy expression (an unrolled sum of squares over 250 data
points, ``benchmarks/lowering.py``) compiles, its gradient matches central
differences of an independent NumPy evaluation, and lowering + AD + rendering
(:func:`gradc.pipeline.build`) takes time linear in the expression's size."""
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import compiled

from gradc.pipeline import build

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.lowering import POINT, count_nodes, fit_expression  # noqa: E402


def numpy_fit(params, n_points, seed=0):
    """The same sum of squares, written directly in NumPy (the data drawn as fit_expression draws it)."""
    a, b, c, d, e = params
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-1, 1, n_points), rng.uniform(-1, 1, n_points)
    model = (a * x ** 3 + b * x ** 2 + c * x + d) * np.exp(-e * x) \
        + np.sin(a * x + b) * np.cos(c * x - d) / (1 + e ** 2 * x ** 2)
    return np.sum((y - model) ** 2)


def test_ten_thousand_nodes_gradient_matches_central_differences():
    expr, args = fit_expression(250)
    assert count_nodes(expr) > 10_000
    f = compiled(expr, args=args)
    value, grads = f.value_and_grad(*POINT)
    assert value == pytest.approx(numpy_fit(POINT, 250), rel=1e-12)
    h = 1e-6
    for k in (0, 2, 4):
        up, down = list(POINT), list(POINT)
        up[k] += h
        down[k] -= h
        want = (numpy_fit(up, 250) - numpy_fit(down, 250)) / (2 * h)
        assert grads[k] == pytest.approx(want, rel=1e-6, abs=1e-8), args[k]


def test_lowering_time_is_linear():
    """build() at about 1k, 4k and 16k nodes (best of 3); 16k may take at most 2.5x the
    linear extrapolation from 1k. No Numba compile here."""
    times = {}
    for n in (22, 88, 352):
        expr, args = fit_expression(n)
        nodes = count_nodes(expr)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            build(expr, args=args)
            best = min(best, time.perf_counter() - t)
        times[nodes] = best
    (n1, t1), _, (n16, t16) = sorted(times.items())
    assert 900 < n1 < 1100 and 15_000 < n16 < 17_000
    assert t16 / t1 < (n16 / n1) * 2.5, times
