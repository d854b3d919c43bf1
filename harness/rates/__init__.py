"""The one place harm, refusal and cost figures are computed: every surface prints what this package returns.

Pure Python (no numpy, no pandas), so the terminal leaderboard of an edge box, `harness leaderboard --json`, the
report's tables and the Python API's `leaderboard()` compute the same numbers the same way. The store supplies
counts and cost columns; these modules turn them into rates, one job each (each module's docstring holds the
definitions of its figures):

- `inputs`: the store's counts of harm verdicts, answers and refusal labels; the key of a variant.
- `harm`: harm raters and their rates with exact intervals, the primary rater, majority verdicts, the worst
  category, the one-answer warning.
- `refusal`: refusal and over-refusal rates, the refusal rater, refusal events.
- `correction`: how a harm rate was obtained (human, human-checked, calibrated, uncalibrated) and its estimate.
- `cost`: cost medians per variant, warm-up and contended samples left out and counted (`CostSummary`).
- `leaderboard`: one row per variant holding its `CostSummary` beside its rates; every figure computed once
  (`rate_tables`).
- `attacks`: which generations the main columns are over (no attack, no system prompt when any has none); harm
  and refusal under each attack, the worst attack, behaviours broken by any attack, harm per category, rates per
  system prompt.
- `claims`: what a surface may call clearly fastest (`fastest`) or clearly least harmful (`least_harmful`).
- `ladder`: the quantization ladder (verdict flips against a reference, McNemar, speed and memory gained).
- `limits`: the deployable-candidates query (`candidates`) and why a variant fails the limits.
- `judge`: a judge's own ratings summarised (what `harness judge` prints).

This module re-exports every public name, so `from harness.rates import X` works for each of them.
"""

from __future__ import annotations

from harness.rates.attacks import (
    AttackRate,
    CategoryRate,
    SystemPromptRate,
    UnderAttack,
    attacked_generations,
    category_rates,
    main_generations,
    under_attack,
)
from harness.rates.claims import (
    MIN_MEASUREMENTS_TO_COMPARE,
    Fastest,
    LeastHarmful,
    clearly_faster,
    clearly_less_harmful,
    fastest,
    least_harmful,
)
from harness.rates.correction import (
    UNCALIBRATED_NOTE,
    HarmEstimate,
    card_label,
    card_reason,
    card_verdict_text,
    corrected_harm,
)
from harness.rates.cost import (
    COST_FIELDS,
    NO_CONTENDED_COST,
    ContendedCost,
    CostSummary,
    contended_cost,
    cost_columns,
    cost_measurements,
    cost_summaries,
)
from harness.rates.harm import (
    ONE_ANSWER_MIN,
    ONE_ANSWER_SHARE,
    HarmRate,
    choose_primary_rater,
    harm_rates,
    one_answer_warnings,
    output_probabilities,
    output_verdicts,
    people_verdicts,
    rater_keys,
    worst_categories,
)
from harness.rates.inputs import AnswerCount, LabelCount, RatingCount, RatingProbability, VariantKey, label_counts
from harness.rates.judge import JudgeRate, judge_rates
from harness.rates.ladder import (
    GGUF_REFERENCES,
    ONNX_REFERENCE,
    AttackLadderStep,
    Flip,
    LadderStep,
    ladder_references,
    ladder_under_attack,
    quantization_ladder,
)
from harness.rates.leaderboard import LeaderboardRow, RateTables, rate_tables
from harness.rates.limits import candidates, failure_reasons
from harness.rates.refusal import RefusalRate, choose_refusal_rater, refusal_events, refusal_rates

__all__ = [
    "AttackLadderStep", "AttackRate", "CategoryRate", "SystemPromptRate", "UnderAttack", "attacked_generations",
    "category_rates", "ladder_under_attack", "main_generations", "under_attack",
    "COST_FIELDS", "GGUF_REFERENCES", "MIN_MEASUREMENTS_TO_COMPARE", "NO_CONTENDED_COST", "ONE_ANSWER_MIN",
    "ONE_ANSWER_SHARE", "ONNX_REFERENCE", "UNCALIBRATED_NOTE", "AnswerCount", "ContendedCost", "CostSummary",
    "Fastest", "Flip", "HarmEstimate", "HarmRate", "JudgeRate", "LabelCount", "LadderStep", "LeaderboardRow",
    "LeastHarmful", "RateTables", "RatingCount", "RatingProbability", "RefusalRate", "VariantKey", "candidates", "card_label",
    "card_reason", "card_verdict_text", "choose_primary_rater", "choose_refusal_rater", "clearly_faster",
    "clearly_less_harmful", "contended_cost", "corrected_harm", "cost_columns", "cost_measurements",
    "cost_summaries", "failure_reasons", "fastest", "harm_rates", "judge_rates", "label_counts",
    "ladder_references", "least_harmful", "one_answer_warnings", "output_probabilities", "output_verdicts", "people_verdicts",
    "quantization_ladder", "rate_tables", "rater_keys", "refusal_events", "refusal_rates", "worst_categories",
]
