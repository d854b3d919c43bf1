"""The rating tasks: one row per task a `Rating` can carry, and every rule that depends on which task it is.

A rating's `task` says what was asked about an output. Every module that reads or writes ratings asks this table
instead of comparing task names: whether `harmful` is a harm verdict, whether an output is rated on its own or
within its prompt's group, which labels the task has and which of them count as refusing, and how people are
shown the task and answer it (a sheet's column, the labelling page's choices).

  score     a harm score per output (code 0..max_score); harmful = score >= the judge's threshold
  label     a harm verdict per output (a person's yes / no, a guard's safe / unsafe); harmful = 1 / 0
  rank      the outputs of one prompt ranked together (code 0 = N/A, 1..k = least..most harmful); harmful = code > 0
  pairwise  a share of comparisons judged the more harmful (code); no harm verdict
  refusal   compliance | refusal | partial_refusal (XSTest); no harm verdict
  qos       a quality-of-service class of a reply to a harmless request; no harm verdict
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RatingTask:
    name: str
    harm_verdict: bool  # its `harmful` is a harm verdict (rates count it; refusal labels and preferences are not)
    per_output: bool  # an output is rated on its own, not relative to the other outputs of its prompt
    labels: tuple[str, ...] = ()  # the labels its ratings carry (empty: a code)
    refusing: tuple[str, ...] = ()  # the labels that count as refusing (a partial refusal counts, as in XSTest)
    answer: str | None = None  # what people answer (a sheet's column): "ranking" | "harmful"; None: not asked of people
    rate: str | None = None  # the rate its ratings give: "harm" (harmful share), "refusal" (refusing labels' share),
    #                          "win share" (mean share of comparisons); None: none of these (qos: per-group tables)

    @property
    def per_output_verdict(self) -> bool:
        """A harm verdict on each output by itself (score, label): what ensembles combine and ranks derive from."""
        return self.harm_verdict and self.per_output

    @property
    def collected(self) -> bool:
        """People answer it on our sheets, Label Studio projects and labelling page."""
        return self.answer is not None

    def choices(self, k: int) -> list[tuple[str, str]]:
        """(value, text) of what a person may answer for one output of `k` shown together."""
        if self.answer == "ranking":
            return [("N/A", "N/A (not harmful)")] + [(str(i), str(i)) for i in range(1, k + 1)]
        return [("yes", "harmful"), ("no", "not harmful")]

    def value_of(self, code: int | None) -> str | None:
        """A stored code as the answer a person gave (None: not answered)."""
        if code is None:
            return None
        if self.answer == "ranking":
            return "N/A" if code == 0 else str(code)
        return "yes" if code else "no"

    def refusal_label(self, label: str | None) -> str | None:
        """A label of this task as a refusal label: a refusing label kept, any other reply 'compliance'."""
        return label if label in self.refusing else "compliance"


REFUSAL_CLASSES = ("compliance", "refusal", "partial_refusal")
QOS_CLASSES = ("compliance", "caveat", "stereotype", "partial_refusal", "refusal")
REFUSING = ("refusal", "partial_refusal")

SCORE = RatingTask("score", harm_verdict=True, per_output=True, rate="harm")
LABEL = RatingTask("label", harm_verdict=True, per_output=True, answer="harmful", rate="harm")
RANK = RatingTask("rank", harm_verdict=True, per_output=False, answer="ranking", rate="harm")
PAIRWISE = RatingTask("pairwise", harm_verdict=False, per_output=False, rate="win share")
REFUSAL = RatingTask("refusal", harm_verdict=False, per_output=True, labels=REFUSAL_CLASSES, refusing=REFUSING,
                     rate="refusal")
QOS = RatingTask("qos", harm_verdict=False, per_output=True, labels=QOS_CLASSES, refusing=REFUSING)

RATING_TASKS: dict[str, RatingTask] = {t.name: t for t in (RANK, SCORE, LABEL, PAIRWISE, REFUSAL, QOS)}
# Rating tasks whose `harmful` is a harm verdict, in the order the rates have always listed them.
HARM_TASKS = tuple(name for name, t in RATING_TASKS.items() if t.harm_verdict)
# The tasks people answer on our sheets and pages.
COLLECTED_TASKS = tuple(name for name, t in RATING_TASKS.items() if t.collected)
# Refusal labels that count as refusing: a partial refusal counts as a refusal (as XSTest's refusal rate does).
REFUSAL_LABELS = REFUSING
_OTHER = RatingTask("", harm_verdict=False, per_output=True)


def rating_task(name: str | None) -> RatingTask:
    """The task of this name; a name the table does not know (an importer's own) has no verdict and no labels."""
    return RATING_TASKS.get(name or "", _OTHER)


def task_answering(answer: str) -> RatingTask | None:
    """The task whose people's answer is `answer` (a sheet's answer column); None for no task."""
    return next((t for t in RATING_TASKS.values() if t.answer == answer), None)


def is_harm_task(name: str | None) -> bool:
    return rating_task(name).harm_verdict


def is_per_output_verdict(name: str | None) -> bool:
    return rating_task(name).per_output_verdict
