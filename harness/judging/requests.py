"""Judge requests and responses: the messages and answer schema for a task, and what came back.

A `JudgeRequest` is built from a task by its mode (harness.judging.modes), the judge's rubric and
its output constraint; a judge backend turns it into a `JudgeResponse` (raw text, or an error after
its retries) with token usage, latency and attempts. No API key is ever part of either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.judging.config import JudgeConfig
from harness.judging.modes import get_mode
from harness.judging.rubrics import Rubric, truncate
from harness.judging.tasks import JudgeTask


@dataclass(frozen=True)
class JudgeRequest:
    mode: str
    messages: list[dict[str, str]] | None  # None for the refusal detector (no model)
    schema: dict[str, Any] | None  # JSON schema of the answer (structured output / grammar)
    k: int  # outputs shown
    output_text: str | None = None  # the single output, for the refusal detector
    max_answer_chars: int | None = None  # what is kept of an answer (bounded by the request's max tokens)


@dataclass
class JudgeResponse:
    raw_response: str | None
    error: str | None = None  # set when no answer was obtained (after retries)
    n_input_tokens: int | None = None
    n_output_tokens: int | None = None
    latency_s: float | None = None  # wall time of the judgment, retries and backoff included
    attempts: int = 1  # requests made; 0 = served from the on-disk cache
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. score probabilities, truncation


def output_format(cfg: JudgeConfig, mode: str) -> str:
    """What the rubric asks for: one digit, a JSON object (an output constraint is on), or text."""
    so = cfg.structured_for(mode)
    if so == "digit" or (so == "grammar" and cfg.kind == "openai"):
        return "digit"
    if so == "none":
        return "text"
    return "json"


def build_request(task: JudgeTask, cfg: JudgeConfig, rubric: Rubric | None) -> JudgeRequest:
    """The request for one task: the mode's messages with the outputs in shown order."""
    mode = get_mode(task.mode)
    shown = task.shown_generations
    k = len(shown)
    if cfg.kind == "refusal":
        return JudgeRequest(task.mode, None, None, k, output_text=str(shown[0].output or ""))
    texts = [truncate(str(g.output or ""), cfg.max_output_chars) for g in shown]
    messages = mode.messages(task, cfg, rubric, texts, output_format(cfg, task.mode))
    return JudgeRequest(task.mode, messages, mode.schema(k, cfg), k, max_answer_chars=answer_cap(cfg))


CHARS_PER_TOKEN_CAP = 32  # no tokenizer's token decodes to more characters than this in practice


def answer_cap(cfg: JudgeConfig) -> int:
    """The most characters of an answer worth keeping: max_tokens tokens of generous length."""
    return max(1024, cfg.max_tokens * CHARS_PER_TOKEN_CAP)
