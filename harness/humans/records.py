"""Build `generations` and `ratings` rows for imported data, with deterministic keys.

An imported response becomes a generation of an external model (backend and device 'external',
variant 'release', run_id 'import:<format>'); its sample_key depends only on the model, variant,
item and response text, so the same response imported twice, or through two formats, is one row.
A rating's key depends on where it came from and what it rates, never on its value: re-importing
the same file writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from harness.cache import text_sha256
from harness.items import item_id_for_prompt

EXTERNAL = "external"
RELEASE = "release"


def _digest(*parts: object, length: int = 32) -> str:
    blob = json.dumps([None if p is None else str(p) for p in parts], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def sample_key_for(model: str, variant: str, item_id: str, output: str) -> str:
    return "ext:" + _digest(model, variant, item_id, output, length=24)


def rating_key_for(source: str, rater: str, annotator: str | None, task: str, item_id: str, model: str | None,
                   variant: str | None, sample_key: str | None) -> str:
    return "r:" + _digest(source, rater, annotator, task, item_id, model, variant, sample_key)


def external_generation(fmt: str, model: str, prompt: str, output: str, *, category: str | None = None,
                        benign: bool | None = None, prompt_id: str | None = None,
                        settings: dict[str, Any] | None = None, variant: str = RELEASE) -> dict[str, Any]:
    """A generations row for a response that was produced elsewhere (no cost figures)."""
    item_id = item_id_for_prompt(prompt)
    return {
        "sample_key": sample_key_for(model, variant, item_id, output),
        "run_id": f"import:{fmt}",
        "device": EXTERNAL,
        "model": model,
        "variant": variant,
        "backend": EXTERNAL,
        "prompt_set": f"import:{fmt}",
        "prompt_id": prompt_id or item_id,
        "category": category,
        "benign": None if benign is None else int(benign),
        "prompt": prompt,
        "prompt_sha256": text_sha256(prompt),
        "output": output,
        "finish_reason": EXTERNAL,
        "settings": settings or {},
    }


def rating(fmt: str, *, rater: str, rater_kind: str, task: str, prompt: str, model: str | None,
           variant: str | None = RELEASE, annotator: str | None = None, sample_key: str | None = None,
           code: float | None = None, label: str | None = None, harmful: int | None = None, valid: bool = True,
           error: str | None = None, category: str | None = None, prompt_id: str | None = None,
           extra: dict[str, Any] | None = None, item_id: str | None = None) -> dict[str, Any]:
    """A ratings row per the ratings contract; an invalid rating has harmful NULL and says why."""
    item = item_id or item_id_for_prompt(prompt)
    source = f"import:{fmt}"
    return {
        "rating_key": rating_key_for(source, rater, annotator, task, item, model, variant, sample_key),
        "source": source,
        "rater": rater,
        "rater_kind": rater_kind,
        "annotator": annotator,
        "task": task,
        "item_id": item,
        "prompt_id": prompt_id or item,
        "category": category,
        "model": model,
        "variant": variant,
        "sample_key": sample_key,
        "code": code if valid else None,
        "label": label,
        "harmful": harmful if valid else None,
        "valid": 1 if valid else 0,
        "error": None if valid else (error or "invalid rating"),
        "extra": extra or None,
    }
