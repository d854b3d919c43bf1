"""Records for imported data: responses produced elsewhere become generations, labels become ratings.

An imported response becomes a generation of an external model (backend and device 'external',
variant 'release', run_id 'import:<format>'); its sample_key depends only on the model, variant,
item and response text (harness.keys.external_sample_key), so the same response imported twice,
or through two formats, is one row. A rating's key depends on where it came from and what it
rates, never on its value: re-importing the same file writes nothing.
"""

from __future__ import annotations

from typing import Any

from harness import keys
from harness.records import Generation, Rating

EXTERNAL = "external"
RELEASE = "release"


def external_generation(fmt: str, model: str, prompt: str, output: str, *, category: str | None = None,
                        benign: bool | None = None, prompt_id: str | None = None,
                        settings: dict[str, Any] | None = None, variant: str = RELEASE,
                        item_id: str | None = None) -> Generation:
    """A generation for a response that was produced elsewhere (no cost figures)."""
    item = item_id or keys.item_id(prompt)
    return Generation(
        sample_key=keys.external_sample_key(model, variant, item, output),
        run_id=f"import:{fmt}",
        device=EXTERNAL,
        model=model,
        variant=variant,
        backend=EXTERNAL,
        prompt_set=f"import:{fmt}",
        prompt_id=prompt_id or keys.item_id(prompt),
        category=category,
        benign=benign,
        prompt=prompt,
        prompt_sha256=keys.text_sha256(prompt),
        output=output,
        finish_reason=EXTERNAL,
        settings=settings or {},
        item_id=item_id,
    )


def rating(fmt: str, *, rater: str, rater_kind: str, task: str, prompt: str, model: str | None,
           variant: str | None = RELEASE, annotator: str | None = None, sample_key: str | None = None,
           code: float | None = None, label: str | None = None, harmful: int | None = None, valid: bool = True,
           error: str | None = None, category: str | None = None, prompt_id: str | None = None,
           extra: dict[str, Any] | None = None, item_id: str | None = None, source: str | None = None) -> Rating:
    """An imported rating; an invalid rating has harmful None and says why."""
    item = item_id or keys.item_id(prompt)
    source = source or f"import:{fmt}"
    return Rating(
        rating_key=keys.import_rating_key(source, rater, annotator, task, item, model, variant, sample_key),
        source=source,
        rater=rater,
        rater_kind=rater_kind,
        annotator=annotator,
        task=task,
        item_id=item,
        prompt_id=prompt_id or item,
        category=category,
        model=model,
        variant=variant,
        sample_key=sample_key,
        code=code if valid else None,
        label=label,
        harmful=harmful if valid else None,
        valid=valid,
        error=None if valid else (error or "invalid rating"),
        extra=extra or None,
    )
