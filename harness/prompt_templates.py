"""Group-templated prompt sets (quality-of-service audits): a TOML file of templates with one `{group}`
placeholder and the groups of each axis, expanded into one prompt per template x axis x group.

    name = "qos"
    [axes]
    religion = ["Christian people", "Muslim people", ...]
    [[template]]
    id = "food-traditional"
    text = "What are some traditional foods that {group} enjoy?"
    axes = ["religion", "nationality"]      # optional: every axis
    kind = "everyday"                       # or "risky-sounding" (benign but sounds risky, as XSTest's)
    topic = "food"

Expansion is template-major (each template, then its axes in the order listed, then each axis's groups in
order), so the first N prompts are a few templates across all their groups: the paired view of the
disparity statistics (the same template across groups) needs exactly that. Every prompt is benign, its
category is `qos:<kind>`, its id `qos-<template>-<axis>-<group slug>`, and it carries template_id, axis
and group. Anything malformed is refused before anything runs: an unknown placeholder or none, an empty
or duplicated group, an axis a template names that the file does not define, a file that is not UTF-8.
"""

from __future__ import annotations

import re
import string
import sys
from pathlib import Path
from typing import Any

from harness.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLACEHOLDER = "group"
KINDS = ("everyday", "risky-sounding")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_template_file(path: Path) -> bool:
    return path.suffix.lower() == ".toml"


def slug(group: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", group.lower()).strip("-")
    return s or "group"


def _placeholders(text: str, where: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise UsageError(f"{where}: malformed placeholder in {text!r} ({exc}): write {{group}}, and double braces "
                         "{{ }} for literal ones") from exc


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where} must be a list of strings")
    return value


def read_template_data(path: Path) -> dict[str, Any]:
    from harness.infiles import read_bytes
    from harness.prompt_record import decode_text

    text = decode_text(read_bytes(path, "a prompt templates"), str(path))
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML ({exc}): fix the syntax") from exc


def _axes(data: dict[str, Any], where: str) -> dict[str, list[str]]:
    axes = data.get("axes")
    if not isinstance(axes, dict) or not axes:
        raise UsageError(f"{where}: no [axes] table: list each axis's groups, e.g. religion = [\"Muslim people\", "
                         "\"Jewish people\"]")
    out: dict[str, list[str]] = {}
    for axis, groups in axes.items():
        if not _ID.match(axis):
            raise UsageError(f"{where}: axis name {axis!r} must be letters, digits, '-', '_' or '.'")
        groups = [g.strip() for g in _str_list(groups, f"{where}: axis '{axis}'")]
        if not groups:
            raise UsageError(f"{where}: axis '{axis}' has no groups: list at least two, or remove the axis")
        if any(not g for g in groups):
            raise UsageError(f"{where}: axis '{axis}' has an empty group name: remove it")
        seen: dict[str, str] = {}
        for g in groups:
            key = slug(g)
            if key in seen:
                what = "twice" if seen[key] == g else f"as '{seen[key]}' and '{g}' (the same prompt id)"
                raise UsageError(f"{where}: axis '{axis}' lists group '{g}' {what}: every group once")
            seen[key] = g
        if len(groups) < 2:
            raise UsageError(f"{where}: axis '{axis}' has one group ('{groups[0]}'): a disparity needs two or more")
        out[axis] = groups
    return out


def expand(data: dict[str, Any], set_name: str, where: str) -> list[Any]:
    """The prompts of a template set, in template-major order."""
    from harness.prompt_record import Prompt

    axes = _axes(data, where)
    templates = data.get("template")
    if not isinstance(templates, list) or not templates:
        raise UsageError(f"{where}: no [[template]] entries: add at least one with id and text")
    source = str(data.get("source") or set_name)
    out: list[Prompt] = []
    ids: set[str] = set()
    for n, t in enumerate(templates, 1):
        at = f"{where}: template {n}"
        if not isinstance(t, dict):
            raise UsageError(f"{at} is not a table")
        tid, text = str(t.get("id", "")).strip(), t.get("text")
        if not tid or not isinstance(text, str) or not text.strip():
            raise UsageError(f"{at}: every template needs 'id' and 'text'")
        at = f"{where}: template '{tid}'"
        if not _ID.match(tid):
            raise UsageError(f"{at}: the id must be letters, digits, '-', '_' or '.'")
        if tid in ids:
            raise UsageError(f"{at} appears twice: template ids must be unique")
        ids.add(tid)
        names = _placeholders(text, at)
        unknown = sorted({nm for nm in names if nm != PLACEHOLDER})
        if unknown:
            raise UsageError(f"{at}: unknown placeholder {{{unknown[0]}}} in {text!r}: the only placeholder is "
                             "{group}")
        if PLACEHOLDER not in names:
            raise UsageError(f"{at} has no {{group}} placeholder: write where the group goes, e.g. "
                             "\"foods that {group} enjoy\"")
        kind = str(t.get("kind", "everyday"))
        if kind not in KINDS:
            raise UsageError(f"{at}: kind {kind!r} is not one of {', '.join(KINDS)}")
        template_axes = _str_list(t["axes"], f"{at}: axes") if "axes" in t else list(axes)
        missing = [a for a in template_axes if a not in axes]
        if missing:
            raise UsageError(f"{at} names axis '{missing[0]}', which [axes] does not define (axes: {', '.join(axes)})")
        if len(set(template_axes)) != len(template_axes) or not template_axes:
            raise UsageError(f"{at}: list each axis once (axes = {template_axes})")
        for axis in template_axes:
            for group in axes[axis]:
                out.append(Prompt(id=f"{set_name}-{tid}-{axis}-{slug(group)}", text=text.format(group=group),
                                  category=f"qos:{kind}", benign=True, source=source, prompt_set=set_name,
                                  template_id=tid, axis=axis, group=group))
    return out


def read_templates(path: Path, set_name: str | None = None) -> list[Any]:
    data = read_template_data(path)
    name = set_name or str(data.get("name") or path.stem)
    return expand(data, name, str(path))
