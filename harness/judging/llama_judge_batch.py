"""In-process judges at batch speed: several judged prompts decoded together in one llama.cpp context.

One context holds up to N sequences, each in a KV cache of its own (llama.cpp's non-unified cache: N streams of the
judge's n_ctx cells), so that each sequence's cells lie as one-at-a-time judging lays them out: a unified cache
interleaves the sequences' cells, which moves the attention sums' rounding and, measurably, the logits. The prompts'
longest common prefix (the rubric, which comes first in every judge prompt) is evaluated once in sequence 0 and kept
between calls, then copied to the other sequences' streams (`llama_memory_seq_cp` of the whole stream); every step is one `llama_decode` of the rest of each prompt, or of each sequence's
next token, each with its own sequence id and position. The logits of each sequence's last row are then read (the
score digits' probabilities) and sampled by a sampler chain of the sequence's own built as llama-cpp-python builds
`create_completion`'s (penalties, the answer's grammar, greedy at temperature 0 or top-k, typical, top-p, min-p,
temperature and a distribution seeded with the judge's seed), and a sequence stops as `create_completion` stops (an
end-of-generation token, `max_tokens` clipped to the context, the multi-byte rule). So a batch gives one-at-a-time
judging's answers wherever batching leaves the logits unchanged: llama.cpp's batched kernels can move a logit in a
late decimal, and so, rarely, a near-tied answer (`benchmarks/batched_judging.py` counts how often).

`embed_sequences` is the embedding-mode counterpart for probe judges: several token lists in one `llama_decode`,
one hidden state per token, read back per sequence (not yet one-at-a-time's beyond the first sequence: see
harness.judging.probe_features).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# outputs judged at once for `--batch auto` (judging measures no cost: no memory search): the fastest K measured
# (benchmarks/batched_judging.py, quiet 2-core host: 1.08x at K=4, 0.99x at K=8; the main job judged slower at 8)
AUTO_JUDGE_BATCH = 4


def judge_batch_size(batch: int | str | None) -> int:
    """The judge batch of a run's `--batch N|auto` (None: one at a time)."""
    if batch is None:
        return 1
    return AUTO_JUDGE_BATCH if batch == "auto" else max(1, int(batch))


def common_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """The length of the tokens every prompt starts with, leaving each prompt at least one token of its own (its
    last token's logits are read in its own sequence)."""
    if not prompts:
        return 0
    n = min(len(p) for p in prompts) - 1
    first = prompts[0]
    for i in range(max(0, n)):
        if any(p[i] != first[i] for p in prompts[1:]):
            return i
    return max(0, n)


@dataclass(frozen=True)
class JudgeSampling:
    """create_completion's sampling settings as the judge passes them (its other settings are their defaults)."""

    temperature: float
    top_p: float
    seed: int
    top_k: int = 40
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0


def judge_sampler(llm: Any, grammar: Any, s: JudgeSampling) -> Any:
    """A sampler chain for one judged sequence, as `llama_cpp.Llama._init_sampler` builds the single-stream one."""
    from llama_cpp import _internals

    sampler = _internals.LlamaSampler()
    sampler.add_penalties(n_vocab=llm.n_vocab(), penalty_last_n=llm.last_n_tokens_size,
                          penalty_repeat=s.repeat_penalty, penalty_freq=0.0, penalty_present=0.0)
    if grammar is not None:
        sampler.add_grammar(llm._model, grammar)
    if s.temperature < 0.0:
        sampler.add_dist(s.seed)
    elif s.temperature == 0.0:
        sampler.add_greedy()
    else:
        sampler.add_top_k(s.top_k)
        sampler.add_typical(s.typical_p, 1)
        sampler.add_top_p(s.top_p, 1)
        sampler.add_min_p(s.min_p, 1)
        sampler.add_temp(s.temperature)
        sampler.add_dist(s.seed)
    return sampler


def max_new_tokens(max_tokens: int | None, n_prompt: int, n_ctx: int) -> int:
    """create_completion's max_tokens for a prompt: unlimited (None or <= 0) or too many are clipped to the context."""
    if max_tokens is None or max_tokens <= 0 or max_tokens + n_prompt >= n_ctx:
        return n_ctx - n_prompt
    return max_tokens


def incomplete_utf8(text: bytes) -> int:
    """create_completion's multi-byte rule: how many more tokens to take before a cut UTF-8 character may end it."""
    fix = 0
    for k, char in enumerate(text[-3:]):
        k = 3 - k
        for num, pattern in [(2, 192), (3, 224), (4, 240)]:
            if num > k and pattern & char == pattern:
                fix = num - k
    return fix


@dataclass
class JudgeSequence:
    """One judged prompt: its tokens, its answer's grammar (or None) and how many tokens it may generate."""

    tokens: list[int]
    grammar: Any
    max_tokens: int
    keep_first_logits: bool = False


@dataclass
class Decoded:
    """What a sequence generated: its tokens, why it stopped, and the logits of its first answer token (kept on
    request, before any sampler: the score digits' probabilities are read from them)."""

    tokens: list[int]
    finish: str  # "stop" (end of generation) or "length"
    text: str
    first_logits: np.ndarray | None = None


@dataclass
class _Slot:
    index: int
    seq: JudgeSequence
    seq_id: int
    sampler: Any
    n_fed: int
    out: list[int] = field(default_factory=list)
    multibyte_fix: int = 0
    first_logits: Any = None
    finish: str | None = None

    @property
    def prefilling(self) -> bool:
        return self.n_fed < len(self.seq.tokens)


class BatchedJudgeDecoder:
    """Decodes up to `n_sequences` judged prompts at once in a context opened for them (`open_judge_context`)."""

    def __init__(self, llm: Any, n_sequences: int) -> None:
        from harness.llama_runtime import _lib

        self._lib = _lib()
        self._llm = llm
        self._ctx = llm._ctx.ctx
        self._memory = self._lib.llama_get_memory(self._ctx)
        self._n_batch = int(llm.n_batch)
        self._n_vocab = int(llm.n_vocab())
        self.n_sequences = n_sequences
        self._prefix: list[int] = []  # tokens held in sequence 0 between calls
        self.n_decode_calls = 0

    def decode(self, sequences: Sequence[JudgeSequence], sampling: JudgeSampling) -> list[Decoded]:
        """Every sequence decoded, in the order given (at most `n_sequences`)."""
        if not sequences:
            return []
        if len(sequences) > self.n_sequences:
            raise ValueError(f"{len(sequences)} sequences for a context of {self.n_sequences}")
        n_prefix = common_prefix([s.tokens for s in sequences])
        batch = self._lib.llama_batch_init(max(self._n_batch, len(sequences)), 0, 1)
        try:
            self._hold_prefix(batch, list(sequences[0].tokens[:n_prefix]))
            for sid in range(1, len(sequences)):  # sequence 0 holds the prefix alone: its whole stream is copied
                self._lib.llama_memory_seq_cp(self._memory, 0, sid, -1, -1)
            slots = [_Slot(i, s, i, judge_sampler(self._llm, s.grammar, sampling), n_prefix)
                     for i, s in enumerate(sequences)]
            try:
                while any(slot.finish is None for slot in slots):
                    self._step(batch, [slot for slot in slots if slot.finish is None])
            finally:
                for slot in slots:
                    slot.sampler.close()
        except BaseException:
            self._prefix = []
            self._lib.llama_memory_clear(self._memory, True)
            raise
        finally:
            self._lib.llama_batch_free(batch)
            for sid in range(1, len(sequences)):
                self._lib.llama_memory_seq_rm(self._memory, sid, -1, -1)
            if self._prefix:
                self._lib.llama_memory_seq_rm(self._memory, 0, len(self._prefix), -1)
        return [self._decoded(slot) for slot in slots]

    def _hold_prefix(self, batch: Any, prefix: list[int]) -> None:
        """Sequence 0 holds exactly `prefix`: what it holds already is kept, the rest evaluated (no logits)."""
        kept = common_prefix([self._prefix + [-1], prefix + [-2]])
        self._lib.llama_memory_seq_rm(self._memory, -1, kept, -1)
        self._prefix = self._prefix[:kept]
        for start in range(kept, len(prefix), self._n_batch):
            chunk = prefix[start:start + self._n_batch]
            for k, token in enumerate(chunk):
                self._put(batch, k, token, start + k, 0, False)
            batch.n_tokens = len(chunk)
            self._run(batch)
            self._prefix = prefix[:start + len(chunk)]

    def _put(self, batch: Any, n: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
        batch.seq_id[n][0] = seq_id
        batch.logits[n] = logits

    def _run(self, batch: Any) -> None:
        code = self._lib.llama_decode(self._ctx, batch)
        self.n_decode_calls += 1
        if code != 0:
            raise RuntimeError(f"llama_decode of a batch of {batch.n_tokens} tokens returned {code}")

    def _step(self, batch: Any, active: list[_Slot]) -> None:
        """One llama_decode: the next token of each generating sequence, then prompt tokens while there is room."""
        room = self._n_batch - sum(not s.prefilling for s in active)
        sampled: list[tuple[_Slot, int]] = []
        n = 0
        for slot in active:
            if not slot.prefilling:
                self._put(batch, n, slot.out[-1], len(slot.seq.tokens) + len(slot.out) - 1, slot.seq_id, True)
                sampled.append((slot, n))
                n += 1
            elif room > 0:
                chunk = slot.seq.tokens[slot.n_fed:slot.n_fed + room]
                room -= len(chunk)
                for k, token in enumerate(chunk):
                    self._put(batch, n, token, slot.n_fed + k, slot.seq_id, False)
                    n += 1
                slot.n_fed += len(chunk)
                if not slot.prefilling:
                    batch.logits[n - 1] = True
                    sampled.append((slot, n - 1))
        batch.n_tokens = n
        self._run(batch)
        for slot, row in sampled:
            if slot.seq.keep_first_logits and not slot.out and slot.first_logits is None:
                import numpy as np

                ptr = self._lib.llama_get_logits_ith(self._ctx, row)
                slot.first_logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy()
            self._advance(slot, int(slot.sampler.sample(self._llm._ctx, row)))

    def _advance(self, slot: _Slot, token: int) -> None:
        """Take a sampled token as create_completion does (no stop strings: the judge passes none)."""
        if self._lib.llama_vocab_is_eog(self._llm._model.vocab, token):
            slot.finish = "stop"
            return
        slot.out.append(token)
        text = self._llm.detokenize(slot.out, prev_tokens=slot.seq.tokens)
        fix = incomplete_utf8(text)
        if fix:
            slot.multibyte_fix = fix
        if slot.multibyte_fix > 0:
            slot.multibyte_fix -= 1
            return
        if len(slot.out) >= slot.seq.max_tokens:
            slot.finish = "length"

    def _decoded(self, slot: _Slot) -> Decoded:
        text = self._llm.detokenize(slot.out, prev_tokens=slot.seq.tokens).decode("utf-8", errors="ignore")
        return Decoded(slot.out, slot.finish or "length", text, slot.first_logits)


def open_judge_context(model_path: str, *, n_ctx_per_sequence: int, n_sequences: int, n_threads: int,
                       n_ctx_from: str, embedding: bool = False, n_batch: int = 512) -> Any:
    """A `llama_cpp.Llama` whose context holds `n_sequences` sequences, each in a KV stream of its own of
    `n_ctx_per_sequence` cells (embedding mode: one hidden state per token, no pooling)."""
    from harness.llama_runtime import _lib, open_llama

    lib = _lib()
    extra: dict[str, Any] = ({"embedding": True, "pooling_type": lib.LLAMA_POOLING_TYPE_NONE, "n_ubatch": n_batch}
                             if embedding else {})
    llm, _ = open_llama(model_path=model_path, n_ctx=n_ctx_per_sequence * n_sequences, n_batch=n_batch,
                        n_threads=n_threads, n_threads_batch=n_threads, verbose=False, n_ctx_from=n_ctx_from,
                        n_seq_max=n_sequences, **extra)
    return llm


def embed_sequences(llm: Any, token_lists: Sequence[list[int]]) -> list[np.ndarray]:
    """Every token's hidden state of each token list (n_tokens x n_embd), all lists in one `llama_decode` (each its
    own sequence id) in a context opened by `open_judge_context(embedding=True)` for at least as many sequences,
    whose n_batch holds all their tokens."""
    import numpy as np

    from harness.llama_runtime import _lib

    lib = _lib()
    ctx = llm._ctx.ctx
    memory = lib.llama_get_memory(ctx)
    n_tokens = sum(len(t) for t in token_lists)
    lib.llama_memory_clear(memory, True)
    batch = lib.llama_batch_init(n_tokens, 0, 1)
    try:
        n = 0
        for sid, tokens in enumerate(token_lists):
            for pos, token in enumerate(tokens):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
                batch.seq_id[n][0] = sid
                batch.logits[n] = True
                n += 1
        batch.n_tokens = n
        code = lib.llama_decode(ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode of {len(token_lists)} sequences ({n} tokens) returned {code}")
        n_embd = int(llm.n_embd())
        states = np.empty((n, n_embd), dtype=np.float32)
        for row in range(n):  # by batch row: llama.cpp may compute the rows in another order (one stream at a time)
            ptr = lib.llama_get_embeddings_ith(ctx, row)
            if not ptr:
                raise RuntimeError("llama.cpp returned no hidden states")
            states[row] = np.ctypeslib.as_array(ptr, shape=(n_embd,))
        out, start = [], 0
        for tokens in token_lists:
            out.append(states[start:start + len(tokens)])
            start += len(tokens)
        return out
    finally:
        lib.llama_batch_free(batch)
        lib.llama_memory_clear(memory, True)
