"""Smoke test of the benchmark runner (``python -m benchmarks --quick``): structure, not speed.

Two tiny scalar cases, gradc and hand-written NumPy only, so it stays well under
30 s; it checks that the runner writes its Markdown and JSON, that every job
ran in its own process and that no gradient mismatches the reference. There
are no timing assertions.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = ["add_mul", "sigmoid_neuron"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--cases", ",".join(CASES), "--frameworks", "gradc,numpy",
         "--no-gemm", "--repeats", "2", "--min-time", "0.001", "--out", str(out), "--name", "smoke"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out


def test_writes_markdown_and_json(quick_run):
    proc, out = quick_run
    md = (out / "smoke.md").read_text(encoding="utf-8")
    assert md.strip() == proc.stdout.strip()
    for heading in ("## value_and_grad, median time per call", "## forward only, median time per call",
                    "## cost(value_and_grad) ÷ cost(forward)", "## gradc through the public API", "## first call",
                    "## gradient check"):
        assert heading in md
    assert "| gradc raw | gradc public API |" in md and "public ÷ raw |" in md
    assert "gradc cold + first forward" in md
    assert "Threads: 1 (OMP_NUM_THREADS=1" in md
    assert "Mismatches: 0." in md


def test_json_structure_and_gradients(quick_run):
    _, out = quick_run
    data = json.loads((out / "smoke.json").read_text(encoding="utf-8"))
    meta = data["meta"]
    assert meta["threads"] == 1 and meta["thread_env"]["OPENBLAS_NUM_THREADS"] == "1"
    assert {"python", "numpy", "numba", "sympy"} <= set(meta["versions"])
    assert meta["frameworks_run"] == ["gradc", "numpy"]
    assert list(data["cases"]) == CASES
    pids = set()
    for name, entry in data["cases"].items():
        assert entry["reference"]["status"] == "ok" and entry["reference"]["ok"], entry["reference"]
        assert set(entry["results"]) == {"gradc_cold", "gradc", "numpy"}
        for fw, res in entry["results"].items():
            assert res["status"] == "ok", (name, fw, res)
            assert res["check"]["ok"], (name, fw, res["check"])
            assert res["first_call_s"] >= 0
            pids.add(res["pid"])
            if fw != "gradc_cold":
                for key in ("vg", "fwd"):
                    t = res[key]
                    assert t["repeats"] == 2 and t["number"] >= 1 and 0 < t["min"] <= t["median"]
        assert entry["results"]["gradc_cold"]["info"]["codegen_s"] >= 0
        assert entry["results"]["gradc_cold"]["first_forward_s"] >= 0
        for key in ("vg_public", "vg_public_kw"):      # the public API, positional and keyword calls
            t = entry["results"]["gradc"]["extra"][key]
            assert t["repeats"] == 2 and 0 < t["min"] <= t["median"] and t["check"]["ok"], (name, key, t)
    assert len(pids) == 3 * len(CASES)    # one process per framework, case and gradc mode
    s = data["summary"]
    assert s["mismatches"] == [] and s["errors"] == []
    assert set(s["cost_ratio"]["add_mul"]) == {"gradc", "numpy"}
    assert set(s["public_api"]["per_case"]) == set(CASES) and s["public_api"]["geomean_public_over_raw"] > 0


# --------------------------------------------------------------------------- derivative benchmarks (issue 11)

@pytest.fixture(scope="module")
def derivatives_run(tmp_path_factory):
    """``python -m benchmarks --derivatives``: gradc only, the sigmoid neuron's HVP and Hessian and the
    3-Gaussian Jacobian (3 worker processes)."""
    out = tmp_path_factory.mktemp("deriv")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--derivatives", "--frameworks", "gradc", "--cases",
         "sigmoid_neuron,gauss3_250", "--repeats", "2", "--min-time", "0.001", "--out", str(out), "--name", "smoke"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out


def test_derivatives_markdown_and_json(derivatives_run):
    proc, out = derivatives_run
    md = (out / "smoke.md").read_text(encoding="utf-8")
    assert md.strip() == proc.stdout.strip()
    for heading in ("## Hessian-vector product", "## Dense Hessians and the least-squares Jacobian",
                    "## Targets (issue 11)", "Problems: 0."):
        assert heading in md
    data = json.loads((out / "smoke.json").read_text(encoding="utf-8"))
    assert data["meta"]["frameworks_run"] == ["gradc"] and data["meta"]["threads"] == 1
    assert list(data["results"]) == ["hvp:sigmoid_neuron", "hessian:sigmoid_neuron", "jacobian:gauss3_250"]
    want = {"hvp": {"hvp", "hvp_public", "vg"}, "hessian": {"hessian", "hessian_public"},
            "jacobian": {"jacobian", "jacobian_public", "jacobian_fwd", "jacobian_rev"}}
    pids = set()
    for key, entry in data["results"].items():
        res = entry["by"]["gradc"]
        assert res["status"] == "ok", (key, res)
        pids.add(res["pid"])
        ref = res["reference"]
        assert ref.get("formula_ok", True) and ref.get("fd_self_err", 0) < 1e-6, ref
        assert set(res["variants"]) == want[entry["kind"]]
        for name, v in res["variants"].items():
            assert v["status"] == "ok" and v["check"]["ok"], (key, name, v)
            assert v["first_call_s"] >= 0 and 0 < v["time"]["min"] <= v["time"]["median"]
    assert len(pids) == 3
    s = data["summary"]
    assert s["problems"] == [] and s["hvp"]["sigmoid_neuron"]["gradc_hvp_over_vg"] > 0


def test_derivative_references_agree_with_finite_differences():
    """The hand-written Hessians and Jacobian the benchmarks check against, and the HVP reference."""
    import numpy as np

    from benchmarks import derivatives as d

    for name in ("rosenbrock_10", "rosenbrock_100", "sigmoid_neuron"):
        case = d.get_case(name)
        H = d.hessian_formula(case, case.inputs())
        fd, err = d.fd_hessian(case, case.inputs())
        assert err < 1e-7 and np.max(np.abs(H - fd)) <= 1e-7 * np.max(np.abs(H)), name
        v = np.random.default_rng(0).standard_normal(H.shape[0])
        hv, _ = d.fd_hvp(case, case.inputs(), v)
        assert np.max(np.abs(hv - H @ v)) <= 1e-7 * np.max(np.abs(H @ v)), name
    case = d.get_case("gauss3_250")
    J = case.reference()[1]["jacobian"]
    assert J.shape == (250, 9)
    assert np.max(np.abs(J - d.fd_jacobian(case, case.inputs()))) <= 1e-8 * np.max(np.abs(J))
    kinds = {k for k, _ in d.tasks()}
    assert kinds == {"hvp", "hessian", "jacobian"} and ("hvp", "mlp_784") in d.tasks()


# --------------------------------------------------------------------------- CNN benchmarks (issue 13)

@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """``python -m benchmarks.cnn``: gradc only, the digits CNN at batch 4 (the PyTorch reference process
    and one gradc process, cold compile included)."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("cnn")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cnn", "--frameworks", "gradc", "--cases", "digits_cnn", "--batch", "4",
         "--no-gemm", "--repeats", "2", "--min-time", "0.001", "--out", str(out), "--name", "smoke"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out


def test_cnn_markdown_and_json(cnn_run):
    proc, out = cnn_run
    md = (out / "smoke.md").read_text(encoding="utf-8")
    assert md.strip() == proc.stdout.strip()
    for heading in ("## value_and_grad, median time per call", "## forward only, median time per call",
                    "## First call", "## Targets (issue 13)", "Batch overridden: 4", "Problems: 0."):
        assert heading in md
    data = json.loads((out / "smoke.json").read_text(encoding="utf-8"))
    assert data["meta"]["frameworks_run"] == ["gradc"] and data["meta"]["threads"] == 1
    entry = data["results"]["digits_cnn"]
    ref = entry["reference"]
    assert ref["status"] == "ok" and ref["ok"] and ref["value_rel_err"] <= 1e-12, ref
    res = entry["by"]["gradc"]
    assert res["status"] == "ok" and res["first_call_s"] > 0
    assert set(res["variants"]) == {"vg", "fwd", "vg_public"}
    for name, v in res["variants"].items():
        assert v["check"]["ok"], (name, v["check"])
        assert 0 < v["time"]["min"] <= v["time"]["median"]
    assert res["value_vs_direct"] <= 1e-12                 # gradc's loss against the direct NumPy convolution
    assert data["summary"]["problems"] == []


def test_cnn_numpy_version_matches_direct_loss():
    """The hand-written NumPy im2col peer and the direct convolution agree (tiny batch, all three cases'
    layer kinds: padding, pooling, dense, and the conv layer's gradient w.r.t. its input)."""
    import numpy as np

    from benchmarks import cnn

    for name in cnn.CASES:
        a = cnn.inputs_of(name)
        if name == "conv_layer":   # a smaller copy of the layer: same code path
            a = {"x": a["x"][:2, :, :6, :6], "W": a["W"]}
            loss = float(np.sum(cnn.NumpyNet(name).run(*a.values(), grad=False)))
            direct = cnn.direct_loss(name, a)
        else:
            net = cnn.NumpyNet(name)
            a = {k: (v[:3] if k in ("X", "y") else v) for k, v in a.items()}
            loss, _ = net.run(*(a[n] for n in net.names))
            direct = cnn.direct_loss(name, a)
        assert abs(loss - direct) <= 1e-12 * abs(direct), name
