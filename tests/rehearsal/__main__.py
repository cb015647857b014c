"""Run the paper rehearsal by hand: ``python -m tests.rehearsal run [snakemake args]``.

``build`` writes the offline HF cache (``rehearsal/hf_home``) and the release archives (``rehearsal/www``) below the
working folder; ``run`` also serves the archives on 127.0.0.1:8765 (the URLs of ``config/rehearsal.yaml``) and runs
``snakemake --cores 2 --configfile config/rehearsal.yaml`` with ``HF_HUB_OFFLINE=1``.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from .archives import build_archives, serve
from .hub import build_hf_cache

ROOT = Path(__file__).resolve().parents[2]
PORT = 8765


def build(workdir: Path) -> tuple[Path, Path]:
    hf_home, www = workdir / "rehearsal" / "hf_home", workdir / "rehearsal" / "www"
    build_hf_cache(hf_home)
    build_archives(ROOT / "tests" / "fixtures", www)
    return hf_home, www


def run(workdir: Path, args: list[str]) -> int:
    _, www = build(workdir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with serve(www, port=PORT):
        t0 = time.monotonic()
        rc = subprocess.call(
            ["snakemake", "--cores", "2", "--configfile", "config/rehearsal.yaml", *args], cwd=workdir, env=env
        )
        print(f"rehearsal: exit {rc} after {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return rc


def main(argv: list[str]) -> int:
    cmd, rest = (argv[0], argv[1:]) if argv else ("run", [])
    if cmd == "build":
        build(Path.cwd())
        return 0
    if cmd == "run":
        return run(Path.cwd(), rest)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
