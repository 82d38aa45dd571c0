import nbformat
import pytest

from helpers import NOTEBOOKS
from sdlib import student


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


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n### END SOLUTION\n", "without a"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another"),
])
def test_unpaired_markers_are_reported(source, message):
    with pytest.raises(student.MarkerError, match=message):
        student.strip_solutions(source)


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
        assert stubs >= 3, f"{path.name} has {stubs} exercises"


def test_default_run_writes_every_lesson(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert student.main([]) == 0
    assert sorted(p.name for p in (tmp_path / "student").glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
