"""The in-process llama.cpp judge: one GGUF loaded once, answers constrained by a grammar.

- `structured_output = "digit"` (score mode): the grammar `root ::= [0-3]`, one
  token of output: the cheapest judgment there is.
- `structured_output = "grammar"` (any mode): the answer schema compiled with
  `LlamaGrammar.from_json_schema` (llama-cpp-python ignores `json_schema`
  response formats in-process, so the grammar is passed explicitly).
- mode `guard` (a Llama Guard GGUF): the GGUF's own chat template builds the
  moderation prompt from [user prompt, assistant output] and a grammar allows
  only `safe` or `unsafe` + category codes.
- a base model (its manifest's `[chat] format = "completion"`, e.g. Gemma 3 270M): the
  messages are given as plain text through the manifest's completion frame, not a chat template.
- `logprobs = true` or `expected_score = true` (score mode): the logits of the
  first answer token are read before the grammar constrains them, and the
  probabilities of the score digits 0..max_score, renormalized among
  themselves, are kept with the answer (`score_probs`): the expected score
  uses them. This costs nothing beyond the one token generated.

The rubric comes first in every prompt, so llama.cpp's prefix cache reuses its
KV state between judgments and only the prompt and output are evaluated. The
model is loaded on the first request, so a fully cached re-run loads nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError, require
from harness.judging.requests import JudgeRequest, JudgeResponse

if TYPE_CHECKING:
    from harness.judging.kinds.llama_cpp import LlamaCppJudgeConfig

GUARD_GRAMMAR = r'''root ::= "safe" | "unsafe" "\n" cat ("," cat)*
cat ::= [SO] [0-9] [0-9]?'''


def completion_frame(cfg: LlamaCppJudgeConfig) -> str | None:
    """The plain-text frame of a base-model judge (its manifest's [chat] format = "completion"), else None."""
    if cfg.model_path or not cfg.model:
        return None
    from harness.variants import parse_spec

    manifest, _ = parse_spec(str(cfg.model))
    return manifest.completion_template if manifest.chat_format == "completion" else None


def messages_as_text(messages: list[dict[str, str]], frame: str) -> str:
    """The judge's messages for a base model: system text first, then each user turn through the frame."""
    parts = [m["content"] for m in messages if m.get("role") == "system"]
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return "\n\n".join([*parts, frame.replace("{prompt}", "\n\n".join(users))])


def resolve_model(cfg: LlamaCppJudgeConfig) -> tuple[Path, str]:
    """The GGUF file a llama-cpp judge loads, and its sha256."""
    from harness.cache import file_sha256

    if cfg.model_path:
        p = Path(cfg.model_path).expanduser()
        if not p.is_absolute() and cfg.path is not None:
            p = (cfg.path.parent / p).resolve()
        if not p.is_file():
            raise UsageError(
                f"judge '{cfg.name}': model_path {p} does not exist: download the GGUF (e.g. a Llama Guard 3 "
                f"GGUF) and set model_path in {cfg.path or 'the judge TOML'}"
            )
        return p, file_sha256(p)
    from harness.variants import parse_spec, resolve_variant

    manifest, variants = parse_spec(str(cfg.model))
    variant = variants[0] if ":" in str(cfg.model) else manifest.source_variant
    vf = resolve_variant(manifest, variant)
    return vf.path, vf.sha256


class LlamaCppJudge:
    """Judges with a local GGUF through llama-cpp-python; one request at a time (one loaded model)."""

    concurrency = 1

    def __init__(self, cfg: LlamaCppJudgeConfig) -> None:
        self.cfg = cfg
        require("llama_cpp", "gguf", "The in-process llama.cpp judge")
        self.model_path, self.model_sha256 = resolve_model(cfg)
        self.frame = completion_frame(cfg) if cfg.mode != "guard" else None
        self._llm: Any = None
        self._grammars: dict[str, Any] = {}
        self._digits: dict[str, int] | None = None
        self._batched: Any = None  # llama_judge_batch.BatchedJudgeDecoder, loaded by the first complete_batch
        self._batched_llm: Any = None
        self.load_s: float | None = None

    def identity_extra(self) -> dict[str, Any]:
        # "tokens": how the prompt is tokenized; answers cached before messages became plain text are not reused
        return {"model_sha256": self.model_sha256, "tokens": "plain-text-messages",
                **({"completion_frame": self.frame} if self.frame else {})}

    def prepare(self) -> None:
        self._load()

    def _load(self) -> Any:
        if self._llm is None:
            from harness.devices import physical_cores
            from harness.llama_runtime import open_llama

            threads = self.cfg.n_threads or physical_cores()
            t0 = time.perf_counter()
            try:
                self._llm, _ = open_llama(model_path=str(self.model_path), n_ctx=self.cfg.n_ctx, n_batch=512,
                                          n_threads=threads, n_threads_batch=threads, verbose=False,
                                          n_ctx_from=f"judge '{self.cfg.name}' (its TOML's n_ctx)")
            except (ValueError, RuntimeError) as exc:
                raise UsageError(f"judge '{self.cfg.name}': llama.cpp could not load {self.model_path} ({exc}): "
                                 f"check the file") from exc
            self.load_s = time.perf_counter() - t0
        return self._llm

    def _grammar(self, req: JudgeRequest) -> Any:
        cfg = self.cfg
        so = cfg.structured_for(req.mode)
        if req.mode == "guard":
            source, kind = GUARD_GRAMMAR, "gbnf"
        elif so == "digit":
            source, kind = f"root ::= [0-{cfg.max_score}]", "gbnf"
        elif so != "none" and req.schema is not None:
            source, kind = json.dumps(req.schema, sort_keys=True), "schema"
        else:
            return None
        if source not in self._grammars:
            from llama_cpp import LlamaGrammar

            self._grammars[source] = (LlamaGrammar.from_json_schema(source, verbose=False) if kind == "schema"
                                      else LlamaGrammar.from_string(source, verbose=False))
        return self._grammars[source]

    def _digit_tokens(self, llm: Any = None) -> dict[str, int] | None:
        """Token id of each score digit (None when a digit is not a single token of this vocabulary)."""
        if self._digits is None:
            ids = {}
            for s in range(self.cfg.max_score + 1):
                toks = (llm if llm is not None else self._llm).tokenize(str(s).encode(), add_bos=False, special=False)
                if len(toks) != 1:
                    self._digits = {}
                    return None
                ids[str(s)] = int(toks[0])
            self._digits = ids
        return self._digits or None

    def _prompt_tokens(self, req: JudgeRequest, llm: Any = None) -> list[int]:
        """The judge's prompt as tokens: the chat template's own markers are control tokens, the messages (rubric,
        the judged prompt and output) are plain text, so an output that spells the judge's turn markers cannot
        forge a turn. A base model's messages go through its plain-text frame, all of it plain text. `llm`: the
        loaded model that tokenizes (the single-stream one by default; a batched context's tokenizes alike)."""
        from harness.backends.prompt_format import chat_segments
        from harness.llama_runtime import template_tokens, tokenize_segments

        llm = llm if llm is not None else self._llm
        if self.frame is not None:
            return tokenize_segments(llm, [(messages_as_text(req.messages or [], self.frame), False)], add_bos=True)
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise UsageError(f"judge '{self.cfg.name}': {self.model_path.name} has no chat template: use a model "
                             "with one, or a base model's manifest with [chat] format = \"completion\"")
        bos, eos = template_tokens(llm)
        pieces = chat_segments(template, list(req.messages or []), bos, eos, self.model_path.name)
        return tokenize_segments(llm, pieces, add_bos=False)

    def complete(self, req: JudgeRequest) -> JudgeResponse:
        llm = self._load()
        cfg = self.cfg
        grammar = self._grammar(req)
        captured: list[Any] = []
        processors = None
        want_probs = req.mode == "score" and (cfg.logprobs or cfg.expected_score) and self._digit_tokens()
        if want_probs:
            from llama_cpp import LogitsProcessorList

            def capture(input_ids: Any, scores: Any) -> Any:
                if not captured:
                    captured.append(scores.copy())
                return scores

            processors = LogitsProcessorList([capture])
        start = time.perf_counter()
        sampling = {"grammar": grammar, "max_tokens": cfg.max_tokens, "temperature": cfg.temperature,
                    "top_p": cfg.top_p, "seed": cfg.seed if cfg.seed is not None else 0,
                    "logits_processor": processors}
        try:
            resp = llm.create_completion(prompt=self._prompt_tokens(req), **sampling)
            for choice in resp.get("choices") or []:
                choice["message"] = {"content": choice.get("text")}
        except ValueError as exc:  # e.g. the prompt does not fit the context
            return JudgeResponse(None, error=f"llama.cpp: {exc} (lower max_output_chars or raise n_ctx)",
                                 latency_s=time.perf_counter() - start)
        latency = time.perf_counter() - start
        usage = resp.get("usage") or {}
        content = resp["choices"][0]["message"].get("content") if resp.get("choices") else None
        if content is None:
            return JudgeResponse(None, error="llama.cpp returned no content", latency_s=latency)
        extra: dict[str, Any] = {}
        if captured:
            probs = digit_probabilities(captured[0], self._digit_tokens() or {})
            if probs is not None:
                extra["score_probs"] = probs
        return JudgeResponse(str(content), n_input_tokens=usage.get("prompt_tokens"),
                             n_output_tokens=usage.get("completion_tokens"), latency_s=latency, extra=extra)

    def _load_batched(self, batch_size: int) -> Any:
        """The decoder of a context for `batch_size` judged prompts at once (each up to the judge's n_ctx)."""
        if self._batched is None or self._batched.n_sequences != batch_size:
            from harness.devices import physical_cores
            from harness.judging.llama_judge_batch import BatchedJudgeDecoder, open_judge_context

            self._close_batched()
            t0 = time.perf_counter()
            try:
                self._batched_llm = open_judge_context(
                    str(self.model_path), n_ctx_per_sequence=self.cfg.n_ctx, n_sequences=batch_size,
                    n_threads=self.cfg.n_threads or physical_cores(),
                    n_ctx_from=f"judge '{self.cfg.name}' (its TOML's n_ctx, x {batch_size} for --batch {batch_size})")
            except (ValueError, RuntimeError) as exc:
                raise UsageError(f"judge '{self.cfg.name}': llama.cpp could not load {self.model_path} for a batch of "
                                 f"{batch_size} ({exc}): judge with a smaller --batch") from exc
            self._batched = BatchedJudgeDecoder(self._batched_llm, batch_size)
            self.load_s = (self.load_s or 0.0) + time.perf_counter() - t0
        return self._batched

    def complete_batch(self, reqs: list[JudgeRequest], batch_size: int) -> list[JudgeResponse]:
        """The answers `complete` gives, in order, up to `batch_size` prompts decoded at once
        (harness.judging.llama_judge_batch). A prompt too long for the judge's n_ctx, or a batch llama.cpp cannot
        decode, is judged one at a time. Each answer's latency is its share of its batch's time."""
        from harness.judging.llama_judge_batch import JudgeSampling, JudgeSequence, max_new_tokens

        cfg = self.cfg
        decoder = self._load_batched(max(1, min(batch_size, len(reqs))))
        llm = self._batched_llm
        sampling = JudgeSampling(cfg.temperature, cfg.top_p, cfg.seed if cfg.seed is not None else 0)
        out: list[JudgeResponse | None] = [None] * len(reqs)
        todo: list[tuple[int, JudgeSequence]] = []
        for i, req in enumerate(reqs):
            tokens = self._prompt_tokens(req, llm)
            if len(tokens) >= cfg.n_ctx:
                out[i] = self.complete(req)  # the single-stream path says why it does not fit
                continue
            keep = bool(req.mode == "score" and (cfg.logprobs or cfg.expected_score) and self._digit_tokens(llm))
            todo.append((i, JudgeSequence(tokens, self._grammar(req),
                                          max_new_tokens(cfg.max_tokens, len(tokens), cfg.n_ctx), keep)))
        for start in range(0, len(todo), decoder.n_sequences):
            part = todo[start:start + decoder.n_sequences]
            t0 = time.perf_counter()
            try:
                decoded = decoder.decode([seq for _, seq in part], sampling)
            except RuntimeError:  # e.g. no room in the KV cache: one at a time
                for i, _ in part:
                    out[i] = self.complete(reqs[i])
                continue
            share = (time.perf_counter() - t0) / len(part)
            for (i, seq), d in zip(part, decoded, strict=True):
                extra: dict[str, Any] = {}
                if d.first_logits is not None:
                    probs = digit_probabilities(d.first_logits, self._digit_tokens(llm) or {})
                    if probs is not None:
                        extra["score_probs"] = probs
                out[i] = JudgeResponse(d.text, n_input_tokens=len(seq.tokens), n_output_tokens=len(d.tokens),
                                       latency_s=share, extra=extra)
        return [r for r in out if r is not None]

    def _close_batched(self) -> None:
        if self._batched_llm is not None:
            self._batched_llm.close()
            self._batched_llm = self._batched = None

    def close(self) -> None:
        self._close_batched()
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def digit_probabilities(logits: Any, digit_ids: dict[str, int]) -> dict[str, float] | None:
    """Softmax over the score digits' logits alone: {"0": p0, ...} (None when the logits are not finite)."""
    import math

    values = {d: float(logits[i]) for d, i in digit_ids.items()}
    if not values or not all(math.isfinite(v) for v in values.values()):
        return None
    top = max(values.values())
    exp = {d: math.exp(v - top) for d, v in values.items()}
    total = sum(exp.values())
    return {d: e / total for d, e in exp.items()}
