"""Rendering of the tables (ftft.render): bold best values, grouped headers, gray rows, labels,
CSV number format; on the written synthetic tables and on small hand-made views."""

import re
from pathlib import Path

import helpers_runs as H
import numpy as np
import pandas as pd
import pytest

from ftft import grid, labels, render, tables
from ftft.layout import Layout


@pytest.fixture(scope="module")
def built(cfg, results):
    return H.built_tables(results, cfg)


def text(results, tid, ext):
    return open(Layout(results).table(tid, ext)).read()


def md_value(cell: str) -> tuple[str, bool]:
    """('72.34', bold?) of a Markdown value cell such as '**72.34**<sub>0.12</sub>'."""
    main = cell.split("<sub>")[0]
    return main.strip("*"), main.startswith("**")


@pytest.mark.parametrize("tid", ["1", "3", "6", "9"])
def test_best_value_per_column_is_bold_within_its_block(cfg, results, built, tid):
    df = H.read_table_csv(results, tid)
    blocks = H.md_blocks(text(results, tid, "md"))
    n_bold = 0
    for task in grid.table_tasks(cfg, tid):
        header, rows = next(v for k, v in blocks.items() if k.startswith(task.upper()))
        rows = [r for r in rows if not r[0].startswith("*")]  # group headings
        cells = [c for c in grid.table_cells(cfg, tid) if c.task == task]
        assert len(rows) == len(cells)
        has_cost = header[3] == "Cost"
        if has_cost:
            assert not any(md_value(r[3])[1] for r in rows)  # the cost column is never bold
        for j, d in enumerate(grid.task_eval_sets(cfg, task)):
            col = 3 + has_cost + j
            means = []
            for c in cells:
                sel = df[(df["task"] == task) & (df["row"] == c.row) & (df["dataset"] == d)]
                means.append(float(sel["mean"].iloc[0]))
            top = round(np.nanmax(means), 2)
            want = [not np.isnan(m) and round(m, 2) == top for m in means]
            got = [md_value(r[col])[1] for r in rows]
            assert got == want, (task, d)
            assert [md_value(r[col])[0] for r in rows] == ["–" if np.isnan(m) else f"{m:.2f}" for m in means]
            n_bold += sum(want)
    assert text(results, tid, "html").count("<b>") == n_bold
    assert text(results, tid, "tex").count(r"\mathbf{") == n_bold


def test_grouped_headers(results, built):
    html1 = text(results, "1", "html")
    assert '<th class="g" colspan="3">AdversarialNLI*</th>' in html1
    assert '<th rowspan="2">MultiNLI*</th>' in html1 and '<th rowspan="2">WANLI*</th>' in html1
    assert "<tr><th>R1</th><th>R2</th><th>R3</th></tr>" in html1
    tex1 = text(results, "1", "tex")
    assert r"\multicolumn{3}{c}{AdversarialNLI*}" in tex1 and r"\cmidrule(lr){6-8}" in tex1  # after 3 labels + 2 sets
    header, _ = H.md_blocks(text(results, "1", "md"))["NLI (accuracy, %)"]
    assert header[3:] == ["MultiNLI*", "WANLI*", "AdversarialNLI* R1", "AdversarialNLI* R2", "AdversarialNLI* R3"]
    html6 = text(results, "6", "html")
    for g in ("DynaHate-Original*", "DynaHate-Perturb*"):
        assert f'<th class="g" colspan="3">{g}</th>' in html6
    assert r"\cmidrule(lr){5-7} \cmidrule(lr){8-10}" in text(results, "6", "tex")
    html3 = text(results, "3", "html")  # the NLI block's cost column spans both header rows
    assert '<th rowspan="2">Cost</th><th rowspan="2">MultiNLI*</th>' in html3


def test_gray_rows_are_the_marked_rows(cfg, results, built):
    for tid in ("2", "7"):
        df = H.read_table_csv(results, tid)
        marked = df[df["marked"].astype(str) == "True"].drop_duplicates(["method", "main_model", "ref_model"])
        want = {
            (labels.model_label(cfg, r.main_model), labels.model_label(cfg, r.ref_model or "none"))
            for r in marked.itertuples()
        }
        html = text(results, tid, "html")
        gray = re.findall(r'<tr class="gray">(.*?)</tr>', html)
        shown = [re.findall(r'<td class="l">(.*?)</td>', g) for g in gray]
        assert {(lab[1], lab[2]) for lab in shown} == want and len(gray) == len(want) >= 2
        assert all("‡" in lab[0] for lab in shown)
        assert text(results, tid, "tex").count(r"\rowcolor{gray!25}") == len(want)


def test_csv_floats_are_rounded(built, results, cfg):
    long = [v for df in built.values() for v in df["mean"].dropna() if len(repr(float(v))) > 16]
    assert long  # the frames do hold float noise (e.g. 100 * 0.57 = 56.99999999999999) ...
    for tid in built:
        raw = text(results, tid, "csv")
        for tok in re.findall(r"(?<![\w.])-?\d+\.\d+(?:e[+-]?\d+)?", raw):  # ... that the CSV files do not
            digits = tok.lstrip("-").split("e")[0].replace(".", "").lstrip("0")
            assert len(digits) <= 10, (tid, tok)
        assert not re.search(r"\d(9999999|0000000)\d*(e[+-]?\d+)?(,|$)", raw, re.M), tid
        back = H.read_table_csv(results, tid)
        np.testing.assert_allclose(back["mean"].astype(float), built[tid]["mean"].astype(float), rtol=1e-9)
    printed = float(100 * 0.57)
    assert repr(printed) == "56.99999999999999" and (tables.CSV_FLOAT % printed) == "57"


def test_display_labels_instead_of_keys(cfg, results, built):
    for ext in ("md", "html", "tex"):
        body = text(results, "1", ext)
        assert "DeBERTaV3-Large" in body and "ELECTRA-Small" in body and "MultiNLI*" in body and "WANLI*" in body
        assert "deberta-v3" not in body and "electra-small" not in body and "anli_r1" not in body, ext
        assert re.search(r"\bmnli\b", body) is None and re.search(r"\bwanli\b", body) is None
    header, rows = H.md_blocks(text(results, "1", "md"))["NLI (accuracy, %)"]
    assert header[:3] == ["Mode", "Main Model", "Ref. Model"]
    assert ["ERM", "DeBERTaV3-Small", "-"] == rows[0][:3]
    assert any(r[:3] == ["DM", "DeBERTaV3-Large", "Random"] for r in rows)
    groups = [r[0].strip("*") for r in rows if r[0].startswith("*")]  # group headings between the rows, in order
    assert groups == ["Across different model sizes", "Across different pretraining methods"]
    csv = pd.read_csv(Layout(results).table("1", "csv"), dtype=str, keep_default_na=False)
    assert set(csv["row"].astype(int)) == set(range(len(cfg["tables"]["1"]["rows"]))) == set(range(len(rows) - 2))


# --------------------------------------------------------------------------- hand-made views


def small_view() -> render.View:
    C, V, R = render.Column, render.Value, render.Row
    cols = [
        C("Loss", best="min"),
        C("R1", group="Adv_NLI"),
        C("R2", group="Adv_NLI"),
        C("Cost", best=None, digits=1),
        C("p", best=None),
    ]
    rows = [
        "Group <A>",
        R(["ERM", "x_1"], [V(0.5), V(70.0, 0.5), V(1.0), V(32.0), V(text="0.0100")]),
        R(["DM", "y%"], [V(0.2), V(70.001, 0.25), V(float("nan")), V(64.0), V(text="0.5", suffix="†")], gray=True),
        R(["JTT", "z"], [V(0.9), V(60.0), V(0.004), V(None), V(text="–")]),
    ]
    return render.View("Table X", "Caption 5% & more", [render.Block("NLI", ["Mode", "Model"], cols, rows)], ["n_1"])


def test_render_markdown_rules():
    md = render.to_markdown(small_view(), demo_note="DEMO")
    header, rows = H.md_blocks(md)["NLI"]
    assert header == ["Mode", "Model", "Loss", "Adv_NLI R1", "Adv_NLI R2", "Cost", "p"]
    assert rows[0] == ["*Group <A>*", "", "", "", "", "", ""]
    erm, dm, jtt = rows[1:]
    assert dm[2] == "**0.20**" and erm[2] == "0.50"  # best="min"
    assert erm[3] == "**70.00**<sub>0.50</sub>" and dm[3] == "**70.00**<sub>0.25</sub>"  # equal when rounded: both
    assert erm[4] == "**1.00**" and dm[4] == "–" and jtt[4] == "0.004"  # NaN ignored; tiny value keeps 2 sig. digits
    assert erm[5] == "32.0" and jtt[5] == "–"  # best=None: never bold; one digit
    assert dm[6] == "0.5†" and erm[6] == "0.0100"
    assert md.index("- DEMO") < md.index("- n_1")  # the demo note comes first
    rows = [render.Row(["m"], [render.Value(1.0), render.Value(None)])]
    view = render.View("T", "c", [render.Block("", ["Model"], [render.Column("A"), render.Column("B")], rows)])
    assert "| m | 1.00 | – |" in render.to_markdown(view)  # a single value in a column is not "best"
    assert "\\cmidrule" not in render.to_latex(view, "t")  # no groups
    assert '<tr><th class="l">Model</th><th>A</th><th>B</th></tr>' in render.to_html(view)


def test_render_latex_and_html_rules():
    tex = render.to_latex(small_view(), "tx", demo_note="DEMO")
    assert r"\multicolumn{2}{c}{Adv\_NLI}" in tex and r"\cmidrule(lr){4-5}" in tex
    assert r"\multicolumn{7}{c}{\emph{Group \textless{}A\textgreater{}}}" in tex
    assert r"\rowcolor{gray!25} DM & y\% & $\mathbf{0.20}$" in tex
    assert r"0.5$^\dagger$" in tex and r"\caption{Caption 5\% \& more}" in tex and r"\label{tab:tx}" in tex
    assert r"\emph{Group \textless{}A\textgreater{}}" in tex and "& -- &" in tex  # escaped text; no number: --
    assert r"x\_1" in tex and r"\footnotesize n\_1" in tex
    html = render.to_html(small_view())
    assert '<th class="g" colspan="2">Adv_NLI</th>' in html and '<th rowspan="2">Loss</th>' in html
    assert '<tr class="heading"><td colspan="7">Group &lt;A&gt;</td></tr>' in html
    assert html.count('<tr class="gray">') == 1 and "<b>0.20</b>" in html
    assert "<td><b>70.00</b><sub>0.50</sub></td>" in html and "<td>0.5†</td>" in html
    block = render.Block(
        "", ["x"], [render.Column("p", best=None)], [render.Row(["a"], [render.Value(text="p < 0.05")])]
    )
    html_t = render.to_html(render.View("T", "c", [block]))
    assert "<td>p &lt; 0.05</td>" in html_t


def test_markdown_reports_as_html():
    """The claims / comparison / failed-runs Markdown as the HTML page the Snakemake report shows: user text
    literal (no raw HTML, link or entity), only the writers' std subscript is a tag."""
    rows = [["`runs/a<b>`", "**holds**", "72.3<sub>0.1</sub>", ""], ["MultiNLI* vs WANLI*", "x", "[l](http://e)", "y"]]
    md = "\n".join(
        [
            "# Claims: *one* of 2",
            "",
            "> **Demo mode**: not comparable.",
            "",
            "Seeds: 0; p = (1 + #{diff <= 0}) / (1 + n) <script>x</script> &amp;.",
            "",
            render.md_table(["run", "mean |diff|", "value", "note"], rows),
            "",
            "- a note with `code`",
        ]
    )
    page = render.markdown_to_html(md)
    assert "<title>Claims: *one* of 2</title>" in page and "<h1>Claims: <em>one</em> of 2</h1>" in page
    assert "<blockquote>\n<p><strong>Demo mode</strong>" in page
    assert "#{diff &lt;= 0}" in page and "&lt;script&gt;" in page and "&amp;amp;." in page  # text is escaped
    assert "<th>run</th>\n<th>mean |diff|</th>\n<th>value</th>\n<th>note</th>" in page  # an escaped | stays
    cells = [re.findall("<td>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[1], re.S)]
    assert cells[0] == ["<code>runs/a&lt;b&gt;</code>", "<strong>holds</strong>", "72.3<sub>0.1</sub>", ""]
    assert cells[1] == ["MultiNLI* vs WANLI*", "x", "[l](http://e)", "y"]  # a label's * is no emphasis; no link
    assert "<ul>\n<li>a note with <code>code</code></li>\n</ul>" in page


HOSTILE = [
    ".. raw:: html <script>alert(1)</script>",
    ".. include:: /etc/hostname",
    "javascript:alert(1)",
    "`x <javascript:alert(1)>`_ |s| :raw-html:`<b>` [#]_ www.evil.com a@b.c",
]


def test_report_captions_render_user_text_literally(tmp_path):
    """The table and figure captions as Snakemake renders them (Jinja, then docutils with its defaults: raw
    HTML and file inclusion on) show hostile labels as literal text: no markup, link, raw HTML or file."""
    import html as html_lib

    import jinja2
    from docutils.core import publish_parts

    from ftft import config
    from ftft.workflow import Plan, rst_text

    items = [("table", "x", rst_text("a\n\n.. include:: /etc/hostname\n\n.. raw:: html\n\n   <script>x</script>"))]
    for lab in HOSTILE:  # the main models of Table 5 and Figures 2-4
        models = {k: {"label": lab} for k in ("deberta-v3-large", "electra-large")}
        plan = Plan(config.load("workflow_config.yaml", "config/demo.yaml", overrides={"models": models}))
        items += [("table", t, plan.caption("table", t)) for t in plan.table_ids]
        items += [("figure", f, plan.caption("figure", f)) for f in plan.figure_ids]
    shown = set()
    for kind, key, caption in items:
        rst = (Path(config.__file__).parent / "report" / f"{kind}.rst").read_text()
        snake = {"wildcards": {kind: key}, "params": {"caption": caption}}
        html = publish_parts(jinja2.Template(rst).render(snakemake=snake), writer_name="html")["body"]
        assert "<script" not in html and "<a " not in html and "<b>" not in html and "system-message" not in html
        text = html_lib.unescape(re.sub(r"<[^>]+>", "", html))
        shown |= {lab for lab in HOSTILE if lab in " ".join(text.split())}
    assert shown == set(HOSTILE)  # every label reached a caption, as literal text
