"""The ``gradc`` command line: compile, show, check, explain, cache.

User errors (:class:`~gradc.errors.GradcError`) print one line to stderr and
exit with status 2; no traceback unless ``--debug`` is given (before or after
the subcommand). Output into a closed pipe (``gradc ... | head -1``) ends the
command quietly with status 141 (128 + SIGPIPE), as a Unix tool killed by
SIGPIPE reports in the shell. A slow stage shows a status line on stderr when
stderr is a terminal (not with ``-q``).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
from pathlib import Path

from . import __version__
from .ad.derivatives import KINDS
from .errors import GradcError
from .options import Options


SPEC_HELP = "the model spec: a TOML file (see 'The spec format' in the README)"
WRT_HELP = "comma-separated inputs or params to differentiate, e.g. W1,b1 (default: the spec's [output] wrt)"


def _dims(items: list[str]) -> dict[str, int]:
    dims = {}
    for item in items or []:
        name, _, size = item.partition("=")
        if not size.isdigit() or int(size) < 1:
            raise GradcError(f"--dim {item!r} must look like batch=4")
        dims[name.strip()] = int(size)
    return dims


def check_dims(dims: dict, shapes: dict, spec) -> None:
    """Every ``--dim`` name must be a symbolic dimension of the spec (``shapes``: name -> shape)."""
    known = sorted({d for shape in shapes.values() for d in shape if isinstance(d, str)})
    for name in dims:
        if name not in known:
            has = f"its symbolic dimensions are {', '.join(known)}" if known else "it has no symbolic dimensions"
            raise GradcError(f"--dim {name}: {spec} has no dimension {name!r}; {has}",
                             hint="name a dimension of the spec's shapes, or leave --dim out")


class Status:
    """A one-line status on stderr while a slow stage runs (``with status("compiling x")``), erased
    when it ends; only when stderr is a terminal and not ``-q``, so pipes and logs stay clean."""

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.on = not quiet and bool(isatty and isatty())

    @contextlib.contextmanager
    def __call__(self, text: str):
        if self.on:
            self.stream.write(f"\r\x1b[Kgradc: {text} ...")
            self.stream.flush()
        try:
            yield
        finally:
            if self.on:
                self.stream.write("\r\x1b[K")
                self.stream.flush()


def _status(a) -> Status:
    return Status(getattr(a, "quiet", False))


def _wrt(text: str | None):
    return None if text is None else [w.strip() for w in text.split(",") if w.strip()]


def _options(a) -> Options:
    """The compile options of the ``--no-comments``, ``--no-fuse``, ``--no-roll``, ``--no-split``,
    ``--derivatives`` and ``--jacobian`` flags."""
    return Options(comments=not a.no_comments, fuse=not a.no_fuse, roll=not a.no_roll, split=not a.no_split,
                   derivatives=_derivatives(a), jacobian=a.jacobian)


def _derivatives(a) -> tuple:
    """``--derivatives grad,jvp,hessian`` as a tuple (``grad`` is always there for a scalar value)."""
    return tuple(d.strip() for d in (getattr(a, "derivatives", None) or "").split(",") if d.strip())


DERIVATIVES_HELP = ("comma-separated derivatives to generate besides forward and value_and_grad: "
                    "jvp, vjp, jacobian, hvp, hessian, value_grad_hessian (e.g. --derivatives jvp,hessian)")


def derivative_flags(q) -> None:
    q.add_argument("--derivatives", metavar="LIST", help=DERIVATIVES_HELP)
    q.add_argument("--jacobian", choices=("auto", "fwd", "rev"), default="auto",
                   help="how jacobian sweeps its seeds: fwd (columns), rev (rows) or auto (the fewer; default)")


def option_flags(q) -> None:
    q.add_argument("--no-comments", action="store_true", help="leave the adjoint rules' comments out of the code")
    q.add_argument("--no-fuse", action="store_true",
                   help="no elementwise fusion: one whole-array statement per op")
    q.add_argument("--no-roll", action="store_true", help="keep long sums of like terms unrolled (no loops)")
    q.add_argument("--no-split", action="store_true", help="keep a large sum of unlike terms in one function")
    derivative_flags(q)


def cmd_compile(a) -> int:
    from .api import compile
    from gradc.runtime.loader import is_generated, write_atomic
    from .pipeline import build

    status = _status(a)
    if a.output == "-":                           # the module's text to stdout, like a compiler's -o -
        with status(f"compiling {a.spec}"):
            art = build(Path(a.spec), wrt=_wrt(a.wrt), options=_options(a))
        sys.stdout.write(art.code)
        if a.timings:
            print(timings_table(art.timings), file=sys.stderr)
        return 0
    # default: SPEC_grad.py in the current directory (as a compiler writes a.out), not beside the spec
    out = Path(a.output) if a.output else Path(Path(a.spec).stem + "_grad.py")
    if out.exists() and not a.force and not is_generated(out):
        raise GradcError(f"{out} exists and was not generated by gradc",
                         hint="choose another -o path or pass --force to overwrite it")
    if a.no_load:
        with status(f"compiling {a.spec}"):
            art = build(Path(a.spec), wrt=_wrt(a.wrt), options=_options(a))
            write_atomic(out, art.code)
        timings = art.timings
    else:
        with status(f"compiling {a.spec} (lowering, AD, code generation)"):
            c = compile(Path(a.spec), wrt=_wrt(a.wrt), out=out, force=a.force, options=_options(a))
        timings = c.timings
        if a.timings:
            with status("Numba is compiling value_and_grad and forward"):
                timings.update(first_call_timings(c, a.batch))
    print(f"wrote {out}")
    if a.timings:
        print(timings_table(timings))
    return 0


#: first-call stages in the order they run, with their labels in ``--timings``
STAGES = {"frontend": "frontend (parse, lower to IR)", "passes": "IR passes (fold, CSE, DCE, re-roll)",
          "ad": "reverse-mode AD", "render": "code generation (templates)", "write": "write module",
          "cache lookup": "cache lookup", "import": "import module (imports Numba)",
          "value_and_grad": "first value_and_grad call (Numba compile or cache load)",
          "forward": "first forward call (Numba compile or cache load)"}


def first_call_timings(c, batch: int = 3, seed: int = 0) -> dict:
    """Seconds of the first ``value_and_grad`` and ``forward`` calls of ``c`` on random
    arguments (every symbolic dimension ``batch``): Numba's compile, or its cache load."""
    import time

    from gradc.runtime import random_arguments

    dims = {d: batch for v in c.shapes.values() for d in v if isinstance(d, str)}
    args = random_arguments(c, dims, seed)
    out = {}
    for fname in ("value_and_grad", "forward"):
        t0 = time.perf_counter()
        getattr(c, fname)(*args)
        out[fname] = time.perf_counter() - t0
    return out


def timings_table(timings: dict) -> str:
    """The ``--timings`` table: one row per stage, then the total."""
    rows = [(STAGES.get(k, k), v) for k, v in sorted(timings.items(), key=lambda kv: list(STAGES).index(kv[0])
                                                     if kv[0] in STAGES else len(STAGES))]
    rows.append(("total", sum(timings.values())))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'stage':<{width}}  seconds"] + [f"{label:<{width}}  {sec:7.3f}" for label, sec in rows]
    return "\n".join(lines)


def _backprop(a):
    from .explain import backprop

    with _status(a)(f"tracing {a.spec} at a point"):
        return backprop(Path(a.spec), a.at, wrt=_wrt(a.wrt), dims=_dims(a.dim), batch=a.batch, seed=a.seed)


def cmd_show(a) -> int:
    from .explain import IMAGE_FORMATS, graph_dot, write_graph
    from .pipeline import build

    out = Path(a.output) if a.output else None
    if a.stage == "graph":
        text = graph_dot(_backprop(a), a.digits)
    else:
        if out is not None and out.suffix.lower().lstrip(".") in IMAGE_FORMATS:
            raise GradcError(f"only --stage graph can be rendered to {out.suffix}")
        options = _options(a)
        if a.stage in KINDS and a.stage not in options.derivatives:      # the IR of one derivative
            options = options.with_(derivatives=options.derivatives + (a.stage,))
        with _status(a)(f"compiling {a.spec}"):
            art = build(Path(a.spec), wrt=_wrt(a.wrt), options=options)
        text = art.show(a.stage).rstrip("\n") + "\n"
    if out is None:
        sys.stdout.write(text)
        return 0
    if a.stage == "graph":
        write_graph(text, out)
    else:
        from gradc.runtime.loader import write_atomic
        write_atomic(out, text)
    print(f"wrote {out}")
    return 0


def cmd_explain(a) -> int:
    from .explain import explain_table

    import shutil

    width = a.width
    if width is None:                   # the terminal's width; unlimited into a pipe or file
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 0
    print(explain_table(_backprop(a), a.digits, width=width))
    return 0


def cmd_check(a) -> int:
    from .api import compile
    from gradc.runtime import gradcheck, init_params, random_arguments
    from gradc.runtime.check import GradcheckReport, derivcheck

    if a.batch < 1:
        raise GradcError(f"--batch {a.batch} must be at least 1")
    status = _status(a)
    given = _dims(a.dim)
    with status(f"compiling {a.spec}"):
        c = compile(Path(a.spec), wrt=_wrt(a.wrt), derivatives=_derivatives(a), options=Options(jacobian=a.jacobian))
    check_dims(given, c.shapes, a.spec)
    if a.tol is None:                 # float32 gradients carry float32 round-off (about 1e-7 relative)
        a.tol = 1e-3 if any(c.dtypes[w] == "float32" for w in c.wrt) else 1e-5
    dims = {d: a.batch for v in c.shapes.values() for d in v if isinstance(d, str)}
    dims.update(given)
    args = random_arguments(c, dims, a.seed)
    params = init_params(c, dims, a.seed)
    args = [params.get(n, x) if c.params.get(n, ("zeros",))[0] != "zeros" else x
            for n, x in zip(c.arg_names, args)]
    shown = ", ".join(f"{k}={v}" for k, v in dims.items()) or "no symbolic dims"
    report = GradcheckReport()
    if "grad" in c.derivatives:
        with status("checking the gradient (the first call compiles with Numba; cached afterwards)"):
            report = gradcheck(c, *args, seed=a.seed)
        print(f"gradcheck of {a.spec} ({shown}, seed {a.seed}): central differences vs value_and_grad")
        print(report)
    others = [d for d in c.derivatives if d != "grad"]
    if others:
        with status(f"checking {', '.join(others)} (the first calls compile with Numba)"):
            more = derivcheck(c, *args, kinds=others, seed=a.seed)
        print(f"derivatives of {a.spec} ({shown}, seed {a.seed}): central differences of forward and "
              f"value_and_grad vs {', '.join(others)}")
        print(more)
        report.update(more)
    ok = report.worst <= a.tol
    print(f"{'OK' if ok else 'FAILED'}: worst relative error {report.worst:.2e} (tolerance {a.tol:.0e})")
    return 0 if ok else 1


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def cmd_cache(a) -> int:
    from gradc.runtime.loader import cache_dir, cache_info, clear_cache

    if a.action == "dir":
        print(cache_dir())
    elif a.action == "info":
        info = cache_info()
        print(f"cache: {info['dir']}")
        print(f"modules: {len(info['entries'])}, {_size(info['bytes'])} with Numba's machine code")
        for p in info["corrupt"]:
            print(f"corrupt: {p.name} (does not match its content hash; rebuilt on the next compile)")
        if info["temp_files"]:
            print(f"leftover temporary files: {len(info['temp_files'])} (gradc cache clear removes them)")
    else:
        removed, freed = clear_cache()
        print(f"removed {removed} module{'s' if removed != 1 else ''} ({_size(freed)}) from {cache_dir()}")
    return 0


def cmd_train(a) -> int:
    from .distributed import cmd_train as run
    return run(a)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradc", description="Compile model specs to fused Numba value-and-gradient code.")
    p.add_argument("--version", action="version", version=f"gradc {__version__}")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    p.add_argument("-q", "--quiet", action="store_true", help="no status line on stderr during slow stages")
    sub = p.add_subparsers(dest="command", required=True)
    # --debug and -q also after the subcommand; SUPPRESS keeps the subparser from resetting the flag
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no status line on stderr during slow stages (shown only on a terminal)")
    _add_parser = sub.add_parser
    sub.add_parser = lambda *args, **kw: _add_parser(*args, parents=[common], **kw)

    c = sub.add_parser("compile", help="write the generated module")
    c.add_argument("spec", help=SPEC_HELP)
    c.add_argument("-o", "--output", metavar="FILE",
                   help="output .py file, or - for stdout (default: SPEC_grad.py in the current directory)")
    c.add_argument("--wrt", help=WRT_HELP)
    c.add_argument("--force", action="store_true", help="overwrite an existing file gradc did not generate")
    c.add_argument("--no-load", action="store_true", help="only write the file; do not import it (no Numba)")
    option_flags(c)
    c.add_argument("--timings", action="store_true",
                   help="print the time of each stage, up to the first value_and_grad and forward calls "
                        "(Numba's compile) on random arguments")
    c.add_argument("--batch", type=int, default=3, help="with --timings: size of every symbolic dimension")
    c.set_defaults(run=cmd_compile)

    def point_options(q):
        # nargs="?": a spec after --at's values is taken from them (see _spec_after_at)
        q.add_argument("spec", nargs="?", help=SPEC_HELP)
        q.add_argument("--wrt", help=WRT_HELP)
        q.add_argument("--at", nargs="+", action="extend", default=[], metavar="NAME=VALUE",
                       help="argument values, e.g. --at x=-2 y=5 or --at x=-2 --at W=[[0.1,0.5],[-0.3,0.8]] "
                            "(repeatable; the others are random)")
        q.add_argument("--batch", type=int, default=3, help="size of every symbolic dimension (default 3)")
        q.add_argument("--dim", action="append", metavar="NAME=N",
                       help="size of one symbolic dimension (repeatable; default: --batch)")
        q.add_argument("--seed", type=int, default=0,
                       help="seed of the random argument values (default 0)")
        q.add_argument("--digits", type=int, default=3, choices=range(0, 16), metavar="N",
                       help="decimals shown (default 3)")

    s = sub.add_parser("show", help="print one stage: the IR, the adjoint IR, the generated code or the graph")
    s.add_argument("--stage", choices=("ir", "adjoint", "code", "graph") + KINDS, default="ir",
                   help="ir: the optimized forward IR (the default); adjoint: forward + adjoint IR; code: the "
                        "generated module (with --derivatives: theirs too); graph: Graphviz DOT of the "
                        "computational graph with values and gradients; jvp, vjp, jacobian, hvp, hessian, "
                        "value_grad_hessian: the IR of that derivative")
    s.add_argument("-o", "--output", metavar="FILE",
                   help="write to this file (graph: .svg/.png/.pdf run Graphviz's dot; default: stdout)")
    option_flags(s)
    point_options(s)
    s.set_defaults(run=cmd_show)

    e = sub.add_parser("explain", help="print the backprop table at a point: values, local and upstream gradients")
    point_options(e)
    e.add_argument("--width", type=int, metavar="N",
                   help="wrap the table's columns to N characters, 0 for no limit "
                        "(default: the terminal's width; no limit into a pipe or file)")
    e.set_defaults(run=cmd_explain)

    k = sub.add_parser("check", help="compare the gradient with finite differences at a random point")
    k.add_argument("spec", help=SPEC_HELP)
    k.add_argument("--batch", type=int, default=3, help="size of every symbolic dimension (default 3)")
    k.add_argument("--dim", action="append", metavar="NAME=N",
                   help="size of one symbolic dimension (repeatable; default: --batch)")
    k.add_argument("--seed", type=int, default=0, help="seed of the random point (default 0)")
    k.add_argument("--tol", type=float, default=None,
                   help="largest relative error accepted (default 1e-5; 1e-3 for float32 gradients)")
    k.add_argument("--wrt", help=WRT_HELP)
    derivative_flags(k)
    k.set_defaults(run=cmd_check)

    m = sub.add_parser("cache", help="the cache of generated modules: where it is, what it holds, clear it")
    m.add_argument("action", choices=("dir", "info", "clear"),
                   help="dir: print the folder; info: count and size, corrupt entries; clear: delete "
                        "gradc's modules and Numba's machine code for them (other files stay)")
    m.set_defaults(run=cmd_cache)

    t = sub.add_parser("train", help="train a spec on a .npz data file, on a Dask cluster (gradc[distributed]) "
                                     "or, with --workers 1, in this process")
    from .distributed import train_arguments   # imports neither dask nor distributed
    train_arguments(t)
    t.set_defaults(run=cmd_train)
    p.subcommands = sub.choices
    return p


def _spec_after_at(p: argparse.ArgumentParser, args) -> None:
    """``--at x=1 y=2 SPEC`` reads SPEC as one more value of ``--at`` (argparse's ``nargs="+"`` is
    greedy): take it back, as the one value without ``=``. ``SPEC --at ...``, ``--at x=1 -- SPEC``
    and repeated ``--at`` need nothing."""
    if not hasattr(args, "at") or args.spec is not None:
        return
    plain = [item for item in args.at if "=" not in item]
    if len(plain) != 1:
        p.subcommands[args.command].error("the following arguments are required: spec" if not plain else
                                          f"--at takes NAME=VALUE items; which of {', '.join(plain)} is the spec?")
    args.spec = plain[0]
    args.at.remove(plain[0])


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null, so that Python's flush at exit is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass          # stdout without a file descriptor (redirected in-process): nothing to flush


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    _spec_after_at(p, args)
    try:
        code = args.run(args)
        sys.stdout.flush()                 # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:                # `gradc ... | head -1`: the reader is gone; stop quietly
        _quiet_stdout()
        return 128 + getattr(signal, "SIGPIPE", 13)
    except GradcError as e:
        if args.debug:
            traceback.print_exc()
        print(f"gradc: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if args.debug:
            traceback.print_exc()
        print(f"gradc: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
