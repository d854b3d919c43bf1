"""Text from users and models shown on a terminal or in Markdown: shown, never obeyed.

Model, device, rater and annotator names and outputs are untrusted. On a terminal, control characters (ESC and the
CSI / OSC sequences it starts, C1 controls, BEL, carriage returns, bidirectional overrides, line separators) could
move the cursor, rewrite the screen, retitle the window or plant links; in Markdown, brackets, parentheses, `!`,
backticks, emphasis marks, HTML and autolinks could make live links, images or markup. `terminal` shows every
such character as its Python escape (`\\x1b`), `json_line` as its JSON escape (`\\u001b`); `markdown` shows
them escaped and escapes what Markdown would read as well.
"""

from __future__ import annotations

import json
import re

# emphasis, code spans, table cells, strikethrough, math, e-mail autolinks; `_` only where it can emphasise;
# `(` only after `]` (an inline link or image needs `](`; a reference needs a definition line, which no cell can
# make); `:` only before `//` and `.` only after `www` (autolinks). Brackets, parentheses and intraword `_` stay
# readable ("12 [10-14]", "0% (n=1)", "offensive_content").
_MARKDOWN_ACTIVE = re.compile(r"([\\`*|~$@]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|(?<=\])\(|:(?=//)|(?<=\bwww)\.)", re.I)
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def _visible(ch: str) -> str:
    return ascii(ch)[1:-1]


def terminal(text: object, *, keep: str = "\n\t") -> str:
    """The text with every non-printable character but those in `keep` (and the space) shown escaped."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() or ch == " " or ch in keep else _visible(ch) for ch in s)


def line(text: object) -> str:
    """One terminal line: line breaks shown escaped as well."""
    return terminal(text, keep="")


def json_line(document: str) -> str:
    """A JSON text for a terminal: every non-printable character (in strings, the only place one can be) written
    as its JSON escape, so the document reads back the same and nothing in it is obeyed."""
    if document.isprintable():
        return document
    return "".join(ch if ch.isprintable() or ch in " \n" else json.dumps(ch)[1:-1] for ch in document)


def markdown(text: object) -> str:
    """Inline Markdown that shows the text as it is: no link, image, emphasis, code span, HTML or table cell
    boundary can come from it, and it stays on one line."""
    flat = " ".join(str(text).splitlines())
    return "".join(_HTML.get(ch, ch) for ch in _MARKDOWN_ACTIVE.sub(r"\\\1", line(flat)))
