"""Kind `openai`: an OpenAI-compatible endpoint (OpenAI, a llama.cpp server, vLLM, Ollama), asked over HTTP.

Its options: the served model's name, the endpoint, the environment variable of its API key, and each
attempt's deadline and retries (`[retry]`). The client is harness.judging.openai_judge.OpenAIJudge.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import UsageError
from harness.judging.config import JudgeConfig

if TYPE_CHECKING:
    from harness.judging.kinds import JudgeBackend


@dataclass(frozen=True)
class OpenAIJudgeConfig(JudgeConfig):
    """A judge asked over an OpenAI-compatible chat-completions endpoint."""

    model: str | None = None  # the name the endpoint serves
    base_url: str | None = None
    api_key_env: str | None = None
    api_key_optional: bool = False
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    grammar: ClassVar[str | None] = "digit"

    def check_kind(self, bad: Callable[[str], UsageError]) -> None:
        for name, value in (("timeout_s", self.timeout_s), ("backoff_initial_s", self.backoff_initial_s),
                            ("backoff_max_s", self.backoff_max_s)):
            if not math.isfinite(value):
                raise bad(f"{name} must be a finite number, not {value}")
        if self.expected_score and not self.logprobs:
            raise bad("expected_score needs logprobs = true (the endpoint's token probabilities)")
        if not self.base_url:
            raise bad("an 'openai' judge needs base_url (e.g. https://api.openai.com/v1 or http://127.0.0.1:8080/v1)")
        check_base_url(self.base_url, bad)
        if not self.model:
            raise bad("an 'openai' judge needs model (the name the endpoint serves)")
        if self.api_key_env is not None and (not self.api_key_env or not self.api_key_env.replace("_", "").isalnum()):
            raise bad(f"api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                      f"not {self.api_key_env!r}; never put the key itself in the file")
        if self.max_retries < 0:
            raise bad(f"max_retries must be 0 or more, not {self.max_retries}")
        if self.timeout_s <= 0 or self.backoff_initial_s < 0 or self.backoff_max_s < self.backoff_initial_s:
            raise bad("timeout_s must be > 0 and 0 <= backoff_initial_s <= backoff_max_s")

    def kind_identity(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": (self.base_url or "").rstrip("/") or None}

    def model_name(self) -> str | None:
        return self.model

    def make_backend(self) -> JudgeBackend:
        from harness.judging.openai_judge import OpenAIJudge

        return OpenAIJudge(self)

    def api_key(self) -> str | None:
        """The API key from the environment (never stored); UsageError if a required one is missing."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env, "").strip()
        if key:
            return key
        if self.api_key_optional:
            return None
        raise UsageError(
            f"judge '{self.name}' needs an API key in the environment variable {self.api_key_env}, which is not set: "
            f"export {self.api_key_env}=... (or choose a local judge such as local-openai or smollm2-score)"
        )

    def secrets(self) -> tuple[str, ...]:
        """The key's value when it is set (never raises): what must be redacted from every error and answer."""
        key = os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""
        return (key,) if key else ()


def check_base_url(url: str, bad: Callable[[str], UsageError]) -> None:
    """An http(s) URL with a host (and a port, if any, that is a number): what the client can connect to."""
    if not url.startswith(("http://", "https://")):
        raise bad(f"base_url '{url}' must start with http:// or https://")
    fix = "write it as http(s)://HOST[:PORT]/PATH, e.g. http://127.0.0.1:8080/v1 or http://[::1]:8080/v1"
    if any(not ch.isprintable() or ch.isspace() for ch in url):
        raise bad(f"base_url {url!r} holds spaces or control characters: {fix}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
    except ValueError as exc:
        raise bad(f"base_url '{url}' is not a valid URL ({exc}): {fix}") from None
    if not parts.hostname:
        raise bad(f"base_url '{url}' has no host: {fix}")
