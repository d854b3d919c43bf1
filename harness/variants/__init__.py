"""Model variants: manifests (what a model is and where its file is) and the files a backend loads.

`resolve_variant(manifest, variant)` returns the `VariantFile` for a variant, deriving it first when needed.
It asks the manifest's source kind, found in the one registry `SOURCES` by the manifest's [source] key
(harness.variants.manifest): `path`, `package` and `assemble` (harness.variants.local), `hf` (the Hugging Face
Hub, harness.variants.hf), `ollama` (the local Ollama store, harness.variants.ollama), `onnx_folder`
(harness.variants.onnx_folder), `convert` (an original Hugging Face checkpoint converted to GGUF by llama.cpp's
converter, harness.variants.convert). A kind holds its own variant and derives the others through `VARIANT_KINDS`
(`gguf` -> llama.cpp's quantizer in harness.variants.gguf, `onnx` -> the optimum export in
harness.variants.onnx), so a new kind of source or variant is one module and one registration. The same
kinds read the sources named on the command line (harness.variants.sources).
"""

from __future__ import annotations

from harness.variants.manifest import (
    GGUF_FTYPES,
    ONNX_VARIANTS,
    SOURCES,
    VARIANT_KINDS,
    ModelManifest,
    SourceKind,
    VariantFile,
    canonical_variant,
    check_variant_name,
    list_manifests,
    load_manifest,
    parse_spec,
    resolve_variant,
    source_facts,
    source_kind,
    source_path,
    variant_backend,
    variant_bits,
    variant_notes,
)

__all__ = ["GGUF_FTYPES", "ONNX_VARIANTS", "SOURCES", "ModelManifest", "SourceKind", "VariantFile", "VARIANT_KINDS",
           "canonical_variant", "check_variant_name", "list_manifests", "load_manifest", "parse_spec",
           "resolve_variant", "source_facts", "source_kind", "source_path", "variant_backend", "variant_bits",
           "variant_notes"]
