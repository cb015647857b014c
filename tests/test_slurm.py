"""The demo workflow on a real single-node SLURM cluster (slurmctld + slurmd + MUNGE, two fake GPUs; brought up by
.ci/slurm/setup_single_node_slurm.sh), run by .ci/run as ``pytest -m slurm``. The shrunken demo (tests/slurm/demo-
slurm.yaml) runs once locally and once through ``--workflow-profile profiles/slurm``, side by side: every table and
figure appears and every CSV is byte-identical between the two; each training run is its own SLURM job granted a GPU
(its ``run.json``), every other job none; training jobs' ``--time`` / ``--mem`` are the compute plan's numbers for the
run (and differ by size), CPU-only jobs get the defaults; every non-local job of the DAG is submitted once and
COMPLETED. Stops only the daemons it started."""

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_workflow import jobs as dag_jobs
from wfutil import ROOT, assert_artefacts, make_copy, snakemake

from ftft import config as ftft_config
from ftft import grid
from ftft.layout import Layout
from ftft.workflow import Plan

pytestmark = pytest.mark.slurm

SETUP = ROOT / ".ci" / "slurm" / "setup_single_node_slurm.sh"
SMALL = ROOT / "tests" / "slurm" / "demo-slurm.yaml"
CONFIGS = ("--configfile", "config/demo.yaml", str(SMALL))
FAKE_GPUS = 2  # two training jobs at a time on the two-core CI machine
TIMEOUT_S = 900
CPU_JOB = {"runtime": 10, "mem_mb": 500}  # --default-resources of the SLURM run (CPU-only jobs)
TRAIN_RULES = ("train", "train_bias_model")


def _setup(cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SLURM_FAKE_GPUS": str(FAKE_GPUS)}
    return subprocess.run(["bash", str(SETUP), cmd], capture_output=True, text=True, timeout=600, check=False, env=env)


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


def _scontrol(*args: str) -> list[dict[str, str]]:
    out = subprocess.run(["scontrol", "-o", "show", *args], capture_output=True, text=True, check=True).stdout
    return [dict(re.findall(r"(\S+?)=(\S*)", line)) for line in out.splitlines() if "=" in line]


def _watch(stop: threading.Event, jobs: dict[str, dict[str, str]]) -> None:
    """Snapshots `scontrol show job` into ``jobs`` every few seconds and once more when ``stop`` is set: finished jobs
    leave it after MinJobAge (300 s)."""
    while True:
        stopping = stop.wait(5.0)
        jobs.update({j["JobId"]: j for j in _scontrol("job") if j.get("JobId")})  # the latest view wins
        if stopping:
            return


def _rule_of(job: dict[str, str]) -> str:
    """The snakemake rule of a SLURM job (the plugin puts it in the job comment)."""
    m = re.match(r"rule_([A-Za-z0-9_]+?)(?:_wildcards|$)", job.get("Comment", ""))
    return m.group(1) if m else ""


def _minutes(limit: str) -> int:
    """SLURM TimeLimit ([D-]HH:MM:SS, MM:SS) in minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, s = ([0, 0] + [int(p) for p in hms.split(":")])[-3:]
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


def _mem_mb(job: dict[str, str]) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", job.get("MinMemoryNode", ""))
    assert m, job.get("MinMemoryNode")
    return round(float(m.group(1)) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[m.group(2)])


def _has_gpu(job: dict[str, str]) -> bool:
    return "gpu" in " ".join(job.get(k, "") for k in ("AllocTRES", "TRES", "TresPerJob", "TresPerNode"))


def _records(wf: Path, cfg: dict) -> dict[grid.Run, dict]:
    L = Layout(wf / cfg["results"], wf / cfg["resources"])
    return {r: json.loads(Path(L.run_file("run.json", r)).read_text()) for r in sorted(grid.all_runs(cfg))}


def _csvs(wf: Path, cfg: dict) -> dict[str, bytes]:
    results = wf / cfg["results"]
    return {str(p.relative_to(results)): p.read_bytes() for p in sorted(results.rglob("*.csv"))}


def test_demo_through_slurm_profile(cluster, tmp_path, capsys):
    cfg = ftft_config.load(ROOT / "workflow_config.yaml", ROOT / "config" / "demo.yaml", SMALL)
    runs = sorted(grid.all_runs(cfg))
    bias = {r for r in runs if r.method == "erm" and (r.task, r.model) in grid.bias_models(cfg)}
    assert bias and len(bias) < len(runs)  # both training rules run
    assert {r.task for r in runs} == {"nli", "hsd"}

    # the same config locally beside the SLURM run: the reference for the CSVs (gpu=2: two training jobs at a time)
    local = make_copy(tmp_path / "local")
    wf = make_copy(tmp_path / "slurm")
    pending = Counter(dag_jobs(local, *CONFIGS))  # a fresh folder: every job of the DAG is pending
    gres = " ".join(n.get("Gres", "") for n in _scontrol("node"))
    gpus = sum(int(n) for n in re.findall(r"gpu(?::[^:,()\s]+)?:(\d+)", gres))
    assert gpus >= 1, "the test cluster advertises no GPU"
    # the plan as the SLURM run's snakemake computes it at its start (later requests reuse these estimates)
    plan = Plan({**cfg, **{key: str(wf / cfg[key]) for key in ("results", "resources", "state_dir")}})
    expected = {r: (plan.runtime_min(r), plan.mem_mb(r)) for r in runs}

    def timed(*args: str) -> tuple[subprocess.CompletedProcess, float]:
        t0 = time.monotonic()
        res = snakemake(*args, timeout=TIMEOUT_S)
        return res, time.monotonic() - t0

    before = {j["JobId"] for j in _scontrol("job") if j.get("JobId")}
    stop, seen = threading.Event(), {}
    watcher = threading.Thread(target=_watch, args=(stop, seen), daemon=True)
    watcher.start()
    with ThreadPoolExecutor(max_workers=1) as pool:
        local_run = pool.submit(timed, local, "--cores", "2", "--resources", "gpu=2", *CONFIGS)
        # the SLURM run: every non-local job is submitted, training jobs with --gpus=1
        res, wall = timed(wf, "--workflow-profile", "profiles/slurm", *CONFIGS, "--latency-wait", "5",
                          "--default-resources", "slurm_partition=debug", f"runtime={CPU_JOB['runtime']}",
                          f"mem_mb={CPU_JOB['mem_mb']}", "--slurm-status-command", "squeue",  # no sacct database
                          "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs")  # fmt: skip
        stop.set()
        watcher.join()
        local_res, local_wall = local_run.result()
    assert local_res.returncode == 0, (local_res.stdout + local_res.stderr)[-4000:]
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]

    # 1. every declared table / figure, and the same table contents as the local run
    assert_artefacts(local, cfg)
    assert_artefacts(wf, cfg)
    ours, reference = _csvs(wf, cfg), _csvs(local, cfg)
    assert any(name.startswith("tables/table") for name in reference) and ours.keys() == reference.keys()
    assert [n for n in reference if ours[n] != reference[n]] == [], "CSVs differ between the local and the SLURM run"

    # 2. each training run: its own SLURM job, granted one of the node's (fake) GPUs
    records = _records(wf, cfg)
    assert all(rec["status"] == "ok" for rec in records.values()), {
        str(r): rec["failure_reason"] for r, rec in records.items() if rec["status"] != "ok"
    }
    job_of = {r: rec["host"]["slurm_job_id"] for r, rec in records.items()}
    assert all(job_of.values()), job_of
    assert len(set(job_of.values())) == len(runs), "training runs shared a SLURM job"
    grants = {rec["host"]["cuda_visible_devices"] for rec in records.values()}
    assert grants <= {str(i) for i in range(gpus)}, grants
    if "SLURM_JOB_ID" not in os.environ:  # the local run's jobs ran outside SLURM
        assert not any(rec["host"]["slurm_job_id"] for rec in _records(local, cfg).values())

    # scheduler view: one SLURM job per non-local job, all COMPLETED; only training jobs got gres/gpu
    jobs = {jid: j for jid, j in seen.items() if jid not in before}
    by_rule = Counter(_rule_of(j) for j in jobs.values())
    # rules whose jobs the submitting snakemake ran itself, never in SLURM: its log names them `localrule NAME:`
    local_rules = set(re.findall(r"^localrule (\w+):$", res.stderr + res.stdout, flags=re.M))
    assert {"table", "figure", "all"} <= local_rules  # `localrule: True` in rules/
    assert by_rule == Counter({k: n for k, n in pending.items() if k not in local_rules}), (by_rule, pending)
    assert by_rule["train"] + by_rule["train_bias_model"] == len(runs)
    assert {jid: j.get("JobState") for jid, j in jobs.items() if j.get("JobState") != "COMPLETED"} == {}
    for jid, j in jobs.items():
        assert _has_gpu(j) == (_rule_of(j) in TRAIN_RULES), (_rule_of(j), jid, j.get("TRES"), j.get("TresPerJob"))
        if _rule_of(j) not in TRAIN_RULES:
            assert (_minutes(j["TimeLimit"]), _mem_mb(j)) == (CPU_JOB["runtime"], CPU_JOB["mem_mb"]), (jid, j)

    # 3. per-job requests come from the compute plan: the run's own --time and --mem
    rules = {r: "train_bias_model" if r in bias else "train" for r in runs}
    assert {r: _rule_of(jobs[jid]) for r, jid in job_of.items()} == rules
    assert {r: (_minutes(jobs[jid]["TimeLimit"]), _mem_mb(jobs[jid])) for r, jid in job_of.items()} == expected
    # ... and they differ: the larger model asks for more time, the longer NLI examples for more memory
    for task in ("nli", "hsd"):
        by_model = {r.model: expected[r][0] for r in runs if r.task == task and r.method == "erm"}
        assert by_model["deberta-v3-small"] < by_model["deberta-v3-large"], (task, by_model)
    mem = {task: {expected[r][1] for r in runs if r.task == task} for task in ("nli", "hsd")}
    assert min(mem["nli"]) > max(mem["hsd"]), mem

    note = (
        f"SLURM: {len(jobs)} jobs submitted ({dict(sorted(by_rule.items()))}; "
        f"{sum(pending.values()) - len(jobs)} local jobs in the submitting snakemake), all COMPLETED, "
        f"wall {wall:.0f} s (the local run of the same DAG beside it: {local_wall:.0f} s); GPU grants seen by the training "
        f"jobs: CUDA_VISIBLE_DEVICES in {sorted(grants)} of {gpus} fake GPUs; --time/--mem per training job "
        f"from the plan: {sorted({f'{t} min/{m} MB' for t, m in expected.values()})}"
    )
    with capsys.disabled():  # the closing note, shown by a plain `pytest -v` too
        print(f"\nlocal: {sum(pending.values())} jobs, wall {local_wall:.0f} s\n{note}")
