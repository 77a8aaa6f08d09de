"""A call that is safe and fast: every entry point, the raw Numba dispatchers included, checks
its array arguments' shapes (each fixed dimension, symbolic dimensions across arguments) inside
the jitted code and raises ``gradc.ArgumentError`` instead of reading out of bounds; the
public ``forward``/``value_and_grad`` are plain functions with the model's parameters that call
the compiled code directly and fall back to Python's checks (their precise messages) when a call
fails. A generated module imported without gradc raises its own ``ArgumentError`` (a ValueError).

What the raw dispatchers do not turn into ArgumentError (see ``gradc.Compiled``): an array of
another rank, a value Numba cannot type (a list, an arbitrary object) raises Numba's TypeError or
TypingError when it is dispatched; an array of another float dtype is computed in that dtype (a
specialization of its own, as for any Numba function); scalar arguments are not checked there.
None returns a wrong number: tested below. (Type checks inside the jitted code cost ~0.3 s of
compile time per entry point, measured on the digits MLP; the public call makes them instead.)
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
from numba.core.errors import TypingError

import gradc
from gradc import ArgumentError

from conftest import compiled

MLP = """\
[inputs]
X = { shape = ["batch", 3] }
y = { shape = ["batch"], dtype = "int64" }

[params]
W = { shape = [3, "k"], init = "glorot" }
b = { shape = ["k"] }
s = { init = "constant", value = 0.5 }

[graph]
loss = "mean(softmax_cross_entropy(X @ W + b, y)) + s * s"

[output]
value = "loss"
"""                                     # the same text as tests/test_errors.py: one Numba compile per session

TINY = """\
[model]
name = "call_tiny"

[inputs]
x = { shape = ["n"] }

[params]
w = { shape = ["n"] }

[graph]
f = "sum(tanh(w * x))"

[output]
value = "f"
"""


@pytest.fixture(scope="module")
def mlp():
    return compiled(MLP)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The tiny model written to a file of its own and loaded with gradc.load."""
    path = tmp_path_factory.mktemp("load") / "call_tiny_loaded.py"
    gradc.compile(TINY, out=path)
    return gradc.load(path)


@pytest.fixture(scope="module")
def xyz():
    x, y, z = sp.symbols("x y z")
    return compiled((x + y) * z, args=[x, y, z])


def args(n=4, k=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, 3)), rng.integers(0, k, n), rng.standard_normal((3, k)),
            rng.standard_normal(k), 0.5]


def outs(a):
    """The output arrays of raw.value_and_grad_into (W's and b's gradients)."""
    return [np.empty_like(a[2]), np.empty_like(a[3])]


def out_grads(a):
    """value_and_grad's out= (one entry per wrt argument: W, b and the scalar s)."""
    return outs(a) + [None]


# each bad call: the arguments, what the public call says, what the raw dispatchers say (None:
# Numba's own error, or the computation in another dtype: see test_what_the_raw_dispatchers_leave_to_numba)
BAD = {
    "rank": (lambda a: [a[0][None]] + a[1:], r"argument 'X': expected shape \[batch, 3\], got \(1, 4, 3\)", None),
    "length": (lambda a: [a[0][:, :2]] + a[1:], r"argument 'X': expected shape \[batch, 3\], got \(4, 2\)",
               r"argument 'X': expected shape \[batch, 3\], got \(4, 2\)"),
    "symbolic batch": (lambda a: [a[0], a[1][:3]] + a[2:],
                       r"argument 'y': expected shape \[batch\] with batch = 4 \(from 'X'\), got \(3,\)",
                       r"argument 'y': expected shape \[batch\] with batch = 4 \(from 'X'\), got \(3,\)"),
    "symbolic k": (lambda a: a[:3] + [np.zeros(6), 0.5],
                   r"argument 'b': expected shape \[k\] with k = 5 \(from 'W'\), got \(6,\)",
                   r"argument 'b': expected shape \[k\] with k = 5 \(from 'W'\), got \(6,\)"),
    "float32 for float64": (lambda a: [a[0].astype(np.float32)] + a[1:],
                            r"argument 'X': expected a float64 array, got a float32 array of shape \(4, 3\)", None),
    "float labels": (lambda a: [a[0], a[1].astype(np.float64)] + a[2:],
                     r"argument 'y': expected an int64 array, got a float64 array of shape \(4,\)", None),
    "list": (lambda a: a[:3] + [a[3].tolist(), 0.5], r"argument 'b': expected a float64 array of shape \[k\], got a list",
             None),
}


@pytest.mark.parametrize("case", BAD)
def test_the_public_call_rejects_bad_arguments_with_the_python_checks_message(mlp, case):
    change, public, _ = BAD[case]
    a = change(args())
    for name, call in [("forward", lambda: mlp.forward(*a)), ("value_and_grad", lambda: mlp.value_and_grad(*a)),
                       ("value_and_grad", lambda: mlp.value_and_grad(*a, out=out_grads(args()))),
                       ("forward", lambda: mlp.forward(**dict(zip(mlp.arg_names, a))))]:
        with pytest.raises(ArgumentError, match=f"^{name}: {public}"):
            call()


@pytest.mark.parametrize("case", [c for c in BAD if BAD[c][2]])
def test_the_raw_dispatchers_reject_bad_arguments_in_the_jitted_code(mlp, case):
    change, _, raw = BAD[case]
    a = change(args())
    for name, call in [("forward", lambda: mlp.raw.forward(*a)),
                       ("value_and_grad", lambda: mlp.raw.value_and_grad(*a)),
                       ("value_and_grad_into", lambda: mlp.raw.value_and_grad_into(*a, *outs(args()))),
                       ("forward", lambda: mlp.module.forward(*a))]:
        with pytest.raises(ArgumentError, match=f"^{name}: {raw}") as info:
            call()
        assert type(info.value).__name__ == "ArgumentError" and isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad, pattern", [
    (lambda o: [np.empty((3, 6))] + o[1:], r"argument 'W_out': expected shape \(3, 5\) \(that of 'W'\), got \(3, 6\)"),
    (lambda o: [np.empty((4, 5))] + o[1:], r"argument 'W_out': expected shape \(3, 5\) \(that of 'W'\), got \(4, 5\)"),
    (lambda o: o[:1] + [np.empty(4)], r"argument 'b_out': expected shape \(5,\) \(that of 'b'\), got \(4,\)"),
])
def test_value_and_grad_into_checks_its_output_arrays(mlp, bad, pattern):
    a = args()
    with pytest.raises(ArgumentError, match="^value_and_grad_into: " + pattern):
        mlp.raw.value_and_grad_into(*a, *bad(outs(a)))


def test_good_calls_agree_across_entry_points_positional_and_by_keyword(mlp):
    a = args()
    value, grads = mlp.raw.value_and_grad(*a)
    kw = dict(zip(mlp.arg_names, a))
    for v, g in [mlp.value_and_grad(*a), mlp.value_and_grad(**kw), mlp.value_and_grad(*a[:2], W=a[2], b=a[3], s=0.5),
                 mlp.value_and_grad(**kw, out=out_grads(a)), mlp.value_and_grad(*a, out_grads(a))]:
        assert v == value and all(np.array_equal(x, y) for x, y in zip(g, grads))
    assert mlp.forward(**kw) == mlp.raw.forward(*a) == value
    o = outs(a)
    assert mlp.raw.value_and_grad_into(*a, *o) == (value, (grads[2],)) and np.array_equal(o[0], grads[0])
    F = [np.asfortranarray(a[0])] + a[1:]                   # another layout: a specialization of its own
    assert mlp.value_and_grad(*F)[0] == pytest.approx(value, rel=1e-14)


def test_scalars_as_ints_numpy_scalars_and_0d_arrays(mlp, xyz):
    want = xyz.value_and_grad(-2.0, 5.0, -4.0)
    assert want == (-12.0, (-4.0, -4.0, 3.0))
    for call in [(-2, 5, -4), (np.float32(-2), np.int64(5), np.float64(-4)), (np.array(-2.0), 5.0, np.array(-4))]:
        got = xyz.value_and_grad(*call)
        assert got == want and type(got[0]) is float, call
    assert xyz.value_and_grad(z=-4, x=-2.0, y=np.array(5.0)) == want
    a = args()
    assert mlp.value_and_grad(*a[:4], 1)[0] == mlp.raw.value_and_grad(*a[:4], 1.0)[0]
    assert mlp.forward(*a[:4], np.array(0.5)) == mlp.raw.forward(*a)


def test_wrong_count_and_keywords(mlp, xyz):
    a = args()
    with pytest.raises(ArgumentError, match=r"^value_and_grad\(X, y, W, b, s\): takes 5 arguments, got 4"):
        mlp.value_and_grad(*a[:4])
    with pytest.raises(ArgumentError, match=r"^forward\(x, y, z\): missing argument\(s\) y"):
        xyz.forward(1.0, z=2.0)
    with pytest.raises(TypeError, match=r"takes from 0 to 3 positional arguments but 4 were given"):
        xyz.forward(1.0, 2.0, 3.0, 4.0)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'q'"):
        xyz.value_and_grad(1.0, 2.0, 3.0, q=1)
    with pytest.raises(ArgumentError, match=r"^value_and_grad: argument 'x': expected a float64 scalar, got a str"):
        xyz.value_and_grad("1", 2.0, 3.0)


def test_the_public_call_never_compiles_a_specialization_for_another_dtype(mlp):
    """Numba compiles a new specialization for any new argument types (a float32 array would
    run the float64 model in float32): the public call runs only those of the declared types."""
    a = args()
    mlp.value_and_grad(*a)
    before = list(mlp.raw.value_and_grad.signatures)
    for _ in range(2):
        with pytest.raises(ArgumentError, match="expected a float64 array, got a float32 array"):
            mlp.value_and_grad(*[a[0].astype(np.float32)] + a[1:])
        with pytest.raises(ArgumentError, match="expected an int64 array, got an int32 array"):
            mlp.value_and_grad(*[a[0], a[1].astype(np.int32)] + a[2:])
    assert mlp.raw.value_and_grad.signatures == before


def test_what_the_raw_dispatchers_leave_to_numba(mlp, xyz):
    """Documented limits of the raw dispatchers: never a silently wrong number."""
    a = args()
    with pytest.raises((TypeError, TypingError)):
        mlp.raw.value_and_grad(a[0].tolist(), *a[1:])                 # a nested list: Numba cannot type it
    with pytest.raises(TypingError):
        mlp.raw.value_and_grad(a[0][None], *a[1:])                    # another rank: the body does not type
    # another float dtype mixed with the declared one: a matrix product of float32 with float64
    # does not type in Numba, so raw raises rather than computing
    with pytest.raises(TypingError, match="same dtype"):
        mlp.raw.value_and_grad(a[0].astype(np.float32), *a[1:])
    with pytest.raises(TypingError, match="non-precise type pyobject"):
        mlp.raw.forward(object(), *a[1:])
    with pytest.raises(TypingError):
        xyz.raw.value_and_grad("1", 2.0, 3.0)                         # scalars are not checked by raw
    # a float64 array where float32 is declared: the code runs in float64 (gradcheck relies on it)
    f32 = compiled(MLP.replace('X = { shape = ["batch", 3] }', 'X = { shape = ["batch", 3], dtype = "float32" }')
                   .replace('W = { shape = [3, "k"], init = "glorot" }',
                            'W = { shape = [3, "k"], dtype = "float32", init = "glorot" }'))
    assert f32.raw.forward(*a) == pytest.approx(mlp.forward(*a), rel=1e-14)
    with pytest.raises(ArgumentError, match="expected a float32 array, got a float64 array"):
        f32.forward(*a)


def test_a_module_loaded_with_gradc_load(loaded):
    x, w = np.linspace(-1, 1, 4), np.full(4, 0.3)
    assert loaded.forward(x, w) == pytest.approx(np.sum(np.tanh(w * x)), rel=1e-14)
    for call in (loaded.forward, loaded.value_and_grad, loaded.raw.forward, loaded.raw.value_and_grad):
        with pytest.raises(ArgumentError, match=r"argument 'w': expected shape \[n\] with n = 4 \(from 'x'\), got \(3,\)"):
            call(x, w[:3])
    for call in (loaded.forward, loaded.value_and_grad):             # types: the public call's checks
        with pytest.raises(ArgumentError, match=r"argument 'x': expected .*float64 array"):
            call(x.astype(np.float32), w)
        with pytest.raises(ArgumentError, match=r"argument 'x': expected .*shape \[n\]"):
            call(x[None], w)
    with pytest.raises(ArgumentError, match=r"argument 'w_out': expected shape \(4,\) \(that of 'w'\), got \(3,\)"):
        loaded.raw.value_and_grad_into(x, w, np.empty(3))


STANDALONE = """\
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location({name!r}, {path!r})
m = importlib.util.module_from_spec(spec)
sys.modules[{name!r}] = m
spec.loader.exec_module(m)
x = np.ones(4)
print(m.forward(x, x))
try:
    m.value_and_grad(x, np.ones(3))
except m.ArgumentError as e:
    print(type(e).__module__, isinstance(e, ValueError), "gradc" in sys.modules, e)
print(m.value_and_grad.stats.cache_hits.total())
"""


def _standalone(path):
    script = STANDALONE.format(name=path.stem, path=str(path))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_imported_without_gradc_the_module_raises_its_own_argument_error(loaded):
    """Run after gradc compiled and cached the module: the cached machine code refers to the
    class by the module's name, so it raises the standalone module's own ArgumentError."""
    x = np.ones(4)
    with pytest.raises(ArgumentError):
        loaded.raw.value_and_grad(x, np.ones(3))          # compiled (and cached) under gradc first
    value, line, hits = _standalone(loaded.path)
    value = float(value)
    assert value == pytest.approx(4 * np.tanh(1.0))
    assert line == f"{loaded.path.stem} True False value_and_grad: the arguments x w have shapes ((4,), (3,)) " \
                   "(see SHAPES)"
    assert int(hits) >= 1                                  # the code gradc's process cached


def test_code_cached_by_a_standalone_import_raises_gradc_argument_error(tmp_path, loaded):
    path = tmp_path / "call_tiny_copy.py"
    shutil.copy(loaded.path, path)
    lines = _standalone(path)                              # compiles and caches it without gradc
    assert lines[1].startswith("call_tiny_copy True False ") and lines[2] == "0"
    c = gradc.load(path)
    with pytest.raises(ArgumentError, match=r"^value_and_grad: argument 'w': expected shape \[n\]") as info:
        c.raw.value_and_grad(np.ones(4), np.ones(3))
    assert isinstance(info.value, ValueError) and type(info.value) is c.module.ArgumentError
    assert c.raw.value_and_grad.stats.cache_hits.total() >= 1 and not c.raw.value_and_grad.stats.cache_misses


def test_plain_importlib_in_this_process(tmp_path, loaded):
    """The module's own class, and its _call_ functions, without gradc's loader."""
    path = tmp_path / "call_tiny_plain.py"
    shutil.copy(loaded.path, path)
    spec = importlib.util.spec_from_file_location("call_tiny_plain", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    assert issubclass(m.ArgumentError, ValueError) and not issubclass(m.ArgumentError, gradc.GradcError)
    x = np.ones(4)
    with pytest.raises(m.ArgumentError, match=r"^forward: the arguments x w have shapes \(\(4,\), \(3,\)\)"):
        m._call_forward(x, np.ones(3))
    assert m._call_value_and_grad(w=x, x=x)[0] == pytest.approx(4 * np.tanh(1.0))
    with pytest.raises(TypeError, match="out= needs gradc"):
        m._call_value_and_grad(x, x, out=(np.empty(4),))


def test_a_module_without_call_functions_still_gets_checked_calls(tmp_path, loaded):
    """A module written by an older gradc (no _call_ functions): Python's checks on every call."""
    text = loaded.path.read_text()
    path = tmp_path / "call_tiny_old.py"
    path.write_text(text[:text.index("\n\ndef _call_forward(")] + "\n")
    c = gradc.load(path, verify=False)
    assert not hasattr(c.module, "_call_forward")
    x = np.ones(4)
    assert c.value_and_grad(x, w=x)[0] == c.forward(x, x) == pytest.approx(4 * np.tanh(1.0))
    with pytest.raises(ArgumentError, match=r"^forward: argument 'w': expected shape \[n\] with n = 4"):
        c.forward(x, np.ones(3))
    g = np.empty(4)
    assert c.value_and_grad(x, x, out=(g,))[1][0] is g
