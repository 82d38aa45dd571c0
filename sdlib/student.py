"""Make the student notebooks: every solution replaced by a stub that raises NotImplementedError.

In the lesson notebooks each exercise's solution sits between nbgrader-style markers:

    def kl_gaussian(mu1, sigma1, mu2, sigma2):
        ### BEGIN SOLUTION
        return ...
        ### END SOLUTION

`python -m sdlib.student` (or the console command `sdlib-student`) writes a copy of every
notebook in notebooks/ to student/, with the lines between the markers replaced by

        # YOUR CODE HERE
        raise NotImplementedError("Exercise: ...")

at the marker's indentation. Outputs are cleared; the checker cells stay, so a student who runs
a stub sees the checker say that the exercise is not written yet.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION\s*$")
_END_RE = re.compile(r"^[ \t]*### END SOLUTION\s*$")
STUB = 'raise NotImplementedError("Exercise: replace this line with your solution")'


class MarkerError(ValueError):
    """Solution markers that do not pair up."""


def strip_solutions(source: str, where: str = "cell") -> tuple[str, int]:
    """Replace every marked solution in `source` by a stub. Returns (new source, number replaced)."""
    out, inside, count, indent = [], False, 0, ""
    for number, line in enumerate(source.splitlines(), start=1):
        begin, end = _BEGIN_RE.match(line), _END_RE.match(line)
        if begin:
            if inside:
                raise MarkerError(f"{where}, line {number}: '{BEGIN}' inside another solution")
            inside, indent = True, begin.group("indent")
            out += [f"{indent}# YOUR CODE HERE", f"{indent}{STUB}"]
            count += 1
        elif end:
            if not inside:
                raise MarkerError(f"{where}, line {number}: '{END}' without a '{BEGIN}' before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: '{BEGIN}' is never closed by '{END}'")
    return "\n".join(out), count


def has_solution(source: str) -> bool:
    return any(_BEGIN_RE.match(line) for line in source.splitlines())


def make_student_notebook(src: str | Path, dst: str | Path) -> int:
    """Write the student version of notebook `src` to `dst`. Returns how many solutions were removed."""
    nb = nbformat.read(str(src), as_version=4)
    total = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.source, n = strip_solutions(cell.source, where=f"{Path(src).name}, cell {index}")
            total += n
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("widgets", None)
    nb.metadata.pop("widgets", None)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dst))
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdlib.student", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="lesson notebooks (default: every notebooks/*.ipynb of the checkout)")
    parser.add_argument("--out", type=Path, default=Path("student"), help="folder to write into (default: student/)")
    args = parser.parse_args(argv)
    sources = args.notebooks
    if not sources:
        from .runtime import project_dir

        root = project_dir() or Path.cwd()
        sources = sorted((root / "notebooks").glob("[0-9]*.ipynb"))
        if not sources:
            parser.error("no notebooks given and none found in notebooks/")
    for src in sources:
        dst = args.out / src.name
        n = make_student_notebook(src, dst)
        print(f"{dst}: {n} exercise(s) stubbed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
