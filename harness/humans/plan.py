"""Labelling plans: which of a store's outputs people should label, written as tool-neutral JSON Lines.

An item is what an annotator sees at once, following the study's protocol: one prompt and the outputs
of every variant for it on one device (the rank judges' grouping, harness.judging.tasks), shown as
Content A, B, C in a shuffled order, never with model or variant names. `draw_plan` picks items from
the generations of a store; `write_plan` / `read_plan` store them one JSON object a line:

  {"plan": "plan:...", "item": "i:...", "position": 1, "item_id": "p:...", "prompt_id": "...",
   "prompt": "...", "category": "...", "outputs": [{"sample_key": "...", "output": "..."}, ...],
   "shown_order": [2, 0, 1], "strategy": "stratified", "seed": 0}

`outputs` are sorted by sample key (an opaque hash: the order says nothing about the model);
`shown_order[j]` is the index in `outputs` of the output shown at position j (Content A is j = 0).
The page (`harness annotate`) shuffles again per annotator; exports to other tools use this order.
Byte-identical outputs (two variants that wrote the same text) are shown once: `PlanItem.contents` groups
the outputs of a shown order into the distinct texts an annotator sees, and an answer on a content is the
answer on each of its outputs (harness.humans.collect).

Strategies (only harmful prompts unless `include_benign`, the ones harm rates are computed over):
  stratified    round robin over (device, category) cells, each cell's items in a seeded random
                order, taking an item when one of its (device, model, variant) still needs labels:
                every variant gets its quota spread evenly over the categories.
  disagreement  items whose judges disagree or are unsure first: an output scores 4p(1-p) for the
                share p of harmful verdicts over every judge verdict on it, at least its share of
                unparseable verdicts, and 1 when no judge gave a verdict; an item scores its most
                contested output (ties: the mean, then a seeded random order).

Quotas: `per_variant` labels for every variant, or one number per variant (`quotas`), e.g. from
`labels_for_width`, the labels a variant needs for a harm-rate interval of a given width.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import jsontext, keys
from harness.errors import UsageError
from harness.judging.order import shown_orders
from harness.judging.tasks import group_generations
from harness.records import Generation
from harness.stats import Z_95

STRATEGIES = ("stratified", "disagreement")
VariantKey = tuple[str, str, str]  # device, model, variant
MAX_PLAN_BYTES = 1 << 30


@dataclass(frozen=True)
class PlanOutput:
    sample_key: str
    output: str


@dataclass(frozen=True)
class PlanItem:
    plan: str
    item: str  # keys.plan_item_key of its sample keys
    position: int  # 1-based place in the plan
    item_id: str  # the prompt's item (keys.item_id), what ratings are keyed by
    prompt_id: str
    prompt: str
    category: str | None
    outputs: tuple[PlanOutput, ...]  # sorted by sample key
    shown_order: tuple[int, ...]
    strategy: str
    seed: int

    @property
    def sample_keys(self) -> list[str]:
        return [o.sample_key for o in self.outputs]

    @property
    def k(self) -> int:
        return len(self.outputs)

    @property
    def n_contents(self) -> int:
        """How many distinct texts an annotator sees (identical outputs are shown once)."""
        return len({o.output for o in self.outputs})

    def contents(self, shown_order: Sequence[int]) -> list[tuple[int, ...]]:
        """The distinct texts shown, in the order they first appear in `shown_order`: per content, the indices (into
        `outputs`) of the outputs with exactly that text. Identical outputs are shown once and share its answer."""
        groups: dict[str, list[int]] = {}
        for i in shown_order:
            groups.setdefault(self.outputs[i].output, []).append(i)
        return [tuple(g) for g in groups.values()]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["outputs"] = [asdict(o) for o in self.outputs]
        d["shown_order"] = list(self.shown_order)
        return d


@dataclass(frozen=True)
class VariantQuota:
    """What the plan holds for one variant: the labels asked for, available and planned."""

    device: str
    model: str
    variant: str
    wanted: int
    available: int  # outputs of this variant that could be labelled
    planned: int
    judge_harm_rate: float | None = None  # the rate the quota was sized from, if any

    @property
    def short(self) -> int:
        return max(0, self.wanted - self.planned)


@dataclass
class Plan:
    plan_id: str
    strategy: str
    seed: int
    items: list[PlanItem]
    quotas: list[VariantQuota] = field(default_factory=list)
    n_singletons: int = 0  # prompts with one output only (nothing to rank against; kept for labels)


# -- how many labels ------------------------------------------------------------------------------
def wilson_width(p: float, n: int, z: float = Z_95) -> float:
    """Total width of the Wilson score interval at an observed proportion p over n labels."""
    denom = 1 + z * z / n
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    centre = (p + z * z / (2 * n)) / denom
    return min(1.0, centre + half) - max(0.0, centre - half)


def labels_for_width(p: float | None, width: float, z: float = Z_95) -> int:
    """The fewest labels whose Wilson 95% interval at harm rate p is at most `width` wide (p None: 0.5, the
    worst case). Starts from the normal approximation n = z^2 p(1-p) / (width/2)^2 and searches from there."""
    if not 0 < width <= 1:
        raise UsageError(f"--target-width {width} is outside (0, 1]: give the interval's total width, e.g. 0.1")
    p = 0.5 if p is None else min(1.0, max(0.0, float(p)))
    normal = z * z * max(p * (1 - p), 1e-9) / (width / 2) ** 2
    hi = max(1, math.ceil(normal))
    while wilson_width(p, hi, z) > width:
        hi *= 2
    lo = 1
    while lo < hi:  # the width decreases with n
        mid = (lo + hi) // 2
        if wilson_width(p, mid, z) <= width:
            hi = mid
        else:
            lo = mid + 1
    return lo


# Sizes a variant's quota from its key and the target width; the PPI power analysis can stand in.
LabelNeed = Callable[[VariantKey, float], int]


@dataclass(frozen=True)
class WilsonNeed:
    """Labels for a Wilson interval of the target width at each variant's current judge harm rate (0.5 when
    the variant has none). A better estimator (the prediction-powered one, which also uses the judge's
    agreement with people) is any callable (variant, width) -> labels."""

    harm_rates: Mapping[VariantKey, float | None]

    def __call__(self, variant: VariantKey, width: float) -> int:
        return labels_for_width(self.harm_rates.get(variant), width)


def quotas_for_width(variants: Iterable[VariantKey], width: float, need: LabelNeed) -> dict[VariantKey, int]:
    """Per variant, the labels `need` says a harm-rate interval of `width` takes (WilsonNeed, or a better one)."""
    return {v: int(need(v, width)) for v in variants}


# -- judge disagreement ----------------------------------------------------------------------------
def output_uncertainty(n_valid: int, n_harmful: int, n_invalid: int) -> float:
    """How much labelling this output would tell (see the module docstring): 0 settled .. 1 unknown."""
    if n_valid <= 0:
        return 1.0
    p = n_harmful / n_valid
    return max(4 * p * (1 - p), n_invalid / (n_valid + n_invalid))


# -- drawing a plan --------------------------------------------------------------------------------
def _variant(g: Generation) -> VariantKey:
    return (g.device, g.model, g.variant)


def _rng(seed: int, *parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(str(p) for p in (seed, *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def draw_plan(generations: Iterable[Generation], *, per_variant: int | None = None,
              quotas: Mapping[VariantKey, int] | None = None, strategy: str = "stratified", seed: int = 0,
              judge_verdicts: Mapping[str, tuple[int, int, int]] | None = None, include_benign: bool = False,
              harm_rates: Mapping[VariantKey, float | None] | None = None) -> Plan:
    """Pick the items to label (see the module docstring). `judge_verdicts`: per sample key, (valid, harmful,
    invalid) judge verdicts, for the disagreement strategy. `quotas` default to `per_variant` for every variant;
    `harm_rates` are only reported beside the quotas they sized."""
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown --strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if per_variant is None and quotas is None:
        raise UsageError("say how many labels: --per-variant N or --target-width W")
    if per_variant is not None and per_variant < 1:
        raise UsageError(f"--per-variant {per_variant} must be at least 1")
    usable = [g for g in generations if g.error is None and g.output is not None and g.output.strip()
              and (include_benign or not g.benign)]
    if not usable:
        what = "generations with an output" if include_benign else "outputs on harmful prompts"
        raise UsageError(f"the store has no {what} to label: run `harness run` first (or pass --include-benign)")
    groups = group_generations(usable, grouped=True)
    available: dict[VariantKey, int] = {}
    for g in usable:
        available[_variant(g)] = available.get(_variant(g), 0) + 1
    wanted = {v: (quotas or {}).get(v, per_variant or 0) for v in available}

    def score(members: Sequence[Generation]) -> tuple[float, float]:
        vals = [output_uncertainty(*(judge_verdicts or {}).get(g.sample_key, (0, 0, 0))) for g in members]
        return max(vals), sum(vals) / len(vals)

    if strategy == "stratified":
        cells: dict[tuple[str, str], list[int]] = {}
        for i, grp in enumerate(groups):
            cells.setdefault((grp.generations[0].device, grp.generations[0].category or ""), []).append(i)
        queues = []
        for cell in sorted(cells):
            order = cells[cell][:]
            _rng(seed, "cell", *cell).shuffle(order)
            queues.append(order)
        candidates: list[int] = []
        while any(queues):  # round robin over the cells
            for q in queues:
                if q:
                    candidates.append(q.pop(0))
    else:
        tiebreak = {i: _rng(seed, "tie", grp.key).random() for i, grp in enumerate(groups)}
        scores = {i: score(grp.generations) for i, grp in enumerate(groups)}
        candidates = sorted(range(len(groups)), key=lambda i: (-scores[i][0], -scores[i][1], tiebreak[i]))

    planned = {v: 0 for v in available}
    chosen = []
    for i in candidates:
        members = groups[i].generations
        if any(planned[_variant(g)] < wanted[_variant(g)] for g in members):
            chosen.append(i)
            for g in members:
                planned[_variant(g)] += 1
        if all(planned[v] >= wanted[v] for v in available):
            break

    drafts = []
    for i in chosen:
        grp = groups[i]
        members = sorted(grp.generations, key=lambda g: g.sample_key)
        item = keys.plan_item_key([g.sample_key for g in members])
        shown = shown_orders(len(members), "shuffle", seed, item)[0]
        drafts.append((item, grp, members, shown))
    pid = keys.plan_id(strategy, seed, [d[0] for d in drafts])
    items = []
    for pos, (item, grp, members, shown) in enumerate(drafts, start=1):
        first = members[0]
        items.append(PlanItem(plan=pid, item=item, position=pos, item_id=grp.item_id, prompt_id=first.prompt_id,
                              prompt=grp.prompt, category=first.category,
                              outputs=tuple(PlanOutput(g.sample_key, str(g.output_for_judges)) for g in members),
                              shown_order=tuple(shown), strategy=strategy, seed=seed))
    quota_rows = [VariantQuota(d, m, v, wanted[(d, m, v)], available[(d, m, v)], planned[(d, m, v)],
                               (harm_rates or {}).get((d, m, v))) for d, m, v in sorted(available)]
    n_single = sum(1 for i in chosen if len(groups[i].generations) == 1)
    return Plan(pid, strategy, seed, items, quota_rows, n_single)


# -- the file ---------------------------------------------------------------------------------------
def write_plan(plan: Plan, path: str | Path) -> Path:
    """Write the plan's items as JSON Lines (atomically: a failed write leaves no half file)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"--out {p} is a folder: give a file name such as {p / 'plan.jsonl'}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for item in plan.items:
                fh.write(json.dumps(item.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
        tmp.replace(p)
    except OSError as exc:
        raise UsageError(f"cannot write the plan to {p} ({exc.strerror}): choose a writable --out path") from exc
    return p


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str, optional: bool = False) -> Any:
    v = obj.get(name)
    if v is None and optional:
        return None
    if not isinstance(v, kind) or isinstance(v, bool) and kind is int:
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise UsageError(f"{where}: '{name}' should be a {want}, got {type(v).__name__}: "
                         "pass a plan written by `harness humans sample`")
    return v


def parse_item(obj: Any, where: str) -> PlanItem:
    """One plan line, checked field by field; UsageError naming the line."""
    if not isinstance(obj, dict):
        raise UsageError(f"{where} is not a JSON object: pass a plan written by `harness humans sample`")
    outputs_raw = _field(obj, "outputs", list, where)
    if not outputs_raw:
        raise UsageError(f"{where} has no outputs: pass a plan written by `harness humans sample`")
    outputs = []
    for j, o in enumerate(outputs_raw):
        if not isinstance(o, dict):
            raise UsageError(f"{where}: output {j + 1} is not an object with sample_key and output")
        outputs.append(PlanOutput(_field(o, "sample_key", str, f"{where} output {j + 1}"),
                                  _field(o, "output", str, f"{where} output {j + 1}")))
    shown = _field(obj, "shown_order", list, where)
    if sorted(x for x in shown if isinstance(x, int) and not isinstance(x, bool)) != list(range(len(outputs))):
        raise UsageError(f"{where}: shown_order {shown!r:.80} is not an order of its {len(outputs)} outputs")
    sample_keys = [o.sample_key for o in outputs]
    if len(set(sample_keys)) != len(sample_keys):
        raise UsageError(f"{where}: a sample key appears twice among its outputs")
    item = _field(obj, "item", str, where)
    if item != keys.plan_item_key(sample_keys):
        raise UsageError(f"{where}: item {item[:40]!r} does not match its outputs (edited by hand?): "
                         "draw the plan again with `harness humans sample`")
    return PlanItem(plan=_field(obj, "plan", str, where), item=item, position=_field(obj, "position", int, where),
                    item_id=_field(obj, "item_id", str, where), prompt_id=_field(obj, "prompt_id", str, where),
                    prompt=_field(obj, "prompt", str, where), category=_field(obj, "category", str, where, True),
                    outputs=tuple(outputs), shown_order=tuple(shown), strategy=_field(obj, "strategy", str, where),
                    seed=_field(obj, "seed", int, where))


def read_plan(path: str | Path) -> list[PlanItem]:
    """The items of a plan file, checked (one plan per file, no item twice); UsageError naming the problem."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"plan {p} does not exist: make one with `harness humans sample --store S --out {p}`")
    if p.stat().st_size > MAX_PLAN_BYTES:
        raise UsageError(f"plan {p} is larger than {MAX_PLAN_BYTES >> 20} MiB: split it, or draw a smaller plan")
    items: list[PlanItem] = []
    seen: dict[str, int] = {}
    try:
        with open(p, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"plan {p.name} line {n}"
                try:
                    obj = jsontext.loads(line)
                except json.JSONDecodeError as exc:
                    raise UsageError(f"{where} is not JSON ({exc.msg}): pass a plan written by `harness humans sample`"
                                     ) from None
                item = parse_item(obj, where)
                if items and item.plan != items[0].plan:
                    raise UsageError(f"{where} belongs to plan {item.plan[:40]!r}, the file's first line to "
                                     f"{items[0].plan!r}: keep one plan per file")
                if item.item in seen:
                    raise UsageError(f"{where} repeats the item of line {seen[item.item]}: keep each item once")
                seen[item.item] = n
                items.append(item)
    except UnicodeDecodeError as exc:
        raise UsageError(f"plan {p} is not UTF-8 text ({exc.reason}): pass a plan written by "
                         "`harness humans sample`") from None
    except OSError as exc:
        raise UsageError(f"cannot read plan {p} ({exc.strerror}): check the path") from exc
    if not items:
        raise UsageError(f"plan {p} has no items: draw one with `harness humans sample`")
    return items


def check_against_store(items: Sequence[PlanItem], generations: Mapping[str, Generation], store_path: Any) -> None:
    """Every output of the plan is a generation of this store with the same prompt and output text (what the page
    shows is what the store holds); UsageError otherwise."""
    for item in items:
        for o in item.outputs:
            g = generations.get(o.sample_key)
            if g is None:
                raise UsageError(f"plan item {item.position} has sample key {o.sample_key[:40]!r}, which is not in "
                                 f"store {store_path}: pass the --store the plan was drawn from")
            for what, plan_text, stored in (("prompt", item.prompt, g.prompt), ("output", o.output, g.output_for_judges)):
                if (stored or "") != plan_text:
                    raise UsageError(f"plan item {item.position}: the {what} of {o.sample_key} differs from the "
                                     f"store's (the plan was edited, or drawn from another store): draw the plan "
                                     f"again with `harness humans sample`, or pass the --store it was drawn from")


def whole_store_plan(generations: Iterable[Generation], seed: int = 0, include_benign: bool = False) -> Plan:
    """Every item of the store, as a plan (what `harness annotate` labels without --plan)."""
    gens = list(generations)
    return draw_plan(gens, per_variant=len(gens) or 1, strategy="stratified", seed=seed,
                     include_benign=include_benign)
