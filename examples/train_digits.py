"""Train the 64 -> 32 tanh -> 10 softmax classifier of ``mlp_digits.toml`` on
scikit-learn's bundled 8x8 digits (1,797 images; no download) with gradc's
fused value-and-gradient function and plain minibatch SGD.

    python examples/train_digits.py                 # compile, train, print test accuracy
    python examples/train_digits.py --out build/    # also keep the generated module there

The spec is compiled with :func:`gradc.compile`; the generated module goes to
gradc's cache (``$GRADC_CACHE_DIR`` or ``~/.cache/gradc``) unless ``--out``
names a folder or a ``.py`` file.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import gradc
from gradc.runtime import SGD, train

SPEC = Path(__file__).resolve().with_name("mlp_digits.toml")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=80, help="passes over the training set (default 80)")
    p.add_argument("--lr", type=float, default=0.2, help="SGD learning rate (default 0.2)")
    p.add_argument("--batch-size", type=int, default=16, help="minibatch size (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the init and the shuffling (default 0)")
    p.add_argument("--out", help="folder (or .py file) for the generated module (default: gradc's cache)")
    a = p.parse_args(argv)

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    out = None
    if a.out:
        out = Path(a.out)
        if out.suffix != ".py":
            out = out / "mlp_digits_grad.py"
    t0 = time.perf_counter()
    compiled = gradc.compile(SPEC, out=out)
    # the first call JIT-compiles forward/value_and_grad (or loads Numba's cache)
    params = compiled.init_params(seed=a.seed)
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float64)
    y = digits.target.astype(np.int64)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, stratify=y, random_state=a.seed)
    args = [Xtr[:2] if n == "X" else ytr[:2] if n == "y" else params[n] for n in compiled.arg_names]
    compiled.value_and_grad(*args)
    print(f"compiled {SPEC.name} -> {compiled.path} ({time.perf_counter() - t0:.1f} s incl. JIT)")
    print(f"digits: {len(Xtr)} training and {len(Xte)} test images, 64 pixels, 10 classes")

    t1 = time.perf_counter()
    train(compiled, params, {"X": Xtr, "y": ytr}, epochs=a.epochs, batch_size=a.batch_size,
          optimizer=SGD(a.lr), seed=a.seed)
    seconds = time.perf_counter() - t1

    def accuracy(X, y):
        loss, scores = compiled.forward(X, y, **params)      # the spec's outputs: the loss and the scores
        return float(np.mean(np.argmax(scores, axis=1) == y))

    print(f"training time: {seconds:.2f} s for {a.epochs} epochs")
    print(f"train accuracy: {accuracy(Xtr, ytr):.4f}")
    print(f"test accuracy: {accuracy(Xte, yte):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
