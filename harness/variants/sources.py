"""Models from where users already have them, named on the command line without a manifest.

  hf:OWNER/REPO:QUANT[,QUANT]       that repository's GGUF file(s) of each quantization (harness.variants.hf)
  hf:OWNER/REPO/PATH/FILE.gguf      one file of a repository (also .onnx)
  hf:OWNER/REPO                     an ONNX export repository (optimum layout)
  (any of them with OWNER/REPO@REVISION to pin a branch, tag or commit)
  ollama:NAME[:TAG]                 a model pulled with Ollama, read from its local store (harness.variants.ollama)
  ./my-model.Q4_K_M.gguf            a GGUF file (harness.variants.local)
  ./my-onnx-export/                 an ONNX export folder (model.onnx with its KV cache, tokenizer.json)

Each spec is read by the source kind that claims it (harness.variants.manifest.spec_source), into a
ModelManifest made on the fly (`made_manifest`: its `extra["spec"]` is the spec, its variants exactly those the
spec names); `manifest_text` writes the same as a TOML file for `harness models add`. This module holds what
the kinds share: how a file name states its quantization and variant, and the names models get. Model names
are plain (check_plain_name) and say where the model came from, so two sources never share a leaderboard
row: `OWNER--REPO` (the Hub cache's own spelling), `ollama--NAME--TAG`, a file's stem.
"""

from __future__ import annotations

import json
import re
from typing import Any

from harness.variants.manifest import QUANT_NAME, SOURCES, ModelManifest, check_plain_name, spec_source

SPLIT_PART = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT_ALIASES = {"FP16": "F16", "FP32": "F32"}


def normalize_quant(token: str) -> str:
    t = token.upper()
    return _QUANT_ALIASES.get(t, t)


def gguf_quant(filename: str) -> str | None:
    """The quantization a GGUF file name states ('qwen2.5-0.5b-instruct-q4_k_m.gguf' -> 'Q4_K_M'), split-part
    suffixes ignored; None when the name states none."""
    base = filename.rsplit("/", 1)[-1]
    base = SPLIT_PART.sub(".gguf", base)
    if not base.lower().endswith(".gguf"):
        return None
    for token in reversed(re.split(r"[.\-]", base[:-5])):
        if QUANT_NAME.match(token):
            return normalize_quant(token)
    return None


def plain(text: str, fallback: str = "model") -> str:
    """A plain catalog name made from any text: other characters become '-', '..' becomes '.'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    while ".." in name:
        name = name.replace("..", ".")
    name = name[:128].rstrip("-._")
    return name if name and name[0].isalnum() else fallback


def file_variant(filename: str) -> str:
    """The variant name of one model file: its quantization, 'onnx' for model.onnx, 'onnx-X' for model_X.onnx."""
    base = filename.rsplit("/", 1)[-1]
    if base.lower().endswith(".onnx"):
        stem = base[:-5]
        stem = stem[len("model"):].lstrip("_-.") if stem.lower().startswith("model") else stem
        return "onnx" if not stem else "onnx-" + plain(stem, "model")
    return gguf_quant(base) or "gguf"


def made_manifest(name: str, spec: str, variants: list[str], source: dict[str, Any], description: str,
                  license: str = "", parameters: int | None = None, chat: dict[str, Any] | None = None
                  ) -> ModelManifest:
    """The manifest of a source spec: named `name`, offering exactly `variants` (the first is its own)."""
    check_plain_name(name, "model name", spec)
    return ModelManifest(name=name, description=description, source_variant=variants[0],
                         source={**source, "variant": variants[0]}, chat=dict(chat or {}),
                         default_variants=tuple(variants), license=license, parameters=parameters,
                         extra={"spec": spec})


def is_source_spec(spec: str) -> bool:
    """Whether a --model spec names a source directly (hf:, ollama:, a path) rather than a catalog entry."""
    return spec_source(spec) is not None


def manifest_for_spec(spec: str) -> tuple[ModelManifest, list[str]]:
    """A manifest made for a source spec, and the variants the spec names (nothing is downloaded here); a spec
    no kind claims is read as a path (which says it does not exist)."""
    return (spec_source(spec) or SOURCES.get("path")).from_spec(spec)


# -- writing a manifest (harness models add) ------------------------------------------------------------
def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def manifest_text(m: ModelManifest, name: str, spec: str, *, license: str = "", parameters: int | None = None,
                  notes: str = "", description: str = "") -> str:
    """The TOML of a catalog manifest for a source spec (what `harness models add` writes)."""
    check_plain_name(name, "model name", "--name")
    lines = [f"# Written by `harness models add {spec} --name {name}`.",
             f"description = {_toml_str(description or m.description)}"]
    if license:
        lines.append(f"license = {_toml_str(license)}")
    if parameters:
        lines.append(f"parameters = {int(parameters)}")
    lines.append(f"default_variants = [{', '.join(_toml_str(v) for v in m.default_variants)}]")
    if notes:
        lines.append(f"notes = {_toml_str(notes)}")
    lines += ["", "[source]"]
    for k, v in m.source.items():
        lines.append(f"{k} = {_toml_str(str(v))}")
    lines += ["", "[chat]", 'format = "template"   # the model\'s own chat template; "completion" for a base model']
    return "\n".join(lines) + "\n"
