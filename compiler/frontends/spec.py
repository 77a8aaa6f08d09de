"""Model-spec frontend: a TOML file (parsed with :mod:`tomllib`) lowered to the primal IR.

Layout::

    [model]            name = "mlp_digits", description = "..." (optional)
    [inputs]           X = { shape = ["batch", 64] }, y = { shape = ["batch"], dtype = "int64" }
    [params]           W1 = { shape = [64, 32], init = "glorot" }   (differentiated by default)
    [graph]            h = "tanh(X @ W1 + b1)"   (named assignments; any order, no cycles)
    [output]           value = "loss", wrt = ["W1", ...] (optional; any float input or param),
                       outputs = ["scores", "probs"] (optional: graph entries forward also returns)

Shapes list ints and symbolic dimension names; dtypes are ``float64`` (default),
``float32`` or ``int64`` (class labels, inputs only). ``init`` is one of ``zeros``,
``ones``, ``constant`` (with ``value``), ``normal`` (``std``), ``uniform``
(``scale``), ``glorot``, ``he``.

The spec is untrusted: its text goes through ``tomllib`` and the expression
strings through :mod:`.exprlang` (``ast`` + whitelist) only; names that
become Python identifiers are validated with :func:`~gradc.ir.check_identifier`;
free text (``description``, ``doc``) is escaped by the code generator. The text
is at most :data:`MAX_SPEC_CHARS` characters. Every error is a :class:`SpecError`
with ``file:line:col``.
"""
from __future__ import annotations

import hashlib
import math
import re
import tomllib
import unicodedata

from ..errors import GradcError, SpecError
from ..ir import Builder, Function, Namer, Value, check_identifier
from . import Lowered
from .exprlang import ExprLowerer, _char_name, names_used

SECTIONS = ("model", "inputs", "params", "graph", "output")
INITS = {"zeros": (), "ones": (), "constant": ("value",), "normal": ("std",), "uniform": ("scale",),
         "glorot": (), "he": ()}
DTYPES = {"float64": "f64", "float32": "f32", "int64": "i64"}
FLOAT_DTYPES = ("float64", "float32")
MODEL_KEYS = ("name", "description")
#: Size limits of the untrusted text: the whole spec, a description, a doc string.
MAX_SPEC_CHARS = 65536
MAX_DESCRIPTION_CHARS = 4000
MAX_DOC_CHARS = 500


class _Places:
    """Finds the line (and the column of the value) of ``[section] key = ...`` in the raw text."""

    def __init__(self, text: str, filename: str):
        self.filename = filename
        self.lines: dict[tuple[str, str], tuple[int, int]] = {}
        self.sections: dict[str, int] = {}
        section = ""
        for n, line in enumerate(text.splitlines(), start=1):
            m = re.match(r"\s*\[\s*([A-Za-z0-9_.\-]+)\s*\]", line)
            if m:
                section = m.group(1)
                self.sections.setdefault(section, n)
                continue
            m = re.match(r"""\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*=\s*""", line)
            if m:
                key = m.group(1).strip("\"'")
                self.lines.setdefault((section, key), (n, m.end()))

    def at(self, section: str, key: str | None = None, col: int | None = None) -> str:
        if key is not None and (section, key) in self.lines:
            line, vcol = self.lines[(section, key)]
            # +1 for the opening quote of the expression string, +1 for 1-based columns
            return f"{self.filename}:{line}:{vcol + 2 + col if col is not None else vcol + 1}"
        if section in self.sections:
            return f"{self.filename}:{self.sections[section]}"
        return self.filename


def _table(doc: dict, name: str, places: _Places, required: bool = True) -> dict:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise SpecError(f"[{name}] must be a table", places.at(name))
    if required and not value:
        if name in doc:
            raise SpecError(f"the [{name}] section is empty", places.at(name),
                            "add at least one entry (see examples/mlp_digits.toml)")
        raise SpecError(f"the spec has no [{name}] section", places.filename,
                        f"add a [{name}] table (see examples/mlp_digits.toml)")
    return value


def _name(name: str, where: str, what: str) -> str:
    why = check_identifier(name)
    if why:
        hint = None
        odd = next((ch for ch in name if not " " <= ch <= "~"), None) if isinstance(name, str) else None
        if odd is not None:
            # Python folds identifiers by NFKC ('ｘ' is 'x', 'ℌ' is 'H'): a look-alike would
            # collide with, or impersonate, another name in the generated code
            folded = unicodedata.normalize("NFKC", name)
            hint = (f"{_char_name(odd)} is not ASCII"
                    + (f"; Python would read the name as {folded!r}" if folded != name and folded.isidentifier()
                       else ""))
        raise SpecError(f"{what} name {name!r} is not allowed: {why}", where, hint)
    return name


def _shape(decl, where: str, name: str) -> tuple:
    if not isinstance(decl, list):
        raise SpecError(f"shape of {name} must be a list such as [\"batch\", 64]", where)
    out = []
    for d in decl:
        if isinstance(d, bool) or not isinstance(d, (int, str)):
            raise SpecError(f"dimension {d!r} of {name} must be a positive integer or a name", where)
        if isinstance(d, int) and not 0 < d <= 2 ** 31:
            raise SpecError(f"dimension {d} of {name} must be a positive integer", where)
        if isinstance(d, str):
            _name(d, where, "dimension")
        out.append(d)
    if len(out) > 4:
        raise SpecError(f"{name} has {len(out)} dimensions; at most 4 are supported", where)
    return tuple(out)


def _declare(kind: str, table: dict, places: _Places, namer: Namer, roles: dict) -> list[Value]:
    values = []
    for name, decl in table.items():
        where = places.at(kind, name)
        _name(name, where, "input" if kind == "inputs" else "parameter")
        if name in namer.used:
            raise SpecError(f"'{name}' is declared twice", where)
        if not isinstance(decl, dict):
            raise SpecError(f"{name} must be a table such as {{ shape = [\"batch\", 64] }}", where)
        allowed = {"shape", "dtype", "doc"} | ({"init"} | {o for v in INITS.values() for o in v}
                                               if kind == "params" else set())
        extra = sorted(set(decl) - allowed)
        if extra:
            raise SpecError(f"{name} has unknown key(s) {', '.join(extra)}", where,
                            f"allowed: {', '.join(sorted(allowed))}")
        shape = _shape(decl.get("shape", []), where, name)
        dtype = decl.get("dtype", "float64")
        if not isinstance(dtype, str) or dtype not in DTYPES or (kind == "params" and dtype not in FLOAT_DTYPES):
            raise SpecError(f"dtype of {name} must be "
                            + ("float64 or float32" if kind == "params" else "float64, float32 or int64")
                            + f", not {dtype!r}"[:80], where)
        values.append(Value(namer.claim(name), DTYPES[dtype], shape))
        roles[name] = " (data)" if kind == "inputs" else " (parameter)"
        if "doc" in decl:
            roles[name] += ": " + _text(decl["doc"], where, f"doc of {name}", MAX_DOC_CHARS)
    return values


def _text(value, where: str, what: str, limit: int) -> str:
    """A free-text entry (description, doc): a string of at most ``limit`` characters.

    Any character is allowed; the code generator escapes it wherever it is written.
    """
    if not isinstance(value, str):
        raise SpecError(f"{what} must be a string", where)
    if len(value) > limit:
        raise SpecError(f"{what} is {len(value)} characters long; the limit is {limit}", where)
    return value


def _params_init(table: dict, places: _Places) -> dict:
    out = {}
    for name, decl in table.items():
        method = decl.get("init", "zeros")
        if not isinstance(method, str) or method not in INITS:
            raise SpecError(f"unknown init {method!r} for {name}", places.at("params", name),
                            "choose one of " + ", ".join(INITS))
        opts = {}
        for k in INITS[method]:
            if k in decl:
                if (isinstance(decl[k], bool) or not isinstance(decl[k], (int, float))
                        or not math.isfinite(decl[k])):
                    raise SpecError(f"{k} of {name} must be a finite number", places.at("params", name))
                opts[k] = float(decl[k])
        out[name] = (method, opts)
    return out


def _order(graph: dict, trees: dict, places: _Places) -> list[str]:
    """Graph entries in dependency order (file order where free); a cycle is an error."""
    order, state = [], {}
    for start in graph:
        stack = [(start, iter([d for d in names_used(trees[start]) if d in graph]))]
        if state.get(start) == "done":
            continue
        state[start] = "active"
        path = [start]
        while stack:
            node, deps = stack[-1]
            nxt = next(deps, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = "done"
                order.append(node)
            elif state.get(nxt) == "active":
                cycle = path[path.index(nxt):] + [nxt]
                raise SpecError(f"the graph has a cycle: {' -> '.join(cycle)}", places.at("graph", nxt),
                                "graph entries must not depend on themselves")
            elif state.get(nxt) != "done":
                state[nxt] = "active"
                path.append(nxt)
                stack.append((nxt, iter([d for d in names_used(trees[nxt]) if d in graph])))
    return order


def load_spec(text: str, filename: str = "<spec>", wrt=None) -> Lowered:
    """Parse and lower a spec; ``wrt`` (a list of names) overrides ``[output] wrt``.

    Raises :class:`SpecError` (malformed TOML or spec, with file:line:col) and
    :class:`~gradc.errors.ShapeError` (operands that do not fit an op).
    """
    if not isinstance(text, str):
        raise SpecError(f"a spec must be text, not {type(text).__name__}", filename)
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError(f"the spec is {len(text)} characters long; the limit is {MAX_SPEC_CHARS}", filename,
                        "a model spec is a few kilobytes; is this the right file?")
    places = _Places(text, filename)
    try:
        doc = tomllib.loads(text)
    except RecursionError:
        raise SpecError("malformed TOML: arrays or tables are nested too deeply", filename) from None
    except tomllib.TOMLDecodeError as e:
        # tomllib (3.11-3.13) puts the place only in the text: "... (at line 7, column 5)"
        m = re.search(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$", str(e))
        where = filename if m is None else (f"{filename}:{m.group(1)}:{m.group(2)}" if m.group(1)
                                            else f"{filename}:{max(1, len(text.splitlines()))}")
        raise SpecError(f"malformed TOML: {str(e)[:m.start()] if m else e}", where) from None
    for key in doc:
        if key not in SECTIONS:
            raise SpecError(f"unknown section [{key}]", places.at(key), "sections: " + ", ".join(SECTIONS))
    model = _table(doc, "model", places, required=False)
    extra = sorted(set(model) - set(MODEL_KEYS))
    if extra:
        raise SpecError(f"[model] has unknown key(s) {', '.join(extra)}"[:200], places.at("model", extra[0]),
                        "allowed: " + ", ".join(MODEL_KEYS))
    model_name = _name(model.get("name", "model"), places.at("model", "name"), "model")
    description = _text(model.get("description", ""), places.at("model", "description"),
                        "[model] description", MAX_DESCRIPTION_CHARS)
    inputs_t = _table(doc, "inputs", places, required=False)
    params_t = _table(doc, "params", places, required=False)
    graph = _table(doc, "graph", places)
    output = _table(doc, "output", places)

    namer, roles = Namer(), {}
    inputs = _declare("inputs", inputs_t, places, namer, roles)
    params = _declare("params", params_t, places, namer, roles)
    env = {v.name: v for v in inputs + params}
    b = Builder(namer)
    lowerer = ExprLowerer(b, env)

    def place_of(section, key):
        return lambda col: places.at(section, key, col)

    trees = {}
    for name, expr in graph.items():
        where = places.at("graph", name)
        _name(name, where, "graph entry")
        if name in env:
            raise SpecError(f"'{name}' is already declared in [inputs] or [params]", where,
                            "graph entries need new names")
        namer.claim(name)
        trees[name] = lowerer.parse(expr, place_of("graph", name))
    env_ids = {id(v) for v in env.values()}
    for name in _order(graph, trees, places):
        b.hint = name
        v = lowerer.lower(graph[name], place_of("graph", name))
        if id(v) in env_ids or id(v) in b_const_ids(b) or v.name in env:
            known = lowerer.constants.get(id(v))
            v = b.emit("alias", v, name=name + "_v")
            if known is not None:
                lowerer.constants[id(v)] = known
        v.name = name                     # the graph entry names its final SSA value
        env[name] = v
        env_ids.add(id(v))
    if "value" not in output:
        raise SpecError("[output] needs value = \"<graph entry or expression>\"", places.at("output"))
    b.hint = "out"
    out = lowerer.lower(output["value"], place_of("output", "value"))
    extra = sorted(set(output) - {"value", "wrt", "outputs"})
    if extra:
        raise SpecError(f"[output] has unknown key(s) {', '.join(extra)}", places.at("output"),
                        "allowed: value, outputs, wrt")
    outputs = [out]
    named = output.get("outputs", [])
    if not isinstance(named, list) or not all(isinstance(n, str) for n in named):
        raise SpecError("outputs must be a list of graph entry names", places.at("output", "outputs"),
                        'for example outputs = ["scores", "probs"]')
    for n in named:
        if n not in env:
            raise SpecError(f"outputs names '{n}', which is not a graph entry, input or parameter"[:200],
                            places.at("output", "outputs"), "graph entries: " + ", ".join(graph)[:200])
        if all(env[n] is not o for o in outputs):
            outputs.append(env[n])

    by_name = {v.name: v for v in inputs + params}
    wrt_names = wrt if wrt is not None else output.get("wrt", [v.name for v in params])
    if isinstance(wrt_names, str):
        wrt_names = [w.strip() for w in wrt_names.split(",") if w.strip()]
    if not isinstance(wrt_names, (list, tuple)) or not all(isinstance(w, str) for w in wrt_names):
        raise SpecError("wrt must be a list of input or parameter names", places.at("output", "wrt"),
                        'for example wrt = ["W1", "b1"]')
    wrt_vals = []
    for w in wrt_names:
        where = places.at("output", "wrt")
        if w not in by_name:
            raise SpecError(f"wrt names '{w}', which is not an input or parameter"[:200], where)
        if by_name[w] in wrt_vals:
            raise SpecError(f"wrt names '{w}' twice", where)
        if by_name[w].dtype not in ("f64", "f32"):
            raise SpecError(f"wrt names '{w}', an int64 input: labels have no gradient", where,
                            "remove it from wrt")
        wrt_vals.append(by_name[w])
    fn = Function(model_name, inputs + params, b.stmts, outputs, source_name=filename)
    lowered = Lowered(fn, wrt_vals, text, filename, model_name,
                      hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
                      _params_init(params_t, places), roles, description=description)
    return lowered


def b_const_ids(b: Builder) -> set[int]:
    """Ids of the builder's constant values."""
    return {id(c) for c in b._consts.values()}


__all__ = ["load_spec", "GradcError"]
