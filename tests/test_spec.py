"""The TOML spec loader: good specs, and bad input rejected with a precise message.

Every error test checks the exception type, that the message names the place
(``bad.toml:LINE`` and, for expressions, the column) and that it says what is
wrong. Spec files are written to ``tmp_path`` so the file name appears.
Nothing here needs Numba except the one good spec that is evaluated.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import gradc
from gradc import GradcError, ShapeError, SpecError
from gradc.pipeline import build

from conftest import compiled

# line numbers below refer to this layout
GOOD_HEAD = """\
[model]
name = "m"

[inputs]
x = { shape = ["batch", 3] }
y = { shape = ["batch"], dtype = "int64" }

[params]
W = { shape = [3, 2], init = "glorot" }
"""
# line 10 is blank, [graph] is line 11, h is line 12


def spec_with(expr: str, extra_graph: str = "", output: str = 'value = "sum(h)"') -> str:
    return GOOD_HEAD + f"\n[graph]\nh = \"{expr}\"\n{extra_graph}\n[output]\n{output}\n"


def write(tmp_path, text, name="bad.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def fails(tmp_path, text, exc=SpecError, name="bad.toml"):
    """Build the spec from a file; return the error message (which must be one line)."""
    path = write(tmp_path, text, name)
    with pytest.raises(exc) as info:
        build(path)
    assert isinstance(info.value, GradcError)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_good_spec_places_statements_at_their_source(tmp_path):
    """A valid spec_with() builds, and h (line 12, expression at column 6) is located there."""
    art = build(write(tmp_path, spec_with("tanh(x @ W)"), "ok.toml"))
    lines = art.show("ir").splitlines()
    tanh = next(line for line in lines if "= tanh " in line)
    matmul = next(line for line in lines if "= matmul %x, %W" in line)
    assert tanh.startswith("  %h:f64[batch,2] = tanh %") and tanh.endswith("ok.toml:12:6")
    assert matmul.endswith("ok.toml:12:11")


# ------------------------------------------------------------------ malformed input
def test_malformed_toml_names_file_and_line(tmp_path):
    text = GOOD_HEAD.replace('W = { shape = [3, 2], init = "glorot" }', 'W = { shape = [3, 2], init = "glorot" ')
    msg = fails(tmp_path, text)
    assert re.match(r"bad\.toml:9(:\d+)?: malformed TOML", msg), msg
    assert "inline table" in msg.lower()


def test_malformed_toml_unterminated_string(tmp_path):
    msg = fails(tmp_path, spec_with("x") + 'extra = "oops\n', name="strings.toml")
    assert msg.startswith("strings.toml:")
    assert re.match(r"strings\.toml:\d+", msg)
    assert "malformed TOML" in msg and "string" in msg.lower()


def test_duplicate_key_is_malformed_toml(tmp_path):
    msg = fails(tmp_path, spec_with("x", extra_graph='h = "x + 1"'))
    assert re.match(r"bad\.toml:13(:\d+)?: malformed TOML", msg), msg


def test_unknown_function(tmp_path):
    msg = fails(tmp_path, spec_with("tanh(foo(x))"))
    assert msg.startswith("bad.toml:12:11: "), msg
    assert "unknown function 'foo'" in msg


def test_unknown_function_suggests_close_name(tmp_path):
    msg = fails(tmp_path, spec_with("sigmod(x)"))
    assert msg.startswith("bad.toml:12:6: ")
    assert "unknown function 'sigmod'" in msg and "did you mean 'sigmoid'" in msg


def test_undefined_name(tmp_path):
    msg = fails(tmp_path, spec_with("x + zz"))
    assert msg.startswith("bad.toml:12:10: "), msg
    assert "undefined name 'zz'" in msg


def test_undefined_name_in_output_value(tmp_path):
    msg = fails(tmp_path, spec_with("x", output='value = "sum(q)"'))
    assert re.match(r"bad\.toml:15:\d+: undefined name 'q'", msg), msg


def test_cycle(tmp_path):
    msg = fails(tmp_path, spec_with("a", extra_graph='a = "b + 1"\nb = "a + 1"'))
    assert re.match(r"bad\.toml:1[34]:\d+: ", msg), msg
    assert "cycle" in msg and ("a -> b -> a" in msg or "b -> a -> b" in msg)


def test_self_reference_is_a_cycle(tmp_path):
    msg = fails(tmp_path, spec_with("x", extra_graph='a = "a * 2"'))
    assert re.match(r"bad\.toml:13:\d+: ", msg), msg
    assert "cycle: a -> a" in msg


def test_matmul_shape_mismatch(tmp_path):
    msg = fails(tmp_path, spec_with("x @ transpose(W)"), exc=ShapeError)
    assert msg.startswith("bad.toml:12:6: "), msg
    assert "matmul" in msg and "inner dimensions differ" in msg and "3 vs 2" in msg


def test_elementwise_broadcast_mismatch(tmp_path):
    msg = fails(tmp_path, spec_with("(x @ W) + x"), exc=ShapeError)
    assert msg.startswith("bad.toml:12:"), msg
    assert "do not broadcast" in msg and "'x @ W' (float64 [batch, 2])" in msg and "'x' (float64 [batch, 3])" in msg
    assert "%" not in msg                   # the user's expressions, not the IR's temporaries


def test_int_labels_in_arithmetic(tmp_path):
    msg = fails(tmp_path, spec_with("x * y"), exc=ShapeError)
    assert msg.startswith("bad.toml:12:"), msg
    assert "must be float64" in msg


def test_non_scalar_output_compiles_without_a_gradient_and_a_hessian_of_it_names_the_place(tmp_path):
    """An array value has a forward pass (and Jacobians) but no gradient: asking for its Hessian
    names the spec's place of the value and says what to do."""
    art = build(write(tmp_path, spec_with("x", output='value = "h"')))
    assert art.full is None and "def forward(" in art.code and "def value_and_grad(" not in art.code
    with pytest.raises(ShapeError) as info:
        build(write(tmp_path, spec_with("x", output='value = "h"')), options=gradc.Options(derivatives=("hessian",)))
    msg = str(info.value)
    assert msg.startswith("bad.toml:"), msg
    assert "scalar" in msg and "float64 array" in msg and "jacobian" in msg


# ------------------------------------------------------------------ untrusted expressions
def test_import_payload_is_rejected_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, spec_with("__import__('os').system('touch pwned')"))
    with pytest.raises(SpecError) as info:
        gradc.compile(path, out=tmp_path / "out.py")
    assert str(info.value).startswith("bad.toml:12:")
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "out.py").exists()
    with pytest.raises(SpecError):
        build(path)
    assert not (tmp_path / "pwned").exists()


def test_payload_in_output_value_is_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    msg = fails(tmp_path, spec_with("x", output="value = \"__import__('os').system('touch pwned')\""))
    assert msg.startswith("bad.toml:15:")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("expr, col, what", [
    ("x.__class__", 6, "attribute access"),
    ("sum(x).real", 6, "attribute access"),
    ("lambda: x", 6, "lambda"),
    ("(lambda q: q)(x)", 6, "lambda"),
    ("sum([a for a in x])", 10, "comprehension"),
    ("sum(a for a in x)", 9, "generator"),
    ("f'{x}'", 6, "f-string"),
    ("maximum(*x)", 14, "starred"),
    ("x[0]", 6, "indexing"),
    ("x[:, 0]", 6, "indexing"),
    ("x if x > 0 else 0", 6, "'x if c else y'"),
    ("x > 0 and x < 1", 6, "'and'/'or'"),
    ("'text'", 6, "only numbers"),
    ("sum(x, axis='0')", 18, "axis= must be an integer"),
    ("sum(x, keepdims=1)", 6, "no keyword argument 'keepdims'"),
    ("exp(x, x)", 6, "takes 1 argument"),
    ("x // 2", 6, "not allowed"),
    ("0 < x < 1", 6, "only one comparison"),
    ("x == 1", 6, "only one comparison"),
    ("sum(x) +", 6, "syntax error"),
])
def test_disallowed_constructs(tmp_path, expr, col, what):
    msg = fails(tmp_path, spec_with(expr.replace('"', "'")))
    assert msg.startswith(f"bad.toml:12:{col}: "), msg
    assert what in msg


@pytest.mark.parametrize("section, name", [
    ("inputs", "lambda"), ("inputs", "class"), ("inputs", "__x"), ("inputs", "_x"),
    ("params", "lambda"), ("params", "class"), ("params", "__W"),
    ("graph", "lambda"), ("graph", "class"), ("graph", "__h"), ("graph", "__builtins__"),
    ("inputs", "np"), ("params", "numba"), ("graph", "value_and_grad"), ("graph", "forward"),
    ("inputs", "ARGS"), ("params", "x-y"), ("inputs", "é"), ("params", "math"), ("graph", "np"),
    ("inputs", "match"), ("graph", "None"), ("params", "__init__"), ("inputs", "CLASSES"),
    ("params", "value_and_grad_into"),
])
def test_bad_names(tmp_path, section, name):
    key = f'"{name}"' if not re.match(r"[A-Za-z0-9_]+\Z", name) else name
    if section == "inputs":
        text = GOOD_HEAD.replace("x = {", f"{key} = {{") + '\n[graph]\nh = "W"\n'
        line = 5
    elif section == "params":
        text = GOOD_HEAD.replace("W = {", f"{key} = {{") + '\n[graph]\nh = "x"\n'
        line = 9
    else:
        text = GOOD_HEAD + f'\n[graph]\n{key} = "x"\nh = "x"\n'
        line = 12
    text += '\n[output]\nvalue = "sum(h)"\n'
    msg = fails(tmp_path, text)
    assert re.match(rf"bad\.toml:{line}:\d+: ", msg), msg
    assert repr(name) in msg and "not allowed" in msg
    assert ("keyword" in msg) == (name in ("lambda", "class", "match", "None"))
    if name in ("np", "numba", "math", "value_and_grad", "forward", "ARGS", "CLASSES", "value_and_grad_into"):
        assert "reserved" in msg


def test_wrt_naming_int64_input(tmp_path):
    msg = fails(tmp_path, spec_with("x @ W", output='value = "sum(h)"\nwrt = ["W", "y"]'))
    assert msg.startswith("bad.toml:16:"), msg
    assert "'y'" in msg and "int64" in msg


def test_wrt_override_naming_int64_input(tmp_path):
    path = write(tmp_path, spec_with("x @ W"))
    with pytest.raises(SpecError, match=r"^bad\.toml:\d+: wrt names 'y', an int64 input"):
        build(path, wrt=["y"])


def test_wrt_naming_unknown(tmp_path):
    msg = fails(tmp_path, spec_with("x @ W", output='value = "sum(h)"\nwrt = ["V"]'))
    assert msg.startswith("bad.toml:16:") and "'V'" in msg and "not an input or parameter" in msg


def test_unknown_init(tmp_path):
    msg = fails(tmp_path, GOOD_HEAD.replace('init = "glorot"', 'init = "xavier"')
                + '\n[graph]\nh = "x @ W"\n\n[output]\nvalue = "sum(h)"\n')
    assert msg.startswith("bad.toml:9:"), msg
    assert "unknown init 'xavier'" in msg and "glorot" in msg


def test_unknown_section(tmp_path):
    msg = fails(tmp_path, spec_with("x @ W") + "\n[optimizer]\nlr = 0.1\n")
    assert msg.startswith("bad.toml:17: "), msg
    assert "unknown section [optimizer]" in msg


def test_unknown_key_in_declaration(tmp_path):
    msg = fails(tmp_path, GOOD_HEAD.replace('shape = ["batch", 3]', 'shape = ["batch", 3], dtyp = "int64"')
                + '\n[graph]\nh = "x @ W"\n\n[output]\nvalue = "sum(h)"\n')
    assert msg.startswith("bad.toml:5:"), msg
    assert "unknown key(s) dtyp" in msg


def test_bad_dtype_and_shape(tmp_path):
    msg = fails(tmp_path, GOOD_HEAD.replace('dtype = "int64"', 'dtype = "int32"') + '\n[graph]\nh = "x"\n'
                + '\n[output]\nvalue = "sum(h)"\n')
    assert msg.startswith("bad.toml:6:") and "int32" in msg
    msg = fails(tmp_path, GOOD_HEAD.replace("[3, 2]", "[3, 0]") + '\n[graph]\nh = "x"\n'
                + '\n[output]\nvalue = "sum(h)"\n')
    assert msg.startswith("bad.toml:9:") and "positive integer" in msg


def test_missing_output(tmp_path):
    msg = fails(tmp_path, GOOD_HEAD + '\n[graph]\nh = "x @ W"\n')
    assert msg.startswith("bad.toml: "), msg
    assert "no [output] section" in msg


def test_missing_output_value(tmp_path):
    msg = fails(tmp_path, spec_with("x @ W", output='wrt = ["W"]'))
    assert msg.startswith("bad.toml:14"), msg
    assert "value" in msg


def test_graph_entry_shadowing_an_input(tmp_path):
    msg = fails(tmp_path, spec_with("x", extra_graph='x = "W"'))
    assert msg.startswith("bad.toml:13:") and "'x' is already declared" in msg


def test_name_declared_as_input_and_param(tmp_path):
    msg = fails(tmp_path, GOOD_HEAD + 'x = { shape = [3] }\n\n[graph]\nh = "x"\n\n[output]\nvalue = "sum(h)"\n')
    assert re.match(r"bad\.toml:\d+:\d+: 'x' is declared twice", msg), msg


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match=r"nope\.toml.*(does not exist|No such file)"):
        build(tmp_path / "nope.toml")


def test_spec_text_errors_use_placeholder_name():
    with pytest.raises(SpecError, match=r"^<spec>:12:6: unknown function 'foo'"):
        build(spec_with("foo(x)"))


# ------------------------------------------------------------------ good specs
OUT_OF_ORDER = """\
[output]
value = "loss"

[graph]
loss = "mean(softmax_cross_entropy(scores, y)) + 0.5 * sum(W * W)"
scores = "h @ W2"
h = "tanh(x @ W)"

[params]
W2 = { shape = [2, 4] }
W = { shape = [3, 2] }

[inputs]
y = { shape = ["batch"], dtype = "int64" }
x = { shape = ["batch", 3] }
"""


def test_out_of_order_spec_is_topologically_ordered(tmp_path):
    path = write(tmp_path, OUT_OF_ORDER, "order.toml")
    art = build(path)
    # inputs come first, then params, each in file order
    assert [v.name for v in art.primal.inputs] == ["y", "x", "W2", "W"]
    assert [v.name for v in art.lowered.wrt] == ["W2", "W"]
    defined = {v.name for v in art.primal.inputs}
    for s in art.primal.stmts:
        assert all(a.name in defined for a in s.args), s
        defined.add(s.out.name)
    order = [s.out.name for s in art.primal.stmts]
    assert order.index("h") < order.index("scores") < order.index("loss")
    assert "order.toml:7:" in art.show("ir")

    def ref(y, x, W2, W):
        s = np.tanh(x @ W) @ W2
        m = s.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(s - m).sum(axis=1))
        return np.mean(lse - s[np.arange(len(y)), y]) + 0.5 * np.sum(W * W)

    c = compiled(OUT_OF_ORDER)
    assert c.arg_names == ("y", "x", "W2", "W")
    rng = np.random.default_rng(3)
    args = [rng.integers(0, 4, 5).astype(np.int64), rng.standard_normal((5, 3)),
            rng.standard_normal((2, 4)), rng.standard_normal((3, 2))]
    value, (gW2, gW) = c.value_and_grad(*args)
    np.testing.assert_allclose(value, ref(*args), rtol=1e-12)
    for i, g in ((2, gW2), (3, gW)):
        fd = np.zeros_like(args[i])
        for idx in np.ndindex(fd.shape):
            hi, lo = [a.copy() if k == i else a for k, a in enumerate(args)], \
                     [a.copy() if k == i else a for k, a in enumerate(args)]
            hi[i][idx] += 1e-6
            lo[i][idx] -= 1e-6
            fd[idx] = (ref(*hi) - ref(*lo)) / 2e-6
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_graph_chain_declared_backwards(tmp_path):
    text = GOOD_HEAD + '\n[graph]\nd = "c * 2"\nc = "b + 1"\nb = "a - 3"\na = "sum(x)"\n\n[output]\nvalue = "d"\n'
    art = build(write(tmp_path, text, "chain.toml"))
    names = [s.out.name for s in art.primal.stmts]
    assert names.index("a") < names.index("b") < names.index("c") < names.index("d")


def test_wrt_defaults_to_params_and_spec_wrt_and_override(tmp_path):
    path = write(tmp_path, spec_with("x @ W", output='value = "sum(h)"'), "ok.toml")
    assert [v.name for v in build(path).lowered.wrt] == ["W"]
    assert [v.name for v in build(path, wrt=["x", "W"]).lowered.wrt] == ["x", "W"]
    path = write(tmp_path, spec_with("x @ W", output='value = "sum(h)"\nwrt = ["x"]'), "ok2.toml")
    assert [v.name for v in build(path).lowered.wrt] == ["x"]


def test_comments_and_description_are_accepted(tmp_path):
    text = ('# a comment\n[model]\nname = "c"\ndescription = "doc"\n\n[inputs]\n'
            'x = { shape = [2], doc = "a vector" }  # trailing\n\n[graph]\nh = "  exp(x)  "\n\n'
            '[output]\nvalue = "sum(h)"\nwrt = ["x"]\n')
    art = build(write(tmp_path, text, "c.toml"))
    assert "exp" in art.show("ir")
    assert "c.toml:10:8" in art.show("ir")


# ------------------------------------------------------------------ wrong value types
@pytest.mark.parametrize("old, new, line, what", [
    ('init = "glorot"', 'init = ["glorot"]', 9, "unknown init ['glorot']"),
    ('init = "glorot"', "init = { a = 1 }", 9, "unknown init"),
    ('init = "glorot"', 'init = "normal", std = inf', 9, "std of W must be a finite number"),
    ('init = "glorot"', 'init = "uniform", scale = nan', 9, "scale of W must be a finite number"),
    ('init = "glorot"', 'init = "normal", std = "big"', 9, "std of W must be a finite number"),
    ('dtype = "int64"', 'dtype = ["int64"]', 6, "dtype of y must be float64, float32 or int64"),
    ('shape = ["batch", 3]', 'shape = "batch"', 5, "must be a list"),
    ('shape = ["batch", 3]', 'shape = [["batch"], 3]', 5, "must be a positive integer or a name"),
    ('shape = ["batch", 3]', "shape = [true, 3]", 5, "must be a positive integer or a name"),
    ('shape = ["batch", 3]', 'shape = ["batch", "__d"]', 5, "dimension name '__d' is not allowed"),
])
def test_wrong_value_types_in_declarations(tmp_path, old, new, line, what):
    assert old in GOOD_HEAD
    msg = fails(tmp_path, GOOD_HEAD.replace(old, new) + '\n[graph]\nh = "W"\n\n[output]\nvalue = "sum(h)"\n')
    assert re.match(rf"bad\.toml:{line}:\d+: ", msg), msg
    assert what in msg


@pytest.mark.parametrize("wrt", ["5", '[["W"]]', "[1]", "{ W = 1 }"])
def test_wrt_of_the_wrong_type(tmp_path, wrt):
    msg = fails(tmp_path, spec_with("x @ W", output=f'value = "sum(h)"\nwrt = {wrt}'))
    assert msg.startswith("bad.toml:16:"), msg
    assert "wrt must be a list" in msg


@pytest.mark.parametrize("output", ['value = ["sum(h)"]', "value = { a = 1 }", "value = 3"])
def test_output_value_of_the_wrong_type(tmp_path, output):
    msg = fails(tmp_path, spec_with("x @ W", output=output))
    assert msg.startswith("bad.toml:15:"), msg
    assert "must be a string" in msg


def test_non_finite_and_huge_constants(tmp_path):
    assert "finite" in fails(tmp_path, spec_with("x * 1e400"))
    assert "too large" in fails(tmp_path, spec_with("x * 123456789012345678901234567890"))
    assert "too large" in fails(tmp_path, spec_with("x ** 10000000"))


def test_expression_size_limits(tmp_path):
    assert "too large" in fails(tmp_path, spec_with("+".join(["x"] * 1500)))
    assert "nested too deeply" in fails(tmp_path, spec_with("-" * 3000 + "x"))
    assert "the limit is 4000" in fails(tmp_path, spec_with("x" + " " * 4000))


# ------------------------------------------------------------------ hostile input (issue 5)
@pytest.mark.parametrize("expr, col, what", [
    ("\uff58 + 1", 6, "U+FF58 (FULLWIDTH LATIN SMALL LETTER X)"),     # Python would read it as x
    ("x + \u0445", 10, "U+0445 (CYRILLIC SMALL LETTER HA)"),
    ("x\u200b", 7, "U+200B (ZERO WIDTH SPACE)"),
    ("x\u2028+ 1", 7, "U+2028 (LINE SEPARATOR)"),
    ("sum(x) + \u00e9", 15, "U+00E9"),
])
def test_non_ascii_in_expressions(tmp_path, expr, col, what):
    msg = fails(tmp_path, spec_with(expr))
    assert msg.startswith(f"bad.toml:12:{col}: character {what}"), msg
    assert "expressions are ASCII" in msg


LOOKALIKES = [("\uff58", "x", "U+FF58 (FULLWIDTH LATIN SMALL LETTER X)"),
              ("\u210c", "H", "U+210C (BLACK-LETTER CAPITAL H)"),
              ("\U0001d42f", "v", "U+1D42F (MATHEMATICAL BOLD SMALL V)"),
              ("W\u2080", "W0", "U+2080 (SUBSCRIPT ZERO)"),
              ("\u0445", None, "U+0445 (CYRILLIC SMALL LETTER HA)")]       # no NFKC fold, still not ASCII


@pytest.mark.parametrize("place", ["input", "param", "graph", "dimension", "model"])
@pytest.mark.parametrize("name, folded, what", LOOKALIKES, ids=["fullwidth_x", "blackletter_H", "bold_v",
                                                                "subscript_0", "cyrillic_ha"])
def test_unicode_lookalike_names_are_rejected_before_they_can_collide(tmp_path, place, name, folded, what):
    """Python folds identifiers by NFKC ('ｘ' is x, 'ℌ' is H): a spec declaring both ``x`` and
    ``"ｘ"`` would give two arguments of the same name in the generated code (or one name
    silently standing for another). Every name that reaches the code must be ASCII; the error
    names the place, the character and what Python would have read."""
    ascii_name = folded or "q"
    key = f'"{name}"'
    if place == "input":        # the ASCII twin declared first: the look-alike would collide with it
        text = f'[inputs]\n{ascii_name} = {{}}\n{key} = {{}}\n[graph]\nf = "{ascii_name}"\n[output]\nvalue = "f"\n'
        line, what_name = 3, "input"
    elif place == "param":
        text = f'[inputs]\n{ascii_name} = {{}}\n[params]\n{key} = {{}}\n[graph]\nf = "{ascii_name}"\n[output]\nvalue = "f"\n'
        line, what_name = 4, "parameter"
    elif place == "graph":
        text = f'[inputs]\n{ascii_name} = {{}}\n[graph]\n{key} = "{ascii_name}"\nf = "{ascii_name}"\n[output]\nvalue = "f"\n'
        line, what_name = 4, "graph entry"
    elif place == "dimension":
        text = f'[inputs]\nv = {{ shape = [{key}] }}\n[graph]\nf = "sum(v)"\n[output]\nvalue = "f"\n'
        line, what_name = 2, "dimension"
    else:
        text = f'[model]\nname = {key}\n[inputs]\nv = {{}}\n[graph]\nf = "v"\n[output]\nvalue = "f"\n'
        line, what_name = 2, "model"
    msg = fails(tmp_path, text)
    assert re.match(rf"bad\.toml:{line}:\d+: {what_name} name {name!r} is not allowed: names must be ASCII", msg), msg
    assert what in msg
    assert (f"Python would read the name as {folded!r}" in msg) == (folded is not None), msg


@pytest.mark.parametrize("name", ["np", "numba", "math", "value_and_grad", "forward", "ARGS", "__import__",
                                  "__builtins__", "__class__", "open", "eval", "print", "self"])
def test_names_of_the_generated_module_and_builtins_are_undefined(tmp_path, name):
    msg = fails(tmp_path, spec_with(f"x * {name}"))
    assert msg.startswith("bad.toml:12:10: ") and f"undefined name '{name}'" in msg


@pytest.mark.parametrize("expr, what", [
    ("x * None", "only numbers are allowed as constants, not None"),
    ("x * True", "only numbers are allowed as constants, not True"),
    ("x * ...", "only numbers are allowed as constants, not Ellipsis"),
    ("x * 1j", "only numbers are allowed as constants, not 1j"),
    ("x if True else x", "'x if c else y'"),
    ("not x", "operator Not is not allowed"),
    ("~x", "operator Invert is not allowed"),
    ("x is x", "only one comparison"),
    ("(q := x)", "':='"),
    ("x @= W", "syntax error"),
    ("import os", "syntax error"),
    ("exec('1')", "unknown function 'exec'"),
    ("np.exp(x)", "only plain function names can be called, not attribute access"),
    ("x.__class__.__bases__[0].__subclasses__()", "attribute access"),
    ("sum(x, **{'axis': 0})", "no keyword argument '**'"),
    ("sum(*[x])", "starred arguments"),
    ("{x}", "a set"),
    ("b'x'", "only numbers are allowed as constants"),
])
def test_more_disallowed_constructs(tmp_path, expr, what):
    msg = fails(tmp_path, spec_with(expr.replace('"', "'")))
    assert msg.startswith("bad.toml:12:"), msg
    assert what in msg


@pytest.mark.parametrize("expr", ["x * 10**10**10", "x * 2**1000000", "x * 10.0 ** 400", "x * exp(1000)",
                                  "x * (1e308 * 10)", "x + (-1e308 - 1e308)", "x * exp(exp(10))"])
def test_constant_overflow_is_an_error(tmp_path, expr):
    msg = fails(tmp_path, spec_with(expr))
    assert re.match(r"bad\.toml:12:\d+: this constant expression overflows float64", msg), msg


def test_constant_overflow_through_a_graph_entry(tmp_path):
    msg = fails(tmp_path, spec_with("x * (big * big)", extra_graph='big = "1e200"'))
    assert "overflows float64" in msg


def test_constants_that_stay_finite_or_are_poles_compile():
    """A finite constant is fine; a pole (1/0, log(0)) is IEEE inf or NaN at run time, not an error.
    Either way the code holds no inf literal: the pole stays an operation."""
    for expr, literal in (("x * 10**300", "1e+300"), ("x * 2**-1080", "0.0"), ("x * sigmoid(-1000)", "0.0"),
                          ("x / (1 / 0)", "1.0 / 0.0"), ("x + log(0)", "np.log(0.0)")):
        code = build(spec_with(expr)).code
        assert "inf" not in code.split('"""', 2)[2], expr
        assert literal in code, (expr, literal)


def test_spec_size_and_toml_nesting_limits(tmp_path):
    from gradc.frontends.spec import MAX_SPEC_CHARS

    msg = fails(tmp_path, spec_with("x") + "#" * MAX_SPEC_CHARS)
    assert msg.startswith("bad.toml: the spec is") and f"the limit is {MAX_SPEC_CHARS}" in msg
    assert "nested too deeply" in fails(tmp_path, "a = " + "[" * 20000 + "]" * 20000 + "\n")
    assert "nested too deeply" in fails(tmp_path, "a = " + "{ b = " * 5000 + "1" + " }" * 5000 + "\n")


def test_wrt_naming_a_value_twice(tmp_path):
    msg = fails(tmp_path, spec_with("x @ W", output='value = "sum(h)"\nwrt = ["W", "x", "W"]'))
    assert msg.startswith("bad.toml:16:") and "wrt names 'W' twice" in msg
