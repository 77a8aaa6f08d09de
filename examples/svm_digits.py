"""A linear classifier trained with the multiclass SVM (hinge) loss of the
lecture notes on scikit-learn's 8x8 digits: scores s = X W + b, per-example loss
L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + 1), plus an L2 penalty on W
(``svm_linear.toml``), minimised by minibatch SGD with gradc's fused
value-and-gradient function.

    python examples/svm_digits.py                 # prints the test accuracy, writes svm_digits_templates.png
    python examples/svm_digits.py --epochs 10 --out build/

The picture shows the ten learned columns of W as 8x8 "templates" (red:
pixels voting for the class, blue: against) and the loss curve is written to
svm_digits_loss.png.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import _digits  # the examples' shared helpers, beside this script
import gradc
from gradc.runtime import SGD, evaluate, save_loss_curve, train

SPEC = _digits.HERE / "svm_linear.toml"


def hinge_loss(W, b, X, y, reg: float = 1e-3) -> float:
    """The spec's loss in plain NumPy, as a cross-check of the generated code."""
    s = X @ W + b
    margins = np.maximum(0.0, s - s[np.arange(len(y)), y][:, None] + 1.0)
    margins[np.arange(len(y)), y] = 0.0
    return float(np.mean(margins.sum(axis=1)) + reg * np.sum(W ** 2))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=50, help="passes over the training set (default 50)")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default 0.05)")
    p.add_argument("--batch-size", type=int, default=16, help="minibatch size (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the init and the shuffling (default 0)")
    p.add_argument("--out", help="folder for the pictures (default: the working directory)")
    a = p.parse_args(argv)

    Xtr, Xte, ytr, yte = _digits.load_split(a.seed)
    compiled = gradc.compile(SPEC)
    params = compiled.init_params(seed=a.seed)
    print(f"compiled {SPEC.name}: {compiled.output}({', '.join(compiled.arg_names)}) wrt ({', '.join(compiled.wrt)})")
    t0 = time.perf_counter()
    history = train(compiled, params, {"X": Xtr, "y": ytr}, epochs=a.epochs, batch_size=a.batch_size,
                    optimizer=SGD(a.lr), seed=a.seed, log=None)
    seconds = time.perf_counter() - t0
    test_loss = evaluate(compiled, params, {"X": Xte, "y": yte})
    reference = hinge_loss(params["W"], params["b"], Xte, yte)
    print(f"{a.epochs} epochs of SGD (lr {a.lr}, batch size {a.batch_size}) in {seconds:.2f} s: "
          f"training loss {history[0]:.4f} -> {history[-1]:.4f}")
    print(f"test loss {test_loss:.4f} (NumPy reference {reference:.4f})")
    scores = lambda X: X @ params["W"] + params["b"]  # noqa: E731
    print(f"train accuracy: {_digits.accuracy(scores(Xtr), ytr):.4f}")
    print(f"test accuracy: {_digits.accuracy(scores(Xte), yte):.4f}")

    out = _digits.out_dir(a.out)
    written = save_loss_curve(history, out / "svm_digits_loss.png", title="linear SVM on digits: training loss")
    if written:
        print(f"wrote {written}")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 1.9), dpi=100)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 10)
        for k, ax in enumerate(axes):
            w = params["W"][:, k].reshape(8, 8)
            m = max(float(np.abs(w).max()), 1e-12)
            ax.imshow(w, cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
            ax.set_title(f"class {k}", fontsize=9)
            ax.set_axis_off()
        fig.suptitle("linear SVM templates: the columns of W as 8x8 images", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / "svm_digits_templates.png")
        print(f"wrote {out / 'svm_digits_templates.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
