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
    entries (chosen at random, seeded) are perturbed by h = eps·max(1, |x|); the error of an
    entry is relative to the larger of the two values, or to 1 % of the argument's largest
    gradient entry if that is larger (round-off of the quotient, not the gradient, dominates there).
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
        # entries far below the argument's largest gradient (exact zeros behind a ReLU) are compared
        # with 1 % of it: there a difference quotient carries only its round-off, ~1e-16 |f| / h
        floor = max(1e-6, 1e-2 * float(np.max(np.abs(g)))) if g.size else 1e-6
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
            worst = max(worst, _rel(float(g.reshape(-1)[j]), numeric, floor))
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


# ---------------------------------------------------------------- the other derivatives (issue 11)
def _flat(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _blocks(result, rows: list[int], cols: list[int]) -> np.ndarray:
    """A Jacobian or Hessian as one 2-D array: an array as it is (2-D already, or ravelled into
    ``(sum(rows), sum(cols))``), a tuple of blocks (one per column group, or rows of them) joined."""
    if isinstance(result, np.ndarray) and result.ndim == 2 and result.shape == (sum(rows), sum(cols)):
        return result
    if not isinstance(result, tuple):
        result = (result,)
    if result and isinstance(result[0], tuple):
        return np.block([[np.asarray(b, dtype=np.float64).reshape(r, c) for b, c in zip(row, cols)]
                         for row, r in zip(result, rows)])
    return np.hstack([np.asarray(b, dtype=np.float64).reshape(rows[0], c) for b, c in zip(result, cols)])


def derivcheck(compiled, *args, kinds=None, eps: float = 1e-6, max_elems: int = 40,
               seed: int = 0) -> GradcheckReport:
    """Compare the derivatives of ``compiled`` (a :class:`gradc.Compiled`) with central differences
    at ``args`` (in its argument order): ``{kind: worst relative error}`` for each of ``kinds``
    (default: those the module has besides ``grad``; others compile on first use).

    The references are finite differences of ``forward`` (its float outputs, ravelled: for
    ``jvp``, ``vjp`` and ``jacobian``) and of ``value_and_grad`` (its gradients: for ``hvp`` and
    ``hessian``), along random tangents (``jvp``, ``hvp``) or along up to ``max_elems`` unit
    vectors (chosen at random, seeded), each step h = eps·max(1, |x|)."""
    kinds = [k for k in (kinds if kinds is not None else compiled.derivatives) if k != "grad"]
    rng = np.random.default_rng(seed)
    names = list(compiled.arg_names)
    pos = [names.index(w) for w in compiled.wrt]
    sizes = [int(np.size(args[i])) for i in pos]
    x0 = np.concatenate([_flat(args[i]) for i in pos]) if pos else np.zeros(0)

    def at(x) -> list:
        call, k = list(args), 0
        for i, n in zip(pos, sizes):
            call[i] = x[k:k + n].reshape(np.shape(args[i])) if np.ndim(args[i]) else float(x[k])
            k += n
        return call

    def outputs(x) -> np.ndarray:
        out = compiled.forward(*at(x))
        out = out if isinstance(out, tuple) else (out,)
        return np.concatenate([_flat(o) for o in out if np.asarray(o).dtype.kind == "f"])

    def gradient(x) -> np.ndarray:
        return np.concatenate([_flat(g) for g in compiled.value_and_grad(*at(x))[1]])

    def diff(fn, direction) -> np.ndarray:
        h = eps * max(1.0, float(np.max(np.abs(x0))) if x0.size else 1.0)
        return (fn(x0 + h * direction) - fn(x0 - h * direction)) / (2 * h)

    cols = rng.choice(x0.size, min(x0.size, max_elems), replace=False) if x0.size else []
    unit = np.eye(x0.size)

    def worst(a, b) -> float:
        return max((_rel(float(p), float(q)) for p, q in zip(np.ravel(a), np.ravel(b))), default=0.0)

    report = GradcheckReport()
    for kind in kinds:
        if kind == "jvp":
            t = rng.standard_normal(x0.size)
            tangents = [t[sum(sizes[:j]):sum(sizes[:j + 1])].reshape(np.shape(args[i])) if np.ndim(args[i])
                        else float(t[sum(sizes[:j])]) for j, i in enumerate(pos)]
            _, out_t = compiled.jvp(*args, tuple(tangents))
            out_t = out_t if isinstance(out_t, tuple) and len(compiled.outputs) > 1 else (out_t,)
            report[kind] = worst(np.concatenate([_flat(o) for o in out_t]), diff(outputs, t))
        elif kind == "vjp":
            ref = outputs(x0)
            c = rng.standard_normal(ref.size)
            outs = compiled.forward(*args)
            outs = outs if isinstance(outs, tuple) else (outs,)
            cts, k = [], 0
            for o in outs:
                if np.asarray(o).dtype.kind == "f":
                    n = int(np.size(o))
                    cts.append(c[k:k + n].reshape(np.shape(o)) if np.ndim(o) else float(c[k]))
                    k += n
            _, grads = compiled.vjp(*args, tuple(cts))
            got = np.concatenate([_flat(g) for g in grads])
            report[kind] = worst(got[cols], [c @ diff(outputs, unit[j]) for j in cols])
        elif kind == "jacobian":
            m = int(np.size(compiled.forward(*args)[0] if len(compiled.outputs) > 1 else compiled.forward(*args)))
            J = _blocks(compiled.jacobian(*args), [m], sizes)
            fd = np.stack([diff(lambda x: _flat(outputs(x)[:m]), unit[j]) for j in cols], axis=1) if len(cols) else []
            report[kind] = worst(J[:, cols], fd)
        elif kind in ("hessian", "value_grad_hessian"):
            H = compiled.hessian(*args) if kind == "hessian" else compiled.value_grad_hessian(*args)[2]
            H = _blocks(H, sizes, sizes)
            fd = np.stack([diff(gradient, unit[j]) for j in cols], axis=1) if len(cols) else []
            report[kind] = worst(H[:, cols], fd)
        elif kind == "hvp":
            v = rng.standard_normal(x0.size)
            vs = [v[sum(sizes[:j]):sum(sizes[:j + 1])].reshape(np.shape(args[i])) if np.ndim(args[i])
                  else float(v[sum(sizes[:j])]) for j, i in enumerate(pos)]
            got = np.concatenate([_flat(g) for g in compiled.hvp(*args, tuple(vs))])
            report[kind] = worst(got, diff(gradient, v))
        else:
            raise ValueError(f"derivcheck: unknown derivative {kind!r}")
    return report
