"""The minibatch training loop: optimizers by name, learning-rate schedules, weight decay,
early stopping, a plottable history, checkpoints, and loss-curve plots.

Only NumPy is needed to train; the progress bar uses tqdm and
:func:`save_loss_curve` uses matplotlib, both imported on demand (the
``examples`` extra installs them) and skipped with a message when missing.
"""
from __future__ import annotations

import difflib
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from gradc.errors import GradcError

from .memory import pad_heap
from .optim import OPTIMIZERS, SGD, Optimizer

__all__ = ["History", "TrainingError", "CheckpointError", "StepLR", "CosineLR", "SCHEDULES", "train",
           "evaluate", "save_checkpoint", "load_checkpoint", "save_loss_curve", "loss_figure", "SGD", "Optimizer"]


class TrainingError(GradcError, ValueError):
    """A bad argument of :func:`train`, :func:`evaluate` or a checkpoint function (named in the
    message). Also a ``ValueError``, which these functions raised before."""

    default_hint = "see 'Training' in gradc's README"


class CheckpointError(TrainingError):
    """A checkpoint that does not belong to the model it is loaded into, or is not a gradc checkpoint."""

    default_hint = "load a checkpoint into the model it was saved from (save_checkpoint records the spec's hash)"


class StepLR:
    """Step decay: the rate times ``gamma`` after every ``every`` epochs (epoch e, 1-based, runs at
    ``lr · gamma^((e - 1) // every)``). ``every=None``: a third of the epochs (two drops)."""

    def __init__(self, every: int | None = None, gamma: float = 0.5):
        self.every, self.gamma = every, gamma

    def __call__(self, epoch: int, epochs: int) -> float:
        every = self.every or max(1, math.ceil(epochs / 3))
        return self.gamma ** ((epoch - 1) // every)

    def __repr__(self) -> str:
        return f"StepLR(every={self.every}, gamma={self.gamma})"


class CosineLR:
    """Cosine decay (Loshchilov & Hutter 2017, without restarts): epoch e of E runs at
    ``lr · (m + (1 - m)(1 + cos(π (e - 1) / E)) / 2)``, from ``lr`` down towards ``m · lr``
    (``m`` = ``min_factor``)."""

    def __init__(self, min_factor: float = 0.0):
        self.min_factor = min_factor

    def __call__(self, epoch: int, epochs: int) -> float:
        m = self.min_factor
        return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / max(epochs, 1)))

    def __repr__(self) -> str:
        return f"CosineLR(min_factor={self.min_factor})"


#: Learning-rate schedules by name (``train(..., lr_schedule="cosine")``), with their defaults.
SCHEDULES = {"step": StepLR, "cosine": CosineLR}


class History(list):
    """The mean training loss of each epoch (a plain list of floats), plus:

    ``val_loss``: the validation loss after each epoch (empty without validation data);
    ``examples_per_second``: the training throughput of each epoch;
    ``best_epoch``, ``best_loss``: the epoch (1-based) with the lowest monitored
    loss (validation if given, else training) and that loss;
    ``stopped_epoch``: the last epoch run if training stopped early, else None;
    ``stop_reason``: None, ``"early stopping"`` or ``"diverged"`` (a non-finite loss);
    ``restored``: True if the best epoch's parameters were restored;
    ``lr``: the learning rate of each epoch (empty if the optimizer has no ``lr``);
    ``seconds``: wall time of the whole loop.

    To plot it: ``plt.plot(history.epochs, history)`` (and ``history.val_loss``), or
    :func:`save_loss_curve`; :meth:`as_dict` gives every per-epoch series (for pandas).
    """

    def __init__(self, *args):
        super().__init__(*args)
        self.val_loss: list[float] = []
        self.examples_per_second: list[float] = []
        self.best_epoch: int | None = None
        self.best_loss: float = math.inf
        self.stopped_epoch: int | None = None
        self.stop_reason: str | None = None
        self.restored = False
        self.lr: list[float] = []
        self.seconds = 0.0

    @property
    def epochs(self) -> list[int]:
        """The epoch numbers 1, 2, ..., len(self): the x axis of a loss plot."""
        return list(range(1, len(self) + 1))

    def as_dict(self) -> dict:
        """``{"epoch": [...], "loss": [...], "val_loss": ..., "lr": ..., "examples_per_second": ...}``:
        the per-epoch series, each as long as the training ran (series not recorded are left out)."""
        out = {"epoch": self.epochs, "loss": list(self)}
        for key in ("val_loss", "lr", "examples_per_second"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        return out


def _call_args(compiled, batch: dict, params: dict) -> list:
    return [batch[a] if a in batch else params[a] for a in compiled.arg_names]


def _inputs(compiled) -> list[str]:
    return [a for a in compiled.arg_names if a not in getattr(compiled, "params", {})]


def _did_you_mean(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=1) or [
        n for n in names if n.lower() == str(name).lower()]
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_data(compiled, params, data, what: str = "data", where: str = "train") -> dict:
    """``data`` as a dict of arrays, checked: a dict, every key an argument of ``compiled``, every
    argument given by ``data`` or ``params``, one number of examples. Raises :class:`TrainingError`."""
    example = "{" + ", ".join(f"'{a}': {a}" for a in _inputs(compiled)) + "}"
    if not isinstance(params, dict):
        raise TrainingError(f"{where}: params must be a dict of parameter arrays, got {type(params).__name__}",
                            hint="use compiled.init_params() or a dict {name: array}")
    if not isinstance(data, dict):
        raise TrainingError(f"{where}: {what} must be a dict of input arrays, got {type(data).__name__}",
                            hint=f"pass {what}={example}")
    if not data:
        raise TrainingError(f"{where}: {what} is empty", hint=f"pass {what}={example}")
    args = compiled.arg_names
    for key in data:
        if key not in args:
            raise TrainingError(f"{where}: {what} key {key!r} is not an argument of {compiled.output}"
                                f"({', '.join(args)}){_did_you_mean(key, _inputs(compiled))}",
                                hint=f"pass {what}={example}")
    missing = [a for a in args if a not in data and a not in params]
    if missing:
        raise TrainingError(f"{where}: no {what} or parameter for {', '.join(map(repr, missing))} of "
                            f"{compiled.output}({', '.join(args)})",
                            hint=f"pass {what}={example} and every parameter in params")
    out = {k: v if isinstance(v, np.ndarray) else np.asarray(v) for k, v in data.items()}
    sizes = {}
    for k, v in out.items():
        if v.ndim == 0:
            raise TrainingError(f"{where}: {what}[{k!r}] is a scalar; each {what} array needs an example "
                                f"axis first", hint=f"shape it like {compiled.shapes.get(k)}")
        sizes[k] = len(v)
    if len(set(sizes.values())) != 1:
        listed = ", ".join(f"{k} has {n}" for k, n in sizes.items())
        raise TrainingError(f"{where}: the {what} arrays differ in their number of examples: {listed}",
                            hint="every array's first axis runs over the same examples")
    return out


def _positive_int(name: str, value, allow_none: bool = False, allow_zero: bool = False) -> None:
    ok = (value is None and allow_none) or (
        isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= (0 if allow_zero else 1))
    if not ok:
        want = "a non-negative integer" if allow_zero else "a positive integer"
        raise TrainingError(f"train: {name}={value!r} must be {want}" + (" or None" if allow_none else ""))


def _optimizer(optimizer, lr):
    """``optimizer`` as an object with ``step``: a name of :data:`OPTIMIZERS` (with ``lr`` if given),
    None (SGD), or an optimizer object."""
    if optimizer is None:
        optimizer = "sgd"
    if isinstance(optimizer, str):
        cls = OPTIMIZERS.get(optimizer.lower().replace("-", "").replace("_", ""))
        if cls is None:
            raise TrainingError(f"train: optimizer={optimizer!r} is not one of {', '.join(OPTIMIZERS)}"
                                f"{_did_you_mean(optimizer.lower(), OPTIMIZERS)}",
                                hint="pass a name of gradc.runtime.OPTIMIZERS or an optimizer object")
        return cls() if lr is None else cls(lr)
    if not callable(getattr(optimizer, "step", None)):
        raise TrainingError(f"train: optimizer={optimizer!r} has no step(params, grads) method",
                            hint=f"pass a name ({', '.join(OPTIMIZERS)}) or an object such as "
                                 f"gradc.runtime.Adam(0.001)")
    if lr is not None:
        raise TrainingError("train: lr= is for an optimizer given by name",
                            hint=f"set the rate on the object instead: {type(optimizer).__name__}(lr={lr})")
    return optimizer


def _schedule(lr_schedule, optimizer):
    if lr_schedule is None:
        return None
    if isinstance(lr_schedule, str):
        if lr_schedule not in SCHEDULES:
            raise TrainingError(f"train: lr_schedule={lr_schedule!r} is not one of {', '.join(SCHEDULES)}",
                                hint="pass a name, StepLR(every, gamma), CosineLR() or a function "
                                     "(epoch, epochs) -> factor")
        lr_schedule = SCHEDULES[lr_schedule]()
    if not callable(lr_schedule):
        raise TrainingError(f"train: lr_schedule={lr_schedule!r} is not a name or a function (epoch, epochs) -> factor")
    if not isinstance(getattr(optimizer, "lr", None), (int, float)):
        raise TrainingError(f"train: lr_schedule needs an optimizer with a number lr, not {optimizer!r}")
    return lr_schedule


def _decay(weight_decay, learn: list[str]) -> dict:
    """``{name: λ}`` for the learned parameters with a non-zero weight decay."""
    if isinstance(weight_decay, dict):
        unknown = [k for k in weight_decay if k not in learn]
        if unknown:
            raise TrainingError(f"train: weight_decay names {', '.join(map(repr, unknown))}, which are not "
                                f"learned parameters ({', '.join(learn)})")
        decay = dict(weight_decay)
    elif isinstance(weight_decay, (int, float)) and not isinstance(weight_decay, bool):
        decay = {w: weight_decay for w in learn}
    else:
        raise TrainingError(f"train: weight_decay={weight_decay!r} must be a number or a dict {{name: number}}")
    for k, v in decay.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise TrainingError(f"train: weight_decay for {k!r} is {v!r}; it must be a number >= 0")
    return {k: float(v) for k, v in decay.items() if v}


def evaluate(compiled, params: dict, data: dict) -> float:
    """The compiled function's value (``forward``) on all of ``data`` at once."""
    data = _check_data(compiled, params, data, where="evaluate")
    batch = {k: np.ascontiguousarray(v) for k, v in data.items()}
    out = compiled.forward(*_call_args(compiled, batch, params))
    return float(out[0] if isinstance(out, tuple) else out)      # the value: the first of several outputs


def _snapshot(params: dict) -> dict:
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in params.items()}


def _restore(params: dict, saved: dict) -> None:
    for k, v in saved.items():
        if isinstance(params.get(k), np.ndarray):
            params[k][...] = v
        else:
            params[k] = v


def _progress_bar(progress, total: int):
    """A tqdm bar on stderr, or None: ``progress`` None means "if stderr is a terminal"."""
    if progress is False:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        if progress:
            warnings.warn("progress=True needs tqdm (pip install tqdm, or gradc[examples]); "
                          "training without a progress bar", stacklevel=3)
        return None
    if progress is None:
        isatty = getattr(sys.stderr, "isatty", None)
        if not (isatty and isatty()):
            return None
    return tqdm(total=total, unit="ex", unit_scale=True, file=sys.stderr, dynamic_ncols=True,
                leave=True, smoothing=0.1)


def train(compiled, params: dict, data: dict, *, epochs: int = 10, batch_size: int | None = 32,
          optimizer=None, lr: float | None = None, lr_schedule=None, weight_decay=0.0,
          shuffle: bool = True, seed: int = 0, log=print, val_data: dict | None = None,
          patience: int | None = None, min_delta: float = 0.0, restore_best: bool = False,
          progress: bool | None = None) -> History:
    """Train ``params`` in place on ``data`` with shuffled minibatches.

    ``compiled``: a :class:`gradc.Compiled` whose value is the (mean) loss.
    ``data`` maps its inputs (``X``, ``y``, ...) to arrays whose first axis is
    the example axis; ``params`` maps the parameters (arrays are updated in
    place). Each epoch visits the examples in a new order drawn from
    ``numpy.random.default_rng(seed)`` (``shuffle=False``: in order), in minibatches of
    ``batch_size`` (the last one may be smaller; None, or an optimizer with ``full_batch = True``
    such as :class:`~gradc.runtime.DeltaBarDelta`, uses all examples per step).
    ``optimizer``: a name of :data:`~gradc.runtime.OPTIMIZERS` (``"adam"``; ``lr`` sets its rate,
    else the class default), or anything with ``step(params, grads)`` (default ``SGD(0.1)``);
    only the ``wrt`` arguments found in ``params`` are updated.

    ``lr_schedule``: the optimizer's ``lr`` of each epoch, as a factor of its starting value:
    ``"step"`` (:class:`StepLR`: halved after each third of the epochs), ``"cosine"``
    (:class:`CosineLR`: cosine decay towards 0), a :class:`StepLR`/:class:`CosineLR` with other
    settings, or any function ``(epoch, epochs) -> factor`` (epoch 1-based). The optimizer's
    ``lr`` is put back at the end.
    ``weight_decay``: λ (or ``{name: λ}`` for some parameters, e.g. the weights but not the
    biases) adds λθ to each gradient, the gradient of (λ/2)‖θ‖², so the spec need not carry the
    term; the loss reported is the spec's value, without it.

    ``log`` (None for silence) gets one line per epoch with the mean training
    loss, the validation loss and the throughput in examples per second.
    ``progress``: a tqdm progress bar on stderr showing the epoch, the running
    loss and examples/s -- True, False, or None (the default) for "when stderr
    is a terminal and tqdm is installed".

    Early stopping: with ``val_data`` (same keys as ``data``) the validation
    loss (``forward`` on all of it) is computed after every epoch and
    monitored, else the epoch's training loss is. An epoch improves if the
    monitored loss drops below the best so far minus ``min_delta``; with
    ``patience`` = p, training stops after p epochs without improvement.
    ``restore_best`` puts the parameters of the best epoch back at the end.
    Training also stops when the loss becomes NaN or infinite.

    The process keeps freed pages for the next step (:func:`gradc.runtime.memory.pad_heap`, a
    64 MiB top pad of glibc's heap): each step allocates its activations afresh.

    Returns a :class:`History`: the list of per-epoch mean training losses
    with the validation losses, learning rates and stopping details as attributes.
    Every bad argument raises a :class:`TrainingError` (a :class:`gradc.GradcError`) naming it.
    """
    data = _check_data(compiled, params, data)
    if val_data is not None:
        val_data = _check_data(compiled, params, val_data, "val_data")
    n = len(next(iter(data.values())))
    pad_heap()
    # the first minibatch goes through the argument check (a clear error for wrong shapes or
    # dtypes); the others call the Numba dispatcher directly (the check costs a few µs a call)
    calls = [compiled.value_and_grad, getattr(getattr(compiled, "raw", None), "value_and_grad",
                                              compiled.value_and_grad)]

    def gradient(idx):
        batch = {k: np.ascontiguousarray(v[idx]) for k, v in data.items()}
        value, grads = calls[0](*_call_args(compiled, batch, params))
        calls[0] = calls[1]
        return float(value), dict(zip(compiled.wrt, grads))

    def validate():
        return evaluate(compiled, params, val_data)

    return epochs_loop(compiled, params, n, gradient, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                       lr=lr, lr_schedule=lr_schedule, weight_decay=weight_decay, shuffle=shuffle, seed=seed,
                       log=log, validate=None if val_data is None else validate, patience=patience,
                       min_delta=min_delta, restore_best=restore_best, progress=progress)


def epochs_loop(compiled, params: dict, n: int, gradient, *, epochs: int, batch_size: int | None, optimizer, lr,
                lr_schedule, weight_decay, shuffle: bool, seed: int, log, validate=None, patience: int | None = None,
                min_delta: float = 0.0, restore_best: bool = False, progress: bool | None = None, callback=None,
                where=None) -> History:
    """The minibatch loop of :func:`train` over ``n`` examples, for any way of computing a
    minibatch's gradient: ``gradient(idx)`` returns ``(value, {wrt name: gradient})`` of the
    examples ``idx`` (an int array) at the current ``params`` (:func:`train`: the compiled
    function on the rows of ``data``; :meth:`gradc.distributed.Sharded.train`: the workers' shards).
    ``validate()``: the validation loss, monitored instead of the training loss; ``callback(step,
    params)`` runs after each step; ``where()``: text after "examples/s" in the log line (e.g.
    " on 2 workers"). The other keywords are :func:`train`'s, checked here."""
    optimizer = _optimizer(optimizer, lr)
    schedule = _schedule(lr_schedule, optimizer)
    _positive_int("epochs", epochs, allow_zero=True)
    _positive_int("batch_size", batch_size, allow_none=True)
    if getattr(optimizer, "full_batch", False) or batch_size is None:
        batch_size = n
    _positive_int("patience", patience, allow_none=True)
    learn = [w for w in compiled.wrt if w in params]
    decay = _decay(weight_decay, learn)
    rng = np.random.default_rng(seed)
    history = History()
    best_params = _snapshot(params) if restore_best else None
    wait = step = 0
    base_lr = getattr(optimizer, "lr", None)
    bar = _progress_bar(progress, epochs * n)

    def emit(line: str) -> None:
        if not log:
            return
        if bar is not None:
            with bar.external_write_mode():
                log(line)
        else:
            log(line)

    start_all = time.perf_counter()
    try:
        for epoch in range(1, epochs + 1):
            if schedule is not None:
                optimizer.lr = base_lr * float(schedule(epoch, epochs))
            if isinstance(getattr(optimizer, "lr", None), (int, float)):
                history.lr.append(float(optimizer.lr))
            order = rng.permutation(n) if shuffle else np.arange(n)
            total, seen, t0 = 0.0, 0, time.perf_counter()
            if bar is not None:
                bar.set_description(f"epoch {epoch}/{epochs}", refresh=False)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                value, grads = gradient(idx)
                grads = {w: grads[w] for w in learn}
                for w, lam in decay.items():
                    grads[w] = grads[w] + lam * params[w]
                optimizer.step(params, grads)
                step += 1
                total += value * len(idx)
                seen += len(idx)
                if bar is not None:
                    bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
                    bar.update(len(idx))
                if callback is not None:
                    callback(step, params)
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            history.append(total / seen)
            history.examples_per_second.append(rate)
            line = f"epoch {epoch:3d}  loss {history[-1]:.4f}"
            monitored = history[-1]
            if validate is not None:
                monitored = validate()
                history.val_loss.append(monitored)
                line += f"  val_loss {monitored:.4f}"
            if schedule is not None:
                line += f"  lr {optimizer.lr:.3g}"
            emit(line + f"  ({rate:,.0f} examples/s{where() if where else ''})")
            if not (math.isfinite(history[-1]) and math.isfinite(monitored)):
                history.stopped_epoch, history.stop_reason = epoch, "diverged"
                bad = history[-1] if not math.isfinite(history[-1]) else monitored
                emit(f"stopped after epoch {epoch}: the loss is {bad}")
                break
            if monitored < history.best_loss - min_delta:
                history.best_loss, history.best_epoch, wait = monitored, epoch, 0
                if restore_best:
                    best_params = _snapshot(params)
            else:
                wait += 1
                if patience is not None and wait >= patience:
                    history.stopped_epoch, history.stop_reason = epoch, "early stopping"
                    emit(f"early stopping after epoch {epoch}: no improvement for {patience} epoch(s); "
                         f"best {'val_loss' if validate is not None else 'loss'} "
                         f"{history.best_loss:.4f} at epoch {history.best_epoch}")
                    break
    finally:
        if bar is not None:
            bar.close()
        if schedule is not None:
            optimizer.lr = base_lr
    if restore_best and best_params is not None and history.best_epoch != len(history):
        _restore(params, best_params)
        history.restored = True
    history.seconds = time.perf_counter() - start_all
    return history


# ------------------------------------------------------------------ checkpoints
_META = "__gradc_checkpoint__"


def _source_hash(compiled) -> str:
    module = getattr(compiled, "module", compiled)
    h = getattr(module, "SOURCE_HASH", None)
    if not isinstance(h, str):
        raise CheckpointError(f"{compiled!r} has no SOURCE_HASH: checkpoints need a module compiled by gradc")
    return h


def save_checkpoint(path, compiled, params: dict, **extra) -> Path:
    """Save ``params`` (arrays and scalars, by name) to ``path`` with :func:`numpy.savez`, with the
    spec's hash (the module's ``SOURCE_HASH``), its model name and gradc's version, so that
    :func:`load_checkpoint` refuses it for another model. ``extra``: JSON-serialisable values
    kept beside them (an epoch number, the history's losses). Returns the path (``.npz`` is
    added if missing, as NumPy does)."""
    from gradc import __version__

    unknown = [k for k in params if k not in compiled.arg_names]
    if unknown:
        raise CheckpointError(f"save_checkpoint: {', '.join(map(repr, unknown))} not an argument of "
                              f"{compiled.output}({', '.join(compiled.arg_names)})")
    meta = {"source_hash": _source_hash(compiled), "model": getattr(compiled.module, "__name__", ""),
            "gradc_version": __version__, "params": list(params), "extra": extra}
    try:
        json_meta = json.dumps(meta)
    except TypeError as e:
        raise CheckpointError(f"save_checkpoint: extra values must be JSON-serialisable ({e})") from None
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{_META: np.array(json_meta)}, **{k: np.asarray(v) for k, v in params.items()})
    return path


def load_checkpoint(path, compiled, *, with_extra: bool = False):
    """The parameters saved by :func:`save_checkpoint` in ``path``, as a dict (scalars as Python
    floats), after checking that they were saved from ``compiled``'s spec (the same
    ``SOURCE_HASH``) and have its declared shapes; a :class:`CheckpointError` otherwise.
    ``with_extra=True`` returns ``(params, extra)``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if _META not in z.files:
                raise CheckpointError(f"{path}: not a gradc checkpoint (no {_META} entry)",
                                      hint="write checkpoints with gradc.runtime.save_checkpoint")
            meta = json.loads(str(z[_META]))
            arrays = {k: z[k] for k in meta["params"]}
    except (OSError, ValueError, KeyError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}: cannot read the checkpoint ({e})") from None
    want = _source_hash(compiled)
    if meta["source_hash"] != want:
        raise CheckpointError(f"{path} was saved from another model ({meta['model'] or 'unnamed'}, spec hash "
                              f"{meta['source_hash']}), not from {compiled.output}'s spec (hash {want})",
                              hint="load it into the model it was saved from, or train this one")
    out = {}
    for name, a in arrays.items():
        declared = compiled.shapes.get(name)
        if declared is None or len(declared) != a.ndim or any(
                isinstance(d, int) and d != n for d, n in zip(declared, a.shape)):
            raise CheckpointError(f"{path}: {name!r} has shape {a.shape}, but the model declares {declared}")
        out[name] = float(a) if a.ndim == 0 and compiled.dtypes.get(name, "").startswith("float") else a
    return (out, meta.get("extra", {})) if with_extra else out


_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "v", "D", "x", "+", "*")


def save_loss_curve(history, path, *, title: str | None = None, logy: bool = True):
    """Plot loss curves to a PNG file with matplotlib (Agg, no display needed).

    ``history``: a :class:`History` or list of per-epoch losses (its
    validation losses, if any, are drawn dashed), or a dict ``{label:
    history}`` for several curves in one plot, each with its own colour, line style and
    marker. ``logy`` uses a logarithmic
    loss axis when all losses are positive. Returns the path written, or None
    (with a message on stderr) when matplotlib is not installed.
    """
    try:
        fig = loss_figure(history, title=title, logy=logy)
    except ImportError:
        print(f"save_loss_curve: matplotlib is not installed (pip install matplotlib, or gradc[examples]); "
              f"skipped {path}", file=sys.stderr)
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def loss_figure(history, *, title: str | None = None, logy: bool = True):
    """The matplotlib ``Figure`` (Agg canvas, no display needed) that :func:`save_loss_curve`
    saves, to show or change before saving (``fig.axes[0]``). Raises ImportError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = history if isinstance(history, dict) else {"training loss": history}
    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positive = True
    for k, (label, h) in enumerate(curves.items()):
        losses = [float(v) for v in h]
        # several curves: each its own line style and marker too, so that curves which overlap
        # (momentum and Nesterov) or colours that look alike stay apart
        every = max(1, len(losses) // 8)             # markers offset per curve: they do not cover each other
        style = {} if len(curves) == 1 else {
            "linestyle": _STYLES[k % len(_STYLES)], "marker": _MARKERS[k % len(_MARKERS)],
            "markevery": (k % every, every), "markersize": 5}
        (line,) = ax.plot(range(1, len(losses) + 1), losses, label=label, linewidth=1.6, **style)
        positive &= all(v > 0 for v in losses if math.isfinite(v))
        val = getattr(h, "val_loss", None)
        if val:
            ax.plot(range(1, len(val) + 1), val, linestyle="--" if len(curves) == 1 else line.get_linestyle(),
                    alpha=1.0 if len(curves) == 1 else 0.5, color=line.get_color(),
                    label=f"{label} (validation)" if len(curves) > 1 else "validation loss", linewidth=1.2)
            positive &= all(v > 0 for v in val if math.isfinite(v))
        best = getattr(h, "best_epoch", None)
        if best and getattr(h, "stopped_epoch", None):
            ref = val if val else losses
            ax.plot([best], [ref[best - 1]], "o", color=line.get_color())
    if logy and positive:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title or "loss per epoch")
    ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 2:                     # many curves: the legend goes beside the plot
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    else:
        ax.legend()
    return fig
