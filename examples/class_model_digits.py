"""Class model visualisation for the digits classifier: for each class c, an
input image that maximises its score (the lecture notes' "input optimization
while fixing all weights" and "inputs maximizing class score"; Simonyan,
Vedaldi & Zisserman 2014). With the trained weights held fixed, gradient ascent
on the image alone:

    I <- I + mu * d(S_c(I) - lam * ||I - M||^2) / dI,     starting from I = M

where S_c is the unnormalised score of class c and M the mean training image.
The L2 penalty keeps I near images the network has seen: centred on 0, as in the
notes, it pulls the image towards black, and the ascent fills the rest with the
high-frequency pattern that raises S_c most (the weights' noise, which does not
look like a digit); centred on the data's mean image M (Simonyan et al. train on
zero-centred data and add the mean back for display: the same prior), the result
is a digit-like image. The gradient of S_c with respect to the data input comes from
``mlp_digits_class_score.toml`` (``[output] wrt = ["X"]``, ``lam = 0``; the prior's
gradient -2 lam (I - M) is added here): one fused call updates all ten class
images at once. The picture has three rows: the images kept in the data's pixel
range [0, 1] (each step is clipped there: projected gradient ascent), the
unconstrained ascent, and for comparison the mean training image of each class;
each image is titled with the probability the classifier gives its class.

    python examples/class_model_digits.py                     # writes class_model_digits.png here
    python examples/class_model_digits.py --epochs 10 --steps 50 --out build/
"""
from __future__ import annotations

import argparse

import numpy as np

import _digits  # the examples' shared helpers, beside this script
import gradc

SCORE_SPEC = _digits.HERE / "mlp_digits_class_score.toml"


def class_models(score, params: dict, mean: np.ndarray, *, steps: int, mu: float, lam: float,
                 clip: bool) -> np.ndarray:
    """Gradient ascent on S_c(I) - lam ||I - mean||^2 from I = mean for c = 0..9; one row per class."""
    c = np.arange(10, dtype=np.int64)
    images = np.tile(mean, (10, 1))
    for _ in range(steps):
        args = {"X": images, "c": c, "lam": 0.0, **params}
        _, (grad,) = score.value_and_grad(*(args[n] for n in score.arg_names))
        images = images + mu * (grad - 2.0 * lam * (images - mean))
        if clip:
            images = np.clip(images, 0.0, 1.0)
    return images


def softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=80, help="training epochs of the classifier (default 80)")
    p.add_argument("--steps", type=int, default=300, help="gradient-ascent steps on the images (default 300)")
    p.add_argument("--mu", type=float, default=0.1, help="ascent step size mu (default 0.1)")
    p.add_argument("--lam", type=float, default=2.0,
                   help="weight lam of the L2 penalty on the image's distance from the mean image (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the init and the shuffling (default 0)")
    p.add_argument("--out", help="folder for class_model_digits.png (default: the working directory)")
    a = p.parse_args(argv)
    Figure, FigureCanvasAgg = _digits.need_matplotlib("class_model_digits.py")

    Xtr, Xte, ytr, yte = _digits.load_split(a.seed)
    _, params, history = _digits.train_mlp(Xtr, ytr, epochs=a.epochs, seed=a.seed)
    print(f"trained {_digits.MLP_SPEC.name} for {a.epochs} epochs: final loss {history[-1]:.4f}, "
          f"test accuracy {_digits.accuracy(_digits.mlp_scores(params, Xte), yte):.4f}")
    score = gradc.compile(SCORE_SPEC)
    mean = Xtr.mean(axis=0)

    rows = [("in [0, 1]", class_models(score, params, mean, steps=a.steps, mu=a.mu, lam=a.lam, clip=True)),
            ("unconstrained", class_models(score, params, mean, steps=a.steps, mu=a.mu, lam=a.lam, clip=False)),
            ("class mean", np.stack([Xtr[ytr == k].mean(axis=0) for k in range(10)]))]
    fig = Figure(figsize=(13, 4.9), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 10)
    for r, (what, images) in enumerate(rows):
        scores = _digits.mlp_scores(params, images)
        prob = softmax(scores)[np.arange(10), np.arange(10)]
        hits = int(np.sum(np.argmax(scores, axis=1) == np.arange(10)))
        print(f"{what:>13}: {hits}/10 images classified as their class, p(c | I) from {prob.min():.3f} "
              f"to {prob.max():.3f}, pixels from {images.min():.2f} to {images.max():.2f}")
        lo, hi = min(0.0, float(images.min())), max(1.0, float(images.max()))   # one scale per row
        for k in range(10):
            ax = axes[r, k]
            ax.set_xticks([])
            ax.set_yticks([])
            im = ax.imshow(images[k].reshape(8, 8), cmap="gray_r", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(f"class {k}: p={prob[k]:.2f}", fontsize=8)
        axes[r, 0].set_ylabel(what, fontsize=9)
        fig.colorbar(im, ax=axes[r, :], shrink=0.9, pad=0.01, label="pixel")
    fig.suptitle(rf"class models: $\arg\max_I\; S_c(I) - {a.lam:g}\,\|I - M\|^2$ by {a.steps} steps of "
                 rf"gradient ascent ($\mu = {a.mu:g}$) from the mean image $M$; p = the classifier's "
                 r"$p(c \mid I)$", fontsize=10)
    out = _digits.out_dir(a.out) / "class_model_digits.png"
    fig.savefig(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
