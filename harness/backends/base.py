"""The backend interface: load one model variant, stream the tokens of one generation.

Backends do no timing of their own: the run engine times the token stream
(time to first token, decode rate) and samples memory around it. A backend
reports what only it knows through `finish()`: the text, token counts as the
backend counts them, and its own internal timings.

Batched generators (harness.backends.llama_batch, harness.backends.onnx_batch) take `SequenceRequest`s, yield a
`SequenceResult` per sequence as it finishes, and report the batch as a whole in a `BatchThroughput`: the batch's
throughput, never one user's speed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.backends.prompt_format import ModelInput
    from harness.devices import DeviceProfile
    from harness.variants import ModelManifest, VariantFile


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; part of every sample's key."""

    max_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BackendResult:
    output: str
    finish_reason: str  # stop | length | error
    n_prompt_tokens: int
    n_output_tokens: int
    timings: dict[str, Any] = field(default_factory=dict)  # the backend's own measurements


@dataclass(frozen=True)
class SequenceRequest:
    """One prompt to generate for: its tokens (from the batched generator's `prompt_tokens`, the single-stream
    input path) and its own sampling settings."""

    tokens: tuple[int, ...]
    sampling: Sampling = Sampling()


@dataclass(frozen=True)
class SequenceResult:
    """One finished sequence; `index` is its request's position in the list given to `generate`."""

    index: int
    text: str
    tokens: tuple[int, ...]
    finish_reason: str  # stop | length
    n_prompt_tokens: int

    @property
    def n_output_tokens(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class BatchThroughput:
    """What one batched generation did, as a whole: the batch's figures, never a per-user speed."""

    batch_size: int  # sequences decoded at once at most
    n_sequences: int
    n_prompt_tokens: int
    n_generated_tokens: int
    n_decode_calls: int
    batch_wall_s: float  # time spent generating (not the caller's time between results)

    @property
    def batch_generated_tps(self) -> float | None:
        """Generated tokens per second over the whole batch."""
        return self.n_generated_tokens / self.batch_wall_s if self.batch_wall_s > 0 else None


class Backend(ABC):
    name: str = ""

    @abstractmethod
    def version(self) -> str:
        """Version of the inference library, e.g. 'llama-cpp-python 0.3.36': part of every sample's key and
        row. Must not need a loaded model."""

    @abstractmethod
    def load(self, variant: VariantFile, device: DeviceProfile, manifest: ModelManifest) -> dict[str, Any]:
        """Load a model variant; return metadata worth recording (providers used, context size ...)."""

    @abstractmethod
    def stream(self, prompt: ModelInput, sampling: Sampling) -> Iterator[int]:
        """Generate for one user prompt or a conversation (prompt_format.ModelInput), yielding each sampled token
        id as soon as it exists."""

    @abstractmethod
    def finish(self) -> BackendResult:
        """The result of the last `stream` (call after the iterator is exhausted or closed)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model."""

    def system_folded(self, prompt: ModelInput) -> bool | None:
        """Whether this input's system turn is folded into its first user turn by the loaded model's prompt format
        (None: the backend cannot tell)."""
        return None


class BatchResults:
    """What both batched generators share: `generate` (theirs) leaves the batch's figures in `_last`; `finish`
    returns them and `run` collects every result in request order."""

    _last: BatchThroughput | None = None

    def generate(self, requests: Sequence[SequenceRequest]) -> Iterator[SequenceResult]:
        raise NotImplementedError

    def finish(self) -> BatchThroughput:
        """The batch's figures for the last `generate` (call after it is exhausted)."""
        assert self._last is not None, "finish() called before a generate() completed"
        return self._last

    def run(self, requests: Sequence[SequenceRequest]) -> tuple[list[SequenceResult], BatchThroughput]:
        """Every result in request order, and the batch's figures."""
        results = sorted(self.generate(requests), key=lambda r: r.index)
        return results, self.finish()
