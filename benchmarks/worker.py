"""Benchmark: per-job wall time of `ftft` commands in fresh processes vs in the warm worker.

Builds the demo's data and one tiny demo model in a temporary folder, then runs the same
short `ftft train` job (the demo's NLI spec for the chosen model, a reduced step budget) and
a light `ftft check-config` job, each --repeat times:
  * cold: a new `python -m ftft.cli` process per job, as Snakemake runs them without a worker;
  * warm: the same command lines with FTFT_WORKER set, served by one `ftft worker` that has
    finished preloading (its start-up is reported separately: it is paid once per run).
Prints the mean wall time per job and the cold / warm ratio. Jobs run one at a time.

Usage: .venv/bin/python benchmarks/worker.py [--model deberta-v3-large] [--steps 45] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ftft import config, worker
from ftft.data import demo, schema
from ftft.grid import Run
from ftft.models import build_demo_model
from ftft.train.spec import make_spec

ROOT = Path(__file__).resolve().parents[1]
FTFT = [sys.executable, "-m", "ftft.cli"]


def prepare(root: Path, model: str, steps: int) -> tuple[list[str], list[str]]:
    """Data, model and spec under root; returns the train and check-config command lines."""
    cfg = config.load(ROOT / "workflow_config.yaml", ROOT / "config" / "demo.yaml")
    task = cfg["tasks"]["nli"]
    df = demo.generate("nli", train_rows=cfg["demo"]["nli_train_rows"], eval_rows=cfg["demo"]["eval_rows"])
    labels = task["labels"]
    schema.write(df[df["split"] == "train"], root / "data" / "train.parquet", labels, "demo_nli")
    for ev in [task["id_test"], *task["ood"]]:
        schema.write(
            df[df["split"] == ev["split"]], root / "data" / "eval" / f"{ev['name']}.parquet", labels, "demo_nli"
        )
    m = cfg["models"][model]
    texts = df["text_a"].tolist() + df["text_b"].dropna().tolist()
    build_demo_model(model, m["family"], m["size"], texts, root / "model", num_labels=len(labels))
    spec = make_spec(cfg, Run("nli", model, "erm")) | {"steps": steps}
    (root / "spec.json").write_text(json.dumps(spec))
    train = ["train", "--spec", f"@{root / 'spec.json'}", "--data-dir", str(root / "data")]
    train += ["--model-path", str(root / "model"), "--out", "{out}", "--state-dir", "{out}.state"]
    check = ["check-config", str(ROOT / "workflow_config.yaml"), str(ROOT / "config" / "demo.yaml")]
    return train, check


def timed(args: list[str], env: dict, out: Path) -> float:
    args = [a.replace("{out}", str(out)) for a in args]
    t0 = time.perf_counter()
    proc = subprocess.run([*FTFT, *args], env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t0
    if proc.returncode != 0 or "not used" in proc.stderr:
        raise SystemExit(f"ftft {args[0]} failed or not in the worker (rc {proc.returncode}):\n{proc.stderr[:2000]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="deberta-v3-large")
    ap.add_argument("--steps", type=int, default=45)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ftft-bench-") as tmp:
        root = Path(tmp)
        jobs = dict(zip(("train", "check-config"), prepare(root, args.model, args.steps), strict=True))
        # after prepare(): importing torch here set TORCHINDUCTOR_CACHE_DIR, which the worker
        # (started from this environment) compares with its clients'
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # as Snakemake sets them
        env.pop(worker.SOCKET_ENV, None)
        cold = {
            name: [timed(cmd, env, root / f"cold-{name}-{i}") for i in range(args.repeat)] for name, cmd in jobs.items()
        }

        t0 = time.perf_counter()
        path = worker.start(root / "worker.log", idle_timeout=0)
        if path is None:
            raise SystemExit(f"the worker did not start: {(root / 'worker.log').read_text()}")
        while "preloaded" not in (root / "worker.log").read_text():
            time.sleep(0.1)
        preload = time.perf_counter() - t0
        warm_env = {**env, worker.SOCKET_ENV: path}
        try:
            warm = {
                name: [timed(cmd, warm_env, root / f"warm-{name}-{i}") for i in range(args.repeat)]
                for name, cmd in jobs.items()
            }
        finally:
            worker.stop(path)
        served = len(re.findall(r"exited 0", (root / "worker.log").read_text()))

    print(f"worker start-up (preload, once per run): {preload:.1f} s; served {served} jobs")
    print(f"{'job':<14} {'cold s/job':>10} {'warm s/job':>10} {'cold/warm':>9}")
    for name in jobs:
        c, w = sum(cold[name]) / args.repeat, sum(warm[name]) / args.repeat
        print(f"{name:<14} {c:>10.2f} {w:>10.2f} {c / w:>9.1f}")


if __name__ == "__main__":
    main()
