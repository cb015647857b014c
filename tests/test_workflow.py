"""The Snakemake DAG: real `snakemake` runs on a temporary copy of the workflow.

The DAG is read from Snakemake's own machine-readable views, never from console text: ``--d3dag`` (one JSON node per
pending job, with its rule) for job counts, ``--detailed-summary`` (one line per output file, with its rule and plan)
for outputs. Expected job counts come from ``ftft.grid`` and the table/figure registries (not from ``ftft.workflow``),
so the Snakefile and the grid are checked against each other."""

import csv
import io
import json
import re
import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from wfutil import ROOT, assert_artefacts, assert_report, make_copy, snakemake

from ftft import config as ftft_config
from ftft import figures, grid, tables
from ftft.errors import FtftError
from ftft.layout import Layout
from ftft.modeling import count_params, load_tokenizer_and_model
from ftft.plan import PAPER_DAYS, _dims_from_config
from ftft.tokenize import padded_per_example
from ftft.workflow import Plan


@pytest.fixture(scope="module")
def wf(tmp_path_factory) -> Path:
    return make_copy(tmp_path_factory.mktemp("wf"))


def summary(wf: Path, *args: str) -> list[dict]:
    """Snakemake's --detailed-summary as rows (output_file, rule, log-file(s), status, plan, ...)."""
    res = snakemake(wf, "--detailed-summary", *args)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    text = res.stdout[res.stdout.index("output_file\t") :]
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def jobs(wf: Path, *args: str) -> dict[str, int]:
    """rule -> its jobs in the whole DAG, done or not (Snakemake's --d3dag JSON: one node per job)."""
    res = snakemake(wf, "--d3dag", *args)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    if "{" not in res.stdout:  # nothing to be done: no DAG printed
        return {}
    nodes = json.loads(res.stdout[res.stdout.index("{") :])["nodes"]
    return dict(Counter(n["value"]["rule"] for n in nodes if n["value"]["rule"] != "all"))


def pending(wf: Path, *args: str) -> dict[str, int]:
    """rule -> how many of its jobs would run now: --detailed-summary rows whose plan is not "no update",
    counted by log file (every rule but `all` has one per job)."""
    logs: dict[str, set[str]] = {}
    for r in summary(wf, *args):
        if r["plan"] != "no update" and r["rule"] != "all":
            logs.setdefault(r["rule"], set()).add(r["log-file(s)"])
    return {rule: len(v) for rule, v in logs.items()}


def outputs(rows: list[dict], rule: str, pending_only: bool = False) -> set[str]:
    return {r["output_file"] for r in rows if r["rule"] == rule and not (pending_only and r["plan"] == "no update")}


def load_cfg(*overlays: str | Path) -> dict:
    return ftft_config.load(ROOT / "workflow_config.yaml", *overlays)


def expected_jobs(cfg: dict) -> dict[str, int]:
    """Jobs per rule for a fresh results folder, from the grid alone."""
    runs, sources = grid.all_runs(cfg), set(grid.source_users(cfg))
    bias = {
        r for r in runs if r.method == "erm" and r.budget == grid.FULL and (r.task, r.model) in grid.bias_models(cfg)
    }
    exp = {
        "config_json": 1,
        "assemble": len(sources) and len(ftft_config.active_tasks(cfg)),
        "tokenize": len({(r.task, grid.tokenizer_of(cfg, r.model)) for r in runs}),
        "train": len(runs) - len(bias),
        "train_bias_model": len(bias),
        "datamap": len(grid.all_datamaps(cfg)),
        "subset": len(grid.all_subsets(cfg)),
        "table": len(tables.table_ids(cfg)),
        "figure": len(figures.figure_ids(cfg)),
        "compare": 1,
        "claims": 1,
        "failed_runs": 1,
    }
    if cfg["mode"] == "paper":
        exp["download"] = exp["prepare"] = len(sources - set(cfg["byo"]))
        exp["fetch_model"] = len({r.model for r in runs if not cfg["models"][r.model]["path"]})
    else:
        exp["demo_data"] = len({s for s in sources if s.startswith("demo_")})
        exp["prepare"] = len(sources & set(cfg["byo"]))
        exp["build_demo_models"] = 1  # one job builds every stand-in
    return {k: v for k, v in exp.items() if v}


# ----------------------------------------------------------------------- the DAG
@pytest.mark.integration
def test_paper_grid_trains_200_runs_once_each(wf):
    """Jobs per rule as the grid expects (25 configurations x 4 seeds x 2 tasks: FTFT reads checkpoints of the
    full DM runs); each run's files come from exactly one job, the PoE bias models' also write the log-probs."""
    cfg, L = load_cfg(), Layout.from_config(load_cfg())
    counts = jobs(wf)
    assert counts == expected_jobs(cfg)
    assert counts["train"] + counts["train_bias_model"] == 200
    assert "A1" not in tables.table_ids(cfg)
    rows = summary(wf)
    records = {f for f in outputs(rows, "train") | outputs(rows, "train_bias_model") if f.endswith("/run.json")}
    assert records == {L.run_file("run.json", r) for r in grid.all_runs(cfg)}
    bias = {f for f in outputs(rows, "train_bias_model") if f.endswith("bias_logp.parquet")}
    assert bias == {
        L.run_file("bias_logp.parquet", grid.ref_run(t, m, s)) for t, m in grid.bias_models(cfg) for s in cfg["seeds"]
    }
    datamaps = {f for f in outputs(rows, "datamap") if f.endswith(".parquet")}
    assert datamaps == {L.datamap(*d) for d in grid.all_datamaps(cfg)}


@pytest.mark.integration
@pytest.mark.parametrize("overlay", [{}, {"limiting": {"enabled": True}}, {"active_tasks": ["hsd"]}])
def test_demo_dags(wf, tmp_path, overlay):
    """The demo DAG (no download, no hub fetch); limiting is opt-in with its table; active_tasks restricts all."""
    extra = tmp_path / "overlay.yaml"
    extra.write_text(yaml.safe_dump(overlay))
    args = ("--configfile", "config/demo.yaml", str(extra))
    cfg = load_cfg(ROOT / "config" / "demo.yaml", extra)
    counts = jobs(wf, *args)
    assert counts == expected_jobs(cfg)
    assert "download" not in counts and "fetch_model" not in counts
    limited = {r.budget for r in grid.all_runs(cfg) if r.budget != grid.FULL}
    assert limited == ({"1-3"} if "limiting" in overlay else set())
    assert ("A1" in tables.table_ids(cfg)) == ("limiting" in overlay)
    if "active_tasks" in overlay:
        files = [r["output_file"] for r in summary(wf, *args)]
        assert files and not [f for f in files if "/nli/" in f or "demo_nli" in f]
        assert set(tables.table_ids(cfg)) == {"3", "4", "5", "6", "7", "8", "9"}  # Tables 1/2 are NLI only


@pytest.mark.integration
def test_runs_from_another_directory(wf, tmp_path):
    """`-d elsewhere` (or snakedeploy): the base config is found beside the Snakefile."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    demo = str(wf / "config" / "demo.yaml")
    res = snakemake(tmp_path, "-s", str(wf / "Snakefile"), "-d", str(elsewhere), "-n", "--quiet", "--configfile", demo)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    # without the base config, the error names it (not a schema error about a missing key)
    with pytest.raises(ftft_config.ConfigError, match="only.yaml: the base configuration is missing.*workflow_config"):
        ftft_config.validate({"seeds": [0]}, source="only.yaml")


# ------------------------------------------------------------------------ bad configs
EVIL = "r;touch PWNED;#"
BAD_CONFIGS = {
    "unknown_model_in_table": (
        {"tables": {"1": {"tasks": ["nli"], "rows": [{"method": "erm", "main": "deberta-v9"}]}}},
        ["tables.1.rows[0].main", "deberta-v9"],
    ),
    "q_above_one": ({"q": 1.5}, ["'q'", "1.5"]),
    "empty_seeds": ({"seeds": []}, ["'seeds'"]),
    "typo_top_level_key": ({"seeeds": [0]}, ["seeeds"]),
    "step_fraction_above_one": (
        {"methods": {"ftft": {"fraction": {"nli": "4/3", "hsd": "1/3"}}}},
        ["'methods.ftft.fraction.nli'", "4/3"],
    ),
    "ftft_fraction_off_checkpoint": (
        {"methods": {"ftft": {"fraction": {"nli": "1/4", "hsd": "1/3"}}}},
        ["'methods.ftft.fraction.nli'", "1/4", "checkpoints"],
    ),
    "speed_fraction_above_one": ({"speed": {"fractions": ["1/15", "16/15"]}}, ["speed.fractions[1]", "16/15"]),
    "shell_in_results": ({"results": EVIL}, ["'results'", "touch"]),
    "space_in_results": ({"results": "out dir"}, ["'results'", "out dir"]),
    "results_is_root": ({"results": "/"}, ["'results'", "'/'", "project folder"]),
    "results_is_parent": ({"results": ".."}, ["'results'", "'..'", "project folder"]),
    "state_dir_is_results": ({"state_dir": "results"}, ["'state_dir'", "overlap"]),
    "state_dir_inside_results": ({"state_dir": "results/state"}, ["'state_dir'", "results/state", "overlap"]),
    "shell_in_task_name": ({"active_tasks": None, "tasks": {"t$(id>x)": {}}}, ["tasks", "t$(id>x)"]),
    "task_escapes_results": ({"tasks": {"../../../../escape": {}}}, ["tasks", "../../../../escape"]),
    "shell_in_url": ({"datasets": {"mnli": {"url": "https://x/$(id)"}}}, ["datasets.mnli.url"]),
    "shell_in_eval_name": (
        {"tasks": {"nli": {"ood": [{"name": "a;b", "source": "wanli", "split": "test"}]}}},
        ["name", "a;b"],
    ),
    "byo_file_missing": (
        {
            "byo": {"mine": {"files": {"train": "no/such.csv"}, "text_a": "t", "label": "l"}},
            "tasks": {"nli": {"train": {"source": "mine", "split": "train"}}},
        },
        ["byo.mine.files.train", "no/such.csv"],
    ),  # fmt: skip
    "missing_local_model_copy": (
        {"models": {"tinybert": {"path": "no/such/model"}}},
        ["models.tinybert.path", "no/such/model"],
    ),
    "unknown_weak_ref": ({"claims": {"weak_refs": {"nli": ["gpt-9"]}}}, ["claims.weak_refs.nli[0]", "gpt-9"]),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_is_refused(wf, tmp_path, monkeypatch, name):
    """What the Snakefile runs first (rules/common.smk: schema + semantic checks, then Plan.check), in process."""
    overlay, needles = BAD_CONFIGS[name]
    bad = tmp_path / f"{name}.yaml"
    bad.write_text(yaml.safe_dump(overlay))
    monkeypatch.chdir(wf)
    with pytest.raises(FtftError) as err:
        Plan(ftft_config.load(wf / "workflow_config.yaml", bad)).check()
    for needle in needles:
        assert needle in str(err.value)


UNSAFE_OVERLAYS = {
    "yte_template": '__use_yte__: true\nq: ?__import__("os").system("touch PWNED") or 0.33\n',
    "yaml_tag": "q: !!python/name:os.sep\n",
}


@pytest.mark.integration
@pytest.mark.parametrize("name", ["shell_in_results", "byo_file_missing", *UNSAFE_OVERLAYS])
def test_bad_overlay_fails_before_any_job(wf, tmp_path, name):
    """The same checks through `snakemake`: no DAG, nothing created (a shell or path escape would). Overlays are
    plain data: `__use_yte__` and YAML tags fail naming the file. ftft's own readers (plan, status, check-config)
    refuse them without evaluating anything; Snakemake 9 evaluates a YTE overlay while parsing its command line,
    before the Snakefile runs, so `snakemake` can only refuse to go on (README)."""
    bad = tmp_path / f"{name}.yaml"
    if name in UNSAFE_OVERLAYS:
        bad.write_text(UNSAFE_OVERLAYS[name])
        with pytest.raises(ftft_config.ConfigError, match=re.escape(str(bad))):
            ftft_config.load_overlays([bad])
        assert not list(Path.cwd().glob("PWNED"))
        needles = [f"invalid configuration: {bad}"]
    else:
        overlay, needles = BAD_CONFIGS[name]
        bad.write_text(yaml.safe_dump(overlay))
    before = {p.name for p in wf.parent.iterdir()}
    res = snakemake(wf, "--dry-run", "--configfile", str(bad))
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "invalid configuration" in out, out[-2000:]
    for needle in needles:
        assert needle in out, out[-2000:]
    assert "Building DAG of jobs" not in out
    assert {p.name for p in wf.parent.iterdir()} == before
    if name in UNSAFE_OVERLAYS:
        (wf / "PWNED").unlink(missing_ok=True)  # Snakemake itself may have run the template (see above)
    else:
        assert not list(wf.rglob("PWNED")) and not (wf / "x").exists()


# ---------------------------------------------------------------- lint and formatting
@pytest.mark.integration
def test_snakemake_lint_clean(wf):
    res = snakemake(wf, "--lint")
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "Congratulations, your workflow is in a good condition" in out, out


def test_every_shell_interpolation_is_quoted():
    """{input...}, {output...}, {log}, {wildcards...} in a shell command are :q-quoted; {params.X} is either
    quoted or built with shlex quoting in ftft.workflow (its name ends in args/env)."""
    text = "\n".join(p.read_text() for p in sorted((ROOT / "rules").glob("*.smk")))
    for cmd in re.findall(r'shell:\n((?:\s+".*"\n)+)', text):
        for field in re.findall(r"\{([^{}]+)\}", cmd):
            ok = field.endswith(":q") or field in ("params.args", "params.env")
            assert ok, f"unquoted {{{field}}} in shell command: {cmd.strip()}"


# ---------------------------------------------------------------- software environment
def _pins(requirements: list[str]) -> dict[str, str]:
    return {name.strip().lower(): version.strip() for name, _, version in (r.partition("==") for r in requirements)}


def test_dependencies_pinned_alike_and_all_used():
    """The conda env pins what pyproject pins; nothing in pyproject's dependencies is unused (torch, datasets,
    seaborn, ... do real work)."""
    deps = yaml.safe_load((ROOT / "envs" / "ftft.yaml").read_text())["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = [p for d in deps if isinstance(d, dict) and "pip" in d for p in d["pip"] if not p.startswith("-")]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _pins(pip) == _pins(project["dependencies"])
    assert all("==" in p for p in pip)
    assert (ROOT / "envs" / "ftft.post-deploy.sh").is_file()
    import_name = {"pyyaml": "yaml", "markdown-it-py": "markdown_it", "snakemake-executor-plugin-slurm": None}
    code = "\n".join(p.read_text() for p in (ROOT / "src" / "ftft").rglob("*.py"))
    for dep in _pins(project["dependencies"]):
        name = import_name.get(dep, dep.replace("-", "_"))
        if name is None or dep in ("snakemake", "protobuf", "sentencepiece", "safetensors", "tokenizers", "jsonschema"):
            continue  # used by Snakemake itself / loaded by transformers for DeBERTa-v3 (tested there)
        assert re.search(rf"^\s*(import|from) {name}\b", code, re.M), f"{dep} is a dependency but nothing imports it"


# ------------------------------------------------------- rerun triggers (touch + summary)
@pytest.mark.slow
def test_rerun_nothing_then_only_dependents_of_changed_model(tmp_path):
    """After faking every output, nothing is pending; changing one model's lr re-runs only the runs that
    use it (as main model or as reference) and what reads them; a cluster key, the state folder, threads,
    log interval or evaluation batch size re-run nothing."""
    wf = make_copy(tmp_path / "wf")
    small = wf / "small.yaml"
    small.write_text("seeds: [0]\n")
    rows = summary(wf, "--configfile", "small.yaml")
    for f in {r["output_file"] for r in rows}:
        p = wf / f
        if not p.suffix:  # directory() outputs: the eval sets, tokenised datasets
            p.mkdir(parents=True, exist_ok=True)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            p.write_text("fake\n")
    res = snakemake(wf, "--touch", "--forceall", "--cores", "1", "--configfile", "small.yaml", "--quiet", "all")
    assert res.returncode == 0, res.stderr[-3000:]
    assert not pending(wf, "--configfile", "small.yaml")

    cluster = wf / "cluster.yaml"
    cluster.write_text(
        yaml.safe_dump(
            {
                "cluster": {"gpu_utilisation": 0.5, "train_gpus": 2},
                "hub": {"offline": False},
                "state_dir": ".elsewhere",
                "training": {"threads": 2, "log_every": 7, "eval_batch_size": 64},
            }
        )
    )
    assert not pending(wf, "--configfile", "small.yaml", "cluster.yaml")

    changed = "electra-small"
    bump = wf / "bump.yaml"
    bump.write_text(yaml.safe_dump({"models": {changed: {"lr": 3.0e-5}}}))
    rows = summary(wf, "--configfile", "small.yaml", "bump.yaml")
    cfg = load_cfg(small, bump)
    L = Layout.from_config(cfg)
    runs = grid.all_runs(cfg)
    affected = {r for r in runs if r.model == changed or r.ref == changed}
    rerun = {
        f for f in outputs(rows, "train", True) | outputs(rows, "train_bias_model", True) if f.endswith("run.json")
    }
    assert rerun == {L.run_file("run.json", r) for r in affected}
    assert len(rerun) < len(runs) / 3
    datamaps = {f for f in outputs(rows, "datamap", True) if f.endswith(".parquet")}
    assert datamaps == {L.datamap(t, r, s) for t, r, s in grid.all_datamaps(cfg) if r == changed}
    assert outputs(rows, "subset", True) == {
        L.subset(r.task, r.method, r.ref, r.seed) for r in affected if r.ref == changed
    }
    rerun_jobs = pending(wf, "--configfile", "small.yaml", "bump.yaml")
    assert not {"download", "prepare", "assemble", "tokenize"} & set(rerun_jobs)
    assert "config_json" in rerun_jobs  # aggregation reruns (cheap)


# ------------------------------------------------------------------ demo end to end
@pytest.mark.slow
def test_demo_end_to_end(demo_run):
    """The whole demo DAG on CPU: every declared output exists; reruns do nothing; the report has every table."""
    wf, res, cfg = demo_run.wf, demo_run.res, demo_run.cfg
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    assert_artefacts(wf, cfg)
    # the terminal: the compute plan at the start, the failed-runs line at the end, no spec JSON
    assert "ftft compute plan:" in out and "training runs" in out.splitlines()[-1] + out[-2000:]
    assert '"eval_sets"' not in out and '"tasks":' not in out
    # what a person reads: no run fails, every cell filled, the demo note on top, short lines, README true
    assert "training runs finished, none failed" in out
    assert "Shell command: None" not in out and "reason:" not in out
    assert max(len(ln) for ln in out.splitlines() if not ln.lstrip().startswith(("input:", "output:"))) < 2000
    jobs = re.findall(r"(\d+) of \1 steps \(100%\) done", out)
    assert jobs and f"The demo runs {jobs[-1]} jobs" in (ROOT / "README.md").read_text().replace("\n", " ")
    for t in tables.table_ids(cfg):
        df = pd.read_csv(wf / cfg["results"] / "tables" / f"table{t}.csv")
        assert df["mean"].notna().all(), (t, df[df["mean"].isna()])
        assert "do not show the paper's effect" in (wf / cfg["results"] / "tables" / f"table{t}.md").read_text()
    assert "do not show the paper's effect" in (wf / cfg["results"] / "tables" / "claims.md").read_text()
    res = snakemake(wf, "--dry-run", "--configfile", "config/demo.yaml")
    assert "Nothing to be done" in res.stdout + res.stderr
    assert_report(wf, cfg, "--configfile", "config/demo.yaml")


# ------------------------------------------------------------- config reference
def test_config_readme_explains_every_schema_key():
    schema = ftft_config.load_schema()
    readme = (ROOT / "config" / "README.md").read_text()
    keys: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            keys.update(node.get("properties", {}))
            node = list(node.values())
        for v in node if isinstance(node, list) else []:
            walk(v)

    walk(schema)
    missing = sorted(k for k in keys if f"`{k}`" not in readme and f"`{k}." not in readme and f".{k}`" not in readme)
    assert not missing, f"config/README.md does not explain: {missing}"


# ------------------------------------------------------------- ftft.workflow helpers
def test_plan_inputs_and_params():
    cfg = load_cfg()
    cfg["datamap_seed"] = 1
    plan = Plan(cfg)
    dm = grid.Run("nli", "deberta-v3-large", "dm", "electra-small", "full", 2)
    inputs = plan.train_inputs(dm)
    assert inputs == {
        "data": "results/data/nli/tokenized/deberta-v3",
        "model": "resources/hub/deberta-v3-large.json",
        "subset": "results/subsets/nli/dm-electra-small/seed2.parquet",
    }
    dm_subset = plan.subset_inputs("nli", "dm", "electra-small", 2)
    assert dm_subset["datamap"] == "results/datamaps/nli/electra-small/seed1.parquet"
    poe = plan.subset_inputs("hsd", "poe", "tinybert", 0)
    assert poe["bias"] == "results/runs/hsd/tinybert/erm-none/full/seed1/bias_logp.parquet"
    assert plan.layout.state_dir(dm) == ".ftft-state/" + dm.path
    # the training param is this run's spec only: another model's lr does not change it
    spec = plan.train_spec(dm)
    cfg2 = load_cfg()
    cfg2["datamap_seed"] = 1
    cfg2["models"]["electra-base"]["lr"] = 1.0
    assert Plan(cfg2).train_spec(dm) == spec
    cfg2["training"].update(threads=4, log_every=3, eval_batch_size=8)  # nor do keys that change no result
    cfg2["state_dir"] = ".elsewhere"  # (nor the state folder: no train param holds it)
    assert Plan(cfg2).train_spec(dm) == spec
    cfg2["models"]["deberta-v3-large"]["lr"] = 1.0
    assert Plan(cfg2).train_spec(dm) != spec
    # operational keys are not in what the aggregation jobs read
    dump = plan.config_dump()
    assert "cluster" not in dump and "hub" not in dump and "threads" not in dump["training"]
    demo = Plan(load_cfg(ROOT / "config" / "demo.yaml"))
    erm = grid.Run("hsd", "tinybert", "erm")
    assert demo.train_inputs(erm)["model"] == "resources/demo_models/tinybert"
    assert demo.cfg["cluster"]["train_gpus"] == 0 and plan.cfg["cluster"]["train_gpus"] == 1
    assert demo.tokenized("nli", "roberta-large") != demo.tokenized("nli", "bert-large")
    # download arguments are shell-quoted; null values are left out (air-gapped: the mirror only)
    cfg["datasets"]["anli"]["sha256"] = {"anli_v1.0.zip": "a" * 64}
    cfg["datasets"]["anli"]["mirror"] = "/data/mirror/anli.zip"
    args = Plan(cfg).download_args("anli")
    assert args.startswith("--url https://")
    assert args.endswith('--sha256 \'{"anli_v1.0.zip":"' + "a" * 64 + "\"}' --mirror /data/mirror/anli.zip")
    cfg["datasets"]["anli"]["url"] = None
    assert "--url" not in Plan(cfg).download_args("anli")


def test_compute_plan_from_measured_lengths(tmp_path, tiny_model_dir):
    """With tokenised data the plan batches its length histogram as the engine does and prints padded / real."""
    cfg = load_cfg()
    cfg["results"] = str(tmp_path)
    lengths = np.random.default_rng(0).lognormal(np.log(40), 0.5, 5000).round().clip(5, 200).astype(int)
    stats = Path(Layout.from_config(cfg).tokenized("nli", grid.tokenizer_of(cfg, "deberta-v3-large"))) / "stats.json"
    stats.parent.mkdir(parents=True)
    stats.write_text(json.dumps({"train": {"length_counts": np.bincount(lengths).tolist()}}))
    run = grid.Run("nli", "deberta-v3-large", "erm")
    padded = {}
    for buckets in (1, 3):
        cfg["training"]["length_buckets"] = buckets
        est = Plan(cfg).estimate(run)
        assert est.tokens_source == "tokenised data"
        padded[buckets] = est.train_tokens / est.real_tokens
        assert est.train_tokens == run.steps(cfg) * 32 * padded_per_example(np.sort(lengths), 32, 0, buckets, 8)
    assert 1 < padded[3] < 0.75 * padded[1]
    assert f"| {padded[3]:.2f} |" in Plan(cfg).compute_markdown()
    # memory from the real parameter count: a model on disk counts its own
    total = count_params(load_tokenizer_and_model(str(tiny_model_dir), 3)[1])[0]
    # the formula leaves out the pooler and classifier: 4% of this tiny model, < 1% of a paper model
    assert _dims_from_config(tiny_model_dir / "config.json")[3] == pytest.approx(total, rel=0.05)


def test_compute_plan_of_the_paper_grid(monkeypatch, tmp_path):
    """What Snakemake asks per training job (inputs, spec, runtime, memory) reuses what is per config: the grid is
    expanded once whatever the number of runs (it was once per job: quadratic planning)."""
    overlay = tmp_path / "seeds.yaml"
    overlay.write_text("seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n")
    cfg = load_cfg(overlay)
    plan, expand, calls = Plan(cfg), grid.all_runs, []
    monkeypatch.setattr(grid, "all_runs", lambda cfg: calls.append(1) or expand(cfg))
    for run in plan.runs:
        plan.train_inputs(run), plan.train_spec(run), plan.runtime_min(run), plan.mem_mb(run)
    assert len(plan.runs) == 600 and len(calls) == 1 and plan.compute_rows()[-1]["jobs"] == 600
    # NLI: 60k steps x 32 x 92 tokens per run; DeBERTaV3-Large ERM: about 5 GPU-hours at 35% of an A100
    big = plan.estimate(grid.Run("nli", "deberta-v3-large", "erm"))
    assert big.train_tokens == 60000 * 32 * 92
    assert 0.3 < big.gpu_hours < 5 and plan.runtime_min(big.run) > 60 * big.gpu_hours
    small = plan.estimate(grid.Run("hsd", "tinybert", "erm"))
    assert plan.runtime_min(small.run) == cfg["cluster"]["min_runtime_min"] < plan.runtime_min(big.run)
    assert f"about {PAPER_DAYS:g} GPU-days" in plan.compute_summary() and "600 training jobs" in plan.compute_summary()
