"""Load `ratings` rows into one pandas frame for the agreement metrics, and select raters.

A rater is named by its `rater` column ("human", "expert", "gpt4o", a judge name), or by
`rater:annotator` for one annotator of it ("human:group-15", "human:human1"). An output is keyed
within its item by (model, variant); a missing variant counts as "release" (external models).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError, require

FIELDS = ["rater", "rater_kind", "annotator", "task", "item_id", "category", "model", "variant",
          "code", "label", "harmful", "valid"]


def _pd():  # type: ignore[no-untyped-def]
    return require("pandas", "analysis", "Agreement statistics")


def load_ratings(source: Any) -> Any:
    """All ratings as a DataFrame with FIELDS, from a Store, a store path, a DataFrame or an iterable of dicts."""
    pd = _pd()
    from harness.store import Store

    if isinstance(source, pd.DataFrame):
        df = source.copy()
    elif isinstance(source, Store):
        df = pd.DataFrame.from_records(source.rating_table(FIELDS)[1], columns=FIELDS)
    elif isinstance(source, (str, Path)):
        with Store.open(source, readonly=True) as store:
            df = pd.DataFrame.from_records(store.rating_table(FIELDS)[1], columns=FIELDS)
    elif isinstance(source, Iterable):
        rows = [r if isinstance(r, Mapping) else asdict(r) if is_dataclass(r) and not isinstance(r, type) else r
                for r in source]
        df = pd.DataFrame([{k: r.get(k) for k in FIELDS} for r in rows], columns=FIELDS)
    else:
        raise UsageError(f"cannot read ratings from {type(source).__name__}: pass a Store, a store path or rows")
    for col in FIELDS:
        if col not in df.columns:
            df[col] = 1 if col == "valid" else None
    df = df[FIELDS].copy()
    df["variant"] = df["variant"].where(df["variant"].notna(), "release")
    df["model"] = df["model"].where(df["model"].notna(), "")
    df["annotator"] = df["annotator"].where(df["annotator"].notna(), "")
    df["code"] = pd.to_numeric(df["code"], errors="coerce").astype(float)
    df["harmful"] = pd.to_numeric(df["harmful"], errors="coerce").astype(float)
    df["valid"] = pd.to_numeric(df["valid"], errors="coerce").fillna(0).astype(int)
    return df.reset_index(drop=True)


def split_spec(spec: str, known_raters: set[str]) -> tuple[str, str | None]:
    """'gpt4o' -> ('gpt4o', None); 'human:group-1' -> ('human', 'group-1') unless the whole name is a rater."""
    if spec in known_raters or ":" not in spec:
        return spec, None
    rater, _, annotator = spec.rpartition(":")
    return rater, annotator


def select_spec(df: Any, spec: str, known_raters: set[str]) -> Any:
    """The rows of one rater spec; a UsageError listing the raters when it matches nothing."""
    rater, annotator = split_spec(spec, known_raters)
    mask = df["rater"] == rater
    if annotator is not None:
        mask &= df["annotator"] == annotator
    if not mask.any():
        names = ", ".join(sorted(known_raters)) or "none"
        raise UsageError(f"no ratings by rater '{spec}' in the store (raters: {names}): fix --raters")
    return df[mask]
