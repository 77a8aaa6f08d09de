"""gradc: a symbolic-to-code gradient compiler.

SymPy expressions and TOML model specs are lowered to a typed SSA IR,
differentiated in reverse mode on that IR, and rendered through Jinja2 into a
module of Numba-JIT functions: ``forward`` and a fused ``value_and_grad``.

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

__all__ = ["compile", "load", "Compiled", "Options", "GradcError", "SpecError", "ShapeError",
           "UnsupportedError", "VerifyError", "ArgumentError", "CacheError", "__version__"]
