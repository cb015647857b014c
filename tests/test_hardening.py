"""Hardening: bad inputs end in a one-line error naming the file or the config key, never a traceback.

1. A file an earlier job wrote that is truncated or corrupt (normalised data, training and
   evaluation sets, tokenised splits, subsets, training dynamics, run records, data maps, bias
   log-probabilities, predictions, metrics, table CSVs, the config dump), given to each kind of
   job that reads it (assemble, tokenize, datamap, subset, train, table): the job exits 1 with a
   ``DataError`` naming the file and saying what to do, and leaves no output (no temporary file
   either). Each job is called the way the rule calls it (``ftft ...`` through ``ftft.cli.main``);
   the assemble and train jobs also through a real ``snakemake`` on a copy of the workflow.
2. A config mistake that the config alone decides (labels that do not match the source, a
   misspelt split, an unknown demo source, an evaluation set called ``train``, a BYO split or
   label list that does not match the files, a local model copy that is no model, a missing
   mirror) fails ``snakemake -n`` before the DAG is built, naming the key and the value.

``benchmarks/hardening.py`` audits the same on a whole small workflow (and kills training jobs).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import engine_fixtures as ef
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from wfutil import ROOT, SNAKEMAKE, make_copy, snakemake

from ftft import config as ftft_config
from ftft import datamap, grid, tables
from ftft.cli import main
from ftft.data import schema
from ftft.errors import DataError
from ftft.io import atomic_path, write_json, write_parquet
from ftft.layout import Layout
from ftft.workflow import Plan

ADVICE = "add `--force "  # every unreadable-file error says how to get the file rebuilt


# --------------------------------------------------------------------------------- corruption
def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to ``keep`` of its bytes (a copy interrupted half-way, a full disk)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def cut_arrow_stream(path: Path) -> Path:
    """An Arrow stream that ends cleanly after half of its rows: it reads without an error."""
    table = pa.ipc.open_stream(pa.BufferReader(path.read_bytes())).read_all()  # not mapped: rewritten below
    half = table.slice(0, len(table) // 2)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, half.schema) as writer:
        writer.write_table(half)
    return path


def run_job(argv: list[str], caplog) -> tuple[int, str]:
    """``ftft ARGV`` as a rule runs it: exit status and the error lines it logged."""
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        rc = main(argv)
    return rc, "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def assert_clear_failure(rc: int, message: str, bad: Path, outputs: list[Path]) -> None:
    assert rc == 1, message
    assert str(bad) in message, message
    assert ADVICE in message or "delete" in message, message
    assert len(message.splitlines()) == 1, message
    for out in outputs:
        assert not out.exists(), f"partial output left: {out}"
        assert not list(out.parent.glob(f".{out.name}.*")), f"temporary file left beside {out}"


# ------------------------------------------------------------------------- a small job tree
@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """What the jobs of one toy task read: normalised source, task sets, a tiny model and its tokenised
    data, a reference run's dynamics / record / bias log-probabilities, its data map and subsets."""
    root = tmp_path_factory.mktemp("tree")
    frames = [
        ef.toy_frame(ef.N_TRAIN, 1, "train", ef.FILLER),
        ef.toy_frame(ef.N_ID, 2, "id", ef.FILLER),
        ef.toy_frame(ef.N_OOD, 3, "ood", ef.FILLER + ef.OOD_FILLER),
    ]
    schema.write(pd.concat(frames, ignore_index=True), root / "sources" / "toy.parquet", ef.LABELS, "toy")
    assert main(["assemble", "--spec", json.dumps(SPEC), "--sources-dir", str(root / "sources"),
                 "--train", str(root / "data" / "train.parquet"), "--eval-dir", str(root / "data" / "eval")]) == 0  # fmt: skip
    ef.build_toy_model(root / "model")
    ef.tokenize_toy(root / "data", root / "model", root / "tok")
    train = schema.read(root / "data" / "train.parquet")[0]
    ref = root / "ref"
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(5, len(train))).astype(np.float16)
    datamap.save_dynamics(ref / "dynamics.npz", train["uid"], train["label"], probs)
    write_json(ref / "run.json", {"run": "toy", "status": "ok", "failure_reason": None})
    logp = np.log(rng.dirichlet(np.ones(3), size=len(train)))
    write_parquet(pd.DataFrame({"uid": train["uid"], **{f"bias_logp_{c}": logp[:, c] for c in range(3)}}),
                  ref / "bias_logp.parquet")  # fmt: skip
    assert main(["datamap", "--run-dir", str(ref), "--train", str(root / "data" / "train.parquet"),
                 "--out", str(root / "datamap.parquet"), "--q", "0.33"]) == 0  # fmt: skip
    assert main(subset_args(root, "dm", root / "subset_dm.parquet")) == 0
    return root


SPEC = {
    "labels": ef.LABELS,
    "train": {"source": "toy", "split": "train"},
    "id_test": {"name": "toy_id", "source": "toy", "split": "id"},
    "ood": [{"name": "toy_ood", "source": "toy", "split": "ood"}],
}


@pytest.fixture
def work(tree, tmp_path) -> Path:
    """A private copy of the tree, free to corrupt."""
    return Path(shutil.copytree(tree, tmp_path / "tree"))


def subset_args(root: Path, method: str, out: Path) -> list[str]:
    extra = {
        "random": ["--q", "0.33"],
        "dm": ["--q", "0.33", "--datamap", str(root / "datamap.parquet")],
        "jtt": ["--ref-run", str(root / "ref"), "--spec", '{"jtt_epoch": 2, "upweight": 4.0}'],
        "poe": ["--ref-run", str(root / "ref")],
    }[method]
    return ["subset", "--method", method, "--train", str(root / "data" / "train.parquet"), "--out", str(out), *extra]


# ----------------------------------------------------------- 1. each job, each file it reads
def test_assemble_truncated_source(work, caplog):
    bad = truncate(work / "sources" / "toy.parquet")
    out_train, out_eval = work / "new" / "train.parquet", work / "new" / "eval"
    rc, msg = run_job(["assemble", "--spec", json.dumps(SPEC), "--sources-dir", str(work / "sources"),
                       "--train", str(out_train), "--eval-dir", str(out_eval)], caplog)  # fmt: skip
    assert_clear_failure(rc, msg, bad, [out_train, out_eval])


@pytest.mark.parametrize("which", ["train", "eval"])
def test_tokenize_truncated_task_set(work, caplog, which):
    bad = truncate(work / "data" / ("train.parquet" if which == "train" else "eval/toy_ood.parquet"))
    out = work / "tok2"
    rc, msg = run_job(["tokenize", "--train", str(work / "data" / "train.parquet"), "--eval-dir",
                       str(work / "data" / "eval"), "--eval-sets", "toy_id", "toy_ood", "--model", str(work / "model"),
                       "--max-length", "24", "--out", str(out)], caplog)  # fmt: skip
    assert_clear_failure(rc, msg, bad, [out])
    if which == "eval":  # a file inside the assemble job's folder output: the folder must go
        assert f"--force {work / 'data' / 'eval'}`" in msg


@pytest.mark.parametrize("name", ["dynamics.npz", "run.json", "train.parquet"])
def test_datamap_unreadable_input(work, caplog, name):
    bad = truncate(work / "data" / name if name == "train.parquet" else work / "ref" / name)
    out, plot = work / "dm2.parquet", work / "dm2.png"
    rc, msg = run_job(["datamap", "--run-dir", str(work / "ref"), "--train", str(work / "data" / "train.parquet"),
                       "--out", str(out), "--plot", str(plot), "--q", "0.33"], caplog)  # fmt: skip
    assert_clear_failure(rc, msg, bad, [out, plot])


@pytest.mark.parametrize(
    "method,file",
    [("random", "data/train.parquet"), ("dm", "datamap.parquet"), ("jtt", "ref/dynamics.npz"),
     ("jtt", "ref/run.json"), ("poe", "ref/bias_logp.parquet")],
)  # fmt: skip
def test_subset_unreadable_input(work, caplog, method, file):
    bad = truncate(work / file)
    out = work / "s.parquet"
    rc, msg = run_job(subset_args(work, method, out), caplog)
    assert_clear_failure(rc, msg, bad, [out])


def test_empty_run_record_and_garbage_parquet(work, caplog):
    """Zero bytes and non-parquet bytes are as clear as a truncated file."""
    (work / "ref" / "run.json").write_bytes(b"")
    rc, msg = run_job(subset_args(work, "jtt", work / "s.parquet"), caplog)
    assert_clear_failure(rc, msg, work / "ref" / "run.json", [work / "s.parquet"])
    (work / "datamap.parquet").write_bytes(b"PAR1 not really a parquet file")
    rc, msg = run_job(subset_args(work, "dm", work / "s.parquet"), caplog)
    assert_clear_failure(rc, msg, work / "datamap.parquet", [work / "s.parquet"])


# the tokenised folder (the tokenize job's folder output) and the subset, as the train job reads them
TRAIN_INPUTS = {
    "arrow": lambda w: truncate(next((w / "tok" / "data" / "train").glob("*.arrow"))),
    "arrow_cut_cleanly": lambda w: cut_arrow_stream(next((w / "tok" / "data" / "toy_ood").glob("*.arrow"))),
    "split_index": lambda w: truncate(w / "tok" / "data" / "train" / "state.json"),
    "dataset_index": lambda w: truncate(w / "tok" / "data" / "dataset_dict.json"),
    "stats": lambda w: truncate(w / "tok" / "stats.json"),
    "subset": lambda w: truncate(w / "subset_dm.parquet"),
}


@pytest.mark.integration  # imports torch and loads a model
@pytest.mark.parametrize("kind", sorted(TRAIN_INPUTS))
def test_train_unreadable_input(work, caplog, kind):
    from ftft.train.spec import make_spec

    bad = TRAIN_INPUTS[kind](work)
    cfg = ef.toy_config(work / "model", steps=6, checkpoints=2)
    run = ef.toy_run("dm", "tiny") if kind == "subset" else ef.toy_run()
    out = work / "run"
    argv = ["train", "--spec", json.dumps(make_spec(cfg, run)), "--data-dir", str(work / "tok"), "--out", str(out),
            "--state-dir", str(work / "state"), "--model-path", str(work / "model")]  # fmt: skip
    if kind == "subset":
        argv += ["--subset", str(bad)]
    rc, msg = run_job(argv, caplog)
    where = bad.parent if kind == "arrow_cut_cleanly" else bad  # rows missing: the split is named
    assert_clear_failure(rc, msg, where, [out / "run.json", out / "metrics.csv"])
    if kind != "subset":
        assert f"--force {work / 'tok'}`" in msg
    assert not out.exists() or not any(out.iterdir())


# tables read run records, metrics, predictions (Table 5), other tables' CSV (Table 8), the config dump
@pytest.fixture(scope="module")
def results(tmp_path_factory):
    import helpers_runs as hr

    cfg = hr.tiny_config(seeds=(0, 1))
    root = tmp_path_factory.mktemp("results")
    merged = grid.Needs()  # what Tables 2, 3, 5 and 7 read (Table 8 reads the CSV of 2 and 7)
    for tid in ("2", "3", "5", "7"):
        needs = tables.needs(cfg, tid)
        for kind in ("runs", "predictions", "dynamics", "datamaps"):
            getattr(merged, kind).update(getattr(needs, kind))
    hr.write_needed(root, cfg, merged)
    layout = Layout(root)
    for tid in ("2", "7"):
        tables.write(cfg, root, tid, layout.table_prefix(tid))
    write_json(root / "config.json", cfg)
    return cfg, root


def _file_of(cfg: dict, root: Path, tid: str, name: str) -> Path:
    layout = Layout(root)
    needs = tables.needs(cfg, tid)
    if name == "table":
        return Path(layout.table(sorted(needs.tables)[0], "csv"))
    if name == "config":
        return root / "config.json"
    runs = needs.predictions if name == "predictions.parquet" else needs.runs
    return Path(layout.run_file(name, sorted(runs)[0]))


@pytest.mark.parametrize(
    "tid,name",
    [("5", "predictions.parquet"), ("3", "metrics.csv"), ("3", "run.json"), ("8", "table"), ("3", "config")],
)
def test_table_unreadable_input(results, tmp_path, caplog, tid, name):
    cfg, shared = results
    root = Path(shutil.copytree(shared, tmp_path / "results"))
    bad = truncate(_file_of(cfg, root, tid, name), keep=0.3)
    prefix = Path(Layout(root).table_prefix(tid))
    rc, msg = run_job(["table", "--id", tid, "--config-json", str(root / "config.json"), "--results", str(root),
                       "--out-prefix", str(prefix)], caplog)  # fmt: skip
    assert_clear_failure(rc, msg, bad, [prefix.with_name(prefix.name + ext) for ext in (".csv", ".md", ".tex")])


def test_readers_name_the_file_for_every_kind(work):
    """The shared readers, directly: each kind of file, truncated, is a DataError naming it."""
    from ftft import io, results, subsets
    from ftft.train.data import load_tokenized, tokenized_stats

    cases = [
        (work / "sources" / "toy.parquet", lambda p: schema.read(p)),
        (work / "data" / "train.parquet", subsets.read_train_uids),
        (work / "subset_dm.parquet", subsets.read),
        (work / "datamap.parquet", datamap.read),
        (work / "ref" / "dynamics.npz", datamap.load_dynamics),
        (work / "ref" / "bias_logp.parquet", results.read_parquet),
        (work / "ref" / "run.json", io.read_json),
        (work / "tok" / "stats.json", lambda p: tokenized_stats(p.parent)),
        (work / "tok" / "data" / "dataset_dict.json", lambda p: load_tokenized(work / "tok", [], 0)),
    ]
    for path, read in cases:
        truncate(path)
        with pytest.raises(DataError, match="truncated or corrupt") as err:
            read(path)
        assert str(path) in str(err.value) and ADVICE in str(err.value)


def test_a_full_disk_names_the_file_and_the_cause(tmp_path):
    """A real ENOSPC (writing to /dev/full) while a job writes its output: a DataError naming the file and the cause
    (the CLI and the train job print it without a traceback), nothing left under the final name."""
    target = tmp_path / "figure2.png"
    with pytest.raises(DataError, match=rf"{re.escape(str(target))}: cannot write it: .*\(ENOSPC\)"):
        with atomic_path(target), open("/dev/full", "wb") as full:
            full.write(b"x" * 100_000)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ through a real snakemake run
@pytest.fixture(scope="module")
def wf(tmp_path_factory) -> Path:
    return make_copy(tmp_path_factory.mktemp("wf"))


SMALL = {"active_tasks": ["hsd"], "seeds": [0], "demo": {"hsd_train_rows": 60, "eval_rows": 10}}


@pytest.mark.integration
def test_snakemake_assemble_job_with_truncated_source(wf, tmp_path, demo_frames):
    """The assemble job of a real run gets a truncated normalised source: the run stops with the one-line
    error naming the file (no traceback) and the job's outputs are gone."""
    overlay = tmp_path / "small.yaml"
    overlay.write_text(yaml.safe_dump(SMALL))
    cfg = ftft_config.load(ROOT / "workflow_config.yaml", ROOT / "config" / "demo.yaml", overlay)
    layout = Layout.from_config(cfg)
    source = wf / layout.source("demo_hsd")
    schema.write(demo_frames["hsd"], source, schema.HSD_LABELS, "demo_hsd")
    truncate(source)
    target = layout.task_train("hsd")
    res = snakemake(wf, target, "--cores", "1", "--allowed-rules", "assemble", "--configfile", "config/demo.yaml",
                    str(overlay))  # fmt: skip
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert f"{layout.source('demo_hsd')}: not a readable normalised data file" in out, out[-3000:]
    assert not (wf / target).exists() and not (wf / layout.task_eval_dir("hsd")).exists()
    # the advice, verbatim: add `--force FILE` right after `snakemake` (rebuilds only the file), then run as before
    args = ["--cores", "1", "--configfile", "config/demo.yaml", str(overlay)]
    forced = re.search(r"add `(--force \S+)` right after `snakemake`", out).group(1).split()
    assert forced[1] == layout.source("demo_hsd")
    res = snakemake(wf, *forced, target, *args)  # a command that names a target too
    assert res.returncode == 0 and (wf / target).is_file(), (res.stdout + res.stderr)[-3000:]
    shutil.rmtree(wf / cfg["results"])


@pytest.mark.integration
def test_sigint_to_snakemake_keeps_finished_training(wf, tmp_path, tiny_model_dir, demo_task_dir):
    """SIGINT to Snakemake while a training job runs: the job finishes, Snakemake marks its outputs incomplete;
    `--rerun-incomplete` then restores them from the state folder instead of training again."""
    from ftft.tokenize import tokenize_task
    from ftft.train.cli import KEPT

    overlay = tmp_path / "small.yaml"
    overlay.write_text(yaml.safe_dump(SMALL))
    cfg = ftft_config.load(ROOT / "workflow_config.yaml", ROOT / "config" / "demo.yaml", overlay)
    layout, run = Layout.from_config(cfg), grid.Run("hsd", "tinybert", "erm")
    shutil.copytree(tiny_model_dir, wf / layout.demo_model("tinybert"), dirs_exist_ok=True)
    data = demo_task_dir("hsd") / "data" / "hsd"
    tok = wf / Plan(cfg).tokenized("hsd", "tinybert")
    tokenize_task(data / "train.parquet", data / "eval", grid.task_eval_sets(cfg, "hsd"), str(tiny_model_dir), 32, tok)
    target = layout.run_file("run.json", run)
    args = [target, "--cores", "1", "--allowed-rules", "train", "train_bias_model", "--configfile", "config/demo.yaml",
            str(overlay)]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    sm = subprocess.Popen([SNAKEMAKE, *args], cwd=wf, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lock, deadline = wf / f"{layout.state_dir(run)}.lock", time.monotonic() + 300
    while not lock.exists() and sm.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    sm.send_signal(signal.SIGINT)  # the training job has started
    out = sm.communicate(timeout=600)[0].decode()
    assert sm.returncode != 0 and (wf / target).is_file(), out[-3000:]
    finished = (wf / target).read_bytes()
    res = snakemake(wf, *args, "--rerun-incomplete")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "restored the outputs of this finished run" in (wf / layout.train_log(run)).read_text()
    assert (wf / target).read_bytes() == finished
    assert not (wf / layout.state_dir(run) / KEPT).exists()  # the successful run took them
    shutil.rmtree(wf / cfg["results"])
    shutil.rmtree(wf / cfg["resources"])


@pytest.mark.integration
def test_snakemake_train_job_with_truncated_tokenised_split(wf, tmp_path, tiny_model_dir, demo_task_dir):
    """The train job (a `script:` rule) gets a truncated tokenised split: clear error, no run outputs."""
    from ftft.tokenize import tokenize_task

    overlay = tmp_path / "small.yaml"
    overlay.write_text(yaml.safe_dump(SMALL))
    cfg = ftft_config.load(ROOT / "workflow_config.yaml", ROOT / "config" / "demo.yaml", overlay)
    layout = Layout.from_config(cfg)
    run = grid.Run("hsd", "tinybert", "erm")
    shutil.copytree(tiny_model_dir, wf / layout.demo_model("tinybert"), dirs_exist_ok=True)
    data = demo_task_dir("hsd") / "data" / "hsd"
    tok = wf / Plan(cfg).tokenized("hsd", "tinybert")
    tokenize_task(data / "train.parquet", data / "eval", grid.task_eval_sets(cfg, "hsd"), str(tiny_model_dir), 32, tok)
    bad = truncate(next((tok / "data" / "train").glob("*.arrow")))
    target = layout.run_file("run.json", run)
    res = snakemake(wf, target, "--cores", "1", "--allowed-rules", "train", "train_bias_model", "--configfile",
                    "config/demo.yaml", str(overlay))  # fmt: skip
    out = res.stdout + res.stderr
    log = wf / layout.train_log(run)
    text = log.read_text() if log.is_file() else ""
    assert res.returncode != 0, out[-3000:]
    assert "Traceback" not in out + text, (out + text)[-3000:]
    assert str(bad.relative_to(wf)) in text and "tokenised split" in text, text[-3000:]
    assert not (wf / layout.run_dir(run)).exists() or not any((wf / layout.run_dir(run)).iterdir())
    shutil.rmtree(wf / cfg["results"])
    shutil.rmtree(wf / cfg["resources"])


# -------------------------------------------------------- 2. config mistakes at `snakemake -n`
BYO = {"files": {"train": "byo/train.csv", "test": "byo/test.csv"}, "text_a": "text", "label": "label"}
DEMO_MISTAKES = {
    "labels_not_the_sources": (
        {"tasks": {"hsd": {"labels": ["hate", "nothate"]}}},
        ["tasks.hsd.labels", "['hate', 'nothate']", "demo_hsd"],
    ),
    "misspelt_split": (
        {"tasks": {"hsd": {"train": {"source": "demo_hsd", "split": "trian"}}}},
        ["tasks.hsd.train.split", "'trian'", "ood_r2_original"],
    ),
    "unknown_demo_source": (
        {"tasks": {"hsd": {"id_test": {"name": "cad", "source": "demo_hate", "split": "test"}}}},
        ["tasks.hsd.id_test.source", "demo_hate", "demo_hsd"],
    ),
    "eval_set_called_train": (
        {"tasks": {"hsd": {"id_test": {"name": "train", "source": "demo_hsd", "split": "test"}}}},
        ["tasks.hsd.id_test.name", "'train'"],
    ),
    "byo_split_not_in_files": (
        {"byo": {"mine": BYO}, "tasks": {"hsd": {"train": {"source": "mine", "split": "training"}}}},
        ["tasks.hsd.train.split", "byo.mine.files", "'training'"],
    ),
    "byo_labels_not_the_tasks": (
        {
            "byo": {"mine": {**BYO, "labels": ["hate", "nothate"]}},
            "tasks": {"hsd": {"train": {"source": "mine", "split": "train"}}},
        },
        ["tasks.hsd.labels", "byo.mine.labels", "['hate', 'nothate']"],
    ),  # fmt: skip
}
PAPER_MISTAKES = {
    "paper_labels_not_the_sources": (
        {"tasks": {"hsd": {"labels": ["nothate", "hateful"]}}},
        ["tasks.hsd.labels", "hateful", "'cad'"],
    ),
    "paper_misspelt_split": (
        {"tasks": {"hsd": {"ood": [{"name": "dyna", "source": "dynahate", "split": "test_r2_orignal"}]}}},
        ["tasks.hsd.ood[0].split", "test_r2_orignal"],
    ),
    "paper_model_path_not_a_model": (
        {"models": {"tinybert": {"path": "config"}}},
        ["models.tinybert.path", "'config'"],
    ),
    "paper_mirror_missing": ({"datasets": {"cad": {"mirror": "no/such/data.zip"}}}, ["datasets.cad.mirror", "no/such"]),
}
MISTAKES = {**DEMO_MISTAKES, **PAPER_MISTAKES}


def _dry_run(wf: Path, name: str) -> tuple[str, int, str]:
    overlay, _ = MISTAKES[name]
    bad = wf / f"{name}.yaml"
    base = {"active_tasks": ["hsd"], "seeds": [0]}
    bad.write_text(yaml.safe_dump(ftft_config.deep_update(base, overlay)))
    demo = ["config/demo.yaml"] if name in DEMO_MISTAKES else []
    res = snakemake(wf, "--dry-run", "--configfile", *demo, bad.name)
    return name, res.returncode, res.stdout + res.stderr


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory) -> dict[str, tuple[int, str]]:
    """Every mistake's `snakemake -n`, two at a time (each in its own copy of the workflow)."""
    copies = []
    for i in range(2):
        copy = make_copy(tmp_path_factory.mktemp(f"wf_dry{i}"))
        (copy / "byo").mkdir()
        for split in ("train", "test"):
            (copy / "byo" / f"{split}.csv").write_text("text,label\nsome text,hate\nother text,nothate\n")
        copies.append(copy)
    names = sorted(MISTAKES)
    with ThreadPoolExecutor(2) as pool:
        done = pool.map(lambda i: _dry_run(copies[i % 2], names[i]), range(len(names)))
    return {name: (rc, out) for name, rc, out in done}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_config_mistake_fails_at_dry_run_naming_the_key(dry_runs, name):
    rc, out = dry_runs[name]
    assert rc != 0, out[-2000:]
    assert "invalid configuration" in out, out[-2000:]
    for needle in MISTAKES[name][1]:
        assert needle in out, f"{needle!r} not in: {out[-2000:]}"
    assert "Building DAG of jobs" not in out and "Traceback" not in out, out[-2000:]


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_config_mistake_fails_in_check_config(tmp_path, monkeypatch, caplog, name):
    """`ftft check-config` (no Snakemake) runs the same checks: the same key, the same value."""
    overlay, needles = MISTAKES[name]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()  # a folder that is no model (paper_model_path_not_a_model)
    (tmp_path / "byo").mkdir()
    for split in ("train", "test"):
        (tmp_path / "byo" / f"{split}.csv").write_text("text,label\nsome text,hate\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(ftft_config.deep_update({"active_tasks": ["hsd"], "seeds": [0]}, overlay)))
    demo = [str(ROOT / "config" / "demo.yaml")] if name in DEMO_MISTAKES else []
    rc, msg = run_job(["check-config", str(ROOT / "workflow_config.yaml"), *demo, str(bad)], caplog)
    assert rc == 1
    for needle in needles:
        assert needle in msg, msg


def test_shipped_configs_pass_the_new_checks(monkeypatch):
    monkeypatch.chdir(ROOT)  # BYO files are relative to the working directory
    for overlays in (["config/demo.yaml"], ["config/byo-example.yaml"], ["config/rehearsal.yaml"]):
        cfg = ftft_config.load(ROOT / "workflow_config.yaml", *(ROOT / o for o in overlays))
        Plan(cfg).check()
