"""Parameter initialisation from a spec's ``init`` entries."""
from __future__ import annotations

import numpy as np

from gradc.errors import SpecError


def resolve_shape(name: str, shape, dims: dict) -> tuple[int, ...]:
    """Replace symbolic dimensions with ``dims[...]``; raise SpecError if one is missing."""
    out = []
    for d in shape:
        if isinstance(d, str):
            if d not in dims:
                raise SpecError(f"{name} has the symbolic dimension '{d}'; give its size",
                                hint=f"pass dims={{'{d}': N}} (CLI: --dim {d}=N)")
            d = dims[d]
        out.append(int(d))
    return tuple(out)


def init_params(compiled, dims: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays for every parameter of a compiled spec, C-contiguous, in the parameter's
    dtype (float64, or float32 where the spec says so; drawn in float64, then rounded).

    Methods: ``zeros``, ``ones``, ``constant`` (``value``), ``normal``
    (``std``, default 0.01), ``uniform`` (``scale``), ``glorot`` (uniform on
    ±sqrt(6/(fan_in+fan_out)); Glorot & Bengio 2010) and ``he`` (normal with
    std sqrt(2/fan_in); He et al. 2015). fan_in is the first dimension,
    fan_out the last.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for name, (method, opts) in compiled.params.items():
        shape = resolve_shape(name, compiled.shapes[name], dims)
        fan_in = shape[0] if shape else 1
        fan_out = shape[-1] if shape else 1
        if method == "zeros":
            value = np.zeros(shape)
        elif method == "ones":
            value = np.ones(shape)
        elif method == "constant":
            value = np.full(shape, float(opts.get("value", 0.0)))
        elif method == "normal":
            value = rng.normal(0.0, float(opts.get("std", 0.01)), shape)
        elif method == "uniform":
            s = float(opts.get("scale", 0.05))
            value = rng.uniform(-s, s, shape)
        elif method == "glorot":
            a = np.sqrt(6.0 / (fan_in + fan_out))
            value = rng.uniform(-a, a, shape)
        elif method == "he":
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        else:
            raise SpecError(f"unknown init '{method}' for parameter {name}")
        if getattr(compiled, "dtypes", {}).get(name) == "float32":
            params[name] = value.astype(np.float32) if shape else np.float32(value)
        else:
            params[name] = value if shape else float(value)
    return params
