"""Accuracy of the vectorizable elementary-function kernels (``helper_vmath`` in
``templates/ops/elementwise.j2``: ``_vexp``, ``_vtanh``, ``_vsigmoid``) against
mpmath at 50 digits, over the whole float64 range and at the edges (±0,
subnormal arguments and results, the overflow and underflow thresholds, ±inf,
NaN), for float64 and float32 arrays of several shapes and layouts.
Their speed is measured in the benchmarks, not here."""
from __future__ import annotations

import importlib.util
import math

import mpmath
import numpy as np
import pytest

from gradc.backend.emit import family as _family

mpmath.mp.dps = 50
MAX_ULP = 4.0


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vmath")
    text = "import numba\nimport numpy as np\n\n" + str(_family("elementwise").helper_vmath())
    path = folder / "vmath_kernels.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("vmath_kernels", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _ref(name, x):
    x = mpmath.mpf(float(x))
    if name == "exp":
        return mpmath.exp(x)
    if name == "tanh":
        return mpmath.tanh(x)
    return 1 / (1 + mpmath.exp(-x))


def _ulps(name, xs, got):
    """Error of each result in units of the last place of the correctly rounded value (the
    subnormal spacing below the normal range)."""
    errs = []
    for x, y in zip(xs, got):
        r = _ref(name, x)
        rounded = float(r)
        if math.isinf(rounded):
            errs.append(0.0 if y == rounded else np.inf)
            continue
        errs.append(float(abs(mpmath.mpf(float(y)) - r) / np.spacing(abs(rounded))) if rounded != 0
                    else (0.0 if y == 0 else float(abs(y) / 5e-324)))
    return np.array(errs)


_RANGES = {"exp": (-745.2, 709.8), "tanh": (-20.0, 20.0), "sigmoid": (-750.0, 750.0)}


@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid"])
def test_whole_range_within_a_few_ulp(k, name):
    rng = np.random.default_rng(1)
    lo, hi = _RANGES[name]
    xs = np.concatenate([rng.uniform(lo, hi, 3000), rng.uniform(-1.0, 1.0, 1000),
                         np.sign(rng.standard_normal(1000)) * 10.0 ** rng.uniform(-300, 0, 1000)])
    got = getattr(k, f"_v{name}")(xs)
    err = _ulps(name, xs, got)
    assert err.max() <= MAX_ULP, (xs[err.argmax()], got[err.argmax()], err.max())


@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid"])
def test_edges(k, name):
    tiny = 5e-324
    xs = np.array([0.0, -0.0, tiny, -tiny, 2.2250738585072014e-308, -2.2250738585072014e-308, 1e-300, -1e-300,
                   1e-17, -1e-17, 0.5 * math.log(2), -0.5 * math.log(2), 0.55, -0.55, 19.0, -19.0, 20.0, -20.0,
                   21.0, 40.0, -40.0, 700.0, -700.0,
                   709.782712893384, 709.7827128933841, 710.0, 1e300,            # exp overflow threshold
                   -708.3964185322641, -708.4, -740.0, -745.1332191019411,          # exp subnormal results
                   -745.1332191019412, -745.2, -746.0, -1e300,                      # exp underflows to 0
                   np.inf, -np.inf])
    got = getattr(k, f"_v{name}")(xs)
    err = _ulps(name, xs, got)
    assert err.max() <= MAX_ULP, (xs[err.argmax()], got[err.argmax()], err.max())
    # signs of zeros and exact limits as NumPy's ufuncs give them
    want = {"exp": np.exp, "tanh": np.tanh, "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v))}[name]
    with np.errstate(over="ignore"):
        ref = want(xs)
    exact = np.isinf(xs) | (xs == 0)
    np.testing.assert_array_equal(got[exact], ref[exact])
    assert np.array_equal(np.signbit(got[xs == 0]), np.signbit(ref[xs == 0]))
    assert np.isnan(getattr(k, f"_v{name}")(np.array([np.nan, -np.nan]))).all()


def test_exp_thresholds_exactly(k):
    assert k._vexp(np.array([709.782712893384]))[0] == np.exp(709.782712893384) < np.inf
    assert k._vexp(np.array([709.7827128933841]))[0] == np.inf
    assert k._vexp(np.array([-745.1332191019411]))[0] == 5e-324
    assert k._vexp(np.array([-745.1332191019412]))[0] == 0.0
    assert k._vtanh(np.array([19.1, -19.1, 1e308]))[0:3].tolist() == [1.0, -1.0, 1.0]
    assert k._vsigmoid(np.array([-745.0]))[0] == float(_ref("sigmoid", -745.0))     # a subnormal, not 0
    assert k._vsigmoid(np.array([-800.0, 800.0])).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid"])
def test_float32_shapes_and_layouts(k, name):
    f = getattr(k, f"_v{name}")
    rng = np.random.default_rng(2)
    x = rng.uniform(-20, 20, (6, 7))
    want = {"exp": np.exp, "tanh": np.tanh, "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v))}[name]
    for arr in (x, x.T, x[::2, 1:], x[0], x.reshape(2, 3, 7), np.empty((0, 3))):
        got = f(arr)
        assert got.shape == arr.shape and got.dtype == np.float64 and got.flags.c_contiguous
        np.testing.assert_allclose(got, want(arr), rtol=1e-15, atol=0)
    x32 = x.astype(np.float32)
    got = f(x32)
    assert got.dtype == np.float32
    # float32: computed in float64, rounded once: within 1 ulp of float32
    ref = want(x32.astype(np.float64)).astype(np.float32)
    assert np.max(np.abs(got.astype(np.float64) - ref) / np.spacing(np.abs(ref))) <= 1.0
