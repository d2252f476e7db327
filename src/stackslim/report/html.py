"""A self-contained HTML page: text, tables and PNG images embedded as base64, no network.

    page = Page("stackslim study: whisper-base on synth-commands")
    page.heading("Similarity")
    page.paragraph("Linear CKA over pooled states ...")
    page.image("runs/study/analyze/heatmap_cka.png", "CKA heatmap")
    page.table(rows, columns=[("variant", "Variant"), ("params", "Parameters")])
    page.write("runs/study/report.html")
"""
from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any, Sequence

from ..results import write_atomic

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1d2430;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #d8dde6;padding-bottom:.2em}
.sub{color:#5b6575}
table{border-collapse:collapse;margin:1em 0;font-size:.92em;width:100%}
th,td{border:1px solid #d8dde6;padding:.35em .6em;text-align:right}
th{background:#f2f4f8}td:first-child,th:first-child{text-align:left}
tr.hl td{background:#fff8e0}.wide{overflow-x:auto}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs figure{margin:0;flex:1 1 320px}
img{max-width:100%;border:1px solid #e4e7ee}figcaption{font-size:.85em;color:#5b6575}
ul.findings li{margin:.3em 0}code{background:#f2f4f8;padding:0 .25em;border-radius:3px}
.note{font-size:.88em;color:#5b6575}
"""


def fmt(value: Any, digits: int = 3) -> str:
    """Human formatting: ints with thousands separators, floats to `digits` significant places."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN never shown as a number
            return "–"
        return f"{value:,.0f}" if abs(value) >= 10 ** digits else f"{value:.{digits}g}"
    return str(value)


class Page:
    """An HTML document built section by section."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self.parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        if subtitle:
            self.parts.append(f'<p class="sub">{html.escape(subtitle)}</p>')

    def heading(self, text: str, anchor: str = "") -> None:
        a = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h2{a}>{html.escape(text)}</h2>")

    def paragraph(self, text: str, cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")

    def bullets(self, items: Sequence[str], cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        lis = "".join(f"<li>{html.escape(i)}</li>" for i in items)
        self.parts.append(f"<ul{c}>{lis}</ul>")

    def images(self, figures: Sequence[tuple[str | os.PathLike, str]]) -> None:
        """PNG files side by side, embedded; missing files are skipped with a note."""
        figs = []
        for path, caption in figures:
            p = Path(path)
            if not p.is_file():
                figs.append(f"<figure><figcaption>(missing: {html.escape(p.name)})</figcaption></figure>")
                continue
            data = base64.b64encode(p.read_bytes()).decode()
            figs.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        self.parts.append(f'<div class="figs">{"".join(figs)}</div>')

    def table(self, rows: Sequence[dict], columns: Sequence[tuple[str, str]],
              highlight: str | None = None) -> None:
        """Rows of dicts; `columns` = (key, header). Rows with row[highlight] truthy are shaded."""
        head = "".join(f"<th>{html.escape(h)}</th>" for _, h in columns)
        body = []
        for r in rows:
            cls = ' class="hl"' if highlight and r.get(highlight) else ""
            cells = "".join(f"<td>{html.escape(fmt(r.get(k)))}</td>" for k, _ in columns)
            body.append(f"<tr{cls}>{cells}</tr>")
        # wide tables (the study's: 16 columns) scroll inside the page instead of spilling out
        self.parts.append(f"<div class=\"wide\"><table><thead><tr>{head}</tr></thead>"
                          f"<tbody>{''.join(body)}</tbody></table></div>")

    def render(self) -> str:
        return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
                + "\n".join(self.parts) + "</body></html>\n")

    def write(self, path: str | os.PathLike) -> Path:
        return write_atomic(path, self.render())
