"""Hardening: bad inputs end in a one-line error naming the file or the config key, never a traceback.

1. A truncated or corrupt file an earlier job wrote, given to each kind of job that reads it (called as its rule calls
it, ``ftft ...`` through ``ftft.cli.main``; assemble and train also through a real ``snakemake``): the job exits 1 with
a ``DataError`` naming the file and what to do, and leaves no output, not even a temporary file. 2. A config mistake
that the config alone decides (the ``MISTAKES`` below) fails ``ftft check-config`` and ``snakemake -n`` before the DAG
is built, naming the key and the value. ``benchmarks/hardening.py`` audits the same on a whole small workflow."""

import functools
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
from subprocess import PIPE, STDOUT

import engine_fixtures as ef
import helpers_runs as hr
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
from ftft.tokenize import tokenize_task
from ftft.train.cli import KEPT
from ftft.train.spec import make_spec
from ftft.workflow import Plan

ADVICE = "add `--force "  # every unreadable-file error says how to get the file rebuilt


# --------------------------------------------------------------------------------- corruption
def damage(path: Path, how: str = "truncated", keep: float = 0.5) -> Path:
    """Cut to ``keep`` of its bytes (``truncated``: a copy interrupted half-way, a full disk), ``empty``, ``garbage``
    (not the format at all), or ``cut_cleanly``: an Arrow stream that ends after half of its rows (reads without error)."""
    data = path.read_bytes()
    if how == "cut_cleanly":
        table = pa.ipc.open_stream(pa.BufferReader(data)).read_all()
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table.slice(0, len(table) // 2))
    else:
        path.write_bytes({"truncated": data[: int(len(data) * keep)], "empty": b"", "garbage": b"PAR1 junk"}[how])
    return path


def cli(cmd: str, **flags) -> list[str]:
    """The arguments of ``ftft CMD --some-flag VALUE ...`` for ``some_flag=VALUE`` (a list: several values)."""
    argv = [cmd]
    for key, value in flags.items():
        argv += [f"--{key.replace('_', '-')}", *map(str, value if isinstance(value, list) else [value])]
    return argv


def run_job(argv: list[str], caplog) -> tuple[int, str]:
    """``ftft ARGV`` as a rule runs it: exit status and the error lines it logged."""
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        rc = main(argv)
    return rc, "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def assert_clear_failure(rc: int, message: str, bad: Path, outputs: list[Path]) -> None:
    assert rc == 1, message
    assert str(bad) in message, message
    assert ADVICE in message, message
    assert len(message.splitlines()) == 1, message
    for out in outputs:
        assert not out.exists(), f"partial output left: {out}"
        assert not list(out.parent.glob(f".{out.name}.*")), f"temporary file left beside {out}"


# ------------------------------------------------------------------------- a small job tree
SPEC = {
    "labels": ef.LABELS,
    "train": {"source": "toy", "split": "train"},
    "id_test": {"name": "toy_id", "source": "toy", "split": "id"},
    "ood": [{"name": "toy_ood", "source": "toy", "split": "ood"}],
}


def job(w: Path, name: str, out: Path) -> tuple[list[str], list[Path]]:
    """``ftft NAME`` as its rule calls it on the tree ``w`` (``subset-METHOD``: the subset job; ``train-dm``: a run on
    the DM subset), writing into ``out``: its arguments and outputs."""
    train = w / "data" / "train.parquet"
    if name == "assemble":
        outs = [out / "train.parquet", out / "eval"]
        return cli("assemble", spec=json.dumps(SPEC), sources_dir=w / "sources", train=outs[0], eval_dir=outs[1]), outs
    if name == "tokenize":
        sets = {"eval_dir": w / "data" / "eval", "eval_sets": ["toy_id", "toy_ood"]}
        return cli("tokenize", train=train, **sets, model=w / "model", max_length=24, out=out), [out]
    if name == "datamap":
        outs = [out / "datamap.parquet", out / "datamap.png"]
        return cli("datamap", run_dir=w / "ref", train=train, out=outs[0], plot=outs[1], q=0.33), outs
    if name.startswith("train"):
        dm = name == "train-dm"
        run = ef.toy_run("dm", "tiny") if dm else ef.toy_run()
        spec = json.dumps(make_spec(ef.toy_config(w / "model", steps=6, checkpoints=2), run))
        dirs = {"data_dir": w / "tok", "out": out, "state_dir": w / "state", "model_path": w / "model"}
        argv = cli("train", spec=spec, **dirs, **({"subset": w / "subset_dm.parquet"} if dm else {}))
        return argv, [out / "run.json", out / "metrics.csv"]
    method = name.removeprefix("subset-")
    extra = {
        "random": {"q": 0.33},
        "dm": {"q": 0.33, "datamap": w / "datamap.parquet"},
        "jtt": {"ref_run": w / "ref", "spec": '{"jtt_epoch": 2, "upweight": 4.0}'},
        "poe": {"ref_run": w / "ref"},
    }[method]
    out_file = out / f"subset_{method}.parquet"
    return cli("subset", method=method, train=train, out=out_file, **extra), [out_file]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """What the jobs of one toy task read: source, task sets, tiny model, tokenised data, a reference run, data map."""
    root = tmp_path_factory.mktemp("tree")
    frames = [
        ef.toy_frame(ef.N_TRAIN, 1, "train", ef.FILLER),
        ef.toy_frame(ef.N_ID, 2, "id", ef.FILLER),
        ef.toy_frame(ef.N_OOD, 3, "ood", ef.FILLER + ef.OOD_FILLER),
    ]
    schema.write(pd.concat(frames, ignore_index=True), root / "sources" / "toy.parquet", ef.LABELS, "toy")
    assert main(job(root, "assemble", root / "data")[0]) == 0
    ef.build_toy_model(root / "model")
    ef.tokenize_toy(root / "data", root / "model", root / "tok")
    train = schema.read(root / "data" / "train.parquet")[0]
    ref, rng = root / "ref", np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(5, len(train))).astype(np.float16)
    datamap.save_dynamics(ref / "dynamics.npz", train["uid"], train["label"], probs)
    write_json(ref / "run.json", {"run": "toy", "status": "ok", "failure_reason": None})
    logp = np.log(rng.dirichlet(np.ones(3), size=len(train)))
    bias = pd.DataFrame({"uid": train["uid"], **{f"bias_logp_{c}": logp[:, c] for c in range(3)}})
    write_parquet(bias, ref / "bias_logp.parquet")
    assert main(job(root, "datamap", root)[0]) == 0
    assert main(job(root, "subset-dm", root)[0]) == 0
    return root


@pytest.fixture
def work(tree, tmp_path) -> Path:
    """A private copy of the tree, free to corrupt."""
    return Path(shutil.copytree(tree, tmp_path / "tree"))


# ----------------------------------------------------------- 1. each job, each file it reads
READS = {  # job: the files of the tree it reads (train: the tokenize job's folder output, and a subset)
    "assemble": ["sources/toy.parquet"],
    "tokenize": ["data/train.parquet", "data/eval/toy_ood.parquet"],
    "datamap": ["ref/dynamics.npz", "ref/run.json", "data/train.parquet"],
    "subset-random": ["data/train.parquet"],
    "subset-dm": ["datamap.parquet"],
    "subset-jtt": ["ref/dynamics.npz", "ref/run.json"],
    "subset-poe": ["ref/bias_logp.parquet"],
    "train": ["tok/data/train/*.arrow", "tok/data/train/state.json", "tok/data/dataset_dict.json", "tok/stats.json"],
    "train-dm": ["subset_dm.parquet"],
}
CASES = [(name, file, "truncated") for name, files in READS.items() for file in files] + [
    ("subset-dm", "datamap.parquet", "garbage"),
    ("subset-jtt", "ref/run.json", "empty"),
    ("train", "tok/data/toy_ood/*.arrow", "cut_cleanly"),
]


@pytest.mark.parametrize(
    "name,file,how", [pytest.param(*c, marks=pytest.mark.integration) if "train" in c[0] else c for c in CASES]
)  # the train job imports torch and loads a model
def test_job_with_an_unreadable_input(work, caplog, name, file, how):
    bad = damage(next(work.glob(file)), how)
    argv, outputs = job(work, name, work / "out")
    rc, msg = run_job(argv, caplog)
    assert_clear_failure(rc, msg, bad.parent if how == "cut_cleanly" else bad, outputs)  # rows missing: the split
    assert not (work / "out").exists() or not any((work / "out").iterdir())
    assert "truncated or corrupt" in msg or how == "cut_cleanly", msg
    for folder in ("data/eval", "tok"):  # a file inside a job's folder output: the folder must go
        if file.startswith(f"{folder}/"):
            assert f"--force {work / folder}`" in msg


# tables read run records, metrics, predictions (Table 5), other tables' CSV (Table 8), the config dump
@pytest.fixture(scope="module")
def results(tmp_path_factory):
    cfg = hr.tiny_config(seeds=(0, 1))
    root = tmp_path_factory.mktemp("results")
    for tid in ("2", "3", "5", "7"):  # what they read (Table 8 reads the CSV of 2 and 7)
        hr.write_needed(root, cfg, tables.needs(cfg, tid))
    for tid in ("2", "7"):
        tables.write(cfg, root, tid, Layout(root).table_prefix(tid))
    write_json(root / "config.json", cfg)
    return cfg, root


@pytest.mark.parametrize(
    "tid,name",
    [("5", "predictions.parquet"), ("3", "metrics.csv"), ("3", "run.json"), ("8", "table"), ("3", "config")],
)
def test_table_unreadable_input(results, tmp_path, caplog, tid, name):
    cfg, shared = results
    root = Path(shutil.copytree(shared, tmp_path / "results"))
    layout, needs = Layout(root), tables.needs(cfg, tid)
    if name in ("table", "config"):
        bad = Path(layout.table(min(needs.tables), "csv")) if name == "table" else root / "config.json"
    else:
        bad = Path(layout.run_file(name, min(needs.predictions if name == "predictions.parquet" else needs.runs)))
    damage(bad, keep=0.3)
    prefix = Path(layout.table_prefix(tid))
    rc, msg = run_job(cli("table", id=tid, config_json=root / "config.json", results=root, out_prefix=prefix), caplog)
    assert_clear_failure(rc, msg, bad, [prefix.with_name(prefix.name + ext) for ext in (".csv", ".md", ".tex")])


def test_a_full_disk_names_the_file_and_the_cause(tmp_path):
    """A real ENOSPC (writing to /dev/full) while a job writes its output: a DataError naming the file and the cause
    (the CLI and the train job print it without a traceback), nothing left under the final name."""
    target = tmp_path / "figure2.png"
    with pytest.raises(DataError, match=rf"{re.escape(str(target))}: cannot write it: .*\(ENOSPC\)"):
        with atomic_path(target), open("/dev/full", "wb") as full:
            full.write(b"x" * 100_000)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ through a real snakemake run
@pytest.fixture
def small(copies, tmp_path):
    """A one-task, one-seed demo in a workflow copy: (copy, config, layout, snakemake arguments); cleaned up after."""
    wf = copies[0]
    overlay = tmp_path / "small.yaml"
    demo = {"hsd_train_rows": 60, "eval_rows": 10}
    overlay.write_text(yaml.safe_dump({"active_tasks": ["hsd"], "seeds": [0], "demo": demo}))
    cfg = ftft_config.load(ROOT / "workflow_config.yaml", ROOT / "config" / "demo.yaml", overlay)
    yield wf, cfg, Layout.from_config(cfg), ["--cores", "1", "--configfile", "config/demo.yaml", str(overlay)]
    for folder in (cfg["results"], cfg["resources"]):
        shutil.rmtree(wf / folder, ignore_errors=True)


@pytest.fixture
def tokenized(small, tiny_model_dir, demo_task_dir) -> Path:
    """The tiny model, and the hsd data tokenised for it, where the train job of the workflow copy reads them."""
    wf, cfg, layout, _ = small
    shutil.copytree(tiny_model_dir, wf / layout.demo_model("tinybert"), dirs_exist_ok=True)
    data, tok = demo_task_dir("hsd") / "data" / "hsd", wf / Plan(cfg).tokenized("hsd", "tinybert")
    tokenize_task(data / "train.parquet", data / "eval", grid.task_eval_sets(cfg, "hsd"), str(tiny_model_dir), 32, tok)
    return tok


@pytest.mark.integration
def test_snakemake_assemble_job_with_truncated_source(small, demo_frames):
    """The assemble job of a real run gets a truncated normalised source: the run stops with the one-line
    error naming the file (no traceback) and the job's outputs are gone; the advice, verbatim, rebuilds it."""
    wf, cfg, layout, args = small
    source = wf / layout.source("demo_hsd")
    schema.write(demo_frames["hsd"], source, schema.HSD_LABELS, "demo_hsd")
    damage(source)
    target = layout.task_train("hsd")
    res = snakemake(wf, target, *args, "--allowed-rules", "assemble")
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "Traceback" not in out, out[-3000:]
    assert f"{layout.source('demo_hsd')}: not a readable normalised data file" in out, out[-3000:]
    assert not (wf / target).exists() and not (wf / layout.task_eval_dir("hsd")).exists()
    # the advice: add `--force FILE` right after `snakemake` (rebuilds only the file), then run as before
    forced = re.search(r"add `(--force \S+)` right after `snakemake`", out).group(1).split()
    assert forced[1] == layout.source("demo_hsd")
    res = snakemake(wf, *forced, target, *args)  # a command that names a target too
    assert res.returncode == 0 and (wf / target).is_file(), (res.stdout + res.stderr)[-3000:]


@pytest.mark.slow  # a whole training job, interrupted, then its rerun
def test_sigint_to_snakemake_keeps_finished_training(small, tokenized):
    """SIGINT to Snakemake while a training job runs: the job finishes, Snakemake marks its outputs incomplete;
    `--rerun-incomplete` then restores them from the state folder instead of training again."""
    wf, cfg, layout, args = small
    run = grid.Run("hsd", "tinybert", "erm")
    target = layout.run_file("run.json", run)
    args = [target, *args, "--allowed-rules", "train", "train_bias_model"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    sigint = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)  # not ignored, even in a background job
    sm = subprocess.Popen([SNAKEMAKE, *args], cwd=wf, env=env, stdout=PIPE, stderr=STDOUT, preexec_fn=sigint)
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


@pytest.mark.integration
def test_snakemake_train_job_with_truncated_tokenised_split(small, tokenized):
    """The train job (a `script:` rule) gets a truncated tokenised split: clear error, no run outputs."""
    wf, cfg, layout, args = small
    run = grid.Run("hsd", "tinybert", "erm")
    bad = damage(next((tokenized / "data" / "train").glob("*.arrow")))
    res = snakemake(wf, layout.run_file("run.json", run), *args, "--allowed-rules", "train", "train_bias_model")
    out = res.stdout + res.stderr
    log = wf / layout.train_log(run)
    text = log.read_text() if log.is_file() else ""
    assert res.returncode != 0, out[-3000:]
    assert "Traceback" not in out + text, (out + text)[-3000:]
    assert str(bad.relative_to(wf)) in text and "tokenised split" in text, text[-3000:]
    assert not (wf / layout.run_dir(run)).exists() or not any((wf / layout.run_dir(run)).iterdir())


# -------------------------------------------------------- 2. config mistakes at `snakemake -n`
BYO = {"files": {"train": "byo/train.csv", "test": "byo/test.csv"}, "text_a": "text", "label": "label"}
MISTAKES = {  # name: overlay as {dotted key: value}, onto config/demo.yaml unless the name starts with paper_
    "labels_not_the_sources": {"tasks.hsd.labels": ["hate", "nothate"]},
    "misspelt_split": {"tasks.hsd.train.split": "trian"},
    "unknown_demo_source": {"tasks.hsd.id_test.source": "demo_hate"},
    "eval_set_called_train": {"tasks.hsd.id_test.name": "train"},
    "byo_split_not_in_files": {"byo.mine": BYO, "tasks.hsd.train": {"source": "mine", "split": "training"}},
    "byo_labels_not_the_tasks": {"byo.mine": {**BYO, "labels": ["hate", "nothate"]}, "tasks.hsd.train.source": "mine"},
    "paper_labels_not_the_sources": {"tasks.hsd.labels": ["nothate", "hateful"]},
    "paper_misspelt_split": {"tasks.hsd.ood": [{"name": "dyna", "source": "dynahate", "split": "test_r2_orignal"}]},
    "paper_model_path_not_a_model": {"models.tinybert.path": "config"},
    "paper_mirror_missing": {"datasets.cad.mirror": "no/such/data.zip"},
}
NAMED = {  # what the error of each names: the key, the value, what would be right
    "labels_not_the_sources": ["tasks.hsd.labels", "['hate', 'nothate']", "demo_hsd"],
    "misspelt_split": ["tasks.hsd.train.split", "'trian'", "ood_r2_original"],
    "unknown_demo_source": ["tasks.hsd.id_test.source", "demo_hate", "demo_hsd"],
    "eval_set_called_train": ["tasks.hsd.id_test.name", "'train'"],
    "byo_split_not_in_files": ["tasks.hsd.train.split", "byo.mine.files", "'training'"],
    "byo_labels_not_the_tasks": ["tasks.hsd.labels", "byo.mine.labels", "['hate', 'nothate']"],
    "paper_labels_not_the_sources": ["tasks.hsd.labels", "hateful", "'cad'"],
    "paper_misspelt_split": ["tasks.hsd.ood[0].split", "test_r2_orignal"],
    "paper_model_path_not_a_model": ["models.tinybert.path", "'config'"],
    "paper_mirror_missing": ["datasets.cad.mirror", "no/such"],
}
# `snakemake -n` merges the files itself, then checks as check-config: a demo, BYO, paper overlay, a list, a path
DRY_RUN = ["labels_not_the_sources", "byo_labels_not_the_tasks", "paper_misspelt_split", "paper_model_path_not_a_model"]


def configfiles(name: str) -> list[str]:
    return [*([] if name.startswith("paper_") else ["config/demo.yaml"]), f"{name}.yaml"]


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> list[Path]:
    """Two copies of the workflow, each with every config mistake's overlay and the BYO files they name."""
    copies = [make_copy(tmp_path_factory.mktemp(f"wf_mistakes{i}")) for i in range(2)]
    for copy in copies:
        (copy / "byo").mkdir()
        for split in ("train", "test"):
            (copy / "byo" / f"{split}.csv").write_text("text,label\nsome text,hate\nother text,nothate\n")
        for name, overlay in MISTAKES.items():
            cfg = {"active_tasks": ["hsd"], "seeds": [0]}
            for key, value in overlay.items():
                ftft_config.deep_update(cfg, functools.reduce(lambda v, k: {k: v}, reversed(key.split(".")), value))
            (copy / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return copies


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_config_mistake_fails_in_check_config(copies, monkeypatch, caplog, name):
    monkeypatch.chdir(copies[0])  # BYO files and model paths are relative to the working directory
    rc, msg = run_job(["check-config", "--configfile", *configfiles(name)], caplog)
    assert rc == 1 and all(needle in msg for needle in NAMED[name]), msg


@pytest.mark.integration
def test_config_mistakes_fail_at_dry_run_naming_the_key(copies):
    with ThreadPoolExecutor(2) as pool:  # two at a time, each in its own copy of the workflow
        runs = pool.map(lambda n, w: snakemake(w, "--dry-run", "--configfile", *configfiles(n)), DRY_RUN, copies * 2)
        for name, res in zip(DRY_RUN, runs, strict=True):
            out = res.stdout + res.stderr
            assert res.returncode != 0 and "invalid configuration" in out, out[-2000:]
            assert all(needle in out for needle in NAMED[name]), f"{name}: {NAMED[name]} not all in: {out[-2000:]}"
            assert "Building DAG of jobs" not in out and "Traceback" not in out, out[-2000:]
