"""The public API: :func:`compile`, :func:`load` and :class:`Compiled`."""
from __future__ import annotations

import builtins
import time
import types
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .errors import ArgumentError, CacheError, GradcError
from .options import Options
from .pipeline import Artifact  # noqa: F401  (build: imported when needed, see compile)


def _shape_text(shape) -> str:
    return "scalar" if not shape else "[" + ", ".join(map(str, shape)) + "]"


def _a(word) -> str:
    return f"{'an' if str(word)[:1] in 'aeiou' else 'a'} {word}"


def _got(a) -> str:
    if isinstance(a, np.ndarray):
        return f"{_a(a.dtype)} array of shape {tuple(a.shape)}"
    return _a(type(a).__name__)


class ArgumentChecker:
    """Checks one call's arguments against the module's ``ARGS``/``SHAPES``/``DTYPES``.

    Arrays must be NumPy arrays of the declared dtype and rank; a concrete
    dimension must match; a symbolic one (``"batch"``) takes its size from the
    first argument that has it and every other argument must agree. Scalars may
    be Python or NumPy numbers and are converted to the declared dtype (a float32
    scalar becomes ``np.float32``). Raises :class:`~gradc.errors.ArgumentError`
    naming the function, the argument, what was expected and what was passed.
    """

    def __init__(self, arg_names, shapes: dict, dtypes: dict):
        self.names = tuple(arg_names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.spec = tuple((n, tuple(shapes[n]), np.dtype(dtypes[n])) for n in self.names)
        # per array argument: (position, name, dtype, rank, ((axis, size), ...), ((axis, dim), ...))
        self._arrays = tuple((i, n, dt, len(sh), tuple((k, d) for k, d in enumerate(sh) if isinstance(d, int)),
                              tuple((k, d) for k, d in enumerate(sh) if not isinstance(d, int)))
                             for i, (n, sh, dt) in enumerate(self.spec) if sh)
        self._scalars = tuple((i, n, dt) for i, (n, sh, dt) in enumerate(self.spec) if not sh)

    def _fail(self, fname, message, name=None, hint=None):
        where = f"{fname}: argument '{name}'" if name else f"{fname}({', '.join(self.names)})"
        raise ArgumentError(message, where, hint)

    def __call__(self, fname: str, args: tuple, kwargs: dict) -> tuple:
        if kwargs:
            args = self._bind(fname, args, kwargs)
        if len(args) != len(self.spec):
            self._fail(fname, f"takes {len(self.spec)} argument{'s' if len(self.spec) != 1 else ''}, "
                              f"got {len(args)}", hint="pass them in the order of .arg_names")
        dims = {}
        for i, name, dtype, rank, fixed, symbolic in self._arrays:
            a = args[i]
            if a.__class__ is not np.ndarray and not isinstance(a, np.ndarray):
                self._fail(fname, f"expected {_a(dtype)} array of shape {_shape_text(self.spec[i][1])}, "
                                  f"got {_got(a)}", name, "pass a NumPy array")
            if a.dtype != dtype:
                self._fail(fname, f"expected {_a(dtype)} array, got {_got(a)}", name,
                           f"convert it with .astype(np.{dtype})")
            shape = a.shape
            if len(shape) != rank:
                self._fail(fname, f"expected shape {_shape_text(self.spec[i][1])}, got {shape}", name)
            for k, size in fixed:
                if shape[k] != size:
                    self._fail(fname, f"expected shape {_shape_text(self.spec[i][1])}, got {shape}", name)
            for k, d in symbolic:
                seen = dims.setdefault(d, shape[k])
                if seen != shape[k]:
                    first = next(n for j, n, _, _, _, sym in self._arrays for kk, dd in sym
                                 if dd == d and args[j].shape[kk] == seen)
                    self._fail(fname, f"expected shape {_shape_text(self.spec[i][1])} with {d} = {seen} "
                                      f"(from '{first}'), got {shape}", name,
                               f"every argument with the dimension {d} must have the same size there")
        out = None
        for i, name, dtype in self._scalars:
            a = args[i]
            conv = self._scalar(fname, name, dtype, a)
            if conv is not a:
                out = list(args) if out is None else out
                out[i] = conv
        return args if out is None else tuple(out)

    def _scalar(self, fname, name, dtype, a):
        if isinstance(a, np.ndarray):
            if a.ndim != 0:
                self._fail(fname, f"expected {_a(dtype)} scalar, got {_got(a)}", name)
            a = a[()]
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, float, np.integer, np.floating)):
            self._fail(fname, f"expected {_a(dtype)} scalar, got {_got(a)}", name)
        if dtype.kind == "i":
            if not isinstance(a, (int, np.integer)):
                self._fail(fname, f"expected an integer, got {a!r}", name)
            return a
        if dtype == np.float32:
            return a if type(a) is np.float32 else np.float32(a)
        return a if type(a) is float else float(a)

    def _bind(self, fname, args, kwargs) -> tuple:
        full = list(args) + [None] * (len(self.names) - len(args))
        given = [True] * len(args) + [False] * (len(self.names) - len(args))
        for k, v in kwargs.items():
            i = self.index.get(k)
            if i is None:
                self._fail(fname, f"got an unexpected keyword argument '{k}'")
            if i < len(given) and given[i]:
                self._fail(fname, f"got two values for argument '{k}'")
            full[i], given[i] = v, True
        missing = [n for n, g in zip(self.names, given) if not g]
        if missing or len(args) > len(self.names):
            self._fail(fname, f"missing argument(s) {', '.join(missing)}" if missing
                       else f"takes {len(self.names)} arguments, got {len(args)} positional")
        return tuple(full)


def _from_numba_cache(e: BaseException) -> bool:
    """True if ``e`` was raised while Numba read its on-disk cache."""
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.replace("\\", "/").endswith("numba/core/caching.py"):
            return True
        tb = tb.tb_next
    return False


def _twin(raw):
    """The Numba dispatcher behind the public call of the dispatcher ``raw``: it runs the
    specializations of ``raw`` that :meth:`Compiled._admit` gives it (those of the declared
    argument types) and never compiles one.

    ``raw`` compiles a specialization for any new argument types: given a float32 array, a
    float64 model would compute in float32. Its twin, given one, fails to dispatch (a
    ``TypeError``) and the public call takes its slow path, whose checks name the argument. Like
    gradc's checks, Numba converts a scalar to a specialization's type (an int to float64, a
    float64 to float32; also a bool, to 0 or 1). One twin per dispatcher, kept on it: a collected
    dispatcher removes its specializations from Numba's table of callable functions, and the
    twin's are those of ``raw``.
    """
    if not hasattr(raw, "overloads"):               # NUMBA_DISABLE_JIT=1: the module's functions are Python
        return raw
    twin = getattr(raw, "_gradc_twin", None)
    if twin is None:
        twin = type(raw)(raw.py_func, targetoptions=raw.targetoptions)
        twin._can_compile = False                  # (disable_compile() wants a specialization first)
        raw._gradc_twin = twin
    return twin


def _bind(fn, name: str, **names):
    """The generated function ``fn`` (a ``_call_`` function of the module) as ``name``, its
    globals ``names`` (the dispatcher it calls, ``_failed``) bound to the objects given; the
    same code, so the same explicit parameters."""
    f = types.FunctionType(fn.__code__, {"__builtins__": builtins, **names}, name, fn.__defaults__)
    f.__kwdefaults__, f.__doc__, f.__module__, f.__qualname__ = fn.__kwdefaults__, fn.__doc__, fn.__module__, name
    return f


class Compiled:
    """A loaded generated module.

    ``forward(*args) -> value`` and ``value_and_grad(*args) -> (value, grads)``: arguments in
    ``arg_names`` order or by name (``grads`` in ``wrt`` order); arrays of the declared dtype
    (any layout) and shape, a symbolic dimension (``"batch"``) of one size in all of them; scalars
    as Python or NumPy numbers (converted to the declared dtype; a bool counts as 0 or 1) or 0-d
    arrays. Anything else raises :class:`~gradc.errors.ArgumentError` naming the function, the
    argument, what it must be and what was given (a missing argument too; an unknown or repeated
    keyword is Python's ``TypeError``). They are plain functions with the model's parameters
    (the module's ``_call_forward`` and ``_call_value_and_grad``) calling the compiled code
    directly, which checks the array shapes itself; a call that fails takes the slow path
    (:meth:`_failed`), which checks every argument in Python. ``value_and_grad(*args, out=grads)``
    (or ``grads`` after the arguments) writes the array gradients into preallocated arrays (see
    :meth:`_into`).

    ``raw.forward``, ``raw.value_and_grad`` and ``raw.value_and_grad_into`` (None when no
    gradient is an array; also ``module.forward`` ...) are the Numba dispatchers. They check the
    shape of each array argument (and output array) inside the jitted code and raise
    ArgumentError (never reading out of bounds), but compile a specialization for any type Numba
    can pass: a float64 array where float32 is declared runs the code in float64
    (:func:`gradc.runtime.gradcheck` relies on it), scalars are not converted, and an array of
    another rank or a value Numba cannot type (a list) raises Numba's own error when it is typed.
    ``raw.value_and_grad_into(*args, *grad_arrays)`` returns the value (and a tuple of the
    scalar gradients, if any).

    ``source`` the emitted code; ``ir`` the printed forward and adjoint IR (None for
    :func:`load`); ``path`` the file; ``module`` the imported module; ``arg_names``, ``wrt``,
    ``shapes``, ``dtypes``, ``params`` the module's metadata.
    """

    def __init__(self, module, path: Path, artifact: Artifact | None = None):
        self.module = module
        self.path = Path(path)
        self.artifact = artifact
        #: seconds per compile stage (see :func:`compile`); empty for :func:`load`
        self.timings = dict(artifact.timings) if artifact is not None else {}
        self.arg_names = tuple(module.ARGS)
        self.wrt = tuple(module.WRT)
        self.shapes = dict(module.SHAPES)
        self.dtypes = dict(module.DTYPES)
        self.params = dict(module.PARAMS)
        self.output = module.OUTPUT
        #: what ``forward`` returns (the value first), and the derivatives the module has
        self.outputs = tuple(getattr(module, "OUTPUTS", (self.output,)))
        self.derivatives = tuple(getattr(module, "DERIVATIVES", ("grad",)))
        #: how to compile the module again with more derivatives (see :meth:`_derivative`); None for load()
        self._request = None
        self._derived: dict = {}
        into = getattr(module, "value_and_grad_into", None)      # None: no array gradient, or an older module
        self.raw = SimpleNamespace(forward=module.forward, value_and_grad=getattr(module, "value_and_grad", None),
                                   value_and_grad_into=into)
        self._check = ArgumentChecker(self.arg_names, self.shapes, self.dtypes)
        self._repaired = False
        for name in ("forward", "value_and_grad") if "grad" in self.derivatives else ("forward",):
            call = getattr(module, f"_call_{name}", None)
            setattr(self, name, _bind(call, name, **{name: _twin(getattr(module, name)),
                                                     "_failed": partial(self._failed, name)})
                    if call is not None else self._python_call(name))

    def value_and_grad(self, *args, **kwargs):
        """(Replaced by the module's call when the value has a gradient.)"""
        raise GradcError(f"{self.output} is not a float scalar: it has no gradient", "value_and_grad",
                         "use jacobian(...) or vjp(...) for the derivatives of an array output")

    # ---------------------------------------------------------------- other derivatives
    def jvp(self, *args, tangents=None, **kwargs):
        """``jvp(*args, tangents) -> (outputs, output_tangents)``: forward mode. ``tangents``: one
        per ``wrt`` argument, shaped and typed like it, as a tuple (or the tangent itself when
        there is one ``wrt`` argument), after the arguments or by keyword. The outputs and their
        tangents are single values when ``forward`` returns one output, else tuples."""
        return self._seeded("jvp", args, kwargs, tangents, "tangents")

    def vjp(self, *args, cotangents=None, **kwargs):
        """``vjp(*args, cotangents) -> (outputs, input_cotangents)``: reverse mode of the float
        outputs. ``cotangents``: one per float output, shaped like it (a tuple, or the cotangent
        itself for one output); ``input_cotangents``: a tuple, one per ``wrt`` argument
        (``Σ_k c_kᵀ ∂y_k/∂w``)."""
        return self._seeded("vjp", args, kwargs, cotangents, "cotangents")

    def hvp(self, *args, v=None, **kwargs):
        """``hvp(*args, v) -> H v``: Hessian-vector products of the scalar value by forward over
        reverse; ``v`` one array (or number) per ``wrt`` argument shaped like it (a tuple, or
        itself for one argument); the result a tuple of one ``(H v)_i`` per ``wrt`` argument."""
        return self._seeded("hvp", args, kwargs, v, "v")

    def jacobian(self, *args, **kwargs):
        """``jacobian(*args)``: the Jacobian of the value (``OUTPUT``, any float shape): a tuple
        of one array of shape ``output.shape + wrt.shape`` per ``wrt`` argument; one 2-D ``(m, n)``
        array when the value is a vector and every ``wrt`` argument a scalar. Forward or reverse
        mode by the sizes (``gradc.Options(jacobian="fwd"|"rev")`` to choose)."""
        return self._derivative("jacobian")(*args, **kwargs)

    def hessian(self, *args, **kwargs):
        """``hessian(*args)``: the Hessian of the scalar value: an ``(n, n)`` array when every
        ``wrt`` argument is a scalar, else the blocks ``H[i][j]`` (a tuple of tuples) of shape
        ``wrt_i.shape + wrt_j.shape``, as ``jax.hessian`` returns them."""
        return self._derivative("hessian")(*args, **kwargs)

    def value_grad_hessian(self, *args, **kwargs):
        """``value_grad_hessian(*args) -> (value, grads, hessian)`` in one sweep (Newton steps);
        ``hessian`` as :meth:`hessian` returns it."""
        return self._derivative("value_grad_hessian")(*args, **kwargs)

    def scipy(self, **fixed):
        """A flat view of the model for SciPy's optimizers (:class:`gradc.optimize.Flat`): the
        ``wrt`` arguments packed into one float64 vector (C order, in ``wrt`` order), the other
        arguments fixed to ``fixed`` (by name); ``fun``, ``jac``, ``fun_and_jac``, ``hess``,
        ``hessp``, and ``flatten``/``unflatten`` between a dict of arrays and the vector."""
        from .optimize import Flat
        return Flat(self, **fixed)

    def _seeded(self, kind, args, kwargs, seeds, word):
        if seeds is not None:
            kwargs[word] = seeds
        return self._derivative(kind)(*args, **kwargs)

    def _derivative(self, kind: str):
        """The public call of the derivative ``kind``: the module's, or (compiled on first use, and
        cached like every module) that of a module compiled again with ``kind`` added to
        ``Options.derivatives``."""
        call = self._derived.get(kind)
        if call is not None:
            return call
        if hasattr(self.module, kind):
            call = _DerivativeCall(self, kind, getattr(self.module, kind))
            setattr(self, kind, call)        # the public call from now on: no method in between
        elif self._request is None:
            raise GradcError(f"the module has no {kind} (it has {', '.join(self.derivatives)})", str(self.path),
                             f"compile it with --derivatives {kind} (gradc.compile(..., derivatives=[{kind!r}]))")
        else:
            source, args, wrt, name, options = self._request
            other = compile(source, args, wrt, name=name, options=options.with_(
                derivatives=options.derivatives + (kind,)))
            call = other._derivative(kind)
        self._derived[kind] = call
        return call

    def _python_call(self, name: str):
        """The public call of a module without ``_call_`` functions (written by an older gradc):
        the slow path on every call."""
        def call(*args, **kwargs):
            out = kwargs.pop("out", None) if name == "value_and_grad" and "out" not in self.arg_names else None
            return self._failed(name, None, self._check(name, args, kwargs), out)
        call.__name__ = call.__qualname__ = name
        return call

    def _failed(self, name: str, function, args: tuple, out):
        """The slow path of the public call ``name`` (``forward`` or ``value_and_grad``), taken
        when the call of the dispatcher ``function`` with ``args`` failed, or with ``out=``.

        Checks the arguments with :class:`ArgumentChecker` (its ArgumentError names what each
        argument must be; ``...`` is a missing one) and converts the scalars, then calls the raw
        dispatcher, which compiles a specialization for new layouts (and on the first call); the
        public call runs those of the declared types from then on (:meth:`_admit`). An error
        that is not the arguments' is raised again by that call. A damaged file of Numba's cache
        is removed and the code compiled again, once.
        """
        if any(a is ... for a in args):
            missing = [n for n, a in zip(self.arg_names, args) if a is ...]
            given = len(args) - len(missing)
            if missing == list(self.arg_names[given:]):
                self._check._fail(name, f"takes {len(args)} argument{'s' if len(args) != 1 else ''}, got {given}",
                                  hint="pass them in the order of .arg_names")
            self._check._fail(name, f"missing argument(s) {', '.join(missing)}")
        args = self._check(name, args, {})
        if out is not None:
            return self._into(args, out)
        result = self._run(getattr(self.raw, name), args)
        self._admit(name)
        return result

    def _run(self, raw, args: tuple):
        """``raw(*args)``; a damaged file in Numba's cache (Numba writes atomically, so only
        outside damage) is removed and the code compiled again, once per :class:`Compiled`."""
        try:
            return raw(*args)
        except Exception as e:
            if self._repaired or not _from_numba_cache(e):
                raise
            reason = f"{type(e).__name__}: {e}"
        from gradc.runtime.loader import purge_numba_cache
        self._repaired = True
        purge_numba_cache(self.path, reason=reason)
        return raw(*args)

    def _admit(self, name: str) -> None:
        """Let the public call ``name`` run every specialization of ``raw.<name>`` that takes the
        declared types (any layout): float arrays and scalars of the declared dtype. Not for a
        model with an integer scalar argument: Numba would pass a float there, rounded down."""
        raw = getattr(self.raw, name)
        twin = _twin(raw)
        for sig, cres in list(getattr(raw, "overloads", {}).items()):
            if sig not in twin.overloads and self._declared(sig):
                twin.add_overload(cres)

    def _declared(self, sig, spec=None) -> bool:
        """The specialization ``sig`` takes the declared types of ``spec`` (an ArgumentChecker's;
        default the module's arguments): float arrays of the declared dtype and rank, float scalars."""
        from numba import from_dtype, types as nt
        spec = self._check.spec if spec is None else spec
        sig = tuple(t for t in sig if not isinstance(t, nt.Omitted))     # value_and_grad's <wrt>_out=None
        return len(sig) == len(spec) and all(
            isinstance(t, nt.Array) and t.ndim == len(shape) and t.dtype == from_dtype(dtype) if shape
            else dtype.kind == "f" and t == from_dtype(dtype) for t, (_, shape, dtype) in zip(sig, spec))

    def _into(self, args: tuple, out):
        """``value_and_grad(*args, out=grads)``: ``grads`` holds one entry per ``wrt`` argument, a
        C-contiguous writeable array shaped and typed like that argument for an array argument
        (anything, e.g. None, for a scalar one), sharing no memory with any argument or with the
        others. The generated ``value_and_grad_into`` writes the gradients there (a matrix product
        writes its result there directly) and ``(value, grads)`` comes back with those very arrays
        in it (scalar gradients as numbers); a module without it (written by an older gradc) gets
        its gradients copied in. (A model with an argument named ``out`` takes it by that name:
        use ``raw.value_and_grad_into`` there.)"""
        wrt = [(self._check.index[w], w, self._check.spec[self._check.index[w]][2], bool(self.shapes[w]))
               for w in self.wrt]
        bufs = self._check_out(args, out, wrt)
        into = self.raw.value_and_grad_into
        if into is None:
            value, grads = self._run(self.raw.value_and_grad, args)
            for b, g in zip(bufs, (g for g, w in zip(grads, wrt) if w[3])):
                b[...] = g
            scalars = [g for g, w in zip(grads, wrt) if not w[3]]
        else:
            res = self._run(into, (*args, *bufs))
            value, scalars = (res[0], list(res[1])) if len(bufs) < len(wrt) else (res, [])
        it, sc = iter(bufs), iter(scalars)
        return value, tuple(next(it) if w[3] else next(sc) for w in wrt)

    def _check_out(self, args: tuple, out, wrt: list) -> list:
        where = "value_and_grad: out"
        if not isinstance(out, (tuple, list)) or len(out) != len(wrt):
            raise ArgumentError(f"out must be a tuple of {len(wrt)} gradient array(s) in the order "
                                f"of .wrt {tuple(w[1] for w in wrt)}, got {_got(out)}"
                                + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""), where)
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        bufs = []
        for (i, name, dtype, is_array), b in zip(wrt, out):
            if not is_array:
                continue
            want = args[i].shape
            if not isinstance(b, np.ndarray) or b.dtype != dtype or b.shape != want:
                raise ArgumentError(f"the gradient array for '{name}' must be {_a(dtype)} array of shape "
                                    f"{want}, got {_got(b)}", where, "np.empty_like(the argument) makes one")
            if not b.flags.c_contiguous or not b.flags.writeable:
                raise ArgumentError(f"the gradient array for '{name}' must be C-contiguous and writeable",
                                    where, "np.empty_like(the argument) makes one")
            if any(np.may_share_memory(b, a) for a in arrays) or any(np.may_share_memory(b, c) for c in bufs):
                raise ArgumentError(f"the gradient array for '{name}' shares memory with an argument "
                                    "or another gradient array", where)
            bufs.append(b)
        return bufs

    @property
    def source(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def ir(self) -> str | None:
        return self.artifact.show("adjoint") if self.artifact else None

    def init_params(self, dims: dict | None = None, seed: int = 0) -> dict:
        """Fresh parameter arrays from the spec's initialisers (see :func:`gradc.runtime.init_params`)."""
        from gradc.runtime.init import init_params
        return init_params(self, dims or {}, seed)

    def __repr__(self) -> str:
        return f"<gradc.Compiled {self.output}({', '.join(self.arg_names)}) wrt ({', '.join(self.wrt)}) at {self.path}>"


class _DerivativeCall:
    """The public call of a derivative entry point ``kind`` of a module: the arguments (by position
    or name) and, for ``jvp``/``vjp``/``hvp``, the seeds (a tuple, one per ``SEEDS[kind]``, or
    the seed itself when there is one) go straight to a twin of the dispatcher that runs only the
    specializations of the declared types (:func:`_twin`; the jitted code checks the shapes); a
    call that fails there, or by keyword, is checked by an :class:`ArgumentChecker` (whose error
    names the argument), then runs on the dispatcher itself."""

    def __init__(self, compiled: Compiled, kind: str, dispatcher):
        self.kind, self.dispatcher, self.compiled = kind, dispatcher, compiled
        seeds = getattr(compiled.module, "SEEDS", {}).get(kind, ())
        self.n_seeds = len(seeds)
        names = list(compiled.arg_names) + [n for n, _, _ in seeds]
        shapes = {**compiled.shapes, **{n: tuple(s) for n, s, _ in seeds}}
        dtypes = {**compiled.dtypes, **{n: d for n, _, d in seeds}}
        self.check = ArgumentChecker(names, shapes, dtypes)
        self.fast = _twin(dispatcher)
        self.__doc__ = getattr(dispatcher, "__doc__", None)

    #: the keyword the seeds may come by, per derivative
    SEED_KEYWORDS = {"jvp": "tangents", "vjp": "cotangents", "hvp": "v"}

    def __call__(self, *args, **kwargs):
        if self.n_seeds:
            word = self.SEED_KEYWORDS[self.kind]
            if kwargs and word in kwargs:
                seeds = kwargs.pop(word)
            elif args and len(args) + len(kwargs) == len(self.compiled.arg_names) + 1:
                *args, seeds = args
            else:
                n = len(self.compiled.arg_names)
                raise ArgumentError(f"takes the {n} arguments ({', '.join(self.compiled.arg_names)}) and then the "
                                    f"{word}, got {len(args) + len(kwargs)}", self.kind,
                                    f"pass the {word} after the arguments or as {word}=...")
            if isinstance(seeds, (tuple, list)) and (self.n_seeds > 1 or len(seeds) == 1):
                if len(seeds) != self.n_seeds:
                    raise ArgumentError(f"expected {self.n_seeds} seed(s) ({', '.join(self.check.names[-self.n_seeds:])})"
                                        f", got {len(seeds)}", self.kind)
                args = (*args, *seeds)
            else:
                args = (*args, seeds)
        if not kwargs:
            try:
                return self.fast(*args)
            except Exception:
                pass
        args = self.check(self.kind, tuple(args), kwargs)
        result = self.compiled._run(self.dispatcher, args)
        for sig, cres in list(getattr(self.dispatcher, "overloads", {}).items()):   # the fast path from now on
            if sig not in self.fast.overloads and self.compiled._declared(sig, self.check.spec):
                self.fast.add_overload(cres)
        return result


def compile(source, args=None, wrt=None, out=None, name: str | None = None, force: bool = False,
            comments: bool = True, options: Options | None = None, derivatives=None) -> Compiled:
    """Compile ``source`` to a generated module and load it.

    ``source``: a SymPy expression (then ``args``, a list of Symbols or
    MatrixSymbols, fixes the argument order), a path to a TOML spec, or spec
    text. ``wrt``: names or symbols to differentiate (default: the spec's
    params or ``[output] wrt``; all ``args`` for SymPy). ``out``: where to
    write the module (default: gradc's cache, keyed by the hash of source,
    options and gradc version). An existing ``out`` that gradc did not
    generate is not overwritten unless ``force``. ``options`` (a :class:`gradc.Options`, default
    ``Options()``): how to compile (fusion, comments, re-rolling, splitting); each option set
    has its own cache entry. ``comments=False`` (short for ``options.with_(comments=False)``)
    leaves the adjoint rules' comments out of the code. ``derivatives`` (short for
    ``options.with_(derivatives=...)``): the entry points to generate besides ``forward`` and
    ``value_and_grad`` (``jvp``, ``vjp``, ``jacobian``, ``hvp``, ``hessian``,
    ``value_grad_hessian``); the others compile on first use (:meth:`Compiled.hessian` ...).

    Raises :class:`~gradc.errors.GradcError` subclasses for bad input.
    """
    from gradc.runtime.loader import cache_dir, check_cache_entry, import_generated, is_generated, write_atomic

    from . import cachekey

    options = options or Options()
    if not comments:
        options = options.with_(comments=False)
    if derivatives is not None:
        options = options.with_(derivatives=tuple(derivatives) if not isinstance(derivatives, str)
                                else tuple(d.strip() for d in derivatives.split(",") if d.strip()))
    request = (source, args, wrt, name, options)
    clock = time.perf_counter
    t0 = clock()
    fast = cachekey.source_key(source, args, wrt, name, options) if out is None and not force else None
    if fast is not None:                           # warm start: the module is cached, skip the pipeline
        hit = cachekey.lookup(cache_dir(), fast)
        if hit is not None:
            t1 = clock()
            c = Compiled(import_generated(hit), hit)
            c.timings = {"cache lookup": t1 - t0, "import": clock() - t1}
            c._request = request
            return c
    from .pipeline import build

    art = build(source, args, wrt, name, options)
    t1 = clock()
    if out is None:
        path = cache_dir() / f"{art.lowered.model_name}_{art.key[:16]}.py"
        check_cache_entry(path, art.code)          # warns once if the entry is corrupt; rewritten below
        write_atomic(path, art.code)
        if fast is not None:
            cachekey.remember(cache_dir(), fast, path)
    else:
        path = Path(out)
        if path.exists() and not force and not is_generated(path):
            raise GradcError(f"{path} exists and was not generated by gradc",
                             hint="choose another path or pass force=True (--force)")
        write_atomic(path, art.code)
    t2 = clock()
    art.timings["write"] = t2 - t1
    module = import_generated(path)
    art.timings["import"] = clock() - t2
    c = Compiled(module, path, art)
    c._request = request
    return c


def load(path, verify: bool = True) -> Compiled:
    """Import an already generated module (``gradc compile -o`` output).

    Raises :class:`~gradc.errors.CacheError` if the file does not match its
    content hash (truncated, or edited after gradc wrote it) unless ``verify=False``.
    """
    from gradc.runtime.loader import content_status, import_generated, is_generated

    path = Path(path)
    if not is_generated(path):
        raise GradcError(f"{path} is not a module generated by gradc")
    if verify and content_status(path.read_bytes()) == "corrupt":
        raise CacheError("the module does not match its content hash: it is truncated or was edited "
                         "after gradc wrote it", str(path),
                         "compile the spec again (or gradc.load(path, verify=False) to load it anyway)")
    return Compiled(import_generated(path), path)
