"""The minibatch training loop, early stopping and loss-curve plots.

Only NumPy is needed to train; the progress bar uses tqdm and
:func:`save_loss_curve` uses matplotlib, both imported on demand (the
``examples`` extra installs them) and skipped with a message when missing.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .optim import SGD, Optimizer

__all__ = ["History", "train", "evaluate", "save_loss_curve", "SGD", "Optimizer"]


class History(list):
    """The mean training loss of each epoch (a plain list of floats), plus:

    ``val_loss``: the validation loss after each epoch (empty without validation data);
    ``examples_per_second``: the training throughput of each epoch;
    ``best_epoch``, ``best_loss``: the epoch (1-based) with the lowest monitored
    loss (validation if given, else training) and that loss;
    ``stopped_epoch``: the last epoch run if training stopped early, else None;
    ``stop_reason``: None, ``"early stopping"`` or ``"diverged"`` (a non-finite loss);
    ``restored``: True if the best epoch's parameters were restored;
    ``seconds``: wall time of the whole loop.
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
        self.seconds = 0.0


def _call_args(compiled, batch: dict, params: dict) -> list:
    try:
        return [batch[a] if a in batch else params[a] for a in compiled.arg_names]
    except KeyError:
        missing = [a for a in compiled.arg_names if a not in batch and a not in params]
        raise ValueError(f"no data or parameter for argument(s) {', '.join(missing)} of "
                         f"{compiled.output}({', '.join(compiled.arg_names)})") from None


def _examples(data: dict) -> int:
    sizes = {k: len(v) for k, v in data.items()}
    if not sizes:
        raise ValueError("data is empty: give the compiled module's inputs, e.g. {'X': X, 'y': y}")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"data arrays differ in their number of examples: {sizes}")
    return next(iter(sizes.values()))


def evaluate(compiled, params: dict, data: dict) -> float:
    """The compiled function's value (``forward``) on all of ``data`` at once."""
    batch = {k: np.ascontiguousarray(v) for k, v in data.items()}
    return float(compiled.forward(*_call_args(compiled, batch, params)))


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
          optimizer=None, seed: int = 0, log=print, val_data: dict | None = None,
          patience: int | None = None, min_delta: float = 0.0, restore_best: bool = False,
          progress: bool | None = None) -> History:
    """Train ``params`` in place on ``data`` with shuffled minibatches.

    ``compiled``: a :class:`gradc.Compiled` whose value is the (mean) loss.
    ``data`` maps its inputs (``X``, ``y``, ...) to arrays whose first axis is
    the example axis; ``params`` maps the parameters (arrays are updated in
    place). Each epoch visits the examples in a new order drawn from
    ``numpy.random.default_rng(seed)``, in minibatches of ``batch_size`` (the
    last one may be smaller; None, or an optimizer with ``full_batch = True``
    such as :class:`~gradc.runtime.DeltaBarDelta`, uses all examples per step).
    ``optimizer``: anything with ``step(params, grads)`` (default ``SGD(0.1)``);
    only the ``wrt`` arguments found in ``params`` are updated.

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

    Returns a :class:`History`: the list of per-epoch mean training losses
    with the validation losses and stopping details as attributes.
    """
    optimizer = optimizer if optimizer is not None else SGD()
    n = _examples(data)
    if val_data is not None:
        _examples(val_data)
    if getattr(optimizer, "full_batch", False) or batch_size is None:
        batch_size = n
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be at least 1, got {patience}")
    rng = np.random.default_rng(seed)
    learn = [w for w in compiled.wrt if w in params]
    # the first minibatch goes through the argument check (a clear error for wrong shapes or
    # dtypes); the others call the Numba dispatcher directly (the check costs a few µs a call)
    value_and_grad = compiled.value_and_grad
    raw = getattr(getattr(compiled, "raw", None), "value_and_grad", value_and_grad)
    history = History()
    best_params = _snapshot(params) if restore_best else None
    wait = 0
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
            order = rng.permutation(n)
            total, seen, t0 = 0.0, 0, time.perf_counter()
            if bar is not None:
                bar.set_description(f"epoch {epoch}/{epochs}", refresh=False)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                batch = {k: np.ascontiguousarray(v[idx]) for k, v in data.items()}
                value, grads = value_and_grad(*_call_args(compiled, batch, params))
                value_and_grad = raw
                optimizer.step(params, {w: g for w, g in zip(compiled.wrt, grads) if w in learn})
                total += float(value) * len(idx)
                seen += len(idx)
                if bar is not None:
                    bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
                    bar.update(len(idx))
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            history.append(total / seen)
            history.examples_per_second.append(rate)
            line = f"epoch {epoch:3d}  loss {history[-1]:.4f}"
            monitored = history[-1]
            if val_data is not None:
                monitored = evaluate(compiled, params, val_data)
                history.val_loss.append(monitored)
                line += f"  val_loss {monitored:.4f}"
            emit(line + f"  ({rate:,.0f} examples/s)")
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
                         f"best {'val_loss' if val_data is not None else 'loss'} "
                         f"{history.best_loss:.4f} at epoch {history.best_epoch}")
                    break
    finally:
        if bar is not None:
            bar.close()
    if restore_best and best_params is not None and history.best_epoch != len(history):
        _restore(params, best_params)
        history.restored = True
    history.seconds = time.perf_counter() - start_all
    return history


def save_loss_curve(history, path, *, title: str | None = None, logy: bool = True):
    """Plot loss curves to a PNG file with matplotlib (Agg, no display needed).

    ``history``: a :class:`History` or list of per-epoch losses (its
    validation losses, if any, are drawn dashed), or a dict ``{label:
    history}`` for several curves in one plot. ``logy`` uses a logarithmic
    loss axis when all losses are positive. Returns the path written, or None
    (with a message on stderr) when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print(f"save_loss_curve: matplotlib is not installed (pip install matplotlib, or gradc[examples]); "
              f"skipped {path}", file=sys.stderr)
        return None
    curves = history if isinstance(history, dict) else {"training loss": history}
    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positive = True
    for label, h in curves.items():
        losses = [float(v) for v in h]
        (line,) = ax.plot(range(1, len(losses) + 1), losses, label=label, linewidth=1.6)
        positive &= all(v > 0 for v in losses if math.isfinite(v))
        val = getattr(h, "val_loss", None)
        if val:
            ax.plot(range(1, len(val) + 1), val, linestyle="--", color=line.get_color(),
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path
