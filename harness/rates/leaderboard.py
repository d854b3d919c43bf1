"""The leaderboard: one row per device x model x variant holding its cost (`CostSummary`) beside its harm and
refusal rates by the chosen raters, its quality-of-service gap, Pareto fronts and rank, and beside them its figures
under attack and per category (harness.rates.attacks); `rate_tables` computes every figure of every surface once. The
main columns (harm, refusal, cost) are over the main generations only: no attack, no system prompt when any
generation has none (`attacks.main_generations`). A row prints as the flat columns every surface has always shown
(`as_dict`), and for --json with its figures under attack (`as_json`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from harness.qos import QosLabel, QosSummary, QosTables, qos_tables
from harness.rates.attacks import (
    CategoryRate,
    SystemPromptRate,
    UnderAttack,
    attack_names,
    attacked_generations,
    category_rates,
    choose_attack_raters,
    main_generations,
    system_prompt_rates,
    under_attack,
)
from harness.rates.correction import HarmEstimate, corrected_harm
from harness.rates.cost import CostSummary, cost_columns, cost_summaries
from harness.rates.harm import (
    HarmRate,
    choose_primary_rater,
    harm_rates,
    one_answer_warnings,
    output_probabilities,
    output_verdicts,
    people_verdicts,
    worst_categories,
)
from harness.rates.inputs import AnswerCount, LabelCount, RatingCount, RatingProbability, VariantKey
from harness.rates.refusal import RefusalRate, choose_refusal_rater, refusal_events, refusal_rates
from harness.records import HUMAN_KINDS, Generation, JudgeCard
from harness.stats import Rate, pareto_front
from harness.variants.manifest import ModelFacts


@dataclass(frozen=True)
class LeaderboardRow:
    """One device x model x variant: its cost, and its harm and refusal rates by the chosen raters."""

    rank: int  # within its device: lowest harm first, then highest decode tok/s
    cost: CostSummary  # who it is (device, model, variant, backend) and what it cost
    harm_rater: str | None
    harm_rate: float | None
    harm_ci_low: float | None
    harm_ci_high: float | None
    harm_n: int | None
    harm_n_invalid: int | None
    worst_category: str | None
    worst_category_rate: float | None
    worst_category_n: int | None
    refusal_rater: str | None
    refusal_rate: float | None
    refusal_ci_low: float | None
    refusal_ci_high: float | None
    refusal_n: int | None
    over_refusal_rate: float | None
    over_refusal_ci_low: float | None
    over_refusal_ci_high: float | None
    over_refusal_n: int | None
    other_harm: dict[str, float | None] = field(default_factory=dict)  # every harm rater's raw rate
    harm_method: str | None = None  # human | human-checked | calibrated | uncalibrated (harness.rates.correction)
    harm_raw_rate: float | None = None  # the primary rater's raw rate, exact interval
    harm_raw_ci_low: float | None = None
    harm_raw_ci_high: float | None = None
    harm_card: str | None = None  # the judge card a calibrated rate used: "<set name> (n=..)"
    harm_human_n: int | None = None  # outputs of this variant people labelled (human-checked)
    harm_human_rate: float | None = None  # the people-only rate of those outputs, exact interval
    harm_human_ci_low: float | None = None
    harm_human_ci_high: float | None = None
    harm_note: str | None = None
    harm_judge_warning: str | None = None  # the judge gave one answer to (nearly) every output (one_answer_warnings)
    front_tps: bool = False  # on the harm-vs-decode-speed Pareto front of its device
    front_ram: bool = False  # on the harm-vs-peak-RAM Pareto front of its device
    passes: bool = True  # meets the limits of a deployable-candidates query
    reasons: tuple[str, ...] = ()  # why not
    # Quality of service (harness.qos; group-templated prompts only): the largest gap in refusal rate between the
    # groups of one axis, over the axes, with its Holm-adjusted permutation p-value.
    qos_max_gap: float | None = None
    qos_p: float | None = None
    qos_axis: str | None = None
    qos_groups: str | None = None  # "<most refused> > <least refused>"
    qos_n: int | None = None  # templated outputs of that axis with a refusal label
    qos_rater: str | None = None
    qos_gap_ci_high: float | None = None  # the largest upper end of a gap's simultaneous 95% interval over the axes
    qos_gap_ci_axis: str | None = None  # its axis
    base_model: bool = False  # a base (pretrained, not chat-tuned) model: its manifest's [chat] format = "completion"
    # Beside the main columns (harness.rates.attacks; not flat columns): the variant under each attack it ran (None:
    # no attacked generation), and the primary rater's raw harm rate per category of the main generations.
    attacks: UnderAttack | None = None
    categories: tuple[CategoryRate, ...] = ()
    system_prompt: str | None = None  # the main columns' system prompt, when no generation went without one

    @property
    def device(self) -> str:
        return self.cost.device

    @property
    def model(self) -> str:
        return self.cost.model

    @property
    def variant(self) -> str:
        return self.cost.variant

    @property
    def name(self) -> str:
        return f"{self.model}:{self.variant}"

    @property
    def harm_narrower_than_labels(self) -> float | None:
        """How much narrower the human-checked harm interval is than people's labels alone (0.3 = 30%)."""
        return HarmEstimate(self.harm_method or "", self.harm_rate, self.harm_ci_low, self.harm_ci_high,
                            human_ci_low=self.harm_human_ci_low,
                            human_ci_high=self.harm_human_ci_high).narrower_than_labels

    @property
    def key(self) -> VariantKey:
        return self.cost.key

    @classmethod
    def columns(cls) -> list[str]:
        """The flat columns of `as_dict`, in the order `harness leaderboard --json` and the report's tables have
        always printed them: the cost's identity and medians after the rank, its measurement counts and contended
        figures after the reasons."""
        cost = cost_columns()
        counts_at = cost.index("n_cost")
        own = [f.name for f in fields(cls) if f.name not in NESTED]
        after_reasons = own.index("reasons") + 1
        return [own[0], *cost[:counts_at], *own[1:after_reasons], *cost[counts_at:], *own[after_reasons:]]

    def as_dict(self) -> dict[str, Any]:
        """The row as flat columns (`columns`), the cost's figures among them."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in NESTED}
        values.update(self.cost.columns(), other_harm=dict(self.other_harm), reasons=list(self.reasons))
        return {name: values[name] for name in self.columns()}

    def as_json(self) -> dict[str, Any]:
        """What `harness leaderboard --json` prints: the flat columns, and when the variant ran attacks its figures
        under them (`under_attack`) and its harm per category (`harm_categories`)."""
        out = self.as_dict()
        if self.system_prompt is not None:
            out["system_prompt"] = self.system_prompt
        if self.attacks is not None:
            out["under_attack"] = self.attacks.as_dict()
            out["harm_categories"] = [vars(c).copy() for c in self.categories]
        return out


NESTED = ("cost", "attacks", "categories", "system_prompt")  # a row's records that are not flat columns


@dataclass(frozen=True)
class RateTables:
    """Everything the surfaces print, computed once."""

    primary_rater: str | None
    refusal_rater: str | None
    leaderboard: list[LeaderboardRow]
    harm: list[HarmRate]
    refusals: list[RefusalRate]
    verdicts: dict[str, int]  # sample_key -> the primary rater's majority verdict (harmful prompts)
    qos: QosTables = field(default_factory=QosTables)  # quality-of-service disparities (templated prompts)
    models: Mapping[str, ModelFacts] = field(default_factory=dict)  # catalog facts of the models (by name)
    main_system_prompt: str | None = None  # the system prompt of the main columns (None: none)
    attacks: tuple[str, ...] = ()  # the attacks run, by name
    attacked: tuple[Generation, ...] = ()  # their generations (harness.rates.attacks.attacked_generations)
    attack_verdicts: dict[str, int] = field(default_factory=dict)  # sample_key -> majority verdict under attack
    attack_rater: str | None = None  # the harm rater of the figures under attack (the primary rater when any)
    system_prompts: list[SystemPromptRate] = field(default_factory=list)  # with several system prompts


def rate_tables(generations: Sequence[Generation], counts: Sequence[RatingCount], labels: Sequence[LabelCount],
                rater: str | None = None, cards: Mapping[str, JudgeCard] | None = None,
                include_flagged: bool = False, qos_labels: Sequence[QosLabel] = (),
                answers: Sequence[AnswerCount] = (), models: Mapping[str, ModelFacts] | None = None,
                probabilities: Sequence[RatingProbability] = ()) -> RateTables:
    """Every figure of every surface, computed once. `cards`: the judge card to correct each rater with (by rater
    key; harness.calibration.cards_for_correction chooses them). Cost medians leave out warm-up and contended
    samples unless `include_flagged`. `qos_labels`: the quality-of-service judge's labels (harness.qos). `models`:
    the catalog's facts of the models (harness.variants.manifest.model_facts): base models, shipped variants.
    `probabilities`: the probabilities behind verdicts (a probe judge's), which human-checked rates predict with."""
    models = dict(models or {})
    main, system_prompt = main_generations(generations)
    attacked = attacked_generations(generations, system_prompt)
    harm = harm_rates(main, counts)
    refusals = refusal_rates(main, labels)
    primary = choose_primary_rater(harm, rater)
    refusal_rater = choose_refusal_rater(refusals)
    qos = qos_tables(main, refusal_events(labels, refusal_rater), refusal_rater, qos_labels)
    worst = worst_categories(main, counts, primary)
    by_rater: dict[VariantKey, dict[str, HarmRate]] = {}
    for hr in harm:
        by_rater.setdefault((hr.device, hr.model, hr.variant), {})[hr.rater] = hr
    ref: dict[tuple[VariantKey, str], RefusalRate] = {((r.device, r.model, r.variant), r.prompts): r
                                                      for r in refusals if r.rater == refusal_rater}
    verdicts = output_verdicts(main, counts, primary) if primary else {}
    people = people_verdicts(main, counts) if primary else {}
    probs = output_probabilities(main, probabilities, counts, primary) if primary else {}
    harmful_keys: dict[VariantKey, list[str]] = {}
    for g in main:
        if not g.benign:
            harmful_keys.setdefault((g.device, g.model, g.variant), []).append(g.sample_key)
    card = (cards or {}).get(primary) if primary else None
    one_answer = one_answer_warnings(main, answers, counts, primary)
    attack_rater, attack_refusal_rater = choose_attack_raters(attacked, counts, labels, primary, refusal_rater, rater)
    attack_card = (cards or {}).get(attack_rater) if attack_rater else None
    attack_rows, attack_verdicts = under_attack(attacked, counts, labels, attack_rater, attack_refusal_rater,
                                                attack_card)
    categories = category_rates(main, counts, primary)
    rows = []
    for c in _cost_summaries(generations, main, include_flagged):
        key = c.key
        h: HarmRate | None = by_rater.get(key, {}).get(primary) if primary else None
        est = None
        if h is not None and h.rate is not None:
            est = corrected_harm(Rate.of(h.n_harmful, h.n_valid), harmful_keys.get(key, []), verdicts, people, card,
                                 h.rater_kind in HUMAN_KINDS, probs)
        rows.append(LeaderboardRow(
            rank=0, cost=c, harm_rater=primary, **_harm_columns(h, est, worst.get(key)),
            refusal_rater=refusal_rater, **_refusal_columns(ref.get((key, "harmful")), ref.get((key, "benign"))),
            other_harm={name: x.rate for name, x in sorted(by_rater.get(key, {}).items())},
            harm_judge_warning=one_answer.get(key), **_qos_columns(qos.summary(key)),
            base_model=bool(models.get(c.model) and models[c.model].base), attacks=attack_rows.get(key),
            categories=categories.get(key, ()), system_prompt=system_prompt))
    rows = _ranked(_with_fronts(rows))
    return RateTables(primary, refusal_rater, rows, harm, refusals, verdicts, qos, models, system_prompt,
                      tuple(attack_names(attacked)), tuple(attacked), attack_verdicts, attack_rater,
                      system_prompt_rates(generations, counts, labels, primary, refusal_rater))


def _cost_summaries(everything: Sequence[Generation], main: Sequence[Generation],
                    include_flagged: bool) -> list[CostSummary]:
    """Cost from the main generations; a variant that has none (only attacked ones) from all of its own."""
    costs = cost_summaries(main, include_flagged)
    have = {c.key for c in costs}
    rest = [g for g in everything if (g.device, g.model, g.variant) not in have]
    return sorted(costs + cost_summaries(rest, include_flagged), key=lambda c: c.key) if rest else costs


def _harm_columns(h: HarmRate | None, est: HarmEstimate | None,
                  worst: tuple[str | None, float, int] | None) -> dict[str, Any]:
    """A row's harm figures: the estimate (`corrected_harm`), the primary rater's raw rate and the worst category."""
    return {"harm_rate": est.rate if est else None, "harm_ci_low": est.ci_low if est else None,
            "harm_ci_high": est.ci_high if est else None, "harm_n": h.n_valid if h else None,
            "harm_n_invalid": h.n_invalid if h else None, "worst_category": worst[0] if worst else None,
            "worst_category_rate": worst[1] if worst else None, "worst_category_n": worst[2] if worst else None,
            "harm_method": est.method if est else None, "harm_raw_rate": h.rate if h else None,
            "harm_raw_ci_low": h.ci_low if h else None, "harm_raw_ci_high": h.ci_high if h else None,
            "harm_card": est.card if est else None, "harm_human_n": est.human_n if est else None,
            "harm_human_rate": est.human_rate if est else None,
            "harm_human_ci_low": est.human_ci_low if est else None,
            "harm_human_ci_high": est.human_ci_high if est else None, "harm_note": est.note if est else None}


def _refusal_columns(harmful: RefusalRate | None, benign: RefusalRate | None) -> dict[str, Any]:
    """A row's refusal rate on harmful prompts and its over-refusal on benign controls."""
    return {"refusal_rate": harmful.rate if harmful else None, "refusal_ci_low": harmful.ci_low if harmful else None,
            "refusal_ci_high": harmful.ci_high if harmful else None,
            "refusal_n": harmful.n_valid if harmful else None, "over_refusal_rate": benign.rate if benign else None,
            "over_refusal_ci_low": benign.ci_low if benign else None,
            "over_refusal_ci_high": benign.ci_high if benign else None,
            "over_refusal_n": benign.n_valid if benign else None}


def _qos_columns(q: QosSummary | None) -> dict[str, Any]:
    if q is None:
        return {}
    return {"qos_max_gap": q.max_gap, "qos_p": q.p_holm, "qos_axis": q.axis, "qos_n": q.n, "qos_rater": q.rater,
            "qos_groups": f"{q.high_group} > {q.low_group}" if q.high_group and q.low_group else None,
            "qos_gap_ci_high": q.gap_ci_high, "qos_gap_ci_axis": q.gap_ci_axis}


def _with_fronts(rows: list[LeaderboardRow]) -> list[LeaderboardRow]:
    out: list[LeaderboardRow] = []
    for device in sorted({r.device for r in rows}):
        sub = [r for r in rows if r.device == device]
        tps = pareto_front([(r.harm_rate, r.cost.decode_tps) for r in sub], maximise_second=True)
        ram = pareto_front([(r.harm_rate, None if r.cost.peak_rss_bytes is None else float(r.cost.peak_rss_bytes))
                            for r in sub], maximise_second=False)
        out += [replace(r, front_tps=a, front_ram=b) for r, a, b in zip(sub, tps, ram)]
    return out


def _ranked(rows: list[LeaderboardRow]) -> list[LeaderboardRow]:
    """Per device: lowest harm first (unknown last), then highest decode tok/s (unknown last)."""
    def order(r: LeaderboardRow) -> tuple[Any, ...]:
        return (r.device, r.harm_rate is None, r.harm_rate or 0.0, r.cost.decode_tps is None,
                -(r.cost.decode_tps or 0.0))

    out: list[LeaderboardRow] = []
    rank: dict[str, int] = {}
    for r in sorted(rows, key=order):
        rank[r.device] = rank.get(r.device, 0) + 1
        out.append(replace(r, rank=rank[r.device]))
    return out
