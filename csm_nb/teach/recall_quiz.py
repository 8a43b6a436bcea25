"""A short multiple-choice quiz at the end of a notebook: recall, checked like an exercise.

Pure recall ("which column holds the text?") makes a poor "your turn" in the middle of a
lesson: its answer sits a few cells above. So each notebook ends with a few such questions,
answered in one cell and checked at once: every wrong choice explains itself, and a question
left at None is "not answered yet". Used by the backbone (02) and fast (04) lessons.

    QUIZ = Quiz("backbone.quiz", [Question(...), ...])
    QUIZ.register(SOLUTIONS, hint="Sections 1 and 3.")   # hint, solution, answer cell
    QUIZ.show()                                   # prints the questions
    QUIZ.check({1: "b", 2: None, ...})            # verdicts, question by question
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .common import unanswered, verdict


@dataclass(frozen=True)
class Question:
    text: str
    choices: dict                     # {"a": "an option", ...}
    answer: str                       # the right letter
    why: str                          # said when right: the reason, in one line
    wrong: dict = field(default_factory=dict)   # {letter: what that choice gets wrong}

    def __post_init__(self):
        if self.answer not in self.choices:
            raise ValueError(f"answer {self.answer!r} is not one of the choices "
                             f"{sorted(self.choices)}")


class Quiz:
    """Numbered questions (1, 2, ...), shown with `show()` and checked with `check(answers)`."""

    def __init__(self, name: str, questions: list[Question]):
        self.name, self.questions = name, list(questions)

    def show(self) -> None:
        for number, q in enumerate(self.questions, 1):
            print(f"{number}. {q.text}")
            for letter, choice in q.choices.items():
                print(f"   {letter}) {choice}")
            print()

    def blank_cell(self) -> str:
        """The answer dict with every answer None, as the notebook's answer cell starts."""
        return "{" + ", ".join(f"{n}: None" for n in range(1, len(self.questions) + 1)) + "}"

    def right_answers(self) -> dict:
        return {n: q.answer for n, q in enumerate(self.questions, 1)}

    def register(self, solutions, hint: str, name: str = "quiz") -> None:
        """Put this quiz's hint, worked answer and right answer cell in a lesson's Solutions
        (the answer cell checks with `lesson.check_quiz`)."""
        solutions.hints[name] = hint
        solutions[name] = "\n".join(f"{n}: {q.answer}) {q.choices[q.answer]}: {q.why}"
                                    for n, q in enumerate(self.questions, 1))
        solutions.answers[name] = (f"answers = {self.right_answers()!r}\n"
                                   "lesson.check_quiz(answers)")

    def check(self, answers) -> bool:
        """Print a verdict per question and one overall; True when every answer is right."""
        if unanswered(answers):
            return None
        if not isinstance(answers, dict):
            raise TypeError(f"answers: expected a dict {{question number: letter}}, got "
                            f"{type(answers).__name__}")
        if all(answers.get(n) in (None, ...) for n in range(1, len(self.questions) + 1)):
            unanswered(None, fix="give each question its letter (a, b, ...) and run the cell")
            return None
        right, lines = 0, []
        for number, q in enumerate(self.questions, 1):
            given = answers.get(number)
            if given in (None, ...):
                lines.append(f"{number}: not answered yet.")
                continue
            letter = str(given).strip().lower().rstrip(")")
            if letter == q.answer:
                right += 1
                lines.append(f"{number}: right. {q.why}")
            elif letter in q.choices:
                lines.append(f"{number}: not {letter}. "
                             + q.wrong.get(letter, "Reread the question's section."))
            else:
                lines.append(f"{number}: {given!r} is not a choice; answer with one of "
                             f"{', '.join(q.choices)}.")
        print("\n".join(lines))
        total = len(self.questions)
        exercise = self.name.rpartition(".")[2]
        return verdict(right == total, f"{total} of {total}.",
                       f"{right} of {total} right; the lines above say what to reread. Stuck? "
                       f"lesson.hint('{exercise}'), then lesson.solution('{exercise}').")
