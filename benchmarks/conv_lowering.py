"""Which lowering of conv2d, per shape: ``python -m benchmarks.conv_lowering`` prints a Markdown table.

Issue 13 asks the convolution lowering to be chosen by measurement between direct loop nests and
im2col + GEMM. This measures, for the convolution layers of the CNN benchmarks (and a few more
shapes, small channel counts first), the forward convolution three ways, 1 thread, float64,
median of ``--repeats`` loops:

* **im2col + GEMM**: gradc's ``_conv2d`` helper (``templates/ops/conv.j2``), taken from a module
  generated for ``examples/cnn_digits.toml`` (the helper is shape-generic);
* **direct, NCHW**: the textbook loop nest, one multiply-add per weight and output element, the
  innermost loop along an output row;
* **direct, batch last**: the images of a chunk transposed to ``[C, H, W, nb]`` (gradc's
  ``_batch_last``), so that the innermost loop is one long contiguous run per weight and output
  row (``y[o, p, :, :] += w[o, c, i, j] · x[c, p + i, j:, :]``), which LLVM vectorizes.

Every result is checked against the im2col one (max relative difference ≤ 1e-12). Results:
``benchmarks/results/conv_lowering.md``. The lowering gradc generates is the fastest of the
three in every row (see that file); a shape where a direct nest wins would be the place to
start choosing per shape.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numba  # noqa: E402
import numpy as np  # noqa: E402

# (title, N, C, H = W, O, k, padding, stride)
SHAPES = [
    ("digits conv1", 128, 1, 8, 16, 3, 1, 1),
    ("digits conv2", 128, 16, 4, 32, 3, 1, 1),
    ("LeNet-5 conv1", 64, 1, 28, 6, 5, 2, 1),
    ("LeNet-5 conv2", 64, 6, 14, 16, 5, 0, 1),
    ("RGB 16×16, 3→8", 128, 3, 16, 8, 3, 1, 1),
    ("8×8, 4→16", 128, 4, 8, 16, 3, 1, 1),
    ("stride 2, 11×11, 3→5", 16, 3, 11, 5, 3, 1, 2),
    ("conv layer 32→64, 28×28", 32, 32, 28, 64, 3, 1, 1),
]


def generated_helpers():
    """gradc's conv helpers: the module generated for the digits CNN, imported from a temp dir."""
    import gradc
    folder = Path(tempfile.mkdtemp(prefix="gradc_conv_lowering_"))
    gradc.compile(ROOT / "examples" / "cnn_digits.toml", out=folder / "cnn_digits_gen.py")
    spec = importlib.util.spec_from_file_location("cnn_digits_gen", folder / "cnn_digits_gen.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def direct_nests(mod):
    """The two direct loop nests, compiled with Numba beside gradc's helpers (they share
    ``_conv_geometry``, ``_span`` and ``_batch_last``)."""
    geometry, span, batch_last = mod._conv_geometry, mod._span, mod._batch_last

    @numba.njit(error_model="numpy")
    def nchw(x, w, b, s, p):
        N, C, H, W = x.shape
        O, _, kh, kw = w.shape
        p, _, Ho, Wo = geometry(H, W, kh, kw, s, s, p, p, 1, 1)
        y = np.empty((N, O, Ho, Wo))
        xf = x.reshape(x.size)
        yf = y.reshape(y.size)
        for n in range(N):
            for o in range(O):
                y0 = (n * O + o) * Ho * Wo
                for e in range(Ho * Wo):
                    yf[y0 + e] = b[o]
                for c in range(C):
                    x0 = (n * C + c) * H * W
                    for i in range(kh):
                        p0, p1 = span(i, s, p, 1, H, Ho)
                        for j in range(kw):
                            q0, q1 = span(j, s, p, 1, W, Wo)
                            wv = w[o, c, i, j]
                            for r in range(p0, p1):
                                dst = y0 + r * Wo
                                src = x0 + (r * s - p + i) * W - p + j
                                if s == 1:          # a view and a loop from 0: LLVM vectorizes it
                                    out, inp = yf[dst + q0:dst + q1], xf[src + q0:src + q1]
                                    for e in range(q1 - q0):
                                        out[e] += wv * inp[e]
                                else:
                                    for q in range(q0, q1):
                                        yf[dst + q] += wv * xf[src + q * s]
        return y

    @numba.njit(error_model="numpy")
    def batch_last_nest(x, w, b, s, p):
        N, C, H, W = x.shape
        O, _, kh, kw = w.shape
        p, _, Ho, Wo = geometry(H, W, kh, kw, s, s, p, p, 1, 1)
        S = Ho * Wo
        y = np.empty((N, O, Ho, Wo))
        yf = y.reshape(y.size)
        nb = max(1, min(N, 65536 // (C * H * W + O * S)))
        xt = np.empty((C, H, W, nb))
        yt = np.empty((O, S * nb))
        for n0 in range(0, N, nb):
            if n0 + nb > N:
                nb = N - n0
                xt = np.empty((C, H, W, nb))
                yt = np.empty((O, S * nb))
            xf = batch_last(x, n0, nb, xt).reshape(C * H * W * nb)
            tf = yt.reshape(yt.size)
            R = Wo * nb
            for o in range(O):
                for e in range(S * nb):
                    tf[o * S * nb + e] = b[o]
                for c in range(C):
                    for i in range(kh):
                        p0, p1 = span(i, s, p, 1, H, Ho)
                        for j in range(kw):
                            q0, q1 = span(j, s, p, 1, W, Wo)
                            wv = w[o, c, i, j]
                            for r in range(p0, p1):
                                dst = o * S * nb + r * R
                                src = ((c * H + r * s - p + i) * W - p + j) * nb
                                if s == 1:          # one run of (q1 - q0) nb values
                                    out, inp = tf[dst + q0 * nb:dst + q1 * nb], xf[src + q0 * nb:src + q1 * nb]
                                    for e in range((q1 - q0) * nb):
                                        out[e] += wv * inp[e]
                                else:
                                    for q in range(q0, q1):
                                        for k in range(nb):
                                            tf[dst + q * nb + k] += wv * xf[src + q * s * nb + k]
            for k in range(nb):
                for o in range(O):
                    for e in range(S):
                        yf[((n0 + k) * O + o) * S + e] = tf[o * S * nb + k + e * nb]
        return y

    return nchw, batch_last_nest


def measure(f, args, repeats: int, min_time: float) -> float:
    """Median seconds per call over ``repeats`` loops of at least ``min_time`` seconds each."""
    f(*args)
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            f(*args)
        if time.perf_counter() - t0 >= min_time:
            break
        n *= 2
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            f(*args)
        times.append((time.perf_counter() - t0) / n)
    return float(np.median(times))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.conv_lowering", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.05)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "conv_lowering.md"),
                   help="where to write the Markdown ('-': only print it)")
    o = p.parse_args(argv)
    mod = generated_helpers()
    nchw, batch_last_nest = direct_nests(mod)
    rng = np.random.default_rng(0)
    rows = []
    for title, N, C, H, O, k, pad, s in SHAPES:
        x, w, b = rng.standard_normal((N, C, H, H)), rng.standard_normal((O, C, k, k)), rng.standard_normal(O)
        one = np.int64(1)
        im2col = lambda: mod._conv2d(x, w, b, np.int64(s), np.int64(s), np.int64(pad), np.int64(pad), one, one)  # noqa: E731
        ref = im2col()
        times = [measure(im2col, (), o.repeats, o.min_time)]
        for nest in (nchw, batch_last_nest):
            got = nest(x, w, b, s, pad)
            err = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
            if err > 1e-12:
                raise SystemExit(f"{title}: {nest.__name__} differs from im2col by {err:.1e}")
            times.append(measure(nest, (x, w, b, s, pad), o.repeats, o.min_time))
        best = min(range(3), key=times.__getitem__)
        rows.append(f"| {title} | {N}×{C}×{H}×{H} → {O}, {k}×{k}, pad {pad}, stride {s} | {C * k * k} | "
                    + " | ".join(f"{t * 1e6:.0f} µs" + (" **best**" if i == best else "") for i, t in enumerate(times))
                    + f" | {times[1] / times[0]:.2f} | {times[2] / times[0]:.2f} |")
        print(rows[-1], flush=True)
    text = "\n".join([
        "# conv2d lowering: im2col + GEMM against direct loop nests (forward)", "",
        f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}, `python -m benchmarks.conv_lowering`; 1 thread, float64, "
        f"median of {o.repeats} loops of ≥ {o.min_time} s; numpy {np.__version__}, numba {numba.__version__}.", "",
        "| layer | shape | K = C·kh·kw | im2col + GEMM (gradc) | direct, NCHW | direct, batch last "
        "| NCHW ÷ im2col | batch last ÷ im2col |",
        "|---|---|--:|--:|--:|--:|--:|--:|", *rows, ""])
    if o.out != "-":
        Path(o.out).write_text(text, encoding="utf-8")
        print(f"wrote {o.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
