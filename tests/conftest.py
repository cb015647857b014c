"""Shared fixtures: ``demo_frames`` (generated frames per task), ``tiny_model_dir`` (a tiny BERT, saved with 2
labels), ``demo_task_dir(task)`` (a folder with ``data/{task}/train.parquet`` and ``eval/{name}.parquet``, names of
config/demo.yaml), ``cfg`` / ``results`` (helpers_runs' tiny config and its real runs, per module; a module may
override ``cfg``) and ``demo_run`` (the demo DAG run once per session by real snakemake: slow tier).
"""

import time
from dataclasses import dataclass
from pathlib import Path

import helpers_runs
import pytest
from wfutil import ROOT, make_copy, snakemake

from ftft import config as ftft_config
from ftft.data import schema

# eval set name (config/demo.yaml) -> split of the generated frame; the first is the ID test
DEMO_EVAL_SETS: dict[str, dict[str, str]] = {
    "nli": {"mnli": "test", "wanli": "ood_wanli", **{f"anli_r{r}": f"ood_anli_r{r}" for r in (1, 2, 3)}},
    "hsd": {"cad": "test", **{f"dynahate_{k}_r{r}": f"ood_r{r}_{v}" for k, v in (("original", "original"),
            ("perturb", "perturbation")) for r in (2, 3, 4)}},
}  # fmt: skip
DEMO_LABELS = {"nli": schema.NLI_LABELS, "hsd": schema.HSD_LABELS}
FIXTURE_TRAIN_ROWS = {"nli": 400, "hsd": 300}
FIXTURE_EVAL_ROWS = 60


@pytest.fixture(scope="session")
def demo_frames():
    from ftft.data import demo

    return {
        task: demo.generate(task, train_rows=FIXTURE_TRAIN_ROWS[task], eval_rows=FIXTURE_EVAL_ROWS, seed=0)
        for task in ("nli", "hsd")
    }


@pytest.fixture(scope="session")
def demo_texts(demo_frames) -> list[str]:
    return [t for df in demo_frames.values() for t in [*df["text_a"], *df["text_b"].dropna()]]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, demo_texts) -> Path:
    from ftft.standins import build_demo_model

    out = tmp_path_factory.mktemp("models") / "tinybert"
    build_demo_model("tinybert", "bert", "tiny", demo_texts, out)
    return out


@pytest.fixture(scope="session")
def demo_task_dir(tmp_path_factory, demo_frames):
    cache: dict[str, Path] = {}

    def make(task: str) -> Path:
        if task not in cache:
            root = tmp_path_factory.mktemp(f"results_{task}")
            df, data = demo_frames[task], root / "data" / task
            files = {"train": "train", **{f"eval/{name}": split for name, split in DEMO_EVAL_SETS[task].items()}}
            for name, split in files.items():
                schema.write(df[df["split"] == split], data / f"{name}.parquet", DEMO_LABELS[task], f"demo_{task}")
            cache[task] = root
        return cache[task]

    return make


@pytest.fixture(scope="module")
def cfg():
    return helpers_runs.tiny_config()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return helpers_runs.shared_results(tmp_path_factory)


@dataclass
class DemoRun:
    wf: Path  # the workflow copy
    cfg: dict  # its merged config
    res: object  # subprocess.CompletedProcess of the snakemake run


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    wf = make_copy(tmp_path_factory.mktemp("demo") / "wf")
    t0 = time.monotonic()
    res = snakemake(wf, "--cores", "2", "--configfile", "config/demo.yaml", timeout=3600)
    print(f"\ndemo DAG end to end: {time.monotonic() - t0:.0f} s on 2 cores")
    cfg = ftft_config.load(ROOT / "workflow_config.yaml", ROOT / "config" / "demo.yaml")
    return DemoRun(wf, cfg, res)
