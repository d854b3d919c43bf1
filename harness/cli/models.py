"""`harness models list|show|add|convert|quantize|export-onnx`: model manifests and their variants."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from harness.cli.console import labelled, styled, terminal
from harness.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("models", help="model manifests: list, show, quantize",
                       description="The models of the catalog (models/*.toml: where the file is, its shipped variant, "
                                   "its chat format) and their variants: list them, show one with its cached "
                                   "variants, add a manifest for a source (hf:, ollama:, a .gguf path, an ONNX "
                                   "folder), derive GGUF quantizations (cached) or export to ONNX. Variant names "
                                   "are case-insensitive (q4_k_m = Q4_K_M). See `harness models ACTION --help`.")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    msub.add_parser("list", help="list model manifests").set_defaults(func=list_command)
    s = msub.add_parser("show", help="show a manifest, its file and its cached variants")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=show_command)
    a = msub.add_parser("add", help="write a manifest for a model source (hf:, ollama:, a .gguf path or an ONNX "
                                    "folder) into the user catalog",
                        description="Write models/NAME.toml for a source into the user catalog: the first --catalog "
                                    "folder, else HARNESS_CATALOG, else ~/.config/harness. Licence and parameter count "
                                    "come from the repository card and the Hub's GGUF metadata, or from the GGUF "
                                    "file; nothing is downloaded.")
    a.add_argument("spec", help="hf:OWNER/REPO:QUANT[,QUANT], hf:OWNER/REPO/FILE.gguf, hf:OWNER/REPO, "
                                "ollama:NAME[:TAG], or a path")
    a.add_argument("--name", required=True, help="the catalog name (letters, digits, '.', '_', '-')")
    a.add_argument("--description", default=None)
    a.add_argument("--force", action="store_true", help="overwrite an existing manifest of that name")
    a.set_defaults(func=add_command)
    cv = msub.add_parser("convert", help="convert a Hugging Face checkpoint (MPT, GPT-NeoX, Llama ...) to GGUF with "
                                         "llama.cpp's converter (cached), then quantize it",
                         description="Convert an original Hugging Face checkpoint to GGUF with llama.cpp's own "
                                     "convert_hf_to_gguf.py (the one of the installed llama-cpp-python version, fetched "
                                     "once from its sdist with pip; needs harness[export]), cached by the checkpoint, "
                                     "then derive GGUF quantizations with --to. --name writes models/NAME.toml "
                                     "([source] convert) into the user catalog so `--model NAME:Q4_K_M` runs it.")
    cv.add_argument("source", help="hf:OWNER/REPO[@REV], a checkpoint folder (config.json, weights, tokenizer), or a "
                                   "catalog model whose [source] is convert")
    cv.add_argument("--name", default=None, help="write a manifest of this name to the user catalog")
    cv.add_argument("--outtype", default=None, metavar="TYPE",
                    help="the converted file's type: F16 (default), BF16, F32 or Q8_0")
    cv.add_argument("--to", default="", metavar="V1,V2,...", help="variants to quantize to, e.g. Q8_0,Q4_K_M,Q2_K")
    cv.add_argument("--converter", default=None, metavar="PATH",
                    help="llama.cpp's convert_hf_to_gguf.py (with conversion/ and gguf-py/ beside it), a llama.cpp "
                         "folder, or a llama-cpp-python sdist .tar.gz (default: $HARNESS_LLAMA_CONVERTER, else the "
                         "installed llama-cpp-python version's)")
    cv.add_argument("--reconvert", action="store_true", help="convert again even if a converted file is cached")
    cv.add_argument("--force", action="store_true", help="overwrite an existing manifest of that --name")
    cv.add_argument("--json", action="store_true")
    cv.set_defaults(func=convert_command)
    q = msub.add_parser("quantize", help="derive GGUF variants with llama.cpp's quantizer (cached)")
    q.add_argument("name")
    q.add_argument("--to", required=True, metavar="V1,V2,...", help="variants, e.g. F16,Q8_0,Q4_K_M,Q4_0,Q2_K")
    q.set_defaults(func=quantize_command)
    e = msub.add_parser("export-onnx", help="export a model to ONNX with KV cache (onnx-fp32; cached), "
                                            "optionally int8 / fp16 (needs harness[export])")
    e.add_argument("name")
    e.add_argument("--int8", action="store_true", help="also derive onnx-int8 (block-wise int8 MatMuls)")
    e.add_argument("--fp16", action="store_true", help="also derive onnx-fp16 (for GPU providers)")
    e.add_argument("--force", action="store_true", help="export again even if cached")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=export_onnx_command)


def list_command(args: argparse.Namespace) -> int:
    from harness.variants import list_manifests

    table = Table(title="models")
    for col in ("name", "shipped variant", "default variants", "chat", "description"):
        table.add_column(col)
    for m in list_manifests():
        table.add_row(m.name, m.source_variant, ", ".join(m.default_variants), m.chat_format, m.description)
    terminal().print(table)
    return 0


def _cached_variants(m) -> list[dict]:  # type: ignore[no-untyped-def]
    from harness.cache import file_sha256, read_json
    from harness.variants import source_path
    from harness.variants.gguf import derived_dir

    try:
        d = derived_dir(m, file_sha256(source_path(m)))
    except UsageError:
        return []
    return [meta for f in sorted(d.glob("*.json")) if isinstance(meta := read_json(f), dict)]


def add_command(args: argparse.Namespace) -> int:
    from harness import catalog
    from harness.variants import parse_spec, source_kind
    from harness.variants.manifest import check_plain_name
    from harness.variants.sources import is_source_spec, manifest_text

    name = check_plain_name(args.name, "model name", "--name")
    if not is_source_spec(args.spec):
        raise UsageError(f"{args.spec!r} is not a model source: give hf:OWNER/REPO:QUANT, hf:OWNER/REPO/FILE.gguf, "
                         "hf:OWNER/REPO, ollama:NAME[:TAG] or a path (catalog models are already in the catalog)")
    target = catalog.writable_catalog() / "models" / f"{name}.toml"
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists: pass --force to overwrite it, or choose another --name")
    m, _ = parse_spec(args.spec)
    facts = _source_facts(m, source_kind(m))
    text = manifest_text(m, name, args.spec, license=facts.get("license") or m.license,
                         parameters=facts.get("parameters"), notes=facts.get("notes", ""),
                         description=args.description or "")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".toml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    terminal().print(f"wrote {target}\nrun it with `harness run --model {name}`", markup=False, highlight=False)
    return 0


def _source_facts(m, kind: str | None) -> dict:  # type: ignore[no-untyped-def]
    """Licence, parameter count and a note about where they came from, without downloading anything."""
    from harness.variants.gguf import read_info

    if kind == "hf":
        from harness.variants.hf import describe

        d = describe(m)
        note = f"From hf:{m.source['hf']} (commit {str(d['commit'])[:12]} when added on {d['checked_at']})."
        return {"license": d["license"], "parameters": d["parameters"], "notes": note}
    if kind == "ollama":
        from harness.variants.ollama import _found

        found = _found(m)
        info = read_info(found.blob, found.digest)
        return {"license": m.license or info.get("license"), "parameters": info.get("n_parameters")}
    if kind == "onnx-folder":
        return {}
    from harness.variants import source_path

    info = read_info(source_path(m))
    return {"license": info.get("license"), "parameters": info.get("n_parameters")}


def show_command(args: argparse.Namespace) -> int:
    from harness.variants import load_manifest, resolve_variant, source_kind, variant_notes
    from harness.variants.gguf import read_info

    m = load_manifest(args.name)
    if source_kind(m) in ("hf", "onnx-folder", "convert"):
        return _show_source(m, args.json)
    vf = resolve_variant(m, m.source_variant)
    info = read_info(vf.path)
    cached = _cached_variants(m)
    if args.json:
        print(json.dumps({"manifest": str(m.path), "name": m.name, "description": m.description,
                          "source_variant": m.source_variant, "file": str(vf.path), "sha256": vf.sha256,
                          "size_bytes": vf.size_bytes, "gguf": {k: v for k, v in info.items() if k != "chat_template"},
                          "chat_format": m.chat_format, "has_chat_template": bool(info.get("chat_template")),
                          "cached_variants": cached, "onnx_variants": _onnx_cached(m)}, indent=2, default=str))
        return 0
    c = terminal()
    c.print(labelled(m.name, m.description))
    c.print(f"manifest: {m.path}\nfile ({m.source_variant}): {vf.path}\nsha256: {vf.sha256}\nsize: {vf.size_bytes / 1e6:.1f} MB")
    c.print(f"architecture: {info['architecture']}  parameters: {info['n_parameters']:,}  layers: {info['n_layers']}  "
            f"file type: {info['file_type']}")
    c.print(f"tensor types: {', '.join(f'{k} x{v}' for k, v in info['tensor_types'].items())}")
    c.print(f"chat: {m.chat_format}" + (" (template from the GGUF)" if info.get("chat_template") else " (no template in the GGUF)"))
    if m.notes:
        c.print(f"notes: {m.notes}")
    if cached:
        table = Table(title="cached derived variants")
        for col in ("variant", "size MB", "sha256", "note"):
            table.add_column(col)
        for meta in cached:
            table.add_row(str(meta.get("variant")), f"{meta.get('size_bytes', 0) / 1e6:.1f}", str(meta.get("sha256", ""))[:16],
                          variant_notes(m, str(meta.get("variant"))))
        c.print(table)
    _print_onnx_variants(m, c)
    return 0


def _show_source(m, as_json: bool) -> int:  # type: ignore[no-untyped-def]
    """A manifest whose files are elsewhere (the Hub, a folder): what it names, without downloading."""
    facts: dict = {}
    if "hf" in m.source:
        from harness.variants.hf import describe

        facts = describe(m)
    out = {"manifest": str(m.path), "name": m.name, "description": m.description, "license": m.license,
           "parameters": m.parameters, "source": m.source, "default_variants": list(m.default_variants), **facts}
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    c = terminal()
    for k, v in out.items():
        c.print(f"{k}: {v}", markup=False, highlight=False)
    return 0


def _onnx_cached(m) -> list[dict]:  # type: ignore[no-untyped-def]
    from harness.variants.onnx import cached_variants

    return cached_variants(m)


def _print_onnx_variants(m, c) -> None:  # type: ignore[no-untyped-def]
    found = _onnx_cached(m)
    if not found:
        return
    table = Table(title="cached ONNX variants")
    for col in ("variant", "size MB", "sha256", "weights"):
        table.add_column(col)
    for meta in found:
        table.add_row(str(meta["variant"]), f"{meta['size_bytes'] / 1e6:.1f}", str(meta["sha256"])[:16],
                      str(meta.get("weights_note", "")))
    c.print(table)


def export_onnx_command(args: argparse.Namespace) -> int:
    from harness.variants import load_manifest
    from harness.variants.onnx import resolve as ensure_onnx_variant

    m = load_manifest(args.name)
    wanted = ["onnx-fp32"] + (["onnx-int8"] if args.int8 else []) + (["onnx-fp16"] if args.fp16 else [])
    c = terminal(stderr=True)
    done = []
    for i, v in enumerate(wanted):
        force = args.force and (i == 0 or v != "onnx-fp32")
        done.append(ensure_onnx_variant(m, v, lambda msg: c.print(styled(msg, "dim")), force=force))
    if args.json:
        print(json.dumps([{"variant": vf.variant, "path": str(vf.path), "sha256": vf.sha256,
                           "size_bytes": vf.size_bytes, **vf.metadata["onnx"]} for vf in done], indent=2, default=str))
        return 0
    table = Table(title=f"{m.name} ONNX variants")
    for col in ("variant", "size MB", "sha256", "settings", "path"):
        table.add_column(col)
    for vf in done:
        settings = vf.metadata["onnx"].get("settings") or {}
        brief = ", ".join(f"{k}={v}" for k, v in settings.items() if k not in ("exporter", "op_types"))
        table.add_row(vf.variant, f"{vf.size_bytes / 1e6:.1f}", vf.sha256[:16], brief, str(vf.path.parent))
    out = terminal()
    out.print(table)
    out.print(f"weights: {done[0].metadata['onnx'].get('weights_note')}")
    return 0


def quantize_command(args: argparse.Namespace) -> int:
    from harness.variants import canonical_variant, load_manifest, resolve_variant, variant_notes
    from harness.variants.gguf import read_info

    m = load_manifest(args.name)
    wanted = [canonical_variant(m, v.strip()) for v in args.to.split(",") if v.strip()]
    if not wanted:
        raise UsageError("--to is empty: name variants, e.g. --to Q8_0,Q4_K_M")
    c = terminal()
    table = Table(title=f"{m.name} variants")
    for col in ("variant", "size MB", "sha256", "tensor types", "note"):
        table.add_column(col)
    for v in wanted:
        if v.startswith("onnx-"):
            raise UsageError(f"{v} is an ONNX variant: use `harness models export-onnx {m.name}`")
        vf = resolve_variant(m, v, lambda msg: c.print(styled(msg, "dim")))
        types = read_info(vf.path)["tensor_types"]
        table.add_row(v, f"{vf.size_bytes / 1e6:.1f}", vf.sha256[:16], ", ".join(f"{k} x{n}" for k, n in types.items()),
                      variant_notes(m, v))
    c.print(table)
    return 0


def convert_command(args: argparse.Namespace) -> int:
    from harness.variants.convert import convert_model

    c = terminal(stderr=True)
    done = convert_model(args.source, name=args.name, outtype=args.outtype, to=args.to.split(","),
                         converter=args.converter, reconvert=args.reconvert, overwrite=args.force,
                         progress=lambda msg: c.print(styled(msg, "dim")))
    files = [done.converted, *done.variants]
    if args.json:
        print(json.dumps({"model": done.model, "source": done.source, "manifest": done.manifest,
                          "converted_now": done.converted_now, "converter": done.converter,
                          "variants": [{"variant": vf.variant, "path": str(vf.path), "sha256": vf.sha256,
                                        "size_bytes": vf.size_bytes, "derived_from": vf.derived_from,
                                        "gguf": vf.metadata.get("gguf")} for vf in files]},
                         indent=2, default=str))
        return 0
    out = terminal()
    table = Table(title=f"{done.model}: {done.source} as GGUF")
    for col in ("variant", "architecture", "size MB", "sha256", "path"):
        table.add_column(col)
    for vf in files:
        table.add_row(vf.variant, str((vf.metadata.get("gguf") or {}).get("architecture")), f"{vf.size_bytes / 1e6:.1f}",
                      vf.sha256[:16], str(vf.path))
    out.print(table)
    conv = done.converter
    out.print(f"{'converted now' if done.converted_now else 'converted earlier'} by {conv.get('origin')} "
              f"(sha256 {str(conv.get('sha256'))[:16]})", markup=False, highlight=False)
    if done.manifest is not None:
        out.print(f"manifest: {done.manifest}\nrun it with `harness run --model {done.model}:"
                  f"{done.variants[-1].variant if done.variants else done.converted.variant}`", markup=False,
                  highlight=False)
    else:
        out.print("add --name NAME to write a catalog manifest, so that `harness run --model NAME` runs it",
                  markup=False, highlight=False)
    return 0
