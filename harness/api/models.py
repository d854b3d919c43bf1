"""Model manifests and their variants: list, show, add a manifest for a source, quantize, export to ONNX.

`harness models` is these functions with arguments parsed and results printed. Nothing is downloaded to show or
add a model (Hub facts come from the repository card and listing); quantizing and exporting cache what they make.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError
from harness.progress import Progress

if TYPE_CHECKING:
    from harness.variants import ModelManifest, VariantFile


@dataclass(frozen=True)
class ModelDetails:
    """One manifest with what it names. A manifest whose files are elsewhere (the Hub, an ONNX folder) has
    `source` (what it names, nothing downloaded) and no `file`; otherwise `file` is its shipped variant, `gguf`
    that file's header facts, `cached` the derived GGUF variants in the cache and `onnx` the exported ones."""

    manifest: ModelManifest
    source: dict[str, Any] | None = None
    file: VariantFile | None = None
    gguf: dict[str, Any] | None = None
    cached: list[dict[str, Any]] | None = None
    notes: dict[str, str] | None = None  # cached variant -> what to know about it (e.g. fewer bits than its source)
    onnx: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class AddedModel:
    name: str
    path: Path  # the manifest written into the user catalog


@dataclass(frozen=True)
class QuantizedVariant:
    variant: str
    file: VariantFile
    tensor_types: dict[str, int]
    note: str


@dataclass(frozen=True)
class Quantized:
    model: str
    variants: list[QuantizedVariant]


@dataclass(frozen=True)
class OnnxExport:
    model: str
    variants: list[VariantFile]  # onnx-fp32 first, then onnx-int8 / onnx-fp16 when asked


def list_models() -> list[ModelManifest]:
    """Every manifest of the catalogs (shipped and user), by name."""
    from harness.variants import list_manifests

    return list_manifests()


def show_model(name: str) -> ModelDetails:
    """A manifest with its file, the file's facts and its cached variants (a source manifest: what it names)."""
    from harness.variants import load_manifest, resolve_variant, source_kind, variant_notes
    from harness.variants.gguf import read_info
    from harness.variants.onnx import cached_variants

    m = load_manifest(name)
    if source_kind(m) in ("hf", "onnx-folder", "convert"):
        return ModelDetails(m, source=_source_description(m))
    vf = resolve_variant(m, m.source_variant)
    info = read_info(vf.path)
    cached = _cached_variants(m)
    notes = {str(meta.get("variant")): variant_notes(m, str(meta.get("variant"))) for meta in cached}
    return ModelDetails(m, file=vf, gguf=info, cached=cached, notes=notes, onnx=cached_variants(m))


def _source_description(m: ModelManifest) -> dict[str, Any]:
    """A manifest whose files are elsewhere (the Hub, a folder): what it names, without downloading."""
    facts: dict[str, Any] = {}
    if "hf" in m.source:
        from harness.variants.hf import describe

        facts = describe(m)
    return {"manifest": str(m.path), "name": m.name, "description": m.description, "license": m.license,
            "parameters": m.parameters, "source": m.source, "default_variants": list(m.default_variants), **facts}


def _cached_variants(m: ModelManifest) -> list[dict[str, Any]]:
    from harness.cache import file_sha256, read_json
    from harness.variants import source_path
    from harness.variants.gguf import derived_dir

    try:
        d = derived_dir(m, file_sha256(source_path(m)))
    except UsageError:
        return []
    return [meta for f in sorted(d.glob("*.json")) if isinstance(meta := read_json(f), dict)]


def add_model(spec: str, name: str, *, description: str | None = None, force: bool = False) -> AddedModel:
    """Write models/NAME.toml for a source (hf:, ollama:, a .gguf path, an ONNX folder) into the user catalog, with
    its licence and parameter count from the repository card, the Hub's GGUF metadata or the file."""
    from harness import catalog
    from harness.variants import parse_spec, source_kind
    from harness.variants.manifest import check_plain_name
    from harness.variants.sources import is_source_spec, manifest_text

    name = check_plain_name(name, "model name", "--name")
    if not is_source_spec(spec):
        raise UsageError(f"{spec!r} is not a model source: give hf:OWNER/REPO:QUANT, hf:OWNER/REPO/FILE.gguf, "
                         "hf:OWNER/REPO, ollama:NAME[:TAG] or a path (catalog models are already in the catalog)")
    target = catalog.writable_catalog() / "models" / f"{name}.toml"
    if target.exists() and not force:
        raise UsageError(f"{target} exists: pass --force to overwrite it, or choose another --name")
    m, _ = parse_spec(spec)
    facts = _source_facts(m, source_kind(m))
    text = manifest_text(m, name, spec, license=facts.get("license") or m.license,
                         parameters=facts.get("parameters"), notes=facts.get("notes", ""),
                         description=description or "")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".toml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return AddedModel(name, target)


def _source_facts(m: ModelManifest, kind: str | None) -> dict[str, Any]:
    """Licence, parameter count and a note about where they came from, without downloading anything."""
    from harness.variants.gguf import read_info

    if kind == "hf":
        from harness.variants.hf import describe

        d = describe(m)
        note = f"From hf:{m.source['hf']} (commit {str(d['commit'])[:12]} when added on {d['checked_at']})."
        return {"license": d["license"], "parameters": d["parameters"], "notes": note}
    if kind == "ollama":
        from harness.variants.ollama import lookup

        ollama_name, _, tag = str(m.source["ollama"]).partition(":")
        found = lookup(ollama_name, tag or "latest")
        info = read_info(found.blob, found.digest)
        return {"license": m.license or info.get("license"), "parameters": info.get("n_parameters")}
    if kind == "onnx-folder":
        return {}
    from harness.variants import source_path

    info = read_info(source_path(m))
    return {"license": info.get("license"), "parameters": info.get("n_parameters")}


def quantize_model(name: str, variants: Sequence[str], *, progress: Progress | None = None) -> Quantized:
    """Derive GGUF variants (any case: q4_k_m = Q4_K_M) with llama.cpp's quantizer, cached; `progress` hears what
    is being done."""
    from harness.variants import canonical_variant, load_manifest, resolve_variant, variant_notes
    from harness.variants.gguf import read_info

    m = load_manifest(name)
    wanted = [canonical_variant(m, v) for v in variants]
    if not wanted:
        raise UsageError("--to is empty: name variants, e.g. --to Q8_0,Q4_K_M")
    done = []
    for v in wanted:
        if v.startswith("onnx-"):
            raise UsageError(f"{v} is an ONNX variant: use `harness models export-onnx {m.name}`")
        vf = resolve_variant(m, v, progress.message if progress is not None else None)
        done.append(QuantizedVariant(v, vf, read_info(vf.path)["tensor_types"], variant_notes(m, v)))
    return Quantized(m.name, done)


def export_onnx(name: str, *, int8: bool = False, fp16: bool = False, force: bool = False,
                progress: Progress | None = None) -> OnnxExport:
    """Export a model to ONNX with KV cache (onnx-fp32), and derive onnx-int8 / onnx-fp16 when asked; cached
    unless `force` (needs harness[export])."""
    from harness.variants import load_manifest
    from harness.variants.onnx import resolve as ensure_onnx_variant

    m = load_manifest(name)
    wanted = ["onnx-fp32"] + (["onnx-int8"] if int8 else []) + (["onnx-fp16"] if fp16 else [])
    done = []
    for i, v in enumerate(wanted):
        again = force and (i == 0 or v != "onnx-fp32")
        done.append(ensure_onnx_variant(m, v, progress.message if progress is not None else None, force=again))
    return OnnxExport(m.name, done)


def convert_model(source: str, **options: Any) -> Any:
    """`harness models convert`: an original Hugging Face checkpoint (hf:OWNER/REPO, a folder, or a catalog entry
    with [source] convert) converted to GGUF by llama.cpp's own converter (the installed version's), cached, then
    quantized to the variants asked for; returns harness.variants.convert.Conversion. Options as
    harness.variants.convert.convert_model's (name, outtype, to, converter, reconvert, overwrite, progress)."""
    from harness.variants.convert import convert_model as convert

    return convert(source, **options)
