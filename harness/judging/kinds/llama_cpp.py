"""Kind `llama-cpp`: a GGUF run in-process by llama-cpp-python, one request at a time.

Its options: the model (a catalog model NAME[:VARIANT], or `model_path`, a .gguf file), its context size and
threads. It can hold any mode's answer to its JSON schema by a grammar. The backend is
harness.judging.llama_judge.LlamaCppJudge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import UsageError
from harness.judging.config import JudgeConfig

if TYPE_CHECKING:
    from harness.judging.kinds import JudgeBackend


@dataclass(frozen=True)
class LlamaCppJudgeConfig(JudgeConfig):
    """A judge model loaded in this process."""

    model: str | None = None  # a catalog model NAME[:VARIANT]
    model_path: str | None = None  # a GGUF file instead of a catalog model
    n_ctx: int = 2048
    n_threads: int = 0  # 0 = the host's physical cores

    grammar: ClassVar[str | None] = "json"

    def check_kind(self, bad: Callable[[str], UsageError]) -> None:
        if self.n_ctx < 64:
            raise bad(f"n_ctx must be at least 64 tokens, not {self.n_ctx}")
        if self.n_threads < 0:
            raise bad(f"n_threads must be 0 (physical cores) or more, not {self.n_threads}")
        if not self.model and not self.model_path:
            raise bad("a 'llama-cpp' judge needs model (a catalog model, NAME[:VARIANT]) or model_path (a .gguf file)")

    def kind_identity(self) -> dict[str, Any]:
        return {"model": self.model, "model_path": self.model_path}

    def model_name(self) -> str | None:
        return self.model or (self.model_path and str(self.model_path)) or None

    def make_backend(self) -> JudgeBackend:
        from harness.judging.llama_judge import LlamaCppJudge

        return LlamaCppJudge(self)
