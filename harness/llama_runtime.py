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
from contextlib import contextmanager
from typing import Any

from harness.errors import require


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
def model_params_override(**fields: Any) -> Iterator[None]:
    """Within the block, llama_model_default_params() returns params with `fields` set."""
    low = _lib().llama_cpp
    original = low.llama_model_default_params

    def patched() -> Any:
        params = original()
        for k, v in fields.items():
            setattr(params, k, v)
        return params

    low.llama_model_default_params = patched
    try:
        yield
    finally:
        low.llama_model_default_params = original


def open_llama(**kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """A `llama_cpp.Llama(**kwargs)` with the safe buffer settings, and what was decided."""
    lib = _lib()
    keep, why = extra_buffers_decision()
    if keep:
        return lib.Llama(**kwargs), {"extra_buffer_types": True, "extra_buffer_types_reason": why}
    with model_params_override(use_extra_bufts=False):
        llm = lib.Llama(**kwargs)
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
