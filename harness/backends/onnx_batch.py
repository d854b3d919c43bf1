"""Batched generation through onnxruntime: several sequences decoded at once along the model's batch dimension.

The model is the one `OnnxBackend` loads (harness.backends.onnx: same session, providers, prompt format and
tokenizer). Sequences of different lengths share one KV cache of shape [batch, heads, past, head_dim], left-padded:
each row's attention mask is 0 on its padding and its position ids count only its own tokens. A new prompt is
prefilled alone (exactly as single-stream prefills it), then its cache joins the batch, padded on the left to the
batch's length (or the batch's to its own); every step then decodes one token of every row in one session run. A
finished row leaves the batch at once, and columns that only padding still holds are dropped, so waiting prompts
take its place: continuous batching.

Each row samples with its own settings and seed through `onnx.sample_token` (a generator seeded per sequence, as
single-stream seeds it) and stops as single-stream does. Batched matrix products and padded attention can change a
logit in a late decimal, and so, rarely, a token (`benchmarks/batched_sweep.py` measures how often). Dynamically
quantized (int8) exports are another matter: each MatMul quantizes its input activations with one scale over the
whole tensor, that is over every row of the batch, so a row's neighbours change its arithmetic (measured on the
embedded model, 8 prompts x 16 tokens, greedy: fp32 8 of 8 outputs identical to single-stream at N = 2 and 4, int8
6 of 8).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.backends.base import BatchResults, BatchThroughput, SequenceRequest, SequenceResult
from harness.backends.onnx import OnnxBackend, sample_token
from harness.backends.prompt_format import STOP_WINDOW_TOKENS, ModelInput
from harness.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from harness.devices import DeviceProfile
    from harness.variants import ModelManifest, VariantFile


def batches_identically(variant: VariantFile) -> bool:
    """Whether batched outputs of this export are expected to be single-stream's: not for dynamically quantized
    (int8) exports, whose activation scales span the whole batch (see the module docstring)."""
    return "int8" not in variant.variant.lower()


@dataclass
class _Row:
    """A request being generated in one row of the batch."""

    index: int
    request: SequenceRequest
    rng: Any
    out: list[int] = field(default_factory=list)

    @property
    def n_cached(self) -> int:
        """Tokens of this row in the KV cache (its next position)."""
        return len(self.request.tokens) + len(self.out) - 1

    def history(self) -> list[int]:
        return list(self.request.tokens) + self.out


class BatchedOnnx(BatchResults):
    """An ONNX model loaded for batched generation; `generate` yields each sequence as it finishes."""

    def __init__(self) -> None:
        self._backend = OnnxBackend()
        self._batch_size = 0
        self._last: BatchThroughput | None = None

    def version(self) -> str:
        return self._backend.version()

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def load(self, variant: VariantFile, device: DeviceProfile, manifest: ModelManifest,
             batch_size: int) -> dict[str, Any]:
        if batch_size < 1:
            raise UsageError(f"a batch size of {batch_size}: it must be at least 1 (1 = single-stream)")
        meta = self._backend.load(variant, device, manifest)
        self._batch_size = batch_size
        return {**meta, "batch_size": batch_size}

    def prompt_tokens(self, prompt: ModelInput) -> list[int]:
        """The model input for one user prompt, exactly as single-stream generation makes it."""
        return self._backend._tokens(prompt)

    def system_folded(self, prompt: ModelInput) -> bool | None:
        """Whether the loaded model's prompt format folds this input's system turn into its first user turn."""
        return self._backend.system_folded(prompt)

    def check_request(self, request: SequenceRequest) -> None:
        """A UsageError when this request cannot be generated (no tokens, or too long for the context)."""
        fmt = self._backend._format
        if self._backend._sess is None or fmt is None:
            raise UsageError("the ONNX backend has no model loaded: call load() first")
        if not request.tokens:
            raise UsageError("the prompt has no tokens: there is nothing to generate from")
        fmt.check_context(len(request.tokens), request.sampling.max_tokens, self._backend._n_ctx)

    def generate(self, requests: Sequence[SequenceRequest]) -> Iterator[SequenceResult]:
        """Generate for every request, at most `batch_size` at once, yielding each as it finishes (not in order).
        Every prompt is checked against the context before anything runs."""
        backend = self._backend
        fmt = backend._format
        if backend._sess is None or fmt is None:
            raise UsageError("the ONNX backend has no model loaded: call load() first")
        for i, request in enumerate(requests):
            if not request.tokens:
                raise UsageError(f"prompt {i + 1} of the batch has no tokens: there is nothing to generate from")
            try:
                fmt.check_context(len(request.tokens), request.sampling.max_tokens, backend._n_ctx)
            except UsageError as exc:
                raise UsageError(f"prompt {i + 1} of the batch: {exc}") from None
        self._last = None
        run = _OnnxBatchRun(backend, self._batch_size, requests)
        yield from run.results()
        self._last = run.throughput()

    def close(self) -> None:
        self._backend.close()


class _OnnxBatchRun:
    """One continuous-batching pass over a list of requests."""

    def __init__(self, backend: OnnxBackend, batch_size: int, requests: Sequence[SequenceRequest]) -> None:
        import numpy as np

        self._np = np
        self._b = backend
        self._fmt = backend._format
        self._batch_size = batch_size
        self._requests = requests
        self._waiting = list(range(len(requests)))[::-1]
        self._rows: list[_Row] = []
        self._past: dict[str, np.ndarray] = {}
        self._mask = np.zeros((0, 0), dtype=np.int64)
        self._n_runs = 0
        self._n_generated = 0
        self._busy_s = 0.0

    def results(self) -> Iterator[SequenceResult]:
        while self._waiting or self._rows:
            started = time.perf_counter()
            done = self._admit()
            if self._rows:
                done += self._step()
            self._busy_s += time.perf_counter() - started
            yield from done

    def throughput(self) -> BatchThroughput:
        return BatchThroughput(self._batch_size, len(self._requests), sum(len(r.tokens) for r in self._requests),
                               self._n_generated, self._n_runs, self._busy_s)

    def _run(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: dict[str, np.ndarray]
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        feed: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, **past}
        if self._b._has_position_ids:
            feed["position_ids"] = positions
        res = self._b._sess.run(self._b._output_names, feed)
        self._n_runs += 1
        return res[0], {past_name: res[k] for k, past_name in self._b._kv_map}

    def _admit(self) -> list[SequenceResult]:
        """Prefill waiting prompts, one at a time, into free rows; a prompt whose first token ends it never joins."""
        np = self._np
        done = []
        while self._waiting and len(self._rows) < self._batch_size:
            index = self._waiting.pop()
            request = self._requests[index]
            row = _Row(index, request, np.random.default_rng(request.sampling.seed))
            n = len(request.tokens)
            logits, present = self._run(np.asarray([request.tokens], dtype=np.int64), np.ones((1, n), dtype=np.int64),
                                        np.arange(n, dtype=np.int64)[None, :], self._b._empty_past())
            result = self._advance(row, logits[0, -1])
            if result is not None:
                done.append(result)
            else:
                self._join(row, present, np.ones((1, n), dtype=np.int64))
        return done

    def _join(self, row: _Row, present: dict[str, np.ndarray], mask: np.ndarray) -> None:
        """Add a prefilled row to the batch, left-padding whichever cache is shorter."""
        np = self._np
        if not self._rows:
            self._rows, self._past, self._mask = [row], present, mask
            return
        length = max(self._mask.shape[1], mask.shape[1])
        self._past = {name: np.concatenate([_pad_left(self._past[name], length), _pad_left(kv, length)])
                      for name, kv in present.items()}
        self._mask = np.concatenate([_pad_left(self._mask, length), _pad_left(mask, length)])
        self._rows.append(row)

    def _step(self) -> list[SequenceResult]:
        """One token of every row in one session run; finished rows leave the batch."""
        np = self._np
        ids = np.asarray([[row.out[-1]] for row in self._rows], dtype=np.int64)
        positions = np.asarray([[row.n_cached] for row in self._rows], dtype=np.int64)
        mask = np.concatenate([self._mask, np.ones((len(self._rows), 1), dtype=np.int64)], axis=1)
        logits, self._past = self._run(ids, mask, positions, self._past)
        self._mask = mask
        done, keep = [], []
        for b, row in enumerate(self._rows):
            result = self._advance(row, logits[b, -1])
            if result is None:
                keep.append(b)
            else:
                done.append(result)
        if len(keep) < len(self._rows):
            self._drop(keep)
        return done

    def _drop(self, keep: list[int]) -> None:
        """Keep only the rows in `keep`, and only the cache columns some kept row still uses."""
        self._rows = [self._rows[b] for b in keep]
        if not keep:
            self._past, self._mask = {}, self._np.zeros((0, 0), dtype=self._np.int64)
            return
        mask = self._mask[keep]
        first = int(mask.any(axis=0).argmax())
        self._mask = mask[:, first:]
        self._past = {name: kv[keep][:, :, first:] for name, kv in self._past.items()}

    def _advance(self, row: _Row, logits: np.ndarray) -> SequenceResult | None:
        """Sample and take one token as single-stream generation does; the result when the row is done."""
        fmt, tok, sampling = self._fmt, self._b._tok, row.request.sampling
        assert fmt is not None
        token = sample_token(logits, sampling, row.history(), row.rng)
        finish = None
        if token in self._b._eos:
            finish = "stop"
        else:
            row.out.append(token)
            self._n_generated += 1
            if fmt.stops and fmt.hit_stop(tok.decode(row.out[-STOP_WINDOW_TOKENS:], skip_special_tokens=True)):
                finish = "stop"
            elif len(row.out) >= sampling.max_tokens:
                finish = "length"
        if finish is None:
            return None
        text, stopped = fmt.trim(tok.decode(row.out, skip_special_tokens=True))
        return SequenceResult(row.index, text, tuple(row.out), "stop" if stopped else finish,
                              len(row.request.tokens))


def _pad_left(array: np.ndarray, length: int) -> np.ndarray:
    """`array` with zeros before its sequence axis (axis 1 of a mask [batch, past], axis 2 of a cache
    [batch, heads, past, head_dim]) up to `length`."""
    import numpy as np

    axis = 1 if array.ndim == 2 else 2
    missing = length - array.shape[axis]
    if missing <= 0:
        return array
    widths = [(0, 0)] * array.ndim
    widths[axis] = (missing, 0)
    return np.pad(array, widths)
