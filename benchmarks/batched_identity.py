"""Whether batched llama.cpp generation gives single-stream's greedy outputs, and where it does not, why.

No timing: a correctness count. One process, one model file, one plan of prompts (greedy). Single-stream
(`LlamaCppBackend`, one prompt after the other) is the reference; batched (`harness.backends.llama_batch.BatchedLlama`,
continuous batching) runs the same plan at each batch size N. Prints, per N:

  identical      the share of outputs byte-identical to single-stream's (text and finish reason)
  same tokens    the share whose generated tokens are the same (a text difference with the same tokens is a bug)

and for every output that differs: the first differing token position, the two tokens there, and single-stream's
logits at that position (its own prefix, evaluated alone): the gap between its top two candidates and the gap between
the token single-stream took and the one batched took. A small gap is a near-tie that another rounding flips
(numerics: llama.cpp computes a token alone in a micro-batch with other kernels than inside a prompt); a wide gap
is a bug.

    python benchmarks/batched_identity.py [--model smollm2-135m-instruct] [--variant Q4_1] [--prompts 32]
        [--max-tokens 64] [--batch 1,2,4,8,16] [--n-ctx N] [--threads N]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any

from harness.backends import Sampling, SequenceRequest
from harness.backends.llama_batch import BatchedLlama
from harness.backends.llama_cpp import LlamaCppBackend
from harness.devices import resolve_device
from harness.prompts import Prompt, load_set
from harness.variants import load_manifest, resolve_variant


@dataclass(frozen=True)
class Output:
    """One generation: its text, finish reason and generated tokens (no end-of-generation token)."""

    text: str
    finish_reason: str
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class Divergence:
    """Where a batched output first leaves single-stream's: the token position and both tokens there (None where
    one output ended), and single-stream's logits there: its top-two gap and its logit gap between the two tokens."""

    prompt_index: int
    position: int
    single_token: int | None
    batched_token: int | None
    top_two_gap: float | None
    taken_gap: float | None


def plan_prompts(count: int) -> list[Prompt]:
    """`count` prompts of the default set, spread over it (every category, harmful and benign)."""
    every = load_set("default")
    step = max(1, len(every) // max(1, count))
    return every[::step][:count]


def first_difference(a: tuple[int, ...], b: tuple[int, ...]) -> int | None:
    """The first position where two token sequences differ (the shorter one's length where one is a prefix of the
    other), None when they are equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def single_outputs(backend: LlamaCppBackend, prompts: list[Prompt], sampling: Sampling) -> list[Output]:
    import llama_cpp

    vocab = backend._llm._model.vocab
    outputs = []
    for p in prompts:
        tokens = [t for t in backend.stream(p.text, sampling) if not llama_cpp.llama_vocab_is_eog(vocab, t)]
        result = backend.finish()
        outputs.append(Output(result.output, result.finish_reason, tuple(tokens)))
    return outputs


def batched_outputs(generator: BatchedLlama, prompts: list[Prompt], sampling: Sampling) -> list[Output]:
    requests = [SequenceRequest(tuple(generator.prompt_tokens(p.text)), sampling) for p in prompts]
    results, _ = generator.run(requests)
    return [Output(r.text, r.finish_reason, r.tokens) for r in results]


def logits_after(backend: LlamaCppBackend, prompt_tokens: list[int], generated: tuple[int, ...]) -> Any:
    """Single-stream's logits for the token after a prompt and generated tokens, evaluated as `stream` evaluates them
    (the prompt at once from an empty cache, then one token at a time: a prefix evaluated at once rounds otherwise)."""
    import llama_cpp
    import numpy as np

    llm = backend._llm
    llm.reset()
    llm.eval(prompt_tokens)
    for token in generated:
        llm.eval((token,))
    row = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).copy()


def divergence(backend: LlamaCppBackend, index: int, prompt_tokens: list[int], single: Output,
               batched: Output) -> Divergence | None:
    """Where `batched` leaves `single`, with single-stream's logits there; None when the tokens are the same."""
    position = first_difference(single.tokens, batched.tokens)
    if position is None:
        return None
    logits = logits_after(backend, prompt_tokens, single.tokens[:position])
    top = sorted(logits.tolist(), reverse=True)[:2]
    s_tok = single.tokens[position] if position < len(single.tokens) else None
    b_tok = batched.tokens[position] if position < len(batched.tokens) else None
    taken = float(logits[s_tok] - logits[b_tok]) if s_tok is not None and b_tok is not None else None
    return Divergence(index, position, s_tok, b_tok, float(top[0] - top[1]), taken)


def describe(backend: LlamaCppBackend, d: Divergence) -> str:
    def name(token: int | None) -> str:
        return "(end)" if token is None else repr(backend._llm.detokenize([token]).decode("utf-8", "replace"))

    gaps = (f"top-two gap {d.top_two_gap:.5f}" if d.top_two_gap is not None else "") + (
        f", single - batched logit {d.taken_gap:.5f}" if d.taken_gap is not None else "")
    return (f"  prompt {d.prompt_index:3d}: token {d.position:3d}: single {name(d.single_token)} batched "
            f"{name(d.batched_token)}; {gaps}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--variant", default="Q4_1")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch", default="1,2,4,8,16", help="batch sizes, comma-separated")
    ap.add_argument("--n-ctx", type=int, default=0, help="context per sequence (default: the device profile's)")
    ap.add_argument("--threads", type=int, default=0, help="threads (default: the device profile's)")
    args = ap.parse_args()

    device, _ = resolve_device("auto")
    if args.n_ctx:
        device = replace(device, n_ctx=args.n_ctx)
    if args.threads:
        device = replace(device, threads=args.threads)
    manifest = load_manifest(args.model)
    variant = resolve_variant(manifest, args.variant)
    prompts = plan_prompts(args.prompts)
    sampling = Sampling(max_tokens=args.max_tokens)
    print(f"{variant.model}:{variant.variant} on {device.name}, {device.resolved_threads()} threads, n_ctx "
          f"{device.n_ctx} per sequence, {len(prompts)} prompts x up to {args.max_tokens} tokens, greedy")

    single = LlamaCppBackend()
    single.load(variant, device, manifest)
    reference = single_outputs(single, prompts, sampling)
    tokens = [single._tokens(p.text) for p in prompts]
    print(f"{'N':>4s} {'identical':>10s} {'same tokens':>12s}")
    for n in (int(x) for x in args.batch.split(",")):
        generator = BatchedLlama()
        generator.load(variant, device, manifest, n)
        outputs = batched_outputs(generator, prompts, sampling)
        generator.close()
        identical = sum((o.text, o.finish_reason) == (r.text, r.finish_reason) for o, r in zip(outputs, reference))
        same_tokens = sum(o.tokens == r.tokens for o, r in zip(outputs, reference))
        print(f"{n:4d} {identical / len(prompts):10.1%} {same_tokens / len(prompts):12.1%}", flush=True)
        for i, (r, o) in enumerate(zip(reference, outputs)):
            if o.tokens == r.tokens and (o.text, o.finish_reason) != (r.text, r.finish_reason):
                print(f"  prompt {i:3d}: the same tokens, another text or finish reason (a bug)")
            d = divergence(single, i, tokens[i], r, o)
            if d is not None:
                print(describe(single, d), flush=True)
    single.close()


if __name__ == "__main__":
    main()
