"""Train the digits classifier of ``mlp_digits.toml`` once with each optimizer of
``gradc.runtime`` -- SGD, momentum, Nesterov momentum, AdaGrad, RMSProp, Adam and
(full batch) delta-bar-delta -- from the same initial weights and minibatch
order, print each one's final training loss and test accuracy, and plot their
loss curves into one picture.

    python examples/compare_optimizers.py                      # writes optimizers_digits.png here
    python examples/compare_optimizers.py --epochs 10 --out build/
    python examples/compare_optimizers.py --optimizers sgd,adam

Delta-bar-delta adapts one rate per weight from the sign of the full-batch
gradient (Jacobs 1988), so it takes one step per epoch on the whole training
set, where the others take one step per minibatch.
"""
from __future__ import annotations

import argparse
import time

import _digits  # the examples' shared helpers, beside this script
import gradc
from gradc.runtime import AdaGrad, Adam, DeltaBarDelta, Momentum, RMSProp, SGD, save_loss_curve, train

#: name -> (optimizer factory, legend label); rates tuned lightly for this model
OPTIMIZERS = {
    "sgd": (lambda: SGD(lr=0.1), "SGD lr=0.1"),
    "momentum": (lambda: Momentum(lr=0.03, mu=0.9), "momentum lr=0.03 mu=0.9"),
    "nesterov": (lambda: Momentum(lr=0.03, mu=0.9, nesterov=True), "Nesterov lr=0.03 mu=0.9"),
    "adagrad": (lambda: AdaGrad(lr=0.05), "AdaGrad lr=0.05"),
    "rmsprop": (lambda: RMSProp(lr=0.002, rho=0.9), "RMSProp lr=0.002 rho=0.9"),
    "adam": (lambda: Adam(lr=0.003), "Adam lr=0.003"),
    "deltabardelta": (lambda: DeltaBarDelta(lr=1.0, kappa=0.2, phi=0.3, theta=0.7),
                      "delta-bar-delta, full batch\nlr=1 kappa=0.2 phi=0.3 theta=0.7"),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=40, help="passes over the training set (default 40)")
    p.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the init and the shuffling (default 0)")
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                   help=f"comma-separated subset of {','.join(OPTIMIZERS)} (default: all)")
    p.add_argument("--out", help="folder for optimizers_digits.png (default: the working directory)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    names = [n.strip() for n in a.optimizers.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown or not names:
        p.error(f"unknown optimizer(s) {', '.join(unknown)}; choose from {', '.join(OPTIMIZERS)}")

    Xtr, Xte, ytr, yte = _digits.load_split(a.seed)
    compiled = gradc.compile(_digits.MLP_SPEC)
    print(f"digits MLP ({_digits.MLP_SPEC.name}): {len(Xtr)} training / {len(Xte)} test images, "
          f"{a.epochs} epochs, batch size {a.batch_size}")
    curves = {}
    for name in names:
        make, label = OPTIMIZERS[name]
        params = compiled.init_params(seed=a.seed)           # the same start for every optimizer
        t0 = time.perf_counter()
        history = train(compiled, params, {"X": Xtr, "y": ytr}, epochs=a.epochs, batch_size=a.batch_size,
                        optimizer=make(), seed=a.seed, log=None, progress=False if a.no_progress else None)
        seconds = time.perf_counter() - t0
        acc = _digits.accuracy(_digits.mlp_scores(params, Xte), yte)
        curves[label] = history
        note = f"  ({history.stop_reason} at epoch {history.stopped_epoch})" if history.stop_reason else ""
        print(f"{name:>14}: final loss {history[-1]:.4f}  test accuracy {acc:.4f}  ({seconds:.2f} s){note}")

    out = _digits.out_dir(a.out) / "optimizers_digits.png"
    written = save_loss_curve(curves, out, title=f"digits MLP: training loss per epoch (batch size {a.batch_size})")
    if written:
        print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
