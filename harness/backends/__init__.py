"""Inference backends, found by name through a registry; each imports its heavy library lazily.

`get_backend("gguf")` -> llama.cpp through llama-cpp-python; `get_backend("onnx")` -> onnxruntime.
A missing library raises an error naming the extra to install. A backend's `version()` is the one
source of the inference library's version: it is part of every sample's key and of its row.
"""

from __future__ import annotations

from harness.backends.base import Backend, BackendResult, BatchThroughput, Sampling, SequenceRequest, SequenceResult
from harness.registry import Registry

BACKENDS: Registry[type[Backend]] = Registry("backend", entry_points="harness.backends")
BACKENDS.register("gguf", "harness.backends.llama_cpp:LlamaCppBackend")
BACKENDS.register("onnx", "harness.backends.onnx:OnnxBackend")


def get_backend(name: str) -> Backend:
    """A new backend instance (no model loaded yet)."""
    return BACKENDS.get(name)()


__all__ = ["Backend", "BackendResult", "BatchThroughput", "Sampling", "SequenceRequest", "SequenceResult",
           "get_backend", "BACKENDS"]
