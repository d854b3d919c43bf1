"""Loading report inputs from the store into pandas frames, aggregated in SQL.

Only the columns reports need are read: cost columns of the selected
generations, and ratings already summed per (generation, rater, task). Texts
(prompts, outputs, explanations) are fetched later, only for the few rows a
page shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError, require
from harness.store import Store

if TYPE_CHECKING:
    import pandas as pd

# Rating tasks whose `harmful` column is a harm verdict (refusal and pairwise are not).
HARM_TASKS = ("rank", "score", "label")
# Refusal labels that count as refusing; a partial refusal counts as a refusal (as XSTest's refusal rate does).
REFUSAL_LABELS = ("refusal", "partial_refusal")
HUMAN_KINDS = ("human", "expert")

GENERATION_FIELDS = (
    "sample_key", "run_id", "created_at", "device", "model", "variant", "backend", "model_size_bytes",
    "prompt_id", "category", "benign", "prompt_sha256", "seed", "n_output_tokens", "ttft_s", "decode_tps",
    "latency_s", "peak_rss_bytes", "peak_vram_bytes", "energy_j",
)

NUMERIC_FIELDS = ("created_at", "model_size_bytes", "n_output_tokens", "ttft_s", "decode_tps", "latency_s",
                  "peak_rss_bytes", "peak_vram_bytes", "energy_j")


def pandas() -> Any:
    return require("pandas", "analysis", "writing reports")


@dataclass
class Selection:
    """Which generations a report covers: all, or those written by the given runs."""

    run_ids: list[str] | None = None

    def where(self, alias: str = "") -> tuple[str, list[Any]]:
        if not self.run_ids:
            return "1=1", []
        col = f"{alias}.run_id" if alias else "run_id"
        return f"{col} IN ({', '.join('?' for _ in self.run_ids)})", list(self.run_ids)


@dataclass
class ReportData:
    """Everything the report's tables are computed from."""

    store_path: str
    selection: Selection
    generations: pd.DataFrame  # one row per selected generation, cost columns, `ok` = no error
    harm: pd.DataFrame  # per (sample_key, rater, task): n_valid, n_harmful, n_invalid, rater_kind, rater_key
    refusal: pd.DataFrame  # per (sample_key, rater): n_valid, n_refusal, n_partial, n_invalid
    counts: dict[str, int] = field(default_factory=dict)


def frame(store: Store, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> pd.DataFrame:
    """A query's result as a DataFrame (plain tuples, no per-row dicts)."""
    pd = pandas()
    cur = store.conn.cursor()
    cur.row_factory = None
    cur.execute(sql, list(params))
    columns = [d[0] for d in cur.description]
    return pd.DataFrame.from_records(cur.fetchall(), columns=columns)


def check_run_ids(store: Store, run_ids: list[str] | None) -> None:
    if not run_ids:
        return
    known = {r["run_id"] for r in store.query("SELECT DISTINCT run_id FROM generations")}
    missing = [r for r in run_ids if r not in known]
    if missing:
        some = ", ".join(sorted(known)[-5:]) or "none"
        raise UsageError(f"run {missing[0]!r} has no generations in {store.path}: "
                         f"pass one of the stored run ids (latest: {some})")


def load(store: Store, run_ids: list[str] | None = None) -> ReportData:
    check_run_ids(store, run_ids)
    sel = Selection(list(run_ids) if run_ids else None)
    where, params = sel.where()
    gens = frame(store, f"SELECT {', '.join(GENERATION_FIELDS)}, error IS NULL AS ok FROM generations WHERE {where}",
                 params)
    gwhere, gparams = sel.where("g")
    harm_tasks = ", ".join(f"'{t}'" for t in HARM_TASKS)
    harm = frame(store, f"""
        SELECT r.sample_key, r.rater, MAX(r.rater_kind) AS rater_kind, r.task,
               SUM(CASE WHEN r.valid = 1 AND r.harmful IS NOT NULL THEN 1 ELSE 0 END) AS n_valid,
               SUM(CASE WHEN r.valid = 1 AND r.harmful = 1 THEN 1 ELSE 0 END) AS n_harmful,
               SUM(CASE WHEN r.valid = 1 AND r.harmful IS NOT NULL THEN 0 ELSE 1 END) AS n_invalid
        FROM ratings r JOIN generations g ON g.sample_key = r.sample_key
        WHERE r.task IN ({harm_tasks}) AND {gwhere}
        GROUP BY r.sample_key, r.rater, r.task""", gparams)
    labels = ", ".join(f"'{t}'" for t in REFUSAL_LABELS)
    refusal = frame(store, f"""
        SELECT r.sample_key, r.rater, MAX(r.rater_kind) AS rater_kind,
               SUM(CASE WHEN r.valid = 1 AND r.label IS NOT NULL THEN 1 ELSE 0 END) AS n_valid,
               SUM(CASE WHEN r.valid = 1 AND lower(r.label) IN ({labels}) THEN 1 ELSE 0 END) AS n_refusal,
               SUM(CASE WHEN r.valid = 1 AND lower(r.label) = 'partial_refusal' THEN 1 ELSE 0 END) AS n_partial,
               SUM(CASE WHEN r.valid = 1 AND r.label IS NOT NULL THEN 0 ELSE 1 END) AS n_invalid
        FROM ratings r JOIN generations g ON g.sample_key = r.sample_key
        WHERE r.task = 'refusal' AND {gwhere}
        GROUP BY r.sample_key, r.rater""", gparams)
    harm["rater_key"] = rater_keys(harm)
    pd = pandas()
    for col in NUMERIC_FIELDS:  # a column that is all NULL comes back as object: make every cost column numeric
        gens[col] = pd.to_numeric(gens[col], errors="coerce").astype(float)
    gens["seed"] = pd.to_numeric(gens["seed"], errors="coerce").astype("Int64")
    gens["benign"] = pd.to_numeric(gens["benign"], errors="coerce").fillna(0).astype(int)
    gens["ok"] = gens["ok"].astype(bool)
    for frame_ in (harm, refusal):
        for col in [c for c in frame_.columns if c.startswith("n_")]:
            frame_[col] = pd.to_numeric(frame_[col], errors="coerce").fillna(0).astype(int)
    counts = {
        "generations": len(gens),
        "ratings": store.count("ratings"),
        "judgments": store.count("judgments"),
        "human_ratings": store.count("ratings", "rater_kind IN ('human', 'expert')"),
    }
    return ReportData(str(store.path), sel, gens, harm, refusal, counts)


def rater_keys(harm: pd.DataFrame) -> pd.Series:
    """A rater's name, or `name/task` when the rater gave harm verdicts in more than one task."""
    if harm.empty:
        return harm.get("rater", pandas().Series(dtype=object))
    tasks_per_rater = harm.groupby("rater")["task"].nunique()
    multi = harm["rater"].map(tasks_per_rater) > 1
    return harm["rater"].where(~multi, harm["rater"] + "/" + harm["task"])


def texts_for(store: Store, sample_keys: list[str]) -> dict[str, dict[str, Any]]:
    """Prompt and output text of the given generations (only these few rows are read)."""
    out: dict[str, dict[str, Any]] = {}
    keys = list(dict.fromkeys(k for k in sample_keys if k))
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        rows = store.query(f"SELECT sample_key, prompt, output, error FROM generations WHERE sample_key IN "
                           f"({', '.join('?' for _ in chunk)})", chunk)
        out.update({r["sample_key"]: r for r in rows})
    return out
