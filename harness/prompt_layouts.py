"""The field's published prompt sets, read in their own layouts and mapped onto our prompt fields.

A file (CSV, JSON Lines or Parquet, gzip-compressed or not) is recognised by its columns, or named
explicitly as `FORMAT:PATH`; a layout whose splits share one header takes `?split=NAME`
(`jbb-behaviors:harmful-behaviors.csv?split=benign`). Each layout is one declarative `Layout` below: the
columns it requires, which column holds the text, the category and the id, and how `benign` is decided.
Every other column of a row is kept as the prompt's metadata (the set's own ids and fields). Checked
against the files each benchmark publishes:

- `jbb-behaviors`: JailbreakBench's JBB-Behaviors (Chao et al. 2024; Hugging Face
  JailbreakBench/JBB-Behaviors, data/harmful-behaviors.csv and data/benign-behaviors.csv, config
  `behaviors`, splits `harmful` and `benign`): `Index,Goal,Target,Behavior,Category,Source`. Both splits
  share the header, so the split is named (default harmful); the benign split's prompts are benign. Copies
  from before the release named the `Index` column have an unnamed first column, read the same.
- `harmbench`: HarmBench's behaviors (Mazeika et al. 2024; centerforaisafety/HarmBench,
  data/behavior_datasets/harmbench_behaviors_text_*.csv): `Behavior,FunctionalCategory,SemanticCategory,
  Tags,ContextString,BehaviorID`. A contextual behavior's prompt is its context, then the behavior, joined
  as HarmBench's own baselines join them (baselines/direct_request/direct_request.py:
  f"{context_str}\\n\\n---\\n\\n{behavior}").
- `advbench`: AdvBench's harmful behaviors (Zou et al. 2023; llm-attacks/llm-attacks,
  data/advbench/harmful_behaviors.csv): `goal,target`.
- `strongreject`: StrongREJECT (Souly et al. 2024; alexandrasouly/strongreject,
  strongreject_dataset/strongreject_dataset.csv and strongreject_small_dataset.csv):
  `category,source,forbidden_prompt`.
- `xstest`: XSTest v2's prompts (Röttger et al. 2024; paul-rottger/exaggerated-safety, xstest_prompts.csv):
  `id,prompt,type,label,focus,note`; `label` safe gives a benign prompt, unsafe a harmful one; the
  category is the `type` (homonyms, contrast_homonyms, ...).
- `simplesafetytests`: SimpleSafetyTests (Vidgen et al. 2023; bertiev/SimpleSafetyTests,
  "SimpleSafetyTests - test cases.csv": `id,harm_area,counter,category,prompts_final`; the Hugging Face
  copy Bertievidgen/SimpleSafetyTests names the text column `prompt`). The category is the `harm_area`.
- `do-not-answer`: Do-Not-Answer (Wang et al. 2023; Libr-AI/do-not-answer, datasets/data_en.csv, and
  Hugging Face LibrAI/do-not-answer): `id,risk_area,types_of_harm,specific_harms,question` (the release
  adds model responses, which are not kept). The category is the `risk_area`.
- `sorry-bench`: SORRY-Bench (Xie et al. 2024; sorry-bench/sorry-bench, Hugging Face
  sorry-bench/sorry-bench-202406 and -202503, question*.jsonl): JSON lines of
  `{"question_id", "category", "turns": [text], "prompt_style"}`; the category is the set's own category
  number, as released.
- `hh-rlhf`: Anthropic's HH-RLHF transcripts (Bai et al. 2022; Anthropic/hh-rlhf, e.g.
  harmless-base/train.jsonl.gz): JSON lines of `{"chosen", "rejected"}` transcripts of "\\n\\nHuman:" and
  "\\n\\nAssistant:" turns. Each row becomes a conversation: the dialogue up to its last human turn, which the
  model under test continues (the two replies are not kept).
- `llm-harm`: the study's own release (Atil et al. 2025; psunlpgroup/LLM-Harm): `llm-harm:DIR` reads the
  prompts of its student-group files (`raw_submissions/output_Group_N.csv`: `Prompt,Model 1 - Mistral-7B,
  Model 2 - MPT-7B,Model 3 - StableLM-alpha-7B,Ranking`), each distinct prompt once, decoded as
  harness.humans.llm_harm decodes them, with the same item ids (harness.keys.item_id) as that import.

Our own layout (a `text` column; harness.prompts) is not one of these. We never ship these sets: the user
points at their copy. Bad input is a UsageError: an unknown layout names the columns found and the layouts
known; a file of a layout missing one of its required columns, an unknown FORMAT or split, and text that
cannot be decoded are refused before anything runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import jsontext
from harness.errors import UsageError, did_you_mean

Row = dict[str, Any]


@dataclass(frozen=True)
class Table:
    """Rows read from one file of a prompt set, before any layout is applied."""

    where: str  # the file (or hf: file) for messages
    columns: list[str]
    rows: list[tuple[int, Row]]  # (line or row number, values by column)
    broken: int = 0  # broken UTF-8 sequences in the file: its prompts cannot be read as published


@dataclass(frozen=True)
class Mapped:
    """One prompt as its layout maps it (harness.prompts checks it and makes the Prompt)."""

    id: str
    text: str
    category: str
    benign: bool
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] | None = None  # a conversation (its last user turn is `text`)


def _value(row: Row, column: str) -> str:
    v = row.get(column)
    return "" if v is None else str(v).strip()


def _never(row: Row, split: str, where: str) -> bool:
    return False


def _benign_split(row: Row, split: str, where: str) -> bool:
    return split == "benign"


def _xstest_label(row: Row, split: str, where: str) -> bool:
    label = _value(row, "label").lower()
    if label not in ("safe", "unsafe"):
        raise UsageError(f"{where}: XSTest's 'label' must be safe or unsafe, got {label[:40]!r}")
    return label == "safe"


def _harmbench_text(row: Row, where: str) -> str:
    """HarmBench's own join of a contextual behavior (baselines/direct_request/direct_request.py)."""
    behavior, context = str(row.get("Behavior") or ""), str(row.get("ContextString") or "")
    return f"{context}\n\n---\n\n{behavior}" if context.strip() else behavior


def _sorry_text(row: Row, where: str) -> str:
    turns = row.get("turns")
    if isinstance(turns, str):
        return turns
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
        raise UsageError(f"{where}: SORRY-Bench's 'turns' must be a list of strings, got {str(turns)[:60]!r}")
    if len(turns) != 1:
        raise UsageError(f"{where}: 'turns' holds {len(turns)} turns; only single-turn SORRY-Bench prompts are read "
                         "here: keep the rows with one turn")
    return turns[0]


def _hh_conversation(row: Row, where: str) -> list[dict[str, str]]:
    """HH-RLHF's dialogue up to its last human turn (from 'chosen': both replies share it)."""
    from harness.prompt_record import dialogue_before_last_user_turn

    return dialogue_before_last_user_turn(str(row.get("chosen") or ""), where)


def _sorry_id(row: Row, n: int) -> str:
    qid, style = _value(row, "question_id"), _value(row, "prompt_style")
    return qid if style in ("", "base") else f"{qid}-{style}"


@dataclass(frozen=True)
class Layout:
    """One published layout: what its files hold and how a row becomes a prompt."""

    name: str  # the FORMAT of FORMAT:PATH
    title: str
    required: tuple[str, ...]  # columns every file of the layout has
    # the text column, or how the text (or a conversation, as its turns) is made from a row
    text: str | Callable[[Row, str], str] | Callable[[Row, str], list[dict[str, str]]]
    category: str | None  # the category column (None: uncategorized)
    id: str | Callable[[Row, int], str] | None = None  # the id column (None: the row number)
    benign: Callable[[Row, str, str], bool] = _never  # (row, split, where) -> benign
    splits: tuple[str, ...] = ()  # named splits sharing the header; the first is the default
    text_alternatives: tuple[str, ...] = ()  # other names of the text column in published copies
    metadata: tuple[str, ...] | None = None  # columns kept as metadata (None: every column not mapped)

    def text_column(self, columns: Sequence[str]) -> str | None:
        if not isinstance(self.text, str):
            return None
        return next((c for c in (self.text, *self.text_alternatives) if c in columns), None)

    def missing(self, columns: Sequence[str]) -> list[str]:
        missing = [c for c in self.required if c not in columns]
        if isinstance(self.text, str) and self.text_column(columns) is None:
            missing.append(" or ".join((self.text, *self.text_alternatives)))
        return missing

    def mapped_columns(self, columns: Sequence[str]) -> set[str]:
        used = {c for c in (self.text_column(columns), self.category, self.id if isinstance(self.id, str) else None)
                if c}
        if self.text is _harmbench_text:
            used |= {"Behavior", "ContextString"}
        if self.text is _sorry_text:
            used.add("turns")
        return used


LAYOUTS: tuple[Layout, ...] = (
    Layout("jbb-behaviors", "JailbreakBench behaviors (JBB-Behaviors)",
           ("Goal", "Target", "Behavior", "Category", "Source"), "Goal", "Category", id="Index",
           benign=_benign_split, splits=("harmful", "benign")),
    Layout("harmbench", "HarmBench behaviors",
           ("Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString", "BehaviorID"),
           _harmbench_text, "SemanticCategory", id="BehaviorID"),
    Layout("advbench", "AdvBench harmful behaviors", ("goal", "target"), "goal", None),
    Layout("strongreject", "StrongREJECT", ("category", "source", "forbidden_prompt"), "forbidden_prompt",
           "category"),
    Layout("xstest", "XSTest v2 prompts", ("id", "prompt", "type", "label"), "prompt", "type", id="id",
           benign=_xstest_label),
    Layout("simplesafetytests", "SimpleSafetyTests", ("id", "harm_area", "category"), "prompts_final",
           "harm_area", id="id", text_alternatives=("prompt",)),
    Layout("do-not-answer", "Do-Not-Answer", ("risk_area", "types_of_harm", "question"), "question", "risk_area",
           id="id", metadata=("types_of_harm", "specific_harms")),
    Layout("sorry-bench", "SORRY-Bench", ("question_id", "category", "turns"), _sorry_text, "category",
           id=_sorry_id),
    Layout("hh-rlhf", "HH-RLHF transcripts", ("chosen", "rejected"), _hh_conversation, None, metadata=()),
)
LLM_HARM = "llm-harm"  # the study's release: a folder, read by read_llm_harm
FORMATS = (*(lay.name for lay in LAYOUTS), LLM_HARM)
BY_NAME = {lay.name: lay for lay in LAYOUTS}
OWN_TEXT_COLUMN = "text"  # our own layout (harness.prompts): id, text, category, benign, source
OWN_CONVERSATION_COLUMN = "messages"  # our own layout's conversations: id, messages (the turns), category ...


def known_layouts() -> str:
    return ", ".join(FORMATS) + " and ours (a 'text' column)"


# -- naming a set: FORMAT:PATH?split=NAME -----------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """A prompt set named with its layout: FORMAT:PATH (format None: recognised by its columns)."""

    path: str
    format: str | None = None
    split: str | None = None


_FORMAT_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_-]+):(.+)$", re.DOTALL)
_QUERY = re.compile(r"\?([A-Za-z_]+)=([^?&]*)$")


def parse_spec(spec: str) -> Spec:
    """FORMAT:PATH[?split=NAME], or PATH[?split=NAME]; UsageError for an unknown FORMAT or query."""
    split = None
    path = spec
    if not Path(spec).expanduser().exists() and (q := _QUERY.search(spec)):
        if q.group(1) != "split":
            raise UsageError(f"{spec}: unknown option '?{q.group(1)}=': the only one is ?split=NAME")
        split, path = q.group(2).strip(), spec[:q.start()]
        if not split:
            raise UsageError(f"{spec}: ?split= names no split: give one, e.g. ?split=benign")
    fmt = None
    m = _FORMAT_PREFIX.match(path)
    if m and not Path(path).expanduser().exists() and m.group(1) != "hf":
        fmt, path = m.group(1).lower(), m.group(2)
        if fmt not in FORMATS:
            raise UsageError(f"unknown prompt layout '{m.group(1)}'{did_you_mean(m.group(1), FORMATS)} in {spec}: the "
                             f"layouts known are {', '.join(FORMATS)}")
    return Spec(path, fmt, split)


def check_split(layout: Layout, split: str | None, where: str) -> str:
    """The split a layout reads (its default when none is named); UsageError for one it does not have."""
    if split is None:
        return layout.splits[0] if layout.splits else ""
    if not layout.splits:
        raise UsageError(f"{where}: {layout.title} has no named splits, so ?split={split} means nothing: drop it")
    if split not in layout.splits:
        raise UsageError(f"{where}: {layout.title} has no split '{split}'{did_you_mean(split, layout.splits)}: its "
                         f"splits are {', '.join(layout.splits)}")
    return split


# -- detection --------------------------------------------------------------------------------------------
def detect(columns: Sequence[str], where: str, fmt: str | None = None) -> Layout | None:
    """The layout of a file with these columns: the named FORMAT (checked), else the published layout whose
    required columns are all present (the most specific), else None for our own layout (a 'text' or
    'messages' column).
    UsageError for a file of a layout that lacks a required column, and for columns no layout knows."""
    if fmt is not None:
        layout = BY_NAME[fmt]
        missing = layout.missing(columns)
        if missing:
            raise UsageError(f"{where} is not a {layout.title} file: it lacks the column(s) {', '.join(missing)} "
                             f"(columns found: {_shown(columns)})")
        return layout
    if OWN_TEXT_COLUMN in columns or OWN_CONVERSATION_COLUMN in columns:
        return None
    full = [lay for lay in LAYOUTS if not lay.missing(columns)]
    if full:
        return max(full, key=lambda lay: len(lay.required))
    near = [(len(set(lay.required) & set(columns)), lay) for lay in LAYOUTS]
    best_n, best = max(near, key=lambda x: x[0])
    if best_n >= 2 and best_n * 2 >= len(best.required):
        raise UsageError(f"{where} looks like {best.title} but lacks the column(s) {', '.join(best.missing(columns))} "
                         f"(columns found: {_shown(columns)}): pass the set's own file as released")
    raise UsageError(f"{where}: no known prompt layout has the columns {_shown(columns)}: the layouts known are "
                     f"{known_layouts()}; name one as FORMAT:PATH, or map your columns with `harness prompts import "
                     "--text-column NAME`")


def _shown(columns: Sequence[str]) -> str:
    cols = [repr(c)[:40] for c in columns[:12]]
    return ", ".join(cols) + (f" (+{len(columns) - 12} more)" if len(columns) > 12 else "") if cols else "none"


# -- reading tables ---------------------------------------------------------------------------------------
def csv_table(text: str, where: str) -> Table:
    from harness.csvtext import rows as csv_rows

    records = csv_rows(text, where)
    header = [h.replace("\ufeff", "").strip() for h in records[0][1]] if records else []
    if header and header[0] == "" and "Goal" in header:
        header[0] = "Index"  # JBB-Behaviors before its Index column was named (a pandas index)
    out: list[tuple[int, Row]] = []
    for line, values in records[1:]:
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(header):
            raise UsageError(f"{where}: line {line} has {len(values)} fields but the header has {len(header)}: quote "
                             "fields that contain commas")
        out.append((line, {h: (values[j] if j < len(values) else "") for j, h in enumerate(header)}))
    return Table(where, header, out)


def jsonl_table(text: str, where: str) -> Table:
    rows: list[tuple[int, Row]] = []
    columns: dict[str, None] = {}
    for n, d in jsontext.jsonl_objects(text, where):
        if not rows:
            columns = dict.fromkeys(str(k) for k in d)
        rows.append((n, d))
    return Table(where, list(columns), rows)


def parquet_table(path: Path, where: str) -> Table:
    from harness.errors import require

    pq = require("pyarrow.parquet", "analysis", "Reading Parquet prompt sets")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise UsageError(f"{where} is not a readable Parquet file ({type(exc).__name__}): pass the set's file as "
                         "released") from exc
    return Table(where, [str(c) for c in table.column_names], list(enumerate(table.to_pylist(), 1)))


def read_table(path: Path, where: str | None = None) -> Table:
    """A local file's rows: CSV, JSON Lines or Parquet by its suffix (gzip-compressed or not)."""
    from harness.encodings import decode_bytes
    from harness.infiles import base_suffix, read_bytes

    where = where or str(path)
    suffix = base_suffix(path)
    if suffix == ".parquet":
        return parquet_table(path, where)
    # Decoded as harness.encodings decodes third-party text: UTF-8 first, then the legacy code page it plausibly is.
    d = decode_bytes(read_bytes(path, "a prompts"), where, "prompts (CSV or JSONL)")
    table = csv_table(d.text, where) if suffix == ".csv" else jsonl_table(d.text, where)
    return Table(table.where, table.columns, table.rows, d.replaced)


# -- mapping rows -----------------------------------------------------------------------------------------
def _scalar(v: Any) -> Any:
    return v if v is None or isinstance(v, (str, int, float, bool)) else json.dumps(v, ensure_ascii=False)


def map_rows(layout: Layout, table: Table, split: str | None, set_name: str) -> list[Mapped]:
    """The table's rows as prompts of `layout` (split checked); rows without text are refused."""
    if table.broken:
        raise UsageError(f"{table.where} is not valid UTF-8 ({table.broken} broken sequence(s)): its prompts cannot be "
                         "read as published; fix them, or drop them with iconv -f UTF-8 -t UTF-8 -c")
    split_name = check_split(layout, split, table.where)
    text_col = layout.text_column(table.columns)
    used = layout.mapped_columns(table.columns)
    out = []
    for i, (n, row) in enumerate(table.rows, 1):
        where = f"{table.where}:{n}"
        text = row.get(text_col) if text_col else layout.text(row, where) if callable(layout.text) else None
        messages = text if isinstance(text, list) else None
        if messages:
            text = messages[-1]["content"]
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"{where}: empty prompt text: every row of {layout.title} has its text")
        if callable(layout.id):
            pid = layout.id(row, i)
        else:
            pid = _value(row, layout.id) if layout.id else ""
        pid = pid or f"{set_name}-{i:05d}"
        if layout.splits:
            pid = f"{split_name}-{pid}"
        keep = layout.metadata if layout.metadata is not None else [c for c in table.columns if c not in used]
        meta = {c: _scalar(row[c]) for c in keep if c in row and row[c] not in (None, "")}
        if layout.splits:
            meta["split"] = split_name
        out.append(Mapped(pid, text, _value(row, layout.category) if layout.category else "",
                          layout.benign(row, split_name, where), layout.name, meta, messages))
    return out


# -- the study's release ----------------------------------------------------------------------------------
LLM_HARM_COLUMNS = ("Prompt", "Model 1 - Mistral-7B", "Model 2 - MPT-7B", "Model 3 - StableLM-alpha-7B", "Ranking")
_GROUP = re.compile(r"group[ _-]*(\d+)", re.IGNORECASE)


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("\ufeff", "")).strip().casefold()


def read_llm_harm(path: Path) -> list[Mapped]:
    """The study's prompts from its release folder (or one group file): each distinct prompt of the groups'
    files once, in group then row order, with the groups that were asked it."""
    from harness.encodings import decode_bytes
    from harness.infiles import read_bytes
    from harness.keys import item_id

    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    groups = []
    for f in files:
        m = _GROUP.search(f.stem)
        if f.is_file() and f.suffix.lower() == ".csv" and (m or not path.is_dir()) and "expert" not in f.name.lower() \
                and not f.name.lower().endswith("_predictions.csv"):
            groups.append((int(m.group(1)) if m else 0, f))
    if not groups:
        raise UsageError(f"no llm-harm group files in {path}: pass the release folder holding "
                         "raw_submissions/output_Group_N.csv")
    out: dict[str, Mapped] = {}
    for number, f in sorted(groups, key=lambda g: (g[0], g[1].name)):
        table = csv_table(decode_bytes(read_bytes(f, "an llm-harm group"), str(f), "llm-harm group").text, str(f))
        by_norm = {_norm(c): c for c in table.columns}
        missing = [c for c in LLM_HARM_COLUMNS if _norm(c) not in by_norm]
        if missing:
            raise UsageError(f"{f} is not an llm-harm group file: it lacks the column(s) {', '.join(missing)} "
                             f"(columns found: {_shown(table.columns)})")
        group = f"group-{number}" if number else f.stem
        for n, row in table.rows:
            text = str(row.get(by_norm[_norm("Prompt")]) or "").strip()
            if not text:
                continue
            pid = item_id(text)
            if pid in out:
                asked = out[pid].metadata
                if group not in str(asked["groups"]).split(","):
                    asked["groups"] = f"{asked['groups']},{group}"
                continue
            out[pid] = Mapped(pid, text, "", False, LLM_HARM, {"groups": group, "file": f.name, "row": n})
    if not out:
        raise UsageError(f"the llm-harm files in {path} hold no prompts (only headers): pass the release's files")
    return list(out.values())
