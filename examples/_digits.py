"""Shared helpers of the digits examples (not an example itself): the data split,
training the ``mlp_digits.toml`` classifier, its scores and accuracy, and the
output folder. The scripts import it from their own folder, so they run from
any working directory."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import gradc
from gradc.runtime import SGD, train

HERE = Path(__file__).resolve().parent
MLP_SPEC = HERE / "mlp_digits.toml"
CNN_SPEC = HERE / "cnn_digits.toml"


def load_split(seed: int = 0, test_size: float = 0.25):
    """scikit-learn's bundled 8x8 digits (no download), pixels scaled to [0, 1],
    split stratified into (Xtr, Xte, ytr, yte); labels int64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float64)
    y = digits.target.astype(np.int64)
    return train_test_split(X, y, test_size=test_size, stratify=y, random_state=seed)


def mlp_scores(params: dict, X: np.ndarray) -> np.ndarray:
    """The class scores of ``mlp_digits.toml`` (its ``outputs``), from the generated module's
    ``forward`` (gradc's cache makes the compile a look-up); the labels only feed the loss."""
    loss, scores = gradc.compile(MLP_SPEC).forward(X, np.zeros(len(X), np.int64), **params)
    return scores


def shifted(X: np.ndarray, y: np.ndarray):
    """The images and their copies shifted by one pixel up, down, left and right (zeros fill in):
    5 times the examples, the usual augmentation for a convolutional network on small digits."""
    imgs = X.reshape(-1, 8, 8)
    out = [imgs]
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        s = np.zeros_like(imgs)
        s[:, max(dy, 0):8 + min(dy, 0), max(dx, 0):8 + min(dx, 0)] = \
            imgs[:, max(-dy, 0):8 + min(-dy, 0), max(-dx, 0):8 + min(-dx, 0)]
        out.append(s)
    return np.concatenate(out).reshape(-1, X.shape[1]), np.concatenate([y] * len(out))


def train_cnn(Xtr, ytr, *, epochs: int = 15, lr: float = 1e-3, batch_size: int = 32, seed: int = 0,
              log=None, progress=None):
    """Compile ``cnn_digits.toml`` and train it with Adam (cosine schedule, weight decay 1e-4) on
    the training images and their one-pixel shifts (:func:`shifted`); returns (compiled, params, history)."""
    compiled = gradc.compile(CNN_SPEC)
    params = compiled.init_params(seed=seed)
    X, y = shifted(Xtr, ytr)
    history = train(compiled, params, {"X": X, "y": y}, epochs=epochs, batch_size=batch_size, optimizer="adam",
                    lr=lr, lr_schedule="cosine", weight_decay=1e-4, seed=seed, log=log, progress=progress)
    return compiled, params, history


def scores_of(compiled, params: dict, X: np.ndarray) -> np.ndarray:
    """The class scores a compiled digits model returns beside its loss (its spec's ``outputs``)."""
    loss, scores = compiled.forward(X, np.zeros(len(X), np.int64), **params)
    return scores


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(scores, axis=1) == y))


def train_mlp(Xtr, ytr, *, epochs: int = 80, lr: float = 0.2, batch_size: int = 16, seed: int = 0,
              log=None, progress=None):
    """Compile ``mlp_digits.toml`` and train it with minibatch SGD (the defaults of
    ``train_digits.py``); returns (compiled, params, history)."""
    compiled = gradc.compile(MLP_SPEC)
    params = compiled.init_params(seed=seed)
    history = train(compiled, params, {"X": Xtr, "y": ytr}, epochs=epochs, batch_size=batch_size,
                    optimizer=SGD(lr), seed=seed, log=log, progress=progress)
    return compiled, params, history


def out_dir(path) -> Path:
    """The folder for pictures: ``--out`` or the working directory (created if missing)."""
    out = Path(path) if path else Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    return out


def need_matplotlib(script: str):
    """Import matplotlib's Figure and Agg canvas, or exit with a clear message."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        sys.exit(f"{script} draws its pictures with matplotlib: pip install matplotlib "
                 f"(or pip install -e '.[examples]')")
    return Figure, FigureCanvasAgg
