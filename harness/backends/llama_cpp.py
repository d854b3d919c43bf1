"""GGUF inference through llama-cpp-python.

The prompt is formatted by harness.backends.prompt_format (the GGUF's own chat
template, or a plain completion frame for base models, as the manifest says),
tokenized as llama.cpp does, and generated token by token. The KV cache is reset
before every sample, so each prompt is evaluated in full and samples are
independent. llama.cpp's own perf counters are read after every sample and
recorded next to the engine's wall-clock measurements.

Greedy decoding without penalties (temperature 0, repeat_penalty 1, the default
sampling) takes the argmax of the last logits row itself (`greedy_tokens`): the
token llama-cpp-python's `Llama.generate` picks there, without the per-token work
of its sampler chain, which copies the whole vocabulary into a candidate array
for every token (49,152 entries for SmolLM2: about 60 us a token, measured, of a
decode step of about 8 ms). Every other setting goes through `Llama.generate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from harness.backends.base import Backend, BackendResult, Sampling
from harness.backends.prompt_format import STOP_WINDOW_TOKENS, ModelInput, PromptFormat
from harness.errors import UsageError, require
from harness.llama_runtime import tokenize_segments

if TYPE_CHECKING:
    from harness.devices import DeviceProfile
    from harness.variants import ModelManifest, VariantFile


def open_gguf(variant: VariantFile, device: DeviceProfile, manifest: ModelManifest, *, n_sequences: int = 1,
              n_ctx_from: str | None = None) -> tuple[Any, PromptFormat, dict[str, Any]]:
    """The `llama_cpp.Llama` of a GGUF variant as the device profile says, its prompt format, and the load metadata
    worth recording. `n_sequences` > 1 makes one context for that many sequences decoded at once, each with the
    profile's n_ctx (harness.backends.llama_batch)."""
    lib = require("llama_cpp", "gguf", "GGUF inference")
    from harness.llama_runtime import open_llama, template_tokens

    threads = device.resolved_threads()
    try:
        llm, buffers = open_llama(
            model_path=str(variant.path),
            n_ctx=device.n_ctx * n_sequences,
            n_batch=device.n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=device.n_gpu_layers,
            verbose=False,
            n_ctx_from=n_ctx_from or f"device profile '{device.name}'",
            n_seq_max=n_sequences,
        )
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"llama.cpp could not load {variant.path} ({exc}): the file may be corrupt; re-derive it") from exc
    bos_text, eos_text = template_tokens(llm)
    try:
        fmt = PromptFormat.for_model(
            manifest, llm.metadata.get("tokenizer.chat_template"), model_file=variant.path.name,
            eos_token=eos_text, bos_token=bos_text)
    except UsageError:
        llm.close()
        raise
    return llm, fmt, {
        "threads": threads,
        "n_ctx": device.n_ctx,
        "n_batch": device.n_batch,
        "n_gpu_layers": device.n_gpu_layers,
        "chat_format": fmt.chat_format,
        "gpu_offload_supported": bool(lib.llama_supports_gpu_offload()),
        **buffers,
    }


def is_plain_greedy(sampling: Sampling) -> bool:
    """Whether llama-cpp-python's sampler chain for `sampling` is the greedy sampler alone: temperature 0 (a
    negative one samples) and no repeat penalty (its frequency and presence penalties are 0 in `Llama.generate`).
    top_k, top_p and min_p are not in the chain at temperature 0."""
    return sampling.temperature == 0.0 and sampling.repeat_penalty == 1.0


def greedy_tokens(llm: Any, lib: Any, tokens: list[int]) -> Iterator[int]:
    """Greedy decoding after `tokens`, one token at a time, without end: what `Llama.generate` yields with the
    greedy sampler alone (is_plain_greedy), which selects the first token of highest logit, as numpy's argmax
    does. The caller stops it; a token is evaluated only when the caller asks for the next one."""
    import numpy as np

    ctx = llm._ctx.ctx
    n_vocab = llm.n_vocab()
    llm.eval(tokens)
    while True:
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        token = int(logits.argmax())
        yield token
        llm.eval((token,))


def prompt_tokens(llm: Any, fmt: PromptFormat, prompt: ModelInput) -> list[int]:
    """The model input for one user prompt, as every llama.cpp path tokenizes it: a rendered chat template carries its
    own special tokens (and only it: the prompt is plain text); a completion frame gets the BOS."""
    return tokenize_segments(llm, fmt.segments(prompt), add_bos=not fmt.uses_template)


class LlamaCppBackend(Backend):
    name = "gguf"

    def __init__(self) -> None:
        self._lib = require("llama_cpp", "gguf", "GGUF inference")
        self._llm: Any = None
        self._format: PromptFormat | None = None
        self._last: BackendResult | None = None

    def version(self) -> str:
        return f"llama-cpp-python {self._lib.__version__}"

    def load(self, variant: VariantFile, device: DeviceProfile, manifest: ModelManifest) -> dict[str, Any]:
        self._llm, self._format, meta = open_gguf(variant, device, manifest)
        return meta

    def _tokens(self, prompt: ModelInput) -> list[int]:
        assert self._format is not None, "load() first"
        return prompt_tokens(self._llm, self._format, prompt)

    def system_folded(self, prompt: ModelInput) -> bool | None:
        return self._format.system_folded(prompt) if self._format is not None else None

    def stream(self, prompt: ModelInput, sampling: Sampling) -> Iterator[int]:
        llm, lib, fmt = self._llm, self._lib, self._format
        assert fmt is not None, "load() first"
        tokens = self._tokens(prompt)
        fmt.check_context(len(tokens), sampling.max_tokens, llm.n_ctx())
        llm.reset()
        llm.set_seed(sampling.seed)
        ctx = llm._ctx.ctx
        lib.llama_perf_context_reset(ctx)
        vocab = llm._model.vocab
        out: list[int] = []
        finish = "length"
        check_stops = bool(fmt.stops)
        generated = greedy_tokens(llm, lib, tokens) if is_plain_greedy(sampling) else llm.generate(
            tokens,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            reset=True,
        )
        for tok in generated:
            yield tok
            if lib.llama_vocab_is_eog(vocab, tok):
                finish = "stop"
                break
            out.append(tok)
            if check_stops and fmt.hit_stop(llm.detokenize(out[-STOP_WINDOW_TOKENS:]).decode("utf-8", "ignore")):
                finish = "stop"
                break
            if len(out) >= sampling.max_tokens:
                break
        perf = lib.llama_perf_context(ctx)
        text, stopped = fmt.trim(llm.detokenize(out, special=False).decode("utf-8", errors="replace"))
        if stopped:
            finish = "stop"
        timings = {
            "llama_t_p_eval_ms": perf.t_p_eval_ms,
            "llama_t_eval_ms": perf.t_eval_ms,
            "llama_n_p_eval": perf.n_p_eval,
            "llama_n_eval": perf.n_eval,
            "llama_prompt_tps": perf.n_p_eval / (perf.t_p_eval_ms / 1000) if perf.t_p_eval_ms > 0 else None,
            "llama_decode_tps": perf.n_eval / (perf.t_eval_ms / 1000) if perf.t_eval_ms > 0 else None,
        }
        self._last = BackendResult(text, finish, len(tokens), len(out), timings)

    def finish(self) -> BackendResult:
        assert self._last is not None, "finish() called before a stream completed"
        return self._last

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
