"""Train the convolutional network of ``cnn_digits.toml`` (conv 3x3 16 -> ReLU -> max-pool 2 ->
conv 3x3 32 -> ReLU -> flatten -> dense 10) on scikit-learn's bundled 8x8 digits (no download)
with gradc's fused value-and-gradient function and Adam; the training images are augmented with
their one-pixel shifts. Prints the test accuracy on the held-out quarter (the MLP of
``train_digits.py`` reaches 0.978).

    python examples/train_cnn_digits.py              # compile, train, print test accuracy
    python examples/train_cnn_digits.py --epochs 5   # quicker
"""
from __future__ import annotations

import argparse
import time

import _digits


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=15, help="passes over the augmented training set (default 15)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the init and the shuffling (default 0)")
    a = p.parse_args(argv)

    Xtr, Xte, ytr, yte = _digits.load_split(a.seed)
    t0 = time.perf_counter()
    import gradc
    compiled = gradc.compile(_digits.CNN_SPEC)
    compiled.value_and_grad(Xtr[:2], ytr[:2], **compiled.init_params(seed=a.seed))    # Numba's compile
    print(f"compiled {_digits.CNN_SPEC.name} -> {compiled.path} ({time.perf_counter() - t0:.1f} s incl. JIT)")
    print(f"digits: {len(Xtr)} training images (x5 with their one-pixel shifts) and {len(Xte)} test images")
    t1 = time.perf_counter()
    compiled, params, history = _digits.train_cnn(Xtr, ytr, epochs=a.epochs, lr=a.lr, batch_size=a.batch_size,
                                                  seed=a.seed)
    print(f"training time: {time.perf_counter() - t1:.2f} s for {a.epochs} epochs (final loss {history[-1]:.4f})")
    print(f"train accuracy: {_digits.accuracy(_digits.scores_of(compiled, params, Xtr), ytr):.4f}")
    print(f"test accuracy: {_digits.accuracy(_digits.scores_of(compiled, params, Xte), yte):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
