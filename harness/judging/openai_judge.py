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
  the client's Authorization header and nowhere else: an endpoint that echoes it
  (or any bearer token) in an error body has it redacted before the error is
  stored or printed.
- Each attempt has one total deadline, `timeout_s`: connecting, sending and
  reading the whole answer (every socket read and write is cut to what is left
  of it), so a body dripped in a byte at a time ends as a timeout.
- What is read is bounded: an answer body larger than `max_answer_bytes(cfg)` (a
  bound from max_tokens, logprobs included) is cut off while it streams in and
  recorded as a failed judgment; a 2xx body that is not UTF-8 JSON within
  harness.jsontext's bounds (a number of thousands of digits, NaN, deep nesting)
  is a malformed answer; a 200 whose body does not hold a choice list of
  messages with text (a string, `[null]`, an object), or whose usage or
  logprobs are not what they say (requests.response_problem), is a bad answer.
  Every failure is recorded as a failed judgment with its reason; the run goes on.
- A redirect to another origin (scheme, host, port) is not followed (a 307 would
  re-send the prompts and outputs there); one on the same origin is.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from harness import jsontext
from harness.errors import UsageError, require
from harness.judging.parsing import score_probabilities
from harness.judging.requests import JudgeRequest, JudgeResponse, response_problem, safe_error

if TYPE_CHECKING:
    from harness.judging.kinds.openai import OpenAIJudgeConfig

# Stands in for the key of endpoints that need none (the client insists on a value).
NO_KEY = "no-key-needed"


class BadResponse(Exception):
    """A 200 answer without a usable message (empty choice list, no content, a field that is not what it says)."""


class AnswerRefused(Exception):
    """The transport refused an answer before the client read it; `retry` says whether asking again may help."""

    retry = False


class AnswerTooLarge(AnswerRefused):
    """The answer's body is larger than any answer to this request can be."""


class MalformedAnswer(AnswerRefused):
    """A 2xx body that is not UTF-8 JSON within bounds (numbers too long or not finite, nesting too deep)."""

    retry = True


class RedirectElsewhere(AnswerRefused):
    """A redirect to another origin: never followed (a 307 would send the prompts and outputs there)."""


def max_answer_bytes(cfg: OpenAIJudgeConfig) -> int:
    """The most bytes an answer body may have: room for max_tokens tokens with their top logprobs, and headroom."""
    per_token = 4096 if cfg.logprobs else 64
    return 256 * 1024 + cfg.max_tokens * per_token


# -- the total deadline of one attempt ------------------------------------------------------------------------
_DEADLINE = threading.local()  # .at: time.monotonic() by which this thread's request must be over


@contextlib.contextmanager
def deadline(total_s: float) -> Iterator[None]:
    """Every socket operation of this thread's requests inside the block ends by `total_s` from now."""
    _DEADLINE.at = time.monotonic() + total_s
    try:
        yield
    finally:
        _DEADLINE.at = None


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    """A socket operation's timeout, shortened to what is left of the deadline; `expired` once it has passed."""
    at = getattr(_DEADLINE, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("the request's total deadline (timeout_s) passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream:
    """An httpcore network stream whose reads and writes end by the deadline (a slow drip cannot outlast it)."""

    def __init__(self, stream: Any, hc: Any) -> None:
        self._stream, self._hc = stream, hc

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout, self._hc.ReadTimeout))  # type: ignore[no-any-return]

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(timeout, self._hc.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname,
                                                      _left(timeout, self._hc.ConnectTimeout)), self._hc)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend:
    """httpcore's network backend, its connections made and used within the deadline."""

    def __init__(self, backend: Any, hc: Any) -> None:
        self._backend, self._hc = backend, hc

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> Any:
        stream = self._backend.connect_tcp(host, port, _left(timeout, self._hc.ConnectTimeout), local_address,
                                           socket_options)
        return _DeadlineStream(stream, self._hc)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        stream = self._backend.connect_unix_socket(path, _left(timeout, self._hc.ConnectTimeout), socket_options)
        return _DeadlineStream(stream, self._hc)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


# -- what is read ---------------------------------------------------------------------------------------------
def body_problem(body: bytes) -> str | None:
    """Why a 2xx body is not an answer the client can read safely (None when it is): not UTF-8, not JSON, or JSON
    outside harness.jsontext's bounds (an integer of thousands of digits, NaN, Infinity, deep nesting)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the answer is not UTF-8 (byte {body[exc.start]:#04x} at offset {exc.start:,})"
    try:
        jsontext.loads(text)
    except json.JSONDecodeError as exc:
        return f"the answer is not JSON ({exc.msg}, at offset {exc.pos:,})"
    return None


def _origin(url: Any) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def redirect_elsewhere(request: Any, response: Any) -> str | None:
    """The other origin a redirect points to (None when the answer is not a redirect, or stays on this origin)."""
    location = response.headers.get("location") if response.status_code in (301, 302, 303, 307, 308) else None
    if not location:
        return None
    try:
        target = request.url.join(location)
    except Exception:  # noqa: BLE001 - any unreadable Location is somewhere we do not go
        return "an unreadable location"
    return None if _origin(target) == _origin(request.url) else f"{target.scheme}://{target.netloc.decode()}"


def capped_http_client(openai: Any, cap_bytes: int) -> Any:
    """The SDK's own HTTP client class, with a transport that reads a 2xx body whole, refusing one over cap_bytes
    as it streams in and one that is not a readable answer (body_problem), never follows a redirect to another
    origin, and (through its network backend) keeps every request within the thread's deadline."""
    import importlib

    base = next(c for c in openai.DefaultHttpxClient.__mro__ if c.__name__ == "Client"
                and c.__module__.split(".")[0] in ("httpx", "httpx2"))
    hx = importlib.import_module(base.__module__.split(".")[0])
    hc = importlib.import_module("httpcore2" if hx.__name__ == "httpx2" else "httpcore")

    def capped(stream: Any) -> Iterator[bytes]:
        total = 0
        for chunk in stream:
            total += len(chunk)
            if total > cap_bytes:
                raise AnswerTooLarge(f"the answer is larger than {cap_bytes:,} bytes (the bound for this request's "
                                     "max_tokens): not read further")
            yield chunk

    class CappedStream(hx.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, stream: Any) -> None:
            self._stream = stream

        def __iter__(self) -> Any:
            return capped(self._stream)

        def close(self) -> None:
            self._stream.close()

    class CappedTransport(hx.HTTPTransport):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            pool = getattr(self, "_pool", None)
            if pool is not None and hasattr(pool, "_network_backend"):
                pool._network_backend = _DeadlineBackend(pool._network_backend, hc)

        def handle_request(self, request: Any) -> Any:
            response = super().handle_request(request)
            elsewhere = redirect_elsewhere(request, response)
            if elsewhere:
                response.close()
                raise RedirectElsewhere(f"the endpoint redirected to {elsewhere}: not followed (a judge's answer comes "
                                        "from base_url's own origin; set base_url to the final address)")
            length = response.headers.get("content-length")
            if length and length.isdigit() and (len(length) > 18 or int(length) > cap_bytes):  # no 5000-digit int()
                response.close()
                size = f"{int(length):,} bytes" if len(length) <= 18 else f"a {len(length):,}-digit number of bytes"
                raise AnswerTooLarge(f"the answer is {size}, more than the {cap_bytes:,} this request's max_tokens "
                                     "allows: not read")
            if not 200 <= response.status_code < 300:
                response.stream = CappedStream(response.stream)
                return response
            stream = response.stream
            try:
                body = b"".join(capped(stream))
            finally:
                stream.close()
            problem = body_problem(body)
            if problem:
                raise MalformedAnswer(problem)
            response.stream = hx.ByteStream(body)
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
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def _describe(exc: BaseException, secrets: tuple[str, ...]) -> str:
    """One line about a failed attempt: redacted (the key, anything like a bearer token) before it is cut short."""
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    said = safe_error(str(exc), secrets).splitlines()
    text = said[0][:200] if said else ""
    cause = exc.__cause__
    if cause is not None and not status and not isinstance(exc, AnswerRefused):  # "Connection error." says little
        why = safe_error(str(cause), secrets).splitlines()
        text += f" ({type(cause).__name__}: {why[0][:200] if why else ''})"
    return f"HTTP {status} {name}: {text}" if status else f"{name}: {text}"


class OpenAIJudge:
    """Sends judge requests to an OpenAI-compatible endpoint; safe to call from several threads."""

    def __init__(self, cfg: OpenAIJudgeConfig) -> None:
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
        cfg = self.cfg
        kwargs = self.request_kwargs(req)
        client = self._get_client()
        start = time.perf_counter()
        last_error = ""
        attempts = 0
        for attempt in range(1, cfg.max_retries + 2):
            attempts = attempt
            try:
                with deadline(cfg.timeout_s):
                    resp = client.chat.completions.create(**kwargs)
                return self.parse_completion(resp, req, attempts, time.perf_counter() - start)
            except (self._openai.AuthenticationError, self._openai.PermissionDeniedError) as exc:
                raise UsageError(
                    f"judge '{cfg.name}': {cfg.base_url} refused the request ({_describe(exc, cfg.secrets())}): check "
                    f"the key in {cfg.api_key_env or 'the api_key_env variable'} and the model name '{cfg.model}'"
                ) from exc
            except (self._openai.APIError, json.JSONDecodeError, BadResponse, AnswerRefused) as exc:
                last_error, retry = self._failure(exc)
                if not retry or attempt > cfg.max_retries:
                    break
                time.sleep(backoff_s(attempt, cfg.backoff_initial_s, cfg.backoff_max_s, _retry_after_s(exc)))
        return JudgeResponse(None, error=f"{last_error} (after {attempts} attempt{'s' if attempts > 1 else ''})",
                             latency_s=time.perf_counter() - start, attempts=attempts)

    def _failure(self, exc: Exception) -> tuple[str, bool]:
        """What went wrong with one attempt (redacted), and whether another attempt may help: 429, 5xx, timeouts,
        connection errors, malformed answers are retried; answers too large, redirects elsewhere and other 4xx
        (the request itself is wrong) are not."""
        openai = self._openai
        refused = exc if isinstance(exc, AnswerRefused) else exc.__cause__
        if isinstance(refused, AnswerRefused):
            return _describe(refused, self.cfg.secrets()), refused.retry
        if isinstance(exc, openai.APITimeoutError):
            return (f"APITimeoutError: no complete answer within timeout_s = {self.cfg.timeout_s:g} s (connecting, "
                    "sending and reading the whole answer)"), True
        retry = isinstance(exc, (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError,
                                 json.JSONDecodeError, BadResponse))
        return _describe(exc, self.cfg.secrets()), retry

    def parse_completion(self, resp: Any, req: JudgeRequest, attempts: int, latency_s: float | None) -> JudgeResponse:
        """A chat.completion (the client's object) as a JudgeResponse; BadResponse when it holds no answer, or a
        field that is not what it says (requests.response_problem: token counts that are not counts, text that is
        not Unicode, score probabilities that are not finite)."""
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
        if usage is not None and isinstance(usage, (list, tuple, dict, str, bytes, int, float)):
            raise BadResponse(f"the endpoint's usage is {type(usage).__name__}, not an object of token counts")
        extra: dict[str, Any] = {}
        if self.cfg.logprobs and req.mode == "score":
            probs = _score_probs(choice, self.cfg.max_score)
            if probs is not None:
                extra["score_probs"] = probs
        answer = JudgeResponse(raw_response=content, n_input_tokens=getattr(usage, "prompt_tokens", None),
                               n_output_tokens=getattr(usage, "completion_tokens", None), latency_s=latency_s,
                               attempts=attempts, extra=extra)
        problem = response_problem(answer)
        if problem is not None:
            raise BadResponse(problem)
        return answer

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
    """Score probabilities at the first generated token that is a score digit; BadResponse when the logprobs are
    not tokens (text) with finite log probabilities."""
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) or []
    if not isinstance(content, list):
        raise BadResponse(f"the endpoint's logprobs.content is {type(content).__name__}, not a list")
    for tok in content:
        token = getattr(tok, "token", None)
        if not isinstance(token, str):
            raise BadResponse(f"a logprobs token is {type(token).__name__}, not text")
        if token.strip().isdigit() and int(token.strip()[:2]) <= max_score:
            return score_probabilities(_top_logprobs(tok), max_score)
    return None


def _top_logprobs(tok: Any) -> list[tuple[str, float]]:
    top = getattr(tok, "top_logprobs", None) or []
    if not isinstance(top, list):
        raise BadResponse(f"the endpoint's top_logprobs is {type(top).__name__}, not a list")
    pairs = [(getattr(t, "token", None), getattr(t, "logprob", None)) for t in top]
    for token, logprob in pairs:
        if (not isinstance(token, str) or isinstance(logprob, bool) or not isinstance(logprob, (int, float))
                or not math.isfinite(logprob)):
            raise BadResponse(f"a top_logprobs entry is ({_short(token)}, {_short(logprob)}), not a token with a "
                              "finite log probability")
    return [(str(t), float(lp)) for t, lp in pairs]  # type: ignore[arg-type]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 30 else text[:27] + "..."
