"""Batched generation through llama.cpp: several sequences decoded at once in one context (continuous batching).

One llama.cpp context holds N sequences (`n_seq_max = N`), each with a KV cache of its own of the device profile's
n_ctx cells (llama.cpp's non-unified KV cache: N streams, N x n_ctx cells in all). Every step is one `llama_decode`
of a batch holding the next token of every decoding sequence and prompt tokens of newly admitted ones, in sequence-id
order (llama.cpp splits a batch over several KV streams into runs of consecutive ids). A finished sequence's cells are
removed (`llama_memory_seq_rm`) and its id goes to the next waiting prompt.

Prompts come in as tokens made by the single-stream path (`prompt_tokens`: the same prompt format, untrusted text
tokenized as text). Each sequence has a sampler chain of its own, built as llama-cpp-python builds the single-stream
one (repeat penalty, top-k, typical, top-p, min-p, temperature and a distribution seeded with the sequence's seed;
greedy at temperature 0), and stops as single-stream does (an end-of-generation token, a stop string in the last
tokens, max_tokens). So a prompt, its settings and its seed give single-stream's tokens wherever batching leaves
the logits unchanged; llama.cpp's batched kernels can move a logit in a late decimal, and so, rarely, a token
(`benchmarks/batched_sweep.py` measures how often).

`BatchThroughput.batch_generated_tps` is the generated tokens of all sequences over the batch's own time: the
batch's throughput, never one user's speed (cost is measured single-stream).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.backends.base import BatchResults, BatchThroughput, Sampling, SequenceRequest, SequenceResult
from harness.backends.prompt_format import STOP_WINDOW_TOKENS, ModelInput, PromptFormat
from harness.errors import UsageError, require

if TYPE_CHECKING:
    from harness.devices import DeviceProfile
    from harness.variants import ModelManifest, VariantFile


def check_batch_fits(n_sequences: int, n_ctx: int, kv_bytes_per_token: int | None, weights_bytes: int,
                     budget_bytes: int, device_name: str, max_sequences: int) -> None:
    """A UsageError, saying what fits, unless `n_sequences` KV caches of `n_ctx` cells each and the weights fit the
    device's memory budget (and llama.cpp's limit on parallel sequences)."""
    if n_sequences < 1:
        raise UsageError(f"a batch size of {n_sequences}: it must be at least 1 (1 = single-stream)")
    if n_sequences > max_sequences:
        raise UsageError(f"a batch of {n_sequences} sequences: this llama.cpp decodes at most {max_sequences} "
                         "sequences at once")
    if kv_bytes_per_token is None:
        return
    per_sequence = n_ctx * kv_bytes_per_token
    kv = n_sequences * per_sequence
    if weights_bytes + kv <= budget_bytes:
        return
    fits = max(0, budget_bytes - weights_bytes) // per_sequence
    what_fits = (f"at most {fits} sequences fit at this n_ctx: use a batch of {fits} or less, or a smaller n_ctx"
                 if fits >= 1 else "not even one sequence fits: use a smaller n_ctx")
    raise UsageError(f"a batch of {n_sequences} sequences x n_ctx {n_ctx} = {n_sequences * n_ctx} KV cells needs "
                     f"{kv / 1e9:.2f} GB of KV cache besides the model's {weights_bytes / 1e9:.2f} GB, over the "
                     f"{budget_bytes / 1e9:.2f} GB memory budget of device '{device_name}': {what_fits} in the "
                     "device profile")


def batch_limits(variant: VariantFile, device: DeviceProfile) -> tuple[int, int | None]:
    """What bounds a batch of this variant on this device: llama.cpp's limit on parallel sequences and the
    profile's n_batch (tokens a step), and the sequences whose KV caches fit the memory budget beside the weights
    (None when the GGUF does not say its KV size)."""
    import llama_cpp

    from harness.variants.gguf import read_info

    cap = min(int(llama_cpp.llama_max_parallel_sequences()), device.n_batch)
    kv_per_token = read_info(variant.path, variant.sha256).get("kv_bytes_per_token")
    if not isinstance(kv_per_token, int) or kv_per_token <= 0:
        return cap, None
    return cap, max(0, device.memory_budget_bytes - variant.size_bytes) // (device.n_ctx * kv_per_token)


def fitting_batch_size(variant: VariantFile, device: DeviceProfile, most: int) -> int:
    """The largest batch up to `most` this device holds for the variant (`--batch auto`); 1 when not even two
    sequences fit (single-stream)."""
    cap, fits = batch_limits(variant, device)
    return max(1, min(most, cap, fits if fits is not None else most))


def check_batch_size(variant: VariantFile, device: DeviceProfile, batch_size: int) -> None:
    """A UsageError, saying what fits, unless a batch of `batch_size` sequences of this variant fits the device: its
    n_batch, llama.cpp's limit on parallel sequences and the memory budget (see `check_batch_fits`)."""
    import llama_cpp

    from harness.variants.gguf import read_info

    if batch_size > device.n_batch:
        raise UsageError(f"a batch of {batch_size} sequences decodes {batch_size} tokens a step, more than the "
                         f"n_batch = {device.n_batch} of device profile '{device.name}': use a batch of at most "
                         f"{device.n_batch}, or raise n_batch")
    kv_per_token = read_info(variant.path, variant.sha256).get("kv_bytes_per_token")
    check_batch_fits(batch_size, device.n_ctx, kv_per_token if isinstance(kv_per_token, int) else None,
                     variant.size_bytes, device.memory_budget_bytes, device.name,
                     int(llama_cpp.llama_max_parallel_sequences()))


def make_sampler(llm: Any, sampling: Sampling) -> Any:
    """A sampler chain for one sequence, as `llama_cpp.Llama` builds its single-stream one for these settings."""
    from llama_cpp import _internals

    sampler = _internals.LlamaSampler()
    sampler.add_penalties(n_vocab=llm.n_vocab(), penalty_last_n=llm.last_n_tokens_size,
                          penalty_repeat=sampling.repeat_penalty, penalty_freq=0.0, penalty_present=0.0)
    if sampling.temperature < 0.0:
        sampler.add_dist(sampling.seed)
    elif sampling.temperature == 0.0:
        sampler.add_greedy()
    else:
        sampler.add_top_k(sampling.top_k)
        sampler.add_typical(1.0, 1)
        sampler.add_top_p(sampling.top_p, 1)
        sampler.add_min_p(sampling.min_p, 1)
        sampler.add_temp(sampling.temperature)
        sampler.add_dist(sampling.seed)
    return sampler


@dataclass
class _Sequence:
    """A request being generated in one of the context's sequence slots."""

    index: int
    request: SequenceRequest
    seq_id: int
    sampler: Any
    n_fed: int = 0  # prompt tokens already in the KV cache
    out: list[int] = field(default_factory=list)

    @property
    def prefilling(self) -> bool:
        return self.n_fed < len(self.request.tokens)

    def next_position(self) -> int:
        """The position of the generated token decoded next."""
        return len(self.request.tokens) + len(self.out) - 1


class BatchedLlama(BatchResults):
    """A GGUF model loaded for batched generation; `generate` yields each sequence as it finishes."""

    def __init__(self) -> None:
        self._lib = require("llama_cpp", "gguf", "GGUF inference")
        self._llm: Any = None
        self._format: PromptFormat | None = None
        self._batch_size = 0
        self._n_ctx_seq = 0
        self._last: BatchThroughput | None = None

    def version(self) -> str:
        return f"llama-cpp-python {self._lib.__version__}"

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def n_ctx_per_sequence(self) -> int:
        return self._n_ctx_seq

    def load(self, variant: VariantFile, device: DeviceProfile, manifest: ModelManifest,
             batch_size: int) -> dict[str, Any]:
        """Load a variant for up to `batch_size` sequences at once, each with the profile's n_ctx; a batch the
        memory budget cannot hold is a UsageError saying what fits."""
        from harness.backends.llama_cpp import open_gguf

        check_batch_size(variant, device, batch_size)
        where = f"device profile '{device.name}' (a batch of {batch_size} holds {batch_size} x its n_ctx)"
        self._llm, self._format, meta = open_gguf(variant, device, manifest, n_sequences=batch_size,
                                                  n_ctx_from=where)
        ctx = self._llm._ctx.ctx
        if self._lib.llama_n_seq_max(ctx) != batch_size:
            self.close()
            raise RuntimeError(f"llama.cpp made a context for {self._lib.llama_n_seq_max(ctx)} sequences, "
                               f"not {batch_size}")
        self._batch_size = batch_size
        self._n_ctx_seq = int(self._lib.llama_n_ctx_seq(ctx))
        return {**meta, "batch_size": batch_size, "n_ctx_per_sequence": self._n_ctx_seq,
                "n_ctx_total": int(self._lib.llama_n_ctx(ctx))}

    def prompt_tokens(self, prompt: ModelInput) -> list[int]:
        """The model input for one user prompt, exactly as single-stream generation makes it."""
        from harness.backends.llama_cpp import prompt_tokens

        assert self._format is not None, "load() first"
        return prompt_tokens(self._llm, self._format, prompt)

    def system_folded(self, prompt: ModelInput) -> bool | None:
        """Whether the loaded model's prompt format folds this input's system turn into its first user turn."""
        return self._format.system_folded(prompt) if self._format is not None else None

    def check_request(self, request: SequenceRequest) -> None:
        """A UsageError when this request cannot be generated (no tokens, or too long for a sequence's context)."""
        assert self._format is not None, "load() first"
        if not request.tokens:
            raise UsageError("the prompt has no tokens: there is nothing to generate from")
        self._format.check_context(len(request.tokens), request.sampling.max_tokens, self._n_ctx_seq)

    def _check(self, fmt: PromptFormat, requests: Sequence[SequenceRequest]) -> None:
        for i, request in enumerate(requests):
            if not request.tokens:
                raise UsageError(f"prompt {i + 1} of the batch has no tokens: there is nothing to generate from")
            try:
                fmt.check_context(len(request.tokens), request.sampling.max_tokens, self._n_ctx_seq)
            except UsageError as exc:
                raise UsageError(f"prompt {i + 1} of the batch: {exc}") from None

    def generate(self, requests: Sequence[SequenceRequest]) -> Iterator[SequenceResult]:
        """Generate for every request, at most `batch_size` at once, yielding each as it finishes (not in order).
        Every prompt is checked against the per-sequence context before anything is decoded."""
        fmt = self._format
        assert fmt is not None, "load() first"
        self._check(fmt, requests)
        self._last = None
        run = _BatchRun(self._lib, self._llm, fmt, self._batch_size, requests)
        yield from run.results()
        self._last = run.throughput()

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None


class _BatchRun:
    """One continuous-batching pass over a list of requests."""

    def __init__(self, lib: Any, llm: Any, fmt: PromptFormat, batch_size: int,
                 requests: Sequence[SequenceRequest]) -> None:
        self._lib, self._llm, self._format = lib, llm, fmt
        self._ctx = llm._ctx.ctx
        self._memory = lib.llama_get_memory(self._ctx)
        self._vocab = llm._model.vocab
        self._n_batch = llm.n_batch
        self._batch_size = batch_size
        self._requests = requests
        self._waiting = list(range(len(requests)))[::-1]  # popped from the end: request order
        self._free = list(range(batch_size))[::-1]  # lowest sequence id first
        self._active: dict[int, _Sequence] = {}
        self._n_decode_calls = 0
        self._n_generated = 0
        self._busy_s = 0.0

    def results(self) -> Iterator[SequenceResult]:
        if not self._requests:
            return
        batch = self._lib.llama_batch_init(self._n_batch, 0, 1)
        try:
            for sid in range(self._batch_size):  # a clean cache for every slot
                self._lib.llama_memory_seq_rm(self._memory, sid, -1, -1)
            while self._waiting or self._active:
                started = time.perf_counter()
                self._admit()
                finished = self._step(batch)
                self._busy_s += time.perf_counter() - started
                yield from finished
        finally:
            for seq in list(self._active.values()):
                self._release(seq)
            self._lib.llama_batch_free(batch)

    def throughput(self) -> BatchThroughput:
        return BatchThroughput(self._batch_size, len(self._requests), sum(len(r.tokens) for r in self._requests),
                               self._n_generated, self._n_decode_calls, self._busy_s)

    def _admit(self) -> None:
        while self._waiting and self._free:
            index, sid = self._waiting.pop(), self._free.pop()
            request = self._requests[index]
            self._active[sid] = _Sequence(index, request, sid, make_sampler(self._llm, request.sampling))

    def _plan(self) -> list[tuple[_Sequence, list[int], int]]:
        """This step's tokens per sequence, in sequence-id order: the next token of each decoding sequence, then as
        many prompt tokens of prefilling ones as the batch has room for."""
        order = sorted(self._active.values(), key=lambda s: s.seq_id)
        room = self._n_batch - sum(not s.prefilling for s in order)
        plan = []
        for seq in order:
            if not seq.prefilling:
                plan.append((seq, [seq.out[-1]], seq.next_position()))
            elif room > 0:
                chunk = list(seq.request.tokens[seq.n_fed:seq.n_fed + room])
                room -= len(chunk)
                plan.append((seq, chunk, seq.n_fed))
        return plan

    def _step(self, batch: Any) -> list[SequenceResult]:
        plan = self._plan()
        sampled: list[tuple[_Sequence, int]] = []
        n = 0
        for seq, tokens, first_pos in plan:
            prompt_ends = seq.prefilling and seq.n_fed + len(tokens) == len(seq.request.tokens)
            for k, token in enumerate(tokens):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, first_pos + k, 1
                batch.seq_id[n][0] = seq.seq_id
                batch.logits[n] = False
                n += 1
            if not seq.prefilling or prompt_ends:
                batch.logits[n - 1] = True
                sampled.append((seq, n - 1))
            if seq.prefilling:
                seq.n_fed += len(tokens)
        batch.n_tokens = n
        code = self._lib.llama_decode(self._ctx, batch)
        self._n_decode_calls += 1
        if code != 0:
            raise RuntimeError(f"llama_decode of a batch of {n} tokens over {len(plan)} sequences returned {code}")
        done = []
        for seq, row in sampled:
            result = self._advance(seq, int(seq.sampler.sample(self._llm._ctx, row)))
            if result is not None:
                done.append(result)
                self._release(seq)
        return done

    def _advance(self, seq: _Sequence, token: int) -> SequenceResult | None:
        """Take a sampled token as single-stream generation does; the result when the sequence is done."""
        fmt, sampling = self._format, seq.request.sampling
        finish = None
        if self._lib.llama_vocab_is_eog(self._vocab, token):
            finish = "stop"
        else:
            seq.out.append(token)
            self._n_generated += 1
            tail = seq.out[-STOP_WINDOW_TOKENS:]
            if fmt.stops and fmt.hit_stop(self._llm.detokenize(tail).decode("utf-8", "ignore")):
                finish = "stop"
            elif len(seq.out) >= sampling.max_tokens:
                finish = "length"
        if finish is None:
            return None
        text, stopped = fmt.trim(self._llm.detokenize(seq.out, special=False).decode("utf-8", errors="replace"))
        return SequenceResult(seq.index, text, tuple(seq.out), "stop" if stopped else finish,
                              len(seq.request.tokens))

    def _release(self, seq: _Sequence) -> None:
        """Free a sequence's slot: its KV cells removed, its sampler closed, its id back to the free list."""
        self._lib.llama_memory_seq_rm(self._memory, seq.seq_id, -1, -1)
        seq.sampler.close()
        del self._active[seq.seq_id]
        self._free.append(seq.seq_id)
        self._free.sort(reverse=True)
