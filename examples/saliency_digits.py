"""Saliency maps of the digits classifier (the lecture notes' "saliency
visualization"; Simonyan, Vedaldi & Zisserman 2014): near an image I0 the class
score is almost linear, S_c(I) ~ w.I + b with w = dS_c/dI at I0, so |w| shows
which pixels matter most for class c.

The script trains ``mlp_digits.toml`` (minibatch SGD, as ``train_digits.py``),
then compiles ``mlp_digits_class_score.toml`` -- the same network's score
sum_i S_{c_i}(I_i) differentiated with respect to the images X, weights fixed
-- and draws a few test images next to |dS_c/dI| for their true class c.

    python examples/saliency_digits.py                    # writes saliency_digits.png here
    python examples/saliency_digits.py --epochs 10 --images 4 --out build/
"""
from __future__ import annotations

import argparse

import numpy as np

import _digits  # the examples' shared helpers, beside this script
import gradc

SCORE_SPEC = _digits.HERE / "mlp_digits_class_score.toml"


def score_gradient(score, params: dict, X: np.ndarray, c: np.ndarray) -> np.ndarray:
    """w = dS_c/dI for each row of X and its class c (one fused call for all images)."""
    args = {"X": np.ascontiguousarray(X), "c": np.ascontiguousarray(c, dtype=np.int64), "lam": 0.0, **params}
    _, (grad_X,) = score.value_and_grad(*(args[n] for n in score.arg_names))
    return grad_X


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=80, help="training epochs (default 80)")
    p.add_argument("--images", type=int, default=8, help="test images to show (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the init and the shuffling (default 0)")
    p.add_argument("--out", help="folder for saliency_digits.png (default: the working directory)")
    a = p.parse_args(argv)
    Figure, FigureCanvasAgg = _digits.need_matplotlib("saliency_digits.py")

    Xtr, Xte, ytr, yte = _digits.load_split(a.seed)
    _, params, history = _digits.train_mlp(Xtr, ytr, epochs=a.epochs, seed=a.seed)
    scores = _digits.mlp_scores(params, Xte)
    print(f"trained {_digits.MLP_SPEC.name} for {a.epochs} epochs: final loss {history[-1]:.4f}, "
          f"test accuracy {_digits.accuracy(scores, yte):.4f}")

    score = gradc.compile(SCORE_SPEC)
    assert score.wrt == ("X",)
    # the first test image of each class 0, 1, 2, ..., then the next ones
    order = np.argsort(np.array([np.sum(yte[:i] == yte[i]) for i in range(len(yte))]) * 10 + yte, kind="stable")
    pick = order[:a.images]
    X, c = Xte[pick], yte[pick]
    w = score_gradient(score, params, X, c)
    sal = np.abs(w)                                  # the saliency map
    # the linear model of the notes: S_c(I0 + d) - S_c(I0) ~ w.d for a small d
    d = 1e-6 * np.random.default_rng(a.seed).standard_normal(X.shape)
    rows = np.arange(len(c))
    change = _digits.mlp_scores(params, X + d)[rows, c] - _digits.mlp_scores(params, X)[rows, c]
    print(f"saliency of {len(c)} test images: |S_c(I0+d) - S_c(I0) - w.d| <= "
          f"{np.max(np.abs(change - np.sum(w * d, axis=1))):.1e} for |d| ~ 1e-6")

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
    fig.suptitle(r"test images (title: class $c$ and the classifier's $p(c \mid I)$) and the saliency maps "
                 r"$|\partial S_c / \partial I|$ of their class", fontsize=11)
    out = _digits.out_dir(a.out) / "saliency_digits.png"
    fig.savefig(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
