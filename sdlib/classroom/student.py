"""Make the student notebooks: every solution replaced by a stub that raises NotImplementedError.

In the lesson notebooks each exercise's solution sits between nbgrader-style markers:

    def kl_gaussian(mu1, sigma1, mu2, sigma2):
        ### BEGIN SOLUTION
        return ...
        ### END SOLUTION

`python -m sdlib.classroom.student` (or the console command `sdlib-student`) writes a copy of every
notebook in notebooks/ to student/, with the lines between the markers replaced, at the marker's
indentation, by

        # YOUR CODE HERE
        raise NotImplementedError("Exercise: ...")

in a code cell, and by "YOUR ANSWER HERE" in a markdown (or raw) cell. Outputs are cleared; the
checker cells stay, so a student who runs a stub sees the checker say that the exercise is not
written yet.

Which markers count. nbgrader's ClearSolutions treats any line that contains the text
"BEGIN SOLUTION" (case-sensitive) as a marker, whatever surrounds it. sdlib accepts the part of
that which cannot be misread: a line that holds nothing but the upper-case marker, either bare,
after one or more '#' (a Python comment; a heading in markdown), or inside an HTML comment,
which markdown does not display:

    ### BEGIN SOLUTION      ## END SOLUTION      #BEGIN SOLUTION
    <!-- BEGIN SOLUTION -->      END SOLUTION

Any other line that looks like a marker ("### begin solution", "### BEGIN_SOLUTION",
"x = 1  ### BEGIN SOLUTION", ...) is an error, as are a BEGIN inside a solution, an END without
a BEGIN and a BEGIN never closed: each would otherwise leak a solution, or cut away code that is
not one. A cell that nbgrader's metadata marks as a solution cell and that holds no markers is
replaced whole, as nbgrader does.

The tool never writes over a lesson: it refuses, before writing anything, an output that is one
of its inputs, that lies in the course's notebooks/ folder, or that already holds solution
markers. Each file is written to a temporary file beside it and then renamed over it, so an
interrupted run leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = 'raise NotImplementedError("Exercise: replace this line with your solution")'
CODE_STUB = ("# YOUR CODE HERE", STUB)
TEXT_STUB = ("YOUR ANSWER HERE",)

# A whole line that is an accepted marker (see the module docstring); `kind` is BEGIN or END.
_MARKER_RE = re.compile(
    r"^[ \t]*"
    r"(?:#+[ \t]*(?P<hashed>BEGIN|END) SOLUTION"
    r"|<!--[ \t]*(?P<html>BEGIN|END) SOLUTION[ \t]*-->"
    r"|(?P<bare>BEGIN|END) SOLUTION)"
    r"[ \t]*$"
)
# Anything a person or nbgrader might take for a marker. Broad on purpose: a false alarm costs
# the author one edit, a miss hands the solution to every student.
_LOOKS_LIKE_MARKER_RE = re.compile(r"\b(?:BEGIN|END)[ \t_-]*SOLUTIONS?\b", re.IGNORECASE)

HOW_TO_WRITE = (f"write each marker on a line of its own, in upper case, as '{BEGIN}' and '{END}' "
                "(or '<!-- BEGIN SOLUTION -->' in markdown)")
CHOOSE_ANOTHER = "Nothing was written; choose another --out folder, such as student/."


def course_dir() -> Path | None:
    """The course checkout that holds this sdlib, as sdlib.runtime.project_dir finds it.

    Not imported from sdlib.runtime, which imports torch: seconds that this tool has no use for.
    """
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() and (root / "notebooks").is_dir() else None


class StudentError(Exception):
    """Why no student notebook was made; the message says what to change."""


class MarkerError(StudentError, ValueError):
    """Solution markers that are malformed or do not pair up."""


class OutputRefused(StudentError):
    """An output path that would overwrite a lesson."""


def _marker_kind(line: str) -> str | None:
    match = _MARKER_RE.match(line)
    if match is None:
        return None
    return match.group("hashed") or match.group("html") or match.group("bare")


def strip_solutions(source: str, where: str = "cell", stub: tuple[str, ...] = CODE_STUB) -> tuple[str, int]:
    """Replace every marked solution in `source` by `stub`. Returns (new source, number replaced).

    `where` names the cell in error messages.
    """
    out, begun_at, count = [], None, 0
    for number, line in enumerate(source.splitlines(), start=1):
        kind = _marker_kind(line)
        if kind is None and _LOOKS_LIKE_MARKER_RE.search(line):
            raise MarkerError(f"{where}, line {number}: {line.strip()!r} looks like a solution marker "
                              f"but is not one that sdlib accepts; {HOW_TO_WRITE}")
        if kind == "BEGIN":
            if begun_at is not None:
                raise MarkerError(f"{where}, line {number}: a BEGIN SOLUTION inside the solution "
                                  f"begun on line {begun_at}; close that one first")
            begun_at, count = number, count + 1
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + stub_line for stub_line in stub]
        elif kind == "END":
            if begun_at is None:
                raise MarkerError(f"{where}, line {number}: an END SOLUTION without a BEGIN SOLUTION "
                                  "before it")
            begun_at = None
        elif begun_at is None:
            out.append(line)
    if begun_at is not None:
        raise MarkerError(f"{where}, line {begun_at}: a BEGIN SOLUTION that is never closed by an END SOLUTION")
    return "\n".join(out), count


def has_solution(source: str) -> bool:
    """Whether `source` holds an accepted BEGIN SOLUTION marker."""
    return any(_marker_kind(line) == "BEGIN" for line in source.splitlines())


def has_marker_text(text: str) -> bool:
    """Whether `text` (a cell, or a whole .ipynb file) holds anything that looks like a marker."""
    return _LOOKS_LIKE_MARKER_RE.search(text) is not None


def _is_nbgrader_solution_cell(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def student_version(nb: nbformat.NotebookNode, name: str = "notebook") -> int:
    """Turn the lesson `nb` into its student version in place. Returns how many solutions were removed.

    `name` (the notebook's file name) goes into error messages, with the cell's index and first line.
    """
    total = 0
    for index, cell in enumerate(nb.cells):
        first_line = cell.source.splitlines()[0].strip() if cell.source.strip() else ""
        where = f"{name}, cell {index} ({cell.cell_type}, first line {first_line!r})"
        stub = CODE_STUB if cell.cell_type == "code" else TEXT_STUB
        source, n = strip_solutions(cell.source, where=where, stub=stub)
        if n == 0 and _is_nbgrader_solution_cell(cell):
            source, n = "\n".join(stub), 1
        if n:                                   # a cell without solutions keeps its text byte for byte
            cell.source = source
        total += n
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("widgets", None)
    nb.metadata.pop("widgets", None)
    return total


def check_output(dst: Path, sources: list[Path]) -> None:
    """Raise OutputRefused when writing `dst` could destroy a lesson; see the module docstring."""
    dst = Path(dst)
    for src in sources:
        # samefile, not a comparison of paths: it also sees through symlinks, hard links and "a/../b".
        if dst.exists() and os.path.samefile(dst, src):
            raise OutputRefused(f"{dst} is the lesson {src} itself: writing the student version there "
                                f"would delete its solutions. {CHOOSE_ANOTHER}")
    course = course_dir()
    if course is not None and dst.resolve().is_relative_to((course / "notebooks").resolve()):
        raise OutputRefused(f"{dst} is inside the course's notebooks/ folder, which holds the lessons "
                            f"(and every notebook there is run by the tests). {CHOOSE_ANOTHER}")
    if dst.is_dir():
        raise OutputRefused(f"{dst} is a folder, not a notebook file. {CHOOSE_ANOTHER}")
    if dst.exists() and has_marker_text(dst.read_text(encoding="utf-8", errors="replace")):
        raise OutputRefused(f"{dst} already exists and holds solution markers, so it is a lesson, not "
                            f"a student notebook. {CHOOSE_ANOTHER}")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(nb: nbformat.NotebookNode, dst: Path) -> None:
    """Write `nb` to `dst` so that `dst` is always either the old file or the whole new one."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Same folder, so os.replace is a rename within one file system, which is atomic.
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            nbformat.write(nb, file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())    # mkstemp makes it private; a notebook is not
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_lesson(src: Path) -> nbformat.NotebookNode:
    """The notebook at `src`, or a StudentError saying in one line why it is not one."""
    try:
        nb = nbformat.read(str(src), as_version=4)
    except FileNotFoundError:
        raise StudentError(f"{src} does not exist. Nothing was written.") from None
    except IsADirectoryError:
        raise StudentError(f"{src} is a folder; give lesson notebooks such as notebooks/03_ddpm_mnist.ipynb. "
                           f"Nothing was written.") from None
    except Exception as error:              # not JSON, not text, or JSON that is not a notebook
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise StudentError(f"{src} is not a Jupyter notebook ({reason}); give lesson notebooks (.ipynb) such as "
                           f"notebooks/03_ddpm_mnist.ipynb. Nothing was written.") from None
    if not isinstance(nb.get("cells"), list):
        raise StudentError(f"{src} is JSON but not a Jupyter notebook (it has no list of cells). Nothing was written.")
    return nb


def make_student_notebook(src: str | Path, dst: str | Path) -> int:
    """Write the student version of notebook `src` to `dst`. Returns how many solutions were removed."""
    src, dst = Path(src), Path(dst)
    check_output(dst, [src])
    nb = read_lesson(src)
    total = student_version(nb, src.name)
    write_atomically(nb, dst)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdlib.classroom.student", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="lesson notebooks (default: every notebooks/*.ipynb of the checkout)")
    parser.add_argument("--out", type=Path, default=Path("student"), help="folder to write into (default: student/)")
    args = parser.parse_args(argv)
    sources = args.notebooks
    if not sources:
        root = course_dir() or Path.cwd()
        sources = sorted((root / "notebooks").glob("[0-9]*.ipynb"))
        if not sources:
            parser.error("no notebooks given and none found in notebooks/")
    try:
        # Every check and every conversion comes before the first write, so a refusal or a bad
        # marker in the last notebook leaves all the outputs as they were.
        if args.out.exists() and not args.out.is_dir():
            raise OutputRefused(f"--out {args.out} is a file; --out names the folder to write the student "
                                f"notebooks into. {CHOOSE_ANOTHER}")
        targets = [args.out / src.name for src in sources]
        for src, dst in zip(sources, targets):
            if targets.count(dst) > 1:
                raise OutputRefused(f"two of the notebooks given are named {src.name}; both would be "
                                    f"written to {dst}. Nothing was written.")
            check_output(dst, sources)
        made = []
        for src in sources:
            nb = read_lesson(src)
            made.append((nb, student_version(nb, src.name)))
        for dst, (nb, n) in zip(targets, made):
            write_atomically(nb, dst)
            print(f"{dst}: {n} exercise(s) stubbed")
    except (StudentError, OSError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
