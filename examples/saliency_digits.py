"""Saliency maps of the digits classifiers (the lecture notes' "saliency
visualization"; Simonyan, Vedaldi & Zisserman 2014): near an image I0 the class
score is almost linear, S_c(I) ~ w.I + b with w = dS_c/dI at I0, so |w| shows
which pixels matter most for class c.

The script trains the convolutional network of ``cnn_digits.toml`` (``--model
cnn``, the default: Adam on the images and their one-pixel shifts, as
``train_cnn_digits.py``) or the MLP of ``mlp_digits.toml`` (``--model mlp``:
minibatch SGD, as ``train_digits.py``), then compiles the same network's class
score -- ``cnn_digits_class_score.toml`` or ``mlp_digits_class_score.toml``:
sum_i S_{c_i}(I_i) differentiated with respect to the images X, weights fixed --
and draws a few test images next to |dS_c/dI| for their true class c. The digits
have one channel; on colour images the map is the maximum of |dS_c/dI| over the
channels (as Simonyan et al.), which here is |dS_c/dI| itself.

    python examples/saliency_digits.py                    # writes saliency_digits_cnn.png here
    python examples/saliency_digits.py --model mlp        # writes saliency_digits_mlp.png
    python examples/saliency_digits.py --epochs 3 --images 4 --out build/
"""
from __future__ import annotations

import argparse

import numpy as np

import _digits  # the examples' shared helpers, beside this script
import gradc

#: per model: its spec, the spec of its class score (wrt the images X), its trainer, default epochs
MODELS = {"cnn": (_digits.CNN_SPEC, _digits.HERE / "cnn_digits_class_score.toml", _digits.train_cnn, 15),
          "mlp": (_digits.MLP_SPEC, _digits.HERE / "mlp_digits_class_score.toml", _digits.train_mlp, 80)}


def score_gradient(score, params: dict, X: np.ndarray, c: np.ndarray) -> np.ndarray:
    """w = dS_c/dI for each row of X and its class c (one fused call for all images)."""
    args = {"X": np.ascontiguousarray(X), "c": np.ascontiguousarray(c, dtype=np.int64), "lam": 0.0, **params}
    _, (grad_X,) = score.value_and_grad(*(args[n] for n in score.arg_names))
    return grad_X


def saliency(grad_X: np.ndarray, channels: int = 1) -> np.ndarray:
    """The saliency map max_channels |dS_c/dI| of each row of grad_X ([N, channels * H * W], channels first)."""
    return np.abs(grad_X).reshape(len(grad_X), channels, -1).max(axis=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="cnn",
                   help="cnn: cnn_digits.toml (the default); mlp: mlp_digits.toml")
    p.add_argument("--epochs", type=int, help="training epochs (default: 15 for the CNN, 80 for the MLP)")
    p.add_argument("--images", type=int, default=8, help="test images to show (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the init and the shuffling (default 0)")
    p.add_argument("--out", help="folder for saliency_digits_MODEL.png (default: the working directory)")
    a = p.parse_args(argv)
    Figure, FigureCanvasAgg = _digits.need_matplotlib("saliency_digits.py")
    spec, score_spec, train, epochs = MODELS[a.model]
    epochs = epochs if a.epochs is None else a.epochs

    Xtr, Xte, ytr, yte = _digits.load_split(a.seed)
    compiled, params, history = train(Xtr, ytr, epochs=epochs, seed=a.seed)

    def scores_of(X):
        return _digits.scores_of(compiled, params, X)

    scores = scores_of(Xte)
    print(f"trained {spec.name} for {epochs} epochs: final loss {history[-1]:.4f}, "
          f"test accuracy {_digits.accuracy(scores, yte):.4f}")

    score = gradc.compile(score_spec)
    assert score.wrt == ("X",)
    # the first test image of each class 0, 1, 2, ..., then the next ones
    order = np.argsort(np.array([np.sum(yte[:i] == yte[i]) for i in range(len(yte))]) * 10 + yte, kind="stable")
    pick = order[:a.images]
    X, c = Xte[pick], yte[pick]
    w = score_gradient(score, params, X, c)
    sal = saliency(w)                                # the saliency map (one channel)
    # the linear model of the notes: S_c(I0 + d) - S_c(I0) ~ w.d for a small d. A change of the blank
    # background breaks the ties of the CNN's max-pool windows there (equal values, the gradient sent
    # to the first): S_c has a kink at I0 and is linear only along the strokes (I0 > 0)
    rows = np.arange(len(c))
    for where, mask in (("on the strokes (I0 > 0)", X > 0), ("everywhere", np.ones(X.shape, bool))):
        d = np.where(mask, 1e-6 * np.random.default_rng(a.seed).standard_normal(X.shape), 0.0)
        change = scores_of(X + d)[rows, c] - scores_of(X)[rows, c]
        print(f"saliency of {len(c)} test images: |S_c(I0+d) - S_c(I0) - w.d| <= "
              f"{np.max(np.abs(change - np.sum(w * d, axis=1))):.1e} for |d| ~ 1e-6 {where}")
    every = saliency(score_gradient(score, params, Xte, yte))     # all test images, for the numbers
    ink = Xte > 0
    print(f"over the {len(yte)} test images, {np.sum(every * ink) / np.sum(every):.0%} of the saliency "
          f"falls on the strokes ({np.mean(ink):.0%} of the pixels); mean |dS_c/dI| {np.mean(every):.2f}")

    prob = np.exp(scores[pick] - scores[pick].max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    cols = 4                                         # image / saliency pairs per row
    nrows = -(-len(c) // cols)
    fig = Figure(figsize=(2.9 * cols + 1.2, 1.75 * nrows + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 2 * cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    top = float(sal.max()) or 1.0                    # one scale for every saliency map: comparable
    for k in range(len(c)):
        r, q = divmod(k, cols)
        pred = int(np.argmax(scores[pick[k]]))
        image = axes[r, 2 * q].imshow(X[k].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        axes[r, 2 * q].set_title(f"class {c[k]}: p={prob[k, c[k]]:.2f}"
                                 + ("" if pred == c[k] else f"\n(predicted {pred})"), fontsize=9)
        heat = axes[r, 2 * q + 1].imshow(sal[k].reshape(8, 8), cmap="hot", vmin=0, vmax=top,
                                         interpolation="nearest")
        axes[r, 2 * q + 1].set_title(rf"$|\partial S_{c[k]} / \partial I|$", fontsize=9)
    fig.colorbar(image, ax=axes[:, 0::2].ravel().tolist(), shrink=0.8, location="left", pad=0.02,
                 label="pixel intensity")
    fig.colorbar(heat, ax=axes[:, 1::2].ravel().tolist(), shrink=0.8, pad=0.02,
                 label=r"saliency $|\partial S_c / \partial I|$")
    fig.suptitle(f"{a.model.upper()} ({spec.name}): test images (title: class $c$ and the classifier's "
                 r"$p(c \mid I)$) and the saliency maps $|\partial S_c / \partial I|$ of their class",
                 fontsize=11)
    out = _digits.out_dir(a.out) / f"saliency_digits_{a.model}.png"
    fig.savefig(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
