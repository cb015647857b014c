"""The Snakemake report in a real browser: every table is shown as a table, every figure as a PNG
with its PDF attached.

The demo (``config/demo.yaml``, the session's ``demo_run`` from conftest, which the demo
end-to-end test in test_workflow.py also checks) runs through real ``snakemake`` in a copy of
the workflow; ``snakemake --report report.html`` then builds the
self-contained report (one HTML file, every result embedded as a data: URI). Headless Chromium
opens it, driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: no Python
package needed), which can click, read the document of an iframe and take screenshots.

How the Snakemake 9 report app addresses a result: it has no URL per result (no hash or query
routing); it is a React app whose state says what the content pane shows. A reader reaches a
result by clicking its category in the menu ("Tables", "Figures"), then the eye button of its
row in the list (rows are the result's labels: "Table 1", "Figure 2"). An HTML result (the
tables) is then shown in an iframe whose ``src`` is the embedded data: URI, an image (the
figures' PNG) as an ``<img>``, a PDF in an iframe. The PNG and PDF of a figure share a row; the
FORMAT toggle above the list switches between them. The info button shows the result's caption.
This test clicks exactly these controls.

``pytest -m slow -s tests/test_report_browser.py`` prints the paths of two screenshots (a table
view and a figure view) under the pytest tmp folder.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from wfutil import assert_report, snakemake

from ftft import config as ftft_config
from ftft import figures, grid, tables
from ftft.layout import Layout

pytestmark = pytest.mark.slow

CONFIG_ARGS = ("--configfile", "config/demo.yaml")
TABLE_SHOT, FIGURE_SHOT = "3", "2"  # the views saved as screenshots


# ----------------------------------------------------------------------------- the browser
def chromium_binary() -> str:
    for name in (os.environ.get("FTFT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    pytest.fail("no chromium on PATH (apt-get install chromium; .ci/run installs it): the report test cannot run")


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fd 3: commands in, fd 4:
    replies and events out, each a JSON message ended by a NUL byte)."""

    def __init__(self, width: int = 1500, height: int = 950):
        r_cmd, self._w_cmd = os.pipe()
        self._r_evt, w_evt = os.pipe()
        # the child's ends, moved above fd 9 so that dup2 onto 3 and 4 cannot clobber them
        child_r, child_w = fcntl.fcntl(r_cmd, fcntl.F_DUPFD, 10), fcntl.fcntl(w_evt, fcntl.F_DUPFD, 10)
        os.close(r_cmd)
        os.close(w_evt)
        self.profile = tempfile.mkdtemp(prefix="ftft-chromium-")

        def child_fds():
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        args = [
            chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "--hide-scrollbars",
            "--no-first-run", "--no-default-browser-check", "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, preexec_fn=child_fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.close(child_r)
        os.close(child_w)
        self._id, self._buf, self.dialogs = 0, b"", []
        page = next(t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.send("Browser.setDownloadBehavior", behavior="deny")
        self.page("Page.enable")
        self.page("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    # protocol
    def _message(self, timeout: float) -> dict:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._r_evt], [], [], timeout)
            if not ready:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._r_evt, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its pipe (crashed?)")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, session: str | None = None, timeout: float = 60, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params} | ({"sessionId": session} if session else {})
        os.write(self._w_cmd, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._message(timeout)
            if m.get("method") == "Page.javascriptDialogOpening":  # alert(), confirm(), prompt()
                self.dialogs.append(m["params"])
            if m.get("id") == self._id:  # any other event is not needed here
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]

    def page(self, method: str, **params) -> dict:
        return self.send(method, session=self.session, **params)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
            self.proc.wait(20)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w_cmd)
        os.close(self._r_evt)
        shutil.rmtree(self.profile, ignore_errors=True)

    # page helpers
    def js(self, expression: str, context: int | None = None):
        """The value of a JavaScript expression in the page (or in the execution context given)."""
        res = self.page(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
            **({"contextId": context} if context else {}),
        )
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression[:200]}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait(self, expression: str, what: str, timeout: float = 60):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out ({timeout:.0f} s) waiting for {what}")

    def open(self, path: Path) -> None:
        self.page("Page.navigate", url=path.resolve().as_uri())
        self.wait("document.readyState === 'complete' && !!document.querySelector('#app nav')", "the report app")

    def click(self, selector: str, text: str) -> None:
        """Click the element matching ``selector`` whose visible text is ``text`` (as a reader would)."""
        ok = self.js(
            f"(() => {{ const el = [...document.querySelectorAll({json.dumps(selector)})]"
            f".find(e => e.textContent.trim() === {json.dumps(text)}); if (!el) return false; el.click(); return true; }})()"
        )
        assert ok, f"no {selector} reading {text!r} in the report page"

    def click_row_button(self, label: str, button: int = 0) -> None:
        """Click a button of the result list row labelled ``label`` (0: view, 1: info)."""
        self.wait(_row_js(label) + " !== undefined", f"the row {label!r}")
        ok = self.js(
            f"(() => {{ const r = {_row_js(label)}; r.lastElementChild.querySelectorAll('a')[{button}].click(); return true; }})()"
        )
        assert ok

    def frame_js(self, expression: str, what: str, timeout: float = 60):
        """The value of ``expression`` in the (only) iframe of the page, once its data: document is loaded."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            frames = self.page("Page.getFrameTree")["frameTree"].get("childFrames", [])
            loaded = [f["frame"]["id"] for f in frames if f["frame"]["url"].startswith("data:")]
            if len(loaded) == 1:
                try:
                    ctx = self.page("Page.createIsolatedWorld", frameId=loaded[0], worldName="ftft-test")
                    value = self.js(expression, context=ctx["executionContextId"])
                    if value:
                        return value
                except RuntimeError:  # the frame's document changed under us: try again
                    pass
            time.sleep(0.1)
        raise AssertionError(f"timed out ({timeout:.0f} s) waiting for {what} in the iframe")

    def screenshot(self, path: Path) -> Path:
        time.sleep(0.5)  # let the last layout settle
        path.write_bytes(base64.b64decode(self.page("Page.captureScreenshot", format="png")["data"]))
        return path


def _row_js(label: str) -> str:
    return (
        "[...document.querySelectorAll('nav tbody tr')]"
        f".find(tr => tr.cells.length > 1 && tr.cells[0].textContent.trim() === {json.dumps(label)})"
    )


# the Description of the result shown in the navbar (its caption, rendered from the .rst)
CAPTION_JS = "((document.querySelector('nav li.prose') || {}).textContent || '').trim()"

# what a table looks like inside its iframe: every <table> with its header cells (text, colspan),
# body cells, bold cells, and where it is drawn
TABLE_DOM_JS = """(() => {
  if (document.readyState !== 'complete' || !document.querySelector('table')) return null;
  const box = e => { const r = e.getBoundingClientRect(); return {top: r.top, width: r.width, height: r.height}; };
  return {
    title: (document.querySelector('h1') || {}).textContent || '',
    blocks: [...document.querySelectorAll('h2')].map(h => h.textContent),
    viewport: {width: innerWidth, height: innerHeight},
    tables: [...document.querySelectorAll('table')].map(t => ({
      box: box(t),
      head: t.tHead ? [...t.tHead.rows].map(tr => [...tr.cells].map(c => ({
          tag: c.tagName, text: c.textContent.trim(), colspan: c.colSpan}))) : [],
      body: [...t.tBodies].flatMap(b => [...b.rows]).map(tr => [...tr.cells].map(c => c.textContent.trim())),
      bold: [...t.querySelectorAll('tbody td b')].map(b => b.textContent.trim()),
      boldWeight: [...t.querySelectorAll('tbody td b')].map(b => getComputedStyle(b).fontWeight),
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
def browser():
    b = Chromium()
    yield b
    b.close()


@pytest.fixture(scope="module")
def embedded(demo, browser):
    """The report's own index of results (``var results`` of the page): path -> entry."""
    browser.open(demo[2])
    return browser.js("results")


# ----------------------------------------------------------------------------- expectations
def _labels(cfg: dict, keys) -> set[str]:
    return {cfg["models"][k]["label"] for k in keys}


def expected_models(cfg: dict, tid: str, kind: str) -> set[str]:
    """Display names of the models a table lists (from the config, never from the table)."""
    if kind == "cells":
        rows = cfg["tables"][tid]["rows"]
        return _labels(cfg, {r["main"] for r in rows} | {r["ref"] for r in rows if r.get("ref")})
    if kind == "flops":
        return _labels(cfg, cfg["flops_models"])
    if kind == "significance":
        return _labels(cfg, {m for t in grid.significance_tasks(cfg) for m in cfg["significance"]["refs"][t]})
    if kind == "easy":
        return _labels(cfg, cfg["easy_ratio"]["refs"])
    raise AssertionError(f"no expectations for table kind {kind!r}")


def expected_columns(cfg: dict, tid: str, kind: str) -> tuple[list[str], dict[str, int]]:
    """Dataset column labels a table shows, and its grouped headers with their spans."""
    if kind == "cells":
        cols, groups = [], {}
        for task in grid.table_tasks(cfg, tid):
            spec = cfg["tasks"][task]
            cols.append(spec["id_test"].get("label") or spec["id_test"]["name"])
            for o in spec["ood"]:
                cols.append(o.get("label") or o["name"])
                if o.get("group"):
                    groups[o["group"]] = groups.get(o["group"], 0) + 1
        return cols, groups
    if kind in ("flops", "easy"):
        return [cfg["tasks"][t]["id_test"]["label"] for t in ftft_config.active_tasks(cfg)], {}
    return [], {}


def config_keys(cfg: dict) -> set[str]:
    """Names the config uses internally: model keys and evaluation-set names (``anli_r1``)."""
    keys = set(cfg["models"])
    for spec in cfg["tasks"].values():
        keys |= {spec["id_test"]["name"]} | {o["name"] for o in spec["ood"]}
    return keys


# ----------------------------------------------------------------------------- the tests
def test_every_table_is_shown_as_a_table(demo, browser, embedded):
    wf, cfg, report = demo
    L = Layout(cfg["results"], cfg["resources"])
    browser.open(report)
    browser.click("nav a", "Tables")
    keys = config_keys(cfg)
    shots = []
    for tid, kind in tables.table_ids(cfg).items():
        path = L.table(tid, "html")
        assert path in embedded, f"{path} is not in the report"
        entry = embedded[path]
        assert entry["mime_type"] == "text/html" and entry["labels"] == {"table": f"Table {tid}"}
        browser.click_row_button(f"Table {tid}")
        # the content pane (right of the nav bar) now shows this table's HTML in an iframe that fills it,
        # measured once the nav bar's CSS transition has ended (mid-transition, the pane is narrower)
        frame = browser.wait(
            "(() => { const f = document.querySelector('iframe'); if (!f || document.getAnimations().length) return null;"
            " const r = f.getBoundingClientRect();"
            " const n = document.querySelector('nav').getBoundingClientRect();"
            f" return f.getAttribute('src') === results[{json.dumps(path)}].data_uri && {{left: r.left, right: r.right,"
            " width: r.width, height: r.height, nav_right: n.right, vw: innerWidth, vh: innerHeight}; })()",
            f"Table {tid} in the content pane",
        )
        assert frame["left"] >= frame["nav_right"] - 1 and frame["right"] >= frame["vw"] - 1, frame
        assert frame["width"] > 0.4 * frame["vw"] and frame["height"] > 0.6 * frame["vh"], frame
        dom = browser.frame_js(TABLE_DOM_JS, f"Table {tid}")
        assert dom["title"] == f"Table {tid}"
        assert dom["tables"], f"Table {tid}: no <table> in the page"
        first = dom["tables"][0]["box"]
        assert first["width"] > 200 and first["height"] > 50 and 0 <= first["top"] < dom["viewport"]["height"], (
            f"Table {tid} is not drawn in view: {first}"
        )
        head = " | ".join(c["text"] for t in dom["tables"] for row in t["head"] for c in row)
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
        spans = {c["text"]: c["colspan"] for t in dom["tables"] for row in t["head"] for c in row}
        for g, n in groups.items():
            assert spans.get(g) == n, f"Table {tid}: no header {g!r} spanning {n} columns ({spans})"
        if kind != "significance":  # Table 5 has one header row (as the paper's)
            assert any(c["colspan"] > 1 for t in dom["tables"] for row in t["head"] for c in row), (
                f"Table {tid}: no grouped header"
            )
        # the best value per column in bold, as the paper prints it (Table 4 has none, Table 5
        # bolds p < 0.05 only)
        if kind in ("cells", "easy"):
            for i, t in enumerate(dom["tables"]):
                assert t["bold"], f"Table {tid}, block {dom['blocks'][i : i + 1]}: no bold best value"
                assert all(int(w) >= 600 for w in t["boldWeight"]), t["boldWeight"]
                assert all(re.fullmatch(r"-?\d+(\.\d+)?", b) for b in t["bold"]), t["bold"]
        if tid == TABLE_SHOT:
            shots.append(browser.screenshot(wf.parent / f"report-table{tid}.png"))
        # the caption (info button): computed from this config
        browser.click_row_button(f"Table {tid}", button=1)
        info = browser.wait(
            f"(() => {{ const t = {CAPTION_JS}; return t.startsWith('Table {tid}.') && t; }})()",
            f"the caption of Table {tid}",
        )
        assert tables.caption(cfg, tid)[:80] in info, info[-800:]
        if kind in ("cells", "easy", "significance"):
            assert f"over {len(cfg['seeds'])} seed" in info, info[-800:]
        if kind == "cells":
            for task in grid.table_tasks(cfg, tid):
                assert f"{task}: {cfg['tasks'][task]['steps']} steps" in info, info[-800:]
        if tid == "1":
            assert f"the {round(cfg['q'] * 100)}% most ambiguous" in info, info[-800:]
        browser.click("nav a", "Tables")  # back to the list (breadcrumb)
    for p in shots:
        print(f"\nscreenshot of a table view: {p}")


def test_every_figure_is_a_png_with_its_pdf(demo, browser, embedded):
    wf, cfg, report = demo
    L = Layout(cfg["results"], cfg["resources"])
    browser.open(report)
    browser.click("nav a", "Figures")
    # one row per figure; the FORMAT toggle switches a row between its PNG (default) and its PDF
    browser.wait(
        "document.querySelector('nav fieldset') && document.querySelector('nav fieldset').innerText", "the toggle"
    )
    toggle = browser.js("document.querySelector('nav fieldset').innerText")
    assert "image (PNG)" in toggle and "print (PDF)" in toggle, toggle
    for fid in figures.figure_ids(cfg):
        png, pdf = L.figure(fid, "png"), L.figure(fid, "pdf")
        assert embedded[png]["mime_type"] == "image/png" and embedded[pdf]["mime_type"] == "application/pdf"
        assert base64.b64decode(embedded[pdf]["data_uri"].split("base64,", 1)[1])[:5] == b"%PDF-"
        browser.click_row_button(f"Figure {fid}")
        img = browser.wait(
            f"(() => {{ const i = [...document.images].find(i => i.getAttribute('src') === results[{json.dumps(png)}].data_uri);"
            " return i && i.complete && i.naturalWidth > 0 && {w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width}; })()",
            f"the PNG of Figure {fid}",
        )
        assert img["w"] > 300 and img["shown"] > 300, img
        if fid == FIGURE_SHOT:
            shot = browser.screenshot(wf.parent / f"report-figure{fid}.png")
        # the PDF is attached: the toggle shows it (embedded, in an iframe) ...
        browser.click("nav fieldset label", "print (PDF)")
        browser.wait(
            f"(() => {{ const f = document.querySelector('iframe'); return f && f.getAttribute('src') === results[{json.dumps(pdf)}].data_uri; }})()",
            f"the PDF of Figure {fid}",
        )
        browser.click("nav fieldset label", "image (PNG)")  # ... and back
        browser.wait(
            f"[...document.images].some(i => i.getAttribute('src') === results[{json.dumps(png)}].data_uri)",
            "the PNG again",
        )
        # the caption is the figure's, from the config
        browser.click_row_button(f"Figure {fid}", button=1)
        info = browser.wait(
            f"(() => {{ const t = {CAPTION_JS}; return t.startsWith('Figure {fid}.') && t; }})()",
            f"the caption of Figure {fid}",
        )
        assert figures.caption(cfg, fid)[:60] in info, info[-800:]
        browser.click("nav a", "Figures")
    print(f"\nscreenshot of a figure view: {shot}")


def test_claims_comparison_and_failed_runs_are_tables_too(demo, browser, embedded):
    """The Markdown reports are in the report as HTML (ftft.render.markdown_to_html): readable in the page."""
    wf, cfg, report = demo
    L = Layout(cfg["results"], cfg["resources"])
    reports = {
        "Claims": (L.claims("html"), "Claims of the paper", "Claims of the paper, checked on this run"),
        "Comparison with the paper": (L.comparison("html"), "Reproduced vs published", "Reproduced vs published"),
        "Failed runs": (L.failed_runs("html"), "Failed runs", "Failed runs"),
    }
    browser.open(report)
    for category, (path, label, title) in reports.items():
        assert embedded[path]["mime_type"] == "text/html", path
        browser.click("nav a", category)
        browser.click_row_button(label)
        browser.wait(
            f"(() => {{ const f = document.querySelector('iframe'); return f && f.getAttribute('src') === results[{json.dumps(path)}].data_uri; }})()",
            f"{category} in the content pane",
        )
        dom = browser.frame_js(TABLE_DOM_JS, category) if category != "Failed runs" or _has_failures(wf, cfg) else None
        if dom is None:  # no failed run: the page says so, without a table
            continue
        assert dom["title"].startswith(title), dom["title"]
        t = dom["tables"][0]
        assert t["box"]["width"] > 200 and t["box"]["height"] > 30 and t["head"] and t["body"], t["box"]
        for tab in dom["tables"]:  # every row has the header's cells (a pipe table parsed as a table)
            assert all(len(row) == len(tab["head"][0]) for row in tab["body"]), (category, tab["head"][0])
        browser.click("nav a", "Results")
    # the claims' verdicts are table cells, not Markdown
    browser.click("nav a", "Claims")
    browser.click_row_button("Claims of the paper")
    verdicts = browser.frame_js(
        "(() => { const t = document.querySelector('table'); return t && [...t.tBodies[0].rows].map(r => r.cells[2].textContent); })()",
        "the claims' verdicts",
    )
    assert verdicts and all(v in ("holds", "does not hold", "not enough runs") for v in verdicts), verdicts


def _has_failures(wf: Path, cfg: dict) -> bool:
    return "| run |" in (wf / Layout(cfg["results"], cfg["resources"]).failed_runs("md")).read_text()


def test_hostile_labels_are_literal_text_in_the_report(demo, browser):
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
        browser.dialogs.clear()
        browser.open(report)
        for category, item, label in (("Tables", "Table 5", labels["deberta-v3-large"]),
                                      ("Figures", "Figure 2", labels["electra-large"]),
                                      ("Figures", "Figure 4", labels["deberta-v3-large"])):  # fmt: skip
            browser.click("nav a", category)
            browser.click_row_button(item, button=1)
            info = browser.wait(
                f"(() => {{ const t = {CAPTION_JS}; return t.startsWith('{item}.') && t; }})()",
                f"the caption of {item}",
            )
            assert label in " ".join(info.split()), info[-800:]
            made = browser.js(
                "[...document.querySelectorAll('nav li.prose :is(img, script, iframe, object, a[href^=\"javascript\"])')]"
                ".map(e => e.outerHTML)"
            )
            assert not made, made  # nothing made from the labels: they are text
            browser.click("nav a", "Results")
        time.sleep(1)  # an onerror handler fires after the failed image load
        browser.js("1")  # drains the events the browser sent meanwhile
        assert not browser.dialogs, browser.dialogs
    finally:  # the demo's workflow copy is shared by other tests
        for f in (overlay, report, wf / "secret.txt"):
            f.unlink(missing_ok=True)
