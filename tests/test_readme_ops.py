"""README's expression-language section lists every function of the spec language, and only
those: the list between the ``spec functions`` markers is generated from the op table
(``gradc.ops.OPS``: each entry's ``spelling``, ``aliases``, ``operands``, ``consts`` and
``keywords``), and the functions the hand-written table explains must exist there.

``python tests/test_readme_ops.py`` rewrites the generated list after the op table changed.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from gradc.ops import OPS, REQUIRED

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- BEGIN spec functions: generated from gradc.ops.OPS by tests/test_readme_ops.py -->"
END = "<!-- END spec functions -->"


def signature(op) -> str:
    """``leaky_relu(x, slope=0.1)``, ``lp_pool(x, p, axis=1)``, ``sum(x[, axis])``: operands, then
    the constants (``name`` if required, ``name=default``, or ``[, name]`` if optional without a
    default), then the keyword-only constants."""
    parts = list(op.operands[:len(op.operands) - op.optional]) if not op.variadic else [f"[{op.operands[0]}]"]
    parts[-1] += "".join(f"[, {o}]" for o in op.operands[len(op.operands) - op.optional:])   # conv2d(x, W[, b])
    optional = ""
    for c in op.consts + op.keywords:
        if c.default is None:                         # optional, no default value: sum(x[, axis])
            optional += f"[, {c.name}]"
        else:
            parts.append(c.name if c.default is REQUIRED else f"{c.name}={c.default!r}")
    text = f"`{op.spelling}({', '.join(parts)}{optional})`"
    if op.aliases:
        text += " (also " + ", ".join(f"`{a}`" for a in op.aliases) + ")"
    return text


def function_table() -> str:
    """The generated Markdown table: one row per op family, its spelled functions in table order."""
    families: dict[str, list[str]] = {}
    for op in OPS.values():
        if op.spelling:
            families.setdefault(op.family, []).append(signature(op))
    rows = ["| family | functions |", "|---|---|"]
    rows += [f"| {family} | {' '.join(sigs)} |" for family, sigs in families.items()]
    return "\n".join(rows)


def readme_block(text: str) -> str:
    assert BEGIN in text and END in text, "README.md lost the spec functions markers"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def test_readme_lists_every_spec_function():
    assert readme_block(README.read_text(encoding="utf-8")) == function_table(), (
        "README.md's list of spec functions differs from gradc.ops.OPS: run `python tests/test_readme_ops.py`")


def test_every_spelled_op_is_listed_once():
    block = readme_block(README.read_text(encoding="utf-8"))
    listed = re.findall(r"`(\w+)\(", block)
    spelled = [op.spelling for op in OPS.values() if op.spelling]
    assert sorted(listed) == sorted(spelled) and len(set(listed)) == len(listed)
    assert len(spelled) >= 40                     # the parser knows far more than the explained table


def test_explained_functions_exist():
    """Every ``name(`` in the hand-written table of the expression language section is a spec function."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### The expression language", 1)[1].split(BEGIN, 1)[0]
    first = re.findall(r"^\| ([^|]+) \|", section, re.M)[2:]          # the function column, no header
    names = {n for cell in first for n in re.findall(r"`(\w+)\(", cell)} | {
        w for cell in first for m in re.findall(r"`([a-z_ ]+)`", cell) for w in m.split()}
    known = {op.spelling for op in OPS.values() if op.spelling} | {a for op in OPS.values() for a in op.aliases}
    assert names and names <= known, names - known


if __name__ == "__main__":
    text = README.read_text(encoding="utf-8")
    new = text.split(BEGIN, 1)[0] + BEGIN + "\n" + function_table() + "\n" + END + text.split(END, 1)[1]
    README.write_text(new, encoding="utf-8")
    print("README.md: spec functions" + (" rewritten" if new != text else " unchanged"), file=sys.stderr)
