"""Model variants: manifests (what a model is and where its file is) and the files a backend loads.

`resolve_variant(manifest, variant)` returns the `VariantFile` for a variant, deriving it first
when needed; it dispatches on the variant's kind through a registry (`gguf` -> llama.cpp's
quantizer in harness.variants.gguf, `onnx` -> the optimum export in harness.variants.onnx), so
a new kind of variant is one module and one registration.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.registry import Registry
from harness.variants.manifest import (
    GGUF_FTYPES,
    ONNX_VARIANTS,
    ModelManifest,
    VariantFile,
    check_variant_name,
    list_manifests,
    load_manifest,
    parse_spec,
    source_path,
    variant_backend,
    variant_bits,
    variant_notes,
)

Resolver = Callable[..., VariantFile]
VARIANT_KINDS: Registry[Resolver] = Registry("variant kind")
VARIANT_KINDS.register("gguf", "harness.variants.gguf:resolve")
VARIANT_KINDS.register("onnx", "harness.variants.onnx:resolve")


def resolve_variant(m: ModelManifest, variant: str, progress: Callable[[str], None] | None = None) -> VariantFile:
    """The file for a variant, deriving and caching it first if needed (`progress` gets what is being done)."""
    check_variant_name(m, variant)
    return VARIANT_KINDS.get(variant_backend(variant))(m, variant, progress)


__all__ = ["GGUF_FTYPES", "ONNX_VARIANTS", "ModelManifest", "VariantFile", "VARIANT_KINDS", "check_variant_name",
           "list_manifests", "load_manifest", "parse_spec", "resolve_variant", "source_path", "variant_backend",
           "variant_bits", "variant_notes"]
