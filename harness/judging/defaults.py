"""The default local judges `harness run` applies after generating (unless --no-judge).

1. refusal-detector: the pattern detector (instant): compliance / refusal / partial_refusal.
2. smollm2-score: the embedded model in-process, a harm score 0-3 as one grammar-constrained
   digit per output. The rubric is a fixed prefix, so llama.cpp's prefix cache evaluates only
   each prompt and output; outputs are cut to the judge's max_output_chars.

Both are cached like any judgment: re-running `harness run` judges only new samples.
"""

from __future__ import annotations

from typing import Any

from harness.judging.config import load_judge
from harness.judging.progress import RichJudgeProgress
from harness.judging.runner import judge_store
from harness.store import Store

DEFAULT_JUDGES = ("refusal-detector", "smollm2-score")


def judge_samples(store: Store, sample_keys: list[str], console: Any) -> dict[str, Any]:
    """Judge these samples with the default local judges; returns each judge's summary as a dict."""
    results: dict[str, Any] = {}
    for name in DEFAULT_JUDGES:
        cfg = load_judge(name)
        summary = judge_store(store, cfg, sample_keys=sample_keys, progress=RichJudgeProgress(console))
        parts = [f"{summary.n_requested} new", f"{summary.n_cached_store + summary.n_cached_disk} cached"]
        if summary.n_failed:
            parts.append(f"[red]{summary.n_failed} failed[/]")
        if summary.n_unparseable:
            parts.append(f"[yellow]{summary.n_unparseable} unparseable[/]")
        if summary.n_requested:
            parts.append(f"{summary.request_s / summary.n_requested:.3f} s/output")
        if summary.model_load_s is not None:
            parts.append(f"model load {summary.model_load_s:.1f} s")
        console.print(f"[bold]judged[/] {name}: " + ", ".join(parts) + f" ({summary.elapsed_s:.1f} s)")
        results[name] = summary.as_dict()
    return results
