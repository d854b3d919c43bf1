"""The llama.cpp backend's plain greedy path (the argmax of the last logits row, without llama-cpp-python's sampler
chain) yields the tokens `Llama.generate` yields at temperature 0, and only plain greedy settings take it."""

from __future__ import annotations

from typing import Any

import pytest

from harness.backends import Sampling
from harness.backends.llama_cpp import is_plain_greedy

PROMPTS = ["Write a short poem about the sea.", "How do I pick a lock?", "List three prime numbers."]
MAX_TOKENS = 24


def test_only_plain_greedy_settings_skip_the_sampler_chain() -> None:
    assert is_plain_greedy(Sampling())
    assert is_plain_greedy(Sampling(top_k=5, top_p=0.5, min_p=0.2, seed=3))  # not in the chain at temperature 0
    assert not is_plain_greedy(Sampling(temperature=0.7))
    assert not is_plain_greedy(Sampling(temperature=-1.0))  # llama-cpp-python samples at a negative temperature
    assert not is_plain_greedy(Sampling(repeat_penalty=1.1))


@pytest.fixture(scope="module")
def backend() -> Any:
    pytest.importorskip("llama_cpp")
    from harness.backends.llama_cpp import LlamaCppBackend
    from harness.devices import resolve_device
    from harness.variants import parse_spec, resolve_variant

    manifest, _ = parse_spec("smollm2-135m-instruct")
    device, _ = resolve_device("auto")
    b = LlamaCppBackend()
    b.load(resolve_variant(manifest, manifest.source_variant), device, manifest)
    yield b
    b.close()


def _generate(backend: Any, prompt: str) -> list[int]:
    """What llama-cpp-python's own loop yields, stopped where the backend stops (end of generation or MAX_TOKENS)."""
    import llama_cpp

    llm = backend._llm
    llm.reset()
    out: list[int] = []
    for tok in llm.generate(backend._tokens(prompt), top_k=40, top_p=0.95, min_p=0.05, temp=0.0,
                            repeat_penalty=1.0, reset=True):
        out.append(tok)
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok) or len(out) >= MAX_TOKENS:
            break
    return out


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_path_yields_what_llama_generate_yields(backend: Any, prompt: str) -> None:
    streamed = list(backend.stream(prompt, Sampling(max_tokens=MAX_TOKENS)))
    result = backend.finish()
    assert streamed == _generate(backend, prompt)
    assert result.n_output_tokens == len([t for t in streamed if not backend._lib.llama_vocab_is_eog(
        backend._llm._model.vocab, t)])
    # llama.cpp evaluated the prompt and every streamed token but the last
    assert result.timings["llama_n_eval"] == len(streamed) - 1
