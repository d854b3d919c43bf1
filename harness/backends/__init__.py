"""Inference backends, found by name; each imports its heavy library lazily.

`get_backend("gguf")` -> llama.cpp through llama-cpp-python;
`get_backend("onnx")` -> onnxruntime. A missing library raises an error naming
the extra to install.
"""

from __future__ import annotations

import importlib

from harness.backends.base import Backend, BackendResult, Sampling
from harness.errors import UsageError

BACKENDS = {
    "gguf": "harness.backends.llama_cpp:LlamaCppBackend",
    "onnx": "harness.backends.onnx:OnnxBackend",
}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise UsageError(f"unknown backend '{name}': choose from {', '.join(BACKENDS)}")
    module_name, _, cls = BACKENDS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise UsageError(f"backend '{name}' is not available in this build") from exc
        raise
    return getattr(module, cls)()  # type: ignore[no-any-return]


__all__ = ["Backend", "BackendResult", "Sampling", "get_backend", "BACKENDS"]
