"""Prompt sets: list them with their counts, read one, import a user's CSV or JSONL file as a set.

`harness prompts` is these functions with arguments parsed and results printed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.prompts import Prompt


@dataclass(frozen=True)
class PromptSetSummary:
    name: str
    prompts: int
    harmful: int
    benign: int
    categories: dict[str, int]  # category -> prompts, by category name


@dataclass(frozen=True)
class PromptImport:
    source: str | Path  # a file, or a published set named FORMAT:PATH or hf:OWNER/DATASET
    out: Path
    prompts: int


def list_prompt_sets() -> list[PromptSetSummary]:
    """Every prompt set of the catalogs with its counts."""
    from harness.prompts import load_set, set_names

    out = []
    for name in set_names():
        ps = load_set(name)
        cats = Counter(p.category for p in ps)
        out.append(PromptSetSummary(name, len(ps), sum(not p.benign for p in ps), sum(p.benign for p in ps),
                                    dict(sorted(cats.items()))))
    return out


def show_prompts(name: str, *, category: str | None = None) -> list[Prompt]:
    """The prompts of a set (a name or a file), only those of `category` when given."""
    from harness.prompts import load_set

    return [p for p in load_set(name) if category in (None, p.category)]


def import_prompts(path: str | Path, out: str | Path, *, force: bool = False, id_column: str = "id",
                   text_column: str = "text", category_column: str = "category", benign_column: str = "benign",
                   source_column: str | None = None, category: str = "uncategorized",
                   name: str | None = None) -> PromptImport:
    """Convert a CSV or JSONL file, or a published set (FORMAT:PATH, hf:OWNER/DATASET, or a file in a published
    layout), into a prompt set (.jsonl; put it in a catalog's prompts/ to use it by name).
    `out` is never the file read, nor an existing file unless `force`, nor an SQLite database."""
    from harness.infiles import base_suffix, regular_file
    from harness.outputs import output_file
    from harness.prompts import ColumnMap, import_csv, import_jsonl, read_published, write_jsonl

    given = Path(path)
    target = output_file(out, force=force)
    if target.exists() and given.is_file() and target.resolve() == given.resolve():
        raise UsageError(f"--out {target} is the file being imported: pass another file name")
    cols = ColumnMap(id_column, text_column, category_column, benign_column, source_column)
    # A published set (recognised by its columns, FORMAT:PATH or hf:) unless the user maps the columns.
    ps = read_published(str(path), name) if cols == ColumnMap() else None
    source: str | Path = str(path)
    if ps is None:
        source = regular_file(given, "a CSV or JSONL")
        reader = import_csv if base_suffix(source) == ".csv" else import_jsonl
        ps = reader(source, cols, name, category)
    write_jsonl(ps, target)
    return PromptImport(source, target, len(ps))
