"""The command line, run as ``python -m gradc`` in subprocesses.

Generated modules are imported and run in a fresh Python process; values and
gradients are compared with a NumPy reference and finite differences.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc.pipeline import build

SPEC = """\
# a tiny classifier
[model]
name = "tiny"

[inputs]
X = { shape = ["batch", 3] }
y = { shape = ["batch"], dtype = "int64" }

[params]
W = { shape = [3, 4], init = "glorot" }
b = { shape = [4] }

[graph]
h = "tanh(X @ W + b)"
loss = "mean(softmax_cross_entropy(h, y)) + 0.01 * sum(W * W)"

[output]
value = "loss"
"""

# the number of classes is a symbolic dimension k
CHECK_SPEC = SPEC.replace("shape = [3, 4]", 'shape = [3, "k"]').replace("shape = [4]", 'shape = ["k"]')

BAD = """\
[inputs]
x = { shape = [3] }

[graph]
h = "exp(x)"
g = "foo(h)"

[output]
value = "sum(g)"
"""


def ref_loss(X, y, W, b):
    s = np.tanh(X @ W + b)
    m = s.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(s - m).sum(axis=1))
    return np.mean(lse - s[np.arange(len(y)), y]) + 0.01 * np.sum(W * W)


def fd(f, args, i, eps=1e-6):
    g = np.zeros_like(args[i])
    for idx in np.ndindex(g.shape):
        hi = [a.copy() for a in args]
        lo = [a.copy() for a in args]
        hi[i][idx] += eps
        lo[i][idx] -= eps
        g[idx] = (f(*hi) - f(*lo)) / (2 * eps)
    return g


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache folder for the module: `check` runs share Numba's on-disk machine code."""
    return tmp_path_factory.mktemp("gradc-cli-cache")


@pytest.fixture
def env(cache):
    e = dict(os.environ)
    e["GRADC_CACHE_DIR"] = str(cache)
    e.pop("PYTHONHASHSEED", None)
    return e


def gradc_cli(args, env, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "gradc", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC, encoding="utf-8")
    return path


RUNNER = textwrap.dedent("""\
    import importlib.util, json, sys
    import numpy as np
    spec = importlib.util.spec_from_file_location("generated", sys.argv[1])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((4, 3))
    y = np.array([0, 3, 1, 3], dtype=np.int64)
    W = rng.standard_normal((3, 4))
    b = rng.standard_normal(4)
    value, grads = mod.value_and_grad(X, y, W, b)
    print(json.dumps({"forward": float(mod.forward(X, y, W, b)), "value": float(value),
                      "grads": [np.asarray(g).tolist() for g in grads], "args": list(mod.ARGS),
                      "wrt": list(mod.WRT), "gradc_loaded": "gradc" in sys.modules,
                      "X": X.tolist(), "W": W.tolist(), "b": b.tolist(), "y": y.tolist()}))
""")


# ------------------------------------------------------------------ compile
def test_compile_then_run_in_fresh_process(tmp_path, spec, env):
    out = tmp_path / "tiny_grad.py"
    r = gradc_cli(["compile", spec, "-o", out], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout
    assert out.exists()
    run = subprocess.run([sys.executable, "-c", RUNNER, str(out)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["gradc_loaded"] is False                 # the module stands alone
    assert got["args"] == ["X", "y", "W", "b"] and got["wrt"] == ["W", "b"]
    X, W, b = (np.array(got[k]) for k in ("X", "W", "b"))
    y = np.array(got["y"], dtype=np.int64)
    want = ref_loss(X, y, W, b)
    assert got["forward"] == pytest.approx(want, rel=1e-12)
    assert got["value"] == pytest.approx(got["forward"], rel=1e-14)
    args = [X, y, W, b]
    np.testing.assert_allclose(got["grads"][0], fd(ref_loss, args, 2), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got["grads"][1], fd(ref_loss, args, 3), rtol=1e-6, atol=1e-9)


def test_load_after_plain_import_in_another_process(tmp_path, env):
    src = tmp_path / "plain.toml"
    src.write_text(BAD.replace('g = "foo(h)"', 'g = "h"'), encoding="utf-8")
    assert gradc_cli(["compile", src, "-o", tmp_path / "plain.py", "--no-load"], env, tmp_path).returncode == 0
    r = subprocess.run([sys.executable, "-c", "import numpy as np, plain; print(plain.forward(np.zeros(3)))"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) == 3.0
    assert gradc.load(tmp_path / "plain.py").forward(np.zeros(3)) == 3.0


def test_compile_default_output_path_and_wrt_option(tmp_path, spec, env):
    r = gradc_cli(["compile", spec.name, "--wrt", "X,b", "--no-load"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "tiny_grad.py"
    assert out.exists()
    text = out.read_text()
    assert "WRT = ('X', 'b')" in text
    assert "# wrt: X, b" in text


def test_generated_module_imports_only_stdlib_numpy_numba(tmp_path, spec, env):
    out = tmp_path / "m.py"
    assert gradc_cli(["compile", spec, "-o", out, "--no-load"], env, tmp_path).returncode == 0
    tree = ast.parse(out.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            roots.add(node.module.split(".")[0])
    assert {"numpy", "numba"} <= roots
    assert roots <= {"numpy", "numba"} | set(sys.stdlib_module_names), roots
    assert "__import__" not in out.read_text() and "importlib" not in out.read_text()


# ------------------------------------------------------------------ show
def test_show_stages(tmp_path, spec, env):
    ir_ = gradc_cli(["show", spec, "--stage", "ir"], env, tmp_path)
    adj = gradc_cli(["show", spec, "--stage", "adjoint"], env, tmp_path)
    code = gradc_cli(["show", spec, "--stage", "code"], env, tmp_path)
    default = gradc_cli(["show", spec], env, tmp_path)
    for r in (ir_, adj, code, default):
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
    assert ir_.stdout.startswith("func tiny(%X:f64[batch,3], %y:i64[batch], %W:f64[3,4], %b:f64[4]) {")
    assert "%h:f64[batch,4] = tanh %" in ir_.stdout
    assert "softmax_cross_entropy %h, %y" in ir_.stdout
    assert "tiny.toml:15:" in ir_.stdout
    assert "adjoint sweep" not in ir_.stdout
    assert ir_.stdout.rstrip().endswith("}")
    assert default.stdout == ir_.stdout
    assert "; ---- adjoint sweep ----" in adj.stdout
    assert "; wrt: %W, %b" in adj.stdout
    assert "%W_bar:f64[3,4]" in adj.stdout and "%b_bar:f64[4]" in adj.stdout
    assert "softmax_cross_entropy_vjp" in adj.stdout
    assert "return %loss, (%W_bar, %b_bar)" in adj.stdout
    assert code.stdout.startswith("# Generated by gradc ")
    assert "def forward(X, y, W, b):" in code.stdout
    assert "def value_and_grad(X, y, W, b, W_out=None, b_out=None):" in code.stdout
    assert "@numba.njit" in code.stdout and "# ---- adjoint sweep ----" in code.stdout
    assert code.stdout == build(spec).code.rstrip("\n") + "\n"


def test_show_with_wrt(tmp_path, spec, env):
    r = gradc_cli(["show", spec, "--stage", "adjoint", "--wrt", "X"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "; wrt: %X" in r.stdout and "%X_bar:f64[batch,3]" in r.stdout
    assert "%W_bar" not in r.stdout


# ------------------------------------------------------------------ derivatives (issue 11)
SEED_ADD_MUL = Path(__file__).resolve().parent.parent / "examples" / "seed_add_mul.toml"


def test_compile_with_derivatives_writes_them_into_one_standalone_module(tmp_path, env):
    """--derivatives puts jvp and hessian into the module -o names; the Hessian of (x + y) z is the
    constant matrix [[0, 0, 1], [0, 0, 1], [1, 1, 0]] (worked by hand), the JVP (t_x + t_y) z + (x + y) t_z."""
    out = tmp_path / "m.py"
    r = gradc_cli(["compile", SEED_ADD_MUL, "--derivatives", "jvp,hessian", "-o", out], env, tmp_path)
    assert r.returncode == 0, r.stderr
    m = gradc.load(out)
    assert m.derivatives == ("grad", "jvp", "hessian")
    np.testing.assert_array_equal(m.module.hessian(-2.0, 5.0, -4.0), [[0, 0, 1], [0, 0, 1], [1, 1, 0]])
    value, tangent = m.module.jvp(-2.0, 5.0, -4.0, 1.0, 2.0, 3.0)
    assert value == -12.0 and tangent == (1.0 + 2.0) * -4.0 + (-2.0 + 5.0) * 3.0


def test_show_stage_of_a_derivative_and_check_of_every_derivative(tmp_path, env):
    r = gradc_cli(["show", SEED_ADD_MUL, "--stage", "hvp"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "%x_dot:f64[]" in r.stdout and "return %x_bar_dot" in r.stdout
    r = gradc_cli(["check", SEED_ADD_MUL, "--derivatives", "jvp,vjp,jacobian,hvp,hessian,value_grad_hessian"],
                  env, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    for kind in ("jvp", "vjp", "jacobian", "hvp", "hessian", "value_grad_hessian"):
        assert f"{kind}: max rel. error" in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("OK: worst relative error")


def test_unknown_derivative_is_a_clear_error(tmp_path, env):
    r = gradc_cli(["compile", SEED_ADD_MUL, "--derivatives", "hessain", "-o", tmp_path / "m.py"], env, tmp_path)
    assert r.returncode == 2
    assert "unknown derivative(s) 'hessain'" in r.stderr and "hessian" in r.stderr
    assert not (tmp_path / "m.py").exists()


# ------------------------------------------------------------------ check
@pytest.fixture
def check_spec(tmp_path):
    path = tmp_path / "classes.toml"
    path.write_text(CHECK_SPEC, encoding="utf-8")
    assert '"k"' in CHECK_SPEC
    return path


def test_check_passes(tmp_path, check_spec, env):
    r = gradc_cli(["check", check_spec, "--batch", "4", "--seed", "1"], env, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "batch=4" in r.stdout and "k=4" in r.stdout and "seed 1" in r.stdout
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("OK: worst relative error")
    assert "W:" in r.stdout and "b:" in r.stdout


def test_check_with_dim_option(tmp_path, check_spec, env):
    r = gradc_cli(["check", check_spec, "--dim", "batch=1", "--dim", "k=6"], env, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "batch=1" in r.stdout and "k=6" in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("OK")


# ------------------------------------------------------------------ errors
def _assert_one_line_error(r):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("gradc: error: ")
    return lines[0]


@pytest.mark.parametrize("command", ["compile", "show", "check"])
def test_spec_error_exit_2_one_line(tmp_path, env, command):
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD, encoding="utf-8")
    r = gradc_cli([command, bad], env, tmp_path)
    line = _assert_one_line_error(r)
    assert "bad.toml:6:6: unknown function 'foo'" in line
    assert not (tmp_path / "bad_grad.py").exists()


def test_malformed_toml_and_missing_file_and_bad_dim(tmp_path, spec, env):
    bad = tmp_path / "broken.toml"
    bad.write_text("[inputs]\nx = { shape = [3]\n", encoding="utf-8")
    line = _assert_one_line_error(gradc_cli(["show", bad], env, tmp_path))
    assert "broken.toml:2" in line and "malformed TOML" in line
    line = _assert_one_line_error(gradc_cli(["compile", tmp_path / "nope.toml"], env, tmp_path))
    assert "nope.toml" in line
    line = _assert_one_line_error(gradc_cli(["check", spec, "--dim", "batch=zero"], env, tmp_path))
    assert "batch=zero" in line


def test_shape_error_and_wrt_error(tmp_path, spec, env):
    bad = tmp_path / "shape.toml"
    bad.write_text(SPEC.replace("X @ W + b", "X @ transpose(W) + b"), encoding="utf-8")
    line = _assert_one_line_error(gradc_cli(["compile", bad, "--no-load"], env, tmp_path))
    assert "shape.toml:14:11:" in line and "inner dimensions differ" in line
    line = _assert_one_line_error(gradc_cli(["show", spec, "--wrt", "W,y"], env, tmp_path))
    assert "'y'" in line and "int64" in line


# ------------------------------------------------------------------ overwriting
def test_compile_refuses_to_overwrite_user_file(tmp_path, spec, env):
    user = tmp_path / "existing_user_file.py"
    content = "# my own code\nprint('hello')\n"
    user.write_text(content, encoding="utf-8")
    line = _assert_one_line_error(gradc_cli(["compile", spec, "-o", user], env, tmp_path))
    assert "existing_user_file.py" in line and "--force" in line
    assert user.read_text(encoding="utf-8") == content
    line = _assert_one_line_error(gradc_cli(["compile", spec, "-o", user, "--no-load"], env, tmp_path))
    assert user.read_text(encoding="utf-8") == content

    r = gradc_cli(["compile", spec, "-o", user, "--force"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    text = user.read_text(encoding="utf-8")
    assert text.startswith("# Generated by gradc ") and "def value_and_grad(" in text


def test_recompile_over_generated_file_needs_no_force(tmp_path, spec, env):
    out = tmp_path / "gen.py"
    assert gradc_cli(["compile", spec, "-o", out, "--no-load"], env, tmp_path).returncode == 0
    first = out.read_text()
    spec.write_text(SPEC.replace("0.01 * sum(W * W)", "0.02 * sum(W * W)"), encoding="utf-8")
    r = gradc_cli(["compile", spec, "-o", out, "--no-load"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    second = out.read_text()
    assert second != first and "0.02" in second
    r = gradc_cli(["compile", spec, "-o", out], env, tmp_path)     # and with loading
    assert r.returncode == 0, r.stderr


def test_api_refuses_user_file_too(tmp_path, spec):
    user = tmp_path / "mine.py"
    user.write_text("x = 1\n")
    with pytest.raises(gradc.GradcError, match="mine.py exists and was not generated by gradc"):
        gradc.compile(spec, out=user)
    assert user.read_text() == "x = 1\n"


def test_compile_writes_atomically_and_recognises_only_its_own_header(tmp_path, spec, monkeypatch, capsys):
    """`gradc compile -o` writes a temporary file in the target's folder and renames it over the
    target (a crash leaves the old file whole); a file is gradc's own (overwritable without
    --force) only if its first line is gradc's header, wherever else the header's words appear."""
    from gradc.cli import main
    from gradc.runtime import loader

    out = tmp_path / "gen.py"
    renames = []
    real_replace = loader.os.replace

    def replace(src, dst):
        renames.append((os.path.dirname(src), os.path.basename(src), str(dst)))
        assert os.path.getsize(src) > 0                         # written completely before the rename
        real_replace(src, dst)

    monkeypatch.setattr(loader.os, "replace", replace)
    assert main(["compile", str(spec), "-o", str(out), "--no-load"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    (src_dir, src_name, dst), = renames
    assert src_dir == str(tmp_path) and src_name.startswith(".gen.py.") and src_name.endswith(".tmp")
    assert dst == str(out) and sorted(p.name for p in tmp_path.iterdir()) == ["gen.py", "tiny.toml"]
    header = out.read_text().split("\n", 1)[0]
    assert header.startswith("# Generated by gradc ")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(loader.os, "replace", crash)            # a crash mid-write: the old file stays
    before = out.read_text()
    spec.write_text(SPEC.replace("0.01 *", "0.02 *"), encoding="utf-8")
    assert main(["compile", str(spec), "-o", str(out), "--no-load"]) == 2
    assert "disk full" in capsys.readouterr().err
    assert out.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["gen.py", "tiny.toml"]
    monkeypatch.setattr(loader.os, "replace", real_replace)

    for text in ("\n" + header + "\n", "# my notes on: " + header + "\n", header.upper() + "\n"):
        out.write_text(text)                                     # the header, but not as line 1
        assert main(["compile", str(spec), "-o", str(out), "--no-load"]) == 2
        assert "not generated by gradc" in capsys.readouterr().err and out.read_text() == text
    out.write_text(header + "\n# edited by hand\n")               # gradc's first line: gradc's file
    assert main(["compile", str(spec), "-o", str(out), "--no-load"]) == 0
    assert "0.02 *" in out.read_text()


# ------------------------------------------------------------------ determinism and header
def test_build_twice_is_byte_identical(spec):
    a = build(spec)
    b = build(spec)
    assert a.code == b.code
    assert a.show("adjoint") == b.show("adjoint")
    assert a.key == b.key


def test_cli_twice_is_byte_identical_across_processes(tmp_path, spec, env):
    outs = []
    for seed, name in (("1", "one.py"), ("2", "two.py")):
        e = dict(env, PYTHONHASHSEED=seed)
        r = gradc_cli(["compile", spec, "-o", tmp_path / name, "--no-load"], e, tmp_path)
        assert r.returncode == 0, r.stderr
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] == build(spec).code.encode("utf-8")


def test_header_names_source_and_version(tmp_path, spec, env):
    out = tmp_path / "h.py"
    assert gradc_cli(["compile", spec, "-o", out, "--no-load"], env, tmp_path).returncode == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith(f"# Generated by gradc {gradc.__version__}")
    assert "# source: tiny.toml" in lines[:5]
    assert f"GRADC_VERSION = {gradc.__version__!r}" in lines
    # the spec text is quoted in the header, as comments only
    assert '#   h = "tanh(X @ W + b)"' in lines
    body = "\n".join(lines)
    assert body.count('h = "tanh(X @ W + b)"') == 1


def test_version_flag(tmp_path, env):
    r = gradc_cli(["--version"], env, tmp_path)
    assert r.returncode == 0
    assert r.stdout.strip() == f"gradc {gradc.__version__}"


def test_hostile_spec_file_name_cannot_inject_code(tmp_path, env):
    """The file name goes into the header comment and the docstring: it must not escape them."""
    names = ['evil\nopen("pwned1", "w")\n#.toml', 'q"""+open("pwned2", "w").name+""".toml',
             "r\\'''+open('pwned3', 'w').name+'''.toml"]
    for i, name in enumerate(names):
        src = tmp_path / name
        src.write_text(BAD.replace('g = "foo(h)"', 'g = "h"'), encoding="utf-8")
        out = tmp_path / f"out{i}.py"
        r = gradc_cli(["compile", name, "-o", out, "--no-load"], env, tmp_path)
        assert r.returncode == 0, r.stderr
        ast.parse(out.read_text())
        doc = ast.get_docstring(ast.parse(out.read_text()))
        head = doc.partition("\n\nArguments, in call order:")[0]           # then the arguments' lines
        assert head.startswith("Value and gradient of model, generated by gradc") and "\n" not in head
    # importing runs every module-level statement: that is where an injection would act
    run = subprocess.run([sys.executable, "-c", "import importlib.util as u, sys\n"
                          "for i, path in enumerate(sys.argv[1:]):\n"
                          "    s = u.spec_from_file_location(f'm{i}', path); m = u.module_from_spec(s)\n"
                          "    s.loader.exec_module(m); print(m.ARGS, m.WRT)\n",
                          *(str(tmp_path / f"out{i}.py") for i in range(len(names)))],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["('x',) ()"] * len(names)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("pwned")]


def test_compile_timings_prints_every_stage(tmp_path, spec, env):
    r = gradc_cli(["compile", spec, "-o", tmp_path / "timed.py", "--timings", "--batch", "2"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    for label in ("frontend", "IR passes", "reverse-mode AD", "code generation", "write module",
                  "import module", "first value_and_grad call", "first forward call", "total"):
        assert label in r.stdout, label
    r = gradc_cli(["compile", spec, "-o", tmp_path / "timed2.py", "--timings", "--no-load"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "code generation" in r.stdout and "first value_and_grad call" not in r.stdout


def test_compiled_timings_cold_then_warm(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "cache"))
    text = "[inputs]\nx = { shape = [] }\n[graph]\nf = \"tanh(x) * x\"\n[output]\nvalue = \"f\"\nwrt = [\"x\"]\n"
    cold = gradc.compile(text)
    assert {"frontend", "passes", "ad", "render", "write", "import"} <= set(cold.timings)
    warm = gradc.compile(text)                  # found from the source: the pipeline does not run
    assert set(warm.timings) == {"cache lookup", "import"} and warm.path == cold.path
    assert warm.value_and_grad(0.5)[0] == pytest.approx(np.tanh(0.5) * 0.5)


# ------------------------------------------------------------------ issue 12: the CLI as a new user meets it
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADD_MUL = os.path.join(ROOT, "examples", "seed_add_mul.toml")


def run_main(capsys, *argv):
    from gradc.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [
    ["explain", "--at", "x=-2", "y=5", "z=-4", ADD_MUL],            # --at's values, then the spec
    ["explain", ADD_MUL, "--at", "x=-2", "y=5", "z=-4"],
    ["explain", "--at", "x=-2", ADD_MUL, "--at", "y=5", "--at", "z=-4"],
    ["explain", "--at", "x=-2", "--at", "y=5", "--at", "z=-4", "--", ADD_MUL],
])
def test_at_before_or_after_the_spec(capsys, monkeypatch, tmp_path, argv):
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path))
    code, out, err = run_main(capsys, *argv)
    assert code == 0, err
    assert out.startswith("backprop of seed_add_mul (seed_add_mul.toml) at x = -2, y = 5, z = -4\n")


def test_spec_missing_after_at_is_argparse_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        run_main(capsys, "explain", "--at", "x=-2", "y=5")
    assert info.value.code == 2
    assert "the following arguments are required: spec" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["explain"], ["show", "--stage", "code"]])
def test_output_into_a_closed_pipe_is_quiet(tmp_path, env, command):
    """`gradc ... | head -1`: the reader has gone; exit as a Unix tool killed by SIGPIPE does (141)."""
    p = subprocess.Popen([sys.executable, "-m", "gradc", *command, ADD_MUL], env=env, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()                                    # before gradc writes anything
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 141
    assert err == ""


def test_head_of_a_long_output_in_a_shell_pipeline(tmp_path, env):
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m gradc show --stage code {ADD_MUL}"
                        f" | head -1; echo status ${{PIPESTATUS[0]}} >&2"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.stdout.startswith("# Generated by gradc") and len(r.stdout.splitlines()) == 1
    assert "Broken pipe" not in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip() in ("status 0", "status 141")     # 0 if the text fit the pipe's buffer


def test_dim_the_spec_does_not_have(tmp_path, check_spec, env):
    line = _assert_one_line_error(gradc_cli(["check", check_spec, "--dim", "foo=3"], env, tmp_path))
    assert "--dim foo:" in line and "has no dimension 'foo'; its symbolic dimensions are batch, k" in line


def test_every_argument_has_help_and_show_stage_says_its_default():
    from gradc.cli import parser

    p = parser()
    subs = next(a for a in p._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name, sub in subs.choices.items():
        for action in sub._actions:
            assert action.help, f"gradc {name} {action.dest}: no help text"
    stage = next(a for a in subs.choices["show"]._actions if a.dest == "stage")
    assert "ir" in stage.help and "default" in stage.help
    text = subs.choices["explain"].format_help()
    assert "model spec" in text and "seed of the random" in text and "comma-separated" in text


def test_compile_default_output_is_in_the_current_directory(tmp_path, env):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "tiny.toml").write_text(SPEC, encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    r = gradc_cli(["compile", specs / "tiny.toml", "--no-load"], env, work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "wrote tiny_grad.py"
    assert (work / "tiny_grad.py").exists() and not (specs / "tiny_grad.py").exists()


def test_compile_to_stdout(tmp_path, spec, env):
    r = gradc_cli(["compile", spec, "-o", "-"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == build(spec).code and r.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]          # nothing written


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_respect_the_umask(tmp_path, spec, env, umask, mode):
    out = tmp_path / f"m{umask:o}.py"
    r = subprocess.run([sys.executable, "-m", "gradc", "compile", str(spec), "-o", str(out), "--no-load"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       preexec_fn=lambda: os.umask(umask))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_mode & 0o777 == mode


class _Terminal:
    """A stderr that says it is a terminal and records what is written."""

    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_status_line_on_a_terminal_only(tmp_path, spec, monkeypatch, capsys, quiet):
    from gradc.cli import main

    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "cache"))
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["compile", str(spec), "-o", str(tmp_path / "a.py"), *quiet]) == 0
    if quiet:
        assert term.text == ""
    else:
        assert "gradc: compiling" in term.text and "tiny.toml" in term.text
        assert term.text.endswith("\r\x1b[K")                # the line is erased at the end
    monkeypatch.undo()
    capsys.readouterr()
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["compile", str(spec), "-o", str(tmp_path / "b.py")]) == 0   # stderr not a terminal
    assert capsys.readouterr().err == ""
