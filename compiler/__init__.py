"""gradc: a symbolic-to-code gradient compiler.

SymPy expressions and TOML model specs are lowered to a typed SSA IR,
differentiated on that IR (reverse mode, forward mode and their compositions), and
rendered through Jinja2 into a module of Numba-JIT functions: ``forward``, a fused
``value_and_grad`` and, on demand, ``jvp``, ``vjp``, ``jacobian``, ``hvp``, ``hessian``.

>>> import sympy as sp, gradc
>>> x, y, z = sp.symbols("x y z")
>>> f = gradc.compile((x + y) * z, args=[x, y, z])
>>> f.value_and_grad(-2.0, 5.0, -4.0)
(-12.0, (-4.0, -4.0, 3.0))
"""
__version__ = "0.1.0"

from .errors import (ArgumentError, CacheError, GradcError, ShapeError, SpecError,  # noqa: E402
                     UnsupportedError, VerifyError)
from .options import Options  # noqa: E402
from .api import Compiled, compile, load  # noqa: E402


def __getattr__(name):
    # gradc.minimize / gradc.least_squares import SciPy's optimizers only when used
    if name in ("minimize", "least_squares"):
        from . import optimize
        return getattr(optimize, name)
    raise AttributeError(f"module 'gradc' has no attribute {name!r}")


__all__ = ["compile", "load", "Compiled", "Options", "GradcError", "SpecError", "ShapeError",
           "UnsupportedError", "VerifyError", "ArgumentError", "CacheError", "minimize", "least_squares",
           "__version__"]
