"""Short multiple-choice quizzes with every answer explained, the wrong ones included.

A lesson's quiz is a list of `Question`s, `QUIZ`, in its checks module (sdlib.classroom.checks.lessonNN),
shown near the end of the notebook, in a section headed "## Quiz", by one cell:

    from sdlib.classroom.checks.lesson02 import QUIZ
    from sdlib.classroom.quiz import check_answer, show_quiz

    show_quiz(QUIZ)

A question has one correct option and an explanation for every option: for the right one, why it
is right; for each wrong one, why it is wrong (the misconception it stands for), so that a learner
who picks it learns something. Questions are validated when they are built, so a quiz with two
right answers or a missing explanation cannot ship; tests/test_exercises.py also checks every QUIZ.

Two ways to show a quiz:
* with ipywidgets in a Jupyter kernel: per question, radio buttons, a "Check" button and an output
  area that shows the verdict and the explanation of the chosen option;
* as text, when ipywidgets cannot be imported, when no IPython kernel is running (a plain Python
  script), or when the environment variable SDLIB_NO_WIDGETS is set to 1 (or `widgets=False`): the
  questions are printed with lettered options, and `check_answer(QUIZ, 2, "b")` prints the verdict
  and the explanation of option b of question 2.
(The explorers of sdlib.classroom.widgets always build their widgets and can be driven from code; a quiz has
nothing to draw without a front end, so it falls back to text instead.)

Writing a quiz for a lesson:

    QUIZ = [
        Question("Which ... ?",
                 options=["first option", "second option", "third option"],
                 answer=1,                                    # index of the one right option
                 explanations=["No: why the first is wrong.", "Yes: why the second is right.",
                               "No: why the third is wrong."]),
        ...                                                   # 3 to 5 questions per lesson
    ]

Ask for understanding (what happens if, which is why, what would break), not for a constant. The tests
hold every QUIZ to one convention, so that an `answer` pointing at the wrong option is caught: the right
option's explanation starts with "Yes", each wrong one's with "No".
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

NO_WIDGETS_ENV = "SDLIB_NO_WIDGETS"
LETTERS = "abcdefghij"


@dataclass(frozen=True)
class Question:
    """One multiple-choice question.

    text: the question; options: 2 to 10 distinct answers; answer: the index (from 0) of the one
    right option; explanations: one per option, saying why it is right or why it is wrong."""

    text: str
    options: Sequence[str]
    answer: int
    explanations: Sequence[str]

    def __post_init__(self):
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError(f"a question's text must be a non-empty string, got {self.text!r}")
        where = f"question {self.text[:60]!r}"
        for field in ("options", "explanations"):
            value = getattr(self, field)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise TypeError(f"{where}: {field} must be a list of strings, got {type(value).__name__}")
            bad = [i for i, v in enumerate(value) if not isinstance(v, str) or not v.strip()]
            if bad:
                raise ValueError(f"{where}: {field}[{bad[0]}] must be a non-empty string, got {value[bad[0]]!r}")
            object.__setattr__(self, field, tuple(value))
        n = len(self.options)
        if not 2 <= n <= len(LETTERS):
            raise ValueError(f"{where}: a question needs 2 to {len(LETTERS)} options, got {n}")
        if len({o.strip().lower() for o in self.options}) != n:
            raise ValueError(f"{where}: two options are the same: {list(self.options)}")
        if isinstance(self.answer, bool) or not isinstance(self.answer, int):
            raise TypeError(f"{where}: answer must be the index (an int) of the right option, got "
                            f"{type(self.answer).__name__} {self.answer!r}")
        if not 0 <= self.answer < n:
            raise ValueError(f"{where}: answer must index one of the {n} options (0..{n - 1}), got {self.answer}")
        if len(self.explanations) != n:
            raise ValueError(f"{where}: give one explanation per option: {n} options, "
                             f"{len(self.explanations)} explanations")

    def verdict(self, choice: int) -> str:
        """The text shown for option `choice` (an index from 0): right or not, and why."""
        if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice < len(self.options):
            raise ValueError(f"choice must be an option index 0..{len(self.options) - 1}, got {choice!r}")
        head = "Right." if choice == self.answer else f"Not this one (the answer is {LETTERS[self.answer]})."
        return f"{head} {self.explanations[choice]}"


def validate_quiz(questions) -> list[Question]:
    """The questions as a list, each a Question; a clear error otherwise."""
    if isinstance(questions, Question):
        questions = [questions]
    if isinstance(questions, (str, bytes)) or not isinstance(questions, Sequence) or not questions:
        raise TypeError(f"questions must be a non-empty list of Question, got {type(questions).__name__}")
    bad = [i for i, q in enumerate(questions) if not isinstance(q, Question)]
    if bad:
        raise TypeError(f"questions[{bad[0]}] is a {type(questions[bad[0]]).__name__}, not a Question")
    return list(questions)


def widgets_available() -> bool:
    """True when a quiz can be shown with ipywidgets: the package imports, an IPython kernel is running,
    and SDLIB_NO_WIDGETS is not set to a true value."""
    if os.environ.get(NO_WIDGETS_ENV, "").strip().lower() not in ("", "0", "false", "no", "off"):
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def format_question(question: Question, number: int) -> str:
    lines = [f"{number}. {question.text}"]
    lines += [f"   {LETTERS[i]}) {option}" for i, option in enumerate(question.options)]
    return "\n".join(lines)


def show_quiz(questions, widgets: bool | None = None, name: str = "QUIZ"):
    """Show a quiz: with ipywidgets where available (see widgets_available), else as text.

    widgets: True or False to choose, None to decide from the environment. name: what the text
    version tells the learner to pass to check_answer. Returns the ipywidgets.VBox (one box per
    question, each with `.radio`, `.button` and `.output` attributes, so that code can drive it),
    or None for the text version, which prints."""
    questions = validate_quiz(questions)
    if widgets is None:
        widgets = widgets_available()
    if not widgets:
        print("\n\n".join(format_question(q, i) for i, q in enumerate(questions, start=1)))
        print(f'\nTo check an answer, run check_answer({name}, question, "letter"), e.g. '
              f'check_answer({name}, 2, "a"): it says whether it is right and why.')
        return None
    import ipywidgets

    boxes = [_question_box(q, i, ipywidgets) for i, q in enumerate(questions, start=1)]
    return ipywidgets.VBox(boxes)


def _question_box(question: Question, number: int, ipywidgets):
    label = ipywidgets.HTML(f"<b>{number}.</b> {_escape(question.text)}")
    radio = ipywidgets.RadioButtons(options=[(f"{LETTERS[i]}) {o}", i) for i, o in enumerate(question.options)],
                                    value=None, layout=ipywidgets.Layout(width="max-content"))
    button = ipywidgets.Button(description="Check")
    output = ipywidgets.Output()

    def on_check(_=None):
        output.outputs = ()                       # works with or without a kernel attached
        text = "Choose an option first." if radio.value is None else question.verdict(radio.value)
        output.append_stdout(text + "\n")

    button.on_click(on_check)
    box = ipywidgets.VBox([label, radio, button, output])
    box.radio, box.button, box.output, box.question = radio, button, output, question
    return box


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def check_answer(questions, number: int, letter: str) -> bool:
    """The text version's check: print whether option `letter` ("a", "b", ...) of question `number`
    (counted from 1, as printed) is right, and why. Returns True when it is right."""
    questions = validate_quiz(questions)
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= len(questions):
        raise ValueError(f"number must be a question number from 1 to {len(questions)}, got {number!r}")
    question = questions[number - 1]
    letters = LETTERS[:len(question.options)]
    given = letter.strip().lower().removesuffix(")") if isinstance(letter, str) else None
    if given is None or len(given) != 1 or given not in letters:      # one option: a hedge or a blank is no answer
        raise ValueError(f"answer with exactly one letter, one of {', '.join(repr(c) for c in letters)}, for "
                         f"question {number}; got {letter!r}")
    choice = letters.index(given)
    print(f"{number}{letters[choice]}) {question.verdict(choice)}")
    return choice == question.answer
