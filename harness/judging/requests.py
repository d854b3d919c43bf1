"""Judge requests and responses: the messages and answer schema for a task, and what came back.

A `JudgeRequest` is built from a task by its mode (harness.judging.modes), the judge's rubric and
its output constraint; a judge backend turns it into a `JudgeResponse` (raw text, or an error after
its retries) with token usage, latency and attempts. No API key is ever part of either.

Every field of an answer comes from outside: `response_problem` says why one cannot be recorded as it is (text
that is not Unicode, token counts that are not counts, extras that are not finite JSON) and `checked` turns such
an answer into a failed judgment naming the reason, with the judge's key (and anything like a bearer token)
redacted from its error. The runner records only checked answers; the disk cache serves only answers without a
problem.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import redact
from harness.judging.groups import JudgeTask
from harness.judging.modes import get_mode
from harness.judging.rubrics import Rubric, truncate

if TYPE_CHECKING:
    from harness.judging.config import JudgeConfig


@dataclass(frozen=True)
class JudgeRequest:
    mode: str
    messages: list[dict[str, str]] | None  # None for the refusal detector (no model)
    schema: dict[str, Any] | None  # JSON schema of the answer (structured output / grammar)
    k: int  # outputs shown
    output_text: str | None = None  # the single output, for judges that ask no model (refusal detector, probe)
    max_answer_chars: int | None = None  # what is kept of an answer (bounded by the request's max tokens)
    prompt_text: str | None = None  # its prompt, for judges that ask no model (a probe reads the conversation)
    output_texts: tuple[str, ...] = ()  # every output in shown order, for judges that ask no model (a rank probe)


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
    if so == "digit" or (so == "grammar" and cfg.grammar == "digit"):
        return "digit"
    if so == "none":
        return "text"
    return "json"


def build_request(task: JudgeTask, cfg: JudgeConfig, rubric: Rubric | None) -> JudgeRequest:
    """The request for one task: the mode's messages with the outputs in shown order."""
    mode = get_mode(task.mode)
    shown = task.shown_generations
    k = len(shown)
    if not cfg.asks_a_model:
        return JudgeRequest(task.mode, None, None, k, output_text=str(shown[0].output_for_judges or ""),
                            prompt_text=task.group.prompt,
                            output_texts=tuple(str(g.output_for_judges or "") for g in shown))
    texts = [truncate(str(g.output_for_judges or ""), cfg.max_output_chars) for g in shown]
    messages = mode.messages(task, cfg, rubric, texts, output_format(cfg, task.mode))
    return JudgeRequest(task.mode, messages, mode.schema(k, cfg), k, max_answer_chars=answer_cap(cfg))


CHARS_PER_TOKEN_CAP = 32  # no tokenizer's token decodes to more characters than this in practice


def answer_cap(cfg: JudgeConfig) -> int:
    """The most characters of an answer worth keeping: max_tokens tokens of generous length."""
    return max(1024, cfg.max_tokens * CHARS_PER_TOKEN_CAP)


MAX_TOKEN_COUNT = 10**9  # more tokens than any request or answer has: a count above it is not a count
_TOKEN_FIELDS = (("n_input_tokens", "input (prompt) token count"), ("n_output_tokens", "output (completion) token count"))


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"an integer of {len(str(value)):,} digits"
    return text if len(text) <= 40 else text[:37] + "..."


def _not_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def response_problem(resp: JudgeResponse) -> str | None:
    """Why an answer cannot be recorded as it is; None when it can."""
    raw = resp.raw_response
    if raw is not None and not isinstance(raw, str):
        return f"the answer is {type(raw).__name__}, not text"
    if raw is not None and _not_unicode(raw):
        return "the answer's text holds a lone surrogate (not valid Unicode)"
    for name, what in _TOKEN_FIELDS:
        value = getattr(resp, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            return f"the answer's {what} is {type(value).__name__} {_short(value)}, not an integer"
        if not 0 <= value <= MAX_TOKEN_COUNT:
            return f"the answer's {what} is {_short(value)}, outside 0..{MAX_TOKEN_COUNT:,}"
    latency = resp.latency_s
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, (int, float))
                                or not math.isfinite(latency) or latency < 0):
        return f"the answer's latency is {_short(latency)}, not a duration"
    try:
        json.dumps(resp.extra, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        return "the answer's extra fields (score probabilities) are not finite JSON"
    return None


def safe_error(text: str, secrets: Iterable[str | None] = ()) -> str:
    """An error message fit to store and print: secrets redacted, lone surrogates escaped."""
    return redact(text, secrets).encode("utf-8", "backslashreplace").decode("utf-8")


def checked(resp: JudgeResponse, secrets: Iterable[str | None] = ()) -> JudgeResponse:
    """The answer as it may be stored: secrets redacted (from its error, and the configured ones from its text);
    an answer with a problem (`response_problem`) becomes a failed one whose error names it."""
    secrets = tuple(secrets)
    if resp.error is not None:
        return JudgeResponse(None, safe_error(str(resp.error), secrets), latency_s=_duration(resp.latency_s),
                             attempts=resp.attempts)
    problem = response_problem(resp)
    if problem is not None:
        return JudgeResponse(None, f"BadResponse: {problem}", latency_s=_duration(resp.latency_s),
                             attempts=resp.attempts)
    if resp.raw_response is None or not secrets:
        return resp
    raw = redact(resp.raw_response, secrets, patterns=False)
    return resp if raw == resp.raw_response else JudgeResponse(raw, None, resp.n_input_tokens, resp.n_output_tokens,
                                                              resp.latency_s, resp.attempts, resp.extra)


def _duration(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    return float(value) if ok else None
