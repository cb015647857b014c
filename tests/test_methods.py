"""The method registry (``ftft.methods``): a throw-away method, defined once below, runs end to end.

FOCAL is a "focal loss main model" (Lin et al. 2017, gamma 2, every training row, no reference): one
``Method`` record and nothing else. In-process it is registered with ``methods.register``; for the real
``snakemake`` run the same text is appended to a copy of ``methods.py`` (a config can only name a
registered method, never define one).
"""

import json
import shlex
import shutil
from collections import Counter

import engine_fixtures as ef
import pandas as pd
import pytest
import yaml
from wfutil import ROOT, make_copy, snakemake

from ftft import config, grid, methods
from ftft.cli import main
from ftft.layout import Layout
from ftft.train.engine import train
from ftft.train.spec import make_spec
from ftft.workflow import Plan

FOCAL = """
def _focal(logits, labels, gamma=2.0):  # Lin et al. 2017: (1 - p_y)^gamma * CE
    import torch.nn.functional as F

    logp = F.log_softmax(logits, dim=-1).gather(1, labels[:, None])[:, 0]
    return -((1 - logp.exp()) ** gamma) * logp


def _all_rows(a):
    import numpy as np
    import pandas as pd

    return pd.DataFrame({"uid": a.uids, "weight": np.ones(len(a.uids), np.float32)}), {}


register(Method("focal", "Focal", subset=_all_rows, loss=_focal))
"""
ROW = {"method": "focal", "main": "deberta-v3-small"}


@pytest.fixture
def focal():
    exec(FOCAL, {"register": methods.register, "Method": methods.Method})
    yield methods.get("focal")
    del methods.REGISTRY["focal"]


def _cfg(*rows) -> dict:
    cfg = config.read_yaml(ROOT / "workflow_config.yaml")
    config.deep_update(cfg, config.read_yaml(ROOT / "config" / "demo.yaml"))
    cfg["tables"]["1"]["rows"] += list(rows)
    config.validate(cfg)
    return cfg


def test_unknown_and_label_only_methods_are_refused():
    with pytest.raises(config.ConfigError, match=r"tables\.1\.rows\[\d+\]\.method.*'focal' is not one of"):
        _cfg(ROW)
    with pytest.raises(config.ConfigError, match="needs a reference model"):
        _cfg({"method": "jtt", "main": "tinybert"})
    with pytest.raises(ValueError, match="table label, not a run"):
        grid.Run("nli", "tinybert", "ftft", "tinybert")
    with pytest.raises(ValueError, match="lower-case"):
        methods.register(methods.Method("focal-2", "F"))


def test_a_registered_method_is_planned_and_gets_its_subset(focal, tmp_path):
    cfg = _cfg(ROW)
    run = grid.Run("nli", "deberta-v3-small", "focal", "none", grid.FULL, 0)
    assert run in grid.all_runs(cfg) and ("nli", "focal", "none", 0) in grid.all_subsets(cfg)
    plan = Plan(cfg)
    assert "focal" in plan.wildcard_constraints()["subset_method"].split("|")
    # the subset step, with the arguments the plan hands its rule, on a real training set
    raw = ef.write_toy_data(tmp_path / "raw")
    inputs = plan.subset_inputs("nli", "focal", "none", 0)
    args = shlex.split(plan.subset_args("nli", "focal", "none", 0, inputs))
    out = tmp_path / "focal.parquet"
    assert main(["subset", "--method", "focal", "--train", str(raw / "train.parquet"), "--out", str(out), *args]) == 0
    assert sorted(pd.read_parquet(out)["uid"]) == sorted(pd.read_parquet(raw / "train.parquet")["uid"])


@pytest.mark.integration
def test_a_registered_method_trains_with_its_loss(focal, tmp_path):
    """Same start, same batches: with an untrained head (p_y ~ 1/3) focal loss is ~(2/3)^2 of cross-entropy."""
    raw = ef.write_toy_data(tmp_path / "raw")
    model = ef.build_toy_model(tmp_path / "model")
    data = ef.tokenize_toy(raw, model, tmp_path / "data")
    out = tmp_path / "focal.parquet"
    assert main(["subset", "--method", "focal", "--train", str(raw / "train.parquet"), "--out", str(out)]) == 0
    cfg = ef.toy_config(model, steps=2, checkpoints=1)
    loss = {}
    for name, subset in (("erm", None), ("focal", out)):
        train(make_spec(cfg, ef.toy_run(name)), data, tmp_path / name, tmp_path / f"state-{name}", subset=subset)
        loss[name] = pd.read_csv(tmp_path / name / "metrics.csv")["train_loss"].iloc[0]
    assert loss["focal"] == pytest.approx(loss["erm"] * 4 / 9, rel=0.25)


@pytest.mark.slow
def test_a_method_in_methods_py_alone_runs_end_to_end(focal, tmp_path):  # focal: for the paths here
    wf = make_copy(tmp_path / "wf")
    (wf / "src").unlink()
    shutil.copytree(ROOT / "src", wf / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with (wf / "src" / "ftft" / "methods.py").open("a") as fh:
        fh.write(FOCAL)
    (wf / "focal.yaml").write_text(yaml.safe_dump({"tables": {"1": {"rows": [ROW]}}, "active_tasks": ["nli"]}))
    run = grid.Run("nli", "deberta-v3-small", "focal", "none", grid.FULL, 0)
    L = Layout("results/demo")
    targets = [L.run_file("run.json", run), L.subset("nli", "focal", "none", 0)]
    res = snakemake(wf, *targets, "--d3dag", "--configfile", "config/demo.yaml", "focal.yaml")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    nodes = json.loads(res.stdout[res.stdout.index("{") :])["nodes"]
    rules = Counter(n["value"]["rule"] for n in nodes)
    assert rules["subset"] == 1 and rules["train"] == 1 and "datamap" not in rules  # no reference
    env = {"PYTHONPATH": str(wf / "src")}  # the jobs run this copy of the package too
    res = snakemake(wf, *targets, "--cores", "2", "--configfile", "config/demo.yaml", "focal.yaml", env=env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    rec = json.loads((wf / L.run_file("run.json", run)).read_text())
    assert rec["run"]["method"] == "focal" and rec["status"] == "ok" and rec["steps_done"] == rec["steps"]
