"""Data-parallel value and gradient, training and point-wise evaluation on a Dask cluster.

``pip install "gradc[distributed]"`` (dask and distributed). The pieces:

* :class:`Sharded` -- a compiled model and its data split into shards that stay on the workers
  (scattered or persisted once); :meth:`Sharded.value_and_grad` ships the parameters out, each
  worker runs the generated ``value_and_grad`` on its shards, and a tree of pairwise sums
  (``client.submit``) brings one value and one gradient back. :meth:`Sharded.train` runs
  synchronous data-parallel minibatch training with gradc's optimizers; :meth:`Sharded.minimize`
  full-batch training with ``scipy.optimize.minimize(jac=True)`` (L-BFGS-B by default).
  :func:`value_and_grad`, :func:`train` and :func:`minimize` are one-call shortcuts.
* :func:`pointwise` -- value and gradient of a scalar SymPy-compiled function at the N rows of a
  ``dask.array`` (N x n_args), one jitted loop per chunk, returned as a ``dask.array``.
* :func:`cluster` -- a client: ``client=`` or ``scheduler="tcp://host:port"`` uses an existing
  cluster; neither starts an embedded ``LocalCluster`` (processes, one thread each, one worker per
  core) that is closed when the ``with`` block (or the :class:`Sharded`) ends.

The module goes to the workers, not the compiler: the generated file (plain NumPy + Numba) is sent
with ``client.upload_file`` (which also reaches workers that join later) and imported there from
a per-machine folder, so Numba's on-disk cache serves every worker of a machine. The worker-side
functions below are the first part of *this* file, which is sent to the workers the same way under
the top-level name ``gradc_dask_worker`` and needs only NumPy and Numba there: a worker never
imports gradc.

Faults: shards built from a graph (a ``dask.array``, shard files) are recomputed by Dask when
the worker holding them is lost; shards scattered from NumPy arrays cannot be, so a step whose
shards were lost re-scatters them from the client's arrays and runs again (a step is a pure
function of the parameters, so the result is the same).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

try:                                         # on the client
    from gradc.errors import GradcError
except ImportError:                          # on a worker, loaded as gradc_dask_worker without gradc
    class GradcError(Exception):             # (never raised there: only the client checks input)
        def __init__(self, message, where=None, hint=None):
            super().__init__(message)

#: the name this file is imported under on the workers (and, for its worker functions, on the client)
WORKER_MODULE = "gradc_dask_worker"


# ================================================================ worker side: NumPy + Numba only
_MODULES: dict = {}          # digest -> the generated module, imported once per worker process
_SWEEPS: dict = {}           # (digest, n_args, n_wrt) -> the jitted loop of pointwise


def _worker_folder() -> Path:
    """Where a worker keeps its copies of generated modules (and Numba's cache of them):
    ``$GRADC_WORKER_DIR``, else ``gradc/workers`` in ``$GRADC_CACHE_DIR``'s or ``~/.cache``'s place."""
    base = os.environ.get("GRADC_WORKER_DIR")
    if not base:
        cache = os.environ.get("GRADC_CACHE_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "gradc")
        base = os.path.join(cache, "workers")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def module(ref):
    """The generated module ``ref = (file name, sha256 of its bytes, the client's path)``.

    Imported from the client's path when this machine sees that file unchanged (one machine, or a
    shared file system: Numba's cache there is the client's), else from a copy of the file that
    ``client.upload_file`` put in the worker's folder, written to :func:`_worker_folder` (only if it
    differs, so Numba's cache of it stays valid). Imported once per process, as a plain module."""
    filename, digest, client_path = ref
    mod = _MODULES.get(digest)
    if mod is not None:
        return mod

    def same(p: Path) -> bool:
        try:
            return p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest() == digest
        except OSError:
            return False

    path = Path(client_path)
    if not same(path):
        try:
            from distributed import get_worker
            uploaded = Path(get_worker().local_directory) / filename
        except (ImportError, ValueError):
            uploaded = None
        if uploaded is None or not same(uploaded):
            raise FileNotFoundError(f"the generated module {filename} (sha256 {digest[:16]}) is neither at "
                                    f"{client_path} nor uploaded to this worker ({uploaded})")
        data = uploaded.read_bytes()
        path = _worker_folder() / filename
        if not same(path):
            tmp = path.with_name(f".{filename}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
    name = path.stem if path.stem.isidentifier() else "gradc_worker_" + digest[:16]
    taken = sys.modules.get(name)
    if taken is not None and getattr(taken, "SOURCE_HASH", None) is not None:
        try:                                  # the same text already imported (threads in the client)
            if hashlib.sha256(Path(taken.__file__).read_bytes()).hexdigest() == digest:
                _MODULES[digest] = taken
                return taken
        except (OSError, TypeError):
            pass
        name = "gradc_worker_" + digest[:16]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    # the name gradc's loader falls back to: Numba's cache may record it (see gradc.runtime.loader)
    sys.modules["gradc_generated_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]] = mod
    spec.loader.exec_module(mod)
    _MODULES[digest] = mod
    return mod


def loaded_modules() -> dict:
    """``{sha256: file}`` of the generated modules this worker process has imported."""
    return {d: m.__file__ for d, m in _MODULES.items()}


def make_shard(names, *arrays) -> dict:
    """One shard: ``{name: C-contiguous array}`` from the blocks of a dask.array (or NumPy arrays)."""
    return {n: np.ascontiguousarray(a) for n, a in zip(names, arrays)}


def load_shard(paths) -> dict:
    """One shard read from disk: ``paths`` is a ``.npz`` file (one array per input) or ``{name: .npy file}``."""
    if isinstance(paths, dict):
        return {n: np.ascontiguousarray(np.load(p, allow_pickle=False)) for n, p in paths.items()}
    with np.load(paths, allow_pickle=False) as z:
        return {n: np.ascontiguousarray(z[n]) for n in z.files}


def shard_info(shard) -> dict:
    """``{name: (shape, dtype name)}`` of a shard, for the client's checks."""
    return {n: (tuple(a.shape), a.dtype.name) for n, a in shard.items()}


def shard_head(shard, k: int) -> dict:
    """The first ``k`` rows of a shard (copies)."""
    return {n: a[:k].copy() for n, a in shard.items()}


def shard_value_and_grad(ref, shard, params, layout, weight, rows=None, minus_empty=False):
    """``(weight * value, [weight * gradient, ...])`` of the generated ``value_and_grad`` on a shard
    (its rows ``rows``, an int array, if given), as float64; ``minus_empty`` subtracts the value and
    gradient at zero rows first (a sum-reduced loss's data-independent terms, counted once overall).

    ``layout``: one ``(True, name)`` (data) or ``(False, i)`` (``params[i]``) per argument in call order."""
    mod = module(ref)
    data = shard if rows is None else {n: a[rows] for n, a in shard.items()}

    def call(d):
        args = [d[x] if is_data else params[x] for is_data, x in layout]
        try:
            value, grads = mod.value_and_grad(*args)
        except Exception as e:             # the module's own ArgumentError is not importable on the client
            raise ValueError(f"{type(e).__name__}: {e}") from None
        return float(value), [np.asarray(g, dtype=np.float64) for g in grads]

    value, grads = call(data)
    if minus_empty:
        v0, g0 = call({n: a[:0] for n, a in shard.items()})
        value, grads = value - v0, [g - h for g, h in zip(grads, g0)]
    return weight * value, [weight * g for g in grads]


def shard_hvp(ref, shard, params, layout, weight, v, minus_empty=False):
    """``(0.0, [weight * (H v)_i, ...])``: the generated ``hvp`` (a module compiled with the
    derivative ``hvp``) on a shard, as float64, in the shape :func:`add` reduces; ``v`` one seed per
    ``wrt`` argument; ``minus_empty`` as in :func:`shard_value_and_grad`."""
    mod = module(ref)

    def call(d):
        args = [d[x] if is_data else params[x] for is_data, x in layout]
        try:
            hv = mod.hvp(*args, *v)
        except Exception as e:
            raise ValueError(f"{type(e).__name__}: {e}") from None
        if not isinstance(hv, (tuple, list)):
            hv = (hv,)
        return [np.asarray(h, dtype=np.float64) for h in hv]

    hv = call(shard)
    if minus_empty:
        hv = [h - z for h, z in zip(hv, call({n: a[:0] for n, a in shard.items()}))]
    return 0.0, [weight * h for h in hv]


def add(a, b):
    """The sum of two ``(value, [gradient, ...])`` pairs: one node of the reduction tree."""
    return a[0] + b[0], [x + y for x, y in zip(a[1], b[1])]


def _sweep_loop(vg, n_args: int, n_wrt: int):
    """The jitted loop of :func:`sweep` for one arity: each row of ``block`` as the ``n_args``
    scalar arguments of ``vg`` (a tuple of constant length: Numba reads ``n_args`` and ``n_wrt``
    from this closure as compile-time constants)."""
    import numba
    from numba.np.unsafe.ndarray import to_fixed_tuple

    @numba.njit
    def loop(block, out):
        for i in range(block.shape[0]):
            v, g = vg(*to_fixed_tuple(block[i], n_args))
            out[i, 0] = v
            for j in range(n_wrt):
                out[i, j + 1] = g[j]
    return loop


def sweep(block, ref, n_wrt: int):
    """Value and gradient at each row of ``block`` (rows x n_args, float64): a (rows x (1 + n_wrt))
    array, filled by one jitted loop (generated for this arity) calling the module's value_and_grad."""
    mod = module(ref)
    n_args, n_wrt = int(block.shape[1]), int(n_wrt)
    key = (ref[1], n_args, n_wrt)
    fn = _SWEEPS.get(key)
    if fn is None:
        fn = _SWEEPS[key] = _sweep_loop(mod.value_and_grad, n_args, n_wrt)
    out = np.empty((block.shape[0], 1 + n_wrt))
    fn(np.ascontiguousarray(block, dtype=np.float64), out)
    return out


# ================================================================ client side
class DistributedError(GradcError):
    """A bad argument of :mod:`gradc.distributed` (named in the message), or a cluster that
    cannot be reached."""

    default_hint = "see 'Distributed (Dask)' in gradc's README"


def _dask():
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError:
        raise DistributedError("gradc.distributed needs dask and distributed, which are not installed",
                               hint='pip install "gradc[distributed]"') from None
    return distributed


def _worker_functions(client=None):
    """This file imported as :data:`WORKER_MODULE` (so that its worker functions pickle by a name
    the workers can import), uploaded to ``client``'s workers once."""
    from gradc.runtime.loader import cache_dir, write_atomic

    text = Path(__file__).read_text(encoding="utf-8")
    path = cache_dir() / "workers" / f"{WORKER_MODULE}.py"
    write_atomic(path, text)
    w = sys.modules.get(WORKER_MODULE)
    if w is None or getattr(w, "_TEXT", None) != text:
        spec = importlib.util.spec_from_file_location(WORKER_MODULE, path)
        w = importlib.util.module_from_spec(spec)
        sys.modules[WORKER_MODULE] = w
        spec.loader.exec_module(w)
        w._TEXT = text
    if client is not None:
        _upload(client, path)
    return w


_UPLOADED: dict = {}         # id(client) -> {sha256 of the files uploaded to it}


def _upload(client, path: Path, load: bool = True) -> None:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    done = _UPLOADED.setdefault(id(client), set())
    if (digest, str(client.scheduler.address)) not in done:
        client.upload_file(str(path), load=load)
        done.add((digest, str(client.scheduler.address)))


def _module_ref(compiled, client=None) -> tuple:
    """``(file name, sha256, path)`` of the compiled module, uploaded to ``client``'s workers."""
    path = Path(compiled.path).resolve()
    if client is not None:
        _upload(client, path, load=False)
    return path.name, hashlib.sha256(path.read_bytes()).hexdigest(), str(path)


def _probe(address: str, timeout: float) -> None:
    """Ask ``address`` who it is, within ``timeout`` seconds (in a thread with its own event loop:
    a port held by another kind of server accepts the connection and never answers, and
    ``Client(timeout=)`` does not bound that wait)."""
    import asyncio
    import threading

    from distributed.core import rpc
    answer: dict = {}

    async def ask():
        r = rpc(address, timeout=timeout)
        try:
            answer["identity"] = await asyncio.wait_for(r.identity(), timeout)
        finally:
            await r.close_rpc()

    def run():
        try:
            asyncio.run(ask())
        except BaseException as e:              # noqa: BLE001 -- reported below
            answer["error"] = e

    thread = threading.Thread(target=run, name="gradc-scheduler-probe", daemon=True)
    thread.start()
    thread.join(timeout + 2.0)
    who = answer.get("identity")
    if not isinstance(who, dict):
        why = type(answer["error"]).__name__ if "error" in answer else "no answer"
        raise DistributedError(f"scheduler={address!r}: no Dask scheduler answered within {timeout:g} s ({why})",
                               hint="start one with 'dask scheduler' (and workers with 'dask worker ADDRESS'), "
                                    "or leave scheduler out for an embedded LocalCluster")
    if who.get("type") != "Scheduler":
        raise DistributedError(f"scheduler={address!r} is a Dask {who.get('type', 'server')}, not a scheduler",
                               hint="pass the scheduler's address (dask scheduler prints it)")


class cluster:
    """A Dask client, as a context manager: ``with gradc.distributed.cluster() as client: ...``.

    ``client``: an existing ``distributed.Client`` (used as is, never closed here);
    ``scheduler``: the address of a running scheduler (``"tcp://host:8786"``), connected to within
    ``timeout`` seconds (else a :class:`DistributedError`, never a hang); neither: an embedded
    ``LocalCluster(processes=True, threads_per_worker=1, n_workers=n_workers or the number of
    cores)``. What this object started (client, cluster) is closed by :meth:`close` / the end of
    the ``with`` block.
    """

    def __init__(self, client=None, scheduler: str | None = None, n_workers: int | None = None,
                 timeout: float = 10.0):
        distributed = _dask()
        self._cluster, self._owned = None, False
        if client is not None and scheduler is not None:
            raise DistributedError("pass client= or scheduler=, not both")
        if n_workers is not None and (not isinstance(n_workers, int) or isinstance(n_workers, bool)
                                      or n_workers < 1):
            raise DistributedError(f"n_workers={n_workers!r} must be a positive integer")
        if client is not None:
            if not isinstance(client, distributed.Client):
                raise DistributedError(f"client={client!r} is not a distributed.Client",
                                       hint="pass distributed.Client(...) or scheduler='tcp://host:port'")
            self.client = client
            return
        if scheduler is not None:
            if not isinstance(scheduler, str) or "://" not in scheduler and ":" not in scheduler:
                raise DistributedError(f"scheduler={scheduler!r} is not an address like 'tcp://host:8786'")
            _probe(scheduler, timeout)
            try:
                self.client = distributed.Client(scheduler, timeout=timeout)
            except (OSError, TimeoutError) as e:
                raise DistributedError(f"scheduler={scheduler!r}: no Dask scheduler answered within "
                                       f"{timeout:g} s ({type(e).__name__})",
                                       hint="start one with 'dask scheduler' (and workers with 'dask worker "
                                            "ADDRESS'), or leave scheduler out for an embedded LocalCluster") from None
            self._owned = True
            return
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        n = n_workers or cores
        self._cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                 dashboard_address=":0")      # any free port
        self.client = distributed.Client(self._cluster)
        self._owned = True

    @property
    def embedded(self) -> bool:
        """True if this object started the cluster (a LocalCluster)."""
        return self._cluster is not None

    def close(self) -> None:
        if self._owned:
            _UPLOADED.pop(id(self.client), None)
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()
            self._owned = False

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        self.close()


def _data_names(compiled) -> list[str]:
    params = getattr(compiled, "params", {})
    return [a for a in compiled.arg_names if a not in params]


class Sharded:
    """A compiled model with its data in shards on a Dask cluster.

    ``compiled``: a :class:`gradc.Compiled` whose value is a loss that is a ``mean`` or a ``sum``
    over the examples (the first axis of every data input). ``data``, one of:

    * ``{name: NumPy array}`` for every input (``X``, ``y``, ...), split into ``shards`` pieces of
      consecutive rows (default: one per worker) and scattered;
    * ``{name: dask.array}``, one shard per chunk along the first axis (the other inputs are
      rechunked to the first one's chunks); persisted;
    * a list of ``.npz`` files (each holding every input by name), or ``{name: [.npy files]}``,
      one shard per file, read by the workers (the paths must be valid there); persisted.

    Every shard's arrays must have the declared dtypes and trailing shape (``X``: float64
    ``(rows, 64)`` for the digits MLP) and the same number of rows; else a
    :class:`DistributedError` naming the shard. The inputs must not be in the module's ``wrt``
    (a data gradient does not add up over shards).

    ``reduction``: ``"mean"``, ``"sum"`` or None (the default) to detect it from the first rows
    when the parameters are first seen. Why weighting makes one process's numbers: a mean-reduced
    loss ``L = (1/N) sum_i l_i + R`` (``R`` any data-independent term, e.g. weight decay) equals
    ``sum_k (n_k/N) L_k`` with ``L_k`` the same loss on shard k of ``n_k`` rows, because the weights
    ``n_k/N`` add up to 1 (so ``R`` is kept once) and ``(n_k/N)(1/n_k) sum_{i in k} l_i`` is shard
    k's part of the mean; the gradient is linear, so the same weights give the gradient. Averaging
    the shards' means without weights is wrong when shards differ in size. A sum-reduced loss
    ``L = sum_i l_i + R`` is instead ``sum_k L_k - (K - 1) R``: every shard's loss carries ``R``,
    which is the loss at zero rows, so all shards but the first subtract their value (and
    gradient) at zero rows. Other reductions (a max, a median) do not decompose and are refused.

    ``client``/``scheduler``/``n_workers``/``timeout``: see :class:`cluster` (default: an embedded
    LocalCluster, closed by :meth:`close` or the end of a ``with`` block). ``retries``: how often a
    step whose scattered shards were lost with a worker is run again after re-scattering them.
    """

    def __init__(self, compiled, data, *, shards: int | None = None, reduction: str | None = None,
                 client=None, scheduler: str | None = None, n_workers: int | None = None,
                 timeout: float = 10.0, retries: int = 5):
        if reduction not in (None, "mean", "sum"):
            raise DistributedError(f"reduction={reduction!r} must be 'mean', 'sum' or None (detect it)")
        if not hasattr(compiled, "module") or not hasattr(compiled, "arg_names"):
            raise DistributedError(f"compiled={compiled!r} is not a gradc.Compiled",
                                   hint="pass gradc.compile(spec)")
        self.compiled, self.reduction, self.retries = compiled, reduction, retries
        self.rescattered = 0          # shards scattered again after a lost worker
        self.inputs = _data_names(compiled)
        wrong = [w for w in compiled.wrt if w in self.inputs]
        if wrong:
            raise DistributedError(f"{compiled.output} is differentiated with respect to the data input(s) "
                                   f"{', '.join(wrong)}: a data gradient does not add up over shards",
                                   hint="compile it with wrt= its parameters only")
        self.conn = cluster(client, scheduler, n_workers, timeout)
        try:
            self.client = self.conn.client
            self._w = _worker_functions(self.client)
            self._ref = _module_ref(compiled, self.client)
            self._sources, self.shards = self._place(data, shards)
            self._check_shards()
        except BaseException:
            self.conn.close()
            raise

    # ------------------------------------------------------------ shards
    def _place(self, data, shards):
        """(how to rebuild each shard or None if Dask can, the shard futures)."""
        client, w = self.client, self._w
        if isinstance(data, (list, tuple)) or (isinstance(data, dict) and data and all(
                isinstance(v, (list, tuple)) for v in data.values())):
            files = [str(p) for p in data] if isinstance(data, (list, tuple)) else None
            if files is None:
                counts = {n: len(v) for n, v in data.items()}
                if len(set(counts.values())) != 1:
                    raise DistributedError(f"data: the lists of .npy files differ in length ({counts})",
                                           hint="one file per shard and input")
                files = [{n: str(v[k]) for n, v in data.items()} for k in range(len(next(iter(data.values()))))]
            if not files:
                raise DistributedError("data: the list of shard files is empty")
            futures = [client.submit(w.load_shard, f, pure=False) for f in files]
            self._labels = [f if isinstance(f, str) else ", ".join(f.values()) for f in files]
            return [None] * len(files), futures
        if not isinstance(data, dict) or not data:
            raise DistributedError(f"data must be a dict {{input: array}}, a list of .npz files or "
                                   f"{{input: [.npy files]}}, got {type(data).__name__}",
                                   hint=f"pass data={{{', '.join(repr(n) + ': ...' for n in self.inputs)}}}")
        self._check_keys(data)
        import dask.array as da
        if all(isinstance(v, da.Array) for v in data.values()):
            names = list(data)
            first = data[names[0]]
            blocks = []
            for n in names:
                a = data[n]
                if a.ndim == 0 or a.shape[0] != first.shape[0]:
                    raise DistributedError(f"data[{n!r}] has shape {a.shape}; every input needs the "
                                           f"{first.shape[0]} rows of data[{names[0]!r}] along its first axis")
                a = a.rechunk({0: first.chunks[0], **{k: -1 for k in range(1, a.ndim)}})
                blocks.append(a.to_delayed().reshape(-1))
            from dask import delayed
            parts = [delayed(w.make_shard, pure=True)(names, *row) for row in zip(*blocks)]
            futures = client.compute(parts)
            self._labels = [f"chunk {k}" for k in range(len(parts))]
            return [None] * len(parts), futures
        arrays = {n: np.asarray(v) for n, v in data.items()}
        for n, a in arrays.items():
            if a.ndim == 0:
                raise DistributedError(f"data[{n!r}] is a scalar; every input needs an example axis first")
        rows = {n: len(a) for n, a in arrays.items()}
        if len(set(rows.values())) != 1:
            raise DistributedError(f"data: the arrays differ in their number of rows ({rows})",
                                   hint="every array's first axis runs over the same examples")
        n = next(iter(rows.values()))
        k = shards if shards is not None else max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= max(n, 1):
            raise DistributedError(f"shards={shards!r} must be an integer from 1 to the number of rows ({n})")
        cuts = np.cumsum([0] + [n // k + (i < n % k) for i in range(k)])        # as numpy.array_split
        sources = [{name: a[cuts[i]:cuts[i + 1]] for name, a in arrays.items()} for i in range(k)]
        self._labels = [f"rows {cuts[i]}:{cuts[i + 1]}" for i in range(k)]
        return sources, client.scatter(sources, hash=False)

    def _check_keys(self, data: dict) -> None:
        for key in data:
            if key not in self.compiled.arg_names:
                raise DistributedError(f"data key {key!r} is not an argument of {self.compiled.output}"
                                       f"({', '.join(self.compiled.arg_names)})",
                                       hint=f"its data inputs are {', '.join(self.inputs)}")
            if key not in self.inputs:
                raise DistributedError(f"data key {key!r} is a parameter of {self.compiled.output}",
                                       hint="pass parameters to value_and_grad/train, data here")

    def _check_shards(self) -> None:
        infos = self.client.gather([self.client.submit(self._w.shard_info, s, pure=False) for s in self.shards])
        shapes, dtypes = self.compiled.shapes, self.compiled.dtypes
        self.rows = []
        for k, info in enumerate(infos):
            where = f"shard {k} ({self._labels[k]})"
            missing = [n for n in self.inputs if n not in info]
            if missing:
                raise DistributedError(f"{where} has no {', '.join(map(repr, missing))} (it has "
                                       f"{', '.join(map(repr, info)) or 'nothing'})",
                                       hint=f"every shard holds every data input: {', '.join(self.inputs)}")
            nrows = set()
            for n in self.inputs:
                shape, dtype = info[n]
                declared = tuple(shapes[n])
                if not declared or isinstance(declared[0], int):
                    raise DistributedError(f"input {n!r} is declared with shape {list(declared)}, without a "
                                           f"symbolic example axis first: it cannot be split into shards",
                                           hint='declare it like shape = ["batch", ...]')
                if len(shape) != len(declared) or any(isinstance(d, int) and d != s
                                                      for d, s in zip(declared[1:], shape[1:])):
                    raise DistributedError(f"{where}: {n!r} has shape {shape}, but the module was compiled for "
                                           f"{list(declared)}", hint="compile the spec for this data, or fix the shard")
                if dtype != dtypes[n]:
                    raise DistributedError(f"{where}: {n!r} is {dtype}, but the module declares {dtypes[n]}",
                                           hint=f"convert it with .astype(np.{dtypes[n]})")
                nrows.add(shape[0])
            if len(nrows) != 1:
                raise DistributedError(f"{where}: the inputs differ in their number of rows "
                                       f"({', '.join(f'{n}: {info[n][0][0]}' for n in self.inputs)})")
            self.rows.append(nrows.pop())
        self.n = int(sum(self.rows))
        if self.n == 0:
            raise DistributedError("data: the shards hold no rows")
        self.offsets = np.concatenate([[0], np.cumsum(self.rows)])

    def _recover(self) -> bool:
        """Re-scatter the NumPy shards that were lost with a worker; True if any was."""
        lost = [k for k, f in enumerate(self.shards) if f.status in ("cancelled", "lost", "error")]
        again = [k for k in lost if self._sources[k] is not None]
        if again:
            new = self.client.scatter([self._sources[k] for k in again], hash=False)
            for k, f in zip(again, new):
                self.shards[k] = f
            self.rescattered += len(again)
        return bool(again)

    # ------------------------------------------------------------ value and gradient
    def _params(self, params) -> tuple:
        if not isinstance(params, dict):
            raise DistributedError(f"params must be a dict {{name: array}}, got {type(params).__name__}",
                                   hint="use compiled.init_params()")
        need = [a for a in self.compiled.arg_names if a not in self.inputs]
        missing = [a for a in need if a not in params]
        if missing:
            raise DistributedError(f"params has no {', '.join(map(repr, missing))}",
                                   hint=f"pass every parameter: {', '.join(need)}")
        return tuple(params[a] for a in need)

    def _layout(self):
        names = [a for a in self.compiled.arg_names if a not in self.inputs]
        return tuple((True, a) if a in self.inputs else (False, names.index(a)) for a in self.compiled.arg_names)

    def _detect(self, params: dict) -> str:
        """``"mean"`` or ``"sum"``: which identity the loss obeys on the first rows (see the class doc)."""
        head, got = [], 0
        for k, s in enumerate(self.shards):
            if got >= 2:
                break
            if self.rows[k]:
                head.append(self.client.submit(self._w.shard_head, s, 4, pure=False).result())
                got += min(self.rows[k], 4)
        if got < 2:
            raise DistributedError("cannot detect the loss's reduction from fewer than 2 rows",
                                   hint="pass reduction='mean' or 'sum'")
        rows = {n: np.concatenate([h[n] for h in head]) for n in self.inputs}
        h = len(rows[self.inputs[0]]) // 2

        def vg(sel):
            d = {n: np.ascontiguousarray(np.concatenate([rows[n][s] for s in sel])) for n in self.inputs}
            v, g = self.compiled.value_and_grad(**d, **{a: params[a] for a in params if a not in self.inputs})
            return np.concatenate([[v], *[np.ravel(x) for x in g]])

        a, b = slice(0, h), slice(h, None)
        la, lb, lab, laa = vg([a]), vg([b]), vg([a, b]), vg([a, a])
        na, nb = h, len(rows[self.inputs[0]]) - h

        def close(x, y):
            return np.all(np.abs(x - y) <= 1e-9 * np.maximum(np.maximum(np.abs(x), np.abs(y)), 1e-12))

        mean = close(lab, (na * la + nb * lb) / (na + nb))
        total = close(lab, la + lb - (2 * la - laa))
        if mean != total:
            return "mean" if mean else "sum"
        raise DistributedError(f"cannot tell whether {self.compiled.output} is a mean or a sum over the examples"
                               + (" (on the first rows it behaves like both)" if mean else
                                  " (it is neither: only mean- and sum-reduced losses add up over shards)"),
                               hint="pass reduction='mean' or 'sum'")

    def _reduce(self, futures):
        while len(futures) > 1:
            futures = [self.client.submit(self._w.add, futures[i], futures[i + 1], pure=False)
                       if i + 1 < len(futures) else futures[i] for i in range(0, len(futures), 2)]
        return futures[0]

    def _run(self, ptuple, parts, v=None):
        """One reduction over ``parts`` = [(shard index, rows or None, row count)]: of the value and
        gradient, or with ``v`` (one seed per ``wrt`` argument, whole shards only) of ``H v``."""
        import time
        from concurrent.futures import CancelledError
        total = sum(c for _, _, c in parts)
        for attempt in range(self.retries + 1):
            try:
                # to one worker; the others fetch it from there once per step (a broadcast would replicate
                # through the scheduler, which keeps retrying a worker that died meanwhile)
                if v is None:
                    [pf] = self.client.scatter([ptuple], hash=False)
                else:
                    pf, vf = self.client.scatter([ptuple, v], hash=False)
                futures = []
                for j, (k, rows, count) in enumerate(parts):
                    weight = count / total if self.reduction == "mean" else 1.0
                    if v is None:
                        futures.append(self.client.submit(self._w.shard_value_and_grad, self._ref, self.shards[k],
                                                          pf, self._layout(), weight, rows,
                                                          self.reduction == "sum" and j > 0, pure=False))
                    else:
                        futures.append(self.client.submit(self._w.shard_hvp, self._hvp_ref(), self.shards[k], pf,
                                                          self._layout(), weight, vf,
                                                          self.reduction == "sum" and j > 0, pure=False))
                value, grads = self._reduce(futures).result()
                return value, grads
            except (CancelledError, OSError):   # scattered shards lost with a worker, or a scatter to a
                # worker that has just died (distributed's CommClosedError is an OSError): scatter again
                if attempt == self.retries:
                    raise
                time.sleep(0.5 * (attempt + 1))    # time for the scheduler to see the worker gone
                self._recover()
        raise AssertionError("unreachable")

    def value_and_grad(self, params: dict) -> tuple[float, dict]:
        """``(value, {name: gradient})`` of the loss over all rows, as one process would compute it
        over the concatenated data (to summation-order rounding). ``params``: every parameter
        by name (shapes and dtypes as declared). Gradients are float64, shaped like the parameters,
        for every name of the module's ``wrt``."""
        ptuple = self._params(params)
        if self.reduction is None:
            self.reduction = self._detect(params)
        value, grads = self._run(ptuple, [(k, None, r) for k, r in enumerate(self.rows) if r])
        return value, {w: g.reshape(np.shape(params[w])) if np.ndim(params[w]) else float(g)
                       for w, g in zip(self.compiled.wrt, grads)}

    def _hvp_ref(self) -> tuple:
        """The module ref of ``compiled`` with the derivative ``hvp`` (``compiled`` itself if it has
        it, else the module gradc compiles for ``compiled.hvp``), uploaded to the workers once."""
        ref = getattr(self, "_hvp", None)
        if ref is None:
            try:
                other = self.compiled._derivative("hvp").compiled
            except GradcError as e:
                raise DistributedError(f"{self.compiled.output} has no Hessian-vector product: {e}",
                                       hint="compile it with derivatives=['hvp']") from None
            if tuple(other.wrt) != tuple(self.compiled.wrt) or tuple(other.arg_names) != tuple(self.compiled.arg_names):
                raise DistributedError(f"the hvp module of {self.compiled.output} has other arguments or wrt")
            ref = self._hvp = _module_ref(other, self.client)
        return ref

    def hvp(self, params: dict, v) -> dict:
        """``{name: (H v)_name}``: the Hessian of the loss over all rows times ``v`` (a dict by
        ``wrt`` name, or a tuple in ``wrt`` order, shaped like the parameters), as one process
        would compute it over the concatenated data (to summation-order rounding). Each worker
        runs the generated ``hvp`` (forward over reverse) on its shards, weighted as
        :meth:`value_and_grad` weights the gradient (``n_k/N`` for a mean, the zero-row terms
        counted once for a sum), and the same tree of pairwise sums adds them up."""
        ptuple = self._params(params)
        wrt = self.compiled.wrt
        if isinstance(v, dict):
            missing = [w for w in wrt if w not in v]
            if missing:
                raise DistributedError(f"hvp: v has no {', '.join(map(repr, missing))}")
            v = [v[w] for w in wrt]
        v = list(v) if isinstance(v, (tuple, list)) else [v]
        if len(v) != len(wrt):
            raise DistributedError(f"hvp: v has {len(v)} seeds, expected one per wrt argument ({', '.join(wrt)})")
        seeds = []
        for w, x in zip(wrt, v):
            shape = np.shape(params[w])
            x = np.asarray(x, dtype=np.float64)
            if x.shape != shape:
                raise DistributedError(f"hvp: v[{w!r}] has shape {x.shape}, expected {shape} (like {w})")
            seeds.append(np.ascontiguousarray(x) if shape else float(x))
        if self.reduction is None:
            self.reduction = self._detect(params)
        _, hv = self._run(ptuple, [(k, None, r) for k, r in enumerate(self.rows) if r], v=tuple(seeds))
        return {w: h.reshape(np.shape(params[w])) if np.ndim(params[w]) else float(h) for w, h in zip(wrt, hv)}

    # ------------------------------------------------------------ training
    def train(self, params: dict, *, epochs: int = 10, batch_size: int | None = 32, optimizer=None,
              lr: float | None = None, lr_schedule=None, weight_decay=0.0, shuffle: bool = True, seed: int = 0,
              log=print, progress: bool | None = None, callback=None):
        """Synchronous data-parallel training of ``params`` (updated in place), as
        :func:`gradc.runtime.train` does in one process: each epoch draws the order of all rows
        from ``numpy.random.default_rng(seed)`` (the same draws as ``train``, so the same
        minibatches), each minibatch's rows are looked up in their shards, every shard holding
        some of them computes its part where it lives, and the tree reduction gives the
        minibatch's loss and gradient for ``optimizer`` (a name, or an object of
        :mod:`gradc.runtime.optim`). ``batch_size=None``: full batch. ``lr_schedule``,
        ``weight_decay``, ``log`` and ``progress`` (a tqdm bar) as in ``train``; ``callback(step,
        params)`` runs after each step. Returns a :class:`gradc.runtime.History`.

        Each step sends the parameters and the row indices, and gets one gradient back: small
        minibatches are dominated by this per-step latency (milliseconds), so the cluster pays off
        with large batches or full-batch methods (:meth:`minimize`)."""
        from gradc.runtime.train import epochs_loop
        self._params(params)                                # checks params
        if self.reduction is None:
            self.reduction = self._detect(params)
        n, shapes = self.n, {w: np.shape(params[w]) for w in self.compiled.wrt if w in params}

        def gradient(idx):
            if len(idx) == n:                               # the full batch: every shard whole
                parts = [(k, None, r) for k, r in enumerate(self.rows) if r]
            else:
                owner = np.searchsorted(self.offsets, idx, side="right") - 1
                parts = [(k, idx[owner == k] - self.offsets[k], int(np.sum(owner == k))) for k in np.unique(owner)]
            value, grads = self._run(self._params(params), parts)
            return value, {w: g.reshape(shapes[w]) if shapes[w] else float(g)
                           for w, g in zip(self.compiled.wrt, grads) if w in shapes}

        def where():
            return f" on {len(self.client.scheduler_info(n_workers=-1)['workers'])} workers"

        return epochs_loop(self.compiled, params, n, gradient, epochs=epochs, batch_size=batch_size,
                           optimizer=optimizer, lr=lr, lr_schedule=lr_schedule, weight_decay=weight_decay,
                           shuffle=shuffle, seed=seed, log=log, progress=progress, callback=callback, where=where)

    def minimize(self, params: dict, *, method: str = "L-BFGS-B", tol: float | None = None,
                 options: dict | None = None, progress: bool | None = None):
        """Full-batch training: ``scipy.optimize.minimize(fun, x0, jac=True, method=method)`` with
        ``fun`` the distributed loss and gradient of the float parameters in ``wrt`` (flattened
        into one float64 vector); a Newton-type ``method`` (``"trust-ncg"``, ``"newton-cg"``,
        ``"trust-krylov"``, ``"trust-constr"``) also gets ``hessp``, the distributed
        Hessian-vector product of :meth:`hvp` (the module with ``hvp`` is compiled if needed). ``params`` is updated in place to the result. Returns SciPy's
        ``OptimizeResult`` with ``history``: the loss after each iteration (a
        :class:`gradc.runtime.History`) and ``params``. ``progress``: a tqdm bar of the function
        evaluations."""
        from scipy.optimize import minimize as scipy_minimize

        from gradc.runtime.train import History, _progress_bar
        self._params(params)
        learn = [w for w in self.compiled.wrt if w in params and self.compiled.dtypes[w].startswith("float")]
        if not learn:
            raise DistributedError("minimize: no float parameter of wrt is in params")
        shapes = [np.shape(params[w]) for w in learn]
        sizes = [int(np.prod(s)) for s in shapes]
        x0 = np.concatenate([np.ravel(np.asarray(params[w], dtype=np.float64)) for w in learn])
        history, bar = History(), _progress_bar(progress, (options or {}).get("maxiter", 15000))
        last = {}

        def put(x):
            out, at = dict(params), 0
            for w, s, size in zip(learn, shapes, sizes):
                v = x[at:at + size].reshape(s)
                out[w] = v.astype(np.dtype(self.compiled.dtypes[w])) if s else float(v)
                at += size
            return out

        def fun(x):
            value, grads = self.value_and_grad(put(x))
            last["value"] = value
            return value, np.concatenate([np.ravel(grads[w]) for w in learn])

        def hessp(x, p):
            at, v = 0, {}
            for w in self.compiled.wrt:
                if w in learn:
                    size = sizes[learn.index(w)]
                    v[w] = p[at:at + size].reshape(shapes[learn.index(w)])
                    at += size
                else:                           # a wrt argument that is not learned: no direction
                    v[w] = np.zeros(np.shape(params[w]))
            hv = self.hvp(put(x), v)
            return np.concatenate([np.ravel(hv[w]) for w in learn])

        from gradc.optimize import USES_HESSP
        extra = {"hessp": hessp} if isinstance(method, str) and method.lower() in USES_HESSP else {}

        def callback(xk, *args):
            history.append(float(last.get("value", np.nan)))
            if bar is not None:
                bar.set_postfix(loss=f"{history[-1]:.6g}", refresh=False)
                bar.update(1)

        import time
        t0 = time.perf_counter()
        try:
            res = scipy_minimize(fun, x0, jac=True, method=method, tol=tol, options=options, callback=callback,
                                 **extra)
        finally:
            if bar is not None:
                bar.close()
        history.seconds = time.perf_counter() - t0
        for w, v in put(res.x).items():
            if isinstance(params.get(w), np.ndarray):
                params[w][...] = v
            else:
                params[w] = v
        res.history, res.params = history, params
        return res

    def close(self) -> None:
        """Release the shards; close the cluster if this object started it."""
        try:
            for f in self.shards:              # this object's references (not cancel: keys may be shared)
                f.release()
            self.shards = []
        finally:
            self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"<gradc.distributed.Sharded {self.compiled.output}: {self.n} rows in {len(self.shards)} shards, "
                f"reduction={self.reduction}>")


def _split(kwargs: dict):
    keys = ("shards", "reduction", "client", "scheduler", "n_workers", "timeout", "retries")
    return {k: kwargs.pop(k) for k in keys if k in kwargs}, kwargs


def value_and_grad(compiled, params: dict, data, **kwargs):
    """``Sharded(compiled, data, **kwargs).value_and_grad(params)``, with the cluster closed after
    (if it was started here). For repeated calls keep a :class:`Sharded`: its shards stay put."""
    with Sharded(compiled, data, **kwargs) as s:
        return s.value_and_grad(params)


def train(compiled, params: dict, data, **kwargs):
    """``Sharded(compiled, data, ...).train(params, ...)``: keywords of both (see :meth:`Sharded.train`)."""
    mine, rest = _split(kwargs)
    with Sharded(compiled, data, **mine) as s:
        return s.train(params, **rest)


def minimize(compiled, params: dict, data, **kwargs):
    """``Sharded(compiled, data, ...).minimize(params, ...)`` (L-BFGS-B by default)."""
    mine, rest = _split(kwargs)
    with Sharded(compiled, data, **mine) as s:
        return s.minimize(params, **rest)


def pointwise(compiled, points, *, client=None):
    """Value and gradient of a scalar function at many points.

    ``compiled``: a :class:`gradc.Compiled` of scalar arguments only (a SymPy expression of
    Symbols); ``points``: a ``dask.array`` (or NumPy array, made one chunk per worker) of shape
    (N, n_args), one point per row in ``arg_names`` order, converted to float64. Returns a lazy
    float64 ``dask.array`` of shape (N, 1 + len(wrt)) chunked like ``points``: the value, then the
    gradient in ``wrt`` order. Each chunk is swept by one jitted loop on a worker, calling the
    generated ``value_and_grad`` row by row inside compiled code.

    ``client``: the cluster that computes it (the module is uploaded to its workers); default the
    current client (``with gradc.distributed.cluster(): ...``), else dask's local scheduler in
    this process. Raises :class:`DistributedError` for arguments that are not float scalars or
    points of the wrong width.
    """
    _dask()
    import dask.array as da
    from distributed import default_client
    bad = [a for a in compiled.arg_names if tuple(compiled.shapes[a]) != () or not compiled.dtypes[a].startswith("float")]
    if bad:
        raise DistributedError(f"pointwise: {compiled.output}'s arguments {', '.join(map(repr, bad))} are not "
                               f"float scalars", hint="pointwise evaluates functions of scalar arguments (SymPy Symbols)")
    if "grad" not in getattr(compiled, "derivatives", ("grad",)) or compiled.module.value_and_grad is None:
        raise DistributedError(f"pointwise: {compiled.output} has no gradient")
    if client is None:
        try:
            client = default_client()
        except ValueError:
            client = None
    if not isinstance(points, da.Array):
        points = np.asarray(points)
        parts = len(client.scheduler_info(n_workers=-1)["workers"]) if client is not None else 1
        points = da.from_array(points, chunks=(max(1, -(-len(points) // max(parts, 1))), -1) if points.ndim == 2 else -1)
    n_args = len(compiled.arg_names)
    if points.ndim != 2 or points.shape[1] != n_args:
        raise DistributedError(f"pointwise: points has shape {points.shape}, expected (N, {n_args}): one row per "
                               f"point with {', '.join(compiled.arg_names)}")
    w = _worker_functions(client)
    ref = _module_ref(compiled, client)
    points = points.rechunk({1: -1}).astype(np.float64)
    n_wrt = len(compiled.wrt)
    return points.map_blocks(w.sweep, ref, n_wrt, dtype=np.float64, chunks=(points.chunks[0], (1 + n_wrt,)))


# ================================================================ the command line: gradc train
def train_arguments(p) -> None:
    """The options of ``gradc train`` on the argparse parser ``p``."""
    p.add_argument("spec", help="the model spec: a TOML file whose value is a mean- or sum-reduced loss")
    p.add_argument("--data", required=True, metavar="FILE.npz",
                   help="the training data: a .npz file with one array per input of the spec (X, y, ...)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://127.0.0.1:8786 "
                   "(default: an embedded LocalCluster)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="workers of the embedded cluster (default: one per core); 1: train in this process, no Dask")
    p.add_argument("--shards", type=int, default=None, help="shards of the data (default: one per worker)")
    p.add_argument("--epochs", type=int, default=10,
                   help="passes over the data (default 10); with --optimizer lbfgs: its iterations")
    p.add_argument("--batch-size", type=int, default=32, help="rows per step; 0 for the full batch (default 32)")
    p.add_argument("--optimizer", default="sgd",
                   help="sgd, momentum, adagrad, rmsprop, adam, deltabardelta, or lbfgs (full batch, SciPy)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial parameters and the minibatches")
    p.add_argument("-o", "--output", metavar="FILE.npz", help="save the trained parameters (a gradc checkpoint)")


def cmd_train(a) -> int:
    """``gradc train``: compile the spec, read the data, train (on the cluster, or in this process
    with ``--workers 1``), print one line per epoch and save the parameters with ``-o``."""
    import gradc
    from gradc.runtime import save_checkpoint
    from gradc.runtime import train as train_one

    compiled = gradc.compile(a.spec)
    try:
        with np.load(a.data, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DistributedError(f"--data {a.data}: cannot read it as a .npz file ({e})",
                               hint="save the inputs with numpy.savez(path, X=X, y=y)") from None
    params = compiled.init_params(seed=a.seed)
    batch = None if a.batch_size == 0 else a.batch_size
    if a.workers is not None and a.workers < 1:
        raise DistributedError(f"--workers {a.workers} must be at least 1")
    lbfgs = a.optimizer.lower().replace("-", "") in ("lbfgs", "lbfgsb")
    if a.workers == 1 and a.scheduler is None:
        if lbfgs:
            raise DistributedError("--optimizer lbfgs runs on the cluster; leave out --workers 1")
        train_one(compiled, params, data, epochs=a.epochs, batch_size=batch, optimizer=a.optimizer, lr=a.lr,
                  seed=a.seed)
    else:
        with Sharded(compiled, data, shards=a.shards, scheduler=a.scheduler, n_workers=a.workers) as s:
            print(f"gradc: {s.n} rows in {len(s.shards)} shards on "
                  f"{len(s.client.scheduler_info(n_workers=-1)['workers'])} Dask workers", file=sys.stderr)
            if lbfgs:
                res = s.minimize(params, options={"maxiter": a.epochs})
                print(f"L-BFGS-B: loss {res.fun:.6g} after {res.nit} iterations ({res.message})")
            else:
                s.train(params, epochs=a.epochs, batch_size=batch, optimizer=a.optimizer, lr=a.lr, seed=a.seed)
    if a.output:
        print(f"saved {save_checkpoint(a.output, compiled, params)}")
    return 0


def main_train(argv=None) -> int:
    """``gradc train`` as a function (``main_train(["spec.toml", "--data", "d.npz"])``): the exit status."""
    import argparse
    p = argparse.ArgumentParser(prog="gradc train", description="train a spec on a data file, on a Dask cluster")
    train_arguments(p)
    a = p.parse_args(argv)
    try:
        return cmd_train(a)
    except GradcError as e:
        print(f"gradc: error: {e}", file=sys.stderr)
        return 2


__all__ = ["Sharded", "cluster", "value_and_grad", "train", "minimize", "pointwise", "DistributedError",
           "main_train"]
