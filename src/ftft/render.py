"""Rendering a table view as Markdown, LaTeX and HTML (the paper's layout).

A ``View`` is what a reader sees: blocks (one per task), each with label columns, value
columns under optional grouped headers (``AdversarialNLI: R1 R2 R3``), rows of cells, and
group headings between rows. The best value of each column within a block is bold, as in the
paper; ``gray`` rows are the paper's gray-shaded rows. ``tables.py`` builds the views; this
module only formats them.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field


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


@dataclass
class View:
    title: str
    caption: str
    blocks: list[Block]
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- formatting


def fmt_number(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if x != 0 and abs(x) < 10 ** (-digits):
        return f"{x:.2g}"
    return f"{x:.{digits}f}"


def _best(block: Block) -> list[set[int]]:
    """Per value column, the indices of the rows holding its best value."""
    out = []
    rows = [(i, r) for i, r in enumerate(block.rows) if isinstance(r, Row)]
    for j, col in enumerate(block.columns):
        vals = {i: r.values[j].number() for i, r in rows}
        vals = {i: v for i, v in vals.items() if v is not None}
        if col.best is None or len(vals) < 2:
            out.append(set())
            continue
        top = max(vals.values()) if col.best == "max" else min(vals.values())
        out.append({i for i, v in vals.items() if round(v, col.digits) == round(top, col.digits)})
    return out


def _cell_text(v: Value, col: Column, style: str, bold: bool) -> str:
    if v.text is not None:  # preformatted text is escaped like any other text
        s = v.text + v.suffix
        return tex_escape(s) if style == "tex" else html.escape(s) if style == "html" else s
    mean = fmt_number(v.mean, col.digits)
    std = None if v.std is None or math.isnan(v.std) else fmt_number(v.std, col.digits)
    if style == "md":
        s = f"**{mean}**" if bold and mean != "–" else mean
        return s + (f"<sub>{std}</sub>" if std else "") + v.suffix
    if style == "tex":
        if mean == "–":  # no number: an en dash in text mode (a Unicode dash in math mode does not compile)
            return "--" + tex_escape(v.suffix)
        body = rf"\mathbf{{{mean}}}" if bold else mean
        return f"${body}" + (f"_{{{std}}}" if std else "") + "$" + tex_escape(v.suffix)
    s = f"<b>{html.escape(mean)}</b>" if bold and mean != "–" else html.escape(mean)
    return s + (f"<sub>{html.escape(std)}</sub>" if std else "") + html.escape(v.suffix)


def _has_groups(block: Block) -> bool:
    return any(c.group for c in block.columns)


def _group_spans(block: Block) -> list[tuple[str, int]]:
    spans: list[tuple[str, int]] = []
    for c in block.columns:
        if spans and c.group and spans[-1][0] == c.group:
            spans[-1] = (c.group, spans[-1][1] + 1)
        else:
            spans.append((c.group, 1))
    return spans


# --------------------------------------------------------------------------- Markdown


def to_markdown(view: View, demo_note: str | None = None) -> str:
    out = [f"# {view.title}", "", view.caption, ""]
    for block in view.blocks:
        best = _best(block)
        header = block.label_columns + [f"{c.group} {c.label}".strip() for c in block.columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
        for i, r in enumerate(block.rows):
            if isinstance(r, str):
                lines.append("| " + " | ".join([f"*{r}*"] + [""] * (len(header) - 1)) + " |")
                continue
            cells = list(r.labels) + [
                _cell_text(v, c, "md", i in best[j])
                for j, (v, c) in enumerate(zip(r.values, block.columns, strict=True))
            ]
            lines.append("| " + " | ".join(cells) + " |")
        out += ([f"**{block.title}**", ""] if block.title else []) + lines + [""]
    notes = ([demo_note] if demo_note else []) + view.notes
    out += [f"- {n}" for n in notes]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- LaTeX


TEX_CHARS = {
    "\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "†": r"$^\dagger$", "‡": r"$^\ddagger$", "–": "--",
}  # fmt: skip


def tex_escape(s: str) -> str:
    """Text for LaTeX text mode: one pass over the characters (so no replacement is escaped again)."""
    return "".join(TEX_CHARS.get(ch, ch) for ch in s)


def to_latex(view: View, label: str, demo_note: str | None = None) -> str:
    parts = []
    for block in view.blocks:
        best = _best(block)
        n_lab, n = len(block.label_columns), len(block.label_columns) + len(block.columns)
        lines = [rf"\begin{{tabular}}{{{'l' * n_lab + 'c' * len(block.columns)}}}", r"\toprule"]
        if _has_groups(block):
            heads, rules, col = [""] * n_lab, [], n_lab + 1
            for g, span in _group_spans(block):
                heads.append(rf"\multicolumn{{{span}}}{{c}}{{{tex_escape(g)}}}" if g else "")
                if g:
                    rules.append(rf"\cmidrule(lr){{{col}-{col + span - 1}}}")
                heads += [""] * (span - 1) if not g else []
                col += span
            lines += [" & ".join(heads) + r" \\", " ".join(rules)]
        lines += [" & ".join(tex_escape(h) for h in block.label_columns + [c.label for c in block.columns]) + r" \\"]
        lines.append(r"\midrule")
        for i, r in enumerate(block.rows):
            if isinstance(r, str):
                lines.append(rf"\multicolumn{{{n}}}{{c}}{{\emph{{{tex_escape(r)}}}}} \\")
                continue
            cells = [tex_escape(x) for x in r.labels]
            cells += [
                _cell_text(v, c, "tex", i in best[j])
                for j, (v, c) in enumerate(zip(r.values, block.columns, strict=True))
            ]
            lines.append((r"\rowcolor{gray!25} " if r.gray else "") + " & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        parts.append((f"% {block.title}\n" if block.title else "") + "\n".join(lines))
    notes = ([demo_note] if demo_note else []) + view.notes
    note_tex = "".join(f"\n\\par\\footnotesize {tex_escape(n)}" for n in notes)
    return (
        "% generated by `ftft table`; needs \\usepackage{booktabs} and \\usepackage[table]{xcolor}\n"
        "\\begin{table}[t]\n\\centering\n\\small\n"
        + "\n\\medskip\n".join(parts)
        + f"{note_tex}\n\\caption{{{tex_escape(view.caption)}}}\n\\label{{tab:{label}}}\n\\end{{table}}\n"
    )


# --------------------------------------------------------------------------- HTML

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.2em; color: #222; }
h1 { font-size: 1.25em; } h2 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
table { border-collapse: collapse; margin-bottom: 0.8em; font-size: 0.9em; }
th, td { padding: 0.25em 0.6em; text-align: center; white-space: nowrap; }
td.l, th.l { text-align: left; }
thead tr:last-child th { border-bottom: 1px solid #444; }
thead tr:first-child th { border-top: 2px solid #444; }
tbody tr:last-child td { border-bottom: 2px solid #444; }
th.g { border-bottom: 1px solid #999; }
tr.gray td { background: #e6e6e6; }
tr.heading td { font-style: italic; text-align: center; background: #fafafa; }
sub { font-size: 0.75em; color: #555; }
p.caption { max-width: 60em; line-height: 1.4; }
ul.notes { font-size: 0.85em; color: #444; max-width: 60em; }
"""


def to_html(view: View, demo_note: str | None = None) -> str:
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(view.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(view.title)}</h1>",
    ]
    for block in view.blocks:
        best = _best(block)
        if block.title:
            out.append(f"<h2>{esc(block.title)}</h2>")
        out.append("<table><thead>")
        if _has_groups(block):
            row = [f'<th class="l" rowspan="2">{esc(h)}</th>' for h in block.label_columns]
            col = 0
            for g, span in _group_spans(block):
                label = block.columns[col].label
                row.append(
                    f'<th class="g" colspan="{span}">{esc(g)}</th>' if g else f'<th rowspan="2">{esc(label)}</th>'
                )
                col += span
            out.append("<tr>" + "".join(row) + "</tr>")
            out.append("<tr>" + "".join(f"<th>{esc(c.label)}</th>" for c in block.columns if c.group) + "</tr>")
        else:
            cells = [f'<th class="l">{esc(h)}</th>' for h in block.label_columns]
            cells += [f"<th>{esc(c.label)}</th>" for c in block.columns]
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</thead><tbody>")
        n = len(block.label_columns) + len(block.columns)
        for i, r in enumerate(block.rows):
            if isinstance(r, str):
                out.append(f'<tr class="heading"><td colspan="{n}">{esc(r)}</td></tr>')
                continue
            cells = [f'<td class="l">{esc(x)}</td>' for x in r.labels]
            cells += [
                f"<td>{_cell_text(v, c, 'html', i in best[j])}</td>"
                for j, (v, c) in enumerate(zip(r.values, block.columns, strict=True))
            ]
            out.append(('<tr class="gray">' if r.gray else "<tr>") + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
    out.append(f'<p class="caption">{esc(view.caption)}</p>')
    notes = ([demo_note] if demo_note else []) + view.notes
    if notes:
        out.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- Markdown reports as HTML


def _md_inline(text: str) -> str:
    """Inline Markdown of the workflow's reports: `code`, **bold**, *italic*, <sub>...</sub>."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for p in parts:
        if len(p) > 1 and p.startswith("`") and p.endswith("`"):
            out.append(f"<code>{html.escape(p[1:-1])}</code>")
            continue
        s = html.escape(p, quote=False).replace("&lt;sub&gt;", "<sub>").replace("&lt;/sub&gt;", "</sub>")
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", s)
        out.append(s)
    return "".join(out)


def _md_row(line: str) -> list[str]:
    """Cells of a pipe-table row as the report writers join them (" | "; a bare | inside a cell stays)."""
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [c.strip() for c in f" {inner} ".split(" | ")]


def markdown_to_html(md: str) -> str:
    """A Markdown report of this workflow (claims, comparison with the paper, failed runs) as a
    stand-alone HTML page styled like the tables, so that the Snakemake report shows it in the page.

    Covers what those writers produce: ATX headings, paragraphs, ``>`` quotes, ``-`` lists and
    pipe tables (header, ``|---|`` rule, rows), with inline code, bold, italic and subscripts.
    """
    lines = md.splitlines()
    title = next((ln.lstrip("#").strip() for ln in lines if ln.startswith("#")), "Report")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}{MD_CSS}</style></head><body>",
    ]
    i = 0
    while i < len(lines):
        ln = lines[i]
        if not ln.strip():
            i += 1
        elif ln.startswith("#"):
            level = min(len(ln) - len(ln.lstrip("#")), 3)
            out.append(f"<h{level}>{_md_inline(ln.lstrip('#').strip())}</h{level}>")
            i += 1
        elif ln.lstrip().startswith("|"):
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            header, rows = block[0], [r for r in block[1:] if not re.fullmatch(r"\s*\|?[\s:|-]*\|?\s*", r)]
            out.append('<table class="md"><thead><tr>')
            out.append("".join(f"<th>{_md_inline(c)}</th>" for c in _md_row(header)) + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{_md_inline(c)}</td>" for c in _md_row(r)) + "</tr>" for r in rows]
            out.append("</tbody></table>")
        elif ln.startswith(("- ", "* ")):
            items = []
            while i < len(lines) and lines[i].startswith(("- ", "* ")):
                items.append(f"<li>{_md_inline(lines[i][2:].strip())}</li>")
                i += 1
            out.append('<ul class="notes">' + "".join(items) + "</ul>")
        else:
            quote = ln.startswith(">")
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ", "* ")):
                para.append(lines[i].lstrip(">").strip() if quote else lines[i].strip())
                i += 1
            body = f'<p class="caption">{_md_inline(" ".join(para))}</p>'
            out.append(f"<blockquote>{body}</blockquote>" if quote else body)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


MD_CSS = """
table.md th, table.md td { text-align: left; white-space: normal; vertical-align: top; max-width: 28em; }
table.md tbody tr:nth-child(even) td { background: #f4f4f4; }
table.md thead tr:last-child th { border-bottom: 1px solid #444; }
blockquote { margin: 0.6em 0; padding: 0.1em 1em; border-left: 4px solid #c9a227; background: #fdf8e6; }
code { font-size: 0.9em; }
"""


def main(argv: list[str] | None = None) -> int:
    """``python -m ftft.render REPORT.md REPORT.html``: the HTML version of a Markdown report."""
    import argparse
    from pathlib import Path

    p = argparse.ArgumentParser(prog="python -m ftft.render", description=main.__doc__)
    p.add_argument("markdown", type=Path)
    p.add_argument("html", type=Path)
    args = p.parse_args(argv)
    args.html.write_text(markdown_to_html(args.markdown.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
