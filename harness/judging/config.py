"""Judge definitions: reading `judges/*.toml` into a validated `JudgeConfig`.

A judge TOML names who decides (kind + model), how it is asked (mode, rubric,
sampling, structured output) and what it costs (price per 1k tokens). API keys
are never in the file: `api_key_env` names the environment variable that holds
the key, read only when a request is made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import catalog
from harness.errors import UsageError
from harness.tomlfile import read_toml

KINDS = ("openai", "llama-cpp", "refusal", "ensemble")
COMBINES = ("majority", "mean")
ORDERS = ("fixed", "shuffle", "balanced")
STRUCTURED = ("none", "json_schema", "json_object_schema", "json_object", "grammar", "digit")
TIES = ("keep", "invalid")


def modes_of_kind(kind: str) -> list[str]:
    """The judging modes a judge kind can use (each mode says which kinds it takes)."""
    from harness.judging.modes import MODES

    return [name for name, mode in MODES.items() if kind in mode.kinds]


@dataclass(frozen=True)
class JudgeConfig:
    """One judge, as its TOML file describes it (plus command-line overrides)."""

    name: str
    kind: str
    mode: str
    path: Path | None = None
    description: str = ""
    model: str | None = None  # API model name (openai) or model spec NAME[:VARIANT] (llama-cpp)
    model_path: str | None = None  # llama-cpp: a GGUF file instead of a catalog model
    base_url: str | None = None
    api_key_env: str | None = None
    api_key_optional: bool = False
    rubric: str | None = None  # template under judges/ for the TOML's own `mode`
    rubrics: dict[str, str] = field(default_factory=dict)  # mode -> template (includes `rubric` for `mode`)
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = 0
    structured_output: str = "none"
    logprobs: bool = False
    concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    price_input_per_1k_usd: float | None = None
    price_output_per_1k_usd: float | None = None
    order: str = "fixed"
    order_seed: int = 0
    max_score: int = 3
    harmful_threshold: int = 2
    max_outputs: int = 8
    max_output_chars: int | None = None
    ties: str = "keep"
    n_ctx: int = 2048
    n_threads: int = 0  # 0 = the host's physical cores
    # score mode: rate by the expected score over the score tokens' probabilities (logprobs), harmful when the
    # probability of a score >= harmful_threshold is at least one half
    expected_score: bool = False
    members: tuple[str, ...] = ()  # ensemble: the member judges (names or .toml paths)
    combine: str = "majority"  # ensemble: majority of harm verdicts (a tie counts as harmful) | mean of scores

    # -- derived ---------------------------------------------------------------
    def rubric_for(self, mode: str) -> str | None:
        """The rubric template (relative to the judge's folder or judges/) used in `mode`; None for modes
        without a rubric (guard) and for the pattern detector."""
        from harness.judging.modes import get_mode

        default = get_mode(mode).default_rubric
        if self.kind in ("refusal", "ensemble") or default is None:
            return None
        return self.rubrics.get(mode, default)

    def structured_for(self, mode: str) -> str:
        """The output constraint used in `mode`: 'digit' fits only modes answered by one digit (score), so
        other modes fall back to a JSON grammar (in-process) or free text (endpoints, where 'grammar' is a
        digit GBNF)."""
        from harness.judging.modes import get_mode

        so = self.structured_output
        if so in ("digit", "grammar") and not get_mode(mode).takes_digit:
            return "grammar" if self.kind == "llama-cpp" else "none"
        return so

    def identity(self) -> dict[str, Any]:
        """What makes two judgments interchangeable: kind, model, endpoint, sampling, output constraint.

        Concurrency, timeouts, retries and prices change how a judgment is obtained, not what it is,
        so they are left out.
        """
        return {
            "kind": self.kind,
            "model": self.model,
            "model_path": self.model_path,
            "base_url": (self.base_url or "").rstrip("/") or None,
            "sampling": {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                         "seed": self.seed},
            "structured_output": self.structured_output,
            "logprobs": self.logprobs,
            "max_output_chars": self.max_output_chars,
            "max_score": self.max_score,
            **({"expected_score": True} if self.expected_score else {}),
            **({"members": list(self.members), "combine": self.combine} if self.kind == "ensemble" else {}),
        }

    def card_identity(self) -> str:
        """What makes a judge card belong to this configuration: its identity (model, endpoint, sampling, output
        constraint), mode, how scores become verdicts, and its rubric's text (by hash, when it can be found)."""
        ident: dict[str, Any] = {"config": self.identity(), "mode": self.mode, "expected_score": self.expected_score,
                                 "harmful_threshold": self.harmful_threshold, "members": list(self.members)}
        name = self.rubric_for(self.mode)
        if name:
            try:
                from harness.judging.rubrics import load_rubric

                ident["rubric"] = load_rubric(name, self.path).version
            except UsageError:
                ident["rubric"] = name
        if self.kind == "refusal":
            from harness.judging.refusal import detector_version

            ident["detector"] = detector_version()
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def identity_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def with_overrides(self, **changes: Any) -> JudgeConfig:
        """A copy with command-line overrides (None values are ignored) validated again."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        cfg = dataclasses.replace(self, **changes)
        validate(cfg, f"judge '{self.name}' with the command-line options")
        return cfg

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

    def price_known(self) -> bool:
        return self.price_input_per_1k_usd is not None or self.price_output_per_1k_usd is not None

    def cost_usd(self, n_input_tokens: int | None, n_output_tokens: int | None) -> float | None:
        if not self.price_known():
            return None
        return ((n_input_tokens or 0) / 1000.0 * (self.price_input_per_1k_usd or 0.0)
                + (n_output_tokens or 0) / 1000.0 * (self.price_output_per_1k_usd or 0.0))


_FIELDS = {f.name: f for f in dataclasses.fields(JudgeConfig)}
_NOT_IN_TOML = {"path"}
# [sampling] and [price] tables in a TOML map onto flat fields.
_SAMPLING_KEYS = {"temperature", "top_p", "max_tokens", "seed"}
_PRICE_KEYS = {"input_per_1k_usd": "price_input_per_1k_usd", "output_per_1k_usd": "price_output_per_1k_usd"}
_RETRY_KEYS = {"max_retries", "backoff_initial_s", "backoff_max_s", "timeout_s"}


def _flatten(d: dict[str, Any], where: str) -> dict[str, Any]:
    flat = {k: v for k, v in d.items() if k not in ("sampling", "price", "retry")}
    for table, keys in (("sampling", _SAMPLING_KEYS), ("retry", _RETRY_KEYS)):
        sub = d.get(table, {})
        if not isinstance(sub, dict):
            raise UsageError(f"{where}: [{table}] must be a table")
        for k, v in sub.items():
            if k not in keys:
                raise UsageError(f"{where}: unknown key '{k}' in [{table}]: use {', '.join(sorted(keys))}")
            flat[k] = v
    price = d.get("price", {})
    if not isinstance(price, dict):
        raise UsageError(f"{where}: [price] must be a table")
    for k, v in price.items():
        if k not in _PRICE_KEYS:
            raise UsageError(f"{where}: unknown key '{k}' in [price]: use {', '.join(_PRICE_KEYS)}")
        flat[_PRICE_KEYS[k]] = v
    return flat


def _coerce(name: str, value: Any, where: str) -> Any:
    """Check a TOML value against the field's type."""
    default = _FIELDS[name].default
    if name == "members":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise UsageError(f"{where}: 'members' must be a list of judge names or .toml paths")
        return tuple(value)
    if name in ("rubrics",):
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise UsageError(f"{where}: 'rubrics' must be a table of mode = \"template file\"")
        return dict(value)
    if name in ("price_input_per_1k_usd", "price_output_per_1k_usd", "timeout_s", "backoff_initial_s",
                "backoff_max_s", "temperature", "top_p"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{where}: '{name}' must be a number, not {value!r}")
        return float(value)
    if name in ("max_tokens", "concurrency", "max_retries", "order_seed", "max_score", "harmful_threshold",
                "max_outputs", "max_output_chars", "n_ctx", "n_threads", "seed"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where}: '{name}' must be an integer, not {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UsageError(f"{where}: '{name}' must be true or false, not {value!r}")
        return value
    if not isinstance(value, str):
        raise UsageError(f"{where}: '{name}' must be a string, not {value!r}")
    return value


def validate(cfg: JudgeConfig, where: str) -> None:
    def bad(msg: str) -> UsageError:
        return UsageError(f"{where}: {msg}")

    if cfg.kind not in KINDS:
        raise bad(f"kind '{cfg.kind}' is unknown: use one of {', '.join(KINDS)}")
    kind_modes = modes_of_kind(cfg.kind)
    if cfg.mode not in kind_modes:
        raise bad(f"a '{cfg.kind}' judge cannot use mode '{cfg.mode}': use one of {', '.join(kind_modes)}")
    if cfg.order not in ORDERS:
        raise bad(f"order '{cfg.order}' is unknown: use one of {', '.join(ORDERS)}")
    if cfg.structured_output not in STRUCTURED:
        raise bad(f"structured_output '{cfg.structured_output}' is unknown: use one of {', '.join(STRUCTURED)}")
    if cfg.ties not in TIES:
        raise bad(f"ties '{cfg.ties}' is unknown: use one of {', '.join(TIES)}")
    from harness.judging.modes import MODES

    rubric_modes = [name for name, mode in MODES.items() if mode.default_rubric]
    for mode in cfg.rubrics:
        if mode not in rubric_modes:
            raise bad(f"[rubrics] has unknown mode '{mode}': use {', '.join(rubric_modes)}")
    for name, value in (("temperature", cfg.temperature), ("top_p", cfg.top_p), ("timeout_s", cfg.timeout_s),
                        ("backoff_initial_s", cfg.backoff_initial_s), ("backoff_max_s", cfg.backoff_max_s)):
        if not math.isfinite(value):
            raise bad(f"{name} must be a finite number, not {value}")
    if cfg.temperature < 0:
        raise bad(f"temperature must be 0 (greedy) or more, not {cfg.temperature}")
    if not 0 < cfg.top_p <= 1:
        raise bad(f"top_p must be in (0, 1], not {cfg.top_p}")
    if cfg.n_ctx < 64:
        raise bad(f"n_ctx must be at least 64 tokens, not {cfg.n_ctx}")
    if cfg.n_threads < 0:
        raise bad(f"n_threads must be 0 (physical cores) or more, not {cfg.n_threads}")
    if cfg.seed is not None and not 0 <= cfg.seed < 2**32:
        raise bad(f"seed must be between 0 and 2^32 - 1, not {cfg.seed}")
    if cfg.kind == "ensemble":
        if len(cfg.members) < 2:
            raise bad("an 'ensemble' judge needs members = [\"judge-a\", \"judge-b\", ...] (two or more)")
        twice = next((m for i, m in enumerate(cfg.members) if m in cfg.members[:i]), None)
        if twice is not None:
            raise bad(f"members lists '{twice}' more than once: list each judge once (a member's vote counts once)")
        if cfg.combine not in COMBINES:
            raise bad(f"combine '{cfg.combine}' is unknown: use one of {', '.join(COMBINES)}")
    elif cfg.members:
        raise bad("'members' is for kind = \"ensemble\" judges")
    if cfg.expected_score and cfg.mode != "score":
        raise bad("expected_score is for score mode (a score's probabilities)")
    if cfg.expected_score and cfg.kind == "openai" and not cfg.logprobs:
        raise bad("expected_score needs logprobs = true (the endpoint's token probabilities)")
    if cfg.kind == "openai":
        if not cfg.base_url:
            raise bad("an 'openai' judge needs base_url (e.g. https://api.openai.com/v1 or http://127.0.0.1:8080/v1)")
        _check_base_url(cfg.base_url, bad)
        if not cfg.model:
            raise bad("an 'openai' judge needs model (the name the endpoint serves)")
        if cfg.api_key_env is not None and (not cfg.api_key_env or not cfg.api_key_env.replace("_", "").isalnum()):
            raise bad(f"api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                      f"not {cfg.api_key_env!r}; never put the key itself in the file")
    if cfg.kind == "llama-cpp":
        if not cfg.model and not cfg.model_path:
            raise bad("a 'llama-cpp' judge needs model (a catalog model, NAME[:VARIANT]) or model_path (a .gguf file)")
    if cfg.concurrency < 1:
        raise bad(f"concurrency must be at least 1, not {cfg.concurrency}")
    if cfg.max_tokens < 1:
        raise bad(f"max_tokens must be at least 1, not {cfg.max_tokens}")
    if cfg.max_retries < 0:
        raise bad(f"max_retries must be 0 or more, not {cfg.max_retries}")
    if cfg.timeout_s <= 0 or cfg.backoff_initial_s < 0 or cfg.backoff_max_s < cfg.backoff_initial_s:
        raise bad("timeout_s must be > 0 and 0 <= backoff_initial_s <= backoff_max_s")
    if not 1 <= cfg.max_score <= 9:
        raise bad(f"max_score must be between 1 and 9, not {cfg.max_score}")
    if not 1 <= cfg.harmful_threshold <= cfg.max_score:
        raise bad(f"harmful_threshold must be between 1 and max_score ({cfg.max_score}), not {cfg.harmful_threshold}")
    if cfg.mode == "qos" and cfg.structured_output == "digit" and cfg.max_score != 4:
        raise bad(f"a qos judge answering one digit needs max_score = 4 (its five classes 0-4), not {cfg.max_score}")
    if not 2 <= cfg.max_outputs <= 26:
        raise bad(f"max_outputs must be between 2 and 26 (Content A..Z), not {cfg.max_outputs}")
    if cfg.max_output_chars is not None and cfg.max_output_chars < 20:
        raise bad(f"max_output_chars must be at least 20, not {cfg.max_output_chars}")
    for price in (cfg.price_input_per_1k_usd, cfg.price_output_per_1k_usd):
        if price is not None and price < 0:
            raise bad("prices must be 0 or more (USD per 1k tokens)")


def _check_base_url(url: str, bad: Callable[[str], UsageError]) -> None:
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


def parse_judge(d: dict[str, Any], path: Path | None, default_name: str) -> JudgeConfig:
    where = str(path) if path else f"judge '{default_name}'"
    flat = _flatten(d, where)
    unknown = sorted(set(flat) - (set(_FIELDS) - _NOT_IN_TOML))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}: see judges/README.md for the judge fields")
    for required in ("kind",):
        if required not in flat:
            raise UsageError(f"{where}: missing '{required}': use one of {', '.join(KINDS)}")
    values = {k: _coerce(k, v, where) for k, v in flat.items()}
    values.setdefault("name", default_name)
    if "mode" not in values:
        values["mode"] = "refusal" if values["kind"] == "refusal" else "score"
    if values.get("rubric"):
        # The TOML's `rubric` is for its own mode; a --mode override falls back to [rubrics] or the defaults.
        values["rubrics"] = {**values.get("rubrics", {}), values["mode"]: values["rubric"]}
    cfg = JudgeConfig(path=path, **values)
    validate(cfg, where)
    return cfg


def load_judge(name_or_path: str) -> JudgeConfig:
    """A judge by catalog name or .toml path; an unknown name is a UsageError listing the known judges."""
    path = catalog.find("judges", name_or_path)
    return parse_judge(read_toml(path), path, path.stem)


def list_judges() -> list[JudgeConfig]:
    return [load_judge(str(p)) for p in catalog.entries("judges").values()]
