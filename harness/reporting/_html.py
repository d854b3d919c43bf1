"""The self-contained HTML page: every string from the store escaped, plots inlined as data: images,
a strict Content-Security-Policy, no script and no external URL.

Model outputs, prompts and judge explanations are adversarial text. Everything that is not markup
written here goes through `esc` (html.escape with quotes); markup is wrapped in `Raw` to say so.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
header { background: #1f2937; color: #f9fafb; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header .meta { color: #d1d5db; font-size: 13px; }
main { padding: 8px 24px 48px 24px; }
nav { margin: 12px 0; font-size: 13px; }
nav a { margin-right: 14px; color: #1f4e99; }
h2 { margin-top: 36px; border-bottom: 2px solid #e5e7eb; padding-bottom: 4px; }
h3 { margin-top: 24px; }
table { border-collapse: collapse; margin: 8px 0 16px 0; background: #fff; font-size: 12.5px; }
th, td { border: 1px solid #e5e7eb; padding: 3px 6px; text-align: right; vertical-align: top; }
td { white-space: nowrap; }
td.t { white-space: normal; overflow-wrap: anywhere; min-width: 5em; max-width: 26em; }
th { background: #f3f4f6; position: sticky; top: 0; }
td.t, th.t { text-align: left; }
tr.front td { background: #fff5f5; }
.glance { background: #fff; border: 1px solid #e5e7eb; border-left: 5px solid #d62728; padding: 10px 16px; margin: 16px 0; }
.glance li { margin: 4px 0; }
.note { color: #4b5563; font-size: 13px; }
.empty { color: #6b7280; font-style: italic; background: #fff; border: 1px dashed #d1d5db; padding: 8px 12px; display: inline-block; }
.plot { background: #fff; border: 1px solid #e5e7eb; margin: 8px 0; max-width: 100%; }
pre.text { white-space: pre-wrap; word-break: break-word; background: #f9fafb; border: 1px solid #e5e7eb; padding: 6px 8px; margin: 4px 0; max-height: 18em; overflow: auto; font-size: 12px; }
.example { background: #fff; border: 1px solid #e5e7eb; padding: 8px 12px; margin: 10px 0; }
.example .who { font-size: 12px; color: #4b5563; }
details { margin: 6px 0; }
summary { cursor: pointer; }
.star { color: #d62728; font-weight: bold; }
li.warn, p.warn { color: #9a3412; font-weight: 600; }
.scroll { overflow-x: auto; max-width: 100%; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
"""


class Raw(str):
    """Markup written by this module (never text from the store)."""


def esc(value: Any) -> str:
    if isinstance(value, Raw):
        return value
    return html.escape("" if value is None else str(value), quote=True)


def tag(name: str, body: Any = "", cls: str | None = None, **attrs: str) -> Raw:
    attr = "".join(f' {k.rstrip("_")}="{esc(v)}"' for k, v in attrs.items())
    if cls:
        attr = f' class="{esc(cls)}"' + attr
    return Raw(f"<{name}{attr}>{esc(body)}</{name}>")


def join(parts: Iterable[Any]) -> Raw:
    return Raw("".join(esc(p) for p in parts))


@dataclass
class Column:
    title: str
    text: bool = False  # left-aligned text column
    title_attr: str | None = None


def table(columns: Sequence[Column], rows: Iterable[Sequence[Any]], row_classes: Sequence[str] | None = None) -> Raw:
    head = join(Raw(f'<th class="t" title="{esc(c.title_attr or "")}">{esc(c.title)}</th>') if c.text
                else Raw(f'<th title="{esc(c.title_attr or "")}">{esc(c.title)}</th>') for c in columns)
    body = []
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes and i < len(row_classes) else ""
        cells = join(tag("td", v, "t" if c.text else None) for c, v in zip(columns, row))
        body.append(Raw(f'<tr class="{esc(cls)}">{cells}</tr>') if cls else Raw(f"<tr>{cells}</tr>"))
    return Raw(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{join(body)}</tbody></table></div>')


def img(uri: str, alt: str) -> Raw:
    if not uri.startswith("data:image/"):
        raise ValueError("plots must be inlined as data: images")
    return Raw(f'<img class="plot" src="{esc(uri)}" alt="{esc(alt)}">')


def empty(message: str) -> Raw:
    return tag("p", message, "empty")


def text_block(text: Any, limit: int = 4000) -> Raw:
    s = "" if text is None else str(text)
    if len(s) > limit:
        s = s[:limit] + f" ... [{len(s) - limit} more characters]"
    return tag("pre", s, "text")


@dataclass
class Section:
    anchor: str
    title: str
    body: list[Any] = field(default_factory=list)
    style: str = ""  # CSS rules of this section only (generated, never text from the store)

    def add(self, *parts: Any) -> Section:
        self.body.extend(parts)
        return self


def page(title: str, meta_lines: Sequence[str], sections: Sequence[Section]) -> str:
    nav = join(Raw(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>') for s in sections)
    meta = join(tag("div", line) for line in meta_lines)
    style = STYLE + "".join(s.style for s in sections)
    body = join(Raw(f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{join(s.body)}</section>')
                for s in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{style}</style></head>\n"
        f"<body><header><h1>{esc(title)}</h1>{meta}</header><main><nav>{nav}</nav>{body}</main></body></html>\n"
    )
