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
