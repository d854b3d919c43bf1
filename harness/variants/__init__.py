"""Model variants: manifests (what a model is and where its file is) and the files a backend loads.

`resolve_variant(manifest, variant)` returns the `VariantFile` for a variant, deriving it first
when needed; it dispatches through a registry on the manifest's source kind when another module
resolves it (`hf` -> harness.variants.hf downloads from the Hugging Face Hub, `ollama` ->
harness.variants.ollama reads the local Ollama store, `onnx-folder` -> harness.variants.sources), else
on the variant's kind (`gguf` -> llama.cpp's quantizer in harness.variants.gguf, `onnx` -> the optimum
export in harness.variants.onnx), so a new kind of variant or source is one module and one registration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.registry import Registry
from harness.variants.manifest import (
    GGUF_FTYPES,
    ONNX_VARIANTS,
    ModelManifest,
    VariantFile,
    canonical_variant,
    check_variant_name,
    list_manifests,
    load_manifest,
    parse_spec,
    source_kind,
    source_path,
    variant_backend,
    variant_bits,
    variant_notes,
)

Resolver = Callable[..., VariantFile]
VARIANT_KINDS: Registry[Resolver] = Registry("variant kind")
VARIANT_KINDS.register("gguf", "harness.variants.gguf:resolve")
VARIANT_KINDS.register("onnx", "harness.variants.onnx:resolve")
VARIANT_KINDS.register("hf", "harness.variants.hf:resolve")
VARIANT_KINDS.register("ollama", "harness.variants.ollama:resolve")
VARIANT_KINDS.register("onnx-folder", "harness.variants.sources:resolve_onnx_folder")

if TYPE_CHECKING:
    from harness.progress import Progress


def resolve_variant(m: ModelManifest, variant: str, progress: Callable[[str], None] | None = None, *,
                    reporter: Progress | None = None) -> VariantFile:
    """The file for a variant, deriving, downloading and caching it first if needed (`progress` gets what is
    being done; `reporter`, when given, shows a download's bytes)."""
    check_variant_name(m, variant)
    kind = source_kind(m)
    if kind is not None:
        return VARIANT_KINDS.get(kind)(m, variant, progress, reporter=reporter)
    return VARIANT_KINDS.get(variant_backend(variant))(m, variant, progress)


__all__ = ["GGUF_FTYPES", "ONNX_VARIANTS", "ModelManifest", "VariantFile", "VARIANT_KINDS", "canonical_variant", "check_variant_name",
           "list_manifests", "load_manifest", "parse_spec", "resolve_variant", "source_kind", "source_path", "variant_backend",
           "variant_bits", "variant_notes"]
