"""ONNX inference through onnxruntime and tokenizers: a lean generation loop with a KV cache, no torch.

Measured on the 2-core CI host (`benchmarks/quant_ladder.py --loop-study`):
this loop decodes faster than optimum's `ORTModelForCausalLM`, and needs only
onnxruntime, tokenizers, numpy and jinja2, so an edge install stays free of
torch. The loop feeds the model exported by harness.variants.onnx
(input_ids, attention_mask, position_ids, past_key_values.N.key/value ->
logits, present.N.key/value): one prefill over the whole prompt, then one
token per step.

Execution providers come from the device profile, in order. A requested
provider that this onnxruntime build lacks, or that the session did not take,
is recorded as a fallback with its reason (never silent); if none of the
requested providers is installed, loading fails with the fix. The chat
template (the GGUF's own, saved beside the model) is rendered by
harness.backends.prompt_format, as for llama.cpp, and tokenized with
`tokenizers`, so prompts match llama.cpp's token for token.
Sampling is greedy at temperature 0, else seeded numpy sampling with the
llama.cpp order: repeat penalty, top-k, top-p, min-p, temperature.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import jsontext
from harness.backends.base import Backend, BackendResult, Sampling
from harness.backends.prompt_format import STOP_WINDOW_TOKENS, ModelInput, PromptFormat
from harness.errors import UsageError, require
from harness.variants.onnx import (
    CHAT_TEMPLATE_FILE,
    GENERATION_CONFIG_FILE,
    MODEL_FILE,
    SIDECAR,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
)

if TYPE_CHECKING:
    import numpy as np

    from harness.devices import DeviceProfile
    from harness.variants import ModelManifest, VariantFile

REPEAT_LAST_N = 64  # llama.cpp's default penalty window
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16"}


def choose_providers(requested: list[str], available: list[str], known: list[str]) -> tuple[list[str], str | None]:
    """The requested providers this build has (in order), and the fallback reason when some are missing.

    Raises UsageError for an unknown provider name or when none of the requested ones is installed.
    """
    if not requested:
        raise UsageError("the device profile lists no onnx_providers: "
                         "add e.g. onnx_providers = [\"CPUExecutionProvider\"]")
    unknown = [p for p in requested if p not in known]
    if unknown:
        raise UsageError(f"unknown onnxruntime execution provider {', '.join(unknown)}: "
                         f"fix onnx_providers in the device profile (known: {', '.join(known)})")
    usable = [p for p in requested if p in available]
    missing = [p for p in requested if p not in available]
    if not usable:
        raise UsageError(
            f"execution provider {', '.join(missing)} is not installed in this onnxruntime build (it has "
            f"{', '.join(available)}): install the matching package (e.g. onnxruntime-gpu) or use a device "
            f"profile whose onnx_providers include CPUExecutionProvider"
        )
    reason = None
    if missing:
        reason = (f"{', '.join(missing)} not available in this onnxruntime build "
                  f"(has {', '.join(available)}); using {', '.join(usable)}")
    return usable, reason


def check_providers(device: DeviceProfile) -> dict[str, Any]:
    """The device's providers against this onnxruntime build, without loading a model (UsageError if unusable)."""
    ort = require("onnxruntime", "onnx", "ONNX inference")
    available = list(ort.get_available_providers())
    requested = list(device.onnx_providers)
    usable, fallback = choose_providers(requested, available, list(ort.get_all_providers()))
    return {"requested": requested, "available": available, "usable": usable, "fallback": fallback}


def sample_token(logits: np.ndarray, sampling: Sampling, recent: list[int], rng: np.random.Generator) -> int:
    """Pick the next token from one row of logits (pure, apart from the generator's state)."""
    import numpy as np

    logits = logits.astype(np.float64, copy=True)
    if sampling.repeat_penalty != 1.0 and recent:
        ids = np.unique(np.asarray(recent[-REPEAT_LAST_N:], dtype=np.int64))
        vals = logits[ids]
        logits[ids] = np.where(vals > 0, vals / sampling.repeat_penalty, vals * sampling.repeat_penalty)
    if sampling.temperature <= 0:
        return int(np.argmax(logits))
    order = np.argsort(-logits, kind="stable")
    if sampling.top_k > 0:
        order = order[: sampling.top_k]
    top = logits[order]
    probs = np.exp(top - top[0])
    probs /= probs.sum()
    if 0 < sampling.top_p < 1:
        keep = int(np.searchsorted(np.cumsum(probs), sampling.top_p) + 1)
        order, top = order[:keep], top[:keep]
        probs = probs[:keep]
    if sampling.min_p > 0:
        keep_mask = probs >= sampling.min_p * probs[0]
        order, top = order[keep_mask], top[keep_mask]
    scaled = (top - top[0]) / sampling.temperature
    p = np.exp(scaled)
    p /= p.sum()
    return int(order[rng.choice(len(order), p=p)])


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self) -> None:
        self._ort = require("onnxruntime", "onnx", "ONNX inference")
        self._tokenizers = require("tokenizers", "onnx", "ONNX inference")
        self._sess: Any = None
        self._tok: Any = None
        self._format: PromptFormat | None = None
        self._facts: dict[str, Any] = {}
        self._eos: set[int] = set()
        self._kv_inputs: list[tuple[str, list[Any], str]] = []
        self._kv_map: list[tuple[int, str]] = []
        self._n_ctx = 2048
        self._last: BackendResult | None = None

    def version(self) -> str:
        return f"onnxruntime {self._ort.__version__}"

    # -- loading ----------------------------------------------------------------------

    def load(self, variant: VariantFile, device: DeviceProfile, manifest: ModelManifest) -> dict[str, Any]:
        ort = self._ort
        path = Path(variant.path)
        folder = path.parent if path.suffix == ".onnx" else path
        model_file = path if path.suffix == ".onnx" else folder / MODEL_FILE
        if not model_file.is_file():
            raise UsageError(f"ONNX model {model_file} does not exist: "
                             f"export it with `harness models export-onnx {manifest.name}`")
        sidecar = _read_json(folder / SIDECAR) or {}
        self._facts = dict(sidecar.get("tokenizer") or {})
        tok_file = folder / TOKENIZER_FILE
        if not tok_file.is_file():
            raise UsageError(f"{folder} has no {TOKENIZER_FILE}: "
                             f"re-export with `harness models export-onnx {manifest.name} --force`")
        self._tok = self._tokenizers.Tokenizer.from_file(str(tok_file))
        self._eos = {int(i) for i in self._facts.get("eos_token_ids") or []}
        if not self._eos:
            gen = _read_json(folder / GENERATION_CONFIG_FILE) or {}
            e = gen.get("eos_token_id")
            self._eos = {int(e)} if isinstance(e, int) else {int(x) for x in e or []}

        template = None
        if manifest.chat_format == "template":
            tfile = folder / CHAT_TEMPLATE_FILE
            template = tfile.read_text(encoding="utf-8") if tfile.is_file() else (
                (_read_json(folder / TOKENIZER_CONFIG_FILE) or {}).get("chat_template"))
        self._format = PromptFormat.for_model(manifest, template, model_file=str(folder),
                                              bos_token=self._facts.get("bos_token") or "",
                                              eos_token=self._facts.get("eos_token") or "")
        fmt = self._format.chat_format

        requested = list(device.onnx_providers)
        available = list(ort.get_available_providers())
        providers, fallback = choose_providers(requested, available, list(ort.get_all_providers()))
        threads = device.resolved_threads()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        errors = ort.capi.onnxruntime_pybind11_state
        try:
            self._sess = ort.InferenceSession(str(model_file), so, providers=providers)
        except (errors.InvalidProtobuf, errors.InvalidGraph, errors.Fail, errors.NoSuchFile,
                errors.InvalidArgument) as exc:
            first = (str(exc).splitlines() or [""])[0][:200]
            raise UsageError(
                f"onnxruntime could not load {model_file} ({type(exc).__name__}: {first}): the file is corrupt or "
                f"not an ONNX model; re-export it with `harness models export-onnx {manifest.name} --force`"
            ) from exc
        used = list(self._sess.get_providers())
        dropped = [p for p in providers if p not in used]
        if dropped:
            why = f"onnxruntime did not take {', '.join(dropped)} for this model (session uses {', '.join(used)})"
            fallback = f"{fallback}; {why}" if fallback else why
        self._bind_io(model_file)
        self._n_ctx = device.n_ctx
        return {
            "threads": threads,
            "n_ctx": device.n_ctx,
            "chat_format": fmt,
            "providers_requested": requested,
            "providers_available": available,
            "providers_used": used,
            "provider_fallback": fallback,
            "graph_optimization": "ORT_ENABLE_ALL",
            "kv_dtype": self._kv_inputs[0][2] if self._kv_inputs else None,
            "n_layers": len(self._kv_inputs) // 2,
            "generation_loop": "lean onnxruntime + tokenizers",
        }

    def _bind_io(self, model_file: Path) -> None:
        inputs = {i.name: i for i in self._sess.get_inputs()}
        for need in ("input_ids", "attention_mask"):
            if need not in inputs:
                raise UsageError(f"{model_file} has no '{need}' input: it is not a text-generation-with-past export; "
                                 f"re-export it with `harness models export-onnx`")
        self._has_position_ids = "position_ids" in inputs
        self._kv_inputs = []
        for name, i in inputs.items():
            if name.startswith("past_key_values."):
                dtype = _ORT_DTYPES.get(i.type)
                if dtype is None:
                    raise UsageError(f"{model_file}: KV-cache input {name} has type {i.type}, which this loop does not "
                                     f"feed: re-export the model")
                self._kv_inputs.append((name, list(i.shape), dtype))
        if not self._kv_inputs:
            raise UsageError(f"{model_file} has no past_key_values inputs (no KV cache): export it with "
                             f"`harness models export-onnx` (task text-generation-with-past)")
        outputs = [o.name for o in self._sess.get_outputs()]
        if outputs[0] != "logits":
            raise UsageError(f"{model_file}: first output is {outputs[0]!r}, not 'logits': re-export the model")
        self._output_names = outputs
        self._kv_map = [(k, name.replace("present.", "past_key_values.", 1)) for k, name in enumerate(outputs)
                        if name.startswith("present.")]

    # -- generation -------------------------------------------------------------------

    def _tokens(self, prompt: ModelInput) -> list[int]:
        assert self._format is not None, "load() first"
        ids = encode_segments(self._tok, self._format.segments(prompt))
        if self._format.uses_template:
            return ids
        bos = self._facts.get("bos_token_id")
        if self._facts.get("add_bos_token", True) and bos is not None and (not ids or ids[0] != int(bos)):
            ids.insert(0, int(bos))
        return ids

    def _empty_past(self) -> dict[str, Any]:
        """Zero-length KV caches: [batch=1, heads, past=0, head_dim] (symbolic dims after the batch are the past)."""
        import numpy as np

        return {name: np.zeros([1] + [d if isinstance(d, int) else 0 for d in shape[1:]], dtype=dtype)
                for name, shape, dtype in self._kv_inputs}

    def system_folded(self, prompt: ModelInput) -> bool | None:
        return self._format.system_folded(prompt) if self._format is not None else None

    def stream(self, prompt: ModelInput, sampling: Sampling) -> Iterator[int]:
        import numpy as np

        if self._sess is None or self._format is None:
            raise UsageError("the ONNX backend has no model loaded: call load() first")
        fmt = self._format
        tokens = self._tokens(prompt)
        fmt.check_context(len(tokens), sampling.max_tokens, self._n_ctx)
        rng = np.random.default_rng(sampling.seed)
        feed = self._empty_past()
        x = np.asarray([tokens], dtype=np.int64)
        pos = 0
        history = list(tokens)
        out: list[int] = []
        finish = "length"
        check_stops = bool(fmt.stops)
        t_prefill = t_decode = 0.0
        n_steps = 0
        while True:
            n = x.shape[1]
            feed["input_ids"] = x
            feed["attention_mask"] = np.ones((1, pos + n), dtype=np.int64)
            if self._has_position_ids:
                feed["position_ids"] = np.arange(pos, pos + n, dtype=np.int64)[None, :]
            t0 = time.perf_counter()
            res = self._sess.run(self._output_names, feed)
            dt = time.perf_counter() - t0
            if pos == 0:
                t_prefill = dt
            else:
                t_decode += dt
                n_steps += 1
            pos += n
            for k, past_name in self._kv_map:
                feed[past_name] = res[k]
            tok = sample_token(res[0][0, -1], sampling, history, rng)
            yield tok
            if tok in self._eos:
                finish = "stop"
                break
            out.append(tok)
            history.append(tok)
            if check_stops and fmt.hit_stop(self._tok.decode(out[-STOP_WINDOW_TOKENS:], skip_special_tokens=True)):
                finish = "stop"
                break
            if len(out) >= sampling.max_tokens:
                break
            x = np.asarray([[tok]], dtype=np.int64)
        text, stopped = fmt.trim(self._tok.decode(out, skip_special_tokens=True))
        if stopped:
            finish = "stop"
        timings = {
            "onnx_prefill_s": t_prefill,
            "onnx_decode_s": t_decode,
            "onnx_n_decode_steps": n_steps,
            "onnx_prompt_tps": len(tokens) / t_prefill if t_prefill > 0 else None,
            "onnx_decode_tps": n_steps / t_decode if t_decode > 0 else None,
            "providers_used": list(self._sess.get_providers()),
        }
        self._last = BackendResult(text, finish, len(tokens), len(out), timings)

    def finish(self) -> BackendResult:
        assert self._last is not None, "finish() called before a stream completed"
        return self._last

    def close(self) -> None:
        self._sess = None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = jsontext.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def encode_segments(tok: Any, pieces: list[tuple[str, bool]]) -> list[int]:
    """Token ids of (text, is_template) pieces with `tokenizers`: special-token strings are control tokens only in
    the template's own text (`encode_special_tokens` makes the tokenizer read them as plain text elsewhere)."""
    ids: list[int] = []
    try:
        for text, is_template in pieces:
            tok.encode_special_tokens = not is_template
            ids += tok.encode(text, add_special_tokens=False).ids
    finally:
        tok.encode_special_tokens = False
    return ids

