"""A minimal minibatch training loop with plain SGD."""
from __future__ import annotations

import time

import numpy as np


class SGD:
    """Stochastic gradient descent: θ ← θ − lr·∇θ (Robbins & Monro 1951; CS231n notes)."""

    def __init__(self, lr: float = 0.1):
        self.lr = lr

    def step(self, params: dict, grads: dict) -> None:
        """Update ``params`` in place from ``grads`` (dicts keyed by name)."""
        for name, g in grads.items():
            if isinstance(params[name], np.ndarray):
                params[name] -= self.lr * g
            else:
                params[name] = params[name] - self.lr * g


def train(compiled, params: dict, data: dict, *, epochs: int = 10, batch_size: int = 32,
          optimizer=None, seed: int = 0, log=print) -> list[float]:
    """Train ``params`` in place on ``data`` with shuffled minibatches.

    ``data`` maps the compiled module's inputs (``X``, ``y``, ...) to arrays
    whose first axis is the example axis; ``params`` maps the parameters.
    Minibatches are drawn by a seeded permutation each epoch. Returns the
    mean training loss of each epoch; ``log`` (None for silence) gets one line
    per epoch with the loss and throughput in examples per second.
    """
    optimizer = optimizer or SGD()
    rng = np.random.default_rng(seed)
    n = len(next(iter(data.values())))
    learn = [w for w in compiled.wrt if w in params]
    history = []
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        total, seen, t0 = 0.0, 0, time.perf_counter()
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            batch = {k: np.ascontiguousarray(v[idx]) for k, v in data.items()}
            args = [batch[a] if a in batch else params[a] for a in compiled.arg_names]
            value, grads = compiled.value_and_grad(*args)
            optimizer.step(params, {w: g for w, g in zip(compiled.wrt, grads) if w in learn})
            total += float(value) * len(idx)
            seen += len(idx)
        history.append(total / seen)
        if log:
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            log(f"epoch {epoch:3d}  loss {history[-1]:.4f}  ({rate:,.0f} examples/s)")
    return history
