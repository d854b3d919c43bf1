"""`harness models list|show|add|convert|quantize|export-onnx`: model manifests and their variants."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.cli.console import labelled, styled, terminal


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
    from harness import api

    table = Table(title="models")
    for col in ("name", "shipped variant", "default variants", "chat", "description"):
        table.add_column(col)
    for m in api.list_models():
        table.add_row(m.name, m.source_variant, ", ".join(m.default_variants), m.chat_format, m.description)
    terminal().print(table)
    return 0


def add_command(args: argparse.Namespace) -> int:
    from harness import api

    added = api.add_model(args.spec, args.name, description=args.description, force=args.force)
    terminal().print(f"wrote {added.path}\nrun it with `harness run --model {added.name}`", markup=False,
                     highlight=False)
    return 0


def show_command(args: argparse.Namespace) -> int:
    from harness import api

    d = api.show_model(args.name)
    if d.source is not None:
        return _show_source(d.source, args.json)
    m, vf, info, cached = d.manifest, d.file, d.gguf or {}, d.cached or []
    assert vf is not None
    if args.json:
        print(json.dumps({"manifest": str(m.path), "name": m.name, "description": m.description,
                          "source_variant": m.source_variant, "file": str(vf.path), "sha256": vf.sha256,
                          "size_bytes": vf.size_bytes, "gguf": {k: v for k, v in info.items() if k != "chat_template"},
                          "chat_format": m.chat_format, "has_chat_template": bool(info.get("chat_template")),
                          "cached_variants": cached, "onnx_variants": d.onnx or []}, indent=2, default=str))
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
                          (d.notes or {}).get(str(meta.get("variant")), ""))
        c.print(table)
    _print_onnx_variants(d.onnx or [], c)
    return 0


def _show_source(out: dict[str, Any], as_json: bool) -> int:
    """A manifest whose files are elsewhere (the Hub, a folder): what it names, without downloading."""
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    c = terminal()
    for k, v in out.items():
        c.print(f"{k}: {v}", markup=False, highlight=False)
    return 0


def _print_onnx_variants(found: list[dict[str, Any]], c: Console) -> None:
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
    from harness import api
    from harness.cli.progress import RichProgress

    exported = api.export_onnx(args.name, int8=args.int8, fp16=args.fp16, force=args.force,
                               progress=RichProgress(terminal(stderr=True)))
    done = exported.variants
    if args.json:
        print(json.dumps([{"variant": vf.variant, "path": str(vf.path), "sha256": vf.sha256,
                           "size_bytes": vf.size_bytes, **vf.metadata["onnx"]} for vf in done], indent=2, default=str))
        return 0
    table = Table(title=f"{exported.model} ONNX variants")
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
    from harness import api
    from harness.cli.progress import RichProgress

    c = terminal()
    made = api.quantize_model(args.name, [v.strip() for v in args.to.split(",") if v.strip()],
                              progress=RichProgress(c))
    table = Table(title=f"{made.model} variants")
    for col in ("variant", "size MB", "sha256", "tensor types", "note"):
        table.add_column(col)
    for q in made.variants:
        table.add_row(q.variant, f"{q.file.size_bytes / 1e6:.1f}", q.file.sha256[:16],
                      ", ".join(f"{k} x{n}" for k, n in q.tensor_types.items()), q.note)
    c.print(table)
    return 0


def convert_command(args: argparse.Namespace) -> int:
    from harness import api

    c = terminal(stderr=True)
    done = api.convert_model(args.source, name=args.name, outtype=args.outtype, to=args.to.split(","),
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
