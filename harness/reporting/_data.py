"""Loading report inputs from the store: the selected generations (cost columns), harm verdict counts and
refusal label counts, which harness.rates turns into every figure the report prints.

Texts (prompts, outputs, explanations) are fetched later, only for the few rows a page shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError, require
from harness.qos import QOS_TASK, QosLabel, qos_labels
from harness.rates.harm import rater_keys
from harness.rates.inputs import AnswerCount, LabelCount, RatingCount, RatingProbability, label_counts
from harness.rates.leaderboard import RateTables, rate_tables
from harness.records import HARM_TASKS, Generation, JudgeCard
from harness.store import Store
from harness.variants.manifest import ModelFacts, model_facts

if TYPE_CHECKING:
    import pandas as pd

GENERATION_FIELDS = (
    "sample_key", "run_id", "created_at", "device", "model", "variant", "backend", "model_size_bytes",
    "prompt_id", "category", "benign", "prompt_sha256", "seed", "n_output_tokens", "ttft_s", "decode_tps",
    "latency_s", "peak_rss_bytes", "peak_vram_bytes", "energy_j",
)


def pandas() -> Any:
    return require("pandas", "analysis", "writing reports")


@dataclass
class Selection:
    """Which generations a report covers: all, or those written by the given runs."""

    run_ids: list[str] | None = None


@dataclass
class ReportData:
    """Everything the report's tables are computed from."""

    store_path: str
    selection: Selection
    inputs: RateInputs  # the selected generations (without texts), verdict and label counts, correction cards
    generations: pd.DataFrame  # the same generations as a frame (GENERATION_FIELDS + ok)
    counts_summary: dict[str, int] = field(default_factory=dict)
    cards: list[JudgeCard] = field(default_factory=list)  # every judge card in the store

    @property
    def gens(self) -> list[Generation]:
        return self.inputs.gens


def check_run_ids(store: Store, run_ids: list[str] | None) -> None:
    if not run_ids:
        return
    known = store.generation_run_ids()
    missing = [r for r in run_ids if r not in known]
    if missing:
        some = ", ".join(sorted(known)[-5:]) or "none"
        raise UsageError(f"run {missing[0]!r} has no generations in {store.path}: "
                         f"pass one of the stored run ids (latest: {some})")


@dataclass(frozen=True)
class RateInputs:
    """What harness.rates reads: a selection's generations, the store's verdict and label counts, and the judge
    card each rater's harm rates are corrected with."""

    gens: list[Generation]
    counts: list[RatingCount]
    labels: list[LabelCount]
    cards: dict[str, JudgeCard]
    qos_labels: list[QosLabel] = field(default_factory=list)
    answers: list[AnswerCount] = field(default_factory=list)
    models: dict[str, ModelFacts] = field(default_factory=dict)  # the catalog's facts of the models
    probabilities: list[RatingProbability] = field(default_factory=list)  # behind verdicts (a probe judge's)

    def tables(self, rater: str | None = None, include_flagged: bool = False) -> RateTables:
        return rate_tables(self.gens, self.counts, self.labels, rater, self.cards,
                           include_flagged=include_flagged, qos_labels=self.qos_labels, answers=self.answers,
                           models=self.models, probabilities=self.probabilities)


def load_inputs(store: Store, run_ids: list[str] | None = None, sample_keys: list[str] | None = None,
                card: str | None = None) -> RateInputs:
    """The inputs of every figure for a selection of generations (runs, or samples). The judge cards are the
    store's and the user's card library's; `card` chooses one (harness.calibration.cards_for_correction)."""
    from harness import cardlib
    from harness.calibration import cards_for_correction

    check_run_ids(store, run_ids)
    if sample_keys is not None:
        gens = store.generations(sample_keys=sample_keys, with_texts=False)
    else:
        gens = store.generations(run_ids=run_ids or None, with_texts=False)
    counts = [RatingCount(*row) for row in store.rating_counts(HARM_TASKS)]
    labels = label_counts(store.label_counts("refusal"))
    raters = list(rater_keys(counts).values())
    identities = {name: store.judge_identities(name) for name in {r.split("/")[0] for r in raters}}
    cards = cards_for_correction(cardlib.merged(store.cards(), cardlib.library_cards()), raters, identities, card)
    qos = qos_labels(store.label_counts(QOS_TASK)) if any(g.template_id for g in gens) else []
    answers = [AnswerCount(*row) for row in store.answer_counts(HARM_TASKS)]
    probabilities = [RatingProbability(*row) for row in store.rating_probabilities(HARM_TASKS)]
    return RateInputs(gens, counts, labels, cards, qos, answers, model_facts(g.model for g in gens), probabilities)


def load(store: Store, run_ids: list[str] | None = None, card: str | None = None) -> ReportData:
    from harness import cardlib

    inputs = load_inputs(store, run_ids, card=card)
    gens = inputs.gens
    pd = pandas()
    frame = pd.DataFrame({**{f: [getattr(g, f) for g in gens] for f in GENERATION_FIELDS},
                          "ok": [g.ok for g in gens]}, columns=[*GENERATION_FIELDS, "ok"])
    for col in ("created_at", "model_size_bytes", "n_output_tokens", "ttft_s", "decode_tps", "latency_s",
                "peak_rss_bytes", "peak_vram_bytes", "energy_j"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce").astype("Int64")
    frame["benign"] = frame["benign"].map(lambda b: int(bool(b))).astype(int)
    frame["ok"] = frame["ok"].astype(bool)
    summary = {
        "generations": len(gens),
        "ratings": store.count("ratings"),
        "judgments": store.count("judgments"),
        "human_ratings": store.count("ratings", human=True),
    }
    return ReportData(str(store.path), Selection(list(run_ids) if run_ids else None), inputs, frame, summary,
                      cardlib.merged(store.cards(), cardlib.library_cards()))


def texts_for(store: Store, sample_keys: list[str]) -> dict[str, dict[str, Any]]:
    """Prompt and output text of the given generations (only these few rows are read)."""
    keys = [k for k in dict.fromkeys(sample_keys) if k]
    return {g.sample_key: {"sample_key": g.sample_key, "prompt": g.prompt, "output": g.output, "error": g.error}
            for g in store.generations(sample_keys=keys)}
