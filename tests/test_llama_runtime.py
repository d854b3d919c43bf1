"""Opening llama.cpp models (harness.llama_runtime): a context llama.cpp cannot make is reported as an n_ctx too
large for the memory (which n_ctx, what its KV cache needs, where to set a smaller one), not as a corrupt file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.errors import UsageError
from harness.variants.gguf import kv_bytes_per_token, read_info


def _smollm2() -> Path:
    from harness.variants import load_manifest, resolve_variant

    return resolve_variant(load_manifest("smollm2-135m-instruct"), "Q4_1").path


def test_kv_bytes_per_token_hand_worked() -> None:
    """SmolLM2-135M: 30 layers, width 576, 9 heads of 64, 3 KV heads: keys and values 3 x (64 + 64) f16 values
    (2 bytes) a layer = 768 bytes, 23040 bytes per token over 30 layers."""
    assert kv_bytes_per_token(30, 576, 9, 3) == 23040
    assert kv_bytes_per_token(30, 576, 9, None) == 30 * 2 * 9 * 128  # no KV head count: one per head
    assert kv_bytes_per_token(2, 576, [9, 9], [3, 1], 64, 32) == 2 * (3 + 1) * 96  # per-layer head counts
    assert kv_bytes_per_token(None, 576, 9, 3) is None and kv_bytes_per_token(30, 576, "x", 3) is None
    assert read_info(_smollm2())["kv_bytes_per_token"] == 23040


def test_a_context_llama_cpp_cannot_make_names_the_n_ctx(monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    from harness import llama_runtime

    def refuse(**kwargs: Any) -> Any:
        raise ValueError("Failed to create llama_context")

    monkeypatch.setattr(llama_cpp, "Llama", refuse)
    monkeypatch.setenv("HARNESS_LLAMA_EXTRA_BUFFERS", "1")
    path = _smollm2()
    with pytest.raises(UsageError) as e:
        llama_runtime.open_llama(model_path=str(path), n_ctx=1 << 24, n_ctx_from="device profile 'tiny'")
    msg = str(e.value)
    # 2^24 tokens x 23040 bytes = 360 GiB
    assert msg.startswith(f"n_ctx = {1 << 24} is too large for this machine's memory: the KV cache of {path.name} "
                          "needs about 360.0 GiB for it, and ")
    assert "set a smaller n_ctx in device profile 'tiny', e.g. n_ctx = " in msg and "corrupt" not in msg
    assert llama_runtime._fitting_n_ctx(1 << 30, 23040, 8192) == 8192  # 23k tokens fit in half a GiB: the trained 8k
    assert llama_runtime._fitting_n_ctx(100 << 20, 23040, 8192) == 2048  # 2275 tokens fit in 50 MiB
    assert llama_runtime._fitting_n_ctx(2 << 20, 23040, 8192) is None  # 45 tokens: not even 64

    def broken(**kwargs: Any) -> Any:
        raise ValueError(f"Failed to load model from file: {kwargs['model_path']}")

    monkeypatch.setattr(llama_cpp, "Llama", broken)  # any other failure is the caller's to word
    with pytest.raises(ValueError, match="Failed to load model"):
        llama_runtime.open_llama(model_path=str(path), n_ctx=2048)
