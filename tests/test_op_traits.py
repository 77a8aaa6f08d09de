"""Every fact about an op is on its op-table entry (issue 10, point 2).

A new elementwise activation, ``softsign(x) = x / (1 + |x|)`` (derivative ``1 / (1 + |x|)²``;
Bergstra et al. 2009, Glorot & Bengio 2010), was added by touching two files only: its entry
in ``compiler/ops/elementwise.py`` and its macro in ``templates/ops/elementwise.j2``. These
tests check that this was enough: it is spelled in specs, differentiated correctly (central
finite differences and the closed form), computed inside a fused loop, re-rollable and shown
by ``gradc explain``. And the AD's `where` masking reads the ``elementwise`` trait, so
``binary_cross_entropy`` (elementwise, though a loss) passes the mask on to its operands.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc.cli import main
from gradc.ops import OPS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "cache"))


def central(f, x, h=1e-6):
    """Central differences of the scalar function ``f`` of one array ``x``."""
    g = np.zeros(x.shape)
    for j in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[j] += h
        down[j] -= h
        g[j] = (f(up) - f(down)) / (2 * h)
    return g


def softsign(x):
    return x / (1.0 + np.abs(x))


SOFTSIGN_MLP = """
[model]
name = "softsign_mlp"
[inputs]
X = { shape = [5, 3] }
[params]
W = { shape = [3, 4] }
[graph]
h = "softsign(X @ W)"
loss = "mean(h * h)"
[output]
value = "loss"
"""


def _mlp(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5, 3))
    W = rng.normal(size=(3, 4)) * 2.0          # |X W| up to ~10: both flat tails and the kink region
    f = gradc.compile(SOFTSIGN_MLP, out=tmp_path / "softsign_mlp.py")
    return f, X, W


# ------------------------------------------------------------------ two files
def test_softsign_is_named_in_exactly_two_files():
    """Its table entry and its macro: nothing else in the compiler, the templates or the runtime
    (no list of loop ops, rollable ops, spec functions or explain symbols) names it."""
    found = set()
    for folder in ("compiler", "templates", "runtime"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".j2", ".toml", ".md"):
                if "softsign" in path.read_text(encoding="utf-8"):
                    found.add(path.relative_to(ROOT).as_posix())
    assert found == {"compiler/ops/elementwise.py", "templates/ops/elementwise.j2"}


# ------------------------------------------------------------------ spelled, differentiated, fused
def test_softsign_spec_value_and_gradient(tmp_path):
    """The spec function exists through the entry's spelling; the value is the NumPy formula and
    the gradient matches central differences and the closed form 2/n h (1 + |XW|)^-2 chained through X."""
    f, X, W = _mlp(tmp_path)
    assert f.arg_names == ("X", "W") and f.wrt == ("W",)
    v, (gW,) = f.value_and_grad(X, W)
    loss = lambda W_: np.mean(softsign(X @ W_) ** 2)            # noqa: E731
    assert v == pytest.approx(loss(W), rel=1e-14)
    assert f.forward(X, W) == pytest.approx(loss(W), rel=1e-14)
    np.testing.assert_allclose(gW, central(loss, W), rtol=1e-6, atol=1e-9)
    Z = X @ W
    closed = X.T @ (2.0 / Z.size * softsign(Z) / (1.0 + np.abs(Z)) ** 2)
    np.testing.assert_allclose(gW, closed, rtol=1e-12, atol=1e-15)


def test_softsign_scalar_and_constant_folding(tmp_path):
    """Scalars too (one element code for every rank), and the entry's fold computes constants."""
    spec = "\n".join(["[model]", 'name = "ss_scalar"', "[inputs]", "x = { shape = [] }", "[graph]",
                      'out = "softsign(x) + softsign(-3.0) * x"', "[output]", 'value = "out"', 'wrt = ["x"]'])
    f = gradc.compile(spec, out=tmp_path / "ss_scalar.py")
    for x in (-4.0, -0.5, 0.0, 2.5):
        v, (g,) = f.value_and_grad(x)
        assert v == pytest.approx(x / (1 + abs(x)) - 0.75 * x, rel=1e-15, abs=1e-15)
        assert g == pytest.approx(1 / (1 + abs(x)) ** 2 - 0.75, rel=1e-15)
    assert "(-0.75) * x" in f.source                   # softsign(-3.0) folded by the entry's fold


def test_softsign_is_computed_in_a_fused_loop(tmp_path):
    """``loop=True`` on the entry is all it takes: softsign's element code sits in a
    ``for _i in range(...)`` loop nest of the generated module, with its neighbours."""
    f, X, W = _mlp(tmp_path)
    lines = f.source.splitlines()
    in_loop = []
    for k, line in enumerate(lines):
        m = re.match(r"(\s*)for _i in range\(", line)
        if m:
            indent = len(m[1])
            for body in lines[k + 1:]:
                if body.strip() and len(body) - len(body.lstrip()) <= indent:
                    break
                in_loop.append(body)
    assert any(re.search(r"/ \(1\.0 \+ np\.abs\(", body) for body in in_loop), "\n".join(lines)


def test_softsign_traits():
    """The traits set on the entry (the re-rolling pass reads ``rollable``; the back end
    ``loop``, ``kernel``, ``scalar_call``)."""
    op = OPS["softsign"]
    assert op.elementwise and op.loop and op.rollable and op.spelling == "softsign"
    assert not op.kernel and op.scalar_call is None      # plain arithmetic: no C call, no kernel


# ------------------------------------------------------------------ explain
def test_explain_shows_softsign(tmp_path, capsys):
    """The backprop table has softsign's row (value softsign(-2) = -2/3, local derivative
    1/(1 + 2)^2 = 1/9, gradient 3 · 1/9), and the graph labels its node."""
    path = tmp_path / "ss_explain.toml"
    path.write_text("\n".join(["[model]", 'name = "ss_explain"', "[inputs]", "x = { shape = [] }",
                               "[graph]", 'y = "softsign(x)"', 'f = "3 * y"',
                               "[output]", 'value = "f"', 'wrt = ["x"]']) + "\n")
    assert main(["explain", str(path), "--at", "x=-2"]) == 0
    out, err = capsys.readouterr()
    rows = [line.split() for line in out.splitlines() if line.startswith("y ")]
    assert rows == [["y", "softsign(x)", "softsign", "-0.667", "3", "x", "0.111", "0.333", "softsign:", "1/(1", "+",
                     "|x|)^2"]]                      # node, its spec expression, op, value, upstream, operand, ...
    assert main(["show", str(path), "--stage", "graph", "--at", "x=-2"]) == 0
    out, err = capsys.readouterr()
    assert '[label="softsign\\ny"]' in out


# ------------------------------------------------------------------ masking reads the trait
def test_binary_cross_entropy_passes_the_where_mask(tmp_path):
    """``where(x > 0, binary_cross_entropy(sqrt(x), t), 0)``: where x <= 0 the untaken branch's
    derivative is NaN (sqrt of a negative number) or inf (1/(2 sqrt(0))); the mask must reach
    sqrt's adjoint through the loss's, as it does through any elementwise op, giving 0 there.
    Reference: d/dx = (sigmoid(sqrt x) - t) / (2 sqrt x) where x > 0, else 0."""
    spec = "\n".join(["[model]", 'name = "bce_mask"', "[inputs]", "x = { shape = [6] }", "t = { shape = [6] }",
                      "[graph]", 'out = "sum(where(x > 0, binary_cross_entropy(sqrt(x), t), 0))"',
                      "[output]", 'value = "out"', 'wrt = ["x"]'])
    f = gradc.compile(spec, out=tmp_path / "bce_mask.py")
    x = np.array([-1.0, -0.25, 0.0, 0.3, 1.7, 4.0])
    t = np.array([0.2, 1.0, 0.0, 0.7, 0.1, 1.0])
    v, (gx,) = f.value_and_grad(x, t)
    pos = x > 0
    r = np.sqrt(np.where(pos, x, 1.0))
    sig = 1.0 / (1.0 + np.exp(-r))
    bce = np.maximum(r, 0) - r * t + np.log1p(np.exp(-np.abs(r)))
    assert v == pytest.approx(np.sum(np.where(pos, bce, 0.0)), rel=1e-14)
    want = np.where(pos, (sig - t) / (2.0 * r), 0.0)
    np.testing.assert_allclose(gx, want, rtol=1e-13, atol=0)
    fd = central(lambda x_: f.forward(x_, t), x)
    np.testing.assert_allclose(gx[pos], fd[pos], rtol=1e-6)
