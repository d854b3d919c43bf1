"""ONNX variants of a manifest's model: export with KV cache, int8 / fp16 conversion, cached with sha256.

`onnx-fp32` loads the manifest's GGUF into transformers (`gguf_file=`, which
DEQUANTIZES the shipped weights: for SmolLM2 the fp32 model holds exactly the
shipped Q4_1 weights, it is not more accurate than them) and exports it with
optimum as `text-generation-with-past` (inputs: input_ids, attention_mask,
position_ids, past_key_values.N.key/value; outputs: logits, present.N.*).
The tokenizer (tokenizer.json) and the GGUF's chat template sit beside it.
`onnx-int8` and `onnx-fp16` are derived from `onnx-fp32`.

int8 method, chosen by measurement (`benchmarks/quant_ladder.py --int8-study`):
onnxruntime's block-wise weight-only int8 quantizer (MatMulNBits, 8 bits,
blocks of 32, symmetric, accuracy_level 4 = int8 compute with block-wise
activation quantization), applied to every MatMul including the tied lm_head.
`quantize_dynamic` (per-tensor or per-channel, MatMul-only or all ops) ran at
the same speed but drifted far more from fp32 on this model (teacher-forced
top-1 agreement ~0.6 against ~0.95, mean KL ~0.56 against ~0.006), so it is
not used.

Each variant lives in `cache_dir()/onnx/<model>/<source sha16>/<variant>/`,
written to a temporary folder and renamed into place, with the sidecar
`harness-variant.json` (sha256 and size of every model file, settings,
tokenizer facts, library versions). The export runs in a child process
(`python -m harness.variants.onnx`) so that torch never enters the process that
measures inference; torch is needed only here (`pip install 'harness[export]'`).

The file names of an exported folder are defined here and read by harness.backends.onnx.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.cache import cache_dir, file_sha256, read_json, staged_folder, verified_sha256, write_json_atomic
from harness.errors import HarnessError, UsageError
from harness.variants.gguf import check_gguf, read_info
from harness.variants.manifest import ONNX_VARIANTS, ModelManifest, VariantFile, load_manifest, source_path

# The files of an exported folder.
SIDECAR = "harness-variant.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
GENERATION_CONFIG_FILE = "generation_config.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
EXPORT_FORMAT = 1  # bump when the export recipe changes; older cached folders are re-exported
TASK = "text-generation-with-past"
EXPORT_EXTRA_HINT = "pip install 'harness[export]'"

# The int8 recipe (see the module docstring for why).
INT8_SETTINGS: dict[str, Any] = {
    "method": "matmul_nbits",
    "bits": 8,
    "block_size": 32,
    "is_symmetric": True,
    "accuracy_level": 4,
    "op_types": ["MatMul"],
    "fold_tied_lm_head": True,
}
FP16_SETTINGS: dict[str, Any] = {"method": "onnxruntime.transformers.float16", "keep_io_types": True}

ProgressFn = Callable[[str], None]


def variant_dir(m: ModelManifest, source_sha256: str, variant: str) -> Path:
    return cache_dir() / "onnx" / m.name / source_sha256[:16] / variant


def weights_note(source_variant: str, variant: str) -> str:
    base = (f"the shipped {source_variant} GGUF weights, dequantized by transformers' GGUF loader "
            f"(as accurate as {source_variant}, not more)")
    if variant == "onnx-int8":
        return base + ", then requantized to int8 (MatMulNBits, blocks of 32)"
    if variant == "onnx-fp16":
        return base + ", then cast to fp16"
    return base + ", stored as fp32"


# -- reading the cache -------------------------------------------------------------------


def _files_digest(files: dict[str, dict[str, Any]]) -> str:
    """One sha256 for a variant: the file's own digest when there is one model file, else a digest of digests."""
    if list(files) == [MODEL_FILE]:
        return str(files[MODEL_FILE]["sha256"])
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}:{files[name]['sha256']}\n".encode())
    return h.hexdigest()


def _model_files(folder: Path) -> dict[str, dict[str, Any]]:
    """model.onnx and its external-data files, with size and sha256."""
    names = [MODEL_FILE] + sorted(p.name for p in folder.iterdir() if p.name.startswith(MODEL_FILE + "_data")
                                  or p.suffix == ".data")
    return {n: {"size_bytes": (folder / n).stat().st_size, "sha256": file_sha256(folder / n)} for n in names
            if (folder / n).is_file()}


def read_variant(folder: Path, m: ModelManifest, variant: str, verify: bool = True) -> VariantFile | None:
    """The cached variant in `folder`, None if absent or from an older recipe; UsageError if it is corrupt."""
    meta = read_json(folder / SIDECAR)
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT or meta.get("variant") != variant:
        return None
    files = meta.get("files") or {}
    fix = f"re-export it with `harness models export-onnx {m.name} --force`"
    for name, want in files.items():
        p = folder / name
        if not p.is_file() or p.stat().st_size != want.get("size_bytes"):
            raise UsageError(f"cached ONNX file {p} is missing or has the wrong size (corrupt cache): {fix}")
        if verify and not verified_sha256(p, str(want.get("sha256"))):
            raise UsageError(f"cached ONNX file {p} does not match its recorded sha256 (corrupt cache): {fix}")
    return VariantFile(
        model=m.name, variant=variant, backend="onnx", path=folder / MODEL_FILE, sha256=str(meta["sha256"]),
        size_bytes=int(meta["size_bytes"]), derived_from=str(meta["source"]["variant"]),
        metadata={"onnx": {k: meta.get(k) for k in ("settings", "weights_note", "weight_bytes_per_token", "opset",
                                                    "versions", "source", "tokenizer")}},
    )


def cached_variants(m: ModelManifest) -> list[dict[str, Any]]:
    """Sidecars of the ONNX variants already exported for this manifest's current source file."""
    try:
        src_sha = file_sha256(source_path(m))
    except UsageError:
        return []
    out = []
    for v in ONNX_VARIANTS:
        meta = read_json(variant_dir(m, src_sha, v) / SIDECAR)
        if isinstance(meta, dict) and meta.get("format") == EXPORT_FORMAT:
            out.append({**meta, "path": str(variant_dir(m, src_sha, v))})
    return out


def resolve(m: ModelManifest, variant: str, progress: ProgressFn | None = None, force: bool = False) -> VariantFile:
    """The cached ONNX variant, exporting it first (in a child process) when absent."""
    if variant not in ONNX_VARIANTS:
        raise UsageError(f"unknown ONNX variant '{variant}': choose from {', '.join(ONNX_VARIANTS)}")
    src = source_path(m)
    check_gguf(src)
    folder = variant_dir(m, file_sha256(src), variant)
    if not force:
        # A cached folder changed since its export raises UsageError naming `--force`: exporting again takes
        # minutes and the export extra, so it is the user's call (a GGUF variant is re-derived on its own).
        vf = read_variant(folder, m, variant)
        if vf is not None:
            return vf
    _export_in_child(m, variant, force, progress)
    vf = read_variant(folder, m, variant)
    if vf is None:
        raise UsageError(f"the ONNX export of {m.name}:{variant} left no usable folder at {folder}: "
                         f"re-run with --debug, or use a GGUF variant")
    return vf


def _export_in_child(m: ModelManifest, variant: str, force: bool, progress: ProgressFn | None) -> None:
    """Run `python -m harness.variants.onnx` and relay its progress lines; its UsageError becomes ours."""
    cmd = [sys.executable, "-m", "harness.variants.onnx", "--manifest", str(m.path), "--variant", variant]
    if force:
        cmd.append("--force")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryFile("w+", encoding="utf-8") as err_file:  # a file, not a pipe: no deadlock on chatter
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, text=True, env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            if progress and line.strip():
                progress(line.rstrip())
        code = proc.wait()
        err_file.seek(0)
        err = err_file.read()
    if code == 0:
        return
    last = next((ln for ln in reversed(err.splitlines()) if ln.startswith("harness: error: ")), None)
    if code == 2 and last:
        raise UsageError(last.removeprefix("harness: error: "))
    tail = " | ".join(err.strip().splitlines()[-3:])
    raise HarnessError(f"the ONNX export of {m.name}:{variant} failed (exit {code}: {tail}): "
                     f"run `python -m harness.variants.onnx --manifest {m.path} --variant {variant}` to see why, "
                     f"or use a GGUF variant")


# -- exporting (runs in the child process) -----------------------------------------------


def _require_export_deps() -> None:
    import importlib

    for module in ("torch", "transformers", "optimum.exporters.onnx", "onnx", "accelerate"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UsageError(f"exporting to ONNX needs '{module.split('.')[0]}', which is not installed: "
                             f"{EXPORT_EXTRA_HINT}") from exc


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "onnx-ir"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _gguf_tokenizer_facts(src: Path) -> dict[str, Any]:
    """What llama.cpp itself uses: BOS/EOS/EOT ids, whether to add BOS, the chat template."""
    info = read_info(src)
    return {k: info.get(k) for k in ("bos_token_id", "eos_token_id", "eot_token_id", "add_bos_token",
                                     "chat_template", "architecture")}


def _check_architecture(gguf_dir: str, gguf_file: str, m: ModelManifest, arch: str | None) -> Any:
    """transformers' config for the GGUF, or UsageError if transformers or optimum cannot export it."""
    from transformers import AutoConfig

    hint = f"use a GGUF variant of '{m.name}' instead"
    try:
        config = AutoConfig.from_pretrained(gguf_dir, gguf_file=gguf_file)
    except ValueError as exc:
        if "not supported" in str(exc):
            from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

            supported = ", ".join(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))
            raise UsageError(
                f"cannot export '{m.name}' to ONNX: its architecture '{arch}' is not supported by transformers' "
                f"GGUF loader (supported: {supported}): {hint}"
            ) from exc
        raise UsageError(f"cannot export '{m.name}' to ONNX: transformers cannot read its GGUF ({exc}): "
                         f"{hint}") from exc
    import optimum.exporters.onnx.model_configs  # noqa: F401 - registers the ONNX export configs
    from optimum.exporters.tasks import TasksManager

    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(config.model_type, "onnx", library_name="transformers")
    except KeyError:
        tasks = {}
    if TASK not in tasks:
        raise UsageError(f"cannot export '{m.name}' to ONNX: optimum has no '{TASK}' export for model type "
                         f"'{config.model_type}' (architecture '{arch}'): {hint}")
    return config


def weight_bytes_per_token(model_path: Path) -> int:
    """Bytes of weights one decode step reads: every initializer, except tables only gathered from (embeddings).

    An embedding that is also the tied lm_head (read through a Transpose) counts in full.
    """
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(model_path), load_external_data=False)
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node.op_type, i))
    total = 0
    for t in model.graph.initializer:
        if uses_external_data(t):
            size = next((int(e.value) for e in t.external_data if e.key == "length"), 0)
        else:
            size = len(t.raw_data) or onnx.numpy_helper.to_array(t).nbytes
        uses = consumers.get(t.name, [])
        gathered_only = bool(uses) and all(op.startswith("Gather") and i == 0 for op, i in uses)
        if not gathered_only:
            total += size
    return total


def _fold_initializer_transposes(model: Any) -> int:
    """Replace Transpose(initializer) nodes by a transposed initializer, so the tied lm_head can be quantized."""
    import numpy as np
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    n = 0
    for node in list(model.graph.node):
        if node.op_type == "Transpose" and node.input[0] in inits:
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            w = np.ascontiguousarray(np.transpose(numpy_helper.to_array(inits[node.input[0]]), perm))
            model.graph.initializer.append(numpy_helper.from_array(w, node.output[0]))
            model.graph.node.remove(node)
            n += 1
    return n


def _save_onnx(model: Any, path: Path) -> None:
    import onnx

    large = model.ByteSize() > 1_800_000_000 if hasattr(model, "ByteSize") else False
    onnx.save_model(model, str(path), save_as_external_data=large, all_tensors_to_one_file=True,
                    location=MODEL_FILE + "_data")


def _export_fp32(m: ModelManifest, src: Path, tmp: Path, progress: ProgressFn) -> dict[str, Any]:
    _require_export_deps()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    facts = _gguf_tokenizer_facts(src)
    config = _check_architecture(str(src.parent), src.name, m, facts["architecture"])
    progress(f"loading {src.name} into transformers (dequantizing its {m.source_variant} weights to fp32)")
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    model.eval()
    progress(f"exporting {config.model_type} to ONNX with optimum ({TASK})")
    from optimum.exporters.onnx import onnx_export_from_model

    onnx_export_from_model(model, tmp, task=TASK, do_validation=False)
    tokenizer.save_pretrained(str(tmp))
    template = facts.get("chat_template")
    if template:
        (tmp / CHAT_TEMPLATE_FILE).write_text(str(template), encoding="utf-8")
    gen = read_json(tmp / GENERATION_CONFIG_FILE) or {}
    eos = gen.get("eos_token_id")
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    for k in ("eos_token_id", "eot_token_id"):
        if facts.get(k) is not None and int(facts[k]) not in eos_ids:
            eos_ids.append(int(facts[k]))
    vocab = tokenizer.get_vocab()
    inv = {v: k for k, v in vocab.items()}
    bos_id = facts.get("bos_token_id")
    return {
        "settings": {"task": TASK, "dtype": "float32", "exporter": "optimum.exporters.onnx.onnx_export_from_model"},
        "tokenizer": {
            "eos_token_ids": eos_ids,
            "bos_token_id": bos_id,
            "bos_token": inv.get(int(bos_id)) if bos_id is not None else None,
            "eos_token": inv.get(int(facts["eos_token_id"])) if facts.get("eos_token_id") is not None else None,
            "add_bos_token": facts["add_bos_token"],
            "has_chat_template": bool(template),
        },
        "model_type": config.model_type,
    }


def _copy_beside(src_dir: Path, dst_dir: Path) -> None:
    """Tokenizer, chat template and configs travel with every variant."""
    for p in src_dir.iterdir():
        if p.is_file() and p.suffix in (".json", ".jinja", ".txt", ".model") and p.name != SIDECAR:
            shutil.copy2(p, dst_dir / p.name)


def _derive_int8(fp32: Path, tmp: Path, progress: ProgressFn) -> dict[str, Any]:
    _require_export_deps()
    import onnx

    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError as exc:
        raise UsageError(f"int8 quantization needs onnxruntime's quantizer and 'onnx-ir': {EXPORT_EXTRA_HINT}") from exc
    import logging

    logging.getLogger(MatMulNBitsQuantizer.__module__).setLevel(logging.WARNING)  # it logs every node at INFO
    progress("quantizing to int8 (onnxruntime MatMulNBits: 8 bits, blocks of 32, symmetric, accuracy level 4)")
    model = onnx.load(str(fp32 / MODEL_FILE))
    folded = _fold_initializer_transposes(model) if INT8_SETTINGS["fold_tied_lm_head"] else 0
    q = MatMulNBitsQuantizer(model, bits=INT8_SETTINGS["bits"], block_size=INT8_SETTINGS["block_size"],
                             is_symmetric=INT8_SETTINGS["is_symmetric"],
                             accuracy_level=INT8_SETTINGS["accuracy_level"],
                             op_types_to_quantize=tuple(INT8_SETTINGS["op_types"]))
    q.process()
    _save_onnx(q.model.model, tmp / MODEL_FILE)
    _copy_beside(fp32, tmp)
    return {"settings": {**INT8_SETTINGS, "folded_transposes": folded}}


def _derive_fp16(fp32: Path, tmp: Path, progress: ProgressFn) -> dict[str, Any]:
    _require_export_deps()
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    progress("converting to fp16 (inputs and outputs, including the KV cache, stay fp32)")
    model = convert_float_to_float16(onnx.load(str(fp32 / MODEL_FILE)), keep_io_types=FP16_SETTINGS["keep_io_types"])
    _save_onnx(model, tmp / MODEL_FILE)
    _copy_beside(fp32, tmp)
    return {"settings": dict(FP16_SETTINGS)}


def export_variant(m: ModelManifest, variant: str, progress: ProgressFn, force: bool = False) -> Path:
    """Export (fp32) or derive (int8, fp16 from fp32) one variant into the cache; returns its folder."""
    import fcntl

    src = source_path(m)
    check_gguf(src)
    src_sha = file_sha256(src)
    folder = variant_dir(m, src_sha, variant)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{variant}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one export of a variant at a time, across processes
        for stale in folder.parent.glob(f".{variant}.tmp-*"):  # left by a killed export
            shutil.rmtree(stale, ignore_errors=True)
        if not force:
            try:
                if read_variant(folder, m, variant) is not None:
                    return folder
            except UsageError:
                pass  # corrupt: export again
        fp32_meta: dict[str, Any] | None = None
        if variant != "onnx-fp32":
            export_variant(m, "onnx-fp32", progress, force=False)
            fp32_meta = read_json(variant_dir(m, src_sha, "onnx-fp32") / SIDECAR)
        t0 = time.perf_counter()
        with staged_folder(folder) as tmp:
            if variant == "onnx-fp32":
                info = _export_fp32(m, src, tmp, progress)
            elif variant == "onnx-int8":
                info = _derive_int8(variant_dir(m, src_sha, "onnx-fp32"), tmp, progress)
            else:
                info = _derive_fp16(variant_dir(m, src_sha, "onnx-fp32"), tmp, progress)
            if fp32_meta:
                info = {"tokenizer": fp32_meta["tokenizer"], "model_type": fp32_meta.get("model_type"), **info}
            files = _model_files(tmp)
            import onnx

            opset = next((o.version for o in onnx.load(str(tmp / MODEL_FILE), load_external_data=False).opset_import
                          if o.domain in ("", "ai.onnx")), None)
            meta = {
                "format": EXPORT_FORMAT, "model": m.name, "variant": variant, "backend": "onnx",
                "files": files, "sha256": _files_digest(files),
                "size_bytes": sum(f["size_bytes"] for f in files.values()),
                "source": {"path": str(src), "sha256": src_sha, "variant": m.source_variant},
                "weights_note": weights_note(m.source_variant, variant),
                "weight_bytes_per_token": weight_bytes_per_token(tmp / MODEL_FILE),
                "opset": opset, "versions": _versions(), "export_s": round(time.perf_counter() - t0, 1),
                "created_at": time.time(), **info,
            }
            write_json_atomic(tmp / SIDECAR, meta)
        progress(f"wrote {m.name}:{variant} ({meta['size_bytes'] / 1e6:.0f} MB) in {meta['export_s']:.0f} s "
                 f"-> {folder}")
    return folder


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.variants.onnx --manifest PATH --variant V [--force]`: the child process of an export."""
    p = argparse.ArgumentParser(prog="python -m harness.variants.onnx")
    p.add_argument("--manifest", required=True)
    p.add_argument("--variant", required=True, choices=ONNX_VARIANTS)
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    try:
        m = load_manifest(args.manifest)
        export_variant(m, args.variant, lambda msg: print(msg, flush=True), force=args.force)
    except UsageError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("onnxruntime").setLevel(logging.WARNING)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    sys.exit(main())


__all__ = ["resolve", "export_variant", "cached_variants", "read_variant", "variant_dir",
           "weight_bytes_per_token", "INT8_SETTINGS"]
