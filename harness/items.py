"""Identity of a rated item: the prompt whose outputs are judged or ranked together.

Ratings from humans, imported judges and our own judges meet on `item_id`,
so the same prompt text gives the same id wherever it came from.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata


def normalize_prompt(text: str) -> str:
    """Unicode NFC, case-folded, whitespace collapsed, outer quotes and spaces stripped."""
    t = unicodedata.normalize("NFC", text).casefold()
    t = re.sub(r"\s+", " ", t).strip().strip("\"'").strip()
    return t


def item_id_for_prompt(text: str) -> str:
    return "p:" + hashlib.sha256(normalize_prompt(text).encode("utf-8")).hexdigest()[:16]
