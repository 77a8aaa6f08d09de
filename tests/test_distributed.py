"""gradc.distributed on a LocalCluster the tests start themselves: 2 worker processes, one thread
each, with gradc hidden from the workers (a preload script blocks its import), so every test here
also shows that a worker needs only NumPy and Numba. Every distributed number is compared with one
process computing the same thing in the test."""
from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask.array as da  # noqa: E402

import gradc  # noqa: E402
from gradc import distributed as gd  # noqa: E402
from gradc.runtime import SGD, train  # noqa: E402

from conftest import compiled as compile_once  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

HIDE_GRADC = '''
import sys
if any(m == "gradc" or m.startswith("gradc.") for m in sys.modules):
    raise RuntimeError("gradc was imported in this worker before the preload ran")

class HideGradc:
    """Makes gradc unimportable in this worker process."""
    def find_spec(self, name, path=None, target=None):
        if name == "gradc" or name.startswith("gradc."):
            raise ImportError(f"{name} is hidden from this worker by tests/test_distributed.py")
        return None

sys.meta_path.insert(0, HideGradc())
'''

SUM_SPEC = '''
[model]
name = "relu_sum_loss"
[inputs]
X = { shape = ["batch", 3] }
T = { shape = ["batch", 2] }
[params]
W1 = { shape = [4, 3], init = "he" }
W2 = { shape = [2, 4], init = "he" }
[graph]
H = "maximum(0, X @ transpose(W1))"
F = "H @ transpose(W2)"
loss = "sum((F - T) ** 2) + 1e-2 * sum(W1 ** 2)"
[output]
value = "loss"
'''


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    preload = tmp_path_factory.mktemp("preload") / "hide_gradc.py"
    preload.write_text(HIDE_GRADC)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", preload=[str(preload)])
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.data / 16.0).astype(np.float64), d.target.astype(np.int64)


@pytest.fixture(scope="module")
def mlp():
    return compile_once(str(EXAMPLES / "mlp_digits.toml"))


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _assert_same(value, grads, ref, wrt, tol=1e-12):
    v, g = ref
    assert abs(value - v) <= tol * abs(v)
    for name, want in zip(wrt, g):
        assert grads[name].shape == np.shape(want)
        assert _rel(grads[name], want) <= tol, name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_workers_run_without_gradc(client, mlp, digits):
    def probe():
        import sys
        try:
            import gradc  # noqa: F401
            return "importable"
        except ImportError:
            return sorted(m for m in sys.modules if m == "gradc" or m.startswith("gradc."))

    assert client.run(probe) == {w: [] for w in client.scheduler_info()["workers"]}
    X, y = digits
    params = mlp.init_params(seed=0)
    with gd.Sharded(mlp, {"X": X, "y": y}, shards=4, client=client) as s:
        value, grads = s.value_and_grad(params)
        w = gd._worker_functions()
        loaded = client.run(w.loaded_modules)
    _assert_same(value, grads, mlp.value_and_grad(X, y, **params), mlp.wrt)
    assert client.run(probe) == {w: [] for w in loaded}        # still no gradc after the work
    assert all(str(mlp.path.resolve()) in files.values() for files in loaded.values())


@pytest.mark.parametrize("form", ["numpy", "dask", "npz", "npy"])
def test_value_and_grad_equals_one_process(client, mlp, digits, form, tmp_path):
    X, y = digits
    params = mlp.init_params(seed=1)
    cuts = [0, 250, 700, 1200, 1500, len(X)]                  # unequal shards: weights matter
    if form == "numpy":
        data, kw = {"X": X, "y": y}, {"shards": 7}
    elif form == "dask":
        chunks = (tuple(np.diff(cuts)),)
        data, kw = {"X": da.from_array(X, chunks=chunks + ((64,))), "y": da.from_array(y, chunks=(200,))}, {}
    elif form == "npz":
        data, kw = [], {}
        for k in range(len(cuts) - 1):
            np.savez(tmp_path / f"part{k}.npz", X=X[cuts[k]:cuts[k + 1]], y=y[cuts[k]:cuts[k + 1]])
            data.append(tmp_path / f"part{k}.npz")
    else:
        data, kw = {"X": [], "y": []}, {}
        for k in range(len(cuts) - 1):
            for name, a in (("X", X), ("y", y)):
                np.save(tmp_path / f"{name}{k}.npy", a[cuts[k]:cuts[k + 1]])
                data[name].append(tmp_path / f"{name}{k}.npy")
    with gd.Sharded(mlp, data, client=client, **kw) as s:
        assert s.n == len(X) and len(s.shards) == (7 if form == "numpy" else len(cuts) - 1)
        assert s.rows == ([len(r) for r in np.array_split(X, 7)] if form == "numpy" else list(np.diff(cuts)))
        value, grads = s.value_and_grad(params)
        assert s.reduction == "mean"
        _assert_same(value, grads, mlp.value_and_grad(X, y, **params), mlp.wrt)
        # the shards stayed where they were: a second call at other parameters is right too
        p2 = mlp.init_params(seed=2)
        value, grads = s.value_and_grad(p2)
        _assert_same(value, grads, mlp.value_and_grad(X, y, **p2), mlp.wrt)


def test_sum_reduced_loss_and_module_uploaded(client, tmp_path):
    """A sum-reduced loss: detected, and its regulariser counted once (not once per shard). The
    module's file is deleted on the client after the upload, so the workers import their copy."""
    path = tmp_path / "relu_sum_loss.py"
    gradc.compile(SUM_SPEC, out=path)
    c = gradc.load(path)
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((301, 3)), rng.standard_normal((301, 2))
    params = c.init_params(seed=0)
    ref = c.value_and_grad(X, T, **params)
    with gd.Sharded(c, {"X": X, "T": T}, shards=5, client=client) as s:
        path.unlink()
        value, grads = s.value_and_grad(params)
        assert s.reduction == "sum"
        _assert_same(value, grads, ref, c.wrt)
        loaded = client.run(gd._worker_functions().loaded_modules)
        files = {f for per in loaded.values() for f in per.values()}
        assert str(path) not in files and any(f.endswith("relu_sum_loss.py") for f in files)
    # said by the user, and wrong when said wrongly: a mean's weights on a sum-reduced loss
    X2, T2 = np.ascontiguousarray(X[:200]), np.ascontiguousarray(T[:200])
    gradc.compile(SUM_SPEC, out=path)
    ref2 = c.value_and_grad(X2, T2, **params)
    with gd.Sharded(c, {"X": X2, "T": T2}, shards=4, reduction="sum", client=client) as s:
        _assert_same(*s.value_and_grad(params), ref2, c.wrt)
    with gd.Sharded(c, {"X": X2, "T": T2}, shards=4, reduction="mean", client=client) as s:
        assert abs(s.value_and_grad(params)[0] - ref2[0]) > 0.5 * abs(ref2[0])


def test_training_equals_single_process(client, mlp, digits):
    X, y = digits
    one = mlp.init_params(seed=0)
    h1 = train(mlp, one, {"X": X, "y": y}, epochs=2, batch_size=256, optimizer=SGD(0.5), seed=3, log=None)
    many = mlp.init_params(seed=0)
    with gd.Sharded(mlp, {"X": X, "y": y}, shards=5, client=client) as s:
        h2 = s.train(many, epochs=2, batch_size=256, optimizer=SGD(0.5), seed=3, log=None, progress=False)
    assert len(h2) == 2 and h2[1] < h2[0] < 2.4
    assert np.allclose(h2, h1, rtol=1e-10, atol=0)
    for name in mlp.wrt:
        assert _rel(many[name], one[name]) < 1e-10, name


def test_lbfgs_full_batch(client, mlp, digits):
    from scipy.optimize import minimize
    X, y = digits
    start = mlp.init_params(seed=0)
    flat = np.concatenate([start[w].ravel() for w in mlp.wrt])
    sizes = np.cumsum([start[w].size for w in mlp.wrt])[:-1]

    def fun(x):
        p = {w: a.reshape(start[w].shape) for w, a in zip(mlp.wrt, np.split(x, sizes))}
        v, g = mlp.value_and_grad(X, y, **p)
        return v, np.concatenate([a.ravel() for a in g])

    ref = minimize(fun, flat, jac=True, method="L-BFGS-B", options={"maxiter": 15})
    params = mlp.init_params(seed=0)
    res = gd.minimize(mlp, params, {"X": X, "y": y}, client=client, shards=4, options={"maxiter": 15})
    assert res.nit == ref.nit == 15 and len(res.history) == 15
    assert res.fun < 0.5 * fun(flat)[0]
    assert abs(res.fun - ref.fun) < 1e-8 * ref.fun
    assert _rel(np.concatenate([params[w].ravel() for w in mlp.wrt]), ref.x) < 1e-6


def test_pointwise_matches_one_process(client):
    import sympy as sp
    x, y, z = sp.symbols("x y z")
    f = compile_once(sp.sin(x * y) + sp.exp(-z ** 2) * x + sp.log(1 + y ** 2), args=[x, y, z])
    pts = da.random.default_rng(7).standard_normal((100_000, 3), chunks=(25_000, 3))
    out = gd.pointwise(f, pts, client=client)
    assert isinstance(out, da.Array) and out.shape == (100_000, 4) and out.chunks[0] == pts.chunks[0]
    got, P = client.compute(out).result(), pts.compute()
    vg = f.raw.value_and_grad
    want = np.array([[v, *g] for v, g in (vg(*row) for row in P)])
    assert np.array_equal(got, want)


def test_bad_input(client, mlp, digits, tmp_path):
    X, y = digits
    np.savez(tmp_path / "a.npz", X=X[:100], y=y[:100])
    np.savez(tmp_path / "b.npz", X=X[100:200, :63], y=y[100:200])
    with pytest.raises(gd.DistributedError, match=r"shard 1 .*b\.npz.*'X' has shape \(100, 63\).*compiled for \[.batch., 64\]"):
        gd.Sharded(mlp, [tmp_path / "a.npz", tmp_path / "b.npz"], client=client)
    np.savez(tmp_path / "c.npz", X=X[:100].astype(np.float32), y=y[:100])
    with pytest.raises(gd.DistributedError, match=r"shard 1 .*'X' is float32, but the module declares float64"):
        gd.Sharded(mlp, [tmp_path / "a.npz", tmp_path / "c.npz"], client=client)
    np.savez(tmp_path / "d.npz", X=X[:100])
    with pytest.raises(gd.DistributedError, match=r"shard 1 .*d\.npz.* has no 'y'"):
        gd.Sharded(mlp, [tmp_path / "a.npz", tmp_path / "d.npz"], client=client)
    with pytest.raises(gd.DistributedError, match=r"'X' has shape \(\d+, 32\)"):          # a module for other shapes
        gd.Sharded(mlp, {"X": X[:, :32], "y": y}, client=client, shards=2)
    with pytest.raises(gd.DistributedError, match="data key 'Y' is not an argument"):
        gd.Sharded(mlp, {"X": X, "Y": y}, client=client)
    with pytest.raises(gd.DistributedError, match="differ in their number of rows"):
        gd.Sharded(mlp, {"X": X, "y": y[:-1]}, client=client)
    with gd.Sharded(mlp, {"X": X, "y": y}, client=client) as s, \
            pytest.raises(gd.DistributedError, match="params has no 'b2'"):
        s.value_and_grad({k: v for k, v in mlp.init_params().items() if k != "b2"})
    # nobody listening, and a listener that never answers: a clear error within the timeout, no hang
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        for port in (_free_port(), silent.getsockname()[1]):
            t0 = time.perf_counter()
            with pytest.raises(gd.DistributedError, match=r"no Dask scheduler answered within 2 s"):
                gd.Sharded(mlp, {"X": X, "y": y}, scheduler=f"tcp://127.0.0.1:{port}", timeout=2)
            assert time.perf_counter() - t0 < 20
    with pytest.raises(gd.DistributedError, match=r"is a Dask Worker, not a scheduler"):
        gd.cluster(scheduler=next(iter(client.scheduler_info()["workers"])), timeout=5)
    assert issubclass(gd.DistributedError, gradc.GradcError)


def test_cli_train_on_the_cluster(client, digits, tmp_path, capsys):
    X, y = digits
    np.savez(tmp_path / "digits.npz", X=X, y=y)
    spec = str(EXAMPLES / "mlp_digits.toml")
    args = [spec, "--data", str(tmp_path / "digits.npz"), "--epochs", "2", "--batch-size", "256", "--lr", "0.5"]
    from gradc.cli import main
    assert main(["train", *args, "--scheduler", client.scheduler.address, "-o", str(tmp_path / "dist.npz")]) == 0
    assert main(["train", *args, "--workers", "1", "-o", str(tmp_path / "one.npz")]) == 0
    out = capsys.readouterr().out
    assert out.count("epoch   2") == 2 and "saved" in out
    mlp = compile_once(spec)
    from gradc.runtime import load_checkpoint
    a, b = load_checkpoint(tmp_path / "dist.npz", mlp), load_checkpoint(tmp_path / "one.npz", mlp)
    for name in mlp.wrt:
        assert _rel(a[name], b[name]) < 1e-10
    assert gd.main_train([spec, "--data", str(tmp_path / "missing.npz"), "--workers", "1"]) == 2
    assert "cannot read it as a .npz file" in capsys.readouterr().err


def test_speedup_note(client, mlp, digits):
    """Full-data value and gradient of the digits MLP on 2 workers against one process: printed
    (run with -s), never asserted -- this machine's 2 cores are shared."""
    X, y = digits
    X, y = np.ascontiguousarray(np.tile(X, (20, 1))), np.tile(y, 20)          # 35,940 rows
    params = mlp.init_params(seed=0)
    mlp.value_and_grad(X[:10], y[:10], **params)
    t0 = time.perf_counter()
    for _ in range(3):
        ref = mlp.value_and_grad(X, y, **params)
    one = (time.perf_counter() - t0) / 3
    with gd.Sharded(mlp, {"X": X, "y": y}, shards=2, client=client) as s:
        s.value_and_grad(params)
        t0 = time.perf_counter()
        for _ in range(3):
            value, grads = s.value_and_grad(params)
        two = (time.perf_counter() - t0) / 3
    _assert_same(value, grads, ref, mlp.wrt, tol=1e-11)
    print(f"\nvalue+grad of the digits MLP on {len(X):,} rows: one process {one * 1e3:.1f} ms, "
          f"2 workers {two * 1e3:.1f} ms, speed-up {one / two:.2f}x", file=sys.stderr)


def test_embedded_cluster_is_started_and_closed(mlp, digits):
    X, y = digits
    params = mlp.init_params(seed=0)
    conn = gd.cluster()
    with conn as c:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        assert conn.embedded and len(c.scheduler_info()["workers"]) == cores
        with gd.Sharded(mlp, {"X": X, "y": y}, client=c) as s:
            _assert_same(*s.value_and_grad(params), mlp.value_and_grad(X, y, **params), mlp.wrt)
        assert c.status == "running"                      # a Sharded leaves a client it was given open
    assert c.status == "closed" and conn._cluster.status.name == "closed"


@pytest.mark.parametrize("form", ["numpy", "dask"])
def test_training_survives_a_killed_worker(client, mlp, digits, form):
    """A worker process killed (SIGKILL, by its pid) in the middle of training: shards scattered
    from NumPy arrays are scattered again, shards of a dask.array are recomputed by Dask, the
    nanny starts a new worker (which gets the uploaded files and, from the preload, no gradc),
    training completes, and the parameters equal those of an undisturbed run."""
    X, y = digits
    client.wait_for_workers(2, timeout=60)
    kw = dict(epochs=2, batch_size=200, optimizer="momentum", lr=0.1, seed=5, log=None, progress=False)
    quiet = mlp.init_params(seed=4)
    train(mlp, quiet, {"X": X, "y": y}, **kw)           # undisturbed, in one process
    pids = client.run(os.getpid)
    victim = max(pids.values())
    killed = []

    def kill(step, params):
        if step == 4:
            os.kill(victim, signal.SIGKILL)
            killed.append(step)

    params = mlp.init_params(seed=4)
    data = {"X": X, "y": y} if form == "numpy" else {"X": da.from_array(X, chunks=(300, 64)),
                                                     "y": da.from_array(y, chunks=300)}
    with gd.Sharded(mlp, data, shards=6 if form == "numpy" else None, client=client) as s:
        history = s.train(params, callback=kill, **kw)
        assert killed == [4] and (s.rescattered >= 1 if form == "numpy" else s.rescattered == 0)
    assert len(history) == 2
    for name in mlp.wrt:
        assert _rel(params[name], quiet[name]) < 1e-10, name
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()


def test_hvp_and_trust_ncg_equal_one_process(client, mlp, digits):
    """The sharded Hessian-vector product (each worker's generated hvp, weighted and tree-reduced
    like the gradient) equals one process's over all rows, for a mean- and a sum-reduced loss; and
    a full-batch trust-ncg with it as hessp follows the single-process gradc.minimize."""
    X, y = digits
    params = mlp.init_params(seed=0)
    rng = np.random.default_rng(5)
    v = {w: rng.standard_normal(np.shape(params[w])) for w in mlp.wrt}
    want = mlp.hvp(X, y, *[params[w] for w in mlp.wrt], v=tuple(v[w] for w in mlp.wrt))
    with gd.Sharded(mlp, {"X": X, "y": y}, shards=5, client=client) as s:
        got = s.hvp(params, v)
        for w, h in zip(mlp.wrt, want):
            assert _rel(got[w], h) <= 1e-12, w
        res = s.minimize(params, method="trust-ncg", options={"maxiter": 4})
    start = mlp.init_params(seed=0)
    ref = gradc.minimize(mlp, start, fixed={"X": X, "y": y}, method="trust-ncg", options={"maxiter": 4})
    assert res.nit == ref.nit == 4 and len(res.history) == 4
    assert abs(res.fun - ref.fun) < 1e-9 * ref.fun
    assert _rel(np.concatenate([params[w].ravel() for w in mlp.wrt]), ref.x) < 1e-7

    f = compile_once(SUM_SPEC)
    rng = np.random.default_rng(2)
    data = {"X": rng.standard_normal((301, 3)), "T": rng.standard_normal((301, 2))}
    p = f.init_params(seed=1)
    v = tuple(rng.standard_normal(np.shape(p[w])) for w in f.wrt)
    want = f.hvp(data["X"], data["T"], *[p[w] for w in f.wrt], v=v)
    with gd.Sharded(f, data, shards=4, client=client) as s:
        got = s.hvp(p, v)
    for w, h in zip(f.wrt, want):
        assert _rel(got[w], h) <= 1e-12, w
