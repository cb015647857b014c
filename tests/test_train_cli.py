"""``ftft train``: the subcommand a Snakemake rule calls (spec JSON or @file, explicit paths)."""

import json
import logging
import re

import engine_fixtures as ef
import pytest

from ftft.cli import main
from ftft.layout import RUN_FILES
from ftft.train.spec import make_spec

pytestmark = pytest.mark.integration  # real training runs / subprocesses / servers: the integration tier


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    toy = ef.toy_setup(tmp_path_factory.mktemp("toy_cli"))
    # the spec names a hub id that cannot be reached: --model-path must override it
    cfg = ef.toy_config(toy["model"], steps=12, checkpoints=3)
    cfg["models"]["tiny"]["path"] = None
    return toy | {"spec": make_spec(cfg, ef.toy_run())}


def _args(toy, out, spec_arg, *extra):
    paths = {"--data-dir": toy["data"], "--out": out, "--state-dir": toy["root"] / "state" / out.name}
    return ["train", "--spec", spec_arg, *[str(x) for item in paths.items() for x in item], *extra]


def test_train_from_spec_file_with_model_path_and_subset(toy, tmp_path):
    import pandas as pd

    assert toy["spec"]["model_source"] == "nobody/tiny"
    spec_file, subset = tmp_path / "spec.json", tmp_path / "subset.parquet"
    spec_file.write_text(json.dumps({**toy["spec"], "run": {**toy["spec"]["run"], "method": "random"}}))
    pd.DataFrame({"uid": pd.read_parquet(toy["raw"] / "train.parquet")["uid"][:40], "weight": 1.0}).to_parquet(subset)
    out = tmp_path / "run"
    assert main(_args(toy, out, f"@{spec_file}", "--subset", str(subset), "--model-path", str(toy["model"]))) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    rec = json.loads((out / "run.json").read_text())
    assert rec["model"]["source"] == str(toy["model"]) and rec["n_train"] == 40
    assert rec["steps"] == 12 and rec["checkpoints"] == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [({"lr": -1.0}, "'lr'"), ({"steps": 2}, "'steps'"), ({"metric": "f2"}, "'metric'"), ("{not json", "not valid JSON"),
     ("@missing.json", "missing.json"), ({"data": "nodata"}, "nodata/stats.json.*tokenize")],
)  # fmt: skip
def test_bad_input_exits_1_naming_it(toy, tmp_path, caplog, change, message):
    out = tmp_path / "run"
    if isinstance(change, str):
        spec = change.replace("@", f"@{tmp_path}/")
    else:
        spec = json.dumps({**toy["spec"], **{k: v for k, v in change.items() if k != "data"}})
    args = _args(toy, out, spec, "--model-path", str(toy["model"]))
    if "data" in change:
        args[args.index("--data-dir") + 1] = str(tmp_path / change["data"])
    with caplog.at_level(logging.ERROR, logger="ftft"):
        assert main(args) == 1
    assert re.search(message, caplog.text)
    assert not out.exists()
