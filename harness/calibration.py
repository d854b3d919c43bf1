"""Judge cards: how well a judge agrees with people, measured on human-labelled sets (`harness judge calibrate`).

For each set (`FORMAT:PATH`, read by the importers of harness.humans: the study's release, JailbreakBench's
judge comparison, XSTest completions, HH-RLHF pairs, texts labelled alone such as OpenAI's moderation evaluation set
(`labels-jsonl:samples-1680.jsonl`, its options after the path: `?flags=S,H&missing=negative`), or a user's
labelled CSV/JSONL), the set's outputs and
people's labels are imported into a private work store, the judge judges the outputs there (cached like
any judgment), and its verdicts are compared with people's:

- harm (binary): the judge's harm verdict per output (the majority of its verdicts) against the reference
  people's (the majority of theirs): the confusion counts, sensitivity and specificity with Wilson
  intervals, accuracy and Cohen's kappa. These are what a correction of the judge's harm rates needs.
- rank: the judge's rankings of each item's outputs (its own in rank mode; derived from its per-output
  scores in score mode, expected scores when it has them) against people's: Krippendorff's alpha
  (ordinal, interval), extrapolated RBO, Kendall tau-b and exact match, with bootstrap intervals.
- refusal: the judge's compliance / refusal / partial_refusal labels against people's: exact match, Cohen's
  kappa and Krippendorff's alpha.
- pairwise: the share of preference pairs where the judge finds the crowd's rejected reply the more harmful
  (its own pairwise verdicts, or its per-output scores).

Every card also holds the share of the judge's answers that were invalid (a failed or unparseable judgment
is an error of the judge, never a "not harmful"), what judging cost (calls, tokens, seconds, price), its
position bias when the shown order was balanced (how often the verdict follows the position rather than the
content), and, for the study's release, the same figures for the study's own judges on the same items. A card
corrects harm rates only when its Youden J's 95% interval excludes 0 on at least 30 items (`JudgeCard.verdict`,
harness.intervals). Cards are stored in the store and in the user's card library (harness.cardlib), and listed
by `harness judge cards`.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import cardlib, keys
from harness.errors import UsageError
from harness.humans import store_set
from harness.humans.report import not_used_note
from harness.intervals import MIN_CARD_ITEMS
from harness.judging.config import JudgeConfig, load_judge
from harness.progress import NoProgress, Progress
from harness.rating_tasks import PAIRWISE, QOS, RANK, REFUSAL, is_harm_task, is_per_output_verdict, rating_task
from harness.records import HUMAN_KINDS, Generation, JudgeCard, Rating
from harness.stats import majority, wilson_interval
from harness.store import Store
from harness.subsample import stratified

MIN_RELIABLE = MIN_CARD_ITEMS  # one threshold for a card's items: harness.intervals'
# Which people a card's headline figures compare with, most preferred first.
REFERENCE_ORDER = ("human-majority", "human-final", "human", "expert")
STUDY_JUDGES = ("gpt4o", "sonnet", "llama")
SET_FORMATS = ("llm-harm", "labels-csv", "labels-jsonl", "pairwise-jsonl", "rankings-csv", "rankings-jsonl", "store")


@dataclass(frozen=True)
class CalibrationSet:
    format: str
    path: Path
    name: str
    digest: str  # sha256 over the set's files (names and bytes), and its options when it has any
    options: tuple[tuple[str, str], ...] = ()  # the importer's options written after the path (?flags=S,H)

    @property
    def spec(self) -> str:
        from harness.humans.query import options_text

        return f"{self.format}:{self.path}{options_text(dict(self.options))}"


def parse_set_spec(spec: str) -> CalibrationSet:
    """`FORMAT:PATH[?name=value&...]` -> a set; UsageError naming the formats, the missing path or an option the
    format does not take."""
    from harness.humans.query import split_options

    fmt, sep, rest = spec.partition(":")
    if not sep or (not rest and fmt != store_set.STORE_FORMAT):
        raise UsageError(f"--set {spec!r}: write FORMAT:PATH, FORMAT one of {', '.join(SET_FORMATS)} "
                         "(e.g. --set labels-csv:judge-comparison.csv)")
    if fmt not in SET_FORMATS:
        raise UsageError(f"--set {spec!r}: unknown set format {fmt!r}: use one of {', '.join(SET_FORMATS)}")
    if fmt == store_set.STORE_FORMAT:  # a results store's own labelled outputs (harness.humans.store_set)
        path = store_set.store_file(rest, spec)
        return CalibrationSet(fmt, path, Path(rest).name or path.parent.name,
                              store_set.digest(*store_set.labelled_outputs(path, spec)))
    written, options = split_options(rest, fmt)
    path = Path(written).expanduser()
    if not path.exists():
        raise UsageError(f"--set {spec!r}: {path} does not exist: pass the path of your copy of the set")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256(fmt.encode())
    for f in files:
        h.update(f.name.encode("utf-8", "replace"))
        h.update(hashlib.sha256(f.read_bytes()).digest())
    for name, value in sorted(options.items()):  # other flags are other labels: another set
        h.update(f"?{name}={value}".encode())
    return CalibrationSet(fmt, path, path.name, h.hexdigest(), tuple(sorted(options.items())))


def judge_identity(cfg: JudgeConfig) -> str:
    """The identity a card is kept under (JudgeConfig.card_identity)."""
    return cfg.card_identity()


def _output_key(r: Rating) -> str:
    return r.sample_key or f"{r.item_id}|{r.model}|{r.variant}"


def harm_verdicts(ratings: Iterable[Rating]) -> dict[str, int]:
    """Per output: the majority of these ratings' harm verdicts (ties and outputs without one left out)."""
    acc: dict[str, list[int]] = {}
    for r in ratings:
        if r.valid and r.harmful is not None and is_harm_task(r.task):
            a = acc.setdefault(_output_key(r), [0, 0])
            a[0] += int(r.harmful)
            a[1] += 1
    return {k: v for k, (h, n) in acc.items() if (v := majority(h, n)) is not None}


def binary_figures(judge: dict[str, int], people: dict[str, int]) -> dict[str, Any] | None:
    """The 2x2 table of judge against people over the outputs both judged, with its rates and intervals."""
    shared = [k for k in judge if k in people]
    if not shared:
        return None
    tp = sum(1 for k in shared if judge[k] == 1 and people[k] == 1)
    fn = sum(1 for k in shared if judge[k] == 0 and people[k] == 1)
    fp = sum(1 for k in shared if judge[k] == 1 and people[k] == 0)
    tn = sum(1 for k in shared if judge[k] == 0 and people[k] == 0)
    n = len(shared)
    sens_lo, sens_hi = wilson_interval(tp, tp + fn)
    spec_lo, spec_hi = wilson_interval(tn, tn + fp)
    acc_lo, acc_hi = wilson_interval(tp + tn, n)
    po = (tp + tn) / n
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
    kappa = None if pe >= 1 else (po - pe) / (1 - pe)
    return {"n": n, "tp": tp, "fn": fn, "fp": fp, "tn": tn,
            "sensitivity": {"value": tp / (tp + fn) if tp + fn else None, "ci_low": sens_lo, "ci_high": sens_hi,
                            "n": tp + fn},
            "specificity": {"value": tn / (tn + fp) if tn + fp else None, "ci_low": spec_lo, "ci_high": spec_hi,
                            "n": tn + fp},
            "accuracy": {"value": po, "ci_low": acc_lo, "ci_high": acc_hi, "n": n},
            "cohen_kappa": {"value": kappa, "ci_low": None, "ci_high": None, "n": n}}


def _agreement(ratings: Sequence[Rating], a: str, b: str, task: str, bootstrap: int, seed: int) -> dict[str, Any]:
    """Agreement metrics of raters a and b on one task (harness.agreement), as {metric: {value, ci..., n}}."""
    from harness.agreement import agreement_rows

    rows = [r for r in ratings if r.rater in (a, b) and r.task == task]
    if len({r.rater for r in rows}) < 2:
        return {}
    out = {}
    for row in agreement_rows(rows, raters=[a, b], bootstrap=bootstrap, seed=seed, task=task, inter_annotator=False):
        out[row["metric"]] = {k: row.get(k) for k in ("value", "ci_low", "ci_high", "n")}
    return out


def rank_from_scores(ratings: Sequence[Rating], groups: dict[str, list[str]], rater: str) -> list[Rating]:
    """Rank ratings derived from one rater's per-output scores: within each item (a list of its outputs'
    sample keys), the outputs it calls harmful ranked by score (code 1 = least harmful), the others N/A (0).
    Expected scores (fractional codes) separate outputs that one-digit answers tie."""
    by_key = {r.sample_key: r for r in ratings if r.rater == rater and is_per_output_verdict(r.task) and r.valid}
    out = []
    for item, members in groups.items():
        rated = [by_key[k] for k in members if k in by_key]
        if len(rated) != len(members) or len(members) < 2:
            continue
        harmful = sorted({float(r.code if r.code is not None else 0.0) for r in rated if r.harmful})
        for r in rated:
            code = harmful.index(float(r.code if r.code is not None else 0.0)) + 1 if r.harmful else 0
            out.append(Rating(rating_key=f"derived:{r.rating_key}", source=r.source, rater=rater, rater_kind="judge",
                              task=RANK.name, item_id=item, model=r.model, variant=r.variant, sample_key=r.sample_key,
                              code=float(code), harmful=int(code > 0), valid=True,
                              extra={"derived_from": r.task, "score": r.code}))
    return out


def refusal_from_qos(ratings: Sequence[Rating]) -> list[Rating]:
    """A quality-of-service judge's labels as refusal labels (compliance, caveat and stereotype all comply), so a
    refusal-labelled set (XSTest) measures the refusal part of its taxonomy."""
    return [Rating(rating_key=f"derived:{r.rating_key}", source=r.source, rater=r.rater, rater_kind=r.rater_kind,
                   task=REFUSAL.name, item_id=r.item_id, prompt_id=r.prompt_id, model=r.model, variant=r.variant,
                   sample_key=r.sample_key, label=QOS.refusal_label(r.label), valid=r.valid,
                   error=r.error, extra={"derived_from": QOS.name, "qos_label": r.label})
            for r in ratings if r.task == QOS.name]


def pairwise_accuracy(ratings: Sequence[Rating], judge: str, reference: str,
                      groups: dict[str, list[str]]) -> dict[str, Any] | None:
    """Share of preference pairs where the judge finds the reference's rejected reply (code 1) the more harmful:
    from the judge's pairwise win shares, or its per-output scores. Ties are no verdict (counted)."""
    ref = {r.sample_key: r for r in ratings if r.rater == reference and r.task == PAIRWISE.name and r.valid}
    jp = {r.sample_key: r for r in ratings if r.rater == judge and r.task == PAIRWISE.name and r.valid}
    js = {r.sample_key: r for r in ratings if r.rater == judge and is_per_output_verdict(r.task) and r.valid}
    correct = total = ties = 0
    for members in groups.values():
        if len(members) != 2 or not all(k in ref for k in members):
            continue
        rejected = [k for k in members if (ref[k].code or 0) > 0]
        if len(rejected) != 1:
            continue
        source = jp if all(k in jp for k in members) else js if all(k in js for k in members) else None
        if source is None:
            continue
        a, b = (float(source[k].code or 0.0) for k in members)
        if a == b:
            ties += 1
            continue
        total += 1
        correct += members[0 if a > b else 1] == rejected[0]
    if not total and not ties:
        return None
    lo, hi = wilson_interval(correct, total)
    return {"accuracy": {"value": correct / total if total else None, "ci_low": lo, "ci_high": hi, "n": total},
            "ties": ties}


def refusal_figures(ratings: Sequence[Rating], judge: str, reference: str, bootstrap: int,
                    seed: int) -> dict[str, Any]:
    out = _agreement(ratings, reference, judge, REFUSAL.name, bootstrap, seed)
    ref = {r.sample_key: r.label for r in ratings if r.rater == reference and r.task == REFUSAL.name and r.valid
           and r.sample_key}
    jud = {r.sample_key: r.label for r in ratings if r.rater == judge and r.task == REFUSAL.name and r.valid
           and r.sample_key}
    binary = binary_figures({k: int(v in REFUSAL.refusing) for k, v in jud.items()},
                            {k: int(v in REFUSAL.refusing) for k, v in ref.items()})
    if binary:
        out["refusal_detection"] = binary  # "positive" = refused (fully or partly)
    return out


# -- position bias ------------------------------------------------------------------------------------
def position_bias(store: Store, judge: str, mode: str) -> dict[str, Any] | None:
    """With balanced orders: how often the verdict follows the shown position rather than the content."""
    judgments = [j for j in store.judgments_of(judge) if j.ok and j.mode == mode and j.shown_order is not None]
    by_items: dict[tuple[str, ...], list[Any]] = {}
    for j in judgments:
        by_items.setdefault(tuple(sorted(j.sample_keys)), []).append(j)
    following = consistent = groups = 0
    for js in by_items.values():
        orders = {tuple(j.shown_order or []) for j in js}
        if len(orders) < 2:
            continue
        groups += 1
        if mode == "pairwise":
            answers = [(j.parsed or {}).get("answer") for j in js]
            winners = [(j.parsed or {}).get("more_harmful_sample_key") for j in js]
            following += len(set(answers)) == 1 and answers[0] in ("A", "B")
            consistent += len(set(winners)) == 1
        else:
            tops: list[tuple[str, int] | None] = []
            for j in js:
                codes = (j.parsed or {}).get("codes") or []
                shown = j.shown_order or []
                if not codes or max(codes) == 0:
                    tops.append(None)
                    continue
                top = codes.index(max(codes))  # canonical index of the most harmful output
                tops.append((j.sample_keys[top], shown.index(top)))
            positions = {t[1] for t in tops if t is not None}
            contents = {t[0] for t in tops if t is not None}
            following += len(positions) == 1 and len(contents) > 1
            consistent += len(contents) <= 1
    if not groups:
        return None
    return {"groups": groups, "position_following": following / groups, "consistent": consistent / groups,
            "what": "share of items judged in every order where the verdict (the more harmful / most harmful output) "
                    "stayed at one shown position while the content changed, and where it stayed with one output"}


# -- the card -----------------------------------------------------------------------------------------
@dataclass
class SetRun:
    """A set imported into a work store, judged."""

    cset: CalibrationSet
    generations: list[Generation]
    ratings: list[Rating] = field(default_factory=list)  # people's and the set's own judges'
    judge_ratings: list[Rating] = field(default_factory=list)
    judged_keys: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # rows the importer rejected, one line each


def item_groups(generations: Sequence[Generation]) -> dict[str, list[str]]:
    """The outputs of each item (the set's unit rated together), by item id."""
    out: dict[str, list[str]] = {}
    for g in generations:
        out.setdefault(g.item_id or keys.item_id(g.prompt), []).append(g.sample_key)
    return out


def references(ratings: Sequence[Rating]) -> list[str]:
    people = {r.rater for r in ratings if r.rater_kind in HUMAN_KINDS}
    ordered = [r for r in REFERENCE_ORDER if r in people]
    return ordered + sorted(people - set(ordered))


def _task_kinds(ratings: Sequence[Rating], rater: str) -> set[str]:
    return {r.task for r in ratings if r.rater == rater and r.valid}


def check_fit(cfg: JudgeConfig, cset: CalibrationSet, ratings: Sequence[Rating], groups: dict[str, list[str]]) -> None:
    """UsageError when the set's labels cannot measure this judge (labels of the wrong type)."""
    people = [r for r in ratings if r.rater_kind in HUMAN_KINDS]
    if not people:
        raise UsageError(f"--set {cset.spec}: the set has no people's labels (human or expert raters): a card "
                         "compares a judge with people")
    tasks = {r.task for r in people if r.valid}
    harm_ok = any(is_harm_task(t) for t in tasks) and any(r.harmful is not None for r in people)
    judge_task = rating_task(cfg.judging_mode.task)
    if judge_task is QOS and REFUSAL.name not in tasks:
        raise UsageError(f"--set {cset.spec}: judge '{cfg.name}' sorts replies into quality-of-service classes, but "
                         f"the set's labels are {', '.join(sorted(tasks))}: calibrate it on a refusal-labelled set "
                         "(e.g. XSTest completions), which measures its refusal classes")
    if judge_task is REFUSAL and REFUSAL.name not in tasks:
        raise UsageError(f"--set {cset.spec}: judge '{cfg.name}' answers compliance / refusal, but the set's labels "
                         f"are {', '.join(sorted(tasks))}: calibrate it on a refusal-labelled set (e.g. XSTest "
                         "completions), or use --mode score")
    if judge_task.harm_verdict and not (harm_ok or PAIRWISE.name in tasks):
        raise UsageError(f"--set {cset.spec}: judge '{cfg.name}' gives harm verdicts, but the set's labels are "
                         f"{', '.join(sorted(tasks))} (no harmful / not harmful verdicts): use a harm-labelled set")
    if not judge_task.per_output and not any(len(v) >= 2 for v in groups.values()):
        raise UsageError(f"--set {cset.spec}: judge '{cfg.name}' compares outputs ({cfg.mode} mode) but every item of "
                         "the set has one output: pass --mode score, or a set with several outputs per prompt")


def build_card(cfg: JudgeConfig, run: SetRun, work: Store, *, bootstrap: int, seed: int, limit: int | None,
               cost: dict[str, Any]) -> JudgeCard:
    """The card of one judge on one judged set."""
    judged = set(run.judged_keys)
    people = [r for r in run.ratings if r.rater_kind in HUMAN_KINDS and (r.sample_key in judged or not r.sample_key)]
    judge_rows = [r for r in run.judge_ratings if r.sample_key in judged]
    groups = {k: v for k, v in item_groups(run.generations).items() if all(s in judged for s in v)}
    derived: list[Rating] = []
    judge_task = rating_task(cfg.judging_mode.task)
    if judge_task.per_output_verdict and any(len(v) >= 2 for v in groups.values()):
        derived = rank_from_scores(judge_rows, groups, cfg.name)
    if judge_task is QOS:
        derived = refusal_from_qos(judge_rows)
    all_rows = [*people, *judge_rows, *derived]
    metrics: dict[str, Any] = {}
    refs = references(people)
    judge_verdicts = harm_verdicts(judge_rows)
    for ref in refs:
        ref_rows = [r for r in people if r.rater == ref]
        m: dict[str, Any] = {}
        binary = binary_figures(judge_verdicts, harm_verdicts(ref_rows))
        if binary:
            m["harm"] = binary
        if RANK.name in _task_kinds(ref_rows, ref) and any(r.task == RANK.name for r in [*judge_rows, *derived]):
            m["rank"] = _agreement(all_rows, ref, cfg.name, RANK.name, bootstrap, seed)
        if REFUSAL.name in _task_kinds(ref_rows, ref) and judge_task.refusing:
            m["refusal"] = refusal_figures(all_rows, cfg.name, ref, bootstrap, seed)
        if PAIRWISE.name in _task_kinds(ref_rows, ref):
            pw = pairwise_accuracy(all_rows, cfg.name, ref, groups)
            if pw:
                m["pairwise"] = pw
        m = {k: v for k, v in m.items() if v}
        if m:
            metrics[ref] = m
    headline_ref, comparison, headline = _headline(metrics, cfg.mode)
    block = metrics.get(headline_ref, {}) if headline_ref else {}
    # the binary figures of the headline: harm verdicts, or for a refusal judge the detection of refusals
    harm = block.get("harm") if comparison != "refusal" else block.get("refusal", {}).get("refusal_detection")
    n_invalid = sum(1 for r in judge_rows if not r.valid)
    n_judged = len(judge_rows)
    reliable = headline >= MIN_RELIABLE
    notes = []
    if not reliable:
        notes.append(f"too few items: only {headline} item(s) compared (fewer than {MIN_RELIABLE})")
    if n_judged and n_invalid:
        notes.append(f"{n_invalid} of {n_judged} judgment(s) invalid (errors of the judge, never 'not harmful')")
    not_used = not_used_note(run.rejected) if run.rejected else None  # rows the set's importer could not use
    if not_used:
        notes.append(not_used)
    study = _study_judges(run, judged, refs, bootstrap, seed) if run.cset.format == "llm-harm" else None
    return JudgeCard(
        card_key=keys.card_key(cfg.name, judge_identity(cfg), cfg.mode, run.cset.digest, limit),
        judge=cfg.name, judge_identity=judge_identity(cfg), mode=cfg.mode, set_format=run.cset.format,
        set_name=run.cset.name, set_digest=run.cset.digest, reference=headline_ref or "-", n=headline,
        n_judged=n_judged, n_invalid=n_invalid, reliable=reliable, comparison=comparison,
        sensitivity=_value(harm, "sensitivity"), sensitivity_ci_low=_value(harm, "sensitivity", "ci_low"),
        sensitivity_ci_high=_value(harm, "sensitivity", "ci_high"), specificity=_value(harm, "specificity"),
        specificity_ci_low=_value(harm, "specificity", "ci_low"),
        specificity_ci_high=_value(harm, "specificity", "ci_high"),
        tp=harm["tp"] if harm else None, fn=harm["fn"] if harm else None, fp=harm["fp"] if harm else None,
        tn=harm["tn"] if harm else None, metrics=metrics,
        position_bias=position_bias(work, cfg.name, cfg.mode) if cfg.order == "balanced" else None,
        cost=cost, study_judges=study,
        settings={"bootstrap": bootstrap, "seed": seed, "limit": limit, "set": str(run.cset.path),
                  "order": cfg.order, **({"not_used": not_used} if not_used else {})}, note="; ".join(notes) or None)


def _value(block: dict[str, Any] | None, name: str, field_name: str = "value") -> float | None:
    if not block or block.get(name) is None:
        return None
    v = block[name].get(field_name)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _headline(metrics: dict[str, Any], mode: str) -> tuple[str | None, str | None, int]:
    """The reference and comparison a card is summarised by, and its n."""
    order = {"refusal": ("refusal", "harm", "rank", "pairwise"), "qos": ("refusal",), "pairwise": ("pairwise", "rank", "harm"),
             "rank": ("rank", "harm", "pairwise")}.get(mode, ("harm", "rank", "pairwise", "refusal"))
    for ref in metrics:
        for comp in order:
            block = metrics[ref].get(comp)
            if not block:
                continue
            if comp == "harm":
                return ref, comp, int(block["n"])
            if comp == "pairwise":
                return ref, comp, int(block["accuracy"]["n"])
            ns = [int(v["n"]) for v in block.values() if isinstance(v, dict) and v.get("n") is not None]
            return ref, comp, max(ns) if ns else 0
    return None, None, 0


def _study_judges(run: SetRun, judged: set[str], refs: Sequence[str], bootstrap: int, seed: int) -> dict[str, Any]:
    """The study's own judges against the same people on the same items (from the release)."""
    out: dict[str, Any] = {}
    rows = [r for r in run.ratings if r.sample_key in judged]
    for name in sorted({r.rater for r in rows if r.rater_kind == "external-judge"}):
        theirs = [r for r in rows if r.rater == name]
        m: dict[str, Any] = {}
        for ref in refs:
            ref_rows = [r for r in rows if r.rater == ref]
            block: dict[str, Any] = {}
            binary = binary_figures(harm_verdicts(theirs), harm_verdicts(ref_rows))
            if binary:
                block["harm"] = binary
            rank = _agreement([*ref_rows, *theirs], ref, name, RANK.name, bootstrap, seed)
            if rank:
                block["rank"] = rank
            if block:
                m[ref] = block
        out[name] = m
    return out


# -- running it ---------------------------------------------------------------------------------------
def load_set(cset: CalibrationSet) -> tuple[list[Generation], list[Rating], list[str]]:
    """The set's outputs and labels, and the importer's rejections (one line each)."""
    from harness.humans import parse_path

    if cset.format == store_set.STORE_FORMAT:
        return (*store_set.labelled_outputs(cset.path, cset.spec), [])
    options: dict[str, Any] = {}
    if cset.format == "llm-harm":
        from harness.humans.llm_harm import DEFAULT_REVERSE_GROUPS

        options["reverse_groups"] = set(DEFAULT_REVERSE_GROUPS)
    generations, ratings, report = parse_path(cset.format, cset.path, **options, **dict(cset.options))
    generations = [g for g in generations if g.output is not None]
    if not generations:
        raise UsageError(f"--set {cset.spec}: the set holds no outputs to judge")
    return generations, ratings, [r.text() for r in report.rejected]


def item_stratum(generations: Sequence[Generation], ratings: Sequence[Rating]) -> Callable[[list[str]], str]:
    """What `--limit` stratifies a set's items over: the category of the item's outputs, else the people who
    labelled it (the study's student groups), else harmful against benign prompts."""
    category = {g.sample_key: ("benign " if g.benign else "") + (g.category or "") for g in generations}
    who: dict[str, str] = {}
    for r in ratings:
        if r.sample_key and r.rater_kind in HUMAN_KINDS and r.annotator:
            who.setdefault(r.sample_key, r.annotator)
    return lambda members: category.get(members[0], "").strip() or who.get(members[0], "") or "all"


def judge_set(cfg: JudgeConfig, cset: CalibrationSet, work: Store, *, limit: int | None, progress: Progress,
              use_disk_cache: bool = True,
              units: Callable[[list[Generation], list[Rating]], list[list[str]]] | None = None,
              ) -> tuple[SetRun, dict[str, Any]]:
    """Import a set into the work store and judge its outputs; returns the judged set and what judging cost.
    `limit` counts items (the outputs of one prompt), or the units `units` makes of the set (e.g. pairs)."""
    from harness.judging.runner import judge_any

    generations, ratings, rejected = load_set(cset)
    groups = item_groups(generations)
    check_fit(cfg, cset, ratings, groups)
    work.add([*generations, *ratings])
    items = units(generations, ratings) if units is not None else list(groups.values())
    if limit is not None:  # a seeded sample stratified over the items' categories (or the people who labelled them)
        items = stratified(items, limit, item_stratum(generations, ratings))
    chosen = [k for members in items for k in members]
    result = judge_any(work, cfg, sample_keys=chosen, progress=progress, use_disk_cache=use_disk_cache)
    judge_ratings = [r for r in work.ratings(rater=cfg.name)]
    judged = sorted({r.sample_key for r in judge_ratings if r.sample_key})
    costs = work.judgment_costs(judges=[cfg.name, *cfg.member_specs()])
    cost = {"calls": len(costs), "requested": result.n_requested,
            "input_tokens": sum(c[6] or 0 for c in costs), "output_tokens": sum(c[7] or 0 for c in costs),
            "seconds": round(sum(c[9] or 0.0 for c in costs), 3),
            "seconds_per_judgment": (round(sum(c[9] or 0.0 for c in costs) / len(costs), 4) if costs else None),
            "cost_usd": sum(c[8] for c in costs if c[8] is not None) if any(c[8] is not None for c in costs)
            else None}
    return SetRun(cset, generations, ratings, judge_ratings, judged, rejected), cost


def measure(cfg: JudgeConfig, cset: CalibrationSet, *, limit: int | None = None, bootstrap: int = 1000,
            seed: int = 0, progress: Progress | None = None, use_disk_cache: bool = True) -> JudgeCard:
    """Measure a judge on one set, in a private work store; returns its card (not stored)."""
    progress = progress or NoProgress()
    with tempfile.TemporaryDirectory(prefix="harness-calibration-") as tmp, \
            Store.open(Path(tmp) / "work.sqlite") as work:
        progress.message(f"calibrating {cfg.name} on {cset.spec}")
        run, cost = judge_set(cfg, cset, work, limit=limit, progress=progress, use_disk_cache=use_disk_cache)
        card = build_card(cfg, run, work, bootstrap=bootstrap, seed=seed, limit=limit, cost=cost)
    if card.n_judged and card.n_invalid == card.n_judged:
        first = next((r.error for r in run.judge_ratings if r.error), "no valid answer")
        raise UsageError(f"judge '{cfg.name}' answered nothing valid on {cset.spec} ({card.n_invalid} of "
                         f"{card.n_judged} invalid; first: {first}): check its endpoint, model and rubric")
    if not card.metrics:
        raise UsageError(f"--set {cset.spec}: no output was rated by both judge '{cfg.name}' and the set's people: "
                         "nothing to compare")
    return card


def calibrate(cfg: JudgeConfig, sets: Sequence[CalibrationSet], store: Store, *, limit: int | None = None,
              bootstrap: int = 1000, seed: int = 0, progress: Progress | None = None,
              use_disk_cache: bool = True) -> list[JudgeCard]:
    """Measure a judge on each set and store its cards (see the module docstring)."""
    cards = [measure(cfg, cset, limit=limit, bootstrap=bootstrap, seed=seed, progress=progress,
                     use_disk_cache=use_disk_cache) for cset in sets]
    store.add(cards, replace=True)  # every set measured before any card is stored
    cardlib.save(cards)  # and in the user's library, so that every store can use them
    return cards


def cards_for_correction(cards: Sequence[JudgeCard], raters: Iterable[str],
                         identities: dict[str, set[str]] | None = None,
                         chosen: str | None = None) -> dict[str, JudgeCard]:
    """The card each rater's harm rates are corrected with, of the harm cards made by the configuration that made
    the rater's judgments (`identities`: the store's record of them; when it has none, the judge TOML's current
    configuration; for a judge whose TOML cannot be read, any of its cards). By default the card compared on the
    most outputs (then the newest): a rule that never looks at what the card would do to a rate. `chosen` (the
    `--card` option: a card's set name or the start of its key) picks one card instead; UsageError when no card is
    called that, or when it belongs to no rater's judge configuration."""
    out: dict[str, JudgeCard] = {}
    picked = _chosen_cards(cards, chosen) if chosen else None
    for rater in raters:
        mine = _cards_of(picked if picked is not None else cards, rater, identities)
        if mine:
            out[rater] = max(mine, key=lambda c: ((c.tp or 0) + (c.fn or 0) + (c.fp or 0) + (c.tn or 0),
                                                  c.created_at or 0.0))
    if picked is not None and not out:
        c = picked[0]
        raise UsageError(f"--card {chosen}: the card of {c.judge} on {c.set_name} belongs to another judge "
                         "configuration than the one whose verdicts are stored (it would correct errors this judge "
                         "was never measured on): calibrate this configuration with `harness judge calibrate`, or "
                         "pass another --card (see `harness judge cards`)")
    return out


def _chosen_cards(cards: Sequence[JudgeCard], chosen: str) -> list[JudgeCard]:
    picked = [c for c in cards if c.comparison == "harm" and c.tp is not None
              and (c.set_name == chosen or c.card_key.startswith(chosen))]
    if not picked:
        names = sorted({c.set_name for c in cards if c.comparison == "harm" and c.tp is not None})
        raise UsageError(f"--card {chosen}: no judge card with harm verdicts is called that: pass a set name or the "
                         f"start of a card key from `harness judge cards` ({', '.join(names[:8]) or 'none stored'})")
    return picked


def _cards_of(cards: Sequence[JudgeCard], rater: str, identities: dict[str, set[str]] | None) -> list[JudgeCard]:
    name = rater.split("/")[0]
    mine = [c for c in cards if c.judge == name and c.comparison == "harm" and c.tp is not None]
    wanted = set((identities or {}).get(name, set()))
    if not wanted:
        try:
            wanted = {judge_identity(load_judge(name))}
        except UsageError:
            pass  # not one of our judges (an imported one): its cards can only have come from its own name
    return [c for c in mine if c.judge_identity in wanted] if wanted else mine
