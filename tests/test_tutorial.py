"""docs/tutorial.md stays true: every ```console block is re-run and must print what it shows.

A block holds commands (``$ gradc ...`` or ``$ cat FILE``), each followed by its
output. Commands run in-process from the repository root (``gradc.cli.main``);
the output must match line by line (trailing spaces ignored), except that a
line ``...`` stands for any number of lines (used to skip the generated
module's header). ``python tests/test_tutorial.py`` prints every command's
current output, to paste into the tutorial after a deliberate change.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"


def console_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """``[(line number, command, expected output lines)]`` from the ```console blocks."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```console":
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            current = None
            for k in range(i + 1, j):
                if lines[k].startswith("$ "):
                    current = (k + 1, lines[k][2:], [])
                    out.append(current)
                else:
                    assert current is not None, f"tutorial.md:{k + 1}: output before any command"
                    current[2].append(lines[k])
            i = j
        i += 1
    return out


def run_command(command: str) -> tuple[int, str]:
    """Run ``gradc ARGS`` or ``cat FILE`` from the repository root; return (status, stdout + stderr)."""
    argv = shlex.split(command)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        if argv[0] == "cat" and len(argv) == 2:
            return 0, (ROOT / argv[1]).read_text(encoding="utf-8")
        assert argv[0] == "gradc", f"the tutorial may only run gradc and cat, not {argv[0]!r}"
        from gradc.cli import main

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            code = main(argv[1:])
        return code, buf.getvalue()
    finally:
        os.chdir(cwd)


def matches(expected: list[str], actual: list[str]) -> bool:
    pattern = "".join("(?:.*\n)*?" if line == "..." else re.escape(line.rstrip()) + "\n" for line in expected)
    return re.fullmatch(pattern, "".join(line.rstrip() + "\n" for line in actual)) is not None


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


BLOCKS = console_blocks(TUTORIAL.read_text(encoding="utf-8"))


def test_tutorial_has_the_notes_examples():
    commands = [c for _, c, _ in BLOCKS]
    for spec in ("seed_add_mul", "seed_sigmoid_neuron", "seed_norm_wx", "seed_three_layer"):
        for what in ("cat examples/{}.toml", "gradc show examples/{}.toml --stage ir",
                     "gradc show examples/{}.toml --stage adjoint", "gradc show examples/{}.toml --stage code",
                     "gradc explain examples/{}.toml"):
            assert any(c.startswith(what.format(spec)) for c in commands), what.format(spec)
    assert any("--stage graph" in c for c in commands)


@pytest.mark.parametrize("line, command, expected", BLOCKS, ids=[f"line{b[0]}" for b in BLOCKS])
def test_tutorial_command_prints_what_it_shows(line, command, expected):
    code, out = run_command(command)
    assert code == 0, f"tutorial.md:{line}: `{command}` exited with {code}:\n{out}"
    actual = _trim(out.splitlines())
    expected = _trim(expected)
    assert matches(expected, actual), (
        f"tutorial.md:{line}: `{command}` now prints:\n" + "\n".join(actual)
        + "\n\n(run `python tests/test_tutorial.py` to see every command's output)")


def test_readme_explain_example_is_current():
    command = "gradc explain examples/seed_add_mul.toml --at x=-2 y=5 z=-4"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = readme.split(f"$ {command}\n", 1)[1].split("```", 1)[0]
    code, out = run_command(command)
    assert code == 0 and shown.splitlines() == out.splitlines()


if __name__ == "__main__":
    for line, command, _ in BLOCKS:
        if len(sys.argv) > 1 and not any(a in command for a in sys.argv[1:]):
            continue
        print(f"==== tutorial.md:{line}\n$ {command}")
        print(run_command(command)[1].rstrip("\n"))
