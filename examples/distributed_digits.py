"""The digits MLP (examples/mlp_digits.toml) on a Dask cluster, against one process.

    python examples/distributed_digits.py                      # embedded LocalClusters of 1 and 2 workers
    python examples/distributed_digits.py --scheduler tcp://127.0.0.1:8786   # a cluster started by hand
    python examples/distributed_digits.py --rows 1000000       # a larger, compute-bound data set

1. The full-data loss and gradient on the cluster against one process over the same rows (the
   relative difference: summation order only).
2. The time of one full-data value and gradient: one process, then each cluster; the speed-up
   against one worker, and the overhead of a step (parameters out, tree reduction, gradient back)
   measured on a tiny data set.
3. Full-batch L-BFGS-B on the cluster (``Sharded.minimize``) and the test accuracy it reaches.

The data: scikit-learn's 8x8 digits, the training split repeated with a one-pixel shift and noise
up to ``--rows`` rows (needs the examples and distributed extras).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _digits import MLP_SPEC, accuracy, load_split, mlp_scores  # noqa: E402

import gradc  # noqa: E402
from gradc import distributed as gd  # noqa: E402


def augmented(X, y, rows: int, seed: int = 0):
    """``rows`` rows: copies of the 8x8 images shifted by up to one pixel, with a little noise."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(X), rows)
    images = X[idx].reshape(-1, 8, 8)
    dx, dy = rng.integers(-1, 2, rows), rng.integers(-1, 2, rows)
    out = np.empty_like(images)
    for sx in (-1, 0, 1):
        for sy in (-1, 0, 1):
            m = (dx == sx) & (dy == sy)
            out[m] = np.roll(images[m], (sy, sx), axis=(1, 2))
    out = np.clip(out + rng.normal(0.0, 0.02, out.shape), 0.0, 1.0)
    return np.ascontiguousarray(out.reshape(rows, 64)), y[idx].copy()


def timed(f, repeat: int) -> float:
    f()                                                    # warm-up (Numba, first transfers)
    t0 = time.perf_counter()
    for _ in range(repeat):
        f()
    return (time.perf_counter() - t0) / repeat


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scheduler", help="address of a running Dask scheduler (default: embedded LocalClusters)")
    p.add_argument("--workers", type=int, default=2, help="workers of the larger embedded cluster (default 2)")
    p.add_argument("--rows", type=int, default=300_000, help="rows of the augmented training set (default 300000)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (default 5)")
    p.add_argument("--maxiter", type=int, default=60, help="L-BFGS-B iterations (default 60)")
    a = p.parse_args(argv)

    Xtr, Xte, ytr, yte = load_split()
    X, y = augmented(Xtr, ytr, a.rows)
    mlp = gradc.compile(MLP_SPEC)
    params = mlp.init_params(seed=0)
    one = timed(lambda: mlp.value_and_grad(X, y, **params), a.repeat)
    ref = mlp.value_and_grad(X, y, **params)
    print(f"{a.rows:,} rows; one process: {one * 1e3:.1f} ms per full-data value+grad")

    setups = [dict(scheduler=a.scheduler)] if a.scheduler else [dict(n_workers=1), dict(n_workers=a.workers)]
    times = {}
    for setup in setups:
        with gd.cluster(**setup) as client:
            workers = len(client.scheduler_info(n_workers=-1)["workers"])
            with gd.Sharded(mlp, {"X": X, "y": y}, shards=workers, client=client) as s:
                value, grads = s.value_and_grad(params)
                diff = max([abs(value - ref[0]) / abs(ref[0])] +
                           [float(np.max(np.abs(grads[w] - g)) / np.max(np.abs(g))) for w, g in zip(mlp.wrt, ref[1])])
                times[workers] = t = timed(lambda: s.value_and_grad(params), a.repeat)
            with gd.Sharded(mlp, {"X": X[:16], "y": y[:16]}, shards=workers, client=client) as tiny:
                overhead = timed(lambda: tiny.value_and_grad(params), a.repeat)
            line = (f"{workers} worker{'s' if workers > 1 else ''}: {t * 1e3:.1f} ms per step "
                    f"({a.rows / t:,.0f} rows/s), overhead {overhead * 1e3:.1f} ms per step; "
                    f"largest relative difference from one process {diff:.1e}")
            if 1 in times and workers > 1:
                line += f"; speed-up over 1 worker {times[1] / t:.2f}x"
            print(line)
            if setup is setups[-1]:
                start = mlp.init_params(seed=0)
                t0 = time.perf_counter()
                with gd.Sharded(mlp, {"X": X, "y": y}, shards=workers, client=client) as s:
                    res = s.minimize(start, options={"maxiter": a.maxiter})
                print(f"L-BFGS-B on {workers} workers: loss {res.fun:.4f} after {res.nit} iterations "
                      f"({time.perf_counter() - t0:.1f} s); test accuracy "
                      f"{accuracy(mlp_scores(start, Xte), yte):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
