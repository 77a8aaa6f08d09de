"""Class model visualisation for the digits classifiers: for each class c, an
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
is a digit-like image for the MLP.

The classifier is the convolutional network of ``cnn_digits.toml`` (``--model
cnn``, the default; trained as ``train_cnn_digits.py``) or the MLP of
``mlp_digits.toml`` (``--model mlp``; as ``train_digits.py``). The gradient of S_c
with respect to the data input comes from the same network's class-score spec,
``cnn_digits_class_score.toml`` or ``mlp_digits_class_score.toml`` (``[output] wrt
= ["X"]``, ``lam = 0``; the prior's gradient -2 lam (I - M) is added here): one
fused call updates all ten class images at once.

The CNN's score is piecewise linear with a gradient that changes from pixel to
pixel (see saliency_digits.py), and the plain ascent ends in a speckle that only
hints at the digit. With ``--jitter 1`` (the CNN's default) each step takes the
gradient at the image shifted by a random pixel offset in {-1, 0, 1}^2 (exactly:
the gradient of I -> S_c(shift(I)), shifted back), the shifts the CNN was trained
on: the ascent then follows the gradient averaged over small translations, and
with a small step (mu 0.02, 1500 steps) the class models look like the digits.
The picture's rows: the images kept in the data's pixel range [0, 1] (each step
is clipped there: projected gradient ascent), the unconstrained ascent, with
jitter the plain ascent in [0, 1] for comparison, and the mean training image of
each class; each image is titled with the probability the classifier gives its class.

    python examples/class_model_digits.py                     # writes class_model_digits_cnn.png here
    python examples/class_model_digits.py --model mlp         # writes class_model_digits_mlp.png
    python examples/class_model_digits.py --epochs 3 --steps 60 --out build/
"""
from __future__ import annotations

import argparse

import numpy as np

import _digits  # the examples' shared helpers, beside this script
import gradc

#: per model: its spec, the spec of its class score (wrt the images X), its trainer, and the
#: defaults of --epochs, --steps, --mu and --jitter
MODELS = {"cnn": (_digits.CNN_SPEC, _digits.HERE / "cnn_digits_class_score.toml", _digits.train_cnn,
                  dict(epochs=15, steps=1500, mu=0.02, jitter=1)),
          "mlp": (_digits.MLP_SPEC, _digits.HERE / "mlp_digits_class_score.toml", _digits.train_mlp,
                  dict(epochs=80, steps=300, mu=0.1, jitter=0))}


def shift(images: np.ndarray, dy: np.ndarray, dx: np.ndarray, j: int) -> np.ndarray:
    """Each 8x8 image (a row of 64) moved by (dy, dx) pixels, |dy|, |dx| <= j; zeros fill in."""
    padded = np.pad(images.reshape(-1, 8, 8), ((0, 0), (j, j), (j, j)))
    return np.stack([padded[k, j - y:j - y + 8, j - x:j - x + 8] for k, (y, x) in enumerate(zip(dy, dx))]
                    ).reshape(len(images), 64)


def class_models(score, params: dict, mean: np.ndarray, *, steps: int, mu: float, lam: float,
                 clip: bool, jitter: int = 0, seed: int = 0) -> np.ndarray:
    """Gradient ascent on S_c(I) - lam ||I - mean||^2 from I = mean for c = 0..9; one row per class.
    With ``jitter`` > 0 each step differentiates S_c(shift(I)) for a random shift of each image by
    at most ``jitter`` pixels (shift's adjoint is the shift back)."""
    c = np.arange(10, dtype=np.int64)
    images = np.tile(mean, (10, 1))
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        dy, dx = rng.integers(-jitter, jitter + 1, size=(2, 10))
        X = shift(images, dy, dx, jitter) if jitter else images
        args = {"X": X, "c": c, "lam": 0.0, **params}
        _, (grad,) = score.value_and_grad(*(args[n] for n in score.arg_names))
        if jitter:
            grad = shift(grad, -dy, -dx, jitter)
        images = images + mu * (grad - 2.0 * lam * (images - mean))
        if clip:
            images = np.clip(images, 0.0, 1.0)
    return images


def softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="cnn",
                   help="cnn: cnn_digits.toml (the default); mlp: mlp_digits.toml")
    p.add_argument("--epochs", type=int,
                   help="training epochs of the classifier (default: 15 for the CNN, 80 for the MLP)")
    p.add_argument("--steps", type=int,
                   help="gradient-ascent steps on the images (default: 1500 for the CNN, 300 for the MLP)")
    p.add_argument("--mu", type=float, help="ascent step size mu (default: 0.02 for the CNN, 0.1 for the MLP)")
    p.add_argument("--lam", type=float, default=2.0,
                   help="weight lam of the L2 penalty on the image's distance from the mean image (default 2)")
    p.add_argument("--jitter", type=int,
                   help="shift the image by up to this many pixels at random in each step (default: 1 for "
                        "the CNN, 0 for the MLP)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the split, the init, the shuffling and the jitter (default 0)")
    p.add_argument("--out", help="folder for class_model_digits_MODEL.png (default: the working directory)")
    a = p.parse_args(argv)
    Figure, FigureCanvasAgg = _digits.need_matplotlib("class_model_digits.py")
    spec, score_spec, train, defaults = MODELS[a.model]
    for name, value in defaults.items():
        if getattr(a, name) is None:
            setattr(a, name, value)
    if a.jitter < 0 or a.jitter > 3:
        p.error(f"--jitter {a.jitter}: give 0 to 3 pixels")

    Xtr, Xte, ytr, yte = _digits.load_split(a.seed)
    compiled, params, history = train(Xtr, ytr, epochs=a.epochs, seed=a.seed)

    def scores_of(X):
        return _digits.scores_of(compiled, params, X)

    print(f"trained {spec.name} for {a.epochs} epochs: final loss {history[-1]:.4f}, "
          f"test accuracy {_digits.accuracy(scores_of(Xte), yte):.4f}")
    score = gradc.compile(score_spec)
    mean = Xtr.mean(axis=0)

    ascent = dict(steps=a.steps, mu=a.mu, lam=a.lam, jitter=a.jitter, seed=a.seed)
    rows = [("in [0, 1]", class_models(score, params, mean, clip=True, **ascent)),
            ("unconstrained", class_models(score, params, mean, clip=False, **ascent))]
    if a.jitter:
        rows.append(("in [0, 1], no jitter", class_models(score, params, mean, clip=True, **{**ascent, "jitter": 0})))
    rows.append(("class mean", np.stack([Xtr[ytr == k].mean(axis=0) for k in range(10)])))
    fig = Figure(figsize=(13, 1.63 * len(rows) + 0.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 10)
    for r, (what, images) in enumerate(rows):
        scores = scores_of(images)
        prob = softmax(scores)[np.arange(10), np.arange(10)]
        hits = int(np.sum(np.argmax(scores, axis=1) == np.arange(10)))
        print(f"{what:>20}: {hits}/10 images classified as their class, p(c | I) from {prob.min():.3f} "
              f"to {prob.max():.3f}, pixels from {images.min():.2f} to {images.max():.2f}")
        lo, hi = min(0.0, float(images.min())), max(1.0, float(images.max()))   # one scale per row
        for k in range(10):
            ax = axes[r, k]
            ax.set_xticks([])
            ax.set_yticks([])
            im = ax.imshow(images[k].reshape(8, 8), cmap="gray_r", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(f"class {k}: p={prob[k]:.2f}", fontsize=8)
        axes[r, 0].set_ylabel(what.replace("], ", "],\n"), fontsize=9)
        fig.colorbar(im, ax=axes[r, :], shrink=0.9, pad=0.01, label="pixel")
    jitter = f", each step at a random shift of up to {a.jitter} pixel{'s' * (a.jitter > 1)}" if a.jitter else ""
    fig.suptitle(rf"{a.model.upper()} ({spec.name}) class models: $\arg\max_I\; S_c(I) - {a.lam:g}\,\|I - M\|^2$ "
                 rf"by {a.steps} steps of gradient ascent ($\mu = {a.mu:g}$) from the mean image $M${jitter};"
                 "\n" r"p = the classifier's $p(c \mid I)$", fontsize=10)
    out = _digits.out_dir(a.out) / f"class_model_digits_{a.model}.png"
    fig.savefig(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
