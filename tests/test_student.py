import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nbformat
import pytest
from helpers import NOTEBOOKS
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from sdlib.classroom import student

LESSON = NOTEBOOKS[0]
# The tests find solutions with their own rule, not the module's, so a parser that misses a
# marker cannot also hide its miss: any line that mentions BEGIN/END SOLUTION in any case.
MARKER_LIKE = re.compile(r"(begin|end)[\s_-]*solution", re.IGNORECASE)


def write_notebook(path, *cells):
    """A notebook at `path` whose cells are `cells` (strings become code cells)."""
    nb = new_notebook(cells=[new_code_cell(c) if isinstance(c, str) else c for c in cells])
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sdlib.classroom.student", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


# --- marker parsing --------------------------------------------------------------------------

def test_solution_becomes_a_stub_at_the_same_indentation():
    source = ("def f(x):\n    '''doc'''\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n"
              "\nprint('kept')")
    out, n = student.strip_solutions(source)
    assert n == 1
    assert out == ("def f(x):\n    '''doc'''\n    # YOUR CODE HERE\n    " + student.STUB + "\n\nprint('kept')")
    namespace = {}
    exec(out, namespace)
    with pytest.raises(NotImplementedError):
        namespace["f"](1)


@pytest.mark.parametrize("begin, end", [
    ("### BEGIN SOLUTION", "### END SOLUTION"),
    ("## BEGIN SOLUTION", "## END SOLUTION"),          # nbgrader matches the words, not the '#'s
    ("# BEGIN SOLUTION", "#### END SOLUTION"),
    ("###BEGIN SOLUTION", "###END SOLUTION   "),
    ("<!-- BEGIN SOLUTION -->", "<!--END SOLUTION-->"),
    ("BEGIN SOLUTION", "END SOLUTION"),
])
def test_every_accepted_marker_form_is_stripped(begin, end):
    out, n = student.strip_solutions(f"def f():\n    {begin}\n    return 42\n    {end}")
    assert n == 1
    assert "return 42" not in out and "SOLUTION" not in out
    assert out.splitlines()[1:] == ["    # YOUR CODE HERE", "    " + student.STUB]


@pytest.mark.parametrize("solution, message", [
    ("    ### begin solution\n    return 42\n    ### end solution", "looks like a solution marker"),
    ("    ### Begin Solution\n    return 42\n    ### End Solution", "looks like a solution marker"),
    ("    ## begin solution\n    return 42\n    ## END SOLUTION", "looks like a solution marker"),
    ("    ### BEGIN SOLUTION\n    return 42\n    ### end solution", "looks like a solution marker"),
    ("    ### BEGIN_SOLUTION\n    return 42\n    ### END_SOLUTION", "looks like a solution marker"),
    ("    ### BEGIN  SOLUTION\n    return 42\n    ### END SOLUTION", "looks like a solution marker"),
    ("    ### END SOLUTIONS\n    return 42", "looks like a solution marker"),
    ("    x = 1  ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION", "looks like a solution marker"),
    ("    print('### BEGIN SOLUTION')\n    return 42", "looks like a solution marker"),
    ("    ### BEGIN SOLUTION\n    return 42", "never closed"),
    ("    return 42\n    ### END SOLUTION", "without a BEGIN"),
    ("    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION", "inside the solution"),
])
def test_malformed_markers_are_refused_with_the_cell_named(tmp_path, solution, message):
    lesson = write_notebook(tmp_path / "09_lesson.ipynb", "import math", f"def answer():\n{solution}")
    with pytest.raises(student.MarkerError, match=message) as error:
        student.make_student_notebook(lesson, tmp_path / "student" / lesson.name)
    text = str(error.value)
    assert "09_lesson.ipynb" in text and "cell 1" in text and "'def answer():'" in text, text
    assert not (tmp_path / "student" / lesson.name).exists()


def test_a_bad_marker_in_one_notebook_means_no_notebook_is_written(tmp_path):
    good = write_notebook(tmp_path / "lessons" / "01_good.ipynb", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")
    bad = write_notebook(tmp_path / "lessons" / "02_bad.ipynb", "def f():\n    ### begin solution\n    return 1")
    assert student.main([str(good), str(bad), "--out", str(tmp_path / "student")]) != 0
    assert not (tmp_path / "student").exists() or not any((tmp_path / "student").iterdir())


def test_markdown_solutions_are_replaced_by_a_placeholder(tmp_path):
    question = new_markdown_cell("**Question.** Why does the ELBO lower-bound log p(x)?\n\n"
                                 "<!-- BEGIN SOLUTION -->\nBecause KL divergence is never negative.\n"
                                 "<!-- END SOLUTION -->\n\nNext question.\n### BEGIN SOLUTION\n"
                                 "Jensen's inequality.\n### END SOLUTION")
    whole = new_markdown_cell("The answer is 17.", metadata={"nbgrader": {"solution": True, "grade_id": "q2"}})
    lesson = write_notebook(tmp_path / "09_lesson.ipynb", question, whole, "print('kept')")
    assert student.make_student_notebook(lesson, tmp_path / "out" / lesson.name) == 3
    made = nbformat.read(str(tmp_path / "out" / lesson.name), as_version=4)
    assert made.cells[0].source == ("**Question.** Why does the ELBO lower-bound log p(x)?\n\nYOUR ANSWER HERE\n\n"
                                    "Next question.\nYOUR ANSWER HERE")
    assert made.cells[1].source == "YOUR ANSWER HERE"
    assert made.cells[2].source == "print('kept')"


# --- never writing over a lesson ------------------------------------------------------------

def test_cli_refuses_to_write_a_lesson_over_itself(tmp_path):
    copy = tmp_path / "lessons" / LESSON.name
    copy.parent.mkdir()
    shutil.copyfile(LESSON, copy)
    before = copy.read_bytes()
    result = run_cli(copy, "--out", copy.parent, cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert copy.read_bytes() == before
    assert "is the lesson" in result.stderr and "--out" in result.stderr, result.stderr
    assert [p.name for p in copy.parent.iterdir()] == [LESSON.name]     # no temporary file left


@pytest.mark.parametrize("out", ["{folder}/sub/..", ".", "{link}"])
def test_other_spellings_of_the_lesson_folder_are_refused(tmp_path, monkeypatch, out):
    copy = tmp_path / "lessons" / LESSON.name
    (tmp_path / "lessons" / "sub").mkdir(parents=True)
    shutil.copyfile(LESSON, copy)
    (tmp_path / "link").symlink_to(copy.parent)
    monkeypatch.chdir(copy.parent)
    before = copy.read_bytes()
    with pytest.raises(student.OutputRefused, match="is the lesson"):
        student.check_output(Path(out.format(folder=copy.parent, link=tmp_path / "link")) / LESSON.name, [copy])
    assert student.main([str(copy), "--out", out.format(folder=copy.parent, link=tmp_path / "link")]) != 0
    assert copy.read_bytes() == before


def test_a_hard_link_to_the_lesson_is_refused(tmp_path):
    copy = tmp_path / "lessons" / LESSON.name
    copy.parent.mkdir()
    shutil.copyfile(LESSON, copy)
    os.link(copy, tmp_path / LESSON.name)             # the same file under another path
    with pytest.raises(student.OutputRefused, match="is the lesson"):
        student.check_output(tmp_path / LESSON.name, [copy])


def test_an_existing_file_with_markers_is_never_overwritten(tmp_path):
    source = tmp_path / "lessons" / LESSON.name
    source.parent.mkdir()
    shutil.copyfile(LESSON, source)
    other_lesson = tmp_path / "out" / LESSON.name   # a different file that is also a lesson
    other_lesson.parent.mkdir()
    shutil.copyfile(LESSON, other_lesson)
    before = other_lesson.read_bytes()
    result = run_cli(source, "--out", other_lesson.parent, cwd=tmp_path)
    assert result.returncode != 0
    assert "holds solution markers" in result.stderr, result.stderr
    assert other_lesson.read_bytes() == before
    with pytest.raises(student.OutputRefused, match="holds solution markers"):
        student.make_student_notebook(source, other_lesson)
    assert other_lesson.read_bytes() == before


def test_an_existing_student_notebook_is_replaced(tmp_path):
    lesson = write_notebook(tmp_path / "09_lesson.ipynb", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")
    dst = write_notebook(tmp_path / "student" / lesson.name, "stale")
    assert student.main([str(lesson), "--out", str(dst.parent)]) == 0
    assert "return 1" not in dst.read_text() and "stale" not in dst.read_text() and "YOUR CODE HERE" in dst.read_text()


def test_the_course_notebooks_folder_is_refused(tmp_path, monkeypatch):
    # A stand-in course, so that a broken refusal cannot touch the real lessons.
    course = tmp_path / "course"
    lesson = course / "notebooks" / LESSON.name
    lesson.parent.mkdir(parents=True)
    shutil.copyfile(LESSON, lesson)
    monkeypatch.setattr(student, "course_dir", lambda: course)
    elsewhere = write_notebook(tmp_path / "new" / LESSON.name, "print('no solutions here')")
    before = lesson.read_bytes()
    for out in (course / "notebooks", course / "notebooks" / "student"):
        assert student.main([str(elsewhere), "--out", str(out)]) != 0
        assert lesson.read_bytes() == before
        assert not (course / "notebooks" / "student").exists()
    with pytest.raises(student.OutputRefused, match="notebooks/ folder"):
        student.check_output(course / "notebooks" / "student" / "x.ipynb", [elsewhere])


def test_writes_are_atomic(tmp_path, monkeypatch):
    lesson = write_notebook(tmp_path / "09_lesson.ipynb", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")
    dst = write_notebook(tmp_path / "student" / lesson.name, "print('the previous student version')")
    before = dst.read_bytes()

    def write_half_then_fail(nb, fp, *args, **kwargs):
        text = nbformat.writes(nb)
        if isinstance(fp, (str, os.PathLike)):
            with open(fp, "w", encoding="utf-8") as file:
                file.write(text[: len(text) // 2])
        else:
            fp.write(text[: len(text) // 2])
            fp.flush()
        raise OSError("disk full")

    monkeypatch.setattr(student.nbformat, "write", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        student.make_student_notebook(lesson, dst)
    assert dst.read_bytes() == before
    assert [p.name for p in dst.parent.iterdir()] == [dst.name]       # the temporary file is gone
    assert student.main([str(lesson), "--out", str(dst.parent)]) == 1
    assert dst.read_bytes() == before


# --- the real lessons -----------------------------------------------------------------------

def split_lesson(nb):
    """A lesson's stripped lines: (inside solutions, outside them, the stub lines that replace the solutions).

    Solutions are found by MARKER_LIKE, not by the module under test.
    """
    inside, outside, stubs = [], [], []
    for cell in nb.cells:
        in_solution = False
        for line in cell.source.splitlines():
            if MARKER_LIKE.search(line):
                in_solution = bool(re.search("begin", line, re.IGNORECASE))
                if in_solution:
                    stubs += student.CODE_STUB if cell.cell_type == "code" else student.TEXT_STUB
            elif line.strip():
                (inside if in_solution else outside).append(line.strip())
    return inside, outside, stubs


def test_no_solution_line_survives_in_any_student_notebook(tmp_path):
    assert student.main([str(p) for p in NOTEBOOKS] + ["--out", str(tmp_path)]) == 0
    for path in NOTEBOOKS:
        inside, outside, stubs = split_lesson(nbformat.read(str(path), as_version=4))
        if path.name[2] == "_":                          # a numbered lesson; appendices (03b_...) may have none
            assert inside, f"{path.name}: no solution found"
        made_file = tmp_path / path.name
        raw = made_file.read_text(encoding="utf-8")
        made = nbformat.read(str(made_file), as_version=4)
        made_lines = Counter(line.strip() for cell in made.cells for line in cell.source.splitlines() if line.strip())
        allowed = Counter(outside)
        for line in inside:
            # A line may also appear outside the solutions (a `return out`, say); it must not appear more often.
            assert made_lines[line] <= allowed[line], f"{path.name}: solution line {line!r} survives"
            if allowed[line] == 0:
                assert json.dumps(line)[1:-1] not in raw, f"{path.name}: solution line {line!r} is in the file"
        assert made_lines == Counter(outside) + Counter(stubs), f"{path.name}: lines other than the solutions changed"
        for line in made_lines:
            assert not MARKER_LIKE.search(line), f"{path.name}: marker {line!r} survives"
        assert not MARKER_LIKE.search(raw), f"{path.name}: a marker survives in the file"


def test_student_notebooks_have_every_solution_removed(tmp_path):
    assert student.main([str(p) for p in NOTEBOOKS] + ["--out", str(tmp_path)]) == 0
    for path in NOTEBOOKS:
        original = nbformat.read(str(path), as_version=4)
        made = nbformat.read(str(tmp_path / path.name), as_version=4)
        assert len(made.cells) == len(original.cells)
        stubs = 0
        for before, after in zip(original.cells, made.cells):
            if before.cell_type == "code" and student.has_solution(before.source):
                assert student.BEGIN not in after.source and student.END not in after.source
                assert "raise NotImplementedError" in after.source
                stubs += 1
                namespace = {}
                exec(after.source, namespace)           # the stub cell still runs: it only defines functions
                functions = [v for k, v in namespace.items() if callable(v) and not k.startswith("__")]
                for fn in functions:
                    with pytest.raises(NotImplementedError):
                        fn(*([None] * fn.__code__.co_argcount))
            else:
                assert after.source == before.source
            assert not after.get("outputs")
        assert stubs >= 3 or path.name[2] != "_", f"{path.name} has {stubs} exercises"   # appendices may have none


def test_default_run_writes_every_lesson(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert student.main([]) == 0
    assert sorted(p.name for p in (tmp_path / "student").glob("*.ipynb")) == [p.name for p in NOTEBOOKS]


def test_a_prediction_is_left_blank_and_a_quiz_untouched(tmp_path):
    """Every kind of exercise is one function between markers: a prediction becomes a stub (a blank prediction,
    which its checker refuses as not written yet) and the quiz cells stay as they are."""
    from sdlib.classroom.checks import ExerciseError
    from sdlib.classroom.checks.lesson02 import check_signal_prediction

    prediction = ('def predict_more_signal_at_500():\n    """Your prediction."""\n    ### BEGIN SOLUTION\n'
                  '    return "cosine"\n    ### END SOLUTION')
    checker = "from sdlib.classroom.checks.lesson02 import check_signal_prediction\n\ncheck_signal_prediction(predict_more_signal_at_500)"
    quiz_md = new_markdown_cell("## Quiz\n\nFour questions.")
    quiz_code = "from sdlib.classroom.checks.lesson02 import QUIZ\nfrom sdlib.classroom.quiz import check_answer, show_quiz\n\nshow_quiz(QUIZ)"
    src = write_notebook(tmp_path / "in" / "02_x.ipynb", prediction, checker, quiz_md, quiz_code)
    dst = tmp_path / "out" / "02_x.ipynb"
    assert student.make_student_notebook(src, dst) == 1
    made = nbformat.read(str(dst), as_version=4).cells
    assert '"cosine"' not in made[0].source and student.STUB in made[0].source
    assert [c.source for c in made[1:]] == [checker, quiz_md.source, quiz_code]
    namespace = {}
    exec(made[0].source, namespace)
    with pytest.raises(ExerciseError, match="not written yet"):
        check_signal_prediction(namespace["predict_more_signal_at_500"])
