"""Prompt sets: JSONL files of {id, text, category, benign, source}, and importers for a user's CSV/JSONL.

A set is found by name in the catalog (prompts/NAME.jsonl, or prompts/NAME.toml for a group-templated set,
harness.prompt_templates) or given as a path. A published benchmark's file is read in its own layout,
recognised by its columns or named as FORMAT:PATH (harness.prompt_layouts), and `hf:OWNER/DATASET[:SPLIT]`
reads a Hub dataset (harness.prompt_hub); their own ids and fields are kept as each prompt's metadata.
The name `default` is the union of the shipped harm-eliciting set and the
benign controls. Importers map a user's columns onto the record fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import catalog, jsontext
from harness.errors import UsageError
from harness.prompt_record import Prompt, conversation, decode_text  # the record, re-exported for readers

if TYPE_CHECKING:
    from harness.prompt_layouts import Mapped

HARM_CATEGORIES = (
    "discriminatory_or_biased_language",
    "offensive_content",
    "promotion_of_harm",
    "privacy_invasion",
    "negative_influence",
)

# Sets made of other sets.
COMPOSITE_SETS = {"default": ("harm-eliciting", "benign-controls")}


def _read(path: Path) -> str:
    """A prompt file's text (gzip-compressed or not; a FIFO or device is refused before it is opened)."""
    from harness.infiles import read_bytes

    return decode_text(read_bytes(path, "a prompts"), str(path))


JSON_TYPE_NAMES = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", list: "an array",
                   dict: "an object"}
FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {"id": ((str, int), "a string or an integer"),
                                                         "text": ((str,), "a string")}


def _check_types(d: dict[str, Any], where: str) -> None:
    """Refuse an id or text of another JSON type (str() would turn a null text into the prompt "None")."""
    for key, (kinds, want) in FIELD_TYPES.items():
        v = d.get(key)
        if key not in d or (isinstance(v, kinds) and not isinstance(v, bool)):
            continue
        got = JSON_TYPE_NAMES.get(type(v), type(v).__name__)
        raise UsageError(f"{where}: '{key}' is {got}, not {want}: give every prompt's {key} as {want}")


def _record(d: dict[str, Any], where: str, set_name: str) -> Prompt:
    history: tuple[tuple[str, str], ...] = ()
    if "messages" in d:
        if "text" in d:
            raise UsageError(f"{where}: has both 'text' and 'messages': give a prompt or a conversation, not both")
        history, last = conversation(d["messages"], where)
        d = {**d, "text": last}
    _check_types(d, where)
    missing = [k for k in ("id", "text") if not str(d.get(k, "")).strip()]
    if missing:
        raise UsageError(f"{where}: missing {', '.join(missing)}: every prompt needs 'id' and 'text'")
    metadata = d.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise UsageError(f"{where}: 'metadata' must be a JSON object, got {JSON_TYPE_NAMES.get(type(metadata), 'text')}")
    benign = d.get("benign", False)
    if isinstance(benign, str):
        b = benign.strip().lower()
        if b not in {"true", "false", "1", "0", "yes", "no", ""}:
            raise UsageError(f"{where}: 'benign' must be true or false, got {str(benign)[:40]!r}")
        benign = b in {"true", "1", "yes"}
    return Prompt(
        id=str(d["id"]).strip(),
        text=str(d["text"]),
        category=str(d.get("category") or ("benign" if benign else "uncategorized")),
        benign=bool(benign),
        source=str(d.get("source") or set_name),
        prompt_set=set_name,
        **_template_fields(d, where),
        metadata=metadata,
        history=history,
    )


def _template_fields(d: dict[str, Any], where: str) -> dict[str, str | None]:
    """template_id / axis / group of an already expanded templated prompt: all three or none."""
    got = {k: (str(d[k]).strip() or None) if d.get(k) is not None else None for k in ("template_id", "axis", "group")}
    present = [k for k, v in got.items() if v]
    if present and len(present) < 3:
        missing = [k for k in got if not got[k]]
        raise UsageError(f"{where}: has {', '.join(present)} but no {', '.join(missing)}: a templated prompt "
                         "carries template_id, axis and group together")
    return got


def read_jsonl(path: Path, set_name: str | None = None) -> list[Prompt]:
    set_name = set_name or path.stem
    out: list[Prompt] = []
    seen: set[str] = set()
    for n, d in jsontext.jsonl_objects(_read(path), str(path)):
        p = _record(d, f"{path}:{n}", set_name)
        if p.id in seen:
            raise UsageError(f"{path}:{n}: duplicate prompt id '{p.id}': ids must be unique within a set")
        seen.add(p.id)
        out.append(p)
    if not out:
        raise UsageError(f"{path} holds no prompts: add JSON lines with 'id' and 'text'")
    return out


def load_set(name_or_path: str) -> list[Prompt]:
    if name_or_path in COMPOSITE_SETS:
        out: list[Prompt] = []
        for part in COMPOSITE_SETS[name_or_path]:
            out += load_set(part)
        return out
    from harness.prompt_templates import is_template_file, read_templates

    published = read_published(name_or_path)
    if published is not None:
        return published
    p = Path(name_or_path).expanduser()
    if not p.is_file():
        p = catalog.find("prompts", name_or_path, also=list(COMPOSITE_SETS))
    from harness.infiles import base_suffix

    if base_suffix(p) == ".csv":
        return import_csv(p)
    if is_template_file(p):
        return read_templates(p)
    return read_jsonl(p)


def read_published(spec: str, set_name: str | None = None) -> list[Prompt] | None:
    """A published set named by `spec` (hf:OWNER/DATASET[@REV][:SPLIT], FORMAT:PATH[?split=NAME], or a file
    whose columns are a published layout's), as prompts; None for our own layout or a catalog name."""
    from harness import prompt_layouts as layouts

    if spec.startswith("hf:"):
        return _from_hub(spec, set_name)
    s = layouts.parse_spec(spec)
    p = Path(s.path).expanduser()
    if s.format == layouts.LLM_HARM:
        return _prompts(layouts.read_llm_harm(p), str(p), set_name or layouts.LLM_HARM)
    if s.format is None and not p.is_file():
        return None
    from harness.infiles import base_suffix, regular_file

    regular_file(p, "a prompts")
    if s.format is None and base_suffix(p) not in (".csv", ".parquet") and _own_jsonl(p):
        return None
    table = layouts.read_table(p)
    layout = layouts.detect(table.columns, str(p), s.format)
    if layout is None:
        if s.split is not None:
            raise UsageError(f"{p}: ?split= is for published layouts with named splits; this file is ours (a 'text' "
                             "column): drop it")
        return None
    return _prompts(layouts.map_rows(layout, table, s.split, set_name or p.name.split(".")[0]), str(p),
                    set_name or p.name.split(".")[0])


def _own_jsonl(path: Path) -> bool:
    """Whether a JSON Lines file is ours: its first object has a 'text' (a line that is no object is left to
    read_jsonl's own message)."""
    from harness.infiles import read_bytes

    for _, line in jsontext.jsonl_lines(read_bytes(path, "a prompts").decode("utf-8", "replace")):
        if line.strip():
            try:
                first = jsontext.loads(line)
            except json.JSONDecodeError:
                return True
            return not isinstance(first, dict) or "text" in first or "messages" in first
    return True


def _from_hub(spec: str, set_name: str | None) -> list[Prompt]:
    from harness import prompt_hub
    from harness import prompt_layouts as layouts

    ds = prompt_hub.parse(spec)
    split, files, _ = prompt_hub.fetch(ds)
    name = set_name or f"hf:{ds.repo}" + (f":{split}" if ds.split else "")
    out: list[Prompt] = []
    for f in files:
        table = layouts.read_table(f.path, f"hf:{ds.repo}/{f.name}")
        layout = layouts.detect(table.columns, table.where)
        if layout is None:
            out += [_map_row(row, ColumnMap(), n, table.where, name, "uncategorized")
                    for n, row in table.rows]
            continue
        layout_split = split if split in layout.splits else None
        out += _prompts(layouts.map_rows(layout, table, layout_split, name), table.where, name)
    _check_unique(out, Path(spec))
    return out


def _prompts(mapped: list[Mapped], where: str, set_name: str) -> list[Prompt]:
    """prompt_layouts.Mapped rows as checked prompts with unique ids."""
    out = [_record({"id": m.id, **({"messages": m.messages} if m.messages else {"text": m.text}),
                    "category": m.category, "benign": m.benign, "source": m.source, "metadata": m.metadata},
                   f"{where} ({m.id})", set_name) for m in mapped]
    if not out:
        raise UsageError(f"{where} holds no prompts")
    _check_unique(out, Path(where))
    return out


def set_names() -> list[str]:
    return [*COMPOSITE_SETS, *catalog.entries("prompts")]


# -- importers -------------------------------------------------------------------


@dataclass
class ColumnMap:
    """Which of the user's columns hold each field (None = not present)."""

    id: str | None = "id"
    text: str = "text"
    category: str | None = "category"
    benign: str | None = "benign"
    source: str | None = None


def _map_row(row: dict[str, Any], cols: ColumnMap, n: int, where: str, set_name: str, default_category: str) -> Prompt:
    if cols.text not in row:
        raise UsageError(f"{where}: no column '{cols.text}' (columns: {', '.join(row)}): pass --text-column NAME")
    d = {
        "id": row.get(cols.id) if cols.id and row.get(cols.id) not in (None, "") else f"{set_name}-{n:05d}",
        "text": row[cols.text],
        "category": row.get(cols.category) if cols.category else None,
        "benign": row.get(cols.benign, False) if cols.benign else False,
        "source": row.get(cols.source) if cols.source else set_name,
    }
    d["category"] = d["category"] or default_category
    return _record(d, f"{where}:{n}", set_name)


def import_csv(path: Path, cols: ColumnMap | None = None, set_name: str | None = None,
               default_category: str = "uncategorized") -> list[Prompt]:
    cols = cols or ColumnMap()
    set_name = set_name or path.stem
    from harness.csvtext import rows as csv_rows

    records = csv_rows(_read(path), str(path))
    header = [h.replace("\ufeff", "").strip() for h in records[0][1]] if records else []
    body = [(line, values) for line, values in records[1:] if any(v.strip() for v in values)]
    if not header or not body:
        raise UsageError(f"{path} holds no rows: add a header and one prompt per row")
    prompts = []
    for n, (line, values) in enumerate(body, 1):
        if len(values) > len(header):
            raise UsageError(f"{path}: line {line} has {len(values)} fields but the header has {len(header)}: quote "
                             "fields that contain commas")
        row = {h: (values[j] if j < len(values) else "") for j, h in enumerate(header)}
        prompts.append(_map_row(row, cols, n, f"{path}:{line}", set_name, default_category))
    _check_unique(prompts, path)
    return prompts


def import_jsonl(path: Path, cols: ColumnMap | None = None, set_name: str | None = None,
                 default_category: str = "uncategorized") -> list[Prompt]:
    cols = cols or ColumnMap()
    set_name = set_name or path.stem
    prompts = []
    for n, d in jsontext.jsonl_objects(_read(path), str(path)):
        prompts.append(_map_row(d, cols, n, str(path), set_name, default_category))
    if not prompts:
        raise UsageError(f"{path} holds no prompts")
    _check_unique(prompts, path)
    return prompts


def _check_unique(prompts: list[Prompt], path: Path) -> None:
    seen: set[str] = set()
    for p in prompts:
        if p.id in seen:
            raise UsageError(f"{path}: duplicate prompt id '{p.id}': map a unique id column with --id-column")
        seen.add(p.id)


def write_jsonl(prompts: list[Prompt], out: str | Path) -> None:
    """Write a prompt set atomically (a failure leaves any earlier file as it was)."""
    from harness.outputs import atomic_write

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as fh:
        for p in prompts:
            fh.write(json.dumps(p.as_record(), ensure_ascii=False) + "\n")
