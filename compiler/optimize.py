"""SciPy as a client: a flat-vector view of a compiled model (:class:`Flat`) and the thin
wrappers :func:`minimize` and :func:`least_squares` around ``scipy.optimize``.

SciPy's optimizers work on one float64 vector ``x`` of shape ``(n,)``; a gradc model has named
arguments of several shapes. :class:`Flat` packs the ``wrt`` arguments into ``x`` (in ``wrt``
order, each raveled in C order: ``x[off_i:off_i + size_i] = w_i.ravel()``) and holds the other
arguments fixed. Its methods are the callables SciPy asks for:

* a scalar value (a loss): ``fun(x) -> float``, ``jac(x) -> (n,)``, ``fun_and_jac(x)``
  (``minimize(jac=True)``), ``hess(x) -> (n, n)`` and ``hessp(x, p) -> (n,)`` (``H p`` by the
  generated forward-over-reverse ``hvp``);
* an array value (residuals ``r``, ``m = r.size``): ``fun(x) -> (m,)`` (``r`` raveled in C
  order) and ``jac(x) -> (m, n)`` (``∂r/∂x``), as ``scipy.optimize.least_squares`` wants them.

>>> import numpy as np, gradc
>>> f = gradc.compile('''
... [params]
... x = { shape = [3] }
... [graph]
... f = "sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)"
... [output]
... value = "f"
... ''')
>>> res = gradc.minimize(f, {"x": np.zeros(3)}, method="trust-ncg", options={"gtol": 1e-10})
>>> np.round(res.params["x"], 8).tolist()
[1.0, 1.0, 1.0]
"""
from __future__ import annotations

import numpy as np

from .errors import ArgumentError, GradcError

#: ``scipy.optimize.minimize`` methods: those that use no derivative, those given ``hessp``
#: (a Hessian-vector product is enough for their inner CG/Krylov iterations; SciPy's docs,
#: "minimize"), and those that need the dense Hessian ``hess``.
GRADIENT_FREE = frozenset({"nelder-mead", "powell", "cobyla", "cobyqa"})
USES_HESSP = frozenset({"newton-cg", "trust-ncg", "trust-krylov", "trust-constr"})
NEEDS_HESS = frozenset({"dogleg", "trust-exact"})


class Flat:
    """The model ``compiled`` as functions of one float64 vector ``x`` (see the module docstring).

    ``fixed``: every argument that is not in ``compiled.wrt``, by name, as the compiled
    functions take it (arrays of the declared dtype and rank). A symbolic dimension (``"batch"``)
    of a ``wrt`` argument takes its size from the fixed arguments that have it or, failing that,
    from the first :meth:`flatten`. Attributes: ``compiled``, ``fixed`` (a dict), ``wrt``,
    ``shapes`` (each ``wrt`` argument's concrete shape, once known), ``size`` (``n``), ``residual``
    (True for an array value), ``calls`` (how many times each compiled function ran).

    Raises :class:`~gradc.errors.ArgumentError` naming the argument for a missing fixed
    argument, a ``wrt`` or unknown name among ``fixed``, or a fixed array whose rank or
    symbolic dimensions do not fit.
    """

    def __init__(self, compiled, **fixed):
        self.compiled = compiled
        self.wrt = tuple(compiled.wrt)
        where = "scipy"
        for name in fixed:
            if name in self.wrt:
                raise ArgumentError("is differentiated (in .wrt), so it is a variable of the optimizer, "
                                    "not a fixed argument", f"{where}: argument '{name}'",
                                    "give its starting value in the parameter dict (flatten / x0_params)")
            if name not in compiled.arg_names:
                raise ArgumentError(f"is not an argument of {compiled.output}({', '.join(compiled.arg_names)})",
                                    f"{where}: argument '{name}'", "check the spelling against .arg_names")
        missing = [n for n in compiled.arg_names if n not in self.wrt and n not in fixed]
        if missing:
            raise ArgumentError(f"missing fixed argument(s) {', '.join(missing)}: every argument that is not "
                                f"in .wrt {self.wrt} must be given", f"{where}: argument '{missing[0]}'",
                                "pass them by name: compiled.scipy(name=value, ...) or fixed={...}")
        self.fixed = dict(fixed)
        self.dims: dict = {}
        for name, value in fixed.items():
            self._learn_dims(where, name, np.shape(value))
        self.residual = "grad" not in compiled.derivatives
        self.calls = {}
        self._cached_x = None          # the last x of value_and_grad, and its (value, flat gradient)
        self._cached = None
        self.shapes = self.size = None
        self._layout()

    # ------------------------------------------------------------------ layout
    def _learn_dims(self, where, name, shape):
        declared = self.compiled.shapes[name]
        if len(shape) != len(declared):
            raise ArgumentError(f"expected shape {list(declared)} (rank {len(declared)}), got {tuple(shape)}",
                                f"{where}: argument '{name}'")
        for d, s in zip(declared, shape):
            if isinstance(d, int):
                if d != s:
                    raise ArgumentError(f"expected shape {list(declared)}, got {tuple(shape)}",
                                        f"{where}: argument '{name}'")
            elif self.dims.setdefault(d, s) != s:
                raise ArgumentError(f"expected shape {list(declared)} with {d} = {self.dims[d]} (from the other "
                                    f"arguments), got {tuple(shape)}", f"{where}: argument '{name}'",
                                    f"every argument with the dimension {d} must have the same size there")

    def _layout(self) -> bool:
        """Fix ``shapes``, ``size`` and the offsets once every dimension of the ``wrt`` arguments is known."""
        if self.size is not None:
            return True
        shapes = {}
        for w in self.wrt:
            shape = tuple(d if isinstance(d, int) else self.dims.get(d) for d in self.compiled.shapes[w])
            if None in shape:
                return False
            shapes[w] = shape
        self.shapes = shapes
        sizes = [int(np.prod(shapes[w], dtype=np.int64)) for w in self.wrt]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        self.size = self._offsets[-1]
        self._dtypes = {w: np.dtype(self.compiled.dtypes[w]) for w in self.wrt}
        return True

    def _need_layout(self, where):
        if not self._layout():
            unknown = sorted({d for w in self.wrt for d in self.compiled.shapes[w]
                              if not isinstance(d, int) and d not in self.dims})
            raise ArgumentError(f"the size of dimension(s) {', '.join(unknown)} of the wrt arguments is not "
                                "known yet", where, "call flatten(params) first, or fix an argument with that dimension")

    # ------------------------------------------------------------------ vector <-> dict
    def flatten(self, params: dict) -> np.ndarray:
        """``params`` (one value per ``wrt`` argument, by name: arrays of its shape, numbers for
        scalars) packed into a new float64 vector of shape ``(n,)``, in ``wrt`` order, C order.
        Fixes the symbolic dimensions not known from the fixed arguments. Raises
        :class:`~gradc.errors.ArgumentError` for a missing or unknown name or a wrong shape."""
        where = "flatten"
        if not isinstance(params, dict):
            raise ArgumentError(f"expected a dict of the wrt arguments {self.wrt}, got {type(params).__name__}",
                                where)
        for name in params:
            if name not in self.wrt:
                raise ArgumentError("is not a wrt argument" + (" (it is fixed)" if name in self.fixed else ""),
                                    f"{where}: argument '{name}'", f"the vector holds only {self.wrt}")
        missing = [w for w in self.wrt if w not in params]
        if missing:
            raise ArgumentError(f"missing {', '.join(missing)}", f"{where}: argument '{missing[0]}'",
                                "give a starting value for every wrt argument")
        values = {w: np.asarray(params[w], dtype=np.float64) for w in self.wrt}
        if self.size is None:
            for w in self.wrt:
                self._learn_dims(where, w, values[w].shape)
            self._layout()
        for w in self.wrt:
            if values[w].shape != self.shapes[w]:
                raise ArgumentError(f"expected shape {self.shapes[w]}, got {values[w].shape}",
                                    f"{where}: argument '{w}'")
        return np.concatenate([values[w].ravel() for w in self.wrt]) if self.wrt else np.zeros(0)

    def _check_vector(self, x, where, name="x") -> np.ndarray:
        self._need_layout(where)
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.size,):
            raise ArgumentError(f"expected a float64 vector of shape ({self.size},) (the wrt arguments "
                                f"{self.wrt} packed), got shape {x.shape}", f"{where}: {name}",
                                "make it with flatten(params)")
        return x

    def _split(self, x) -> list:
        """The pieces of the checked vector ``x``, shaped and typed like the ``wrt`` arguments
        (views where the dtype is float64; numbers for scalars)."""
        out = []
        for w, a, b in zip(self.wrt, self._offsets, self._offsets[1:]):
            if self.shapes[w]:
                out.append(x[a:b].reshape(self.shapes[w]).astype(self._dtypes[w], copy=False))
            else:
                out.append(float(x[a]))
        return out

    def unflatten(self, x) -> dict:
        """The vector ``x`` (shape ``(n,)``) as a dict ``{wrt name: value}``: new arrays of each
        argument's shape and declared dtype, Python floats for scalars. Raises
        :class:`~gradc.errors.ArgumentError` if ``x`` has another shape."""
        x = self._check_vector(x, "unflatten")
        return {w: (v.copy() if isinstance(v, np.ndarray) else v) for w, v in zip(self.wrt, self._split(x))}

    def _args(self, x) -> tuple:
        pieces = dict(zip(self.wrt, self._split(x)))
        return tuple(pieces[n] if n in pieces else self.fixed[n] for n in self.compiled.arg_names)

    def _run(self, kind, *args):
        self.calls[kind] = self.calls.get(kind, 0) + 1
        return getattr(self.compiled, kind)(*args)

    def _flat_grads(self, grads) -> np.ndarray:
        return np.concatenate([np.ravel(g).astype(np.float64, copy=False) for g in grads])

    def _scalar_only(self, where):
        if self.residual:
            raise GradcError(f"{self.compiled.output} is an array (residuals), not a scalar", where,
                             "use fun and jac with scipy.optimize.least_squares (gradc.least_squares)")

    # ------------------------------------------------------------------ SciPy's callables
    def fun(self, x):
        """The value at ``x``: a float for a scalar value (from ``value_and_grad``, kept for a
        following :meth:`jac` at the same ``x``); for an array value, the residuals raveled in C
        order, a float64 vector of shape ``(m,)``."""
        if self.residual:
            x = self._check_vector(x, "fun")
            out = self._run("forward", *self._args(x))
            if len(self.compiled.outputs) > 1:
                out = out[0]
            return np.ravel(out).astype(np.float64, copy=False)
        return self.fun_and_jac(x)[0]

    def jac(self, x):
        """The derivative at ``x``: for a scalar value its gradient, a float64 vector of shape
        ``(n,)`` (from the cached ``value_and_grad`` when :meth:`fun` was just called at ``x``);
        for an array value the Jacobian ``∂r/∂x``, shape ``(m, n)``, row ``i`` the residual
        ``r.ravel()[i]``, columns in the order of ``x``."""
        if self.residual:
            x = self._check_vector(x, "jac")
            J = self._run("jacobian", *self._args(x))
            if isinstance(J, np.ndarray) and J.ndim == 2 and all(not self.shapes[w] for w in self.wrt):
                return J.astype(np.float64, copy=False)          # already (m, n): vector output, scalar wrt
            if self.wrt and len(self.wrt) == 1 and not isinstance(J, tuple):
                J = (J,)
            m = int(np.prod(np.shape(J[0])[:np.ndim(J[0]) - len(self.shapes[self.wrt[0]])], dtype=np.int64))
            return np.hstack([np.reshape(b, (m, -1)) for b in J]).astype(np.float64, copy=False)
        return self.fun_and_jac(x)[1]

    def fun_and_jac(self, x):
        """``(value, gradient)`` at ``x`` in one ``value_and_grad`` call: a float and a float64
        vector of shape ``(n,)`` (for ``scipy.optimize.minimize(fun_and_jac, x0, jac=True)``).
        Scalar values only: raises :class:`~gradc.errors.GradcError` for residuals."""
        self._scalar_only("fun_and_jac")
        x = self._check_vector(x, "fun_and_jac")
        if self._cached_x is None or not np.array_equal(x, self._cached_x):
            value, grads = self._run("value_and_grad", *self._args(x))
            self._cached = (float(value), self._flat_grads(grads))
            self._cached_x = x.copy()            # SciPy may change its x in place
        value, grad = self._cached
        return value, grad.copy()

    def hess(self, x):
        """The Hessian of the scalar value at ``x``: a float64 array of shape ``(n, n)``, the
        blocks ``H[i][j]`` of ``compiled.hessian`` reshaped to ``(size_i, size_j)`` and assembled
        in ``wrt`` order. Scalar values only."""
        self._scalar_only("hess")
        x = self._check_vector(x, "hess")
        H = self._run("hessian", *self._args(x))
        if isinstance(H, np.ndarray):                 # every wrt a scalar: already (n, n)
            return H.astype(np.float64, copy=False)
        sizes = np.diff(self._offsets)
        return np.block([[np.reshape(H[i][j], (sizes[i], sizes[j])) for j in range(len(self.wrt))]
                         for i in range(len(self.wrt))]).astype(np.float64, copy=False)

    def hessp(self, x, p):
        """``H(x) p``: the Hessian of the scalar value at ``x`` times the vector ``p`` (shape
        ``(n,)``), a float64 vector of shape ``(n,)``, by one call of the generated ``hvp``
        (forward over reverse) without forming ``H``. Scalar values only."""
        self._scalar_only("hessp")
        x = self._check_vector(x, "hessp")
        p = self._check_vector(p, "hessp", "p")
        v = self._split(p)
        hv = self._run("hvp", *self._args(x), tuple(v) if len(v) != 1 else v[0])
        return self._flat_grads(hv)

    def __repr__(self):
        return (f"<gradc.optimize.Flat of {self.compiled.output}: x = ({', '.join(self.wrt)}), n = {self.size}, "
                f"fixed ({', '.join(self.fixed)})>")


def _flat(compiled, fixed, where) -> Flat:
    if fixed is None:
        fixed = {}
    if not isinstance(fixed, dict):
        raise ArgumentError(f"fixed must be a dict of the non-wrt arguments by name, got {type(fixed).__name__}", where)
    return Flat(compiled, **fixed)


def minimize(compiled, x0_params: dict, fixed: dict | None = None, method: str | None = None, **kwargs):
    """``scipy.optimize.minimize`` of the scalar value of ``compiled`` over its ``wrt`` arguments.

    ``x0_params``: the starting point, one value per ``wrt`` argument (see :meth:`Flat.flatten`);
    ``fixed``: the other arguments by name. ``method`` and ``kwargs`` go to SciPy unchanged
    (``bounds``, ``callback`` and constraints act on the flat vector, :class:`Flat`'s layout).
    gradc supplies ``jac`` (one ``value_and_grad`` per point) unless the method uses no
    derivatives, ``hessp`` for newton-cg, trust-ncg, trust-krylov and trust-constr, ``hess`` for
    dogleg and trust-exact; a ``jac``, ``hess`` or ``hessp`` in ``kwargs`` replaces gradc's.

    Returns SciPy's ``OptimizeResult`` with the extra attribute ``params``: the solution
    ``res.x`` unflattened (a dict like ``x0_params``). Raises
    :class:`~gradc.errors.ArgumentError` for bad arguments and :class:`~gradc.errors.GradcError`
    if the value is an array (use :func:`least_squares`).
    """
    import scipy.optimize

    flat = _flat(compiled, fixed, "minimize")
    flat._scalar_only("minimize")
    x0 = flat.flatten(x0_params)
    name = (method or "").lower() if isinstance(method, str) else ""
    if name not in GRADIENT_FREE:
        kwargs.setdefault("jac", flat.jac)
        if "hess" not in kwargs and "hessp" not in kwargs:
            if name in USES_HESSP:
                kwargs["hessp"] = flat.hessp
            elif name in NEEDS_HESS:
                kwargs["hess"] = flat.hess
    res = scipy.optimize.minimize(flat.fun, x0, method=method, **kwargs)
    res.params = flat.unflatten(res.x)
    return res


def least_squares(compiled, x0_params: dict, fixed: dict | None = None, **kwargs):
    """``scipy.optimize.least_squares`` of the residuals (the array value of ``compiled``) over
    its ``wrt`` arguments: minimizes ``0.5 * sum(r ** 2)``.

    ``x0_params`` and ``fixed`` as for :func:`minimize`; ``kwargs`` (``method``, ``bounds`` on
    the flat vector, ``x_scale``, ...) go to SciPy unchanged; gradc supplies ``jac``, the
    ``(m, n)`` Jacobian of the generated ``jacobian`` (a ``jac`` in ``kwargs`` replaces it).

    Returns SciPy's ``OptimizeResult`` with the extra attribute ``params`` (``res.x``
    unflattened). Raises :class:`~gradc.errors.ArgumentError` for bad arguments and
    :class:`~gradc.errors.GradcError` if the value is a scalar (use :func:`minimize`).
    """
    import scipy.optimize

    flat = _flat(compiled, fixed, "least_squares")
    if not flat.residual:
        raise GradcError(f"{compiled.output} is a scalar, not an array of residuals", "least_squares",
                         "return the residual vector from the model, or use gradc.minimize for a scalar loss")
    x0 = flat.flatten(x0_params)
    kwargs.setdefault("jac", flat.jac)
    res = scipy.optimize.least_squares(flat.fun, x0, **kwargs)
    res.params = flat.unflatten(res.x)
    return res
