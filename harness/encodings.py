"""Decoding third-party text files: UTF-8 first, then what the bytes most plausibly are, and say which.

Public releases come in several encodings, sometimes within one folder: UTF-8 with or without a
byte-order mark, UTF-16 with a BOM, Windows-1252, Mac-Roman (JailbreakBench's judge comparison; group
6 of the LLM-Harm release), and UTF-8 files with a few broken sequences (group 7 of that release has
six characters whose last byte became '?'). Decoding any of them as Latin-1 silently garbles the text,
so prompts stop matching across files. The rules, in order:

1. A UTF-16 / UTF-32 byte-order mark: decode accordingly. NUL bytes without one: UTF-16 without a BOM
   (every other byte NUL) or a binary file: refused with the fix.
2. Valid UTF-8 (a BOM is dropped).
3. Mostly UTF-8 (valid multi-byte sequences outnumber the invalid ones): UTF-8, the broken sequences
   replaced by U+FFFD and counted.
4. A single-byte legacy encoding: each candidate (Windows-1252, Mac-Roman, and charset-normalizer's
   best guesses) decodes the bytes and is scored by charset-normalizer's mess ratio (the library's
   measure of implausible text) plus the share of non-ASCII characters right after a lowercase ASCII
   letter that are uppercase letters, controls or symbols (mojibake such as "IÕve" for "I’ve", "cafŽ"
   for "café"): the lowest score wins; Latin-1 is the last resort (it decodes anything).
5. A legacy file can hold UTF-8 too (four JailbreakBench responses in its Mac-Roman file read "it‚Äôs",
   "pi√±ata"): such mojibake is repaired with ftfy (the well-kept library for exactly this), line by line,
   and the repaired lines are counted in the note.

`decode_bytes` returns the text with the encoding chosen and why; importers report it.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from harness.errors import UsageError

LEGACY_CANDIDATES = ("cp1252", "mac_roman")
_AFTER_LOWER = re.compile(r"(?<=[a-z])[^\x00-\x7f]")


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # utf-8, utf-8-sig, utf-16, utf-32, cp1252, mac_roman, latin-1
    replaced: int = 0  # broken UTF-8 sequences replaced with U+FFFD
    reason: str = ""
    repaired: int = 0  # lines of a legacy-encoded file that held UTF-8 (mojibake), repaired with ftfy

    @property
    def is_utf8(self) -> bool:
        return self.encoding.startswith("utf-8") and not self.replaced

    @property
    def note(self) -> str | None:
        """What an import report says about the decoding (None for clean UTF-8)."""
        if self.encoding.startswith("utf-8") and not self.replaced:
            return None
        if self.replaced:
            return f"file decoded as UTF-8 with {self.replaced} broken sequence(s) replaced by U+FFFD"
        return f"file decoded as {self.encoding} (not UTF-8): {self.reason}{self.repair_note}"

    @property
    def repair_note(self) -> str:
        if not self.repaired:
            return ""
        return (f"; {self.repaired} line(s) held UTF-8 inside the {self.encoding} text (mojibake such as "
                "'it‚Äôs'), repaired with ftfy")


def _bom(raw: bytes) -> str | None:
    for bom, enc in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
                     (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            return enc
    return None


def _utf8_sequences(raw: bytes) -> tuple[int, int]:
    """(valid multi-byte sequences, invalid bytes) of a byte string read as UTF-8."""
    valid = invalid = 0
    i = 0
    n = len(raw)
    while i < n:
        try:
            chunk = raw[i:].decode("utf-8")
        except UnicodeDecodeError as exc:
            chunk = raw[i:i + exc.start].decode("utf-8")
            valid += sum(1 for c in chunk if ord(c) > 127)
            invalid += max(1, exc.end - exc.start)
            i += exc.end
            continue
        valid += sum(1 for c in chunk if ord(c) > 127)
        break
    return valid, invalid


def mojibake_share(text: str) -> float:
    """Share of the non-ASCII characters right after a lowercase ASCII letter that are uppercase letters,
    control characters or symbols: 0 for clean text ("café", "I’ve"), high for text decoded with the wrong
    code page ("cafŽ", "IÕve")."""
    import unicodedata

    after = _AFTER_LOWER.findall(text)
    if not after:
        return 0.0
    bad = sum(1 for c in after if unicodedata.category(c) in ("Lu", "Lt", "Cc", "Co", "Cn", "So", "Sk", "Sm"))
    return bad / len(after)


def _score(text: str) -> float:
    from charset_normalizer.md import mess_ratio

    return float(mess_ratio(text, 1.0)) + mojibake_share(text)


def decode_bytes(raw: bytes, where: str, what: str = "text") -> Decoded:
    """Decode a file's bytes (see the module docstring); UsageError for binary files and BOM-less UTF-16."""
    enc = _bom(raw)
    if enc:
        try:
            return Decoded(raw.decode(enc), enc, reason="byte-order mark")
        except UnicodeDecodeError as exc:
            raise UsageError(f"{where} starts with a {enc.upper()} byte-order mark but does not decode as {enc} "
                             f"(byte {exc.start}): re-save it as UTF-8") from exc
    if b"\x00" in raw:
        even, odd = raw[0::2].count(0), raw[1::2].count(0)
        if max(even, odd) > len(raw) // 4 and min(even, odd) < max(even, odd) // 8:
            order = "UTF-16LE" if odd > even else "UTF-16BE"
            raise UsageError(f"{where} looks like {order} text without a byte-order mark: convert it to UTF-8 "
                             f"(e.g. iconv -f {order} -t UTF-8) and pass the {what} file again")
        raise UsageError(f"{where} looks binary (it holds NUL bytes), not text: pass the {what} file as text "
                         "(UTF-8, or gzip-compressed UTF-8)")
    try:
        return Decoded(raw.decode("utf-8-sig"), "utf-8-sig" if raw.startswith(codecs.BOM_UTF8) else "utf-8")
    except UnicodeDecodeError:
        pass
    valid, invalid = _utf8_sequences(raw)
    if valid > invalid:
        text = raw.decode("utf-8-sig", errors="replace")
        return Decoded(text, "utf-8", replaced=text.count("\ufffd") - raw.decode("utf-8-sig", "ignore").count("\ufffd"),
                       reason=f"{valid} valid multi-byte sequences, {invalid} broken byte(s)")
    candidates = list(LEGACY_CANDIDATES)
    try:
        import charset_normalizer

        best = charset_normalizer.from_bytes(raw[:200_000]).best()
        if best is not None and best.encoding not in candidates and best.encoding not in ("ascii", "utf_8"):
            candidates.append(best.encoding)
    except ImportError:  # pragma: no cover - a dependency of the base install
        pass
    scored: list[tuple[float, int, str, str]] = []
    for i, enc in enumerate(candidates):
        try:
            text = raw.decode(enc)
        except (UnicodeDecodeError, LookupError):
            continue
        scored.append((_score(text), i, enc, text))
    if not scored:
        return Decoded(raw.decode("latin-1"), "latin-1", reason="no other encoding decodes every byte")
    score, _, enc, text = min(scored)
    others = ", ".join(f"{e} {s:.3f}" for s, _, e, _ in sorted(scored) if e != enc)
    text, repaired = repair_mojibake(text)
    return Decoded(text, enc, reason=f"the most plausible text (mess score {score:.3f}; {others or 'no other'})",
                   repaired=repaired)


def repair_mojibake(text: str) -> tuple[str, int]:
    """(text with UTF-8-decoded-as-a-code-page repaired line by line, lines repaired), by ftfy.fix_encoding."""
    import ftfy

    lines = text.split("\n")
    fixed = [ftfy.fix_encoding(line) if not line.isascii() else line for line in lines]
    return "\n".join(fixed), sum(1 for a, b in zip(lines, fixed) if a != b)
