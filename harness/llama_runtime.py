"""Opening llama.cpp models safely: one place that builds `llama_cpp.Llama` objects.

llama.cpp's AMX kernels (used through its "extra buffer types" on CPUs with
AMX-INT8, e.g. Sapphire Rapids) crash with a segmentation fault in
`ggml_backend_amx_mul_mat` on the small models we use. When the llama.cpp
build reports AMX_INT8, models are loaded with extra buffer types disabled
(`use_extra_bufts = false`), which also turns off weight repacking; the load
metadata records this. Set HARNESS_LLAMA_EXTRA_BUFFERS=1 to keep them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from harness.errors import UsageError, require


def _lib() -> Any:
    return require("llama_cpp", "gguf", "GGUF inference")


def system_info() -> str:
    return str(_lib().llama_print_system_info().decode("utf-8", "replace"))


def extra_buffers_decision() -> tuple[bool, str]:
    """Whether to keep llama.cpp's extra buffer types, and why."""
    env = os.environ.get("HARNESS_LLAMA_EXTRA_BUFFERS")
    if env is not None:
        keep = env.strip().lower() in {"1", "true", "yes", "on"}
        return keep, f"HARNESS_LLAMA_EXTRA_BUFFERS={env}"
    if "AMX_INT8 = 1" in system_info():
        return False, "this llama.cpp build uses AMX, whose kernels crash on these models: extra buffer types off"
    return True, "default"


@contextmanager
def _default_params_override(function: str, fields: dict[str, Any]) -> Iterator[None]:
    """Within the block, llama.cpp's `function` (a default-params constructor) returns params with `fields` set."""
    low = _lib().llama_cpp
    original = getattr(low, function)

    def patched() -> Any:
        params = original()
        for k, v in fields.items():
            setattr(params, k, v)
        return params

    setattr(low, function, patched)
    try:
        yield
    finally:
        setattr(low, function, original)


def model_params_override(**fields: Any) -> AbstractContextManager[None]:
    """Within the block, llama_model_default_params() returns params with `fields` set."""
    return _default_params_override("llama_model_default_params", fields)


def context_params_override(**fields: Any) -> AbstractContextManager[None]:
    """Within the block, llama_context_default_params() returns params with `fields` set (e.g. `n_seq_max`, which
    `llama_cpp.Llama` does not take)."""
    return _default_params_override("llama_context_default_params", fields)


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / (1 << 30):.1f} GiB"


def _fitting_n_ctx(free_bytes: int, per_token: int, trained: Any) -> int | None:
    """A power-of-two n_ctx whose KV cache takes at most half the free memory, no longer than the model was trained
    on; None when not even 64 tokens fit."""
    fits = free_bytes // 2 // per_token
    if fits < 64:
        return None
    n = 1 << (fits.bit_length() - 1)
    return min(n, 1 << (trained.bit_length() - 1)) if isinstance(trained, int) and trained >= 64 else n


def context_error(model_path: str, n_ctx: int, n_ctx_from: str) -> UsageError:
    """What to say when llama.cpp loaded a model but could not make its context: almost always a KV cache (which
    grows with n_ctx) larger than the memory left. Names the n_ctx, the memory it needs and the fix."""
    import psutil

    from harness.variants.gguf import read_info

    try:
        info = read_info(Path(model_path))
    except UsageError:
        info = {}
    per_token = info.get("kv_bytes_per_token")
    free = int(psutil.virtual_memory().available)
    name = Path(model_path).name
    if not isinstance(per_token, int) or per_token <= 0:
        return UsageError(f"llama.cpp loaded {name} but could not make a context of n_ctx = {n_ctx} tokens (its KV "
                          f"cache grows with n_ctx; {_gib(free)} of memory is free): set a smaller n_ctx in {n_ctx_from}")
    fitting = _fitting_n_ctx(free, per_token, info.get("context_length"))
    hint = f", e.g. n_ctx = {fitting}" if fitting else " (and free some memory)"
    return UsageError(f"n_ctx = {n_ctx} is too large for this machine's memory: the KV cache of {name} needs about "
                      f"{_gib(per_token * n_ctx)} for it, and {_gib(free)} is free: set a smaller n_ctx in "
                      f"{n_ctx_from}{hint}")


def open_llama(*, n_ctx_from: str = "the device profile", n_seq_max: int = 1, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """A `llama_cpp.Llama(**kwargs)` with the safe buffer settings, and what was decided. A context llama.cpp
    cannot make (n_ctx too large for the memory) is a UsageError naming the n_ctx and `n_ctx_from`, where it is set;
    any other failure to load is raised as llama-cpp-python raised it. `n_seq_max` > 1 makes a context for that
    many sequences decoded at once, each with a KV cache of its own of n_ctx / n_seq_max cells."""
    lib = _lib()
    keep, why = extra_buffers_decision()
    sequences: AbstractContextManager[None] = (context_params_override(n_seq_max=n_seq_max) if n_seq_max != 1
                                               else nullcontext())
    try:
        with sequences:
            if keep:
                return lib.Llama(**kwargs), {"extra_buffer_types": True, "extra_buffer_types_reason": why}
            with model_params_override(use_extra_bufts=False):
                llm = lib.Llama(**kwargs)
    except ValueError as exc:
        if "llama_context" in str(exc):
            raise context_error(str(kwargs.get("model_path")), int(kwargs.get("n_ctx") or 0), n_ctx_from) from exc
        raise
    return llm, {"extra_buffer_types": False, "extra_buffer_types_reason": why}


def tokenize_segments(llm: Any, pieces: list[tuple[str, bool]], *, add_bos: bool) -> list[int]:
    """Tokens of (text, is_template) pieces (harness.backends.prompt_format.chat_segments): a template's own text
    with its special-token strings as control tokens, everything else (prompts, outputs, rubrics) as plain text.
    `add_bos` prepends the BOS token when the model's vocabulary asks for one."""
    tokens = list(llm.tokenize(b"", add_bos=True, special=False)) if add_bos else []
    for text, is_template in pieces:
        tokens += llm.tokenize(text.encode("utf-8"), add_bos=False, special=is_template)
    return tokens


def template_tokens(llm: Any) -> tuple[str, str]:
    """The BOS and EOS token texts a chat template is rendered with ("" when the model has none)."""
    model = llm._model
    eos, bos = llm.token_eos(), llm.token_bos()
    return (model.token_get_text(bos) if bos != -1 else "", model.token_get_text(eos) if eos != -1 else "")
