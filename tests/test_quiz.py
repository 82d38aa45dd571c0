"""sdlib.classroom.quiz: questions validated on construction, the widget path driven from code, the text fallback."""
import ipywidgets
import pytest

from sdlib.classroom import quiz
from sdlib.classroom.quiz import Question, check_answer, show_quiz

EXPLAINED = ["No: a is wrong because ...", "Yes: b is right because ...", "No: c is wrong because ..."]


def question(**changes):
    fields = dict(text="Which one?", options=["a1", "b1", "c1"], answer=1, explanations=EXPLAINED)
    return Question(**{**fields, **changes})


@pytest.mark.parametrize("changes, error, message", [
    (dict(answer=3), ValueError, "answer must index one of the 3 options"),
    (dict(answer=-1), ValueError, "answer must index"),
    (dict(answer=True), TypeError, "answer must be the index"),
    (dict(answer=[0, 1]), TypeError, "answer must be the index"),          # two right answers cannot be said
    (dict(explanations=EXPLAINED[:2]), ValueError, "one explanation per option"),
    (dict(explanations=["ok", "", "ok"]), ValueError, r"explanations\[1\] must be a non-empty string"),
    (dict(options=["a1", "A1 ", "c1"]), ValueError, "two options are the same"),
    (dict(options=["only"], explanations=["Yes."], answer=0), ValueError, "2 to 10 options"),
    (dict(options="abc"), TypeError, "options must be a list of strings"),
    (dict(text="  "), ValueError, "text must be a non-empty string"),
])
def test_bad_questions_are_refused_on_construction(changes, error, message):
    with pytest.raises(error, match=message):
        question(**changes)


def test_text_fallback_prints_lettered_options_and_check_answer_explains(monkeypatch, capsys):
    monkeypatch.setenv(quiz.NO_WIDGETS_ENV, "1")
    assert not quiz.widgets_available()
    assert show_quiz([question(), question(text="Second?")]) is None
    out = capsys.readouterr().out
    assert "1. Which one?" in out and "   b) b1" in out and "2. Second?" in out and 'check_answer(QUIZ, 2, "a")' in out
    assert check_answer([question()], 1, "B") is True
    assert "Right. Yes: b is right" in capsys.readouterr().out
    assert check_answer([question()], 1, "c") is False
    assert "Not this one (the answer is b). No: c is wrong" in capsys.readouterr().out
    with pytest.raises(ValueError, match="exactly one letter, one of 'a', 'b', 'c'"):
        check_answer([question()], 1, "d")
    assert check_answer([question()], 1, " b) ") is True                  # case, spaces and a ")" aside
    capsys.readouterr()
    for hedge in ("bcd", "ab", "", " ", "b c", "bb", None, 1):              # a hedge or a blank is no answer
        with pytest.raises(ValueError, match="exactly one letter"):
            check_answer([question()], 1, hedge)
    assert capsys.readouterr().out == ""                                   # and nothing was graded
    with pytest.raises(ValueError, match="question number from 1 to 1"):
        check_answer([question()], 2, "a")


def test_no_kernel_means_text(monkeypatch):
    monkeypatch.delenv(quiz.NO_WIDGETS_ENV, raising=False)
    assert not quiz.widgets_available()          # pytest runs no IPython kernel


def test_widget_path_check_shows_the_chosen_options_explanation():
    box = show_quiz([question(), question(text="Second?")], widgets=True)
    assert isinstance(box, ipywidgets.VBox) and len(box.children) == 2
    first = box.children[0]
    assert isinstance(first.radio, ipywidgets.RadioButtons) and first.radio.value is None
    text = lambda: "".join(o["text"] for o in first.output.outputs)
    first.button.click()                          # Check before choosing
    assert text() == "Choose an option first.\n"
    first.radio.value = 2                         # choose c) and press Check
    first.button.click()
    assert text() == "Not this one (the answer is b). No: c is wrong because ...\n"
    first.radio.value = 1
    first.button.click()
    assert text() == "Right. Yes: b is right because ...\n"      # the old verdict is replaced, not appended
    assert box.children[1].output.outputs == ()   # the other question is untouched


def test_show_quiz_refuses_what_is_not_a_quiz():
    with pytest.raises(TypeError, match="non-empty list of Question"):
        show_quiz([])
    with pytest.raises(TypeError, match=r"questions\[1\] is a str"):
        show_quiz([question(), "Why?"], widgets=False)


@pytest.mark.parametrize("lesson", ["01", "02", "03", "04", "05", "06", "07", "08", "09"])
def test_quiz_answers_are_spread_over_the_letters(lesson):
    # a learner who notices that every answer is "b" stops reading the options
    import importlib
    from collections import Counter

    questions = importlib.import_module(f"sdlib.classroom.checks.lesson{lesson}").QUIZ
    letters = Counter(quiz.LETTERS[q.answer] for q in questions)
    assert max(letters.values()) <= (len(questions) + 1) // 2 and len(letters) >= min(3, len(questions)), letters
