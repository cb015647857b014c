"""The Snakemake DAG: real `snakemake` runs on a temporary copy of the workflow.

Expected job counts are computed here from ``ftft.grid`` (not from ``ftft.workflow``), so
the Snakefile and the grid are checked against each other.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

import pytest
import yaml
from wfutil import ROOT, make_copy, snakemake

from ftft import config as ftft_config
from ftft import grid

DRY_RUN_LIMIT_S = 10.0


@pytest.fixture(scope="module")
def wf(tmp_path_factory) -> Path:
    return make_copy(tmp_path_factory.mktemp("wf"))


def job_stats(output: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run."""
    lines = output.splitlines()
    start = lines.index("Job stats:")
    stats: dict[str, int] = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        stats[parts[0]] = int(parts[1])
    return stats


def outputs_by_rule(output: str) -> dict[str, list[str]]:
    """rule -> output files of each job, from a non-quiet dry run."""
    out: dict[str, list[str]] = {}
    rule = None
    for line in output.splitlines():
        m = re.match(r"(?:local)?rule (\S+):$", line.strip())
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"\s+output: (.*)$", line)
        if m and rule is not None:
            out.setdefault(rule, []).extend(f.strip() for f in m.group(1).split(","))
    return out


def load_cfg(*overlays: str | Path) -> dict:
    return ftft_config.load(ROOT / "workflow_config.yaml", *overlays)


def expected_jobs(cfg: dict) -> dict[str, int]:
    """Jobs per rule for a fresh results folder, from the grid alone."""
    runs = grid.all_runs(cfg)
    sources = grid.sources_used(cfg)
    tables = Counter(
        re.fullmatch(r"tables/table(\d+)\.csv", t).group(1) for t in grid.table_targets(cfg) if t.endswith(".csv")
    )
    figures = Counter(
        re.fullmatch(r"figures/figure(\d[a-z]?)_\w+\.png", f).group(1)
        for f in grid.figure_targets(cfg)
        if f.endswith(".png") and not f.startswith("figures/datamaps/")
    )
    exp = {
        "config_json": 1,
        "train": len(runs),
        "datamap": len(grid.all_datamaps(cfg)),
        "subset": len({(r.task, r.method, r.ref, r.seed) for r in runs if r.method != "erm"}),
        "compare": 1,
        "all": 1,
    }
    exp.update({f"table_{t}": n for t, n in tables.items()})
    exp.update({f"figure_{f}": n for f, n in figures.items()})
    exp.update({f"assemble_{t}": 1 for t in cfg["tasks"]})
    if cfg["mode"] == "paper":
        exp["download"] = len(sources)
        exp["prepare"] = len(sources)
    else:
        exp["demo_data"] = len(sources)
        exp["build_demo_model"] = len({r.model for r in runs})
    return exp


# ----------------------------------------------------------------------- dry runs
def test_paper_dry_run_jobs_per_rule_and_time(wf, capsys):
    """Jobs per rule of the full paper grid; the dry run takes <= 10 s.

    Wall-clock time depends on what else the machine runs, so the limit is checked on the
    CPU time of the snakemake process (user + sys) and on wall time when the machine is not
    oversubscribed (load average below the core count)."""
    cfg = load_cfg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = snakemake(wf, "--dry-run", "--quiet", "rules")
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert res.returncode == 0, res.stderr + res.stdout
    stats = job_stats(res.stdout + res.stderr)
    assert stats == expected_jobs(cfg)
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    with capsys.disabled():
        print(
            f"\nfull paper config: dry run {wall:.1f} s wall, {cpu:.1f} s CPU "
            f"(load average {load:.1f} on {cores} cores), {sum(stats.values())} jobs"
        )
        for rule, n in stats.items():
            print(f"  {rule:<16} {n:>5}")
    assert cpu <= DRY_RUN_LIMIT_S, f"dry run of the paper grid used {cpu:.1f} s CPU"
    if load < cores and not _slurm_probe_stalls():
        assert wall <= DRY_RUN_LIMIT_S, f"dry run of the paper grid took {wall:.1f} s"


def _slurm_probe_stalls() -> bool:
    """The SLURM executor plugin runs `scontrol show config` (10 s timeout) when snakemake
    loads its plugins; with slurm-client installed but no slurmctld running (e.g. after the
    SLURM test stopped its cluster) every snakemake start waits those 10 s, in wall time only."""
    if shutil.which("scontrol") is None:
        return False
    return subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode != 0


def test_paper_dry_run_trains_each_run_once(wf):
    cfg = load_cfg()
    res = snakemake(wf, "--dry-run")
    assert res.returncode == 0, res.stderr + res.stdout
    outs = outputs_by_rule(res.stdout + res.stderr)
    records = [f for f in outs["train"] if f.endswith("/run.json")]
    counts = Counter(records)
    assert max(counts.values()) == 1, [f for f, n in counts.items() if n > 1][:5]
    expected = {f"{cfg['results']}/{r.path}/run.json" for r in grid.all_runs(cfg)}
    assert set(records) == expected
    # every reference (ERM) run that a DM/JTT/PoE run needs is among them, once
    refs = {d for r in grid.all_runs(cfg) for d in grid.run_dependencies(cfg, r)}
    assert refs and all(counts[f"{cfg['results']}/{d.path}/run.json"] == 1 for d in refs)
    datamaps = [f for f in outs["datamap"] if f.endswith(".parquet")]
    assert len(datamaps) == len(set(datamaps)) == len(grid.all_datamaps(cfg))


def test_demo_dry_run(wf):
    cfg = load_cfg(ROOT / "config" / "demo.yaml")
    res = snakemake(wf, "--dry-run", "--quiet", "rules", "--configfile", "config/demo.yaml")
    assert res.returncode == 0, res.stderr + res.stdout
    stats = job_stats(res.stdout + res.stderr)
    assert stats == expected_jobs(cfg)
    assert "download" not in stats and "prepare" not in stats


def test_train_jobs_request_one_gpu_and_cpu_jobs_none(wf):
    res = snakemake(
        wf,
        "--dry-run",
        "results/runs/nli/deberta-v3-large/dm-electra-small/full/seed0/run.json",
    )
    assert res.returncode == 0, res.stderr + res.stdout
    blocks = re.split(r"\n(?=\[.*\]\n)", res.stdout)
    seen = set()
    for block in blocks:
        m = re.search(r"rule (\w+):", block)
        r = re.search(r"resources: (.*)", block)
        if not (m and r):
            continue
        seen.add(m.group(1))
        has_gpu = re.search(r"\bgpu=1\b", r.group(1)) is not None
        assert has_gpu == (m.group(1) == "train"), block
    assert {"train", "datamap", "subset", "prepare"} <= seen


def test_slurm_profile_has_no_local_gpu_cap(wf):
    prof = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert prof["executor"] == "slurm"
    assert "resources" not in prof  # a global cap would serialise cluster jobs
    assert "gpus" not in str(prof.get("default-resources", {}))
    default = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    assert default["resources"] == {"gpu": 1}
    res = snakemake(wf, "--workflow-profile", "profiles/slurm", "--dry-run", "--quiet", "rules")
    assert res.returncode == 0, res.stderr + res.stdout
    assert job_stats(res.stdout + res.stderr)["train"] == len(grid.all_runs(load_cfg()))


# ------------------------------------------------------------------------ bad configs
BAD_CONFIGS = {
    "unknown_model_in_table": (
        {"tables": {"1": {"tasks": ["nli"], "rows": [{"method": "erm", "main": "deberta-v9"}]}}},
        ["tables.1.rows[0].main", "deberta-v9"],
    ),
    "q_above_one": ({"q": 1.5}, ["'q'", "1.5"]),
    "empty_seeds": ({"seeds": []}, ["'seeds'"]),
    "typo_top_level_key": ({"seeeds": [0]}, ["seeeds"]),
    "step_fraction_above_one": (
        {"methods": {"ftft": {"mode": "limiting", "fraction": {"nli": "4/3", "hsd": "1/3"}}}},
        ["fraction", "nli", "4/3"],
    ),
    "speed_fraction_above_one": ({"speed": {"fractions": ["1/15", "16/15"]}}, ["speed.fractions[1]", "16/15"]),
    "worker_typo": ({"worker": {"enabeld": True}}, ["worker", "enabeld"]),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_fails_before_any_job(wf, tmp_path, name):
    overlay, needles = BAD_CONFIGS[name]
    bad = tmp_path / f"{name}.yaml"
    bad.write_text(yaml.safe_dump(overlay))
    res = snakemake(wf, "--dry-run", "--configfile", str(bad))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "invalid configuration" in out
    for needle in needles:
        assert needle in out, out[-2000:]
    assert "Building DAG of jobs" not in out


# ---------------------------------------------------------------- lint and formatting
def test_snakemake_lint_clean(wf):
    res = snakemake(wf, "--lint")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Congratulations, your workflow is in a good condition" in out, out


def test_snakefmt_clean():
    snakefmt = Path(sys.executable).with_name("snakefmt")
    exe = str(snakefmt) if snakefmt.exists() else shutil.which("snakefmt")
    if exe is None:
        pytest.skip("snakefmt not installed")
    res = subprocess.run([exe, "--check", "Snakefile", "rules/"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


# ---------------------------------------------------------------- software environment
def _pins(requirements: list[str]) -> dict[str, str]:
    out = {}
    for req in requirements:
        name, _, version = req.partition("==")
        out[name.strip().lower()] = version.strip()
    return out


def test_conda_env_pins_match_pyproject():
    env = yaml.safe_load((ROOT / "envs" / "ftft.yaml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    pip = [p for p in pip if not p.startswith("-")]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _pins(pip) == _pins(project["dependencies"])
    assert all("==" in p for p in pip)
    assert (ROOT / "envs" / "ftft.post-deploy.sh").is_file()


def test_every_rule_has_log_conda_and_trains_have_benchmark():
    text = "\n".join(p.read_text() for p in sorted((ROOT / "rules").glob("*.smk")))
    rules = re.split(r"\n\s*rule(?: (\w+))?:\n", text)[1:]
    names, bodies = rules[0::2], rules[1::2]
    assert len(bodies) >= 10
    for name, body in zip(names, bodies, strict=True):
        assert "log:" in body, name
        assert 'conda:\n        "../envs/ftft.yaml"' in body or '"../envs/ftft.yaml"' in body, name
        assert "shell:" in body and "ftft " in body or name == "config_json", name
    assert "benchmark:" in bodies[names.index("train")]


# ------------------------------------------------------- rerun triggers (touch + dry run)
@pytest.mark.slow
def test_rerun_nothing_then_only_dependents_of_changed_model(tmp_path):
    """After faking every output, a rerun does nothing; changing one model's lr re-runs
    only the runs that use it (as main model or as reference) and what reads them."""
    wf = make_copy(tmp_path / "wf")
    small = wf / "small.yaml"
    small.write_text("seeds: [0]\n")
    res = snakemake(wf, "--dry-run", "--configfile", "small.yaml")
    assert res.returncode == 0, res.stderr
    files = {f for fs in outputs_by_rule(res.stdout).values() for f in fs}
    for f in files:
        p = wf / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("fake\n")
    # --forceall: every job is "run" (touched) and records its metadata (params etc.)
    res = snakemake(wf, "--touch", "--forceall", "--cores", "1", "--configfile", "small.yaml", "--quiet", "all")
    assert res.returncode == 0, res.stderr
    res = snakemake(wf, "--dry-run", "--configfile", "small.yaml")
    assert res.returncode == 0, res.stderr
    assert "Nothing to be done" in res.stdout + res.stderr, res.stdout[-3000:]

    changed = "electra-small"
    bump = wf / "bump.yaml"
    bump.write_text(yaml.safe_dump({"models": {changed: {"lr": 3.0e-5}}}))
    res = snakemake(wf, "--dry-run", "--configfile", "small.yaml", "bump.yaml")
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    cfg = load_cfg(small, bump)
    runs = grid.all_runs(cfg)
    affected = {r for r in runs if r.model == changed or r.ref == changed}
    outs = outputs_by_rule(out)
    rerun = {f for f in outs["train"] if f.endswith("/run.json")}
    assert rerun == {f"{cfg['results']}/{r.path}/run.json" for r in affected}
    assert len(rerun) < len(runs) / 3
    datamaps = {f for f in outs.get("datamap", []) if f.endswith(".parquet")}
    assert datamaps == {
        f"{cfg['results']}/{grid.datamap_path(t, r, s)}" for t, r, s in grid.all_datamaps(cfg) if r == changed
    }
    subsets = set(outs.get("subset", []))
    assert subsets == {f"{cfg['results']}/{grid.subset_path(r)}" for r in affected if r.ref == changed}
    assert not {"download", "prepare", "assemble_nli", "assemble_hsd"} & set(outs)
    # aggregation reruns too (cheap), and only those reading the changed runs / config
    assert "config_json" in outs


# ------------------------------------------------------------------ demo end to end
@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """The whole demo DAG on CPU; every declared table and figure exists and is non-empty.
    (Needs every `ftft` subcommand implemented.)"""
    wf = make_copy(tmp_path / "wf")
    t0 = time.monotonic()
    res = snakemake(wf, "--cores", "2", "--configfile", "config/demo.yaml", timeout=3600)
    print(f"demo DAG end to end: {time.monotonic() - t0:.0f} s on 2 cores")
    assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
    cfg = load_cfg(ROOT / "config" / "demo.yaml")
    targets = [
        *grid.table_targets(cfg),
        *grid.figure_targets(cfg),
        "tables/paper_comparison.csv",
        "tables/paper_comparison.md",
    ]
    for t in targets:
        p = wf / cfg["results"] / t
        assert p.is_file() and p.stat().st_size > 0, p
    # every `ftft` job ran in the warm worker (config worker.enabled), which then stopped
    logs = wf / cfg["results"] / "logs"
    served = (logs / "worker.log").read_text()
    exits = re.findall(r"child \d+ exited (-?\d+)", served)
    assert len(exits) >= len(grid.all_runs(cfg)) and set(exits) == {"0"}, served[-3000:]
    assert f"stopped after serving {len(exits)} commands" in served
    assert not [p for p in logs.rglob("*.log") if "warm worker not used" in p.read_text()]
    res = snakemake(wf, "--dry-run", "--configfile", "config/demo.yaml")
    assert "Nothing to be done" in res.stdout + res.stderr
    # the Snakemake report holds every table and figure, with captions
    report = wf / "report.html"
    res = snakemake(wf, "--configfile", "config/demo.yaml", "--report", str(report))
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    html = report.read_text(errors="replace")
    for t in targets:
        if t.endswith((".csv", ".png")):
            assert Path(t).name in html, f"{t} missing from the report"


def test_config_readme_explains_every_schema_key():
    schema = ftft_config.load_schema()
    readme = (ROOT / "config" / "README.md").read_text()
    keys = set(schema["properties"])
    defs = schema["$defs"]
    for prop in schema["properties"].values():
        props = prop.get("properties", {})
        keys.update(props)
        for sub in props.values():
            keys.update(sub.get("properties", {}))
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict):
            ref = extra.get("$ref", "").rsplit("/", 1)[-1]
            keys.update((defs.get(ref) or extra).get("properties", {}))
    keys.update(defs["tablerow"]["properties"])
    missing = sorted(k for k in keys if f"`{k}`" not in readme and f"`{k}." not in readme and f".{k}`" not in readme)
    assert not missing, f"config/README.md does not explain: {missing}"


# ------------------------------------------------------------- ftft.workflow helpers
def test_run_pattern_matches_run_path():
    from ftft.workflow import RUN_PATTERN

    for run in grid.all_runs(load_cfg()):
        assert RUN_PATTERN.format(**run.__dict__) == run.path


def test_plan_inputs_and_params():
    from ftft.workflow import Plan

    cfg = load_cfg()
    cfg["datamap_seed"] = 1
    plan = Plan(cfg)
    dm = grid.Run("nli", "deberta-v3-large", "dm", "electra-small", "1-3", 2)
    inputs = plan.train_inputs(dm)
    assert inputs["subset"] == "results/subsets/nli/dm-electra-small/seed2.parquet"
    assert "model" not in inputs and len(inputs["evals"]) == 5
    assert plan.subset_inputs("nli", "dm", "electra-small", 2)["datamap"] == (
        "results/datamaps/nli/electra-small/seed1.parquet"
    )
    assert plan.subset_inputs("hsd", "jtt", "deberta-v3-large", 0)["dynamics"] == (
        "results/runs/hsd/deberta-v3-large/erm-none/full/seed1/dynamics.npz"
    )
    assert plan.train_extra(dm, inputs) == "--subset results/subsets/nli/dm-electra-small/seed2.parquet"
    assert plan.state_dir(dm) == ".ftft-state/" + dm.path
    # the training param is this run's spec only: another model's lr does not change it
    spec = plan.train_spec(dm)
    cfg2 = load_cfg()
    cfg2["datamap_seed"] = 1
    cfg2["models"]["electra-base"]["lr"] = 1.0
    assert Plan(cfg2).train_spec(dm) == spec
    cfg2["models"]["deberta-v3-large"]["lr"] = 1.0
    assert Plan(cfg2).train_spec(dm) != spec

    demo = Plan(load_cfg(ROOT / "config" / "demo.yaml"))
    erm = grid.Run("hsd", "tinybert", "erm")
    assert demo.train_inputs(erm)["model"] == "resources/demo_models/tinybert"
    assert demo.train_gpus() == 0 and plan.train_gpus() == 1
    assert demo.figure_args("1a", "nli") == "--id 1a --task nli"
    assert demo.figure_args("2", "halting") == "--id 2 --mode halting"


def test_download_params_quote_checksums():
    from ftft.workflow import Plan

    cfg = load_cfg()
    cfg["datasets"]["anli"]["sha256"] = {"anli_v1.0.zip": "a" * 64}
    cfg["datasets"]["anli"]["mirror"] = "/data/my mirror/anli.zip"
    p = Plan(cfg).download_params("anli")
    assert p["url"].startswith("https://")
    assert p["extra"] == '--sha256 \'{"anli_v1.0.zip":"' + "a" * 64 + "\"}' --mirror '/data/my mirror/anli.zip'"
