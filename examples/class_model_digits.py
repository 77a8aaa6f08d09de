"""Class model visualisation for the digits classifier: for each class c, the
input image that maximises its score (the lecture notes' "input optimization
while fixing all weights" and "inputs maximizing class score"; Simonyan,
Vedaldi & Zisserman 2014). With the trained weights held fixed, gradient ascent
on the image alone:

    I <- I + mu * d(S_c(I) - lam * ||I||^2) / dI,     starting from I = 0

where S_c is the unnormalised score of class c. The gradient with respect to
the data input comes from ``mlp_digits_class_score.toml`` (``[output] wrt =
["X"]``): one fused call updates all ten class images at once. The picture has
two rows: the images kept in the data's pixel range [0, 1] (each step is
clipped there: projected gradient ascent), and the unconstrained ascent of the
formula above (red > 0 > blue).

    python examples/class_model_digits.py                     # writes class_model_digits.png here
    python examples/class_model_digits.py --epochs 10 --steps 50 --out build/
"""
from __future__ import annotations

import argparse

import numpy as np

import _digits  # the examples' shared helpers, beside this script
import gradc

SCORE_SPEC = _digits.HERE / "mlp_digits_class_score.toml"


def class_models(score, params: dict, *, steps: int, mu: float, lam: float, clip: bool) -> np.ndarray:
    """Gradient ascent on S_c(I) - lam ||I||^2 from I = 0 for c = 0..9; one row per class."""
    c = np.arange(10, dtype=np.int64)
    images = np.zeros((10, 64))
    for _ in range(steps):
        args = {"X": images, "c": c, "lam": lam, **params}
        _, (grad,) = score.value_and_grad(*(args[n] for n in score.arg_names))
        images = images + mu * grad
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
    p.add_argument("--lam", type=float, default=0.1, help="L2 penalty lam on the image (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the init and the shuffling (default 0)")
    p.add_argument("--out", help="folder for class_model_digits.png (default: the working directory)")
    a = p.parse_args(argv)
    Figure, FigureCanvasAgg = _digits.need_matplotlib("class_model_digits.py")

    Xtr, Xte, ytr, yte = _digits.load_split(a.seed)
    _, params, history = _digits.train_mlp(Xtr, ytr, epochs=a.epochs, seed=a.seed)
    print(f"trained {_digits.MLP_SPEC.name} for {a.epochs} epochs: final loss {history[-1]:.4f}, "
          f"test accuracy {_digits.accuracy(_digits.mlp_scores(params, Xte), yte):.4f}")
    score = gradc.compile(SCORE_SPEC)

    rows = [("in [0, 1]", class_models(score, params, steps=a.steps, mu=a.mu, lam=a.lam, clip=True)),
            ("unconstrained", class_models(score, params, steps=a.steps, mu=a.mu, lam=a.lam, clip=False))]
    fig = Figure(figsize=(12, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 10)
    for r, (what, images) in enumerate(rows):
        scores = _digits.mlp_scores(params, images)
        prob = softmax(scores)[np.arange(10), np.arange(10)]
        hits = int(np.sum(np.argmax(scores, axis=1) == np.arange(10)))
        print(f"{what:>13}: {hits}/10 images classified as their class, p(c | I) from {prob.min():.3f} "
              f"to {prob.max():.3f}, |I| from {np.linalg.norm(images, axis=1).min():.2f} "
              f"to {np.linalg.norm(images, axis=1).max():.2f}")
        for k in range(10):
            ax = axes[r, k]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.imshow(images[k].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            else:
                m = max(float(np.abs(images[k]).max()), 1e-12)
                ax.imshow(images[k].reshape(8, 8), cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
            ax.set_title(f"{k}: p={prob[k]:.2f}", fontsize=8)
        axes[r, 0].set_ylabel(what, fontsize=9)
    fig.suptitle(rf"class models: $\arg\max_I\; S_c(I) - {a.lam:g}\,\|I\|^2$ by {a.steps} steps of "
                 rf"gradient ascent ($\mu = {a.mu:g}$) from $I = 0$", fontsize=10)
    fig.tight_layout()
    out = _digits.out_dir(a.out) / "class_model_digits.png"
    fig.savefig(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
