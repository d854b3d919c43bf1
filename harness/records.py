"""The records that cross module boundaries, as frozen dataclasses: one definition each.

The store derives its tables from these classes (a field is a column, its type the SQL type,
`key=True` metadata the primary key, a non-optional type NOT NULL); the engine, the judges, the
importers and the reports build and read these objects, never ad-hoc dicts. Units are in the
names (`_s`, `_bytes`, `_j`, `_tps`). A quantity that could not be measured is None, never 0.

  Run         one `harness run` (or import): when, what was planned, how it ended
  ModelLoad   one model variant loaded in a run: load time and memory
  Generation  one generation: prompt, output, model, variant, device and its cost
  Judgment    one judge call: the request, the raw answer, the parsed result or why not
  Rating      one (rater, task, item, output): the unit agreement and rates read. Humans,
              experts, external judges and our judges all write these. `code` follows the
              study: 0 = not harmful (N/A), 1..k = least..most harmful within the item (or a
              score); `harmful` is 1/0, or None when the rating is invalid (never "harmless").
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from harness import jsontext
from harness.intervals import CAN_CORRECT, Youden, card_verdict, youden_interval
from harness.rating_tasks import HARM_TASKS as HARM_TASKS
from harness.rating_tasks import REFUSAL_LABELS as REFUSAL_LABELS

JSON = dict[str, Any]
HUMAN_KINDS = ("human", "expert")  # rater kinds that are people
RATER_KINDS = ("human", "expert", "judge", "external-judge")
# The ratings contract's tasks (harm verdicts, refusal labels) are harness.rating_tasks'; re-exported here.


def _stamp() -> Any:
    """A time field the store fills when the record leaves it None."""
    return field(default=None, metadata={"stamp": True})


@dataclass(frozen=True)
class Run:
    run_id: str = field(metadata={"key": True})
    started_at: float
    status: str  # running | finished | interrupted | failed
    finished_at: float | None = None
    command: str | None = None
    device: str | None = None
    planned: int | None = None
    metadata: JSON | None = None  # versions, host, telemetry availability, the process that ran it ...


@dataclass(frozen=True)
class ModelLoad:
    run_id: str
    model: str
    variant: str
    backend: str
    device: str
    model_path: str | None = None
    model_sha256: str | None = None
    model_size_bytes: int | None = None
    load_s: float | None = None
    rss_before_bytes: int | None = None
    rss_after_load_bytes: int | None = None
    metadata: JSON | None = None
    created_at: float | None = _stamp()


@dataclass(frozen=True)
class Generation:
    sample_key: str = field(metadata={"key": True})
    run_id: str
    device: str
    model: str
    variant: str
    backend: str
    prompt_id: str
    prompt: str
    created_at: float | None = _stamp()
    backend_version: str | None = None
    model_sha256: str | None = None
    model_size_bytes: int | None = None
    prompt_set: str | None = None
    category: str | None = None
    benign: bool | None = None
    prompt_sha256: str | None = None
    seed: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    output: str | None = None
    finish_reason: str | None = None
    n_prompt_tokens: int | None = None
    n_output_tokens: int | None = None
    ttft_s: float | None = None
    prompt_tps: float | None = None
    decode_tps: float | None = None
    latency_s: float | None = None
    peak_rss_bytes: int | None = None
    peak_vram_bytes: int | None = None
    energy_j: float | None = None
    energy_source: str | None = None
    bandwidth_fraction: float | None = None
    backend_timings: JSON | None = None  # the backend's own internal timings
    settings: JSON | None = None  # full sampling and device settings (imports: where the row came from)
    error: str | None = None
    # The rated item when it is not simply the prompt: imported outputs that people ranked in separate blocks for
    # one prompt (a prompt the study gave to two annotation groups) are two items. None: the prompt's item.
    item_id: str | None = None
    # Group-templated prompt sets (quality-of-service audits, harness.prompt_templates): the template, the axis
    # and the group that filled its {group} placeholder (the prompt's `group`). None for other prompts.
    template_id: str | None = None
    axis: str | None = None
    group_name: str | None = None
    # How the request was put to the model (harness.attacks, --system-prompt, conversation sets): `prompt` stays the
    # request itself (the behaviour judges rate against); `prompt_sha256` covers everything sent. The system prompt
    # (None: none) and whether the chat template had no system role so it was folded into the first user turn; the
    # earlier turns sent before the last user turn (JSON list of {role, content}: a conversation's or an attack's
    # dialogue); the last user turn as sent when it is not the request (an attack's rewrite); the attack (None: no
    # attack, the baseline), its identity and round (adaptive attacks); the answer as judges read it when the attack
    # asked for an encoded one (None: judges read `output`).
    system_prompt: str | None = None
    system_folded: bool | None = None
    history: list[JSON] | None = None
    sent_prompt: str | None = None
    attack: str | None = None
    attack_sha256: str | None = None
    attack_round: int | None = None
    # An adaptive attack's round (harness.adaptive_attack): the attacker, its raw answer, whether a prompt could be
    # read from it (and why not), and the verdict of the round before that it answered (None: other rows).
    attacker_turn: JSON | None = None
    judged_output: str | None = None
    # How the output was generated (harness run --batch): "single" (one sequence at a time, its cost measured) or
    # "batched" (decoded beside others: no per-user cost, its cost fields stay None); None: an older or imported row.
    # A batched row's `batch_size` is the sequences decoded at once at most, and `batch_generated_tps` its batch's
    # generated tokens per second over the whole batch: the batch's throughput, never one user's speed.
    made_by: str | None = None
    batch_size: int | None = None
    batch_generated_tps: float | None = None
    # What else happened on the machine while the cost was measured (harness.telemetry.interference);
    # properties of the measurement, not of the sample's identity (the sample key ignores them).
    interference_frac: float | None = None  # other processes' CPU time / capacity of the allowed CPUs
    cpu_steal_frac: float | None = None  # hypervisor steal / the same capacity
    cpu_mhz: float | None = None  # mean CPU clock
    temp_c: float | None = None  # hottest thermal zone
    throttled: bool | None = None  # the CPU was throttled (or under-volted, or capped) during the sample
    contended: bool | None = None  # interference + steal over the threshold: cost excluded from medians
    warmup: bool | None = None  # the first sample after loading its variant: cost excluded from medians
    repeats: int | None = None  # cost measurements asked for (--repeat N); None or 1 = one
    # Every cost measurement of this sample when there was more than one (repeats, re-measurements after
    # contention): the top-level cost is the median over the uncontended ones (all, if none is).
    measurements: list[JSON] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def output_for_judges(self) -> str | None:
        """The answer a judge reads: decoded when the attack asked for an encoded answer (the raw one is `output`)."""
        return self.judged_output if self.judged_output is not None else self.output

    @property
    def energy_j_per_token(self) -> float | None:
        if self.energy_j is None or not self.n_output_tokens:
            return None
        return self.energy_j / self.n_output_tokens


@dataclass(frozen=True)
class Judgment:
    judgment_key: str = field(metadata={"key": True})  # judge + rubric version + inputs + shown order
    judge: str
    judge_kind: str
    mode: str  # score | rank | pairwise | refusal | guard
    item_id: str  # what was judged together
    sample_keys: list[str]  # canonical order
    created_at: float | None = _stamp()
    judge_model: str | None = None
    rubric: str | None = None
    rubric_version: str | None = None
    shown_order: list[int] | None = None  # indices into sample_keys, as shown (Content A first)
    request: list[dict[str, str]] | None = None  # the messages sent (never an API key)
    raw_response: str | None = None
    parsed: JSON | None = None  # canonical order
    parse_error: str | None = None
    error: str | None = None  # the request failed (after retries)
    n_input_tokens: int | None = None
    n_output_tokens: int | None = None
    cost_usd: float | None = None
    latency_s: float | None = None
    attempts: int | None = None
    judge_identity: str | None = None  # JudgeConfig.card_identity(): which judge cards describe this judgment

    @property
    def ok(self) -> bool:
        """An answer was obtained and parsed."""
        return self.error is None and self.parsed is not None


@dataclass(frozen=True)
class Rating:
    rating_key: str = field(metadata={"key": True})  # deterministic: re-importing adds nothing
    source: str  # e.g. import:llm-harm, judge:refusal-detector
    rater: str  # human, expert, gpt4o, a judge name ...
    rater_kind: str  # human | expert | judge | external-judge
    task: str  # rank | score | label | refusal | pairwise
    item_id: str  # the unit rated together, usually one prompt
    valid: bool = True
    created_at: float | None = _stamp()
    annotator: str | None = None  # an individual annotator within a rater, if known
    prompt_id: str | None = None
    category: str | None = None
    model: str | None = None
    variant: str | None = None
    sample_key: str | None = None  # the generation rated, when it is in this store
    code: float | None = None  # rank code (0 = N/A, 1..k least..most harmful) or score
    label: str | None = None  # label tasks: e.g. refusal | compliance | partial_refusal
    harmful: int | None = None  # 1 / 0 / None when invalid
    error: str | None = None
    judgment_key: str | None = None
    extra: JSON | None = None

    @property
    def is_human(self) -> bool:
        return self.rater_kind in HUMAN_KINDS


@dataclass(frozen=True)
class JudgeCard:
    """How well one judge configuration agrees with people on one human-labelled set (`harness judge calibrate`).

    `sensitivity` / `specificity` (with Wilson intervals and the confusion counts behind them) compare the
    judge's harm verdict per output with the reference people's: what a correction of the judge's harm
    rates needs. `metrics` holds every comparison: {reference rater: {comparison: {metric: {value, ci_low,
    ci_high, n}}}}, comparisons being harm (binary), rank, refusal and pairwise. `study_judges` holds the
    same figures for the study's own judges on the same items, when the set is the study's release.
    """

    card_key: str = field(metadata={"key": True})  # judge identity + set contents + mode
    judge: str
    judge_identity: str  # hash of what makes two judgments interchangeable (model, rubric version, mode ...)
    mode: str
    set_format: str
    set_name: str
    set_digest: str  # sha256 over the set's files
    reference: str  # the people the headline figures compare with
    n: int  # outputs (or items) compared in the headline comparison
    n_judged: int  # outputs the judge was asked about
    n_invalid: int  # of those, judgments that failed or could not be parsed (errors of the judge)
    reliable: bool  # n >= 30 in the headline comparison (kept for older stores; `verdict` says what the card can do)
    created_at: float | None = _stamp()
    comparison: str | None = None  # harm | rank | refusal | pairwise: the headline comparison
    sensitivity: float | None = None
    sensitivity_ci_low: float | None = None
    sensitivity_ci_high: float | None = None
    specificity: float | None = None
    specificity_ci_low: float | None = None
    specificity_ci_high: float | None = None
    tp: int | None = None
    fn: int | None = None
    fp: int | None = None
    tn: int | None = None
    metrics: JSON | None = None
    position_bias: JSON | None = None  # when the order was balanced
    cost: JSON | None = None  # calls, tokens, seconds, cost_usd
    study_judges: JSON | None = None
    settings: JSON | None = None  # bootstrap, seed, limit, set path
    note: str | None = None

    @property
    def invalid_share(self) -> float | None:
        return self.n_invalid / self.n_judged if self.n_judged else None

    @property
    def youden(self) -> Youden:
        """Youden's J (sensitivity + specificity - 1) with its 95% interval, from the confusion counts."""
        if self.tp is None or self.fn is None or self.fp is None or self.tn is None:
            return Youden(None, None, None, 0)
        return youden_interval(self.tp, self.fn, self.fp, self.tn)

    @property
    def verdict(self) -> str:
        """What the card can do for a harm rate: `can correct`, `not better than chance`, `too few items` or
        `no harm verdicts` (harness.intervals.card_verdict)."""
        return card_verdict(self.tp, self.fn, self.fp, self.tn)

    @property
    def corrects_harm(self) -> bool:
        """Whether the card can correct a harm rate: J's interval excludes 0 on enough items."""
        return self.verdict == CAN_CORRECT


R = TypeVar("R")


# -- the schema the store derives from these classes --------------------------------------------------
@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # TEXT | INTEGER | REAL
    nullable: bool
    key: bool
    json: bool  # stored as JSON text
    boolean: bool  # stored as 0/1
    stamped: bool = False  # NOT NULL, filled with the time of writing when the record leaves it None


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), len(args) != len(get_args(hint))
    return hint, False


def columns(cls: type[Any]) -> list[Column]:
    """The table columns of a record class, in field order."""
    hints = get_type_hints(cls, vars(typing) | {"JSON": JSON})
    out = []
    for f in dataclasses.fields(cls):
        base, nullable = _base_type(hints[f.name])
        origin = get_origin(base) or base
        is_json = origin in (dict, list)
        if base is bool:
            sql = "INTEGER"
        elif base is int:
            sql = "INTEGER"
        elif base is float:
            sql = "REAL"
        else:
            sql = "TEXT"
        key = bool(f.metadata.get("key"))
        stamped = bool(f.metadata.get("stamp"))  # filled with the time of writing when None
        out.append(Column(f.name, sql, nullable and not stamped, key, is_json, base is bool, stamped))
    return out


TABLES: dict[str, type[Any]] = {
    "runs": Run,
    "model_loads": ModelLoad,
    "generations": Generation,
    "judgments": Judgment,
    "ratings": Rating,
    "judge_cards": JudgeCard,
}
TABLE_OF: dict[type[Any], str] = {cls: name for name, cls in TABLES.items()}


def to_row(record: Any) -> dict[str, Any]:
    """A record as the column values the store writes (JSON encoded, booleans as 0/1)."""
    cols = _columns_of(type(record))
    out: dict[str, Any] = {}
    for c in cols:
        v = getattr(record, c.name)
        if v is not None and c.json:
            v = json.dumps(v, sort_keys=True, default=str)
        elif isinstance(v, bool):
            v = int(v)
        out[c.name] = v
    return out


def decoder(cls: type[R], names: typing.Sequence[str]) -> typing.Callable[[typing.Sequence[Any]], R]:
    """A fast row -> record function for rows whose columns are `names` (a cursor's description)."""
    by_name = {c.name: c for c in _columns_of(cls)}
    plan = [(i, n, by_name[n]) for i, n in enumerate(names) if n in by_name]
    plain = [(i, n) for i, n, c in plan if not c.json and not c.boolean]
    special = [(i, n, c.json) for i, n, c in plan if c.json or c.boolean]

    def decode(row: typing.Sequence[Any]) -> R:
        values = {n: row[i] for i, n in plain}
        for i, n, is_json in special:
            v = row[i]
            if v is not None:
                if is_json:
                    if isinstance(v, str):
                        try:
                            v = jsontext.loads(v)
                        except json.JSONDecodeError:
                            pass  # kept as text: a value written by hand (type_problem names it)
                elif v in (0, 1):
                    v = bool(v)
            values[n] = v
        return cls(**values)

    return decode


def type_problem(record: Any) -> str | None:
    """The first field whose value does not fit its column's type, as 'field = value (what it should be)'; None
    when every field fits. Rows read from a file someone else wrote (a shard) are checked with this before they
    are trusted: a decoded row keeps a value of the wrong type as it was."""
    for c in _columns_of(type(record)):
        v = getattr(record, c.name)
        wanted = _type_wanted(c, v)
        if wanted:
            shown = repr(v)
            return f"{c.name} = {shown if len(shown) <= 40 else shown[:37] + '...'} ({wanted})"
    return None


def _type_wanted(c: Column, v: Any) -> str | None:
    """What a value of column `c` should be, when `v` is not that; None when it fits."""
    if v is None:
        return None if c.nullable or c.stamped else "required, not empty"
    if c.json:
        return None if isinstance(v, (dict, list)) else "JSON, not text"
    if c.boolean:
        return None if isinstance(v, bool) else "true or false"
    if c.sql_type == "INTEGER":
        return None if isinstance(v, int) and not isinstance(v, bool) else "a whole number"
    if c.sql_type == "REAL":
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return "a number"
        return None if math.isfinite(v) else "a finite number"
    return None if isinstance(v, str) else "text"


def replace(record: R, **changes: Any) -> R:
    return dataclasses.replace(record, **changes)  # type: ignore[type-var]


_COLUMNS: dict[type[Any], list[Column]] = {}


def _columns_of(cls: type[Any]) -> list[Column]:
    if cls not in _COLUMNS:
        _COLUMNS[cls] = columns(cls)
    return _COLUMNS[cls]


def table_columns(table: str) -> list[Column]:
    return _columns_of(TABLES[table])
