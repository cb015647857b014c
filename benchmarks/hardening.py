"""Audit: what bad inputs, corrupted files and killed training jobs end in, on a small real workflow.

On a temporary copy of the workflow and a small demo config (one task, one seed, one tiny model, 30
steps: 5 training runs, about 30 jobs) this tries a catalogue of bad inputs and classifies each outcome:

- ``early``: an error before any job, at ``snakemake -n`` (DAG) time, naming the config key and value;
- ``job``: the job that reads the bad input fails with a one-line error naming the file (or column);
- ``handled``: nothing is wrong with the outcome (bad rows dropped and counted in the summary, a
  path with shell characters used literally);
- ``recovered`` (kills): the rerun succeeds, resumed from the saved state (or, for an unreadable
  state, restarted), the run's files equal those of the uninterrupted run, and the tables rebuilt
  after every kill are byte-identical to the uninterrupted run's;
- failures: ``traceback`` (a Python traceback anywhere in the output or the job's log), ``leftover``
  (a declared output or a temporary file of the failed job is left behind), ``unclear`` (an error
  that names neither the key nor the file), ``accepted`` (no error at all: the bad input went
  through), ``not recovered``.

The catalogue: config mistakes (``snakemake -n``), bad dataset rows (a BYO source: the prepare job),
bad paths and names incl. shell metacharacters, corrupted intermediate files of each kind (each
given to every kind of job that reads it: the consumer's outputs are deleted and it is rerun), and
kills of training jobs mid-run (simulated, SIGKILL of the training process, SIGKILL of Snakemake
itself, a kill followed by a corrupted state file), each followed by a rerun. Issue 23's cases: hostile model
labels in the report's captions and figures, overlays that are not plain data (``injection`` when anything in
them ran), folders that overlap or escape, ids numbered per split and NaN ids, bad archives from an HTTP host
(fetched once, nothing kept, the fixed host then used), a second trainer on a held run, the rebuild advice
followed verbatim, a full disk (a real tmpfs; ``skipped`` without root) under a figure and a training job,
SIGINT to Snakemake, SIGKILL of Snakemake alone, and planning growth (``not linear``).

Usage: .venv/bin/python benchmarks/hardening.py [--work DIR] [--keep] [--workers 2] [--only TEXT ...]
       [--skip-interrupts]
Prints the table and the totals; ``--json FILE`` also writes them. ``--skip-interrupts`` leaves out the kills
(the whole-workflow interrupt cases and the final rerun of the workflow). Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from rehearsal.archives import build_archives, serve  # noqa: E402
from test_download import symlink, zip_of  # noqa: E402 (the project's own bad archives)
from wfutil import SNAKEMAKE, make_copy  # noqa: E402

from ftft import config as ftft_config  # noqa: E402
from ftft import grid, methods  # noqa: E402
from ftft.layout import Layout  # noqa: E402

EARLY, JOB, HANDLED, RECOVERED = "early", "job", "handled", "recovered"
TRACEBACK, LEFTOVER, UNCLEAR, ACCEPTED, NOT_RECOVERED = "traceback", "leftover", "unclear", "accepted", "not recovered"
INJECTION, SLOW, SKIPPED = "injection", "not linear", "skipped"
GOOD = (EARLY, JOB, HANDLED, RECOVERED)
TB = "Traceback (most recent call last)"

# one task, one seed, one tiny model trained 120 steps (6 checkpoints): every table and figure kind, every method
AUDIT = {
    "active_tasks": ["hsd"],
    "seeds": [0],
    "demo": {"hsd_train_rows": 160, "eval_rows": 30},
    "tasks": {
        "hsd": {
            "steps": 120,
            "checkpoints": 6,
            "ood": [
                {"name": "dynahate_original_r2", "source": "demo_hsd", "split": "ood_r2_original", "label": "R2"},
                {"name": "dynahate_perturb_r2", "source": "demo_hsd", "split": "ood_r2_perturbation", "label": "P2"},
            ],
        }
    },
    "tables": {
        "3": {
            "tasks": ["hsd"],
            "cost": [],
            "rows": [
                {"method": "erm", "main": "tinybert"},
                {"method": "random", "main": "tinybert"},
                {"method": "dm", "main": "tinybert", "ref": "tinybert"},
                {"method": "jtt", "main": "tinybert", "ref": "tinybert"},
                {"method": "poe", "main": "tinybert", "ref": "tinybert"},
                {"method": "ftft", "main": "tinybert", "ref": "tinybert"},
            ],
        },
        "6": {"rows": [{"method": "erm", "main": "tinybert"}, {"method": "dm", "main": "tinybert", "ref": "tinybert"}]},
        "7": {"rows": [{"method": "erm", "main": "tinybert"}, {"method": "dm", "main": "tinybert", "ref": "tinybert"}]},
        "9": {
            "tasks": ["hsd"],
            "cost": ["hsd"],
            "rows": [{"method": "erm", "main": "tinybert"}, {"method": "ftft", "main": "tinybert", "ref": "tinybert"}],
        },
    },
    "flops_models": ["tinybert"],
    "easy_ratio": {"refs": ["tinybert"]},
    "significance": {"main": "tinybert", "refs": {"hsd": ["tinybert"]}, "samples": 100},
    "overlap": {"refs": ["tinybert"]},
    "ptrue_curves": {"refs": ["tinybert"]},
    "speed": {
        "fractions": ["1/3", "2/3"],
        "figures": {
            "3": {"tasks": ["hsd"], "main": "tinybert", "refs": ["tinybert"]},
            "4": {"tasks": ["hsd"], "main": "tinybert", "refs": ["tinybert"]},
        },
    },
    "cost_unit_model": "tinybert",
    "claims": {"samples": 100, "weak_refs": {"hsd": []}},
}
CONFIG_ARGS = ("--configfile", "config/demo.yaml", "audit.yaml")
SNAPSHOT = ("results", "resources", ".ftft-state", ".snakemake")
CFG = ftft_config.load(ROOT / "workflow_config.yaml", ROOT / "config" / "demo.yaml", overrides=AUDIT)
L = Layout.from_config(CFG)
ERM = grid.Run("hsd", "tinybert", "erm")
RUNS = {
    m: grid.Run("hsd", "tinybert", m, "none" if m in ("erm", "random") else "tinybert") for m in methods.run_methods()
}
assert set(RUNS.values()) == set(grid.all_runs(CFG)), "the audit config's runs changed: update RUNS"


@dataclass
class Outcome:
    group: str
    name: str
    tried: str
    result: str = ""
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Workdir:
    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)


# ------------------------------------------------------------------------------------------ running
def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    out = {**os.environ, **(extra or {})}
    out["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return out


def smk(wd: Path, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 900):
    return subprocess.run(
        [SNAKEMAKE, *args], cwd=wd, env=env(extra_env), capture_output=True, text=True, timeout=timeout, check=False
    )


def run_target(wd: Path, *targets: str, extra: tuple[str, ...] = (), extra_env=None):
    """Build ``targets`` (``--cores 2``; Snakemake's other settings from profiles/default, as a user gets them)."""
    return smk(wd, *targets, "--cores", "2", *extra, *CONFIG_ARGS, extra_env=extra_env)


def snapshot(wd: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in SNAPSHOT:
        if (wd / name).exists():
            shutil.copytree(wd / name, dest / name, symlinks=True, ignore=shutil.ignore_patterns("locks"))


def restore(wd: Path, pristine: Path) -> None:
    for name in SNAPSHOT:
        shutil.rmtree(wd / name, ignore_errors=True)
        if (pristine / name).exists():
            shutil.copytree(pristine / name, wd / name, symlinks=True)


def files_under(wd: Path) -> set[str]:
    out = set()
    for top in ("results", "resources"):
        for p in (wd / top).rglob("*"):
            rel = p.relative_to(wd).as_posix()
            if p.is_file() and not rel.startswith((f"{CFG['results']}/logs/", f"{CFG['results']}/benchmarks/")):
                out.add(rel)
    return out


def logs_text(wd: Path, since: float) -> str:
    """Every job log written since ``since`` (what a user reads after a failed job)."""
    texts = []
    for p in (wd / CFG["results"] / "logs").rglob("*.log"):
        if p.stat().st_mtime >= since:
            texts.append(p.read_text(errors="replace"))
    return "\n".join(texts)


def first_error(text: str) -> str:
    for line in text.splitlines():
        if " ERROR " in line or "invalid configuration:" in line or "Error" in line.split(":")[0]:
            return line.strip()[:220]
    return text.strip().splitlines()[-1][:220] if text.strip() else ""


def classify_failure(res, wd: Path, since: float, names: list[str], before: set[str], outputs: list[str]):
    """(result, detail) of a run that should have failed on a bad input naming one of ``names``."""
    text = res.stdout + res.stderr + "\n" + logs_text(wd, since)
    err = next((ln.strip() for ln in text.splitlines() if " ERROR " in ln), "") or first_error(text)
    if TB in text:
        return TRACEBACK, err
    if res.returncode == 0:
        return ACCEPTED, "snakemake succeeded"
    left = sorted(o for o in outputs if (wd / o).exists())
    left += sorted(files_under(wd) - before)  # only the failed job ran: anything new is a partial output
    if left:
        return LEFTOVER, f"left behind: {left[:3]}"
    if any(n in err for n in names):
        return JOB, err
    return UNCLEAR, err


# ------------------------------------------------------------------------------------ config mistakes
EVIL = "r;touch PWNED;#"
BYO = {"files": {"train": "byo/train.csv", "test": "byo/test.csv"}, "text_a": "text", "label": "label"}
# name -> (overlay on the audit config (demo) or, name starting "paper", on {active_tasks, seeds}, needles)
CONFIG_MISTAKES: dict[str, tuple[dict, list[str]]] = {
    "unknown model in a table row": (
        {"tables": {"3": {"rows": [{"method": "erm", "main": "tinybertt"}]}}},
        ["tables.3.rows[0].main", "tinybertt"],
    ),
    "typo in a top-level key": ({"seeeds": [0]}, ["seeeds"]),
    "typo in a nested key": ({"training": {"batchsize": 8}}, ["training", "batchsize"]),
    "q above 1": ({"q": 1.5}, ["'q'", "1.5"]),
    "empty seed list": ({"seeds": []}, ["'seeds'"]),
    "datamap_seed not a seed": ({"datamap_seed": 7}, ["datamap_seed", "7"]),
    "steps below checkpoints": ({"tasks": {"hsd": {"steps": 4}}}, ["tasks.hsd.steps", "(4)"]),
    "FTFT fraction off a checkpoint": (
        {"methods": {"ftft": {"fraction": {"hsd": "1/4"}}}},
        ["fraction.hsd", "1/4", "checkpoint"],
    ),
    "FTFT fraction above 1": ({"methods": {"ftft": {"fraction": {"hsd": "4/3"}}}}, ["hsd", "4/3"]),
    "unknown task in active_tasks": ({"active_tasks": ["hsdd"]}, ["active_tasks[0]", "hsdd"]),
    "duplicate evaluation set names": (
        {"tasks": {"hsd": {"ood": [{"name": "cad", "source": "demo_hsd", "split": "ood_r2_original"}]}}},
        ["tasks.hsd.ood", "cad"],
    ),
    "evaluation set called train": (
        {"tasks": {"hsd": {"id_test": {"name": "train", "source": "demo_hsd", "split": "test"}}}},
        ["tasks.hsd.id_test.name", "'train'"],
    ),
    "labels not the demo source's": (
        {"tasks": {"hsd": {"labels": ["hate", "nothate"]}}},
        ["tasks.hsd.labels", "['hate', 'nothate']", "demo_hsd"],
    ),
    "misspelt split of the demo source": (
        {"tasks": {"hsd": {"train": {"source": "demo_hsd", "split": "trian"}}}},
        ["tasks.hsd.train.split", "'trian'"],
    ),
    "unknown demo source": (
        {"tasks": {"hsd": {"id_test": {"name": "cad", "source": "demo_hate", "split": "test"}}}},
        ["tasks.hsd.id_test.source", "demo_hate"],
    ),
    "undefined source": (
        {"tasks": {"hsd": {"train": {"source": "nowhere", "split": "train"}}}},
        ["tasks.hsd.train.source", "nowhere"],
    ),
    "BYO file missing": (
        {
            "byo": {"mine": {**BYO, "files": {"train": "no/such.csv"}}},
            "tasks": {"hsd": {"train": {"source": "mine", "split": "train"}}},
        },
        ["byo.mine.files.train", "no/such.csv"],
    ),
    "BYO split not among its files": (
        {"byo": {"mine": BYO}, "tasks": {"hsd": {"train": {"source": "mine", "split": "training"}}}},
        ["tasks.hsd.train.split", "byo.mine.files", "'training'"],
    ),
    "BYO labels not the task's": (
        {
            "byo": {"mine": {**BYO, "labels": ["hate", "nothate"]}},
            "tasks": {"hsd": {"train": {"source": "mine", "split": "train"}}},
        },
        ["tasks.hsd.labels", "byo.mine.labels"],
    ),
    "paper: labels not the dataset's": (
        {"tasks": {"hsd": {"labels": ["nothate", "hateful"]}}},
        ["tasks.hsd.labels", "hateful", "'cad'"],
    ),
    "paper: misspelt split": (
        {"tasks": {"hsd": {"ood": [{"name": "dyna", "source": "dynahate", "split": "test_r2_orignal"}]}}},
        ["tasks.hsd.ood[0].split", "test_r2_orignal"],
    ),
    "paper: missing local model copy": ({"models": {"tinybert": {"path": "no/such/model"}}}, ["models.tinybert.path"]),
    "paper: local model copy is no model": ({"models": {"tinybert": {"path": "config"}}}, ["models.tinybert.path"]),
    "paper: mirror missing": ({"datasets": {"cad": {"mirror": "no/such/cad.zip"}}}, ["datasets.cad.mirror"]),
    "paper: neither url nor mirror": ({"datasets": {"cad": {"url": None}}}, ["datasets.cad", "mirror"]),
    # bad paths and names (shell metacharacters, escapes)
    "shell characters in results": ({"results": EVIL}, ["'results'", "touch"]),
    "space in results": ({"results": "out dir"}, ["'results'", "out dir"]),
    "shell characters in a task name": ({"tasks": {"t$(id>x)": {}}}, ["tasks", "t$(id>x)"]),
    "task name escaping results": ({"tasks": {"../../escape": {}}}, ["tasks", "../../escape"]),
    "shell characters in an evaluation set name": (
        {"tasks": {"hsd": {"ood": [{"name": "a;b", "source": "demo_hsd", "split": "ood_r2_original"}]}}},
        ["name", "a;b"],
    ),
    "shell characters in a model key": ({"models": {"m;rm -rf x": {"hub_id": "x/y", "lr": 1.0}}}, ["models", "m;rm"]),
    "shell characters in a BYO path": (
        {"byo": {"mine": {**BYO, "files": {"train": "a.csv;touch PWNED"}}}},
        ["byo.mine.files.train", "touch PWNED"],
    ),
    "shell characters in a state_dir": ({"state_dir": "$(touch PWNED)"}, ["state_dir", "touch PWNED"]),
    "paper: shell characters in a dataset URL": (
        {"datasets": {"cad": {"url": "https://x/$(id)"}}},
        ["datasets.cad.url"],
    ),
    # issue 23: report captions, folder overlaps, the halting fraction's key
    "label with a newline and a raw HTML directive": (
        {"models": {"tinybert": {"label": "x\n\n.. raw:: html\n\n   <script>alert(1)</script>"}}},
        ["models.tinybert.label"],
    ),
    "state_dir equal to results": ({"state_dir": "results/demo"}, ["'state_dir'", "overlap"]),
    "state_dir inside results": ({"state_dir": "results/demo/s"}, ["'state_dir'", "results/demo/s", "overlap"]),
    "results is the root folder": ({"results": "/"}, ["'results'", "'/'", "project folder"]),
    "results is the parent folder": ({"results": ".."}, ["'results'", "'..'", "project folder"]),
    "halting fraction a table row inherits, off a checkpoint": (
        {"methods": {"ftft": {"fraction": {"hsd": "2/5"}}}},
        ["'methods.ftft.fraction.hsd'", "2/5"],
    ),
}
# name -> an overlay's text (not data: Snakemake reads it itself), what the error must name besides the file
OVERLAY_TEXT = {
    "overlay with __use_yte__ running code": '__use_yte__: true\nq: ?__import__("os").system("touch PWNED") or 0.33\n',
    "overlay with a YAML tag": "q: !!python/name:os.sep\n",
}


def overlay_text(wd: Path, name: str) -> Outcome:
    """An overlay that is not plain data: refused naming the file, and nothing in it runs (no PWNED)."""
    out = Outcome("security", name, OVERLAY_TEXT[name].splitlines()[-1][:90])
    bad = wd / "overlay.yaml"
    bad.write_text(OVERLAY_TEXT[name])
    res = smk(wd, "--dry-run", *CONFIG_ARGS, bad.name)
    text, ran = res.stdout + res.stderr, list(wd.glob("PWNED"))
    out.detail = next((ln.strip() for ln in text.splitlines() if "invalid config" in ln), "") or first_error(text)
    if ran:  # Snakemake evaluates a YTE overlay while reading its command line, before the Snakefile (README)
        out.result, out.detail = INJECTION, f"the overlay's code ran (created PWNED) before: {out.detail}"
    elif TB in text or res.returncode == 0:
        out.result = TRACEBACK if TB in text else ACCEPTED
    else:
        out.result = EARLY if f"invalid configuration: {bad}" in text else UNCLEAR
    for p in [bad, *ran]:
        p.unlink()
    return out


def config_mistake(wd: Path, name: str) -> Outcome:
    overlay, needles = CONFIG_MISTAKES[name]
    paper = name.startswith("paper")
    out = Outcome(
        "paths/names" if "shell" in name or "escap" in name or "space" in name else "config",
        name,
        json.dumps(overlay)[:90],
    )
    base = {"active_tasks": ["hsd"], "seeds": [0]} if paper else json.loads(json.dumps(AUDIT))
    bad = wd / "mistake.yaml"
    bad.write_text(yaml.safe_dump(ftft_config.deep_update(base, overlay)))
    before = {p.name for p in wd.iterdir()}
    res = smk(wd, "--dry-run", "--configfile", *([] if paper else ["config/demo.yaml"]), bad.name)
    text = res.stdout + res.stderr
    bad.unlink()
    escaped = {p.name for p in wd.iterdir()} - before - {".snakemake"}
    line = next((ln.strip() for ln in text.splitlines() if "invalid config" in ln), "") or first_error(text)
    if TB in text:
        out.result = TRACEBACK
    elif res.returncode == 0:
        out.result = ACCEPTED
    elif escaped or list(wd.rglob("PWNED")) or list(wd.parent.glob("PWNED")):
        out.result, line = LEFTOVER, f"created {sorted(escaped)}"
    elif "invalid configuration" in text and "Building DAG of jobs" not in text and all(n in text for n in needles):
        out.result = EARLY
    else:
        out.result = UNCLEAR
    out.detail = line
    return out


# ------------------------------------------------------------------------------- bad dataset rows
BYO_ROWS: dict[str, tuple[str, bytes, list[str] | dict]] = {
    # name -> (file name, content, needles of the error, or the dropped reasons expected in the summary)
    "empty texts, unknown and missing labels, duplicate ids": (
        "rows.csv",
        b"id,text,label\n1,fine text,hate\n2,,hate\n3,other text,maybe\n4,more text,\n1,dup text,nothate\n"
        b"5,last text,nothate\n",
        {"missing_text": 1, "unknown_label": 1, "missing_label": 1, "duplicate_uid": 1},
    ),
    "label column missing": ("nolabel.csv", b"id,text\n1,some text\n", ["nolabel.csv", "'label'"]),
    "not UTF-8": ("latin1.csv", "id,text,label\n1,caf\xe9 \xff,hate\n".encode("latin-1"), ["latin1.csv"]),
    "unbalanced quote": ("quote.csv", b'id,text,label\n1,"open quote,hate\n2,ok,nothate\n', ["quote.csv"]),
    "every row dropped": ("allbad.csv", b"id,text,label\n1,,hate\n2,x,maybe\n", ["allbad.csv", "no rows left"]),
    "empty file": ("empty.csv", b"", ["empty.csv"]),
    "truncated parquet": ("cut.parquet", b"", ["cut.parquet"]),  # content made below
    "broken JSON line": (
        "lines.jsonl",
        b'{"id": 1, "text": "a", "label": "hate"}\n{"id": 2, "text": \n',
        ["lines.jsonl:2"],
    ),
    # issue 23 (a 4th item: more splits, {split: (file name, content)})
    "JSON line with a NaN id": (
        "nan.jsonl",
        b'{"id": 1, "text": "a", "label": "hate"}\n{"id": NaN, "text": "b", "label": "nothate"}\n',
        ["nan.jsonl", "without an id"],
    ),
    "ids numbered per split (1, 2, ... in each file)": (
        "ids_test.csv",
        b"id,text,label\n1,test one,hate\n2,test two,nothate\n",
        {},
        {"train": ("ids_train.csv", b"id,text,label\n1,train one,hate\n2,train two,nothate\n3,train 3,hate\n")},
    ),
}


def byo_rows(wd: Path, name: str) -> Outcome:
    fname, content, expect, *more = BYO_ROWS[name]
    out = Outcome("dataset rows", name, f"BYO file {fname} given to the prepare job")
    (wd / "byo").mkdir(exist_ok=True)
    path = wd / "byo" / fname
    splits = {split: f"byo/{f}" for split, (f, _) in (more[0] if more else {}).items()}
    for f, data in (more[0] if more else {}).values():
        (wd / "byo" / f).write_bytes(data)
    if fname.endswith(".parquet"):
        import pandas as pd

        pd.DataFrame({"id": range(50), "text": ["x"] * 50, "label": ["hate"] * 50}).to_parquet(path)
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(content)
    spec = {
        "files": {"test": f"byo/{fname}", **splits},
        "text_a": "text",
        "label": "label",
        "uid": "id",
        "labels": ["nothate", "hate"],
    }
    overlay = wd / "byo.yaml"
    overlay.write_text(yaml.safe_dump({"byo": {"mine": spec}}))
    target = L.source("mine")
    since, before = time.time(), files_under(wd)
    res = smk(wd, target, "--cores", "1", *CONFIG_ARGS, overlay.name)
    if isinstance(expect, dict):
        text = res.stdout + res.stderr + logs_text(wd, since)
        summary = wd / L.source_summary("mine")
        if res.returncode == 0 and summary.is_file():
            s = json.loads(summary.read_text())
            ok = s["dropped"] == expect and s["rows_in"] == s["rows_out"] + sum(s["dropped"].values())
            rows = sum(c.count(b"\n") - 1 for c in [content, *(d for _, d in (more[0] if more else {}).values())])
            ok = ok and (not splits or s["rows_out"] == rows)  # ids numbered per split: every row kept
            out.result = HANDLED if ok and TB not in text else UNCLEAR
            out.detail = f"rows in {s['rows_in']}, out {s['rows_out']}, dropped and counted {s['dropped']}"
        else:
            out.result, out.detail = (TRACEBACK if TB in text else UNCLEAR), first_error(text)
    else:
        outputs = [target, L.source_summary("mine")]
        out.result, out.detail = classify_failure(res, wd, since, expect[:1], before, outputs)
        if out.result == JOB and not all(n in out.detail for n in expect):
            out.result = UNCLEAR
    for p in (wd / target, wd / L.source_summary("mine"), path, overlay, *(wd / f for f in splits.values())):
        p.unlink(missing_ok=True)
    return out


def weird_working_dir(tmp: Path) -> Outcome:
    """The whole workflow in a folder whose name has spaces, quotes and shell characters: a real job runs."""
    out = Outcome("paths/names", "shell characters in the working directory", "wf copy in 'wf $(touch PWNED); x'")
    wd = make_copy(tmp / "wf $(touch PWNED); 'x'")
    (wd / "audit.yaml").write_text(yaml.safe_dump(AUDIT))
    res = smk(wd, L.task_train("hsd"), "--cores", "2", *CONFIG_ARGS)
    pwned = list(tmp.rglob("PWNED")) + list(Path.cwd().glob("PWNED"))
    text = res.stdout + res.stderr
    if TB in text:
        out.result = TRACEBACK
    elif pwned:
        out.result, out.detail = LEFTOVER, f"the shell ran the folder name: {pwned}"
    elif res.returncode == 0 and (wd / L.task_train("hsd")).is_file():
        out.result, out.detail = HANDLED, "demo_data and assemble ran; the name was used literally"
    else:
        out.result, out.detail = UNCLEAR, first_error(text)
    shutil.rmtree(wd, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------- corrupted files
def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut to half its bytes (a copy interrupted half-way, a full disk)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def zero_bytes(path: Path) -> None:
    """Empty (a file created, never written)."""
    path.write_bytes(b"")


def cut_short(path: Path) -> None:
    """Cut to 60% of its bytes (mid-line for a text file)."""
    truncate(path, 0.6)


def cut_stream(path: Path) -> None:
    """An Arrow stream that ends cleanly after half its rows (reads without an error)."""
    import pyarrow as pa

    table = pa.ipc.open_stream(pa.BufferReader(path.read_bytes())).read_all()
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table.slice(0, len(table) // 2))


def one(pattern: str) -> Callable[[Path], Path]:
    def find(wd: Path) -> Path:
        hits = sorted(wd.glob(pattern))
        if not hits:
            raise FileNotFoundError(pattern)
        return hits[0]

    return find


def run_outputs(run: grid.Run) -> list[str]:
    return [L.run_file(f, run) for f in ("metrics.csv", "predictions.parquet", "dynamics.npz", "run.json")]


def table_outputs(tid: str) -> list[str]:
    return [L.table(tid, e) for e in ("csv", "md", "tex", "html")]


TOK = Layout.from_config(CFG).tokenized("hsd", grid.tokenizer_of(CFG, "tinybert"))
TRAIN = L.task_train("hsd")
DM_FILE = L.datamap("hsd", "tinybert", 0)
# name -> (file (a path or a finder), how it is damaged, outputs of the consumer (deleted, then rebuilt), what the
# error must name (None: the file itself))
CORRUPT: dict[str, tuple] = {
    "normalised source -> assemble": (L.source("demo_hsd"), truncate, [TRAIN, L.task_eval_dir("hsd")], None),
    "normalised source (zero bytes) -> assemble": (
        L.source("demo_hsd"),
        zero_bytes,
        [TRAIN, L.task_eval_dir("hsd")],
        None,
    ),
    "training set -> tokenize": (TRAIN, truncate, [TOK], None),
    "evaluation set -> tokenize": (L.task_eval("hsd", "cad"), truncate, [TOK], None),
    "training set -> datamap": (TRAIN, truncate, [DM_FILE, L.datamap_plot("hsd", "tinybert", 0)], None),
    "training set -> subset (random)": (TRAIN, truncate, [L.subset("hsd", "random", "none", 0)], None),
    "tokenised split (Arrow) -> train": (one(f"{TOK}/data/train/*.arrow"), truncate, run_outputs(RUNS["random"]), None),
    "tokenised split cut at a batch boundary -> train": (
        one(f"{TOK}/data/cad/*.arrow"),
        cut_stream,
        run_outputs(RUNS["random"]),
        f"{TOK}/data/cad",
    ),
    "tokenised split index -> train": (f"{TOK}/data/train/state.json", truncate, run_outputs(RUNS["random"]), None),
    "tokenised statistics -> train": (f"{TOK}/stats.json", truncate, run_outputs(RUNS["random"]), None),
    "subset -> train": (L.subset("hsd", "dm", "tinybert", 0), truncate, run_outputs(RUNS["dm"]), None),
    "demo model weights -> train": (
        f"{L.demo_model('tinybert')}/model.safetensors",
        truncate,
        run_outputs(RUNS["random"]),
        None,
    ),
    "training dynamics -> datamap": (L.run_file("dynamics.npz", ERM), truncate, [DM_FILE], None),
    "run record -> datamap": (L.run_file("run.json", ERM), truncate, [DM_FILE], None),
    "training dynamics -> subset (jtt)": (
        L.run_file("dynamics.npz", ERM),
        truncate,
        [L.subset("hsd", "jtt", "tinybert", 0)],
        None,
    ),
    "run record -> subset (jtt)": (
        L.run_file("run.json", ERM),
        truncate,
        [L.subset("hsd", "jtt", "tinybert", 0)],
        None,
    ),
    "data map -> subset (dm)": (DM_FILE, truncate, [L.subset("hsd", "dm", "tinybert", 0)], None),
    "bias log-probabilities -> subset (poe)": (
        L.run_file("bias_logp.parquet", ERM),
        truncate,
        [L.subset("hsd", "poe", "tinybert", 0)],
        None,
    ),
    "predictions -> table 5": (L.run_file("predictions.parquet", ERM), truncate, table_outputs("5"), None),
    "metrics -> table 3": (L.run_file("metrics.csv", ERM), truncate, table_outputs("3"), None),
    "run record -> table 4": (L.run_file("run.json", ERM), truncate, table_outputs("4"), None),
    "table CSV -> table 8": (L.table("7", "csv"), cut_short, table_outputs("8"), None),
    "config dump -> table 6": (L.config_json(), truncate, table_outputs("6"), None),
    "data map -> figure 1a": (DM_FILE, truncate, [L.figure("1a-hsd", "png"), L.figure("1a-hsd", "pdf")], None),
    "run record -> failed-runs summary": (
        L.run_file("run.json", RUNS["poe"]),
        truncate,
        [L.failed_runs("md"), L.failed_runs("csv")],
        None,
    ),
}


def corrupt(wd: Path, pristine: Path, name: str) -> Outcome:
    file, damage, outputs, names = CORRUPT[name]
    restore(wd, pristine)
    path = file(wd) if callable(file) else wd / file
    rel = path.relative_to(wd).as_posix()
    out = Outcome("corrupt file", name, f"{rel}: {damage.__doc__.splitlines()[0].lower()}")
    damage(path)
    for o in outputs:
        p = wd / o
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    targets = [o for o in outputs if not o.endswith(("md", "tex", "html", "pdf"))] or outputs[:1]
    since, before = time.time(), files_under(wd)
    res = run_target(wd, *targets)
    out.result, out.detail = classify_failure(res, wd, since, [names or rel], before, outputs)
    return out


# ------------------------------------------------------------------------------------------ kills
def wait_for(pred: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def train_log(wd: Path, run: grid.Run) -> Path:
    return wd / L.train_log(run)


def same_run_files(wd: Path, pristine: Path, run: grid.Run) -> tuple[bool, str]:
    import numpy as np

    for f in ("metrics.csv", "predictions.parquet"):
        a, b = (wd / L.run_file(f, run)), (pristine / L.run_file(f, run))
        if not a.is_file() or a.read_bytes() != b.read_bytes():
            return False, f"{f} differs from the uninterrupted run"
    with np.load(wd / L.run_file("dynamics.npz", run)) as x, np.load(pristine / L.run_file("dynamics.npz", run)) as y:
        if sorted(x.files) != sorted(y.files) or any(not np.array_equal(x[k], y[k]) for k in x.files):
            return False, "dynamics.npz differs from the uninterrupted run"
    return True, "metrics, predictions and dynamics equal the uninterrupted run's"


KILL_AT = 3  # of the run's 6 checkpoints
KILLS = {
    # name -> (run, how)
    "simulated kill after checkpoint 3 of 6, rerun": ("random", "debug"),
    "SIGKILL of the training process after checkpoint 3, rerun": ("dm", "kill-job"),
    "SIGKILL of Snakemake and its jobs after checkpoint 3, unlock, rerun": ("jtt", "kill-snakemake"),
    "kill after checkpoint 3, state file truncated, rerun": ("poe", "debug+corrupt-state"),
    # issue 23
    "SIGINT to Snakemake after checkpoint 3 (it waits for the job), rerun": ("random", "sigint"),
    "SIGKILL of Snakemake alone (its trainer orphaned), unlock, rerun": ("dm", "kill-snakemake-only"),
}


def _cmdline(proc) -> list[str]:
    import psutil

    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def kill_one(wd: Path, pristine: Path, name: str) -> Outcome:
    import psutil

    method, how = KILLS[name]
    run = RUNS[method]
    out = Outcome("kill", name, f"training run {run.path}")
    for o in run_outputs(run):
        (wd / o).unlink(missing_ok=True)
    state = wd / L.state_dir(run) / "resume.pt"
    target = L.run_file("run.json", run)
    log = train_log(wd, run)
    log.unlink(missing_ok=True)
    if how.startswith("debug"):
        res = run_target(wd, target, extra_env={"FTFT_DEBUG_KILL_AFTER_CHECKPOINT": str(KILL_AT)})
        interrupted = res.returncode != 0 and state.is_file()
    else:
        proc = subprocess.Popen(
            [SNAKEMAKE, target, "--cores", "2", *CONFIG_ARGS],
            cwd=wd,
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def at_kill_point() -> bool:  # the state of checkpoint KILL_AT is saved right after its log line
            done = log.is_file() and f"checkpoint {KILL_AT}/" in log.read_text(errors="replace")
            return proc.poll() is not None or (done and state.is_file())

        hit = wait_for(at_kill_point, 600) and proc.poll() is None
        children = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        trainers = [c for c in children if ".train.py" in " ".join(_cmdline(c))]
        if how == "kill-job":  # the training process only: Snakemake sees its job die
            children = trainers
        elif how in ("sigint", "kill-snakemake-only"):  # Ctrl-C; a killed Snakemake whose jobs are left running
            os.kill(proc.pid, signal.SIGINT if how == "sigint" else signal.SIGKILL)
            children = []
        else:  # Snakemake and everything it started, at once (a crashed login session, a power cut)
            os.killpg(proc.pid, signal.SIGKILL)
        for c in children:
            with contextlib.suppress(psutil.Error):
                c.send_signal(signal.SIGKILL)
        proc.wait(timeout=900)
        interrupted = hit and (proc.returncode != 0 if how == "sigint" else not (wd / target).is_file())
        interrupted = interrupted and (how == "sigint" or state.is_file())
        if how == "kill-snakemake-only" and not wait_for(lambda: not any(t.is_running() for t in trainers), 60):
            for t in trainers:
                with contextlib.suppress(psutil.Error):
                    t.kill()
            out.result, out.detail = NOT_RECOVERED, "the orphaned trainer kept running a minute after its Snakemake"
            return out
    if not interrupted:
        out.result, out.detail = NOT_RECOVERED, "the kill did not interrupt the run (it finished first or never saved)"
        return out
    left = [o for o in run_outputs(run) if (wd / o).exists()]
    if how == "debug+corrupt-state":
        truncate(state)
    res = run_target(wd, target)
    text = res.stdout + res.stderr
    if res.returncode != 0 and ("LockException" in text or "cannot be locked" in text.lower()):
        smk(wd, "--unlock", *CONFIG_ARGS)
        out.detail = "snakemake --unlock, then "
        res = run_target(wd, target)
        text = res.stdout + res.stderr
    log_text = log.read_text(errors="replace") if log.is_file() else ""
    resumed = "resuming from" in log_text if how != "debug+corrupt-state" else "cannot be read" in log_text
    resumed = resumed or (how == "sigint" and "restored the outputs of this finished run" in log_text)
    same, why = same_run_files(wd, pristine, run) if res.returncode == 0 else (False, first_error(text))
    if res.returncode == 0 and resumed and same:
        out.result = RECOVERED
        kind = {"debug+corrupt-state": "restarted from scratch (state set aside)", "sigint": "restored"}.get(
            how, "resumed"
        )
        out.detail += f"{kind}; {why}" + (f"; before the rerun left: {left}" if left else "")
    else:
        out.result = NOT_RECOVERED
        out.detail += f"rc {res.returncode}, resumed {resumed}: {why}"
    return out


def kill_chain(wd: Path, pristine: Path, only: list[str] | None) -> list[Outcome]:
    """Every kill in one copy (one run each), then the whole workflow: its tables must equal the baseline's."""
    restore(wd, pristine)
    outs = []
    for name in KILLS:
        if only is not None and not any(t in name for t in only):
            continue
        t0 = time.time()
        o = kill_one(wd, pristine, name)
        o.seconds = time.time() - t0
        outs.append(o)
    if not outs:
        return outs
    t0 = time.time()
    res = run_target(wd)
    tables = sorted((pristine / CFG["results"] / "tables").glob("*"))
    differ = (
        [p.name for p in tables if (wd / p.relative_to(pristine)).read_bytes() != p.read_bytes()]
        if (res.returncode == 0)
        else ["(the rerun of the workflow failed)"]
    )
    for o in outs:
        if o.result == RECOVERED and differ:
            o.result, o.detail = NOT_RECOVERED, f"tables differ after the reruns: {differ[:4]}"
        elif o.result == RECOVERED:
            o.detail += f"; all {len(tables)} table files byte-identical"
    outs[-1].seconds += time.time() - t0
    return outs


# ------------------------------------------------------------------------- issue 23: more cases
RELEASE = "record/4881008/files/data.zip"  # CAD's archive at its URL path (tests/rehearsal/archives.py)


ARCHIVES: dict[str, Callable[[bytes], bytes]] = {  # name -> the bad archive, from the good one
    "archive with a symbolic-link member": lambda good: zip_of((symlink("MNLI/dev"), "/etc")),
    "archive with a member outside its folder (../)": lambda good: zip_of(
        ("MNLI/train.tsv", "x"), ("../outside.txt", "x")
    ),
    "truncated archive with a correct Content-Length": lambda good: good[: len(good) // 2],
}


def archive(wd: Path, releases: Path, name: str) -> Outcome:
    """A bad CAD archive from an HTTP host: the download job fails naming it, fetched once (not retried) and
    nothing kept (no archive, no recorded hash); the fixed host's archive is then fetched, not a stale copy."""
    out = Outcome("archive", name, f"datasets.cad.url serves it ({RELEASE})")
    good, host = (releases / RELEASE).read_bytes(), wd.parent / "host"
    (host / RELEASE).parent.mkdir(parents=True, exist_ok=True)
    (host / RELEASE).write_bytes(ARCHIVES[name](good))
    requests: list[str] = []
    target, overlay = L.download_marker("cad"), wd / "archive.yaml"
    with serve(host, requests) as base:
        overlay.write_text(
            yaml.safe_dump(
                {
                    "active_tasks": ["hsd"],
                    "seeds": [0],
                    "results": CFG["results"],
                    "datasets": {"cad": {"url": f"{base}/{RELEASE}?download=1"}},
                }
            )
        )  # results: the audit's (its logs are not leftovers)
        since, before = time.time(), files_under(wd)
        res = smk(wd, target, "--cores", "1", "--configfile", overlay.name)
        out.result, out.detail = classify_failure(res, wd, since, ["data.zip"], before, [target])
        tries = sum(r.endswith(RELEASE) for r in requests)
        if out.result == JOB and tries != 1:
            out.result, out.detail = UNCLEAR, f"fetched {tries} times (a deterministic failure is not retried)"
        (host / RELEASE).write_bytes(good)
        res = smk(wd, target, "--cores", "1", "--configfile", overlay.name)
        if out.result == JOB and (res.returncode != 0 or not (wd / target).is_file()):
            out.result, out.detail = LEFTOVER, f"the fixed host did not fix it: {first_error(res.stdout + res.stderr)}"
    shutil.rmtree(wd / L.download_dir("cad"), ignore_errors=True)
    shutil.rmtree(host)
    overlay.unlink()
    return out


def planning_scale(work: Path) -> Outcome:
    """Planning grows linearly (issue 23 found it quadratic): ``snakemake -n`` of the paper grid at 10 and 30
    seeds (benchmarks/plan_scale.py); the CPU per added job must not exceed the average at 10 seeds."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from plan_scale import timed

    out = Outcome("scale", "paper grid with three times the seeds: snakemake -n", "seeds 0..9, then 0..29")
    sizes = []
    for n in (10, 30):
        wf = make_copy(work / f"plan{n}")
        (wf / "seeds.yaml").write_text(f"seeds: {list(range(n))}\n")
        text, _, cpu = timed(wf, "--configfile", "seeds.yaml")
        sizes.append((int(re.search(r"^total\s+(\d+)$", text, re.M).group(1)), cpu))
    (j1, c1), (j2, c2) = sizes
    added = (c2 - c1) / (j2 - j1)
    out.result = HANDLED if added <= c1 / j1 else SLOW
    out.detail = f"{j1} jobs {c1:.1f} s CPU, {j2} jobs {c2:.1f} s; {added * 1000:.1f} ms per added job"
    return out


SECRET = Path(tempfile.gettempdir()) / f"ftft-audit-secret-{os.getpid()}.txt"  # what an include would show
SECRET_TEXT = f"secret {time.time_ns()}"
LABELS = {  # models.tinybert.label -> literal text in the report's captions and the figures
    "label with an RST include directive": f".. include:: {SECRET}",
    "label with a javascript: link": "javascript:alert(document.domain)",
    "label with matplotlib mathtext": r"$\notacommand$ tiny",
}


def hostile_label(wd: Path, pristine: Path, name: str) -> Outcome:
    """Every table and figure rebuilt with the label, then ``snakemake --report``: the label is literal text in
    the captions (no file included, no javascript: link), the figure jobs draw it (no mathtext error)."""
    restore(wd, pristine)
    label = LABELS[name]
    out = Outcome("labels" if "mathtext" in name else "security", name, label)
    (wd / "label.yaml").write_text(yaml.safe_dump({"models": {"tinybert": {"label": label}}}))
    args = ("--cores", "2", *CONFIG_ARGS, "label.yaml")
    since, res = time.time(), smk(wd, *args)
    text = res.stdout + res.stderr + logs_text(wd, since)
    if res.returncode == 0:
        res = smk(wd, *args, "--report", "report.html")
        text += res.stdout + res.stderr
    html = (wd / "report.html").read_text(errors="replace") if res.returncode == 0 else ""
    SECRET.write_text(SECRET_TEXT)
    if TB in text:
        out.result, out.detail = TRACEBACK, first_error(text)
    elif res.returncode != 0:
        out.result, out.detail = UNCLEAR, first_error(text)
    elif re.search(r'href=\\*"javascript:', html) or SECRET_TEXT in html:
        out.result, out.detail = INJECTION, f"a javascript: link or the content of {SECRET} in the report"
    elif json.dumps(escape(label, quote=False))[1:-1] not in html:
        out.result, out.detail = UNCLEAR, "the label is not in the report's captions"
    else:
        out.result, out.detail = HANDLED, "tables, figures and report built; the label is literal text in the captions"
    (wd / "report.html").unlink(missing_ok=True)
    return out


SECOND = "a second trainer on a run another process trains"
ADVICE_FOLLOWED = "corrupt train.parquet, then the error's advice followed"


def second_trainer(wd: Path, pristine: Path, name: str) -> Outcome:
    """A run another process trains (holds its lock): the training job fails at once naming the holder's pid,
    leaves nothing; once the holder is gone the same command trains it."""
    from ftft import devices

    restore(wd, pristine)
    run = RUNS["random"]
    out = Outcome("lost work", name, f"{run.path}, held by this pid")
    for o in run_outputs(run):
        (wd / o).unlink()
    lock = devices.hold_run(wd / L.state_dir(run))
    since, before = time.time(), files_under(wd)
    res = run_target(wd, L.run_file("run.json", run))
    lock.release()
    out.result, out.detail = classify_failure(res, wd, since, [f"pid {os.getpid()}"], before, run_outputs(run))
    res = run_target(wd, L.run_file("run.json", run))
    if out.result == JOB and not (res.returncode == 0 and same_run_files(wd, pristine, run)[0]):
        out.result, out.detail = NOT_RECOVERED, f"the run did not train once free: {first_error(res.stderr)}"
    return out


def follow_advice(wd: Path, pristine: Path, name: str) -> Outcome:
    """A corrupt task training set on a finished results folder: the error's advice, followed verbatim, rebuilds
    it (issue 23: deleting it, as the advice said, left Snakemake with 'Nothing to be done')."""
    restore(wd, pristine)
    out = Outcome("lost work", name, f"{TRAIN}: truncated")
    truncate(wd / TRAIN)
    (wd / DM_FILE).unlink()
    since, before = time.time(), files_under(wd)
    res = run_target(wd, DM_FILE)
    out.result, out.detail = classify_failure(res, wd, since, [TRAIN], before, [DM_FILE])
    advice = re.search(r"add `(--force \S+)` right after `snakemake`", res.stdout + res.stderr + logs_text(wd, since))
    if out.result == JOB and not advice:
        out.result, out.detail = UNCLEAR, f"no --force advice: {out.detail}"
    elif out.result == JOB:  # right after `snakemake`, in a command that names a target
        res = smk(wd, *advice.group(1).split(), DM_FILE, "--cores", "2", *CONFIG_ARGS)
        res = run_target(wd, DM_FILE) if res.returncode == 0 else res
        import pandas as pd

        if res.returncode != 0 or not pd.read_parquet(wd / TRAIN).equals(pd.read_parquet(pristine / TRAIN)):
            out.result, out.detail = NOT_RECOVERED, f"the advice did not rebuild it: {first_error(res.stderr)}"
        else:
            out.detail += f" -> `{advice.group(1)}` rebuilt it"
    return out


DISK_FULL = ("full disk under a figure job", "full disk as a training job writes its outputs")


@contextlib.contextmanager
def full_disk(folder: Path):
    """``folder`` on a full 64 KiB tmpfs (needs root; the caller says when it cannot mount)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], check=True, capture_output=True)
    try:
        with contextlib.suppress(OSError), open(folder / "filler", "wb") as fh:
            fh.write(b"x" * 1_000_000)
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def disk_full(wd: Path, pristine: Path, name: str) -> Outcome:
    """A full disk where a job writes its outputs: the error names the file and ENOSPC; a training job's finished
    training survives (the rerun resumes at the last step to the same files), a figure job leaves nothing."""
    restore(wd, pristine)
    training = "training" in name
    run = RUNS["jtt"]
    outputs = run_outputs(run) if training else [L.figure("3", "png"), L.figure("3", "pdf")]
    folder = wd / (L.run_dir(run) if training else Path(outputs[0]).parent)
    out = Outcome("disk full", name, f"{folder.relative_to(wd)} on a full tmpfs")
    for o in outputs:
        (wd / o).unlink()
    try:
        with full_disk(folder):
            since, before = time.time(), files_under(wd)
            res = run_target(wd, outputs[0])
            out.result, out.detail = classify_failure(res, wd, since, ["ENOSPC"], before, outputs)
    except subprocess.CalledProcessError as exc:
        out.result, out.detail = SKIPPED, f"cannot mount a tmpfs: {exc.stderr.strip()[:100]}"
        return out
    res = run_target(wd, outputs[0])
    log = train_log(wd, run).read_text(errors="replace") if training else ""
    if out.result == JOB and (res.returncode != 0 or (training and "resuming from" not in log)):
        out.result, out.detail = NOT_RECOVERED, f"rerun rc {res.returncode}: {first_error(res.stdout + res.stderr)}"
    elif out.result == JOB and training:
        same, why = same_run_files(wd, pristine, run)
        out.result, out.detail = (RECOVERED, f"{out.detail} -> resumed; {why}") if same else (NOT_RECOVERED, why)
    return out


# ------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--workers", type=int, default=2, help="scenarios run at once (each in its own copy)")
    ap.add_argument("--only", nargs="+", default=None, help="only scenarios whose name contains one of these texts")
    ap.add_argument("--json", default=None, help="also write the outcomes and totals to this file")
    ap.add_argument("--skip-interrupts", action="store_true", help="skip the kills (whole-workflow interrupts)")
    args = ap.parse_args(argv)
    t_start = time.time()
    work = Path(args.work or tempfile.mkdtemp(prefix="ftft-hardening-"))
    work.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    try:
        wf = make_copy(work / "wf")
        (wf / "audit.yaml").write_text(yaml.safe_dump(AUDIT))
        side = make_copy(work / "side")
        (side / "audit.yaml").write_text(yaml.safe_dump(AUDIT))
        (side / "byo").mkdir()
        for split in ("train", "test"):
            (side / "byo" / f"{split}.csv").write_text("text,label\nsome text,hate\nother text,nothate\n")

        def timed(fn, *a) -> Outcome:
            t0 = time.time()
            o = fn(*a)
            o.seconds = time.time() - t0
            print(f"  {o.result:>13}  {o.group}: {o.name}", flush=True)
            return o

        def selected(name: str) -> bool:
            return args.only is None or any(t in name for t in args.only)

        # phase 1: the uninterrupted run, and beside it (its many one-job stretches leave a core idle) the
        # config mistakes, bad rows and the odd working folder, which need no run outputs
        def baseline():
            t0 = time.time()
            res = run_target(wf)
            if res.returncode != 0:
                raise SystemExit(f"the uninterrupted run failed:\n{(res.stdout + res.stderr)[-4000:]}")
            status = {
                r.method: json.loads((wf / L.run_file("run.json", r)).read_text())["status"] for r in RUNS.values()
            }
            if status["erm"] != "ok":  # every other run depends on it; failed runs' files are never read
                raise SystemExit(
                    f"the reference run failed in the uninterrupted run ({status}): the audit would be void"
                )
            snapshot(wf, work / "pristine")
            print(f"  uninterrupted run: runs {status}", flush=True)
            return time.time() - t0

        print("phase 1: the uninterrupted run + config mistakes, bad dataset rows, bad paths", flush=True)
        with ThreadPoolExecutor(2) as pool:
            base = pool.submit(baseline)
            side_outs = [timed(config_mistake, side, n) for n in CONFIG_MISTAKES if selected(n)]
            side_outs += [timed(overlay_text, side, n) for n in OVERLAY_TEXT if selected(n)]
            side_outs += [timed(byo_rows, side, n) for n in BYO_ROWS if selected(n)]
            if selected("working directory"):
                side_outs.append(timed(weird_working_dir, work))
            if any(selected(n) for n in ARCHIVES):
                build_archives(ROOT / "tests" / "fixtures", work / "releases")
            side_outs += [timed(archive, side, work / "releases", n) for n in ARCHIVES if selected(n)]
            if selected("paper grid with three times the seeds"):
                side_outs.append(timed(planning_scale, work))
            base_s = base.result()
        outcomes += side_outs
        print(f"  uninterrupted run: {base_s:.0f} s", flush=True)

        # phase 2: corrupted files (each in a restored copy) and the kills (one copy, then the tables)
        print("phase 2: corrupted intermediate files, kills", flush=True)
        copies = [wf] + [make_copy(work / f"wf{i}") for i in range(1, max(1, args.workers))]
        for c in copies:
            (c / "audit.yaml").write_text(yaml.safe_dump(AUDIT))
            restore(c, work / "pristine")
            check = smk(c, "--dry-run", *CONFIG_ARGS)  # a restored copy is up to date, or the audit is void
            if "Nothing to be done" not in check.stdout + check.stderr:
                raise SystemExit(f"{c}: after restoring the uninterrupted run, snakemake -n has work:\n{check.stdout}")
        free: list[Path] = list(copies)
        lock = threading.Lock()

        def with_copy(fn, *a):
            with lock:
                wd = free.pop()
            try:
                return fn(wd, work / "pristine", *a)
            finally:
                with lock:
                    free.append(wd)

        with ThreadPoolExecutor(len(copies)) as pool:
            kills = pool.submit(with_copy, kill_chain, [] if args.skip_interrupts else args.only)
            cases = [(corrupt, n) for n in CORRUPT] + [(hostile_label, n) for n in LABELS]
            cases += [(disk_full, n) for n in DISK_FULL] + [(second_trainer, SECOND), (follow_advice, ADVICE_FOLLOWED)]
            futures = [
                pool.submit(with_copy, lambda wd, p, fn, n: timed(fn, wd, p, n), fn, n)
                for fn, n in cases
                if selected(n)
            ]
            outcomes += [f.result() for f in futures]
            for o in kills.result():
                print(f"  {o.result:>13}  {o.group}: {o.name}", flush=True)
                outcomes.append(o)
    finally:
        SECRET.unlink(missing_ok=True)
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    total_s = time.time() - t_start
    report(outcomes, total_s, args.json)
    return 0 if all(o.result in (*GOOD, SKIPPED) for o in outcomes) else 1


def report(outcomes: list[Outcome], total_s: float, json_path: str | None) -> None:
    print()
    print(f"| {'group':<12} | {'bad input':<62} | {'outcome':<13} | {'s':>4} | message / detail")
    print(f"|{'-' * 14}|{'-' * 64}|{'-' * 15}|{'-' * 6}|{'-' * 40}")
    for o in outcomes:
        print(f"| {o.group:<12} | {o.name[:62]:<62} | {o.result:<13} | {o.seconds:4.0f} | {o.detail[:160]}")
    c = Counter(o.result for o in outcomes)
    kills = [o for o in outcomes if o.group == "kill"]
    totals = {
        "bad inputs tried": len(outcomes) - len(kills),
        "early clear errors": c[EARLY],
        "job-time clear errors": c[JOB],
        "handled (rows dropped and counted, names used literally)": c[HANDLED],
        "tracebacks": c[TRACEBACK],
        "leftover partial outputs": c[LEFTOVER],
        "unclear errors": c[UNCLEAR],
        "accepted silently": c[ACCEPTED],
        "injections (code ran, a file included, a script link)": c[INJECTION],
        "planning not linear": c[SLOW],
        "skipped (no tmpfs mount: not root)": c[SKIPPED],
        "interrupts tried": len(kills),
        "interrupts survived": sum(o.result == RECOVERED for o in kills),
        "wall time (s)": round(total_s),
    }
    print()
    for k, v in totals.items():
        print(f"{k}: {v}")
    if json_path:
        Path(json_path).write_text(json.dumps({"totals": totals, "outcomes": [o.__dict__ for o in outcomes]}, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
