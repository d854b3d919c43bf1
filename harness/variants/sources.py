"""Models from where users already have them, named on the command line without a manifest.

  hf:OWNER/REPO:QUANT[,QUANT]       that repository's GGUF file(s) of each quantization (harness.variants.hf)
  hf:OWNER/REPO/PATH/FILE.gguf      one file of a repository (also .onnx)
  hf:OWNER/REPO                     an ONNX export repository (optimum layout)
  (any of them with OWNER/REPO@REVISION to pin a branch, tag or commit)
  ollama:NAME[:TAG]                 a model pulled with Ollama, read from its local store (harness.variants.ollama)
  ./my-model.Q4_K_M.gguf            a GGUF file
  ./my-onnx-export/                 an ONNX export folder (model.onnx with its KV cache, tokenizer.json)

`manifest_for_spec` turns such a spec into a ModelManifest made on the fly (its `extra["spec"]` is the spec, its
variants exactly those the spec names); `manifest_text` writes the same as a TOML file for `harness models add`.
Model names are plain (check_plain_name) and say where the model came from, so two sources never share a
leaderboard row: `OWNER--REPO` (the Hub cache's own spelling), `ollama--NAME--TAG`, a file's stem.

An ONNX folder that is not harness's own export (an optimum export, a Hub repository) is given to the ONNX
backend as a folder of links in the cache, with the tokenizer facts the backend needs read from its
tokenizer_config.json, generation_config.json and tokenizer.json (`assemble_onnx_folder`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cache import cache_dir, file_sha256, read_json, staged_folder, write_json_atomic
from harness.errors import UsageError
from harness.variants.manifest import QUANT_NAME, ModelManifest, VariantFile, check_plain_name

ProgressFn = Callable[[str], None]
SPLIT_PART = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
OLLAMA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*){0,2}$")
OLLAMA_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Files of an ONNX export the backend reads beside the model (harness.backends.onnx).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "config.json",
                   "special_tokens_map.json", "chat_template.jinja")
ASSEMBLED_FORMAT = "assembled-1"
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


# -- specs ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HubSpec:
    repo: str
    revision: str | None = None
    quants: tuple[str, ...] = ()
    file: str | None = None  # a path inside the repository


def parse_hf_spec(spec: str) -> HubSpec:
    """'hf:OWNER/REPO[@REV][:Q1,Q2]' or 'hf:OWNER/REPO[@REV]/PATH/FILE.gguf' -> HubSpec (UsageError if malformed)."""
    body = spec[len("hf:"):]
    fix = "write hf:OWNER/REPO:QUANT (e.g. hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M), hf:OWNER/REPO/FILE.gguf or hf:OWNER/REPO"
    parts = body.split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UsageError(f"{spec!r} names no repository: {fix}")
    owner, rest = parts[0], "/".join(parts[1:])
    file = None
    if len(parts) > 2:
        repo_rev, file = parts[1], "/".join(parts[2:])
        if not file.lower().endswith((".gguf", ".onnx")) or ":" in file:
            raise UsageError(f"{spec!r}: a file in a repository must be a .gguf or .onnx file: {fix}")
        quants: tuple[str, ...] = ()
    else:
        repo_rev, _, quant_text = rest.partition(":")
        quants = tuple(dict.fromkeys(normalize_quant(q.strip()) for q in quant_text.split(",") if q.strip()))
        bad = [q for q in quants if not QUANT_NAME.match(q)]
        if bad:
            raise UsageError(f"{spec!r}: {bad[0]!r} is not a quantization name (such as Q4_K_M, Q8_0, IQ4_XS): {fix}")
        if quant_text and not quants:
            raise UsageError(f"{spec!r} ends with ':' but names no quantization: {fix}")
    repo_name, _, revision = repo_rev.partition("@")
    repo = f"{owner}/{repo_name}"
    if not REPO_ID.match(repo) or (revision == "" and "@" in repo_rev):
        raise UsageError(f"{spec!r}: {repo!r} is not a repository id: {fix}")
    if revision and not re.fullmatch(r"[A-Za-z0-9._/-]+", revision):
        raise UsageError(f"{spec!r}: revision {revision!r} is not a branch, tag or commit name")
    return HubSpec(repo, revision or None, quants, file)


def hf_model_name(repo: str) -> str:
    return plain(repo.replace("/", "--"))


def is_source_spec(spec: str) -> bool:
    """Whether a --model spec names a source directly (hf:, ollama:, a path) rather than a catalog entry."""
    if spec.startswith(("hf:", "ollama:")):
        return True
    if spec.endswith(".toml"):
        return False  # a manifest file: the catalog reads it
    if spec.lower().endswith((".gguf", ".onnx")):
        return True
    p = Path(spec).expanduser()
    return p.is_dir() or "/" in spec or os.sep in spec or spec.startswith(("~", "."))


def _made(name: str, spec: str, variants: list[str], source: dict[str, Any], description: str,
          license: str = "", parameters: int | None = None, chat: dict[str, Any] | None = None) -> ModelManifest:
    check_plain_name(name, "model name", spec)
    return ModelManifest(name=name, description=description, source_variant=variants[0],
                         source={**source, "variant": variants[0]}, chat=dict(chat or {}),
                         default_variants=tuple(variants), license=license, parameters=parameters,
                         extra={"spec": spec})


def manifest_for_spec(spec: str) -> tuple[ModelManifest, list[str]]:
    """A manifest made for a source spec, and the variants the spec names (nothing is downloaded here)."""
    if spec.startswith("hf:"):
        hs = parse_hf_spec(spec)
        source: dict[str, Any] = {"hf": hs.repo, **({"revision": hs.revision} if hs.revision else {})}
        name = hf_model_name(hs.repo)
        if hs.file:
            variant = file_variant(hs.file)
            source["file"] = hs.file
            if hs.file.lower().endswith(".onnx"):
                source["format"] = "onnx"
            variants = [variant]
        elif hs.quants:
            variants = list(hs.quants)
        else:
            source["format"] = "onnx"
            variants = ["onnx"]
        return _made(name, spec, variants, source, f"{spec} (Hugging Face Hub)"), variants
    if spec.startswith("ollama:"):
        from harness.variants.ollama import lookup, models_dir, parse_ollama_spec

        name_, tag = parse_ollama_spec(spec)
        found = lookup(name_, tag)
        variant = normalize_quant(found.file_type) if found.file_type else "gguf"
        return _made(ollama_model_name(name_, tag), spec, [variant], {"ollama": f"{name_}:{tag}"},
                     f"{name_}:{tag} from the Ollama store {models_dir()}",
                     license=found.license_name or ""), [variant]
    return path_manifest(spec)


def ollama_model_name(name: str, tag: str) -> str:
    return plain("ollama--" + name.replace("/", "--") + ("" if tag == "latest" else f"--{tag}"))


def file_variant(filename: str) -> str:
    """The variant name of one model file: its quantization, 'onnx' for model.onnx, 'onnx-X' for model_X.onnx."""
    base = filename.rsplit("/", 1)[-1]
    if base.lower().endswith(".onnx"):
        stem = base[:-5]
        stem = stem[len("model"):].lstrip("_-.") if stem.lower().startswith("model") else stem
        return "onnx" if not stem else "onnx-" + plain(stem, "model")
    return gguf_quant(base) or "gguf"


def path_manifest(spec: str) -> tuple[ModelManifest, list[str]]:
    """A manifest for a path: a .gguf file, or an ONNX export folder (or one .onnx file in it)."""
    p = Path(spec).expanduser()
    if not p.exists():
        raise UsageError(f"model {spec!r} is neither a catalog name nor an existing path: check the path, or see "
                         "`harness models list`")
    p = p.resolve()
    if p.is_dir() or p.suffix.lower() == ".onnx":
        folder, model_file = (p, find_onnx_model(p)) if p.is_dir() else (p.parent, p)
        if model_file is None:
            raise UsageError(f"{p} is neither a GGUF file nor an ONNX folder (it holds no model.onnx): pass a .gguf "
                             "file or a folder exported with optimum (text-generation-with-past)")
        variant = file_variant(model_file.name)
        source = {"onnx_folder": str(folder), "file": str(model_file.relative_to(folder))}
        return _made(plain(folder.name), spec, [variant], source, f"ONNX export in {folder}"), [variant]
    from harness.infiles import refuse_special
    from harness.variants.gguf import GGUF_MAGIC

    refuse_special(p, "model")  # before its magic is read: a FIFO would block
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise UsageError(f"{p} is neither a GGUF file (its first bytes are {magic!r}, not b'GGUF') nor an ONNX "
                         "folder: pass a .gguf file or an ONNX export folder")
    quant = gguf_quant(p.name)
    if quant is None:
        from harness.variants.gguf import read_info

        quant = normalize_quant(str(read_info(p).get("file_type") or "gguf"))
    variant = quant
    stem = SPLIT_PART.sub("", p.name)
    stem = stem[:-5] if stem.lower().endswith(".gguf") else stem
    tokens = re.split(r"([.\-])", stem)
    while len(tokens) > 1 and QUANT_NAME.match(tokens[-1]):
        tokens = tokens[:-2]
    return _made(plain("".join(tokens)), spec, [variant], {"path": str(p)}, f"GGUF file {p}"), [variant]


def find_onnx_model(folder: Path) -> Path | None:
    """The decoder an ONNX export folder holds: model.onnx at its root or under onnx/, else its only .onnx file."""
    for rel in ("model.onnx", "onnx/model.onnx"):
        if (folder / rel).is_file():
            return folder / rel
    found = sorted(folder.glob("*.onnx"))
    return found[0] if len(found) == 1 else None


# -- ONNX folders -------------------------------------------------------------------------------------
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
    from harness.variants.onnx import SIDECAR, TOKENIZER_FILE

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
