"""ONNX export folders as a source: a local folder (optimum's layout, or harness's own export), and the folder
of links any ONNX export is given to the backend as.

A manifest with `[source] onnx_folder = "DIR"` (or a folder or .onnx file named on the command line, through
harness.variants.local) has one variant, the folder's own. An ONNX export that is not harness's own (an optimum
export, a Hub repository through harness.variants.hf) is given to the ONNX backend as a folder of links in the
cache, with the tokenizer facts the backend needs read from its tokenizer_config.json, generation_config.json
and tokenizer.json (`assemble_onnx_folder`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cache import cache_dir, file_sha256, read_json, staged_folder, write_json_atomic
from harness.errors import UsageError
from harness.variants.manifest import ModelManifest, ProgressFn, SourceKind, VariantFile
from harness.variants.onnx import SIDECAR, TOKENIZER_FILE
from harness.variants.sources import file_variant, made_manifest, plain

if TYPE_CHECKING:
    from harness.progress import Progress

# Files of an ONNX export the backend reads beside the model (harness.backends.onnx).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "config.json",
                   "special_tokens_map.json", "chat_template.jinja")
ASSEMBLED_FORMAT = "assembled-1"


def find_onnx_model(folder: Path) -> Path | None:
    """The decoder an ONNX export folder holds: model.onnx at its root or under onnx/, else its only .onnx file."""
    for rel in ("model.onnx", "onnx/model.onnx"):
        if (folder / rel).is_file():
            return folder / rel
    found = sorted(folder.glob("*.onnx"))
    return found[0] if len(found) == 1 else None


def folder_manifest(spec: str, p: Path) -> tuple[ModelManifest, list[str]]:
    """A manifest for an existing folder named on the command line, or one .onnx file in it."""
    folder, model_file = (p, find_onnx_model(p)) if p.is_dir() else (p.parent, p)
    if model_file is None:
        raise UsageError(f"{p} is neither a GGUF file nor an ONNX folder (it holds no model.onnx): pass a .gguf "
                         "file or a folder exported with optimum (text-generation-with-past)")
    variant = file_variant(model_file.name)
    source = {"onnx_folder": str(folder), "file": str(model_file.relative_to(folder))}
    return made_manifest(plain(folder.name), spec, [variant], source, f"ONNX export in {folder}"), [variant]


def _token_id(tok: dict[str, Any], text: str | None) -> int | None:
    if not text:
        return None
    for added in tok.get("added_tokens") or []:
        if added.get("content") == text:
            return int(added["id"])
    vocab = (tok.get("model") or {}).get("vocab")
    if isinstance(vocab, dict) and text in vocab:
        return int(vocab[text])
    return None


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return str(value) if isinstance(value, str) and value else None


def _ids(value: Any) -> list[int]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [int(v) for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def tokenizer_facts(files: dict[str, Path]) -> dict[str, Any]:
    """What harness.backends.onnx needs from an export's tokenizer files (ids of BOS/EOS, whether to add BOS),
    read from tokenizer_config.json, generation_config.json, config.json and tokenizer.json."""
    def load(name: str) -> dict[str, Any]:
        data = read_json(files[name]) if name in files else None
        return data if isinstance(data, dict) else {}

    tok_cfg, gen, cfg, tok = (load("tokenizer_config.json"), load("generation_config.json"), load("config.json"),
                              load("tokenizer.json"))
    bos_text, eos_text = _token_text(tok_cfg.get("bos_token")), _token_text(tok_cfg.get("eos_token"))
    eos_ids = list(dict.fromkeys([*_ids(gen.get("eos_token_id")), *_ids(cfg.get("eos_token_id")),
                                  *_ids(_token_id(tok, eos_text))]))
    bos = next(iter([*_ids(gen.get("bos_token_id")), *_ids(cfg.get("bos_token_id")), *_ids(_token_id(tok, bos_text))]),
               None)
    if bos_text is None and bos is not None:
        bos_text = next((a.get("content") for a in tok.get("added_tokens") or [] if a.get("id") == bos), None)
    add_bos = tok_cfg.get("add_bos_token")
    return {"eos_token_ids": eos_ids, "bos_token_id": bos, "bos_token": bos_text, "eos_token": eos_text,
            "add_bos_token": bool(add_bos) if isinstance(add_bos, bool) else False,
            "has_chat_template": "chat_template.jinja" in files or bool(tok_cfg.get("chat_template"))}


def onnx_model_files(model: Path) -> list[Path]:
    """model.onnx and the external-data files beside it that belong to it (model.onnx_data, model.onnx.data ...)."""
    return [model, *sorted(p for p in model.parent.iterdir()
                           if p.name != model.name and p.name.startswith(model.name) and p.is_file())]


def _digest(shas: dict[str, str]) -> str:
    if len(shas) == 1:
        return next(iter(shas.values()))
    h = hashlib.sha256()
    for name in sorted(shas):
        h.update(f"{name}:{shas[name]}\n".encode())
    return h.hexdigest()


def assemble_onnx_folder(model_name: str, variant: str, model: Path, data: list[Path], beside: dict[str, Path],
                         metadata: dict[str, Any]) -> VariantFile:
    """A folder of links the ONNX backend can load (model, its data, tokenizer files side by side) with a sidecar
    of tokenizer facts, in the cache; the variant's sha256 is over the model files."""
    if TOKENIZER_FILE not in beside:
        raise UsageError(f"the ONNX export of {model_name} has no {TOKENIZER_FILE}: the ONNX backend tokenizes with "
                         "it; export the model with optimum (it writes one), or use a GGUF file")
    shas = {p.name: file_sha256(p) for p in [model, *data]}
    sha = _digest(shas)
    links = {model.name: model, **{p.name: p for p in data}, **beside}
    facts = None
    own = read_json(model.parent / SIDECAR)
    if isinstance(own, dict) and isinstance(own.get("tokenizer"), dict):
        facts = own["tokenizer"]  # harness's own export already says
    sidecar = {"format": ASSEMBLED_FORMAT, "model": model_name, "variant": variant, "sha256": sha,
               "files": {name: str(Path(t).resolve()) for name, t in links.items()},
               "tokenizer": facts or tokenizer_facts(beside), **metadata}
    folder = cache_dir() / "onnx-folders" / plain(model_name) / sha[:16] / variant
    if read_json(folder / SIDECAR) != json.loads(json.dumps(sidecar, sort_keys=True, default=str)) or \
            not all((folder / n).exists() for n in links):
        with staged_folder(folder, parents=True) as tmp:
            for name, target in links.items():
                (tmp / name).symlink_to(Path(target).resolve())
            write_json_atomic(tmp / SIDECAR, sidecar)
    size = sum(p.stat().st_size for p in [model, *data])
    return VariantFile(model_name, variant, "onnx", folder / model.name, sha, size, None,
                       {"onnx": {"folder": str(model.parent), "files": sorted(shas), "tokenizer": sidecar["tokenizer"]},
                        **metadata})


def resolve_onnx_folder(m: ModelManifest, variant: str, progress: ProgressFn | None = None, *,
                        reporter: Any = None) -> VariantFile:
    """The variant of a manifest whose source is a local ONNX export folder."""
    folder = Path(os.path.expandvars(str(m.source["onnx_folder"]))).expanduser()
    if not folder.is_absolute() and m.path is not None:
        folder = (m.path.parent / folder).resolve()
    if not folder.is_dir():
        raise UsageError(f"model '{m.name}': ONNX folder {folder} does not exist: fix onnx_folder in "
                         f"{m.path or 'the spec'}")
    model = folder / str(m.source["file"]) if m.source.get("file") else find_onnx_model(folder)
    if model is None or not model.is_file():
        raise UsageError(f"{folder} is not an ONNX export folder (no model.onnx): export one with optimum, or pass "
                         "a .gguf file")
    beside = {name: p for name in TOKENIZER_FILES if (p := folder / name).is_file()}
    return assemble_onnx_folder(m.name, variant, model, onnx_model_files(model)[1:], beside,
                                {"source": {"onnx_folder": str(folder)}})


class OnnxFolderSource(SourceKind):
    """`[source] onnx_folder`: a local ONNX export folder, which holds its own variant and nothing to derive from."""

    key = "onnx_folder"
    name = "onnx-folder"
    shape = "a folder"

    def offers(self, m: ModelManifest, variant: str) -> bool:
        raise UsageError(f"unknown variant '{variant}' of model '{m.name}': an ONNX folder has only its own "
                         f"variant, {m.source_variant}")

    def local_file(self, m: ModelManifest, reporter: Progress | None = None) -> Path:
        raise UsageError(f"model '{m.name}' is an ONNX folder ({m.source['onnx_folder']}): it has no GGUF source to "
                         "derive other variants from; run its own variant")

    def resolve(self, m: ModelManifest, variant: str, progress: ProgressFn | None = None, *,
                reporter: Progress | None = None) -> VariantFile:
        return resolve_onnx_folder(m, variant, progress, reporter=reporter)


SOURCE = OnnxFolderSource()
