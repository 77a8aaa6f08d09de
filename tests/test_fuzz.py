"""Fuzzing the spec loader: the spec is untrusted input.

Any text either compiles (``pipeline.build``: frontend, passes, AD, codegen; no
Numba) or raises a :class:`gradc.GradcError` subclass with a one-line message --
never another exception, never a hang (each example must finish within
:data:`LIMIT_S`), and never runs code: an audit hook (:func:`sys.addaudithook`)
records any ``exec``/``eval``, process start or file write while a spec is
built, and generated code's top level must be inert (a docstring, two imports,
literal assignments, decorated functions).

Four generators: arbitrary text; mutations of a valid spec (inserted hostile
tokens, deletions, duplicated and swapped lines); expressions from a grammar
that mixes the language with what it forbids (attributes, lambdas,
comprehensions, f-strings, starred arguments, huge numbers, keywords, dunders,
names of the generated module such as ``np``, Unicode look-alikes); and random
TOML documents built from the spec's own keys with values of every type.

Budget: examples per test scale with the loaded Hypothesis profile (``ci`` in
tests/conftest.py: 20, so 200 here; about 20 s for the file); set
``HYPOTHESIS_PROFILE=thorough`` for a longer run.
"""
from __future__ import annotations

import string
import sys
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gradc import GradcError
from gradc.frontends.spec import MAX_SPEC_CHARS
from gradc.pipeline import build
from gradc.runtime.loader import content_status

from conftest import assert_module_inert

LIMIT_S = 10.0
FUZZ = settings(max_examples=10 * settings().max_examples, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

VALID = """\
# a small classifier
[model]
name = "fuzzed"
description = "a spec to mutate"

[inputs]
X = { shape = ["batch", 4], doc = "data" }
y = { shape = ["batch"], dtype = "int64" }
t = { shape = ["batch", 3], dtype = "float32" }

[params]
W = { shape = [4, 3], init = "glorot" }
b = { shape = [3], init = "normal", std = 0.1 }
s = { init = "constant", value = 0.5 }

[graph]
h = "tanh(X @ W + b)"
p = "where(h > 0, h, 0.1 * h)"
loss = "mean(softmax_cross_entropy(p, y)) + s * sum(W ** 2) + mean(max_pool(h, axis=1))"

[output]
value = "loss"
wrt = ["W", "b", "s"]
"""

# ------------------------------------------------------------------ the guard
_EVENTS: list = []
_WATCH = [False]
_FORBIDDEN = ("exec", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "subprocess.Popen",
              "ctypes.dlopen", "socket.connect", "shutil.rmtree", "os.remove", "os.rename")


def _audit(event, args):
    if not _WATCH[0]:
        return
    if event.startswith(_FORBIDDEN):
        _EVENTS.append((event, repr(args)[:200]))
    elif event == "open" and len(args) > 1 and isinstance(args[1], str) and set(args[1]) & set("wax+"):
        _EVENTS.append((event, repr(args)[:200]))


sys.addaudithook(_audit)           # inert outside check_build (audit hooks cannot be removed)
build(VALID)                       # load and compile the templates before watching (Jinja execs them once)


def check_build(text: str):
    """Build ``text``: success or a GradcError, quickly, and nothing executed or written."""
    _EVENTS.clear()
    start = time.perf_counter()
    _WATCH[0] = True
    try:
        art = build(text)
    except GradcError as e:
        art = None
        message = str(e)
        assert "\n" not in message and message.isprintable(), repr(message)
    except RecursionError:         # pragma: no cover - reported as a failure below
        raise AssertionError("RecursionError escaped") from None
    finally:
        _WATCH[0] = False
        elapsed = time.perf_counter() - start
    assert not _EVENTS, _EVENTS
    assert elapsed < LIMIT_S, f"build took {elapsed:.1f} s"
    if art is not None:
        assert_module_inert(art.code)
        assert content_status(art.code.encode()) == "ok"
    return art


def toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f" or 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch) if ord(ch) < 0xD800 else 0xFFFD:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def spec_with(expr: str, output: str = "sum(h)") -> str:
    head = VALID[:VALID.index("[graph]")]
    return head + f"[graph]\nh = {toml_string(expr)}\n\n[output]\nvalue = {toml_string(output)}\n"


# ------------------------------------------------------------------ 1. arbitrary text
@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text(text):
    check_build(text)               # one line without '=' is taken for a file name
    check_build(text + "\n")        # spec text


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decoded_leniently(data):
    check_build(data.decode("utf-8", errors="replace"))


# ------------------------------------------------------------------ 2. mutations of a valid spec
HOSTILE_TOKENS = ['"', "'", '"""', "'''", "\\", "\n", "\r", "\x0c", "\x00", "\u2028", "\x85", "[", "]", "{", "}",
                  "=", ",", "#", "[graph]", "[[inputs]]", "__import__('os').system('touch pwned')", "x.__class__",
                  "lambda: 1", "10**10**10", "1e400", "-" * 200, "(" * 100, "[" * 300, "ｘ", "х", "np", "numba",
                  "math", "forward", "value_and_grad", "__builtins__", "class", "dtype = \"float32\"", "init = 5",
                  "shape = []", "shape = [0]", "wrt = []", "value = 1", "9" * 40, "nan", "inf", "float32"]


@st.composite
def mutated(draw):
    text = VALID
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "dup_line", "swap_lines"]))
        lines = text.split("\n")
        if kind in ("dup_line", "swap_lines"):
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "dup_line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
            continue
        pos = draw(st.integers(0, len(text)))
        token = draw(st.one_of(st.sampled_from(HOSTILE_TOKENS), st.text(max_size=8)))
        if kind == "insert":
            text = text[:pos] + token + text[pos:]
        elif kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 40)):]
        else:
            text = text[:pos] + token + text[pos + len(token):]
    return text


@FUZZ
@given(mutated())
def test_mutated_valid_spec(text):
    check_build(text)


# ------------------------------------------------------------------ 3. expressions from a grammar
NAMES = ["X", "W", "b", "s", "y", "t", "h", "zz", "np", "numba", "math", "forward", "value_and_grad", "ARGS",
         "__import__", "__builtins__", "__class__", "None", "True", "lambda", "class", "import", "_x", "ｘ", "х",
         "Ｗ", "sum", "exp", "open", "eval"]
FUNCS = ["exp", "log", "sqrt", "sin", "tanh", "sigmoid", "relu", "abs", "maximum", "minimum", "where", "sum",
         "mean", "transpose", "pick", "softmax_cross_entropy", "mse", "leaky_relu", "elu", "softplus",
         "log_sigmoid", "maxout", "max_pool", "lp_pool", "logavg_pool", "binary_cross_entropy", "svm_hinge",
         "eval", "exec", "__import__", "getattr", "open", "np.exp", "x.__class__.__bases__", "print"]
NUMBERS = ["0", "1", "2", "0.5", "-1", "1e-4", "1e308", "1e400", "10**10**10", "2**1000000", "9" * 30,
           "0x1F", "1_000", "1j", "True", "None", "...", "'s'", "b'x'", "1e-400", "0.0", "-0.0", "2**1023",
           "exp(1000)", "(1/0)", "10**308*10"]
BINOPS = ["+", "-", "*", "/", "**", "@", "//", "%", "<<", "&", "|", "^", "<", "<=", ">", ">=", "==", "!=",
          " and ", " or ", " if 1 else ", " in ", " is "]


def expressions():
    leaf = st.one_of(st.sampled_from(NAMES), st.sampled_from(NUMBERS))

    def extend(inner):
        return st.one_of(
            st.tuples(inner, st.sampled_from(BINOPS), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
            st.tuples(st.sampled_from(["-", "+", "~", "not "]), inner).map("".join),
            inner.map(lambda e: f"({e})"),
            st.tuples(st.sampled_from(FUNCS), st.lists(inner, max_size=4),
                      st.lists(st.tuples(st.sampled_from(["axis", "slope", "k", "p", "beta", "alpha", "bogus"]),
                                         st.sampled_from(NUMBERS + ["X"])), max_size=2))
              .map(lambda t: f"{t[0]}({', '.join(t[1] + [f'{k}={v}' for k, v in t[2]])})"),
            inner.map(lambda e: f"{e}.__class__"),
            inner.map(lambda e: f"{e}[0]"),
            inner.map(lambda e: f"(lambda q: q)({e})"),
            inner.map(lambda e: f"sum([a for a in {e}])"),
            inner.map(lambda e: f"f'{{{e}}}'"),
            inner.map(lambda e: f"maximum(*{e})"),
            inner.map(lambda e: f"({e}, {e})"),
            inner.map(lambda e: f"(q := {e})"),
        )

    return st.recursive(leaf, extend, max_leaves=12)


@FUZZ
@given(expressions(), st.booleans())
def test_grammar_expressions(expr, as_output):
    check_build(spec_with(expr) if not as_output else spec_with("X", output=expr))


@FUZZ
@given(st.text(alphabet=string.printable + "ｘх\u2028\x85é", max_size=120))
def test_printable_noise_as_expression(expr):
    check_build(spec_with(expr))


# ------------------------------------------------------------------ 4. random TOML documents
SECTION_KEYS = {"model": ["name", "description", "author"], "inputs": ["X", "y", "np", "__x", "é"],
                "params": ["W", "b", "class", "forward"], "graph": ["h", "loss", "X", "value_and_grad"],
                "output": ["value", "wrt", "extra"], "optimizer": ["lr"]}
DECL_KEYS = ["shape", "dtype", "init", "std", "scale", "value", "doc", "bogus"]


def toml_values(depth=2):
    scalars = st.one_of(st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True), st.booleans(),
                        st.sampled_from(["float64", "float32", "int64", "int32", "batch", "glorot", "zeros",
                                         "normal", "sum(X)", "h", "loss", "X @ W", "__import__('os')", "", "ｘ"]),
                        st.text(max_size=12))
    if depth == 0:
        return scalars
    inner = toml_values(depth - 1)
    return st.one_of(scalars, st.lists(inner, max_size=4),
                     st.dictionaries(st.sampled_from(DECL_KEYS), inner, max_size=4))


def toml_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {toml_text(v)}" for k, v in value.items()) + " }"


@st.composite
def documents(draw):
    sections = draw(st.lists(st.sampled_from(list(SECTION_KEYS)), min_size=1, max_size=6, unique=True))
    out = []
    for sec in sections:
        out.append(f"[{sec}]")
        keys = draw(st.lists(st.sampled_from(SECTION_KEYS[sec]), max_size=4, unique=True))
        for key in keys:
            out.append(f"{key} = {toml_text(draw(toml_values()))}")
    return "\n".join(out) + "\n"


@FUZZ
@given(documents())
def test_random_toml_documents(text):
    check_build(text)


@FUZZ
@given(st.sampled_from(["sum(h)", "h", "sum(h * h)", "mean(h)"]),
       st.lists(st.sampled_from(["tanh", "sigmoid", "relu", "exp", "softplus", "abs", "sqrt", "log"]),
                min_size=1, max_size=6),
       st.sampled_from(["X", "X @ W", "X @ W + b", "t", "s * X"]))
def test_valid_compositions_compile(output, funcs, inner):
    expr = inner
    for f in funcs:
        expr = f"{f}({expr})"
    art = check_build(spec_with(expr, output))
    assume(art is not None)
    assert "def forward(" in art.code
    if output != "h":                  # (a vector-valued output has a Jacobian, not a gradient)
        assert "def value_and_grad(" in art.code


# ------------------------------------------------------------------ limits (deterministic)
@pytest.mark.parametrize("text", [
    "x = " + "[" * 100000,                                  # tomllib would recurse
    "x = " + "[" * 5000 + "]" * 5000,
    "x = " + "{a = " * 3000 + "1" + "}" * 3000,
    "a = 1\n" * (MAX_SPEC_CHARS // 6 + 1),                  # over the size limit
    spec_with("-" * 3000 + "X"),
    spec_with("(" * 300 + "X" + ")" * 300),
    spec_with("+".join(["X"] * 3000)),
    spec_with("X * 10**10**10"),
    spec_with("X * 2**1000000"),
    spec_with("X * exp(1000)"),
    spec_with("X * (1e308 * 10)"),
    spec_with("X @ W" + " @ transpose(W) @ W" * 60),
])
def test_limits_are_errors_not_hangs(text):
    start = time.perf_counter()
    assert check_build(text) is None                       # a GradcError, checked inside
    assert time.perf_counter() - start < LIMIT_S
