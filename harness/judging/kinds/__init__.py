"""Judge kinds: who decides, one module per kind, found by name through one registry.

A judge's `kind` names a `JudgeConfig` subclass (harness.judging.config): the kind's own options (an endpoint's
URL and retries, a GGUF's context size, an ensemble's members) as dataclass fields, and what differs between
kinds as class attributes and methods (the modes it can use, whether it asks a model with a rubric, how it is
validated, identified and run). The TOML reader, the validation and the runner all ask this registry:

  openai     an OpenAI-compatible endpoint (harness.judging.kinds.openai -> openai_judge.OpenAIJudge)
  llama-cpp  a GGUF in-process (harness.judging.kinds.llama_cpp -> llama_judge.LlamaCppJudge)
  refusal    the pattern detector, no model (harness.judging.kinds.refusal -> refusal.RefusalDetectorJudge)
  ensemble   member judges combined (harness.judging.kinds.ensemble -> ensemble.judge_ensemble)

Adding a kind is one module plus one registration: a module defining a frozen dataclass subclass of
`JudgeConfig` with its option fields (with defaults; TOML keys of the same names), `check_kind` (its own validation),
`make_backend` (the object that answers a `JudgeRequest`, importing its module inside the method, so that
nothing cycles) and, where they differ from the base, `takes_mode`, `default_mode`, `asks_a_model`, `grammar`,
`kind_identity` (what makes its judgments differ), `model_name`; then one `JUDGE_KINDS.register(name,
"module:Class")` line below (or an entry point in the `harness.judges` group for a plugin). The runner plans,
caches and records every kind's judgments the same way; a kind that judges a store some other way (an ensemble
runs its members) returns that function from `own_judging`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from harness.registry import Registry

if TYPE_CHECKING:
    from harness.judging.config import JudgeConfig
    from harness.judging.requests import JudgeRequest, JudgeResponse


class JudgeBackend(Protocol):
    """What answers a kind's requests: made by `JudgeConfig.make_backend`, used by the runner."""

    concurrency: int

    def identity_extra(self) -> dict[str, Any]: ...
    def prepare(self) -> None: ...  # before the first request: read the API key, load the model
    def complete(self, req: JudgeRequest) -> JudgeResponse: ...
    def close(self) -> None: ...


JUDGE_KINDS: Registry[type[JudgeConfig]] = Registry("judge kind", entry_points="harness.judges")
BUILT_IN = ("openai", "llama-cpp", "refusal", "ensemble")  # listed in this order in messages
JUDGE_KINDS.register("openai", "harness.judging.kinds.openai:OpenAIJudgeConfig")
JUDGE_KINDS.register("llama-cpp", "harness.judging.kinds.llama_cpp:LlamaCppJudgeConfig")
JUDGE_KINDS.register("refusal", "harness.judging.kinds.refusal:RefusalJudgeConfig")
JUDGE_KINDS.register("ensemble", "harness.judging.kinds.ensemble:EnsembleJudgeConfig")


def kind_names() -> list[str]:
    """Every kind: the built-in ones first, then plugins'."""
    return [*BUILT_IN, *(n for n in JUDGE_KINDS.names() if n not in BUILT_IN)]


def config_class(kind: str) -> type[JudgeConfig]:
    """The configuration class of a kind (UsageError listing the kinds for an unknown one)."""
    return JUDGE_KINDS.get(kind)
