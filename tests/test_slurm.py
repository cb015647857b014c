"""The demo workflow submitted to a real single-node SLURM cluster (slurmctld + slurmd + MUNGE).

Brings the cluster up with .ci/slurm/setup_single_node_slurm.sh (idempotent; needs root and
apt), runs the shrunken demo (tests/slurm/demo-slurm.yaml) through
``--workflow-profile profiles/slurm`` with training jobs requesting ``gpu=1``, and checks:
  * every declared table and figure appears, with the same table contents as a local run of
    the same config (CPU training is deterministic, so the numbers must match);
  * each training job was its own SLURM job and was granted the (fake) GPU;
  * CPU-only jobs were not granted a GPU (from ``scontrol show job``; MinJobAge keeps
    finished jobs listed);
and stops only the daemons it started. Run by .ci/run as ``pytest -m slurm``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest
from wfutil import ROOT, make_copy, snakemake

from ftft import config as ftft_config
from ftft import grid

pytestmark = pytest.mark.slurm

SETUP = ROOT / ".ci" / "slurm" / "setup_single_node_slurm.sh"
SMALL = ROOT / "tests" / "slurm" / "demo-slurm.yaml"
CONFIGS = ("--configfile", "config/demo.yaml", str(SMALL))
TIMEOUT_S = 1200


def _setup(cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SETUP), cmd], capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the single-node SLURM cluster needs root (apt-get, daemons)")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("no apt-get to install slurm-wlm and no slurmctld on PATH")
    t0 = time.monotonic()
    up = _setup("up")
    if up.returncode != 0:
        installed = subprocess.run(["dpkg-query", "-W", "slurmctld"], capture_output=True).returncode == 0
        if not installed:
            pytest.skip(f"apt could not install slurm-wlm: {up.stderr[-500:]}")
        pytest.fail(f"cluster did not come up:\n{up.stderr[-3000:]}")
    print(f"cluster up in {time.monotonic() - t0:.1f} s")
    yield
    down = _setup("down")  # stops only the daemons `up` started (pid file), never others
    assert down.returncode == 0, down.stderr


def _declared(cfg: dict) -> list[str]:
    return [*grid.table_targets(cfg), *grid.figure_targets(cfg), "tables/paper_comparison.csv"]


def _scontrol_jobs() -> list[dict[str, str]]:
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(re.findall(r"(\S+?)=(\S*)", line))
        if fields.get("JobId"):
            jobs.append(fields)
    return jobs


class JobWatcher(threading.Thread):
    """Snapshots `scontrol show job` every few seconds: finished jobs leave its listing after
    MinJobAge (300 s), so one look at the end would miss the early ones."""

    def __init__(self, interval: float = 5.0):
        super().__init__(daemon=True)
        self.jobs: dict[str, dict[str, str]] = {}
        self.interval = interval
        self.stop = threading.Event()

    def snapshot(self) -> None:
        for job in _scontrol_jobs():
            self.jobs[job["JobId"]] = job  # the latest view of each job (final state wins)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.snapshot()

    def finish(self) -> dict[str, dict[str, str]]:
        self.stop.set()
        self.join()
        self.snapshot()
        return self.jobs


def _rule_of(job: dict[str, str]) -> str:
    """The snakemake rule of a SLURM job (the plugin puts it in the job comment)."""
    m = re.match(r"rule_([A-Za-z0-9_]+?)(?:_wildcards|$)", job.get("Comment", ""))
    return m.group(1) if m else ""


def test_demo_through_slurm_profile(cluster, tmp_path):
    cfg = ftft_config.load(ROOT / "workflow_config.yaml", ROOT / "config" / "demo.yaml", SMALL)
    results = cfg["results"]

    # the same config locally first: the reference for the table contents
    local = make_copy(tmp_path / "local")
    res = snakemake(local, "--cores", "2", *CONFIGS, timeout=TIMEOUT_S)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]

    before = {j["JobId"] for j in _scontrol_jobs()}
    wf = make_copy(tmp_path / "slurm")
    watcher = JobWatcher()
    watcher.start()
    t0 = time.monotonic()
    res = snakemake(
        wf,
        "--workflow-profile",
        "profiles/slurm",
        *CONFIGS,
        "--jobs",
        "2",
        "--latency-wait",
        "5",
        "--default-resources",
        "slurm_partition=debug",
        "runtime=10",
        "mem_mb=500",
        # this test cluster has no accounting database: ask squeue, not sacct
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-keep-successful-logs",
        timeout=TIMEOUT_S,
    )
    wall = time.monotonic() - t0
    seen = watcher.finish()
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]

    # every declared table / figure, and the same table contents as the local run
    for target in _declared(cfg):
        p = wf / results / target
        assert p.is_file() and p.stat().st_size > 0, p
    for table in sorted((local / results / "tables").glob("*.csv")):
        assert (wf / results / "tables" / table.name).read_text() == table.read_text(), table.name
    # the local run's jobs ran in the warm worker (worker.enabled in config/demo.yaml), the SLURM
    # jobs each in a fresh process: the identical tables also show the worker changes no result
    assert "stopped after serving" in (local / results / "logs" / "worker.log").read_text()
    assert not (wf / results / "logs" / "worker.log").exists()

    # each training run: its own SLURM job, granted the GPU
    runs = grid.all_runs(cfg)
    records = [json.loads((wf / results / r.path / "run.json").read_text()) for r in runs]
    job_ids = [rec["host"]["slurm_job_id"] for rec in records]
    assert all(job_ids), job_ids
    assert len(set(job_ids)) == len(runs), "training runs shared a SLURM job"
    grants = {rec["host"]["cuda_visible_devices"] for rec in records}
    assert grants == {"0"}, grants

    # scheduler view: train jobs asked for and got gres/gpu, CPU-only jobs did not
    jobs = [j for j in seen.values() if j["JobId"] not in before]
    by_rule: dict[str, list[dict]] = {}
    for j in jobs:
        by_rule.setdefault(_rule_of(j), []).append(j)
    assert len(by_rule.get("train", [])) == len(runs), sorted(by_rule)
    for rule, rule_jobs in by_rule.items():
        for j in rule_jobs:
            tres = j.get("AllocTRES", "") + j.get("TRES", "")
            has_gpu = "gres/gpu" in tres or "gpu" in j.get("TresPerJob", "") + j.get("TresPerNode", "")
            assert has_gpu == (rule == "train"), (rule, j.get("JobId"), tres)
    assert all(j.get("JobState") == "COMPLETED" for j in jobs), {j["JobId"]: j.get("JobState") for j in jobs}
    print(
        f"SLURM: {len(jobs)} jobs submitted ({len(by_rule['train'])} training jobs with a GPU), "
        f"wall {wall:.0f} s; GPU grant seen by a training job: CUDA_VISIBLE_DEVICES="
        f"{records[0]['host']['cuda_visible_devices']}, SLURM_JOB_GPUS={records[0]['host']['slurm_job_gpus']}"
    )
