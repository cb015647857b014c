"""Helpers for tests that run real `snakemake` on a temporary copy of the workflow."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "rules", "scripts", "envs", "profiles", "config", "examples", "workflow_config.yaml")
# this interpreter's snakemake (the venv's), else the one on PATH
SNAKEMAKE = shutil.which("snakemake", path=Path(sys.executable).parent) or shutil.which("snakemake") or "snakemake"


# ----------------------------------------------------------------------------- helpers
def make_copy(dest: Path) -> Path:
    """The workflow files in ``dest`` (src/ and schemas/ linked, not copied)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            shutil.copy2(src, dest / name)
    (dest / "src").symlink_to(ROOT / "src")
    (dest / "schemas").symlink_to(ROOT / "src" / "ftft" / "schemas")
    return dest


def snakemake(
    workdir: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    # jobs call `ftft`: put this interpreter's bin/ (the venv) first on PATH
    env = {**os.environ, **(env or {})}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        [SNAKEMAKE, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_artefacts(wf: Path, cfg: dict) -> None:
    """Every table (4 formats), figure (PNG + PDF), the claims, comparison and failed-runs reports exist."""
    from ftft import figures, tables
    from ftft.config import active_tasks
    from ftft.layout import Layout

    L = Layout(wf / cfg["results"], wf / cfg["resources"])
    for t in tables.table_ids(cfg):
        for ext in ("csv", "md", "tex", "html"):
            assert Path(L.table(t, ext)).stat().st_size > 0, L.table(t, ext)
    for f in figures.figure_ids(cfg):
        for ext in ("png", "pdf"):
            assert Path(L.figure(f, ext)).stat().st_size > 0, L.figure(f, ext)
    paper_tasks = {"nli", "hsd"} & set(active_tasks(cfg))  # the comparison with the paper needs its tasks
    reports = [L.claims("md"), L.failed_runs("md")] + ([L.comparison("md")] if paper_tasks else [])
    for p in reports:
        assert Path(p).stat().st_size > 0, p


def assert_report(wf: Path, cfg: dict, *args: str, env: dict[str, str] | None = None) -> Path:
    """``snakemake --report`` builds a self-contained HTML report holding every table and figure."""
    from ftft import figures, tables

    report = wf / "report.html"
    res = snakemake(wf, *args, "--report", str(report), env=env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    html = report.read_text(errors="replace")
    for t in tables.table_ids(cfg):
        assert f"table{t}.html" in html, f"table {t} missing from the report"
    for f in figures.figure_ids(cfg):
        assert f"figure{f}.png" in html and f"figure{f}.pdf" in html, f"figure {f} missing from the report"
    return report
