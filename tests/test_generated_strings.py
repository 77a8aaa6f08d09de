"""Every string from a spec that reaches the generated module (the model's name and
description, argument names and docs, the spec text in the header, the spec's file
name) is validated or escaped: none can end a comment, a string or a docstring.

The hostile strings carry newlines, quotes, triple quotes, backslashes, ``\\r``,
``\\x0c``, ``\\x00`` and the Unicode line breaks U+2028 and U+0085 (which
``str.splitlines`` honours but Python's tokenizer does not), plus payloads that
would create a file if they ever ran. The module must still import, do what the
spec says, and show the text exactly in its docstrings.
"""
from __future__ import annotations

import ast
import math
import subprocess
import sys

import numpy as np
import pytest

import gradc
from gradc.codegen import docstring_text
from gradc.pipeline import build

PAYLOAD = 'open("pwned", "w")'
#: the description, as Python text (the spec holds it TOML-escaped)
DESCRIPTION = ('First line """ ends? \'\'\' no\n' + PAYLOAD + '\n"""\n' + PAYLOAD + '\n#\\"\\\\N{oops}\\x\\'
               + "\r\x0c\x00\x85\u2028\u2029\x1b[2J tab\tend \U0001F600 ü \\")
DOC = 'x doc """ + ' + PAYLOAD + ' + """ \\ \n' + PAYLOAD + " \u2028\x85\r"


def toml_basic(text: str) -> str:
    """``text`` as a TOML basic string (escapes for quotes, backslashes and control characters)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def hostile_spec(description=DESCRIPTION, doc=DOC) -> str:
    # a comment may hold U+2028 and U+0085 (TOML forbids only control characters there), and quotes
    return (f"# header comment \"\"\" ''' \\ \u2028{PAYLOAD}\x85{PAYLOAD}\r\n"
            f"[model]\nname = \"m\"\ndescription = {toml_basic(description)}\n\n"
            f"[inputs]\nx = {{ shape = [\"n\"], doc = {toml_basic(doc)} }}\n\n"
            "[params]\nw = { shape = [\"n\"], doc = '''literal \"\"\" \\ doc''' }\n\n"
            "[graph]\n# \"\"\" in a comment\nf = \"sum(x * w) + 1\"  # \u2028 trailing\n\n"
            "[output]\nvalue = \"f\"\n")


def module_level_is_inert(text: str) -> None:
    """The module's top level: a docstring, two imports, literal assignments and decorated
    function definitions -- nothing that runs code on import."""
    tree = ast.parse(text)
    assert isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant)
    for node in tree.body[1:]:
        if isinstance(node, ast.Import):
            assert [a.name for a in node.names] in (["numba"], ["numpy"])
        elif isinstance(node, ast.Assign):
            ast.literal_eval(node.value)
        else:
            assert isinstance(node, ast.FunctionDef), ast.dump(node)[:200]
            for dec in node.decorator_list:
                assert ast.unparse(dec).startswith("numba.njit(") or ast.unparse(dec) == "numba.extending.intrinsic"
    for line in text.split("\n"):
        assert "\r" not in line and "\x0c" not in line and "\x00" not in line


def test_docstring_text_round_trips_through_a_docstring():
    for text in (DESCRIPTION, DOC, '"', '\\', '"""', 'a"', '\\N{', "\u2028", "x\\", '\\"""'):
        for multiline in (True, False):
            src = '"""' + docstring_text(text, multiline) + '"""'
            assert ast.literal_eval(src) == text
            if not multiline:
                assert "\n" not in src


def test_hostile_description_docs_and_comments_compile_import_and_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "hostile.toml"
    spec.write_bytes(hostile_spec().encode("utf-8"))
    c = gradc.compile(spec, out=tmp_path / "hostile_mod.py")
    text = c.source
    module_level_is_inert(text)
    assert c.module.__doc__.endswith("\n\n" + DESCRIPTION + "\n")
    for fn in (c.module.forward, c.module.value_and_grad):
        doc = fn.__doc__
        assert "x: float64 [n] (data): " + DOC in doc                    # exact text, escaped in the source
        assert 'w: float64 [n] (parameter): literal """ \\ doc' in doc
    x, w = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    value, (gw,) = c.value_and_grad(x, w)
    assert value == 2.0 and list(gw) == [1.0, 2.0]
    assert not list(tmp_path.glob("pwned*"))
    header = text[:text.index('\n"""Value and gradient of m')]
    assert all(line.startswith("#") for line in header.split("\n"))
    assert header.count("\n") >= 20                                      # the spec's lines, each a comment


@pytest.mark.parametrize("name", [
    'evil\nopen("pwned1", "w")\n#.toml',
    'q"""+open("pwned2", "w").name+""".toml',
    "r\\'''+open('pwned3', 'w').name+'''.toml",
    "cr\ropen('pwned4', 'w')\r.toml",
    "ff\x0cls\u2028open('pwned5', 'w')\x85open('pwned6', 'w').toml",
    "x -*- coding: utf-7 -*- +AAo-open('pwned7', 'w').toml",      # a PEP 263 declaration, were it on line 1-2
    "back\\slash\\.toml",
])
def test_hostile_spec_file_names(tmp_path, name):
    (tmp_path / name).write_text(hostile_spec(description="d", doc="d"), encoding="utf-8")
    art = build(tmp_path / name)
    module_level_is_inert(art.code)
    lines = art.code.split("\n")
    assert lines[1].startswith("# content sha256: ")                     # line 2: never the file name
    doc = ast.get_docstring(ast.parse(art.code))
    assert doc.startswith("Value and gradient of m, generated by gradc") and doc.count("\n") == 2
    out = tmp_path / "out.py"
    out.write_text(art.code, encoding="utf-8")
    # importing runs every module-level statement: that is where an injection would act
    run = subprocess.run([sys.executable, "-c", "import importlib.util as u, sys\n"
                          "s = u.spec_from_file_location('m', sys.argv[1]); m = u.module_from_spec(s)\n"
                          "s.loader.exec_module(m); print(m.ARGS, m.WRT)\n", str(out)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[0] == "('x', 'w') ('w',)"
    assert not list(tmp_path.glob("pwned*"))


@pytest.mark.parametrize("name", ["x\u2028y", "é", "x\n", "np", "numba", "math", "value_and_grad", "forward",
                                  "__class__", "def", "match", "None", "ｘ"])
def test_names_that_reach_the_code_are_identifiers(name):
    """Model, input, parameter and graph names are checked before any code is generated."""
    for section in ("model", "inputs", "graph"):
        key = toml_basic(name)
        if section == "model":
            text = f"[model]\nname = {key}\n[inputs]\nx = {{}}\n[graph]\nf = \"x\"\n[output]\nvalue = \"f\"\n"
        elif section == "inputs":
            text = f"[inputs]\n{key} = {{}}\n[graph]\nf = \"1\"\n[output]\nvalue = \"f\"\n"
        else:
            text = f"[inputs]\nx = {{}}\n[graph]\n{key} = \"x\"\nf = \"x\"\n[output]\nvalue = \"f\"\n"
        with pytest.raises(gradc.SpecError, match="is not allowed") as info:
            build(text)
        assert "\n" not in str(info.value) and "\u2028" not in str(info.value)


def test_sympy_function_name_is_checked():
    import sympy as sp

    x = sp.Symbol("x")
    with pytest.raises(gradc.GradcError, match=r"name='f\\n\"\"\"' is not allowed"):
        build(x * x, args=[x], name='f\n"""')
    assert build(x * x, args=[x], name="square").lowered.model_name == "square"


def test_free_text_limits_and_types():
    base = '[model]\nname = "m"\n{}\n[inputs]\nx = {{}}\n[graph]\nf = "x"\n[output]\nvalue = "f"\n'
    with pytest.raises(gradc.SpecError, match=r"^<spec>:3:\d+: \[model\] description must be a string"):
        build(base.format("description = 5"))
    with pytest.raises(gradc.SpecError, match="the limit is 4000"):
        build(base.format(f'description = "{"a" * 4001}"'))
    with pytest.raises(gradc.SpecError, match=r"\[model\] has unknown key\(s\) author"):
        build(base.format('author = "me"'))
    with pytest.raises(gradc.SpecError, match="doc of x must be a string"):
        build(base.format("").replace("x = {}", "x = { doc = 1 }"))
    assert math.isfinite(build(base.format('description = "ok"')).full.n_primal)
