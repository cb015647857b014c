"""The one writer of every table-like artefact: paper tables (Markdown, LaTeX, HTML) and the Markdown reports
with their HTML page. User strings are literal text: escaped for HTML (jinja2 autoescape) and LaTeX
(``tex_escape``); the reports' Markdown through markdown-it-py without raw HTML (``markdown_to_html``).

A ``View`` (built by ``tables.py``) is a paper table: blocks (one per task) of label columns, value columns
under optional group headers, rows and group headings; each column's best value in a block is bold.
"""

import html
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup

from .io import write_text


@dataclass
class Column:
    label: str
    group: str = ""
    best: str | None = "max"  # bold the max (or "min") of the column within a block; None: never
    digits: int = 2


@dataclass
class Value:
    """A number (mean with optional std subscript), or a preformatted text."""

    mean: float | None = None
    std: float | None = None
    text: str | None = None
    suffix: str = ""  # e.g. "%", or a footnote mark

    def number(self) -> float | None:
        if self.text is not None or self.mean is None or math.isnan(self.mean):
            return None
        return float(self.mean)


@dataclass
class Row:
    labels: list[str]
    values: list[Value]
    gray: bool = False


@dataclass
class Block:
    title: str
    label_columns: list[str]
    columns: list[Column]
    rows: list[Row | str]  # a str is a group heading spanning the row

    def cells(self, style: str) -> list[list[str] | str]:
        """The rows as formatted cells (labels unescaped), the best value of each column in bold."""
        rows = [(i, r) for i, r in enumerate(self.rows) if isinstance(r, Row)]
        best = []
        for j, col in enumerate(self.columns):
            vals = {i: v for i, r in rows if (v := r.values[j].number()) is not None}
            top = (max if col.best == "max" else min)(vals.values()) if col.best and len(vals) > 1 else None
            best.append(
                {i for i, v in vals.items() if top is not None and round(v, col.digits) == round(top, col.digits)}
            )
        return [
            r if isinstance(r, str)
            else [*r.labels, *(cell(v, c, style, i in b) for v, c, b in zip(r.values, self.columns, best, strict=True))]
            for i, r in enumerate(self.rows)
        ]  # fmt: skip

    def groups(self) -> list[tuple[str, int, int]]:
        """(group, first column, span) of the value columns: adjacent columns of one group share a header."""
        out, col = [], 0
        for g, cols in itertools.groupby(self.columns, key=lambda c: c.group):
            n_cols = len(list(cols))
            for n in [n_cols] if g else [1] * n_cols:
                out.append((g, col, n))
                col += n
        return out


@dataclass
class View:
    title: str
    caption: str
    blocks: list[Block]
    notes: list[str] = field(default_factory=list)


def fmt_number(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if x != 0 and abs(x) < 10 ** (-digits):
        return f"{x:.2g}"
    return f"{x:.{digits}f}"


TEX_CHARS = {
    "\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "†": r"$^\dagger$", "‡": r"$^\ddagger$", "–": "--",
}  # fmt: skip


def tex_escape(s: str) -> str:
    """Text for LaTeX text mode: one pass over the characters (so no replacement is escaped again)."""
    return "".join(TEX_CHARS.get(ch, ch) for ch in s)


def cell(v: Value, col: Column, style: str, bold: bool) -> str:
    """A value as Markdown, LaTeX or HTML (escaped: preformatted text is escaped like any other text)."""
    esc = {"tex": tex_escape, "html": html.escape}.get(style, str)
    if v.text is not None:
        return esc(v.text + v.suffix)
    mean = fmt_number(v.mean, col.digits)
    std = None if v.std is None or math.isnan(v.std) else fmt_number(v.std, col.digits)
    bold = bold and mean != "–"
    if style == "tex":
        if mean == "–":  # no number: an en dash in text mode (a Unicode dash in math mode does not compile)
            return "--" + tex_escape(v.suffix)
        body = rf"\mathbf{{{mean}}}" if bold else mean
        return f"${body}" + (f"_{{{std}}}" if std else "") + "$" + tex_escape(v.suffix)
    b = ("**", "**") if style == "md" else ("<b>", "</b>")
    return (f"{b[0]}{mean}{b[1]}" if bold else mean) + (f"<sub>{std}</sub>" if std else "") + esc(v.suffix)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A pipe table: the one Markdown table writer of the package."""
    lines = ["| " + " | ".join(c.replace("|", r"\|") for c in r) + " |" for r in [header, *rows]]
    return "\n".join([lines[0], "|" + "|".join(["---"] * len(header)) + "|", *lines[1:]])


def to_markdown(view: View, demo_note: str | None = None) -> str:
    out = [f"# {view.title}", "", view.caption, ""]
    for block in view.blocks:
        header = block.label_columns + [f"{c.group} {c.label}".strip() for c in block.columns]
        rows = [[f"*{r}*"] + [""] * (len(header) - 1) if isinstance(r, str) else r for r in block.cells("md")]
        out += ([f"**{block.title}**", ""] if block.title else []) + [md_table(header, rows), ""]
    out += [f"- {n}" for n in ([demo_note] if demo_note else []) + view.notes]
    return "\n".join(out).rstrip() + "\n"


def to_latex(view: View, label: str, demo_note: str | None = None) -> str:
    notes = ([demo_note] if demo_note else []) + view.notes
    return TEX.render(view=view, label=label, notes=notes, zip=zip)


# One page for every artefact (templates/); autoescape makes every string literal text (cells are Markup: escaped).
_ENV = jinja2.Environment(loader=jinja2.PackageLoader("ftft"), autoescape=True, trim_blocks=True, lstrip_blocks=True,
                          keep_trailing_newline=True)  # fmt: skip
# LaTeX with <% %> / << >> delimiters (TeX's braces stay literal), no autoescape: strings go through | tex.
_TEX = _ENV.overlay(
    autoescape=False,
    block_start_string="<%",
    block_end_string="%>",
    variable_start_string="<<",
    variable_end_string=">>",
    comment_start_string="<#",
    comment_end_string="#>",
)
_TEX.filters["tex"] = tex_escape
TEX = _TEX.get_template("table.tex.j2")
PAGE = _ENV.get_template("page.html")
CSS, MD_CSS = (_ENV.loader.get_source(_ENV, f)[0] for f in ("table.css", "report.css"))


def to_html(view: View, demo_note: str | None = None) -> str:
    notes = ([demo_note] if demo_note else []) + view.notes
    return PAGE.render(title=view.title, css=Markup(CSS), view=view, notes=notes, zip=zip, body="")


# The reports' Markdown: headings, quotes, lists, pipe tables, emphasis and code; no raw HTML, link, image or
# entity (user strings stay literal text); the ``<sub>`` the writers put around a std is the one tag restored.
_MD = MarkdownIt("zero").enable(["heading", "blockquote", "list", "table", "emphasis", "backticks", "escape"])


def markdown_to_html(md: str) -> str:
    """A Markdown report (``md_table`` and the report writers) as a stand-alone HTML page styled like the tables."""
    body = _MD.render(md).replace("&lt;sub&gt;", "<sub>").replace("&lt;/sub&gt;", "</sub>")
    title = next((ln.lstrip("#").strip() for ln in md.splitlines() if ln.startswith("#")), "Report")
    return PAGE.render(title=title, css=Markup(CSS + MD_CSS), view=None, body=Markup(body))


def out_path(prefix: str | Path, ext: str) -> Path:
    prefix = Path(prefix)
    return prefix.with_name(f"{prefix.name}.{ext}")


def write_table(prefix: str | Path, view: View, label: str, note: str | None) -> None:
    """``PREFIX.md``, ``.tex`` and ``.html`` of a paper table (atomic writes)."""
    write_text(out_path(prefix, "md"), to_markdown(view, note))
    write_text(out_path(prefix, "tex"), to_latex(view, label, note))
    write_text(out_path(prefix, "html"), to_html(view, note))


def write_report(prefix: str | Path, md: str, csv: str | None = None) -> None:
    """``PREFIX.md`` and its HTML page ``PREFIX.html`` (and ``PREFIX.csv`` when given; atomic writes)."""
    if csv is not None:
        write_text(out_path(prefix, "csv"), csv)
    write_text(out_path(prefix, "md"), md)
    write_text(out_path(prefix, "html"), markdown_to_html(md))
