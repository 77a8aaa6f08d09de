"""Coverage-guided fuzzing of the spec loader with atheris (optional; not collected by pytest).

    pip install atheris
    python tests/fuzz_spec_atheris.py -max_total_time=300 [corpus_dir]

Each input is decoded as UTF-8 (invalid bytes replaced) and built as spec text
(``gradc.pipeline.build``, no Numba). A :class:`gradc.GradcError` is the
expected outcome for bad input; any other exception, a build slower than
:data:`LIMIT_S` seconds, or generated code whose top level is not inert is a
crash that atheris reports (with the input saved as ``crash-*``). The seeds are
the example specs. ``tests/test_fuzz.py`` is the Hypothesis counterpart that
runs in CI.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from gradc import GradcError
    from gradc.pipeline import build

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_fuzz import inert  # noqa: E402

LIMIT_S = 10.0


def one_input(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    if "\n" not in text:
        text += "\n"                      # spec text, not a file name
    start = time.perf_counter()
    try:
        art = build(text)
    except GradcError as e:
        assert "\n" not in str(e), repr(str(e))
        art = None
    elapsed = time.perf_counter() - start
    if elapsed > LIMIT_S:
        raise AssertionError(f"build took {elapsed:.1f} s")
    if art is not None:
        inert(art.code)


def main() -> None:
    argv = list(sys.argv)
    corpus = [a for a in argv[1:] if not a.startswith("-")]
    if not corpus:                        # seed a corpus folder with the example specs
        folder = Path("fuzz-corpus")
        folder.mkdir(exist_ok=True)
        for spec in (Path(__file__).resolve().parent.parent / "examples").glob("*.toml"):
            (folder / spec.name).write_bytes(spec.read_bytes())
        argv.append(str(folder))
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
