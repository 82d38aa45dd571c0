"""A lesson is for a learner: it states what is true now, without the lab report around it. No lesson (text
or code) prints a recipe command, a path into docs/, the name of a test machine, or the word count of its
own text, and only appendix 03b, whose subject is CPU arithmetic, names instruction sets. The numbers and the
commands that made them live in docs/measured.md."""
import re

import nbformat
import pytest
from helpers import NOTEBOOKS

PATTERNS = {
    "a recipe command": r"python -m sdlib\.recipes",
    "a path into docs/": r"\bdocs/",
    "a test machine's name": r"\b(EPYC|Xeon|Ryzen|Threadripper)\b",
    "a word count": r"\b[0-9][0-9,]* words\)",
}
INSTRUCTION_SETS = r"\b(AVX[-0-9A-Z]*|AMX|SSE[0-9.]*|NEON)\b"


def offences(path) -> list[str]:
    nb = nbformat.read(str(path), as_version=4)
    found = []
    patterns = dict(PATTERNS)
    if not path.stem.startswith("03b_"):
        patterns["an instruction set's name"] = INSTRUCTION_SETS
    for number, cell in enumerate(nb.cells):
        for what, pattern in patterns.items():
            for match in re.finditer(pattern, cell.source):
                found.append(f"cell {number} ({cell.cell_type}): {what}, {match.group(0)!r}")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_lab_report_voice(path):
    found = offences(path)
    assert not found, "\n".join(found)


def test_the_check_finds_what_it_looks_for(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("Trained by `python -m sdlib.recipes.ddpm` (docs/measured.md), 2,100 words)."),
        nbformat.v4.new_code_cell('print("on the EPYC with AVX2 only")')])
    path = tmp_path / "01_example.ipynb"
    nbformat.write(nb, str(path))
    kinds = [line.split(": ")[1].split(",")[0] for line in offences(path)]
    assert sorted(kinds) == sorted(["a recipe command", "a path into docs/", "a word count", "a test machine's name",
                                    "an instruction set's name"])
