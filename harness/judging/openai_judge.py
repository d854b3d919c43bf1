"""The OpenAI-compatible judge: chat completions on the `openai` client (OpenAI, llama.cpp server, vLLM, Ollama).

- Structured output where the endpoint supports it: `json_schema` (OpenAI's
  response_format), `json_object_schema` (llama.cpp server:
  {"type": "json_object", "schema": ...}; it rejects `json_schema` with HTTP
  500), `json_object`, `grammar` / `digit` (score mode: a one-digit GBNF grammar
  in extra_body, llama.cpp; other modes: free text) or `none`. The parsers fall
  back to free text either way.
- With `logprobs = true` (score mode) the top logprobs at the score token are
  renormalized over the score digits (they are taken before the constraint).
- Retries with exponential backoff and jitter on HTTP 429, 5xx, timeouts,
  connection errors, malformed bodies and empty choice lists; a Retry-After
  header is honoured (capped at backoff_max_s). Other 4xx answers are not
  retried; 401/403 stop the run with a usage error naming the key's variable.
- The API key comes from the environment variable the TOML names, goes into
  the client's Authorization header and nowhere else.
- What is read is bounded: an answer body larger than `max_answer_bytes(cfg)` (a
  bound from max_tokens, logprobs included) is cut off while it streams in and
  recorded as a failed judgment; a 200 whose body does not hold a choice list of
  messages with text (a string, `[null]`, an object) is a malformed answer.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from harness.errors import UsageError, require
from harness.judging.config import JudgeConfig
from harness.judging.parsing import score_probabilities
from harness.judging.requests import JudgeRequest, JudgeResponse

# Stands in for the key of endpoints that need none (the client insists on a value).
NO_KEY = "no-key-needed"


class BadResponse(Exception):
    """A 200 answer without a usable message (empty choice list, no content)."""


class AnswerTooLarge(Exception):
    """The answer's body is larger than any answer to this request can be."""


def max_answer_bytes(cfg: JudgeConfig) -> int:
    """The most bytes an answer body may have: room for max_tokens tokens with their top logprobs, and headroom."""
    per_token = 4096 if cfg.logprobs else 64
    return 256 * 1024 + cfg.max_tokens * per_token


def capped_http_client(openai: Any, cap_bytes: int) -> Any:
    """The SDK's own HTTP client class, with a transport that refuses a body over cap_bytes as it streams in."""
    import importlib

    base = next(c for c in openai.DefaultHttpxClient.__mro__ if c.__name__ == "Client"
                and c.__module__.split(".")[0] in ("httpx", "httpx2"))
    hx = importlib.import_module(base.__module__.split(".")[0])

    class CappedStream(hx.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, stream: Any) -> None:
            self._stream = stream

        def __iter__(self) -> Any:
            total = 0
            for chunk in self._stream:
                total += len(chunk)
                if total > cap_bytes:
                    raise AnswerTooLarge(f"the answer is larger than {cap_bytes:,} bytes (the bound for this request's "
                                         "max_tokens): not read further")
                yield chunk

        def close(self) -> None:
            self._stream.close()

    class CappedTransport(hx.HTTPTransport):  # type: ignore[name-defined,misc]
        def handle_request(self, request: Any) -> Any:
            response = super().handle_request(request)
            length = response.headers.get("content-length")
            if length and length.isdigit() and int(length) > cap_bytes:
                response.close()
                raise AnswerTooLarge(f"the answer is {int(length):,} bytes, more than the {cap_bytes:,} this request's "
                                     "max_tokens allows: not read")
            response.stream = CappedStream(response.stream)
            return response

    return openai.DefaultHttpxClient(transport=CappedTransport())


def backoff_s(attempt: int, initial_s: float, max_s: float, retry_after_s: float | None = None,
              rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (1-based): exponential with equal jitter, at least Retry-After."""
    base = min(max_s, initial_s * (2 ** (attempt - 1)))
    delay = base / 2 + (rng or random).uniform(0, base / 2)
    if retry_after_s is not None:
        delay = max(delay, min(max_s, retry_after_s))
    return delay


def _retry_after_s(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"HTTP {status} {name}: {text}" if status else f"{name}: {text}"


class OpenAIJudge:
    """Sends judge requests to an OpenAI-compatible endpoint; safe to call from several threads."""

    def __init__(self, cfg: JudgeConfig) -> None:
        self.cfg = cfg
        self.concurrency = cfg.concurrency
        self._openai = require("openai", "judges", "OpenAI-compatible judges")
        self._client: Any = None

    def identity_extra(self) -> dict[str, Any]:
        return {}

    def prepare(self) -> None:
        """Called before the first request: reads the key (UsageError naming the variable if it is missing)."""
        if self._client is None:
            self._client = self._openai.OpenAI(base_url=self.cfg.base_url, api_key=self.cfg.api_key() or NO_KEY,
                                               max_retries=0, timeout=self.cfg.timeout_s,
                                               http_client=capped_http_client(self._openai,
                                                                              max_answer_bytes(self.cfg)))

    def _get_client(self) -> Any:
        self.prepare()
        return self._client

    def request_kwargs(self, req: JudgeRequest) -> dict[str, Any]:
        """The arguments of `chat.completions.create` for a request (its HTTP body: `request_body`)."""
        cfg = self.cfg
        kwargs: dict[str, Any] = {"model": cfg.model, "messages": req.messages, "temperature": cfg.temperature,
                                  "top_p": cfg.top_p, "max_tokens": cfg.max_tokens}
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed
        so = cfg.structured_for(req.mode)
        if req.schema is not None:
            if so == "json_schema":
                kwargs["response_format"] = {"type": "json_schema",
                                             "json_schema": {"name": f"{req.mode}_judgment", "schema": req.schema,
                                                             "strict": True}}
            elif so == "json_object_schema":
                kwargs["response_format"] = {"type": "json_object", "schema": req.schema}
            elif so == "json_object":
                kwargs["response_format"] = {"type": "json_object"}
        if so in ("grammar", "digit") and req.mode == "score":
            kwargs["extra_body"] = {"grammar": f"root ::= [0-{cfg.max_score}]"}
        if cfg.logprobs and req.mode == "score":
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = 20
        return kwargs

    def complete(self, req: JudgeRequest) -> JudgeResponse:
        openai = self._openai
        cfg = self.cfg
        retryable = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                     openai.APIConnectionError, json.JSONDecodeError, BadResponse)
        kwargs = self.request_kwargs(req)
        client = self._get_client()
        start = time.perf_counter()
        last_error = ""
        attempts = 0
        for attempt in range(1, cfg.max_retries + 2):
            attempts = attempt
            try:
                resp = client.chat.completions.create(**kwargs)
                return self.parse_completion(resp, req, attempts, time.perf_counter() - start)
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise UsageError(
                    f"judge '{cfg.name}': {cfg.base_url} refused the request ({_describe(exc)}): check the key in "
                    f"{cfg.api_key_env or 'the api_key_env variable'} and the model name '{cfg.model}'"
                ) from exc
            except AnswerTooLarge as exc:  # the same request would get the same answer: not retried
                last_error = str(exc)
                break
            except retryable as exc:
                if isinstance(exc.__cause__, AnswerTooLarge):
                    last_error = str(exc.__cause__)
                    break
                last_error = _describe(exc)
                if attempt <= cfg.max_retries:
                    time.sleep(backoff_s(attempt, cfg.backoff_initial_s, cfg.backoff_max_s, _retry_after_s(exc)))
            except openai.APIStatusError as exc:  # other 4xx: the request itself is wrong; retrying cannot help
                last_error = _describe(exc)
                break
        return JudgeResponse(None, error=f"{last_error} (after {attempts} attempt{'s' if attempts > 1 else ''})",
                             latency_s=time.perf_counter() - start, attempts=attempts)

    def parse_completion(self, resp: Any, req: JudgeRequest, attempts: int, latency_s: float | None) -> JudgeResponse:
        """A chat.completion (the client's object) as a JudgeResponse; BadResponse when it holds no answer."""
        choices = getattr(resp, "choices", None) if not isinstance(resp, (str, bytes)) else None
        if choices is None or isinstance(choices, (str, bytes, dict)) or not hasattr(choices, "__getitem__"):
            raise BadResponse(f"the endpoint's answer has no choice list (choices: {type(choices).__name__})")
        if not choices:
            raise BadResponse("the endpoint answered with an empty choice list")
        choice = choices[0]
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None) if message is not None and not isinstance(message, str) else None
        if choice is None or message is None:
            raise BadResponse("the endpoint's first choice has no message")
        if content is None:
            raise BadResponse("the endpoint's answer has no message content")
        if not isinstance(content, str):
            raise BadResponse(f"the endpoint's message content is not text ({type(content).__name__})")
        usage = getattr(resp, "usage", None)
        extra: dict[str, Any] = {}
        if self.cfg.logprobs and req.mode == "score":
            probs = _score_probs(choice, self.cfg.max_score)
            if probs is not None:
                extra["score_probs"] = probs
        return JudgeResponse(
            raw_response=str(content),
            n_input_tokens=getattr(usage, "prompt_tokens", None),
            n_output_tokens=getattr(usage, "completion_tokens", None),
            latency_s=latency_s,
            attempts=attempts,
            extra=extra,
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def request_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The JSON body the openai client posts for these `create` arguments: `extra_body` merged at the top."""
    body = {k: v for k, v in kwargs.items() if k != "extra_body"}
    body.update(kwargs.get("extra_body") or {})
    return body


def _score_probs(choice: Any, max_score: int) -> dict[str, float] | None:
    """Score probabilities at the first generated token that is a score digit."""
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) or []
    for tok in content:
        if tok.token.strip().isdigit() and int(tok.token.strip()) <= max_score:
            return score_probabilities(((t.token, t.logprob) for t in (tok.top_logprobs or [])), max_score)
    return None
