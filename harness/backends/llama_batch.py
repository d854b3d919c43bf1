"""Batched generation through llama.cpp: several sequences decoded at once in one context (continuous batching).

One llama.cpp context holds N sequences (`n_seq_max = N`), each with a KV cache of its own of the device profile's
n_ctx cells (llama.cpp's non-unified KV cache: N streams, N x n_ctx cells in all). A newly admitted prompt is
prefilled alone, in the `llama_decode` calls of the chunks single-stream evaluates it in; every other step is one
`llama_decode` of the next token of every decoding sequence, in sequence-id order (llama.cpp splits a batch over
several KV streams into runs of consecutive ids). A finished sequence's cells are removed (`llama_memory_seq_rm`) and
its id goes to the next waiting prompt.

Why prompts are prefilled alone: the non-unified cache cuts a batch mixing sequences into micro-batches of as many
tokens from each, so two prompts of 47 and 48 tokens decoded together leave the 48th token alone in a micro-batch of
its own. A token alone takes the attention's vector kernels, where inside single-stream's whole prompt it took the
matrix ones; the last prompt token's logits then moved by up to 0.66 (measured, SmolLM2-135M Q4_1), enough to flip
the first generated tokens of 1 prompt in 16 at N = 2 (`benchmarks/batched_identity.py`). A decode step computes
each sequence's one token as single-stream's decode does: measured, its logits are bit-identical to single-stream's.

Prompts come in as tokens made by the single-stream path (`prompt_tokens`: the same prompt format, untrusted text
tokenized as text). Plain greedy settings take the first token of highest logit, as single-stream does
(`llama_cpp.greedy_tokens`); every other setting gets a sampler chain per sequence, built as llama-cpp-python builds
the single-stream one (repeat penalty, top-k, typical, top-p, min-p, temperature and a distribution seeded with the
sequence's seed; greedy at temperature 0). Each sequence stops as single-stream does (an end-of-generation token, a
stop string in the last tokens, max_tokens). So a prompt, its settings and its seed give single-stream's tokens.

`BatchThroughput.batch_generated_tps` is the generated tokens of all sequences over the batch's own time: the
batch's throughput, never one user's speed (cost is measured single-stream).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.backends.base import BatchResults, BatchThroughput, Sampling, SequenceRequest, SequenceResult
from harness.backends.llama_cpp import is_plain_greedy
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
    """A request being generated in one of the context's sequence slots (its prompt already in the KV cache)."""

    index: int
    request: SequenceRequest
    seq_id: int
    sampler: Any  # None: plain greedy, the argmax of the logits row (as single-stream takes it)
    out: list[int] = field(default_factory=list)

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


class _Batch:
    """A `llama_batch` of up to `capacity` tokens, one sequence id each, written through numpy views."""

    def __init__(self, lib: Any, capacity: int) -> None:
        import numpy as np

        self._lib = lib
        self.raw = lib.llama_batch_init(capacity, 0, 1)
        self._token = np.ctypeslib.as_array(self.raw.token, shape=(capacity,))
        self._pos = np.ctypeslib.as_array(self.raw.pos, shape=(capacity,))
        self._logits = np.ctypeslib.as_array(self.raw.logits, shape=(capacity,))
        np.ctypeslib.as_array(self.raw.n_seq_id, shape=(capacity,))[:] = 1

    def set(self, tokens: Sequence[int], positions: Sequence[int], seq_ids: Sequence[int], outputs: Any) -> None:
        """The batch's tokens, their positions and sequence ids, and which rows give logits (a bool per token)."""
        n = len(tokens)
        self._token[:n], self._pos[:n], self._logits[:n] = tokens, positions, outputs
        seq_id = self.raw.seq_id
        for i, sid in enumerate(seq_ids):
            seq_id[i][0] = sid
        self.raw.n_tokens = n

    def free(self) -> None:
        self._lib.llama_batch_free(self.raw)


class _BatchRun:
    """One continuous-batching pass over a list of requests: each admitted prompt prefilled alone (see the module's
    docstring for why), then one `llama_decode` a step for the next token of every running sequence."""

    def __init__(self, lib: Any, llm: Any, fmt: PromptFormat, batch_size: int,
                 requests: Sequence[SequenceRequest]) -> None:
        self._lib, self._llm, self._format = lib, llm, fmt
        self._ctx = llm._ctx.ctx
        self._memory = lib.llama_get_memory(self._ctx)
        self._vocab = llm._model.vocab
        self._n_vocab = llm.n_vocab()
        self._n_batch = llm.n_batch
        self._prefill_chunk = min(llm.n_batch, int(lib.llama_n_ctx_seq(self._ctx)))  # single-stream's n_batch
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
        batch = _Batch(self._lib, max(self._n_batch, self._batch_size))
        try:
            for sid in range(self._batch_size):  # a clean cache for every slot
                self._lib.llama_memory_seq_rm(self._memory, sid, -1, -1)
            while self._waiting or self._active:
                started = time.perf_counter()
                finished = self._admit(batch)
                if self._active:
                    finished += self._step(batch)
                self._busy_s += time.perf_counter() - started
                yield from finished
        finally:
            for seq in list(self._active.values()):
                self._release(seq)
            batch.free()

    def throughput(self) -> BatchThroughput:
        return BatchThroughput(self._batch_size, len(self._requests), sum(len(r.tokens) for r in self._requests),
                               self._n_generated, self._n_decode_calls, self._busy_s)

    def _decode(self, batch: _Batch, what: str) -> None:
        code = self._lib.llama_decode(self._ctx, batch.raw)
        self._n_decode_calls += 1
        if code != 0:
            raise RuntimeError(f"llama_decode of {what} returned {code}")

    def _admit(self, batch: _Batch) -> list[SequenceResult]:
        """Waiting requests into free slots, each prompt prefilled and its first token taken; the results of those
        already done (an end-of-generation token first, or max_tokens 1)."""
        done = []
        while self._waiting and self._free:
            index, sid = self._waiting.pop(), self._free.pop()
            request = self._requests[index]
            sampler = None if is_plain_greedy(request.sampling) else make_sampler(self._llm, request.sampling)
            seq = self._active[sid] = _Sequence(index, request, sid, sampler)
            row = self._prefill(batch, seq)
            result = self._advance(seq, self._pick(seq, row, self._row_logits(row)))
            if result is not None:
                done.append(result)
                self._release(seq)
        return done

    def _prefill(self, batch: _Batch, seq: _Sequence) -> int:
        """A prompt into its sequence's cells, alone, in single-stream's chunks; the batch row of its last logits."""
        tokens, step = seq.request.tokens, self._prefill_chunk
        for first in range(0, len(tokens), step):
            chunk = tokens[first:first + step]
            outputs = [False] * len(chunk)
            outputs[-1] = True
            batch.set(chunk, range(first, first + len(chunk)), [seq.seq_id] * len(chunk), outputs)
            self._decode(batch, f"a prompt chunk of {len(chunk)} tokens")
        return len(tokens) - 1 - (len(tokens) - 1) // step * step

    def _step(self, batch: _Batch) -> list[SequenceResult]:
        """The next token of every running sequence, in sequence-id order, in one `llama_decode`."""
        order = sorted(self._active.values(), key=lambda s: s.seq_id)
        batch.set([s.out[-1] for s in order], [s.next_position() for s in order], [s.seq_id for s in order],
                  [True] * len(order))
        self._decode(batch, f"a step of {len(order)} sequences")
        logits = self._all_logits(len(order))
        done = []
        for row, seq in enumerate(order):
            result = self._advance(seq, self._pick(seq, row, logits[row]))
            if result is not None:
                done.append(result)
                self._release(seq)
        return done

    def _row_logits(self, row: int) -> Any:
        import numpy as np

        return np.ctypeslib.as_array(self._lib.llama_get_logits_ith(self._ctx, row), shape=(self._n_vocab,))

    def _all_logits(self, n_rows: int) -> Any:
        """The last decode's logits, a row per token that asked for them, in batch order."""
        import numpy as np

        return np.ctypeslib.as_array(self._lib.llama_get_logits(self._ctx), shape=(n_rows, self._n_vocab))

    def _pick(self, seq: _Sequence, row: int, logits: Any) -> int:
        """The token a sequence takes from its logits (batch row `row`): the first of the highest logit for plain
        greedy, as single-stream takes it (`greedy_tokens`), else its own sampler chain's."""
        if seq.sampler is None:
            return int(logits.argmax())
        return int(seq.sampler.sample(self._llm._ctx, row))

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
        if seq.sampler is not None:
            seq.sampler.close()
        del self._active[seq.seq_id]
        self._free.append(seq.seq_id)
        self._free.sort(reverse=True)
