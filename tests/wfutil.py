"""Helpers for tests that run real `snakemake` on a temporary copy of the workflow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "rules", "scripts", "envs", "profiles", "config", "workflow_config.yaml")
SNAKEMAKE = (
    str(Path(sys.executable).with_name("snakemake"))
    if Path(sys.executable).with_name("snakemake").exists()
    else (shutil.which("snakemake") or "snakemake")
)


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


def snakemake(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    # jobs call `ftft`: put this interpreter's bin/ (the venv) first on PATH
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [SNAKEMAKE, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
