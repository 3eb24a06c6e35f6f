"""The report as blocks, rendered twice (markdown, self-contained HTML) so both files always say the same."""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

_DIGITS = 4


@dataclass
class Block:
    """One piece of the report: ``kind`` is h1, h2, h3, p, list, table, figure or pre."""

    kind: str
    content: object
    caption: str = ""


def fmt(value, digits: int = _DIGITS) -> str:
    """A cell as text: floats with ``digits`` decimals, integers as they are, missing values as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


#: Rows holding counts in otherwise metric tables (e.g. ``by_slice``'s last row): shown without decimals.
COUNT_ROWS = ("queries", "queries measured")


def column_digits(values) -> int:
    """Decimals a column is shown with: 0 when every float in it is whole (counts); 1 when one reaches 10 (seconds,
    percentages, words per document); 2 when one exceeds 1 (relevant documents per query); else :data:`_DIGITS`
    (metrics, which live in [0, 1])."""
    floats = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    if floats and all(v.is_integer() for v in floats):
        return 0
    largest = max((abs(v) for v in floats), default=0.0)
    return 1 if largest >= 10 else 2 if largest > 1 else _DIGITS


def _cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text (see :func:`fmt`), each column at its :func:`column_digits`; rows of :data:`COUNT_ROWS`
    as whole numbers."""
    out = frame.astype(object).copy()
    for i in range(frame.shape[1]):
        column = frame.iloc[:, i].tolist()
        digits = column_digits([v for r, v in zip(frame.index, column, strict=True) if r not in COUNT_ROWS])
        out.iloc[:, i] = [fmt(v, digits) for v in column]
    for row in COUNT_ROWS:
        if row in frame.index:
            out.loc[row] = [fmt(int(v)) if isinstance(v, float) and math.isfinite(v) else fmt(v)
                            for v in frame.loc[row].tolist()]  # fmt: skip
    return out


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of ``frame`` (index as the first column; floats to 4 decimals)."""
    head = [str(frame.index.name or "")] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in head) + " |", "|" + "---|" * len(head)]
    for idx, row in _cells(frame).iterrows():
        cells = [str(idx)] + row.tolist()
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def html_table(frame: pd.DataFrame) -> str:
    """The same table as HTML (pandas ``to_html``, same number format)."""
    return _cells(frame).to_html(border=0, classes="t", escape=True)


def render_markdown(blocks: list[Block], run_dir: Path) -> str:
    """The report as markdown (figures as relative links)."""
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append("#" * int(b.kind[1]) + " " + str(b.content))
        elif b.kind == "p":
            out.append(str(b.content))
        elif b.kind == "list":
            out.append("\n".join(f"- {item}" for item in b.content))
        elif b.kind == "table":
            out.append((f"*{b.caption}*\n\n" if b.caption else "") + markdown_table(b.content))
        elif b.kind == "figure":
            out.append(f"![{b.caption}]({Path(b.content).relative_to(run_dir).as_posix()})")
        elif b.kind == "pre":
            out.append("```\n" + str(b.content) + "\n```")
    return "\n\n".join(out) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table.t { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
table.t th, table.t td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: right; }
table.t th:first-child, table.t td:first-child, table.t tbody th { text-align: left; }
img { max-width: 100%; } pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
.caption { font-style: italic; color: #555; }
"""


def render_html(blocks: list[Block], title: str) -> str:
    """The report as one self-contained HTML page (figures embedded as PNG data URIs)."""
    body = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            body.append(f"<{b.kind}>{html.escape(str(b.content))}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{_inline(str(b.content))}</p>")
        elif b.kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(str(i))}</li>" for i in b.content) + "</ul>")
        elif b.kind == "table":
            cap = f'<p class="caption">{html.escape(b.caption)}</p>' if b.caption else ""
            body.append(cap + html_table(b.content))
        elif b.kind == "figure":
            data = base64.b64encode(Path(b.content).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")  # fmt: skip
        elif b.kind == "pre":
            body.append(f"<pre>{html.escape(str(b.content))}</pre>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")  # fmt: skip


def _inline(text: str) -> str:
    """Markdown's **bold** and `code` in a paragraph, as HTML."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)
