"""Gradient checking against central finite differences."""
from __future__ import annotations

import numpy as np

from .init import resolve_shape


class GradcheckReport(dict):
    """``{arg name: worst relative error}``; ``worst`` is the largest of them."""

    @property
    def worst(self) -> float:
        return max(self.values(), default=0.0)

    def __str__(self) -> str:
        return "\n".join(f"{k:>16}: max rel. error {v:.2e}" for k, v in self.items())


def _value(out) -> float:
    """The value among ``forward``'s outputs (the first, when it returns several: ``OUTPUTS``)."""
    return float(out[0] if isinstance(out, tuple) else out)


def _rel(a: float, n: float, floor: float = 1e-6) -> float:
    """|a − n| / max(|a|, |n|, floor): relative, but absolute for entries near zero,
    where finite differences carry only round-off."""
    return abs(a - n) / max(abs(a), abs(n), floor)


def _is_float32(a) -> bool:
    return isinstance(a, (np.ndarray, np.floating)) and a.dtype == np.float32


def gradcheck(compiled, *args, eps: float = 1e-6, max_elems: int = 40, seed: int = 0) -> GradcheckReport:
    """Compare ``value_and_grad`` with central differences (f(x+h) - f(x-h)) / 2h.

    ``compiled`` is a :class:`gradc.Compiled` or a generated module; ``args``
    in its argument order. For each ``wrt`` argument, up to ``max_elems``
    entries (chosen at random, seeded) are perturbed by h = eps·max(1, |x|).
    Returns the worst relative error |a − n| / max(|a|, |n|, 1e-6) per argument.
    Also checks that ``forward`` returns ``value_and_grad``'s value (key ``"value"``).

    Float32 arguments: the gradient is the float32 one, but the differences are
    taken with the same generated code run on the arguments converted to float64
    (a float32 difference quotient has only about 3 correct digits); so the
    report measures the float32 gradient's own error, about 1e-6 relative.
    """
    module = getattr(compiled, "module", compiled)
    names = list(module.ARGS)
    rng = np.random.default_rng(seed)
    value, grads = module.value_and_grad(*args)
    report = GradcheckReport()
    report["value"] = _rel(float(value), _value(module.forward(*args)))
    if any(_is_float32(a) for a in args):
        args = tuple(np.asarray(a, dtype=np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float32
                     else float(a) if isinstance(a, np.floating) else a for a in args)
    for wname, g in zip(module.WRT, grads):
        i = names.index(wname)
        x0 = args[i]
        arr = np.array(x0, dtype=np.float64, copy=True)
        g = np.asarray(g, dtype=np.float64)
        flat = arr.reshape(-1)
        idx = np.arange(flat.size)
        if flat.size > max_elems:
            idx = rng.choice(flat.size, max_elems, replace=False)
        worst = 0.0
        for j in idx:
            h = eps * max(1.0, abs(flat[j]))
            vals = []
            for step in (h, -h):
                pert = flat.copy()
                pert[j] += step
                xi = pert.reshape(arr.shape) if arr.shape else float(pert[0])
                call = list(args)
                call[i] = xi
                vals.append(_value(module.forward(*call)))
            numeric = (vals[0] - vals[1]) / (2 * h)
            worst = max(worst, _rel(float(g.reshape(-1)[j]), numeric))
        report[wname] = worst
    return report


def random_arguments(compiled, dims: dict, seed: int = 0) -> list:
    """Random arguments for every input: standard normal floats, labels in
    ``[0, classes)`` (from the module's ``CLASSES``), symbolic dims from ``dims``."""
    module = getattr(compiled, "module", compiled)
    rng = np.random.default_rng(seed)
    out = []
    for name in module.ARGS:
        shape = resolve_shape(name, module.SHAPES[name], dims)
        if module.DTYPES[name] == "int64":
            classes = module.CLASSES.get(name, 2)
            if isinstance(classes, str):            # a symbolic number of classes such as "k"
                classes = resolve_shape(name, (classes,), dims)[0]
            out.append(rng.integers(0, classes, shape).astype(np.int64))
        elif module.DTYPES[name] == "float32":
            x = rng.standard_normal(shape).astype(np.float32)
            out.append(x if shape else np.float32(x))
        else:
            x = rng.standard_normal(shape)
            out.append(x if shape else float(x))
    return out
