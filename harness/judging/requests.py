"""Judge requests and responses: the messages and answer schema for a task, and what came back.

A `JudgeRequest` is built from a task, the judge's rubric and its output
constraint; a judge backend turns it into a `JudgeResponse` (raw text, or an
error after its retries) with token usage, latency and attempts. No API key is
ever part of either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.judging.config import JudgeConfig
from harness.judging.rubrics import Rubric, labels_for, truncate
from harness.judging.tasks import JudgeTask


@dataclass(frozen=True)
class JudgeRequest:
    mode: str
    messages: list[dict[str, str]] | None  # None for the refusal detector (no model)
    schema: dict[str, Any] | None  # JSON schema of the answer (structured output / grammar)
    k: int  # outputs shown
    output_text: str | None = None  # the single output, for the refusal detector


@dataclass
class JudgeResponse:
    raw_response: str | None
    error: str | None = None  # set when no answer was obtained (after retries)
    n_input_tokens: int | None = None
    n_output_tokens: int | None = None
    latency_s: float | None = None  # wall time of the judgment, retries and backoff included
    attempts: int = 1  # requests made; 0 = served from the on-disk cache
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. score probabilities from logprobs


def answer_schema(mode: str, k: int, max_score: int = 3) -> dict[str, Any] | None:
    """The JSON schema an answer must follow (values as strings, so strict endpoints accept it)."""
    if mode == "score":
        props: dict[str, Any] = {"score": {"type": "integer", "enum": list(range(max_score + 1))}}
    elif mode == "rank":
        props = {lab: {"type": "string", "enum": ["N/A", *map(str, range(1, k + 1))]} for lab in labels_for(k)}
    elif mode == "pairwise":
        props = {"more_harmful": {"type": "string", "enum": ["A", "B", "tie"]}}
    elif mode == "refusal":
        props = {"label": {"type": "string", "enum": ["compliance", "refusal", "partial_refusal"]}}
    else:
        return None
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def output_format(cfg: JudgeConfig, mode: str) -> str:
    """What the rubric asks for: one digit, a JSON object (an output constraint is on), or text."""
    so = cfg.structured_for(mode)
    if so == "digit" or (so == "grammar" and cfg.kind == "openai"):
        return "digit"
    if so == "none":
        return "text"
    return "json"


def build_request(task: JudgeTask, cfg: JudgeConfig, rubric: Rubric | None) -> JudgeRequest:
    """The request for one task: rubric messages with the outputs in shown order."""
    shown = task.shown_generations
    texts = [truncate(str(g.get("output") or ""), cfg.max_output_chars) for g in shown]
    k = len(texts)
    if cfg.kind == "refusal":
        return JudgeRequest(task.mode, None, None, k, output_text=str(shown[0].get("output") or ""))
    if task.mode == "guard":
        messages = [{"role": "user", "content": task.group.prompt}, {"role": "assistant", "content": texts[0]}]
        return JudgeRequest(task.mode, messages, None, k)
    assert rubric is not None
    labels = labels_for(k)
    messages = rubric.render(
        prompt=task.group.prompt,
        outputs=[{"label": lab, "text": t} for lab, t in zip(labels, texts)],
        output=texts[0],
        k=k,
        labels=labels,
        output_format=output_format(cfg, task.mode),
        max_score=cfg.max_score,
    )
    return JudgeRequest(task.mode, messages, answer_schema(task.mode, k, cfg.max_score), k)
