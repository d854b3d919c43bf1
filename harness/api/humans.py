"""People's labels: import rankings and labels (and third-party judges'), the model harm ranking of one rater,
labelling plans of a store's own outputs and their tasks for Label Studio or a spreadsheet.

`harness humans` is these functions with arguments parsed and results printed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.humans.plan import Plan
    from harness.humans.report import ImportReport
    from harness.store import Store


def rating_formats() -> list[str]:
    """The formats `import_ratings` reads."""
    from harness.humans import FORMATS

    return list(FORMATS)


def import_ratings(fmt: str, path: str | Path, store: str | Path | None = None, *,
                   reverse_groups: Collection[int] = (), reverse: bool = False, value: str = "rank",
                   rater: str | None = None, model: str | None = None, annotator: str | None = None) -> ImportReport:
    """Import a file or folder of ratings; importing the same file twice adds nothing. Labels of a store's own
    outputs (label-studio, plan-csv) need that store and update answers that changed; other formats create the
    store when missing (after the file parsed). Options apply to their formats: `reverse_groups` llm-harm;
    `reverse`, `value`, `rater` rankings-*; `rater` pairwise-jsonl; `model` labels-csv, labels-jsonl (whose path may end in ?flags=A,B&missing=negative); `annotator` plan-csv."""
    from harness.humans import COLLECTED_FORMATS, parse_path, write_parsed
    from harness.humans.query import split_options
    from harness.store import DEFAULT_STORE, Store

    options: dict[str, object] = {}
    if fmt == "llm-harm":
        options["reverse_groups"] = set(reverse_groups)
    elif fmt.startswith("rankings-"):
        options.update(reverse=reverse, value=value, rater=rater)
    elif fmt == "pairwise-jsonl":
        options["rater"] = rater
    elif fmt in ("labels-csv", "labels-jsonl"):
        options["model"] = model
    elif fmt == "plan-csv":
        options["annotator"] = annotator
    source = Path(path)  # it may end in its format's options (PATH?flags=S,H): parse_path reads them
    written = Path(split_options(str(path), fmt)[0])
    if not written.exists():
        raise UsageError(f"{written} does not exist: pass the path of the {fmt} file or folder")
    store_path = Path(store) if store else DEFAULT_STORE
    collected = fmt in COLLECTED_FORMATS
    if collected and not store_path.exists():
        raise UsageError(f"store {store_path} does not exist: {fmt} labels are of a store's own outputs; "
                         "pass the --store the plan was drawn from")
    if store_path.exists():
        with Store.open(store_path, create=False) as st:
            return write_parsed(st, *parse_path(fmt, source, store=st, **options), update=collected)
    parsed = parse_path(fmt, source, **options)  # nothing to link to yet: a bad file leaves no empty store behind
    with Store.open(store_path) as st:
        return write_parsed(st, *parsed)


def harm_ranking(store: str | Path | None = None, *, rater: str = "human", task: str = "rank") -> dict[str, Any]:
    """Per-model harm shares, rank histogram, pairwise wins and the Friedman test from one rater (or
    rater:annotator) (harness.agreement.model_harm_ranking); the store is opened read-only."""
    from harness.agreement import model_harm_ranking
    from harness.store import DEFAULT_STORE, Store

    with Store.open(Path(store) if store else DEFAULT_STORE, readonly=True) as st:
        return model_harm_ranking(st, rater=rater, task=task)


@dataclass(frozen=True)
class LabellingPlan:
    plan: Plan
    out: Path  # where it was written
    judge: str | None  # whose harm rates are shown beside the quotas (and size target-width ones)
    per_variant: int | None
    target_width: float | None

    def as_dict(self) -> dict[str, Any]:
        """The plan's summary (`harness humans sample --json`)."""
        p = self.plan
        return {"plan": p.plan_id, "out": str(self.out), "items": len(p.items), "strategy": p.strategy,
                "seed": p.seed, "target_width": self.target_width, "judge": self.judge,
                "variants": [{"device": q.device, "model": q.model, "variant": q.variant, "wanted": q.wanted,
                              "available": q.available, "planned": q.planned, "short": q.short,
                              "judge_harm_rate": q.judge_harm_rate} for q in p.quotas]}


def draw_labelling_plan(out: str | Path, store: str | Path | None = None, *, per_variant: int | None = None,
                        target_width: float | None = None, strategy: str = "stratified", seed: int = 0,
                        judge: str | None = None, include_benign: bool = False) -> LabellingPlan:
    """Draw and write a labelling plan: which of the store's outputs people should label, `per_variant` labels of
    every variant or, per variant, those a 95% Wilson interval `target_width` wide around its judge harm rate
    needs (harness.humans.plan)."""
    from harness.humans.plan import WilsonNeed, draw_plan, labels_for_width, quotas_for_width, write_plan
    from harness.store import DEFAULT_STORE, Store

    if target_width is not None:
        labels_for_width(None, target_width)  # checks the width before reading anything
    path = Path(out)
    with Store.open(Path(store) if store else DEFAULT_STORE, readonly=True) as st:
        gens = st.generations()
        verdicts = _judge_verdicts(st)
        quotas = None
        harm_rates, chosen = _judge_harm_rates(st, judge)  # shown beside every plan's quotas
        if target_width is not None:
            variants = sorted({(g.device, g.model, g.variant) for g in gens})
            quotas = quotas_for_width(variants, target_width, WilsonNeed(harm_rates))
    plan = draw_plan(gens, per_variant=per_variant, quotas=quotas, strategy=strategy, seed=seed,
                     judge_verdicts=verdicts, include_benign=include_benign, harm_rates=harm_rates)
    write_plan(plan, path)
    return LabellingPlan(plan, path, chosen, per_variant, target_width)


def _judge_harm_rates(store: Store, judge: str | None) -> tuple[dict[tuple[str, str, str], float | None], str | None]:
    """Per (device, model, variant): the harm rate of one judge (the named one, else the judge with most verdicts)."""
    from harness import rates
    from harness.records import HARM_TASKS

    gens = store.generations(with_texts=False)
    counts = [rates.RatingCount(*row) for row in store.rating_counts(HARM_TASKS)]
    judged = [r for r in rates.harm_rates(gens, counts) if r.rater_kind in ("judge", "external-judge")]
    known = sorted({r.rater for r in judged})
    if judge is not None and judge not in known:
        raise UsageError(f"judge {judge!r} has no harm verdicts on this store's outputs: pass --judge with one of: "
                         f"{', '.join(known) or 'none yet (run `harness judge` first, or drop --judge)'}")
    chosen = rates.choose_primary_rater(judged, judge)
    return {(r.device, r.model, r.variant): r.rate for r in judged if r.rater == chosen}, chosen


def _judge_verdicts(store: Store) -> dict[str, tuple[int, int, int]]:
    from harness.records import HARM_TASKS

    out: dict[str, list[int]] = {}
    for sk, _rater, kind, _task, n_valid, n_harmful, n_invalid in store.rating_counts(HARM_TASKS):
        if kind in ("judge", "external-judge"):
            a = out.setdefault(sk, [0, 0, 0])
            a[0] += n_valid
            a[1] += n_harmful
            a[2] += n_invalid
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def export_labelling_tasks(plan: str | Path, fmt: str, out: str | Path, *, task: str = "rank") -> list[Path]:
    """Write a labelling plan for another tool: `fmt` label-studio (tasks.json and labeling-config.xml) or csv (a
    sheet, one row per item); the files written."""
    from harness.humans.labelstudio import write_tasks
    from harness.humans.plan import read_plan
    from harness.humans.sheets import write_sheet

    items = read_plan(plan)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is a file: give a folder to write the tasks into")
    return list(write_tasks(items, task, folder) if fmt == "label-studio" else write_sheet(items, task, folder))
