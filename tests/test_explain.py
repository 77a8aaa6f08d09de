"""Backprop you can see: `gradc explain`, `gradc show --stage graph`, the rule comments.

The expected numbers are the lecture notes' (/work/shared/seeds; also quoted in
examples/seed_*.toml), rounded as the notes round them, never gradc's own output.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gradc.ad import grad
from gradc.cli import main
from gradc.pipeline import build

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples"
ADD_MUL = ["--at", "x=-2", "y=5", "z=-4"]
SIGMOID = ["--at", "w0=2", "w1=-3", "w2=-3", "x0=-1", "x1=-2"]
NORM_WX = ["--at", "W=[[0.1,0.5],[-0.3,0.8]]", "x=[0.2,0.4]"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def table(text: str) -> list[dict]:
    """The rows of an explain table as dicts (column positions from the dashes under the header);
    continuation rows inherit the node's cells."""
    lines = text.splitlines()
    k = next(i for i, line in enumerate(lines) if line.startswith("----"))
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", lines[k])]
    spans = [(a, spans[i + 1][0] if i + 1 < len(spans) else None) for i, (a, _) in enumerate(spans)]
    head = [lines[k - 1][a:b].strip() for a, b in spans]
    keys = ["node", "expression", "op", "value", "upstream", "operand", "local", "gradient", "rule"]
    assert [h.split(" ")[0] for h in head] == keys, head
    rows, last = [], {}
    for line in lines[k + 1:]:
        cells = dict(zip(keys, (line[a:b].strip() for a, b in spans)))
        if not cells["node"]:
            cells.update({key: last[key] for key in ("node", "expression", "op", "value", "upstream")})
        rows.append(cells)
        last = cells
    return rows


def row(rows, node, operand=""):
    found = [r for r in rows if r["node"] == node and r["operand"] == operand]
    assert len(found) == 1, (node, operand, rows)
    return found[0]


EDGE = re.compile(r'^  "([^"]+)" -> "([^"]+)" \[label=<<font color="#1b7a1b">(.*?)</font>'
                  r'(?:<br/><font color="#c0262d">(.*?)</font>)?>\];$')


def edges(dot: str) -> dict:
    """{(source, target): (value, gradient or None)}; node ids without their n_ prefix."""
    out = {}
    for line in dot.splitlines():
        m = EDGE.match(line)
        if m:
            key = (m[1].removeprefix("n_"), m[2].removeprefix("n_"))
            assert key not in out, key
            out[key] = (m[3], m[4])
    return out


# ------------------------------------------------------------------ explain: the notes' numbers
def test_explain_add_mul_gives_the_notes_numbers(capsys):
    code, out, err = run(capsys, "explain", EX / "seed_add_mul.toml", *ADD_MUL)
    assert code == 0 and err == ""
    assert out.startswith("backprop of seed_add_mul (seed_add_mul.toml) at x = -2, y = 5, z = -4\n")
    rows = table(out)
    assert [r["node"] for r in rows] == ["f", "f", "q", "q", "x", "y", "z"]      # reverse order, then inputs
    f_q, f_z = row(rows, "f", "q"), row(rows, "f", "z")
    assert (f_q["op"], f_q["value"], f_q["upstream"]) == ("mul", "-12", "1")
    assert (f_q["local"], f_q["gradient"]) == ("-4", "-4")        # df/dq = z = -4
    assert (f_z["local"], f_z["gradient"]) == ("3", "3")          # df/dz = q = 3
    assert f_q["rule"] == f_z["rule"] == "mul: swaps the inputs"
    for v in "xy":
        r = row(rows, "q", v)
        assert (r["op"], r["value"], r["upstream"], r["local"], r["gradient"]) == ("add", "3", "-4", "1", "-4")
        assert r["rule"] == "add: distributes the gradient"
    assert [(r["value"], r["upstream"]) for r in rows[-3:]] == [("-2", "-4"), ("5", "-4"), ("-4", "3")]


def test_explain_sigmoid_neuron_gives_the_notes_numbers(capsys):
    code, out, _ = run(capsys, "explain", EX / "seed_sigmoid_neuron.toml", *SIGMOID, "--digits", "2")
    assert code == 0
    rows = table(out)
    assert row(rows, "f", "f_4")["value"] == "0.73"               # sigmoid(1)
    assert row(rows, "f", "f_4")["gradient"] == "-0.53"           # 1/x gate: -1/1.37^2
    assert row(rows, "f_4", "f_3")["value"] == "1.37"
    assert row(rows, "f_3", "f_2")["value"] == "0.37"             # exp(-1)
    assert row(rows, "f_3", "f_2")["gradient"] == "-0.20"
    assert row(rows, "f_2", "s")["gradient"] == "0.20"            # (1 - f) f arriving at the dot product
    assert row(rows, "s", "w2")["upstream"] == "0.20"
    grads = {r["node"]: r["upstream"] for r in rows if r["op"] == "input"}
    assert grads == {"w0": "-0.20", "x0": "0.39", "w1": "-0.39", "x1": "-0.59", "w2": "0.20"}
    w0 = row(rows, "s_2", "w0")                                   # [local] x [upstream]: (-1) x 0.20
    assert (w0["local"], w0["upstream"], w0["gradient"]) == ("-1", "0.20", "-0.20")
    x0 = row(rows, "s_2", "x0")                                   # the slides' [2] x [0.2] = 0.4
    assert (x0["local"], x0["gradient"]) == ("2", "0.39")


def test_explain_norm_wx_gives_the_notes_numbers(capsys):
    code, out, _ = run(capsys, "explain", EX / "seed_norm_wx.toml", *NORM_WX)
    assert code == 0
    rows = table(out)
    assert row(rows, "f", "f_2")["value"] == "0.116"
    q_w, q_x = row(rows, "q", "W"), row(rows, "q", "x")
    assert q_w["value"] == "[0.220, 0.260]" and q_w["upstream"] == "[0.440, 0.520]"   # q = Wx, 2q
    assert q_w["local"] == q_x["local"] == "—"                    # a Jacobian: see the rule
    assert q_w["gradient"] == "[[0.088, 0.176], [0.104, 0.208]]"  # 2 q x^T
    assert q_x["gradient"] == "[-0.112, 0.636]"                   # 2 W^T q
    assert q_w["rule"] == "matmul: ∂L/∂W = ∂L/∂q xᵀ"
    assert q_x["rule"] == "matmul: ∂L/∂x = Wᵀ ∂L/∂q"


def test_explain_three_layer_random_point_is_seeded_and_deterministic(capsys):
    a = run(capsys, "explain", EX / "seed_three_layer.toml")
    b = run(capsys, "explain", EX / "seed_three_layer.toml", "--seed", "0")
    c = run(capsys, "explain", EX / "seed_three_layer.toml", "--seed", "1")
    assert a[0] == b[0] == c[0] == 0
    assert a[1] == b[1] != c[1]
    assert "drawn at random: seed 0" in a[1]
    rows = table(a[1])
    assert row(rows, "h1_2", "W1")["local"] == "—"
    assert row(rows, "h1", "h1_3")["local"].startswith("[")       # sigmoid: elementwise s(1 - s)
    assert row(rows, "x")["upstream"] == "—"                      # data: not differentiated


def test_local_gradient_is_the_rule_at_a_unit_cotangent_even_where_upstream_is_zero(capsys, tmp_path):
    spec = tmp_path / "kink.toml"
    spec.write_text('[inputs]\nx = { shape = [] }\n[graph]\n'
                    'f = "x * x + where(x > 0, sqrt(x), 0)"\n[output]\nvalue = "f"\nwrt = ["x"]\n')
    code, out, _ = run(capsys, "explain", spec, "--at", "x=0")
    assert code == 0
    rows = table(out)
    sq = next(r for r in rows if r["op"] == "sqrt")
    assert (sq["upstream"], sq["local"], sq["gradient"]) == ("0", "inf", "0")   # the mask keeps it 0
    assert row(rows, "x")["upstream"] == "0"
    code, out, _ = run(capsys, "explain", spec, "--at", "x=4")
    rows = table(out)
    assert [r["gradient"] for r in rows if r["op"] == "mul"] == ["4", "4"]       # x feeds mul twice
    assert row(rows, "x")["upstream"] == "8.250"                                 # 2x + 1/(2 sqrt x)


def test_symbolic_dims_are_bound_by_at_arrays(capsys):
    code, out, _ = run(capsys, "explain", EX / "seed_relu_2layer.toml", "--at", "X=[[1,2,3],[0,-1,2]]")
    assert code == 0
    assert "(T, W1, W2 drawn at random: seed 0, batch=2)" in out
    assert re.search(r"\n  X +\= \[2,3\] mean ", out)


# ------------------------------------------------------------------ the graph
def test_graph_add_mul_edges_carry_value_and_gradient(capsys):
    code, dot, _ = run(capsys, "show", EX / "seed_add_mul.toml", "--stage", "graph", *ADD_MUL)
    assert code == 0
    assert dot.startswith('digraph "seed_add_mul" {') and dot.rstrip().endswith("}")
    assert edges(dot) == {("x", "q"): ("-2", "-4"), ("y", "q"): ("5", "-4"),
                          ("q", "f"): ("3", "-4"), ("z", "f"): ("-4", "3"), ("f", "out"): ("-12", "1")}
    assert '"n_q" [label="+\\nq"' in dot and '"n_f" [label="*\\nf"' in dot
    assert run(capsys, "show", EX / "seed_add_mul.toml", "--stage", "graph", *ADD_MUL)[1] == dot


def test_graph_sigmoid_neuron(capsys):
    code, dot, _ = run(capsys, "show", EX / "seed_sigmoid_neuron.toml", "--stage", "graph", *SIGMOID,
                       "--digits", "2")
    assert code == 0
    e = edges(dot)
    assert e[("f", "out")] == ("0.73", "1")
    assert e[("f_4", "f")] == ("1.37", "-0.53")
    assert e[("f_3", "f_4")] == ("0.37", "-0.53")
    assert e[("f_2", "f_3")] == ("-1", "-0.20")
    assert e[("s", "f_2")] == ("1", "0.20")
    assert e[("w0", "s_2")] == ("2", "-0.20") and e[("x0", "s_2")] == ("-1", "0.39")
    assert e[("w1", "s_3")] == ("-3", "-0.39") and e[("x1", "s_3")] == ("-2", "-0.59")
    assert e[("w2", "s")] == ("-3", "0.20")
    consts = [k for k in e if k[0].startswith("c")]
    assert consts and all(e[k][1] is None for k in consts)        # a constant gets no gradient


def test_graph_norm_wx_arrays(capsys):
    code, dot, _ = run(capsys, "show", EX / "seed_norm_wx.toml", "--stage", "graph", *NORM_WX)
    assert code == 0
    e = edges(dot)
    assert e[("W", "q")] == ("[[0.100, 0.500], [-0.300, 0.800]]", "[[0.088, 0.176], [0.104, 0.208]]")
    assert e[("x", "q")] == ("[0.200, 0.400]", "[-0.112, 0.636]")
    assert e[("q", "f_2")] == ("[0.220, 0.260]", "[0.440, 0.520]")
    assert e[("f", "out")] == ("0.116", "1")
    assert '"n_W" [label="W [2,2]"' in dot


def test_graph_large_arrays_are_summarised(capsys):
    code, dot, _ = run(capsys, "show", EX / "seed_three_layer.toml", "--stage", "graph")
    assert code == 0
    assert re.search(r'"n_W1" -> "n_h1_2" \[label=<<font color="#1b7a1b">\[4,3\] mean -?[0-9.]+ min '
                     r'-?[0-9.]+ max -?[0-9.]+</font><br/>', dot)


def test_graph_to_dot_file(capsys, tmp_path):
    path = tmp_path / "g.dot"
    code, out, _ = run(capsys, "show", EX / "seed_add_mul.toml", "--stage", "graph", *ADD_MUL, "-o", path)
    assert code == 0 and out == f"wrote {path}\n"
    assert edges(path.read_text())[("f", "out")] == ("-12", "1")


def test_graph_image_without_graphviz_says_how_to_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("gradc.explain.shutil.which", lambda name: None)
    code, out, err = run(capsys, "show", EX / "seed_add_mul.toml", "--stage", "graph", "-o", tmp_path / "g.svg")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "needs Graphviz's `dot` program" in err and "apt-get install graphviz" in err
    assert not (tmp_path / "g.svg").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
@pytest.mark.parametrize("suffix", ["svg", "png"])
def test_graph_image_with_graphviz(capsys, tmp_path, suffix):
    path = tmp_path / f"g.{suffix}"
    code, _, err = run(capsys, "show", EX / "seed_sigmoid_neuron.toml", "--stage", "graph", *SIGMOID, "-o", path)
    assert code == 0, err
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in data and b"0.731" in data


def test_image_output_only_for_the_graph(capsys, tmp_path):
    code, _, err = run(capsys, "show", EX / "seed_add_mul.toml", "--stage", "ir", "-o", tmp_path / "x.svg")
    assert code == 2 and "only --stage graph" in err


# ------------------------------------------------------------------ rule comments
def test_adjoint_code_names_the_notes_patterns(capsys):
    code, out, _ = run(capsys, "show", EX / "seed_add_mul.toml", "--stage", "code")
    assert code == 0
    assert "    q_bar = z  # mul: swaps the inputs\n" in out
    assert "    x_bar = q_bar  # add: distributes the gradient\n" in out


MAXMIN = """
[inputs]
a = { shape = [3] }
b = { shape = [3] }
[graph]
f = "sum(maximum(a, b) + minimum(a, b))"
[output]
value = "f"
wrt = ["a", "b"]
"""


def test_max_min_notes():
    code = build(MAXMIN).code
    assert code.count("# max: routes to the larger input") == 2
    assert code.count("# min: routes to the smaller input") == 2


@pytest.mark.parametrize("left, right, expr, notes", [
    ("[2, 3]", "[3, 4]", "A @ B", ["∂L/∂A = ∂L/∂f_2 Bᵀ", "∂L/∂B = Aᵀ ∂L/∂f_2"]),       # matrix-matrix
    ("[2, 3]", "[3]", "A @ B", ["∂L/∂A = ∂L/∂f_2 Bᵀ", "∂L/∂B = Aᵀ ∂L/∂f_2"]),          # matrix-vector
    ("[3]", "[3, 4]", "A @ B", ["∂L/∂A = B ∂L/∂f_2", "∂L/∂B = A ∂L/∂f_2ᵀ"]),           # vector-matrix
    ("[3]", "[3]", "A @ B", ["∂L/∂A = ∂L/∂f_2 B", "∂L/∂B = ∂L/∂f_2 A"]),               # dot product
    ("[5, 3]", "[3, 4]", "A @ B", ["∂L/∂A = ∂L/∂f_2 Bᵀ", "∂L/∂B = Aᵀ ∂L/∂f_2"]),
])
def test_matmul_notes_per_case(left, right, expr, notes):
    spec = (f'[inputs]\nA = {{ shape = {left} }}\nB = {{ shape = {right} }}\n[graph]\nf = "sum(({expr}) ** 2)"\n'
            f'[output]\nvalue = "f"\nwrt = ["A", "B"]\n')
    art = build(spec)
    for note in notes:
        assert f"# matmul: {note}\n" in art.code, (note, art.code)
        assert f"; matmul: {note}" in art.show("adjoint")


def test_no_comments(capsys, tmp_path):
    with_c = run(capsys, "show", EX / "seed_norm_wx.toml", "--stage", "code")[1]
    without = run(capsys, "show", EX / "seed_norm_wx.toml", "--stage", "code", "--no-comments")[1]
    assert "  # matmul: ∂L/∂W = ∂L/∂q xᵀ" in with_c and "  # pow:" in with_c
    assert "∂L" not in without and "  # pow:" not in without
    body = without.split('"""Value and gradient', 1)[1]
    assert not [line for line in body.splitlines() if re.search(r"\S\s+# ", line)]   # no trailing comments
    def strip(text):                          # the code without comments and the cache key
        return [re.sub(r"  # .*", "", line) for line in text.split('"""Value and gradient', 1)[1].splitlines()
                if not line.startswith("SOURCE_HASH = ")]
    assert strip(with_c) == strip(without)                     # same code otherwise
    assert build(EX / "seed_norm_wx.toml", comments=False).key != build(EX / "seed_norm_wx.toml").key
    out = tmp_path / "nc.py"
    code, _, _ = run(capsys, "compile", EX / "seed_norm_wx.toml", "-o", out, "--no-comments", "--no-load")
    assert code == 0 and "∂L" not in out.read_text() and "def value_and_grad(" in out.read_text()


# ------------------------------------------------------------------ the AD record
def test_grad_records_cotangents_and_contributions():
    art = build(EX / "seed_add_mul.toml")
    steps = []
    full = grad(art.primal, art.lowered.wrt, record=steps)
    assert [s.stmt.out.name for s in steps] == ["f", "q"]
    f_step, q_step = steps
    assert f_step.stmt.op == "mul" and f_step.fan_in == 1
    assert [c.name for c in f_step.contribs] == ["q_bar", "z_bar"]
    assert q_step.upstream is f_step.contribs[0]
    assert [c.name for c in q_step.contribs] == ["x_bar", "y_bar"]
    defined = {id(s.out) for s in full.stmts}
    assert all(id(c) in defined for st in steps for c in st.contribs)
    # recording changes nothing
    plain = grad(art.primal, art.lowered.wrt)
    from gradc.ir import format_function
    assert format_function(plain) == format_function(full)


def test_trace_module_is_plain_python_in_the_cache():
    from gradc.explain import backprop
    from gradc.runtime.loader import cache_dir

    bp = backprop(EX / "seed_add_mul.toml", ["x=-2", "y=5", "z=-4"])
    assert bp.trace_path.parent == cache_dir().resolve() and bp.trace_path.name.startswith("seed_add_mul_trace_")
    assert bp.values["f"] == -12.0 and bp.values["x_bar"] == -4.0 and bp.values["z_bar"] == 3.0
    text = bp.trace_path.read_text()
    assert text.startswith("# Generated by gradc ")
    assert "numba" not in text and "def trace(x, y, z):" in text
    assert "    q_bar = 1.0 * z  # mul: swaps the inputs\n" in text   # the adjoint before optimization
    assert "'q_bar': q_bar," in text


# ------------------------------------------------------------------ bad --at input
@pytest.mark.parametrize("spec, at, message", [
    ("seed_add_mul", ["foo=1"], "--at 'foo=1': unknown name 'foo'; the arguments are x, y, z"),
    ("seed_add_mul", ["x"], "--at 'x': expected NAME=VALUE"),
    ("seed_add_mul", ["x=[1,2]"], "--at x: expected shape [], got [2]"),
    ("seed_add_mul", ["x=1+"], "--at x: malformed value '1+'"),
    ("seed_add_mul", ["x=__import__('os').system('echo hi')"], "--at x: malformed value"),
    ("seed_add_mul", ["x='a'"], "is not a number or nested lists of numbers"),
    ("seed_add_mul", ["x=True"], "is not a number or nested lists of numbers"),
    ("seed_add_mul", ["x=1", "x=2"], "--at x is given twice"),
    ("seed_norm_wx", ["W=[[1,2],[3]]"], "--at W: the nested lists in '[[1,2],[3]]' are ragged"),
    ("seed_norm_wx", ["W=[1,2]"], "--at W: expected shape [2,2], got [2]"),
    ("seed_norm_wx", ["W=[[1,2,3],[4,5,6]]"], "--at W: expected shape [2,2], got [2,3]"),
    ("seed_relu_2layer", ["X=[[1,2,3]]", "T=[[1,2],[3,4]]"], "--at T: dimension 'batch' is 2 here but 1 from --at X"),
    ("mlp_digits", ["y=[1,20]"], "--at y: labels must be in [0, 10)"),
    ("mlp_digits", ["y=[0.5]"], "--at y: labels must be integers"),
])
@pytest.mark.parametrize("command", [["explain"], ["show", "--stage", "graph"]])
def test_bad_at_is_a_one_line_error(capsys, spec, at, message, command):
    code, out, err = run(capsys, *command, EX / f"{spec}.toml", "--at", *at)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradc: error: ")
    assert message in lines[0]
    assert "hi\n" not in out


def test_dim_conflicts_with_at(capsys):
    code, _, err = run(capsys, "explain", EX / "seed_relu_2layer.toml", "--dim", "batch=4", "--at", "X=[[1,2,3]]")
    assert code == 2 and "dimension 'batch' is 1 here but 4 from --dim" in err


def test_explain_in_a_subprocess(tmp_path):
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "gradc", "explain", str(EX / "seed_add_mul.toml"), *ADD_MUL],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert row(table(r.stdout), "f", "q")["gradient"] == "-4"
    r = subprocess.run([sys.executable, "-m", "gradc", "explain", str(EX / "seed_add_mul.toml"), "--at", "x=[[1"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("gradc: error: --at x: malformed value") and len(r.stderr.splitlines()) == 1


def test_number_formats():
    import numpy as np

    from gradc.explain import fmt_num, fmt_value

    assert [fmt_num(v) for v in (-12.0, 3.0, 0.0, -0.0)] == ["-12", "3", "0", "0"]
    assert fmt_num(0.7310585786, 2) == "0.73" and fmt_num(-0.19661193, 2) == "-0.20"
    assert fmt_num(1e-5) == "1.00e-05" and fmt_num(2.5e7 + 0.5) == "2.50e+07" and fmt_num(2.5e7) == "25000000"
    assert fmt_num(float("nan")) == "nan" and fmt_num(float("-inf")) == "-inf"
    assert fmt_value(np.array([[0.1, 0.5], [-0.3, 0.8]]), 1) == "[[0.1, 0.5], [-0.3, 0.8]]"
    assert fmt_value(np.ones((3, 4))) == "[3,4] all 1"
    assert fmt_value(np.arange(6.0)) == "[6] mean 2.500 min 0 max 5"
    assert fmt_value(np.arange(6)) == "[6] [0, 1, 2, 3, ...]"
    assert fmt_value(np.array([True, False, True, True, False])) == "[5] 3 of 5 true"


# ------------------------------------------------------------------ names from the spec, terminal width
def test_rows_name_the_spec_expression_they_come_from(capsys):
    code, out, _ = run(capsys, "explain", EX / "mlp_digits.toml")
    assert code == 0
    rows = table(out)
    expr = {r["node"]: r["expression"] for r in rows}
    assert expr["h"] == "tanh(X @ W1 + b1)" and expr["h_3"] == "X @ W1 + b1" and expr["h_2"] == "X @ W1"
    assert expr["scores"] == "h @ W2 + b2" and expr["scores_2"] == "h @ W2"
    assert expr["loss_2"] == "softmax_cross_entropy(scores, y)"
    assert expr["loss_4"] == "W1 ** 2" and expr["loss_7"] == "sum(W2 ** 2)"
    assert expr["loss_9"] == "1e-4 * (sum(W1 ** 2) + sum(W2 ** 2))"
    assert expr["loss_3"].startswith("mean(softmax_cross_entropy(") and expr["loss_3"].endswith("…")
    assert expr["X"] == "" and row(rows, "X")["op"] == "input"


@pytest.mark.parametrize("width", [80, 120])
def test_explain_fits_the_width(capsys, width):
    code, out, _ = run(capsys, "explain", EX / "mlp_digits.toml", "--width", width)
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= width
    assert "gradients sent down to each node's operands:" in out        # split in two tables
    for text in ("softmax_cross_entropy", "∂L/∂W2", "loss_9", "W2ᵀ", "1.00e-04"):
        assert text in out
    code, wide, _ = run(capsys, "explain", EX / "mlp_digits.toml", "--width", 0)
    assert max(len(line) for line in wide.splitlines()) > 200 and "gradients sent down" not in wide


def test_explain_uses_the_terminal_width_only_on_a_terminal(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "90")
    _, piped, _ = run(capsys, "explain", EX / "mlp_digits.toml")         # capsys: not a terminal
    assert max(len(line) for line in piped.splitlines()) > 200
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    _, term, _ = run(capsys, "explain", EX / "mlp_digits.toml")
    assert max(len(line) for line in term.splitlines()) <= 90


def test_unknown_dim_names_the_spec_dims(capsys):
    code, out, err = run(capsys, "explain", EX / "mlp_digits.toml", "--dim", "foo=3")
    assert code == 2 and out == ""
    assert "--dim foo: mlp_digits.toml has no dimension 'foo'; its symbolic dimensions are batch" in err
    code, _, err = run(capsys, "show", EX / "seed_add_mul.toml", "--stage", "graph", "--dim", "batch=3")
    assert code == 2 and "it has no symbolic dimensions" in err


def test_large_graph_runs_top_to_bottom_in_spec_line_clusters(capsys):
    code, dot, _ = run(capsys, "show", EX / "mlp_digits.toml", "--stage", "graph")
    assert code == 0 and "rankdir=TB;" in dot
    labels = re.findall(r"subgraph cluster_\d+ \{\n    label=\"(.*?)\";", dot)
    assert labels == ['mlp_digits.toml:19: h = \\"tanh(X @ W1 + b1)\\"', 'mlp_digits.toml:20: scores = \\"h @ W2 + b2\\"',
                      'mlp_digits.toml:21: loss = \\"mean(softmax_cross_entropy(scores, y)) + 1e-4 * '
                      '(sum(W1 ** 2) + sum(W2 ** 2))\\"']
    assert "[3,10]<br/>mean " in dot                                       # summaries on two lines
    code, small, _ = run(capsys, "show", EX / "seed_add_mul.toml", "--stage", "graph", *ADD_MUL)
    assert "rankdir=LR;" in small and "subgraph" not in small             # the lecture figures' layout


# ------------------------------------------------------------------ a convolutional network
CNN = EX / "cnn_digits.toml"
SUMMARY = r"\[{shape}\] (?:mean \S+ min \S+ max \S+|all \S+)"


def test_explain_cnn_summarises_arrays_and_names_the_conv_rules(capsys):
    code, out, err = run(capsys, "explain", CNN, "--batch", "2")
    assert code == 0, err
    assert "[[" not in out                                   # no array printed in full
    assert re.search(r"\n  X +\= " + SUMMARY.format(shape="2,64") + "\n", out)
    assert re.search(r"\n  K2 += " + SUMMARY.format(shape="32,16,3,3") + "\n", out)
    rows = table(out)
    assert max(len(c) for r in rows for c in r.values()) <= 80
    conv2 = row(rows, "h2_2", "h1")
    assert conv2["op"] == "conv2d" and conv2["expression"] == "conv2d(h1, K2, c2, padding=1)"
    assert re.fullmatch(SUMMARY.format(shape="2,32,4,4"), conv2["value"])
    assert re.fullmatch(SUMMARY.format(shape="2,16,4,4"), conv2["gradient"])
    assert conv2["local"] == "—"                               # a Jacobian: the rule says how
    assert conv2["rule"] == "conv2d: ∂L/∂x = the full convolution of ∂L/∂y with the flipped weights"
    assert row(rows, "h2_2", "K2")["rule"] == "conv2d: ∂L/∂W = the correlation of the input with ∂L/∂y"
    assert row(rows, "h1_2", "K1")["rule"] == "conv2d: ∂L/∂W = the correlation of the input with ∂L/∂y"
    # max_pool2d(relu(z)) is computed as relu(max_pool2d(z)) (gradc.passes.commute), as shown
    assert row(rows, "h1_3", "h1_2")["rule"] == "max_pool2d: routes g to the first maximum of each window"
    relu = row(rows, "h1", "h1_3")                             # elementwise: a local gradient of 0s and 1s
    assert relu["op"] == "relu" and re.fullmatch(r"\[2,16,4,4\] mean \S+ min 0 max 1", relu["local"])
    # a parameter used once: its gradient (input row) is the one contribution its conv sends down
    for node, name in (("h1_2", "K1"), ("h1_2", "c1"), ("h2_2", "K2"), ("scores_3", "W")):
        assert row(rows, name)["upstream"] == row(rows, node, name)["gradient"], name


def test_graph_of_the_cnn_is_summarised_and_laid_out_top_to_bottom(capsys, tmp_path):
    code, dot, err = run(capsys, "show", CNN, "--stage", "graph", "--batch", "2")
    assert code == 0, err
    assert "[[" not in dot
    assert "rankdir=TB;" in dot                              # left to right it is a strip of 5000 pixels
    labels = re.findall(r"subgraph cluster_\d+ \{\n    label=\"(.*?)\";", dot)
    assert [label.split(": ", 1)[0] for label in labels] == [f"cnn_digits.toml:{n}" for n in range(22, 27)]
    e = edges(dot)
    value, gradient = e[("h1_2", "h1_3")]                    # conv2d -> max_pool2d: [2,16,8,8] over mean/min/max
    assert re.fullmatch(r"\[2,16,8,8\]<br/>mean \S+ min \S+ max \S+", value)
    assert re.fullmatch(r"\[2,16,8,8\]<br/>mean \S+ min \S+ max \S+", gradient)
    assert re.fullmatch(r"\[16,1,3,3\]<br/>mean \S+ min \S+ max \S+", e[("K1", "h1_2")][1])
    assert e[("X", "img")][1] is None                          # X is not differentiated
    assert '"n_h2_2" [label="conv2d\\nh2_2"' in dot and '"n_h1_3" [label="max_pool2d\\nh1_3"' in dot
    assert '"n_h1" [label="relu\\nh1"' in dot              # relu(max_pool2d(z)), gradc.passes.commute
    if shutil.which("dot"):
        path = tmp_path / "cnn.png"
        code, _, err = run(capsys, "show", CNN, "--stage", "graph", "--batch", "2", "-o", path)
        assert code == 0, err
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG")
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width < 3 * height, (width, height)


def test_cnn_code_names_the_conv_adjoint_rules(capsys):
    wrt_w = "  # conv2d: ∂L/∂W = the correlation of the input with ∂L/∂y\n"
    wrt_x = "  # conv2d: ∂L/∂x = the full convolution of ∂L/∂y with the flipped weights\n"
    code, out, err = run(capsys, "show", CNN, "--stage", "code")
    assert code == 0, err
    assert re.search(r"\n +K2_bar = _conv2d_vjp_w\(.*\)" + re.escape(wrt_w), out)
    assert re.search(r"\n +K1_bar = _conv2d_vjp_w\(.*\)" + re.escape(wrt_w), out)
    assert re.search(r"\n +h1_bar = _conv2d_vjp_x\(.*\)" + re.escape(wrt_x), out)
    assert out.count(wrt_w) == 2 and out.count(wrt_x) == 1        # X is no wrt: the first conv's dx is not made
    # differentiated with respect to the image (the saliency spec): both convs' dx, no dW
    code, out, err = run(capsys, "show", EX / "cnn_digits_class_score.toml", "--stage", "code")
    assert code == 0, err
    assert out.count(wrt_x) == 2 and out.count(wrt_w) == 0
