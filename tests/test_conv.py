"""Convolutional ops (issue 13): conv2d, max/avg/global pooling, reshape/flatten, softmax/log_softmax.

Oracles, all independent of gradc:

* values: naive NumPy loops written here from PyTorch's definitions (``torch.nn.functional``:
  ``conv2d`` is a cross-correlation with zero padding, ``Ho = ⌊(H + 2p − d(k − 1) − 1)/s⌋ + 1``,
  ``padding="same"`` pads ``d(k − 1)/2`` on each side; ``max_pool2d`` pads with −∞;
  ``avg_pool2d`` divides by ``kh·kw`` with the padding counted, ``count_include_pad=True``;
  softmax ``exp(x_i)/Σ_j exp(x_j)`` along one axis), one output element at a time;
* gradients (``value_and_grad``): central finite differences of the compiled ``forward``, at
  points checked to be away from the max pool's kinks (the top two entries of every window
  differ by far more than the step);
* JVP: central differences of ``forward`` (every output) along the tangent; HVP: central
  differences of ``value_and_grad`` along v;
* the max pool at ties: the gradient goes to the *first* maximum of each window in row-major
  order (summed where windows overlap), written out by the loop reference;
* bad input: the error names the spec's place ``file:line:col``.

Shapes: a hand-written spec covering every listed case, and specs of random geometry (seeded),
each with several graph entries summed into one loss, so each compiles Numba once.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from gradc import ShapeError, SpecError
from gradc.pipeline import build

from conftest import compiled


# ================================================================== naive references
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_conv2d(x, W, b=None, stride=1, padding=0, dilation=1):
    """y[n, o, p, q] = b[o] + Σ_{c,i,j} W[o, c, i, j] x[n, c, p sh − ph + i dh, q sw − pw + j dw]."""
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    N, C, H, Wd = x.shape
    O, C2, kh, kw = W.shape
    assert C == C2
    if padding == "same":
        assert (sh, sw) == (1, 1) and dh * (kh - 1) % 2 == 0 and dw * (kw - 1) % 2 == 0
        ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    else:
        ph, pw = _pair(padding)
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (Wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((N, O, Ho, Wo))
    for n in range(N):
        for o in range(O):
            for p in range(Ho):
                for q in range(Wo):
                    acc = 0.0 if b is None else b[o]
                    for c in range(C):
                        for i in range(kh):
                            for j in range(kw):
                                hi, wi = p * sh - ph + i * dh, q * sw - pw + j * dw
                                if 0 <= hi < H and 0 <= wi < Wd:
                                    acc += W[o, c, i, j] * x[n, c, hi, wi]
                    y[n, o, p, q] = acc
    return y


def _windows(shape, k, stride, padding):
    """For each output position (n, c, p, q): the in-image positions of its window, row-major."""
    kh, kw = _pair(k)
    sh, sw = _pair(stride if stride is not None else k)
    ph, pw = _pair(padding)
    N, C, H, W = shape
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    out = {}
    for n in range(N):
        for c in range(C):
            for p in range(Ho):
                for q in range(Wo):
                    out[n, c, p, q] = [(n, c, p * sh - ph + i, q * sw - pw + j) for i in range(kh) for j in range(kw)
                                       if 0 <= p * sh - ph + i < H and 0 <= q * sw - pw + j < W]
    return (N, C, Ho, Wo), out


def ref_max_pool2d(x, k, stride=None, padding=0):
    """The maximum of each window (the padding is −∞) and the position of its first maximum."""
    shape, wins = _windows(x.shape, k, stride, padding)
    y, where = np.zeros(shape), {}
    for pos, win in wins.items():
        best = win[0]
        for idx in win[1:]:
            if x[idx] > x[best]:          # strictly greater: the first maximum wins a tie
                best = idx
        y[pos], where[pos] = x[best], best
    return y, where


def ref_max_pool2d_vjp(g, x, k, stride=None, padding=0):
    """g routed to the first maximum of each window, summed where windows overlap."""
    _, where = ref_max_pool2d(x, k, stride, padding)
    dx = np.zeros(x.shape)
    for pos, idx in where.items():
        dx[idx] += g[pos]
    return dx


def max_pool_gap(x, k, stride=None, padding=0):
    """The smallest distance between the largest and the second largest entry of a window."""
    _, wins = _windows(x.shape, k, stride, padding)
    gaps = [np.inf]
    for win in wins.values():
        v = sorted((x[i] for i in win), reverse=True)
        if len(v) > 1:
            gaps.append(v[0] - v[1])
    return min(gaps)


def ref_avg_pool2d(x, k, stride=None, padding=0):
    kh, kw = _pair(k)
    shape, wins = _windows(x.shape, k, stride, padding)
    y = np.zeros(shape)
    for pos, win in wins.items():
        y[pos] = sum(x[i] for i in win) / (kh * kw)         # count_include_pad=True
    return y


def ref_global_avg_pool2d(x):
    N, C, H, W = x.shape
    y = np.zeros((N, C))
    for n in range(N):
        for c in range(C):
            y[n, c] = sum(x[n, c, i, j] for i in range(H) for j in range(W)) / (H * W)
    return y


def ref_softmax(x, axis=-1, log=False):
    """Along ``axis``, one line at a time: exp(x_i) / Σ_j exp(x_j) (or its log), with math.exp of
    the entries shifted by the line's maximum (the shift cancels)."""
    import math

    moved = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    out = np.empty(moved.shape)
    for idx in np.ndindex(moved.shape[:-1]):
        line = [float(v) for v in moved[idx]]
        m = max(line)
        s = sum(math.exp(v - m) for v in line)
        out[idx] = [(v - m - math.log(s)) if log else math.exp(v - m) / s for v in line]
    return np.moveaxis(out, -1, axis)


def ref_flatten(x, start=1):
    """C order, written as a loop over the flat index."""
    tail = int(np.prod(x.shape[start:]))
    out = np.empty(x.shape[:start] + (tail,))
    for idx in np.ndindex(x.shape):
        flat = 0
        for d, i in zip(x.shape[start:], idx[start:]):
            flat = flat * d + i
        out[idx[:start] + (flat,)] = x[idx]
    return out


# ================================================================== tests' helpers
def spec_text(inputs: dict, graph: dict, value: str, outputs: list) -> str:
    """A spec: every input differentiated; ``graph`` name -> expression (in order)."""
    shape = lambda s: "[" + ", ".join(f'"{d}"' if isinstance(d, str) else str(d) for d in s) + "]"  # noqa: E731
    lines = ["[model]", 'name = "conv_test"', "", "[inputs]"]
    lines += [f"{n} = {{ shape = {shape(s)} }}" for n, s in inputs.items()]
    lines += ["", "[graph]"] + [f'{n} = "{e}"' for n, e in graph.items()]
    lines += ["", "[output]", f'value = "{value}"', "outputs = [" + ", ".join(f'"{o}"' for o in outputs) + "]",
              "wrt = [" + ", ".join(f'"{n}"' for n in inputs) + "]", ""]
    return "\n".join(lines)


def central(f, args, i, h=1e-6):
    """Central differences of the scalar ``f`` w.r.t. the array argument ``i``."""
    g = np.zeros(args[i].shape)
    for j in np.ndindex(args[i].shape):
        p, m = list(args), list(args)
        p[i], m[i] = args[i].copy(), args[i].copy()
        p[i][j] += h
        m[i][j] -= h
        g[j] = (f(*p) - f(*m)) / (2 * h)
    return g


def check_gradients(c, args, rtol=1e-6):
    value, grads = c.value_and_grad(*args)
    assert value == pytest.approx(c.forward(*args)[0], rel=1e-14)
    loss = lambda *a: c.forward(*a)[0]          # noqa: E731
    scale = max(1.0, max(float(np.max(np.abs(g))) for g in grads))
    for i, (name, g) in enumerate(zip(c.arg_names, grads)):
        assert g.shape == args[i].shape, name
        fd = central(loss, args, i)
        np.testing.assert_allclose(g, fd, rtol=rtol, atol=rtol * scale, err_msg=f"d/d{name}")
    return value, grads


def check_jvp_hvp(c, args, rng, h=1e-5):
    """jvp: (value, outputs) and their tangents == forward and its central differences along t;
    hvp == central differences of value_and_grad's gradients along v."""
    t = tuple(rng.standard_normal(a.shape) for a in args)
    primal, tangent = c.jvp(*args, t)
    fwd = c.forward(*args)
    plus = c.forward(*[a + h * u for a, u in zip(args, t)])
    minus = c.forward(*[a - h * u for a, u in zip(args, t)])
    assert len(primal) == len(tangent) == len(fwd)
    for k, (p, d, f, fp, fm) in enumerate(zip(primal, tangent, fwd, plus, minus)):
        np.testing.assert_allclose(p, f, rtol=1e-13, atol=1e-13, err_msg=f"jvp's primal output {k}")
        fd = (np.asarray(fp) - np.asarray(fm)) / (2 * h)
        scale = max(1.0, float(np.max(np.abs(fd))))
        np.testing.assert_allclose(d, fd, rtol=1e-6, atol=1e-6 * scale, err_msg=f"jvp's tangent of output {k}")
    Hv = c.hvp(*args, t)
    gp = c.value_and_grad(*[a + h * u for a, u in zip(args, t)])[1]
    gm = c.value_and_grad(*[a - h * u for a, u in zip(args, t)])[1]
    for name, got, a, b in zip(c.wrt, Hv, gp, gm):
        fd = (a - b) / (2 * h)
        scale = max(1.0, float(np.max(np.abs(fd))))
        np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-6 * scale, err_msg=f"(H v) for {name}")


def draw(rng, inputs, n, pools=()):
    """Inputs of batch ``n`` (standard normal); redrawn until every max pool ``(name, k, stride,
    padding)`` has a gap of more than 1e-3 between the top two entries of each window (then
    central differences with step 1e-6 or 1e-5 never cross its kink)."""
    for _ in range(100):
        args = {k: rng.standard_normal(tuple(n if d == "n" else d for d in s)) for k, s in inputs.items()}
        if all(max_pool_gap(args[x], *geom) > 1e-3 for x, *geom in pools):
            return args
    raise AssertionError("no point away from the max pool's kinks")


# ================================================================== a hand-written spec: every case
#  X: C_in = 2, non-square 7 x 6; X1: C_in = 1; Z: softmax along several axes. (Each distinct
#  geometry of a conv or pool call costs its own Numba specialization of the helpers, seconds each:
#  the cases are chosen to cover the list with few of them.)
FIXED_INPUTS = {"X": ("n", 2, 7, 6), "X1": ("n", 1, 5, 5), "Z": ("n", 3, 4),
                "Wb": (3, 2, 2, 3), "bb": (3,), "Wc": (2, 1, 3, 2)}
#: name -> (expression, reference of the argument dict)
FIXED = {
    "y2": ("conv2d(X, Wb, bb, stride=(2, 1), padding=(1, 2), dilation=(2, 1))",
           lambda a: ref_conv2d(a["X"], a["Wb"], a["bb"], stride=(2, 1), padding=(1, 2), dilation=(2, 1))),
    "y3": ("conv2d(X1, Wc, padding='same', dilation=2)",
           lambda a: ref_conv2d(a["X1"], a["Wc"], padding="same", dilation=2)),
    "p1": ("max_pool2d(X, 3, stride=1, padding=1)", lambda a: ref_max_pool2d(a["X"], 3, 1, 1)[0]),
    "p2": ("max_pool2d(X1, (2, 3), padding=(1, 0))", lambda a: ref_max_pool2d(a["X1"], (2, 3), None, (1, 0))[0]),
    "p4": ("avg_pool2d(X, 3, stride=2, padding=1)", lambda a: ref_avg_pool2d(a["X"], 3, 2, 1)),
    "p5": ("avg_pool2d(X1, (2, 3), padding=(1, 0))", lambda a: ref_avg_pool2d(a["X1"], (2, 3), None, (1, 0))),
    "g1": ("global_avg_pool2d(X)", lambda a: ref_global_avg_pool2d(a["X"])),
    "g2": ("global_avg_pool2d(y3)",
           lambda a: ref_global_avg_pool2d(ref_conv2d(a["X1"], a["Wc"], padding="same", dilation=2))),
    "r1": ("reshape(X, (-1, 12, 7))", lambda a: a["X"].reshape(-1, 12, 7)),
    "r2": ("flatten(X)", lambda a: ref_flatten(a["X"])),
    "r3": ("flatten(X, start=2)", lambda a: ref_flatten(a["X"], 2)),
    "r4": ("reshape(flatten(X1), (-1, 5, 5))", lambda a: a["X1"][:, 0]),
    "s1": ("softmax(Z)", lambda a: ref_softmax(a["Z"])),
    "s2": ("softmax(Z, axis=1)", lambda a: ref_softmax(a["Z"], 1)),
    "s3": ("softmax(Z, axis=0)", lambda a: ref_softmax(a["Z"], 0)),
    "s4": ("log_softmax(Z)", lambda a: ref_softmax(a["Z"], -1, log=True)),
    "s5": ("log_softmax(Z, axis=-2)", lambda a: ref_softmax(a["Z"], -2, log=True)),
    "s6": ("softmax(y2, axis=1)",
           lambda a: ref_softmax(ref_conv2d(a["X"], a["Wb"], a["bb"], (2, 1), (1, 2), (2, 1)), 1)),
}
FIXED_POOLS = [("X", 3, 1, 1), ("X1", (2, 3), None, (1, 0))]
#: a smooth, non-linear loss of every entry, each entry its own weight
FIXED_LOSS = (" + ".join(f"sum({k} * {k})" for k in FIXED if k[0] in "ypgr")
              + " + sum(s1 * s2) + sum(s3 * s3) + sum(s4 * s4) + sum(s5 * s5) + sum(s6 * y2)")


@pytest.fixture(scope="module")
def fixed():
    graph = {k: e for k, (e, _) in FIXED.items()}
    graph["loss"] = FIXED_LOSS
    return compiled(spec_text(FIXED_INPUTS, graph, "loss", list(FIXED)))


def _loss_ref(a):
    outs = {k: ref(a) for k, (_, ref) in FIXED.items()}
    total = sum(np.sum(v * v) for k, v in outs.items() if k[0] in "ypgr")
    return total + np.sum(outs["s1"] * outs["s2"]) + np.sum(outs["s3"] ** 2) + np.sum(outs["s4"] ** 2) \
        + np.sum(outs["s5"] ** 2) + np.sum(outs["s6"] * outs["y2"])


@pytest.mark.parametrize("n", [1, 3])
def test_fixed_values_match_the_loop_references(fixed, n):
    rng = np.random.default_rng(10 + n)
    a = draw(rng, FIXED_INPUTS, n, FIXED_POOLS)
    args = [a[k] for k in fixed.arg_names]
    loss, *outs = fixed.forward(*args)
    assert len(outs) == len(FIXED)
    for (name, (expr, ref)), got in zip(FIXED.items(), outs):
        want = ref(a)
        assert np.shape(got) == want.shape, f"{name} = {expr}: shape {np.shape(got)}, want {want.shape}"
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"{name} = {expr}")
    assert loss == pytest.approx(_loss_ref(a), rel=1e-12)


def test_fixed_output_shapes_follow_pytorch(fixed):
    """The sizes PyTorch gives (worked out by hand for these geometries)."""
    rng = np.random.default_rng(0)
    a = draw(rng, FIXED_INPUTS, 2)
    _, *outs = fixed.forward(*[a[k] for k in fixed.arg_names])
    shapes = dict(zip(FIXED, (np.shape(o) for o in outs)))
    assert shapes["y2"] == (2, 3, 4, 8)          # ⌊(7 + 2 − 2·1 − 1)/2⌋ + 1, (6 + 4 − 2 − 1) + 1
    assert shapes["y3"] == (2, 2, 5, 5)          # "same"
    assert shapes["p1"] == (2, 2, 7, 6) and shapes["p2"] == (2, 1, 3, 1)
    assert shapes["p4"] == (2, 2, 4, 3) and shapes["p5"] == (2, 1, 3, 1)
    assert shapes["g1"] == (2, 2) and shapes["g2"] == (2, 2) and shapes["r1"] == (2, 12, 7)
    assert shapes["r2"] == (2, 84) and shapes["r3"] == (2, 2, 42) and shapes["r4"] == (2, 5, 5)


@pytest.mark.parametrize("n", [1, 2])
def test_fixed_gradients_match_finite_differences(fixed, n):
    rng = np.random.default_rng(20 + n)
    a = draw(rng, FIXED_INPUTS, n, FIXED_POOLS)
    check_gradients(fixed, [a[k] for k in fixed.arg_names])


#: forward mode: one convolution, a max pool and an average pool over it, a softmax
JVP_INPUTS = {"X": ("n", 2, 5, 6), "K": (3, 2, 2, 3), "c": (3,)}
JVP_GRAPH = {"y": "conv2d(X, K, c, stride=(1, 2), padding=1)", "m": "max_pool2d(y, 2, stride=1, padding=1)",
             "v": "avg_pool2d(y, 3, padding=1)", "s": "log_softmax(flatten(m), axis=-1)",
             "loss": "sum(y * y) + sum(m * m) + sum(sin(v)) + sum(s * s) + sum(global_avg_pool2d(m) * global_avg_pool2d(v))"}


def test_jvp_and_hvp_match_differences():
    c = compiled(spec_text(JVP_INPUTS, JVP_GRAPH, "loss", ["y", "m", "s"]), derivatives=["jvp", "hvp"])
    rng = np.random.default_rng(30)
    for n in (1, 2):
        for _ in range(100):              # away from the max pool's kinks (of y, not of X)
            a = draw(rng, JVP_INPUTS, n)
            y = ref_conv2d(a["X"], a["K"], a["c"], (1, 2), 1)
            if max_pool_gap(y, 2, 1, 1) > 1e-2:
                break
        # the step 1e-5 along a standard normal tangent moves y by ~1e-4: never across a kink
        check_jvp_hvp(c, [a[k] for k in c.arg_names], rng)


# ================================================================== random geometries (seeded)
def random_case(seed: int):
    """A spec of random image size, channels, kernel, stride, padding, dilation and pooling; its
    inputs, graph entries with their references, and the max pools (for the kink check)."""
    rng = np.random.default_rng(seed)
    ri = lambda lo, hi: int(rng.integers(lo, hi + 1))        # noqa: E731
    C, H, W, O = ri(1, 3), ri(4, 8), ri(4, 8), ri(1, 3)
    kh, kw = ri(1, 3), ri(1, 3)
    sh, sw = ri(1, 2), ri(1, 3)
    dh, dw = ri(1, 2), ri(1, 2)
    ph, pw = ri(0, 2), ri(0, 1)
    while dh * (kh - 1) + 1 > H + 2 * ph or dw * (kw - 1) + 1 > W + 2 * pw:
        dh, dw = 1, 1
    pk = (ri(2, 3), ri(1, 3))                                          # a pool window, overlapping
    ps = (ri(1, pk[0]), ri(1, pk[1]))
    pp = (ri(0, pk[0] // 2), ri(0, pk[1] // 2))
    ax = ri(-4, 3)
    inputs = {"X": ("n", C, H, W), "K": (O, C, kh, kw), "c": (O,), "S": ("n", ri(1, 3), ri(2, 4))}
    geom = f"stride=({sh}, {sw}), padding=({ph}, {pw}), dilation=({dh}, {dw})"
    conv = lambda a: ref_conv2d(a["X"], a["K"], a["c"], (sh, sw), (ph, pw), (dh, dw))   # noqa: E731
    cases = {
        "y": (f"conv2d(X, K, c, {geom})", conv),
        "m": (f"max_pool2d(X, {pk}, stride={ps}, padding={pp})", lambda a: ref_max_pool2d(a["X"], pk, ps, pp)[0]),
        "v": (f"avg_pool2d(X, {pk}, stride={ps}, padding={pp})", lambda a: ref_avg_pool2d(a["X"], pk, ps, pp)),
        "g": ("global_avg_pool2d(y)", lambda a: ref_global_avg_pool2d(conv(a))),
        "f": ("flatten(y)", lambda a: ref_flatten(conv(a))),
        "s": (f"softmax(y, axis={ax})", lambda a: ref_softmax(conv(a), ax)),
        "l": (f"log_softmax(S, axis={ax % 3 - 3})", lambda a: ref_softmax(a["S"], ax % 3 - 3, log=True)),
    }
    pools = [("X", pk, ps, pp)]
    return inputs, cases, pools


SEEDS = [1, 2]


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def random_spec(request):
    inputs, cases, pools = random_case(request.param)
    graph = {k: e for k, (e, _) in cases.items()}
    graph["loss"] = "sum(y * y) + sum(m * m) + sum(cos(v)) + sum(g * g) + sum(sin(f)) + sum(s * s) + sum(sin(l))"
    return request.param, inputs, cases, pools, compiled(spec_text(inputs, graph, "loss", list(cases)))


def test_random_geometry_values_and_gradients(random_spec):
    seed, inputs, cases, pools, c = random_spec
    rng = np.random.default_rng(100 + seed)
    for n in (1, 2):
        a = draw(rng, inputs, n, pools)
        args = [a[k] for k in c.arg_names]
        _, *outs = c.forward(*args)
        for (name, (expr, ref)), got in zip(cases.items(), outs):
            want = ref(a)
            assert np.shape(got) == want.shape, f"{name} = {expr}: shape {np.shape(got)}, want {want.shape}"
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"{name} = {expr}")
        check_gradients(c, args)


# ================================================================== the max pool's ties
# b and e tile the image (stride = kernel, no padding), leaving a row (b) and two columns (e)
# outside every window; b's 2 x 2 windows take the unrolled one-pass adjoint, e, a and d (which
# overlap or pad) the general one
TIES = spec_text({"X": ("n", 2, 5, 6), "R1": ("n", 2, 5, 6), "R2": ("n", 2, 2, 3), "R3": ("n", 2, 3, 3),
                  "R4": ("n", 2, 2, 1)},
                 {"a": "max_pool2d(X, 3, stride=1, padding=1)", "b": "max_pool2d(X, 2)",
                  "d": "max_pool2d(X, (3, 2), stride=(2, 3), padding=(1, 1))",
                  "e": "max_pool2d(X, (2, 4), stride=(2, 4))",
                  "loss": "sum(R1 * a) + sum(R2 * b) + sum(R3 * d) + sum(R4 * e)"}, "loss", ["a", "b", "d", "e"])


def test_max_pool_ties_route_to_the_first_maximum_in_row_major_order():
    c = compiled(TIES)
    rng = np.random.default_rng(7)
    for X in (np.zeros((2, 2, 5, 6)),                                # every window all ties
              rng.integers(0, 2, (2, 2, 5, 6)).astype(float),        # many ties of 0 and 1
              rng.integers(-2, 3, (1, 2, 5, 6)).astype(float)):
        n = X.shape[0]
        R1, R2, R3, R4 = (rng.standard_normal((n, 2) + s) for s in ((5, 6), (2, 3), (3, 3), (2, 1)))
        loss, a, b, d, e = c.forward(X, R1, R2, R3, R4)
        np.testing.assert_array_equal(a, ref_max_pool2d(X, 3, 1, 1)[0])
        np.testing.assert_array_equal(b, ref_max_pool2d(X, 2)[0])
        np.testing.assert_array_equal(d, ref_max_pool2d(X, (3, 2), (2, 3), (1, 1))[0])
        np.testing.assert_array_equal(e, ref_max_pool2d(X, (2, 4))[0])
        _, (gX, g1, g2, g3, g4) = c.value_and_grad(X, R1, R2, R3, R4)
        want = (ref_max_pool2d_vjp(R1, X, 3, 1, 1) + ref_max_pool2d_vjp(R2, X, 2)
                + ref_max_pool2d_vjp(R3, X, (3, 2), (2, 3), (1, 1)) + ref_max_pool2d_vjp(R4, X, (2, 4)))
        np.testing.assert_allclose(gX, want, rtol=1e-13, atol=1e-13)
        np.testing.assert_array_equal(g1, a)
    # written out: one image of ties, X = 0 everywhere; 2 x 2 windows: all of g at each window's top left
    X = np.zeros((1, 1, 5, 6)).repeat(2, axis=1)
    R2 = np.arange(1.0, 13.0).reshape(1, 2, 2, 3)
    _, (gX, *_) = c.value_and_grad(X, np.zeros_like(X), R2, np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 2, 1)))
    want = np.zeros_like(X)
    want[0, :, 0:4:2, 0:6:2] = R2[0]
    np.testing.assert_array_equal(gX, want)
    # 3 x 3 windows at stride 1, padding 1 over a constant image: each window's first in-image
    # entry (its top-left corner clipped to the image) gets its g; overlapping windows add up
    _, (gX, *_) = c.value_and_grad(X, np.ones_like(X), np.zeros((1, 2, 2, 3)), np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 2, 1)))
    want = np.zeros((5, 6))
    for p in range(5):
        for q in range(6):
            want[max(p - 1, 0), max(q - 1, 0)] += 1
    np.testing.assert_array_equal(gX[0, 0], want)
    assert want[0, 0] == 4 and want.sum() == 30


# ================================================================== bad input names the place
BAD_BASE = {"X": ("n", 2, 5, 5), "W": (3, 2, 3, 3), "V": ("n", 40)}


def _bad(tmp_path, expr, inputs=None):
    """Build a spec whose graph entry ``h`` is ``expr``; the raised error and where it points."""
    text = spec_text(inputs or BAD_BASE, {"h": expr, "loss": "sum(h)"}, "loss", [])
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    line_no, line = next((i, l) for i, l in enumerate(text.splitlines(), start=1) if l.startswith("h = "))
    return path, line_no, line


@pytest.mark.parametrize("expr, call, message", [
    ("conv2d(X, W, padding=0) + 0", "conv2d(", None),
    ("conv2d(X, ones4, padding=1)", "conv2d(", r"the height window 8 is larger than the padded input 7"),
    ("conv2d(X, W, dilation=3)", "conv2d(", r"the height window 7 is larger than the padded input 5"),
    ("conv2d(X, Wc)", "conv2d(", r"take 3 input channels, the images .* have 2"),
    ("reshape(V, (-1, 3, 4, 4))", "reshape(", r"sizes disagree"),
    ("reshape(X, (2, -1, 7))", "reshape(", r"sizes disagree"),
    ("max_pool2d(X, 6)", "max_pool2d(", r"window 6 is larger than the padded input 5"),
    ("avg_pool2d(X, 3, padding=2)", "avg_pool2d(", r"padding \(2, 2\) is more than half the window \(3, 3\)"),
    ("max_pool2d(X, (2, 4), padding=(1, 3))", "max_pool2d(", r"more than half the window"),
    ("conv2d(X, W, padding='same', stride=2)", "conv2d(", r'padding="same" needs stride 1'),
    ("conv2d(X, W2, padding='same')", "conv2d(", r'padding="same" needs an odd kernel'),
])
def test_shape_errors_name_the_place(tmp_path, expr, call, message):
    inputs = {**BAD_BASE, "ones4": (1, 2, 8, 8), "Wc": (3, 3, 3, 3), "W2": (1, 2, 2, 2)}
    if message is None:                       # a valid spec: the baseline builds
        path, _, _ = _bad(tmp_path, expr, inputs)
        build(path)
        return
    path, line_no, line = _bad(tmp_path, expr, inputs)
    with pytest.raises(ShapeError) as info:
        build(path)
    col = line.index(call) + 1
    assert info.value.where == f"bad.toml:{line_no}:{col}", (info.value.where, str(info.value))
    assert str(info.value).startswith(f"bad.toml:{line_no}:{col}: ")
    assert re.search(message, info.value.message), info.value.message


@pytest.mark.parametrize("expr, const, message", [
    ("conv2d(X, W, stride=1.5)", "1.5", r"stride must be a positive integer or a pair of them"),
    ("conv2d(X, W, stride=(2, 0.5))", "(2, 0.5)", r"stride must be a positive integer or a pair of them"),
    ("max_pool2d(X, 2, stride=1.0)", "1.0", r"stride must be a positive integer or a pair of them"),
    ("conv2d(X, W, padding='valid')", "'valid'", r'padding must be an integer >= 0, a pair of them or "same"'),
    ("max_pool2d(X, 2.5)", "2.5", r"k must be a positive integer or a pair of them"),
    ("conv2d(X, W, dilation=0)", "0", r"dilation must be a positive integer"),
    ("reshape(X, (-1, -1))", "(-1, -1)", r"at most one -1"),
])
def test_bad_constants_name_the_place(tmp_path, expr, const, message):
    path, line_no, line = _bad(tmp_path, expr)
    with pytest.raises(SpecError) as info:
        build(path)
    col = line.index(const, line.index("(")) + 1
    assert info.value.where == f"bad.toml:{line_no}:{col}", (info.value.where, str(info.value))
    assert re.search(message, info.value.message), info.value.message


# ================================================================== mixed precision
MIXED = """\
[inputs]
X = { shape = ["n", 2, 5, 5], dtype = "float32" }
W = { shape = [3, 2, 3, 3] }
b = { shape = [3], dtype = "float32" }
[graph]
y = "max_pool2d(conv2d(X, W, b, padding=1), 2)"
loss = "sum(y * y)"
[output]
value = "loss"
outputs = ["y"]
wrt = ["X", "W", "b"]
"""


def test_regression_conv2d_of_float32_and_float64_operands():
    """Found by writing the image productions of the property strategies: Numba's np.dot rejects
    operands of two dtypes, so a conv2d of float32 images and float64 weights did not compile
    (the GEMM of the float64 weights with the float32 patches). The float64 loop reference and
    its central differences are the oracle; each gradient keeps its argument's dtype."""
    c = compiled(MIXED)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    W, b = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3).astype(np.float32)
    exact = [X.astype(np.float64), W, b.astype(np.float64)]
    ref = lambda x, w, bb: ref_max_pool2d(ref_conv2d(x, w, bb, padding=1), 2)[0]      # noqa: E731
    assert max_pool_gap(ref_conv2d(*exact, padding=1), 2) > 1e-3
    loss, y = c.forward(X, W, b)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ref(*exact), rtol=1e-12, atol=1e-12)
    value, grads = c.value_and_grad(X, W, b)
    assert value == pytest.approx(np.sum(ref(*exact) ** 2), rel=1e-12)
    for i, (g, a) in enumerate(zip(grads, (X, W, b))):
        assert g.dtype == a.dtype
        fd = central(lambda *v: np.sum(ref(*v) ** 2), exact, i)
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5 * np.max(np.abs(fd)))


def test_two_by_two_windows_use_the_unrolled_helpers_and_others_the_general_ones(tmp_path):
    """The lowering choice is visible in the module: 2 x 2 windows at stride 2 without padding call
    _max_pool2d_2x2 and its one-pass adjoint (and no argmax helper); other windows, tiling or
    overlapping, the general ones. (Their values: the ties test above, against the NumPy reference,
    has both, with an odd last row and columns outside every window.)"""
    sources = {}
    for name, pool in (("2x2", "max_pool2d(X, 2)"), ("tiled", "max_pool2d(X, (2, 4), stride=(2, 4))"),
                       ("overlapping", "max_pool2d(X, 2, stride=1)")):
        path = tmp_path / f"{name}.toml"
        path.write_text(spec_text({"X": ("n", 2, 4, 4)}, {"m": pool, "loss": "sum(m * m)"}, "loss", []))
        sources[name] = build(path).code
    assert "_max_pool2d_2x2(" in sources["2x2"] and "_max_pool2d_2x2_vjp(" in sources["2x2"]
    assert "_pool_argmax" not in sources["2x2"]
    for name in ("tiled", "overlapping"):
        assert "_2x2" not in sources[name] and "_max_pool2d_vjp(" in sources[name]


# ================================================================== pool before the activation
# a and b pool a monotone activation used nowhere else: gradc.passes.commute pools first (b with
# overlapping, padded windows); r is used twice and q's slope is negative (not monotone): kept as written
COMMUTE = spec_text({"X": ("n", 2, 5, 6), "R1": ("n", 2, 2, 3), "R2": ("n", 2, 5, 6), "R3": ("n", 2, 2, 3),
                     "R4": ("n", 2, 2, 3)},
                    {"a": "max_pool2d(relu(X), 2)", "b": "max_pool2d(leaky_relu(X, 0.2), 3, stride=1, padding=1)",
                     "r": "relu(X * 0.5)", "c": "max_pool2d(r, 2)", "q": "max_pool2d(leaky_relu(X, -0.5), 2)",
                     "loss": "sum(R1 * a) + sum(R2 * b) + sum(R3 * c) + sum(R4 * q) + sum(r)"},
                    "loss", ["a", "b", "c", "q"])


def test_pooling_a_monotone_activation_pools_first_with_the_same_values_and_gradients():
    """max_pool2d(f(z)) = f(max_pool2d(z)) for relu and leaky_relu (slope >= 0), derivatives
    included (the first maximum at ties, f' = 0 where f(z) ties and z does not). Oracle: the loop
    references applied in the order written, on integer images full of ties, zeros and negatives."""
    from gradc.pipeline import lower
    from gradc.passes import optimize
    from gradc.passes.commute import pool_first
    fn = lower(COMMUTE).fn
    rewritten = pool_first(fn)
    pools = {s.out.name: s for s in rewritten.stmts if s.op == "max_pool2d"}
    by_out = {s.out.name: s for s in rewritten.stmts}
    for name in ("a", "b"):                       # f(P(z)): the pooled output is the activation's
        assert by_out[name].op in ("relu", "leaky_relu") and by_out[name].args[0].name in pools
    for name in ("c", "q"):                       # P(f(z)) as written
        assert by_out[name].op == "max_pool2d"
    assert optimize(fn) is not fn and pool_first(rewritten) is rewritten

    c = compiled(COMMUTE)
    rng = np.random.default_rng(11)
    relu = lambda v: np.maximum(v, 0.0)                                    # noqa: E731
    leaky = lambda v, sl: np.where(v > 0, v, sl * v)                       # noqa: E731
    for X in (rng.integers(-2, 3, (2, 2, 5, 6)).astype(float), np.zeros((1, 2, 5, 6)),
              rng.standard_normal((3, 2, 5, 6))):
        n = X.shape[0]
        R1, R2, R3, R4 = (rng.standard_normal((n, 2) + s) for s in ((2, 3), (5, 6), (2, 3), (2, 3)))
        loss, a, b, cc, q = c.forward(X, R1, R2, R3, R4)
        np.testing.assert_array_equal(a, ref_max_pool2d(relu(X), 2)[0])
        np.testing.assert_array_equal(b, ref_max_pool2d(leaky(X, 0.2), 3, 1, 1)[0])
        np.testing.assert_array_equal(cc, ref_max_pool2d(relu(0.5 * X), 2)[0])
        np.testing.assert_array_equal(q, ref_max_pool2d(leaky(X, -0.5), 2)[0])
        _, (gX, *_) = c.value_and_grad(X, R1, R2, R3, R4)
        want = ((X > 0) * ref_max_pool2d_vjp(R1, relu(X), 2)
                + np.where(X > 0, 1.0, 0.2) * ref_max_pool2d_vjp(R2, leaky(X, 0.2), 3, 1, 1)
                + 0.5 * (X > 0) * (ref_max_pool2d_vjp(R3, relu(0.5 * X), 2) + 1.0)
                + np.where(X > 0, 1.0, -0.5) * ref_max_pool2d_vjp(R4, leaky(X, -0.5), 2))
        np.testing.assert_allclose(gX, want, rtol=1e-13, atol=1e-13)
