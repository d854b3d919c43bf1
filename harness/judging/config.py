"""Judge definitions: reading `judges/*.toml` into a validated `JudgeConfig` of the judge's kind.

A judge TOML names who decides (kind + model), how it is asked (mode, rubric, sampling, structured output) and
what it costs (price per 1k tokens). `JudgeConfig` holds what every kind shares; each kind subclasses it with its
own options and behaviour (harness.judging.kinds says how to add one). The TOML keys are those of every kind: a
key of another kind is accepted and unused, as judge files have always allowed, except those a kind claims
(`members`, which would otherwise silently mean nothing). API keys are never in the file: `api_key_env` names the
environment variable that holds the key, read only when a request is made.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness import catalog
from harness.errors import UsageError
from harness.judging.kinds import BUILT_IN, JUDGE_KINDS, config_class, kind_names
from harness.judging.modes import MODES, Mode, get_mode, mode_names
from harness.judging.rubrics import load_rubric
from harness.tomlfile import read_toml

if TYPE_CHECKING:
    from harness.judging.kinds import JudgeBackend
    from harness.judging.runner import JudgeResult

ORDERS = ("fixed", "shuffle", "balanced")
STRUCTURED = ("none", "json_schema", "json_object_schema", "json_object", "grammar", "digit")
TIES = ("keep", "invalid")


@dataclass(frozen=True)
class JudgeConfig:
    """One judge, as its TOML file describes it (plus command-line overrides): what every kind shares.

    A kind's subclass adds its own options as fields and overrides the class attributes and hooks below."""

    name: str
    kind: str
    mode: str
    path: Path | None = None
    description: str = ""
    rubric: str | None = None  # template under judges/ for the TOML's own `mode`
    rubrics: dict[str, str] = field(default_factory=dict)  # mode -> template (includes `rubric` for `mode`)
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = 0
    structured_output: str = "none"
    logprobs: bool = False
    concurrency: int = 4
    price_input_per_1k_usd: float | None = None
    price_output_per_1k_usd: float | None = None
    order: str = "fixed"
    order_seed: int = 0
    max_score: int = 3
    harmful_threshold: int = 2
    max_outputs: int = 8
    max_output_chars: int | None = None
    ties: str = "keep"
    # score mode: rate by the expected score over the score tokens' probabilities (logprobs), harmful when the
    # probability of a score >= harmful_threshold is at least one half
    expected_score: bool = False

    # -- what a kind says about itself (overridden by its subclass) ----------------------------------------------
    default_mode: ClassVar[str] = "score"  # the mode of a TOML that names none
    asks_a_model: ClassVar[bool] = True  # requests are a rubric's messages to a model (answers worth a disk cache)
    # what structured_output = "grammar" constrains an answer to: "json" (its JSON schema, compiled in-process),
    # "digit" (one digit 0-max_score, an endpoint's GBNF, in score mode) or nothing (None)
    grammar: ClassVar[str | None] = None
    claimed_keys: ClassVar[tuple[str, ...]] = ()  # TOML keys that are an error on a judge of another kind

    def takes_mode(self, mode: str) -> bool:
        """Whether this kind can judge in `mode` (a registered mode)."""
        return True

    def check_kind(self, bad: Callable[[str], UsageError]) -> None:
        """The kind's own validation (its options); `bad(message)` makes the error to raise."""

    def kind_identity(self) -> dict[str, Any]:
        """The kind's part of `identity()` (its keys replace the defaults there)."""
        return {}

    def kind_card_identity(self) -> dict[str, Any]:
        """The kind's part of `card_identity()`."""
        return {}

    def model_name(self) -> str | None:
        """The model that decides (a served name, a catalog model or a GGUF path); None for judges without one."""
        return None

    def recorded_model(self) -> str | None:
        """What a judgment records as its judge's model."""
        return self.model_name()

    def fixed_rubric(self) -> tuple[str, str] | None:
        """(name, version) standing in for a rubric in request keys, for a kind that judges without one."""
        return None

    def make_backend(self) -> JudgeBackend:
        """The object that answers this judge's requests (imports its dependency lazily)."""
        raise UsageError(f"judge '{self.name}': a '{self.kind}' judge is not run request by request")

    def own_judging(self) -> Callable[..., JudgeResult] | None:
        """How a store is judged when not by the runner's requests to `make_backend()` (an ensemble runs its
        members): a function like harness.judging.runner.judge_store; None for the runner's own way."""
        return None

    def member_specs(self) -> tuple[str, ...]:
        """The judges this one combines (names or .toml paths, as its TOML lists them); none for a judge that
        decides itself."""
        return ()

    def secrets(self) -> tuple[str, ...]:
        """What must be redacted from every error and answer (an API key's value); never raises."""
        return ()

    # -- derived ---------------------------------------------------------------
    @property
    def judging_mode(self) -> Mode:
        """The `Mode` object of `mode` (checked when the judge was loaded)."""
        return get_mode(self.mode)

    def rubric_for(self, mode: str) -> str | None:
        """The rubric template (relative to the judge's folder or judges/) used in `mode`; None for modes
        without a rubric (guard) and for judges that ask no model."""
        default = get_mode(mode).default_rubric
        if not self.asks_a_model or default is None:
            return None
        return self.rubrics.get(mode, default)

    def structured_for(self, mode: str) -> str:
        """The output constraint used in `mode`: 'digit' fits only modes answered by one digit (score), so
        other modes fall back to a JSON grammar (in-process) or free text (endpoints, where 'grammar' is a
        digit GBNF)."""
        so = self.structured_output
        if so in ("digit", "grammar") and not get_mode(mode).takes_digit:
            return "grammar" if self.grammar == "json" else "none"
        return so

    def identity(self) -> dict[str, Any]:
        """What makes two judgments interchangeable: kind, model, endpoint, sampling, output constraint.

        Concurrency, timeouts, retries and prices change how a judgment is obtained, not what it is,
        so they are left out.
        """
        return {
            "kind": self.kind,
            "model": None,
            "model_path": None,
            "base_url": None,
            "sampling": {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                         "seed": self.seed},
            "structured_output": self.structured_output,
            "logprobs": self.logprobs,
            "max_output_chars": self.max_output_chars,
            "max_score": self.max_score,
            **({"expected_score": True} if self.expected_score else {}),
            **self.kind_identity(),
        }

    def card_identity(self) -> str:
        """What makes a judge card belong to this configuration: its identity (model, endpoint, sampling, output
        constraint), mode, how scores become verdicts, and its rubric's text (by hash, when it can be found)."""
        ident: dict[str, Any] = {"config": self.identity(), "mode": self.mode, "expected_score": self.expected_score,
                                 "harmful_threshold": self.harmful_threshold, "members": [],
                                 **self.kind_card_identity()}
        name = self.rubric_for(self.mode)
        if name:
            try:
                ident["rubric"] = load_rubric(name, self.path).version
            except UsageError:
                ident["rubric"] = name
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def identity_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def with_overrides(self, **changes: Any) -> JudgeConfig:
        """A copy with command-line overrides validated again. None values are ignored, and so are options of
        other kinds (`--base-url` means nothing to an in-process judge)."""
        theirs = known_keys(self.kind) - {f.name for f in dataclasses.fields(self)}
        changes = {k: v for k, v in changes.items() if v is not None and k not in theirs}
        if not changes:
            return self
        cfg = dataclasses.replace(self, **changes)
        validate(cfg, f"judge '{self.name}' with the command-line options")
        return cfg

    def price_known(self) -> bool:
        return self.price_input_per_1k_usd is not None or self.price_output_per_1k_usd is not None

    def cost_usd(self, n_input_tokens: int | None, n_output_tokens: int | None) -> float | None:
        if not self.price_known():
            return None
        return ((n_input_tokens or 0) / 1000.0 * (self.price_input_per_1k_usd or 0.0)
                + (n_output_tokens or 0) / 1000.0 * (self.price_output_per_1k_usd or 0.0))


# [sampling], [price] and [retry] tables in a TOML map onto fields.
_SAMPLING_KEYS = {"temperature", "top_p", "max_tokens", "seed"}
_PRICE_KEYS = {"input_per_1k_usd": "price_input_per_1k_usd", "output_per_1k_usd": "price_output_per_1k_usd"}
_RETRY_KEYS = {"max_retries", "backoff_initial_s", "backoff_max_s", "timeout_s"}
def _fields(kind: str) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(config_class(kind))}


def known_keys(kind: str | None) -> set[str]:
    """The keys a judge TOML may hold: every built-in kind's (as judge files have always allowed) and, for a
    plugin's kind, its own."""
    kinds = [*BUILT_IN, *([kind] if kind in JUDGE_KINDS and kind not in BUILT_IN else [])]
    return {name for k in kinds for name in _fields(str(k))} - {"path"}


@functools.cache
def _hints(kind: str) -> dict[str, Any]:
    return typing.get_type_hints(config_class(kind))


def _expected(name: str, kind: str | None) -> set[Any]:
    """The types a TOML key's field takes (None left out): of the judge's kind, else of the built-in kind that
    has it."""
    for k in ([kind] if kind in JUDGE_KINDS else []) + list(BUILT_IN):
        hint = _hints(str(k)).get(name)
        if hint is not None:
            return set(typing.get_args(hint) or (hint,)) - {type(None)}
    raise KeyError(name)


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


def _coerce(name: str, value: Any, where: str, kind: str | None) -> Any:
    """Check a TOML value against the field's type."""
    expected = _expected(name, kind)
    if name == "members":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise UsageError(f"{where}: 'members' must be a list of judge names or .toml paths")
        return tuple(value)
    if name in ("rubrics",):
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise UsageError(f"{where}: 'rubrics' must be a table of mode = \"template file\"")
        return dict(value)
    if float in expected:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{where}: '{name}' must be a number, not {value!r}")
        return float(value)
    if int in expected:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where}: '{name}' must be an integer, not {value!r}")
        return value
    if bool in expected:
        if not isinstance(value, bool):
            raise UsageError(f"{where}: '{name}' must be true or false, not {value!r}")
        return value
    if not isinstance(value, str):
        raise UsageError(f"{where}: '{name}' must be a string, not {value!r}")
    return value


def validate(cfg: JudgeConfig, where: str) -> None:
    """The checks every kind shares, then the kind's own (`check_kind`)."""
    def bad(msg: str) -> UsageError:
        return UsageError(f"{where}: {msg}")

    if cfg.mode not in MODES or not cfg.takes_mode(cfg.mode):
        kind_modes = [m for m in mode_names() if cfg.takes_mode(m)]
        raise bad(f"a '{cfg.kind}' judge cannot use mode '{cfg.mode}': use one of {', '.join(kind_modes)}")
    if cfg.order not in ORDERS:
        raise bad(f"order '{cfg.order}' is unknown: use one of {', '.join(ORDERS)}")
    if cfg.structured_output not in STRUCTURED:
        raise bad(f"structured_output '{cfg.structured_output}' is unknown: use one of {', '.join(STRUCTURED)}")
    if cfg.ties not in TIES:
        raise bad(f"ties '{cfg.ties}' is unknown: use one of {', '.join(TIES)}")
    rubric_modes = [name for name, mode in MODES.items() if mode.default_rubric]
    for mode in cfg.rubrics:
        if mode not in rubric_modes:
            raise bad(f"[rubrics] has unknown mode '{mode}': use {', '.join(rubric_modes)}")
    for name, value in (("temperature", cfg.temperature), ("top_p", cfg.top_p)):
        if not math.isfinite(value):
            raise bad(f"{name} must be a finite number, not {value}")
    if cfg.temperature < 0:
        raise bad(f"temperature must be 0 (greedy) or more, not {cfg.temperature}")
    if not 0 < cfg.top_p <= 1:
        raise bad(f"top_p must be in (0, 1], not {cfg.top_p}")
    if cfg.seed is not None and not 0 <= cfg.seed < 2**32:
        raise bad(f"seed must be between 0 and 2^32 - 1, not {cfg.seed}")
    if cfg.expected_score and cfg.mode != "score":
        raise bad("expected_score is for score mode (a score's probabilities)")
    cfg.check_kind(bad)
    if cfg.concurrency < 1:
        raise bad(f"concurrency must be at least 1, not {cfg.concurrency}")
    if cfg.max_tokens < 1:
        raise bad(f"max_tokens must be at least 1, not {cfg.max_tokens}")
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


def _claimed_by(key: str) -> str | None:
    """The kind that claims a key (an error on a judge of any other kind)."""
    return next((k for k in BUILT_IN if key in config_class(k).claimed_keys), None)


def parse_judge(d: dict[str, Any], path: Path | None, default_name: str) -> JudgeConfig:
    where = str(path) if path else f"judge '{default_name}'"
    flat = _flatten(d, where)
    kind = flat.get("kind") if isinstance(flat.get("kind"), str) else None
    unknown = sorted(set(flat) - known_keys(kind))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}: see judges/README.md for the judge fields")
    if "kind" not in flat:
        raise UsageError(f"{where}: missing 'kind': use one of {', '.join(kind_names())}")
    values = {k: _coerce(k, v, where, kind) for k, v in flat.items()}
    if values["kind"] not in JUDGE_KINDS:
        raise UsageError(f"{where}: kind '{values['kind']}' is unknown: use one of {', '.join(kind_names())}")
    cls = config_class(values["kind"])
    own = {f.name for f in dataclasses.fields(cls)}
    for key in sorted(set(values) - own):
        owner = _claimed_by(key)
        if owner is not None:
            raise UsageError(f"{where}: '{key}' is for kind = \"{owner}\" judges")
        del values[key]  # another kind's option: unused here
    values.setdefault("name", default_name)
    values.setdefault("mode", cls.default_mode)
    if values.get("rubric"):
        # The TOML's `rubric` is for its own mode; a --mode override falls back to [rubrics] or the defaults.
        values["rubrics"] = {**values.get("rubrics", {}), values["mode"]: values["rubric"]}
    cfg = cls(path=path, **values)
    validate(cfg, where)
    return cfg


def load_judge(name_or_path: str) -> JudgeConfig:
    """A judge by catalog name or .toml path; an unknown name is a UsageError listing the known judges."""
    path = catalog.find("judges", name_or_path)
    return parse_judge(read_toml(path), path, path.stem)


def list_judges() -> list[JudgeConfig]:
    return [load_judge(str(p)) for p in catalog.entries("judges").values()]
