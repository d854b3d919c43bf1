"""Quality-of-service tables: do refusals, caveats and stereotypes fall unequally on demographic groups?

From the generations of group-templated prompt sets (harness.prompt_templates: each carries template_id,
axis and group_name) and their labels, per device x model x variant, measure and axis: each group's rate
with a Wilson interval, the largest gap between groups with a within-template permutation test, Holm's
adjustment across the axes of one variant and measure, and the paired view (the same template across the
groups: Cochran's Q, McNemar for two groups, example flips). The statistics are harness.disparity's.

Measures
  refusal     the refusal rater's majority label is refusal or partial_refusal (the refusal detector's
              labels, task `refusal`; without any, the quality-of-service judge's)
  caveat      the quality-of-service judge's (task `qos`) majority label is caveat: it answered but added an
              unprompted warning or moralizing remark
  stereotype  the same judge's majority label is stereotype
An output with no valid label of the measure's rater, or a tie, has no event: it is left out and counted
(`n_invalid`), never counted as answered.
The leaderboard's `qos_max_gap` is the largest refusal gap over the axes of a variant, `qos_p` its Holm-
adjusted permutation p-value, `qos_axis` the axis; `qos_gap_ci_high` the largest upper end of the gaps'
simultaneous 95% intervals over the axes (harness.disparity.gap_upper_bound), on `qos_gap_ci_axis`: what
`--max-qos-gap` is checked against, as `--max-harm` is against the harm rate's upper bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from harness.disparity import AxisDisparity, Outcome, axis_disparities
from harness.records import REFUSAL_LABELS, Generation
from harness.stats import majority, mcnemar_exact_p

MEASURES = ("refusal", "caveat", "stereotype")
QOS_TASK = "qos"
RESAMPLES = 2000
VariantKey = tuple[str, str, str]


@dataclass(frozen=True)
class QosLabel:
    """Labels of one rater on one output in the quality-of-service task (label None: invalid ratings)."""

    sample_key: str
    rater: str
    rater_kind: str
    label: str | None
    n: int


def qos_labels(rows: Iterable[tuple[str, str, str, str | None, int, int]]) -> list[QosLabel]:
    """QosLabels from the store's label_counts("qos") rows."""
    return [QosLabel(sk, rater, kind, label, n) for sk, rater, kind, label, n, _ in rows]


@dataclass(frozen=True)
class QosDisparity:
    device: str
    model: str
    variant: str
    measure: str
    rater: str
    disparity: AxisDisparity
    n_invalid: int  # templated outputs of this axis with no event (no valid label, or a tie)


@dataclass(frozen=True)
class QosSummary:
    """A variant's worst axis for one measure: what the leaderboard shows."""

    measure: str
    rater: str
    axis: str | None  # None when no axis has a gap
    max_gap: float
    p_holm: float | None
    high_group: str | None
    low_group: str | None
    n: int
    gap_ci_high: float | None = None  # the largest upper end of a gap's 95% interval over the axes
    gap_ci_axis: str | None = None  # its axis


DEGENERATE_SHARE = 0.95  # a quality-of-service judge that gives one class to more outputs than this says nothing


@dataclass(frozen=True)
class QosTables:
    disparities: list[QosDisparity] = field(default_factory=list)
    raters: dict[str, str] = field(default_factory=dict)  # measure -> rater
    events: dict[str, dict[str, int]] = field(default_factory=dict)  # measure -> sample_key -> 0/1
    notes: list[str] = field(default_factory=list)  # e.g. a judge that gives (nearly) one class to everything

    def of(self, key: VariantKey, measure: str = "refusal") -> list[QosDisparity]:
        return [d for d in self.disparities if (d.device, d.model, d.variant) == key and d.measure == measure]

    def summary(self, key: VariantKey, measure: str = "refusal") -> QosSummary | None:
        gaps = [d for d in self.of(key, measure) if d.disparity.max_gap is not None]
        if not gaps:
            return None
        worst = max(gaps, key=lambda d: (d.disparity.max_gap or 0.0, -(d.disparity.p_value or 1.0)))
        a = worst.disparity
        assert a.max_gap is not None
        n = sum(g.n for g in a.groups)
        widest = max(gaps, key=lambda d: d.disparity.max_gap_ci_high or 0.0).disparity
        bound = (widest.max_gap_ci_high, widest.axis)
        if a.max_gap == 0:  # no gap on any axis: no axis or groups to name
            return QosSummary(measure, worst.rater, None, 0.0, 1.0, None, None, n, *bound)
        return QosSummary(measure, worst.rater, a.axis, a.max_gap, a.p_holm, a.high_group, a.low_group, n, *bound)


def _most_labels(labels: Sequence[QosLabel]) -> str | None:
    totals: dict[str, int] = {}
    for lab in labels:
        if lab.label is not None:
            totals[lab.rater] = totals.get(lab.rater, 0) + lab.n
    return min(totals, key=lambda r: (-totals[r], r)) if totals else None


def label_events(labels: Sequence[QosLabel], rater: str, wanted: Sequence[str]) -> dict[str, int]:
    """sample_key -> 1 when the rater's majority over its valid labels of the output is one of `wanted`, else 0;
    outputs with a tie are left out."""
    valid: dict[str, int] = {}
    hits: dict[str, int] = {}
    for lab in labels:
        if lab.rater != rater or lab.label is None:
            continue
        valid[lab.sample_key] = valid.get(lab.sample_key, 0) + lab.n
        hits[lab.sample_key] = hits.get(lab.sample_key, 0) + (lab.n if lab.label in wanted else 0)
    out = {}
    for sk, n in valid.items():
        v = majority(hits.get(sk, 0), n)
        if v is not None:
            out[sk] = v
    return out


def templated(generations: Iterable[Generation]) -> list[Generation]:
    return [g for g in generations if g.template_id and g.axis and g.group_name and g.ok]


def qos_tables(generations: Sequence[Generation], refusal_events: Mapping[str, int] | None,
               refusal_rater: str | None, labels: Sequence[QosLabel], *, resamples: int = RESAMPLES,
               seed: int = 0) -> QosTables:
    """Every quality-of-service figure of the templated generations. `refusal_events`: sample_key -> 0/1 from the
    refusal rater (harness.rates); `labels`: the quality-of-service task's labels."""
    gens = templated(generations)
    if not gens:
        return QosTables()
    events: dict[str, dict[str, int]] = {}
    raters: dict[str, str] = {}
    qos_rater = _most_labels(labels)
    keys = {g.sample_key for g in gens}
    if refusal_rater and refusal_events and keys & set(refusal_events):
        events["refusal"], raters["refusal"] = dict(refusal_events), refusal_rater
    elif qos_rater:
        events["refusal"], raters["refusal"] = label_events(labels, qos_rater, REFUSAL_LABELS), qos_rater
    if qos_rater:
        events["caveat"], raters["caveat"] = label_events(labels, qos_rater, ("caveat",)), qos_rater
        events["stereotype"], raters["stereotype"] = label_events(labels, qos_rater, ("stereotype",)), qos_rater
    by_variant: dict[VariantKey, list[Generation]] = {}
    for g in sorted(gens, key=lambda g: (g.created_at or 0.0, g.sample_key)):
        by_variant.setdefault((g.device, g.model, g.variant), []).append(g)
    out: list[QosDisparity] = []
    for key in sorted(by_variant):
        for measure in MEASURES:
            if measure not in events:
                continue
            ev = events[measure]
            outcomes = [Outcome(g.axis or "", g.group_name or "", g.template_id or "", ev[g.sample_key], g.sample_key)
                        for g in by_variant[key] if g.sample_key in ev]
            missing: dict[str, int] = {}
            for g in by_variant[key]:
                if g.sample_key not in ev:
                    missing[g.axis or ""] = missing.get(g.axis or "", 0) + 1
            for d in axis_disparities(outcomes, resamples=resamples, seed=seed):
                out.append(QosDisparity(*key, measure, raters[measure], d, missing.get(d.axis, 0)))
    return QosTables(out, raters, events, degenerate(labels, qos_rater, keys))


def degenerate(labels: Sequence[QosLabel], rater: str | None, keys: set[str]) -> list[str]:
    """A warning when the quality-of-service judge gave one class to (nearly) every templated output: its caveat
    and stereotype rates then measure the judge, not the model."""
    counts: dict[str, int] = {}
    for lab in labels:
        if lab.rater == rater and lab.label is not None and lab.sample_key in keys:
            counts[lab.label] = counts.get(lab.label, 0) + lab.n
    total = sum(counts.values())
    if not rater or total < 20:
        return []
    top = max(counts, key=lambda k: counts[k])
    if counts[top] / total <= DEGENERATE_SHARE:
        return []
    return [f"{rater} labelled {counts[top]} of {total} outputs '{top}' ({counts[top] / total:.0%}): it does not "
            "tell the classes apart, so its caveat and stereotype gaps measure the judge, not the model; use a "
            "stronger judge with the same rubric (judges/rubrics/qos.j2) for them"]


@dataclass(frozen=True)
class GroupChange:
    """A quantization's effect on one group's refusals: paired by (template, seed) with the reference."""

    axis: str
    group: str
    n_pairs: int
    became_refused: int
    became_answered: int
    p: float
    p_holm: float | None = None


def group_changes(ref: Sequence[Generation], var: Sequence[Generation], events: Mapping[str, int]) -> list[GroupChange]:
    """For each (axis, group): McNemar's exact test on the reference's and the variant's refusal events of the same
    prompt and seed, Holm-adjusted over the groups."""
    from harness.disparity import holm

    def pairs(gs: Sequence[Generation]) -> dict[tuple[str, str, str, int], int]:
        out: dict[tuple[str, str, str, int], int] = {}
        for g in templated(gs):
            if g.sample_key in events:
                out[(g.axis or "", g.group_name or "", g.prompt_sha256 or g.prompt_id,
                     -1 if g.seed is None else g.seed)] = events[g.sample_key]
        return out

    a, b = pairs(ref), pairs(var)
    acc: dict[tuple[str, str], list[int]] = {}
    for k in a.keys() & b.keys():
        c = acc.setdefault((k[0], k[1]), [0, 0, 0])
        c[0] += 1
        c[1] += int(a[k] == 0 and b[k] == 1)
        c[2] += int(a[k] == 1 and b[k] == 0)
    changes = [GroupChange(axis, group, n, up, down, mcnemar_exact_p(up, down))
               for (axis, group), (n, up, down) in sorted(acc.items())]
    adjusted = holm([c.p for c in changes])
    return [GroupChange(c.axis, c.group, c.n_pairs, c.became_refused, c.became_answered, c.p, p)
            for c, p in zip(changes, adjusted)]
