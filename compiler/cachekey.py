"""The warm-start index: find a cached module from the source alone, before the pipeline runs.

The cache file's own name comes from the artifact key, a hash of the lowered
source, which costs a whole pipeline run (lowering, AD, passes, rendering) to
compute. :func:`source_key` hashes what the caller passed instead (spec text, or
the SymPy expression's structural digest and the arguments, plus ``wrt``,
``name``, the options (:meth:`gradc.Options.key`), the gradc version and a fingerprint of gradc's own
code and templates, so an edited template never serves a stale module), and
the index (``<cache>/index/<key>``, one line: the module's file name and content
hash) maps it to the module :func:`gradc.compile` wrote for it. :func:`lookup`
returns that path only if the file is that very module and intact (its content
hash matches); a damaged, replaced or missing entry falls back to the full
build, which reports and rewrites it.
"""
from __future__ import annotations

import hashlib
import os
import sys
from functools import lru_cache
from pathlib import Path

from . import __version__
from .options import Options


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of the paths, sizes and modification times of gradc's Python files and templates."""
    roots = [Path(__file__).resolve().parent]
    try:
        from gradc import runtime, templates
        roots += [Path(runtime.__file__).resolve().parent, Path(templates.__file__).resolve().parent]
    except (ImportError, AttributeError, TypeError):
        pass
    h = hashlib.sha256()
    for root in roots:
        for dirpath, dirnames, files in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in sorted(files):
                if f.endswith((".py", ".j2")):
                    st = os.stat(os.path.join(dirpath, f))
                    h.update(f"{dirpath}/{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _looks_like_path(source) -> bool:
    return isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and "=" not in source)


def source_key(source, args=None, wrt=None, name=None, options: Options | None = None) -> str | None:
    """A hash of the compile request (``options``: see :meth:`gradc.Options.key`), or None when
    there is no cheap one (a mutable sympy.Matrix, an unreadable path, an unknown kind of source)."""
    parts = [__version__, code_fingerprint(), repr(name), "options:" + (options or Options()).key()]
    if _looks_like_path(source):
        try:
            parts += ["spec-file", Path(source).name, Path(source).read_text(encoding="utf-8")]
        except (OSError, ValueError):
            return None
    elif isinstance(source, str):
        parts += ["spec-text", source]
    else:
        sympy = sys.modules.get("sympy")
        if sympy is not None and isinstance(source, (tuple, list)) and source \
                and all(isinstance(e, sympy.Basic) for e in source):
            source = sympy.Tuple(*source)               # several outputs
        if sympy is None or not isinstance(source, sympy.Basic):
            return None
        from .frontends.sympy import _digest
        try:
            arg_text = [f"{type(a).__name__}:{getattr(a, 'name', a)}:{tuple(getattr(a, 'shape', ()))}"
                        for a in (args or ())]
        except TypeError:
            return None
        parts += ["sympy", _digest(source), repr(arg_text)]
    if wrt is not None:
        try:
            parts.append(repr([str(getattr(w, "name", w)) for w in wrt]))
        except TypeError:
            return None
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


def _entry(folder: Path, key: str) -> Path:
    return folder / "index" / key[:32]


def lookup(folder: Path, key: str) -> Path | None:
    """The intact cached module recorded for ``key``, or None."""
    from gradc.runtime.loader import content_status

    try:
        name, digest = _entry(folder, key).read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if "/" in name or "\\" in name or not name.endswith(".py"):
        return None
    path = folder / name
    try:
        data = path.read_bytes()
    except OSError:
        return None
    # the very module recorded (not an older build at the same path), and intact
    if _content_line(data) != digest or content_status(data) != "ok":
        return None
    return path


def _content_line(data: bytes) -> str:
    from gradc.runtime.loader import CONTENT

    line = data.split(b"\n", 2)[1] if data.count(b"\n") >= 2 else b""
    return line[len(CONTENT):].decode("ascii", "replace").strip() if line.startswith(CONTENT.encode()) else ""


def remember(folder: Path, key: str, path: Path) -> None:
    """Record that ``key`` compiles to the module at ``path`` (in ``folder``); best effort."""
    from gradc.runtime.loader import write_atomic

    try:
        digest = _content_line(Path(path).read_bytes())
        if digest:
            write_atomic(_entry(folder, key), f"{Path(path).name} {digest}\n")
    except OSError:
        pass
