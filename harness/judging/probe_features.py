"""A probe judge's features: a base model's pooled hidden state for the judged text, as the judge sees it.

The judged text is the conversation (the prompt, or an HH-RLHF style transcript split into its turns, then the
output as the assistant's reply) rendered by the base model's own chat template, or by its manifest's completion
frame for a base model without one. Untrusted text stays text: the template's own pieces are tokenized with
their control tokens, every message as plain text (harness.backends.prompt_format.chat_segments,
harness.llama_runtime.tokenize_segments), so an output that spells `<|im_end|>` is those characters.

The tokens go through llama.cpp in embedding mode with no pooling (one hidden state per token, after the final
norm); the poolings are taken here, both from the same pass: `mean` (over every token) and `last` (the last
token's state). llama.cpp's own MEAN and LAST poolings give the same vectors. Each message is cut to
`max_message_chars` characters and the tokens to `n_ctx` (the head is kept); the recipe records both.

Features are cached on disk under the cache folder by (base file sha256, recipe, messages), so a refit or a
benchmark reads them back instead of running the model again.

`features_many(pairs, batch_size)` embeds up to `batch_size` conversations per `llama_decode`, each its own sequence
in a KV stream of its own (harness.judging.llama_judge_batch.embed_sequences), as many as n_ctx tokens in all per
call. Not yet used by probe judges: only the first conversation of a decode equals one-at-a-time's features, the
others differ by up to ~0.04 (tests/test_batched_judging.py holds this as a strict xfail until it is found).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError
from harness.progress import NoProgress, Progress
from harness.prompt_record import transcript_turns

if TYPE_CHECKING:
    import numpy as np

POOLINGS = ("mean", "last")
FEATURES_VERSION = 1  # bump when the way features are computed changes: cached features are not reused


@dataclass(frozen=True)
class FeatureRecipe:
    """How a text becomes features: which base model file, which pooling, how the text is cut."""

    base: str  # the catalog model spec NAME[:VARIANT] (a GGUF variant)
    base_sha256: str
    pooling: str = "mean"
    max_message_chars: int = 2000
    n_ctx: int = 2048
    version: int = FEATURES_VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> FeatureRecipe:
        known = {"base", "base_sha256", "pooling", "max_message_chars", "n_ctx", "version"}
        unknown = sorted(set(d) - known)
        if unknown or not {"base", "base_sha256"} <= set(d):
            raise UsageError(f"{where}: a probe recipe has base, base_sha256, pooling, max_message_chars, n_ctx and "
                             f"version{'; not ' + ', '.join(unknown) if unknown else ''}: refit the probe")
        recipe = cls(**d)
        if recipe.pooling not in POOLINGS:
            raise UsageError(f"{where}: pooling '{recipe.pooling}' is unknown: use one of {', '.join(POOLINGS)}")
        if recipe.version != FEATURES_VERSION:
            raise UsageError(f"{where}: the probe's features are of version {recipe.version}, this harness makes "
                             f"version {FEATURES_VERSION}: refit the probe with `harness judge fit`")
        return recipe

    def key(self) -> str:
        """What makes two feature vectors of one text interchangeable (the pooling aside: one pass makes both)."""
        d = {k: v for k, v in self.as_dict().items() if k not in ("pooling", "base")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def conversation(prompt: str, output: str) -> list[dict[str, str]]:
    """The judged conversation: the prompt as the user's turn (an HH-RLHF transcript, "\\n\\nHuman: ...
    \\n\\nAssistant: ...", as its turns, its last empty assistant turn dropped), then the output as the reply."""
    turns = transcript_turns(prompt)
    if turns:
        if turns[-1]["role"] == "assistant" and not turns[-1]["content"]:
            turns.pop()
        if turns:
            return [*turns, {"role": "assistant", "content": output}]
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


def resolve_base(spec: str) -> tuple[Path, str, Any]:
    """A probe base (NAME[:VARIANT], a GGUF variant): its file, the file's sha256 and its manifest."""
    from harness.variants import parse_spec, resolve_variant, variant_backend

    manifest, variants = parse_spec(spec)
    variant = variants[0] if ":" in spec else manifest.source_variant
    if variant_backend(variant) != "gguf":
        raise UsageError(f"--base {spec}: a probe reads hidden states through llama.cpp, and the ONNX export "
                         f"{variant} outputs logits and its KV cache only (no hidden states): name a GGUF variant "
                         f"(e.g. {manifest.name}:Q4_1)")
    vf = resolve_variant(manifest, variant)
    return vf.path, vf.sha256, manifest


def _cut(messages: list[dict[str, str]], limit: int) -> list[dict[str, str]]:
    return [{**m, "content": m["content"][:limit]} for m in messages]


class HiddenStates:
    """A base model in llama.cpp's embedding mode: pooled hidden states of judged conversations (loaded on first
    use, cached on disk). `features(prompt, output)` -> {pooling: vector} for every pooling."""

    def __init__(self, recipe: FeatureRecipe, model_path: Path, manifest: Any, *, n_threads: int = 0,
                 use_disk_cache: bool = True) -> None:
        self.recipe = recipe
        self.model_path = model_path
        self.manifest = manifest
        self.n_threads = n_threads
        self.use_disk_cache = use_disk_cache
        self._llm: Any = None
        self._format: Any = None
        self._batched: tuple[int, Any] | None = None  # (sequences, llama_cpp.Llama) for features_many
        self.load_s: float | None = None
        self.embed_s = 0.0  # seconds spent in the model (cache hits cost nothing)
        self.n_embedded = 0

    def _load(self) -> Any:
        if self._llm is not None:
            return self._llm
        from harness.backends.prompt_format import PromptFormat
        from harness.devices import physical_cores
        from harness.llama_runtime import _lib, open_llama, template_tokens

        lib = _lib()
        threads = self.n_threads or physical_cores()
        t0 = time.perf_counter()
        try:
            llm, _ = open_llama(model_path=str(self.model_path), n_ctx=self.recipe.n_ctx, n_batch=self.recipe.n_ctx,
                                n_ubatch=self.recipe.n_ctx, n_threads=threads, n_threads_batch=threads,
                                embedding=True, pooling_type=lib.LLAMA_POOLING_TYPE_NONE, verbose=False,
                                n_ctx_from="the probe's recipe (n_ctx)")
        except (ValueError, RuntimeError) as exc:
            raise UsageError(f"the base model {self.recipe.base} cannot embed: llama.cpp could not load "
                             f"{self.model_path.name} in embedding mode ({exc}): choose another --base") from exc
        if int(llm.n_embd()) <= 0:
            raise UsageError(f"the base model {self.recipe.base} cannot embed (no hidden state): choose another --base")
        bos, eos = template_tokens(llm)
        self._format = PromptFormat.for_model(self.manifest, llm.metadata.get("tokenizer.chat_template"),
                                              bos_token=bos, eos_token=eos, model_file=self.model_path.name)
        self._llm = llm
        self.load_s = time.perf_counter() - t0
        return llm

    def tokens(self, messages: list[dict[str, str]]) -> list[int]:
        """The conversation's tokens: the template's pieces as control tokens, the messages as plain text."""
        from harness.backends.prompt_format import chat_segments
        from harness.llama_runtime import tokenize_segments

        llm = self._load()
        fmt = self._format
        if fmt.uses_template:
            pieces = chat_segments(fmt.chat_template, messages, fmt.bos_token, fmt.eos_token, fmt.model_file)
            tokens = tokenize_segments(llm, pieces, add_bos=False)
        else:  # a base model: the user turns through the completion frame, the reply after it, all plain text
            users = "\n\n".join(m["content"] for m in messages[:-1])
            text = fmt.completion_template.format(prompt=users) + " " + messages[-1]["content"]
            tokens = tokenize_segments(llm, [(text, False)], add_bos=True)
        return tokens[: self.recipe.n_ctx]

    def _embed(self, tokens: list[int]) -> dict[str, np.ndarray]:
        import numpy as np

        from harness.llama_runtime import _lib

        llm = self._load()
        lib = _lib()
        t0 = time.perf_counter()
        llm._ctx.kv_cache_clear()
        llm._batch.reset()
        llm._batch.add_sequence(tokens, 0, True)
        try:
            llm._ctx.decode(llm._batch)
        except RuntimeError as exc:
            raise UsageError(f"the base model {self.recipe.base} cannot embed ({exc}): choose another --base") from exc
        n_embd = int(llm.n_embd())
        ptr = lib.llama_get_embeddings(llm._ctx.ctx)
        if not ptr:
            raise UsageError(f"the base model {self.recipe.base} cannot embed (llama.cpp returned no hidden states): "
                             "choose another --base")
        states = np.ctypeslib.as_array(ptr, shape=(len(tokens) * n_embd,)).reshape(len(tokens), n_embd)
        out = pooled(states)
        llm._batch.reset()
        self.embed_s += time.perf_counter() - t0
        self.n_embedded += 1
        return out

    def _batched_llm(self, batch_size: int) -> Any:
        """The base model in embedding mode for `batch_size` sequences at once, each in a stream of n_ctx cells."""
        if self._batched is None or self._batched[0] != batch_size:
            from harness.devices import physical_cores
            from harness.judging.llama_judge_batch import open_judge_context

            self._close_batched()
            t0 = time.perf_counter()
            try:
                llm = open_judge_context(str(self.model_path), n_ctx_per_sequence=self.recipe.n_ctx,
                                         n_sequences=batch_size, n_threads=self.n_threads or physical_cores(),
                                         n_ctx_from=f"the probe's recipe (n_ctx, x {batch_size} for --batch)",
                                         embedding=True, n_batch=self.recipe.n_ctx)
            except (ValueError, RuntimeError) as exc:
                raise UsageError(f"the base model {self.recipe.base} cannot embed {batch_size} texts at once: "
                                 f"llama.cpp could not load {self.model_path.name} ({exc}): use a smaller --batch") from exc
            self._batched = (batch_size, llm)
            self.load_s = (self.load_s or 0.0) + time.perf_counter() - t0
        return self._batched[1]

    def _embed_many(self, token_lists: list[list[int]], batch_size: int) -> list[dict[str, np.ndarray]]:
        """Every pooling of each token list, up to `batch_size` lists (and n_ctx tokens) per llama_decode."""
        from harness.judging.llama_judge_batch import embed_sequences

        llm = self._batched_llm(batch_size)
        out: list[dict[str, np.ndarray]] = []
        group: list[list[int]] = []

        def flush() -> None:
            t0 = time.perf_counter()
            try:
                states = embed_sequences(llm, group)
            except RuntimeError as exc:
                raise UsageError(f"the base model {self.recipe.base} cannot embed ({exc}): choose another --base") from exc
            out.extend(pooled(s) for s in states)
            self.embed_s += time.perf_counter() - t0
            self.n_embedded += len(group)
            group.clear()

        for tokens in token_lists:
            if group and (len(group) == batch_size or sum(map(len, group)) + len(tokens) > self.recipe.n_ctx):
                flush()
            group.append(tokens)
        if group:
            flush()
        return out

    def _cache_path(self, messages: list[dict[str, str]]) -> Path:
        from harness.cache import cache_dir

        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:32]
        return cache_dir() / "probe-features" / self.recipe.key() / key[:2] / f"{key}.npz"

    def _cached(self, path: Path) -> dict[str, np.ndarray] | None:
        import numpy as np

        if self.use_disk_cache and path.is_file():
            try:
                with np.load(path) as cached:
                    return {p: cached[p] for p in POOLINGS}
            except (OSError, KeyError, ValueError):
                pass  # a broken cache file is computed again
        return None

    def _save(self, path: Path, out: dict[str, np.ndarray]) -> None:
        import numpy as np

        if self.use_disk_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{time.perf_counter_ns()}.npz")
            np.savez(tmp, mean=out["mean"], last=out["last"])
            tmp.replace(path)

    def _checked_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        tokens = self.tokens(messages)
        if not tokens:
            raise UsageError(f"the base model {self.recipe.base} made no tokens of a conversation: choose another "
                             "--base")
        return tokens

    def features(self, prompt: str, output: str) -> dict[str, np.ndarray]:
        """Every pooling of the conversation's hidden states (from the disk cache when it has them)."""
        messages = _cut(conversation(prompt, output), self.recipe.max_message_chars)
        path = self._cache_path(messages)
        cached = self._cached(path)
        if cached is not None:
            return cached
        out = self._embed(self._checked_tokens(messages))
        self._save(path, out)
        return out

    def features_many(self, pairs: list[tuple[str, str]], batch_size: int) -> list[dict[str, np.ndarray]]:
        """`features` of each (prompt, output), in order, those not in the disk cache embedded `batch_size` at a time
        (batch_size 1: one at a time, as `features`)."""
        if batch_size <= 1:
            return [self.features(prompt, output) for prompt, output in pairs]
        messages = [_cut(conversation(p, o), self.recipe.max_message_chars) for p, o in pairs]
        paths = [self._cache_path(m) for m in messages]
        found = [self._cached(path) for path in paths]
        missing = [i for i, f in enumerate(found) if f is None]
        embedded = self._embed_many([self._checked_tokens(messages[i]) for i in missing], batch_size)
        for i, out in zip(missing, embedded, strict=True):
            self._save(paths[i], out)
            found[i] = out
        return [f for f in found if f is not None]

    def matrices(self, texts: list[tuple[str, str]], progress: Progress | None = None) -> dict[str, np.ndarray]:
        """Every pooling's matrix, one row per (prompt, output)."""
        import numpy as np

        progress = progress or NoProgress()
        progress.start(len(texts), f"hidden states of {self.recipe.base}")
        rows: dict[str, list[np.ndarray]] = {p: [] for p in POOLINGS}
        try:
            for prompt, output in texts:
                pooled = self.features(prompt, output)
                for p in POOLINGS:
                    rows[p].append(pooled[p])
                progress.advance(1)
        finally:
            progress.stop()
        return {p: np.vstack(r) if r else np.zeros((0, 0), dtype=np.float32) for p, r in rows.items()}

    def _close_batched(self) -> None:
        if self._batched is not None:
            self._batched[1].close()
            self._batched = None

    def close(self) -> None:
        self._close_batched()
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def pooled(states: np.ndarray) -> dict[str, np.ndarray]:
    """Every pooling of one text's hidden states (n_tokens x n_embd)."""
    import numpy as np

    return {"mean": states.mean(axis=0).astype(np.float32), "last": states[-1].astype(np.float32)}
