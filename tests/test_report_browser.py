"""The Snakemake report in a real browser: every table is shown as a table, every figure as a PNG with its PDF attached.

The session's finished demo (conftest ``demo_run``) gets ``snakemake --report``: one self-contained HTML file, every
result embedded as a data: URI. Playwright drives the system's headless Chromium (``executable_path``: no browser
download) through the Snakemake 9 report app as a reader would: it has no URL per result (a React app whose state says
what the content pane shows); a reader clicks a category in the menu ("Tables", "Figures"), then the eye (view) or info
(caption) button of a row of the list (rows are the labels: "Table 1", "Figure 2"). An HTML result or a PDF is shown in
an iframe whose ``src`` is its data: URI, a PNG as an ``<img>``; the FORMAT toggle switches a figure's row between its
PNG and its PDF. ``pytest -m slow -s`` prints the paths of the two screenshots taken."""

import base64
import contextlib
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from wfutil import assert_report, snakemake

from ftft import config as ftft_config
from ftft import figures, grid, tables
from ftft.layout import Layout

pytestmark = pytest.mark.slow

CONFIG_ARGS = ("--configfile", "config/demo.yaml")
TABLE_SHOT, FIGURE_SHOT = "3", "2"  # the views saved as screenshots


# ----------------------------------------------------------------------------- the browser
def open_report(page: Page, path: Path) -> None:
    page.goto(path.resolve().as_uri())
    page.locator("#app nav").first.wait_for()


def _exactly(text: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(text)}$")


def click(page: Page, selector: str, text: str) -> None:
    """Click the (first) element matching ``selector`` whose visible text is ``text`` (as a reader would)."""
    page.locator(selector).filter(has_text=_exactly(text)).first.click()


def click_row_button(page: Page, label: str, button: int = 0, shows: str | None = None) -> None:
    """Click a button of the result list row labelled ``label`` (0: view, 1: info); with ``shows`` (a path), again
    until the content pane shows that result (a click while the list re-renders can be lost: 2 of 22 runs)."""
    row = page.locator("nav tbody tr").filter(has=page.locator("td:first-child", has_text=_exactly(label)))
    for timeout in (20_000, 20_000, None):  # None: the page's default; the caller's own wait then names the result
        row.first.locator("td:last-child a").nth(button).click()
        if shows is None:
            return
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_function(SHOWN, arg=shows, timeout=timeout)
            return


def wait(page: Page, expression: str, arg=None):
    """The first truthy value of a JavaScript expression (or function of ``arg``) in the page."""
    return page.wait_for_function(expression, arg=arg).json_value()


def in_frame(page: Page, expression: str):
    """The first truthy value of ``expression`` in the page's (only) iframe, once its data: document is loaded."""
    return page.wait_for_selector("iframe[src^='data:']").content_frame().wait_for_function(expression).json_value()


def caption(page: Page, item: str) -> str:
    """The Description of ``item`` shown in the navbar (its caption, rendered from the .rst) after its info button."""
    click_row_button(page, item, button=1)
    return wait(
        page,
        "p => { const t = document.querySelector('nav li.prose')?.textContent.trim(); return t?.startsWith(p) && t; }",
        f"{item}.",
    )


# the content pane shows result ``p`` in an iframe (an HTML table, a PDF) or as an image (a PNG)
SHOWN_IN_FRAME = "p => document.querySelector('iframe')?.getAttribute('src') === results[p].data_uri"
SHOWN_AS_IMAGE = "p => [...document.images].some(i => i.getAttribute('src') === results[p].data_uri)"
SHOWN = f"p => ({SHOWN_IN_FRAME})(p) || ({SHOWN_AS_IMAGE})(p)"

# what a table looks like inside its iframe: every <table> with its header cells (text, colspan),
# body cells, bold cells (text, font weight), and where it is drawn
TABLE_DOM_JS = """(() => {
  if (document.readyState !== 'complete' || !document.querySelector('table')) return null;
  return {
    title: document.querySelector('h1')?.textContent || '',
    viewport: {width: innerWidth, height: innerHeight},
    tables: [...document.querySelectorAll('table')].map(t => ({
      box: t.getBoundingClientRect().toJSON(),
      head: t.tHead ? [...t.tHead.rows].map(tr => [...tr.cells].map(c => ({text: c.textContent.trim(), colspan: c.colSpan}))) : [],
      body: [...t.tBodies].flatMap(b => [...b.rows]).map(tr => [...tr.cells].map(c => c.textContent.trim())),
      bold: [...t.querySelectorAll('tbody td b')].map(b => [b.textContent.trim(), getComputedStyle(b).fontWeight]),
    })),
  };
})()"""


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def demo(demo_run):
    """The session's finished demo run (conftest ``demo_run``) and its report: (workflow copy, config, report)."""
    assert demo_run.res.returncode == 0, (demo_run.res.stdout + demo_run.res.stderr)[-5000:]
    t0 = time.monotonic()
    report = assert_report(demo_run.wf, demo_run.cfg, *CONFIG_ARGS)
    print(f"snakemake --report: {time.monotonic() - t0:.0f} s, {report.stat().st_size / 1e6:.1f} MB")
    return demo_run.wf, demo_run.cfg, report


@pytest.fixture(scope="module")
def page():
    """A 1500x950 page of the system's headless Chromium; ``page.dialogs``: every alert(), confirm(), prompt()."""
    names = (os.environ.get("FTFT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome")
    binary = next((shutil.which(n) for n in names if n and shutil.which(n)), None)
    if binary is None:
        pytest.fail("no chromium on PATH (apt-get install chromium; .ci/run installs it): the report test cannot run")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 950}, accept_downloads=False)
        page.set_default_timeout(180_000)  # a loaded machine decodes the 8 MB report slowly
        page.dialogs = []

        def dismiss(dialog):
            page.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", dismiss)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def embedded(demo, page):
    """The report's own index of results (``var results`` of the page): path -> entry."""
    open_report(page, demo[2])
    return page.evaluate("results")


# ----------------------------------------------------------------------------- expectations
def expected_models(cfg: dict, tid: str, kind: str) -> set[str]:
    """Display names of the models a table lists (from the config, never from the table)."""
    rows = cfg["tables"].get(tid, {}).get("rows", [])
    keys = {
        "cells": {r["main"] for r in rows} | {r["ref"] for r in rows if r.get("ref")},
        "flops": cfg["flops_models"],
        "significance": {m for t in grid.significance_tasks(cfg) for m in cfg["significance"]["refs"][t]},
        "easy": cfg["easy_ratio"]["refs"],
    }[kind]
    return {cfg["models"][k]["label"] for k in keys}


def expected_columns(cfg: dict, tid: str, kind: str) -> tuple[list[str], dict[str, int]]:
    """Dataset column labels a table shows, and its grouped headers with their spans."""
    if kind in ("flops", "easy"):
        return [cfg["tasks"][t]["id_test"]["label"] for t in ftft_config.active_tasks(cfg)], {}
    cols, groups = [], Counter()
    for task in grid.table_tasks(cfg, tid) if kind == "cells" else ():
        spec = cfg["tasks"][task]
        cols += [s.get("label") or s["name"] for s in (spec["id_test"], *spec["ood"])]
        groups.update(o["group"] for o in spec["ood"] if o.get("group"))
    return cols, groups


def config_keys(cfg: dict) -> set[str]:
    """Names the config uses internally: model keys and evaluation-set names (``anli_r1``)."""
    return set(cfg["models"]) | {s["name"] for t in cfg["tasks"].values() for s in (t["id_test"], *t["ood"])}


# ----------------------------------------------------------------------------- the tests
def test_every_table_is_shown_as_a_table(demo, page, embedded):
    wf, cfg, report = demo
    L = Layout(cfg["results"], cfg["resources"])
    open_report(page, report)
    click(page, "nav a", "Tables")
    keys = config_keys(cfg)
    for tid, kind in tables.table_ids(cfg).items():
        path = L.table(tid, "html")
        assert path in embedded, f"{path} is not in the report"
        assert embedded[path]["mime_type"] == "text/html" and embedded[path]["labels"] == {"table": f"Table {tid}"}
        click_row_button(page, f"Table {tid}", shows=path)
        # the content pane (right of the nav bar) now shows this table's HTML in an iframe that fills it,
        # measured once the nav bar's CSS transition has ended (mid-transition, the pane is narrower)
        wait(page, SHOWN_IN_FRAME, path)
        wait(page, "!document.getAnimations().length")
        frame, nav = page.locator("iframe").bounding_box(), page.locator("nav").first.bounding_box()
        vw, vh = page.viewport_size["width"], page.viewport_size["height"]
        assert frame["x"] >= nav["x"] + nav["width"] - 1 and frame["x"] + frame["width"] >= vw - 1, (frame, nav)
        assert frame["width"] > 0.4 * vw and frame["height"] > 0.6 * vh, frame
        dom = in_frame(page, TABLE_DOM_JS)
        assert dom["title"] == f"Table {tid}"
        assert dom["tables"], f"Table {tid}: no <table> in the page"
        first = dom["tables"][0]["box"]
        assert first["width"] > 200 and first["height"] > 50 and 0 <= first["top"] < dom["viewport"]["height"], (
            f"Table {tid} is not drawn in view: {first}"
        )
        header = [c for t in dom["tables"] for row in t["head"] for c in row]
        head = " | ".join(c["text"] for c in header)
        body = " | ".join(c for t in dom["tables"] for row in t["body"] for c in row)
        # display names from the config, never its keys
        for name in expected_models(cfg, tid, kind):
            assert name in body, f"Table {tid}: model {name!r} not shown ({body[:300]})"
        leaked = {k for k in keys if re.search(rf"(?<![\w-]){re.escape(k)}(?![\w-])", head + " | " + body)}
        assert not leaked, f"Table {tid} shows config keys {leaked}"
        columns, groups = expected_columns(cfg, tid, kind)
        for col in columns:
            assert col in head, f"Table {tid}: column {col!r} not in the header ({head})"
        # grouped headers: a header cell spanning the columns of its group (AdversarialNLI* over R1-R3)
        spans = {c["text"]: c["colspan"] for c in header}
        for g, n in groups.items():
            assert spans.get(g) == n, f"Table {tid}: no header {g!r} spanning {n} columns ({spans})"
        if kind != "significance":  # Table 5 has one header row (as the paper's)
            assert any(c["colspan"] > 1 for c in header), f"Table {tid}: no grouped header"
        # the best value per column in bold, as the paper prints it (Table 4 has none, Table 5
        # bolds p < 0.05 only)
        if kind in ("cells", "easy"):
            for i, t in enumerate(dom["tables"]):
                assert t["bold"], f"Table {tid}, block {i + 1}: no bold best value"
                assert all(re.fullmatch(r"-?\d+(\.\d+)?", b) and int(w) >= 600 for b, w in t["bold"]), t["bold"]
        if tid == TABLE_SHOT:
            page.wait_for_timeout(500)  # let the last layout settle
            page.screenshot(path=wf.parent / f"report-table{tid}.png")
            print(f"\nscreenshot of a table view: {wf.parent / f'report-table{tid}.png'}")
        # the caption (info button): computed from this config
        info = caption(page, f"Table {tid}")
        assert tables.caption(cfg, tid)[:80] in info, info[-800:]
        if kind in ("cells", "easy", "significance"):
            assert f"over {len(cfg['seeds'])} seed" in info, info[-800:]
        if kind == "cells":
            for task in grid.table_tasks(cfg, tid):
                assert f"{task}: {cfg['tasks'][task]['steps']} steps" in info, info[-800:]
        if tid == "1":
            assert f"the {round(cfg['q'] * 100)}% most ambiguous" in info, info[-800:]
        click(page, "nav a", "Tables")  # back to the list (breadcrumb)


def test_every_figure_is_a_png_with_its_pdf(demo, page, embedded):
    wf, cfg, report = demo
    L = Layout(cfg["results"], cfg["resources"])
    open_report(page, report)
    click(page, "nav a", "Figures")
    # one row per figure; the FORMAT toggle switches a row between its PNG (default) and its PDF
    toggle = wait(page, "document.querySelector('nav fieldset')?.innerText")
    assert "image (PNG)" in toggle and "print (PDF)" in toggle, toggle
    for fid in figures.figure_ids(cfg):
        png, pdf = L.figure(fid, "png"), L.figure(fid, "pdf")
        assert embedded[png]["mime_type"] == "image/png" and embedded[pdf]["mime_type"] == "application/pdf"
        assert base64.b64decode(embedded[pdf]["data_uri"].split("base64,", 1)[1])[:5] == b"%PDF-"
        click_row_button(page, f"Figure {fid}", shows=png)
        img = wait(
            page,
            "p => { const i = [...document.images].find(i => i.getAttribute('src') === results[p].data_uri);"
            " return i && i.complete && i.naturalWidth > 0 && {w: i.naturalWidth, h: i.naturalHeight,"
            " shown: i.getBoundingClientRect().width}; }",
            png,
        )
        assert img["w"] > 300 and img["shown"] > 300, img
        if fid == FIGURE_SHOT:
            page.wait_for_timeout(500)  # let the last layout settle
            page.screenshot(path=wf.parent / f"report-figure{fid}.png")
            print(f"\nscreenshot of a figure view: {wf.parent / f'report-figure{fid}.png'}")
        # the PDF is attached: the toggle shows it (embedded, in an iframe) ...
        click(page, "nav fieldset label", "print (PDF)")
        wait(page, SHOWN_IN_FRAME, pdf)
        click(page, "nav fieldset label", "image (PNG)")  # ... and back
        wait(page, SHOWN_AS_IMAGE, png)
        # the caption is the figure's, from the config
        info = caption(page, f"Figure {fid}")
        assert figures.caption(cfg, fid)[:60] in info, info[-800:]
        click(page, "nav a", "Figures")


def test_claims_comparison_and_failed_runs_are_tables_too(demo, page, embedded):
    """The Markdown reports are in the report as HTML (ftft.render.markdown_to_html): readable in the page."""
    wf, cfg, report = demo
    L = Layout(cfg["results"], cfg["resources"])
    reports = {
        "Claims": (L.claims("html"), "Claims of the paper", "Claims of the paper, checked on this run"),
        "Comparison with the paper": (L.comparison("html"), "Reproduced vs published", "Reproduced vs published"),
        "Failed runs": (L.failed_runs("html"), "Failed runs", "Failed runs"),
    }
    open_report(page, report)
    for category, (path, label, title) in reports.items():
        assert embedded[path]["mime_type"] == "text/html", path
        click(page, "nav a", category)
        click_row_button(page, label, shows=path)
        wait(page, SHOWN_IN_FRAME, path)
        if category == "Failed runs" and "| run |" not in (wf / L.failed_runs("md")).read_text():
            continue  # no failed run: the page says so, without a table
        dom = in_frame(page, TABLE_DOM_JS)
        assert dom["title"].startswith(title), dom["title"]
        t = dom["tables"][0]
        assert t["box"]["width"] > 200 and t["box"]["height"] > 30 and t["head"] and t["body"], t["box"]
        for tab in dom["tables"]:  # every row has the header's cells (a pipe table parsed as a table)
            assert all(len(row) == len(tab["head"][0]) for row in tab["body"]), (category, tab["head"][0])
        if category == "Claims":  # the claims' verdicts are table cells, not Markdown
            verdicts = [row[2] for row in t["body"]]
            assert all(v in ("holds", "does not hold", "not enough runs") for v in verdicts), verdicts
        click(page, "nav a", "Results")


def test_hostile_labels_are_literal_text_in_the_report(demo, page):
    """Labels built to inject markup, a javascript: link, script or a local file into the report's captions
    (overlaid on the finished demo, whose Table 5 and Figures 2-4 name these models) are shown as text:
    no dialog opens, the captions hold no element made from them, the file is not embedded."""
    wf, cfg, _ = demo
    secret = f"ftft-secret-{os.getpid()}-{time.time_ns()}"
    (wf / "secret.txt").write_text(secret + "\n")
    labels = {
        "deberta-v3-large": "<img src=x onerror=alert(1)><script>alert(2)</script> .. raw:: html",
        "electra-large": "javascript:alert(3) `y <javascript:alert(4)>`_ .. include:: secret.txt",
    }
    overlay = wf / "hostile-labels.yaml"
    overlay.write_text(yaml.safe_dump({"models": {k: {"label": v} for k, v in labels.items()}}))
    report = wf / "report-hostile.html"
    try:
        # the overlay joins the one --configfile: a second --configfile would replace the first
        res = snakemake(wf, *CONFIG_ARGS, overlay.name, "--report", report.name)
        assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
        assert secret not in report.read_text(errors="replace")
        page.dialogs.clear()
        open_report(page, report)
        for category, item, label in (("Tables", "Table 5", labels["deberta-v3-large"]),
                                      ("Figures", "Figure 2", labels["electra-large"]),
                                      ("Figures", "Figure 4", labels["deberta-v3-large"])):  # fmt: skip
            click(page, "nav a", category)
            info = caption(page, item)
            assert label in " ".join(info.split()), info[-800:]
            made = page.locator("nav li.prose").locator("img, script, iframe, object, a[href^=javascript]")
            assert not made.count(), made.evaluate_all("es => es.map(e => e.outerHTML)")  # the labels are text
            click(page, "nav a", "Results")
        page.wait_for_timeout(1000)  # an onerror handler fires after the failed image load
        assert not page.dialogs, page.dialogs
    finally:  # the demo's workflow copy is shared by other tests
        for f in (overlay, report, wf / "secret.txt"):
            f.unlink(missing_ok=True)
