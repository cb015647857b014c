"""Assembling a task's train / ID / OOD sets from normalised sources (the paper's task specs)."""

import json
from pathlib import Path

import pytest
import yaml

from ftft.cli import main
from ftft.data import schema
from ftft.data.assemble import assemble
from ftft.data.prepare import prepare
from ftft.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def sources_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sources")
    for source in ("mnli", "wanli", "anli", "cad", "dynahate"):
        prepare(source, FIX / source, out / f"{source}.parquet", out / f"{source}.summary.json")
    return out


@pytest.fixture(scope="module")
def tasks():
    with open(ROOT / "workflow_config.yaml") as fh:
        return yaml.safe_load(fh)["tasks"]


@pytest.mark.parametrize("task", ["nli", "hsd"])
def test_assemble_paper_tasks(sources_dir, tasks, tmp_path, task):
    spec = tasks[task]
    out = tmp_path / task
    args = ["--sources-dir", str(sources_dir), "--train", str(out / "train.parquet"), "--eval-dir", str(out / "eval")]
    assert main(["assemble", "--spec", json.dumps(spec), *args]) == 0
    sets = [("train", spec["train"]), (f"eval/{spec['id_test']['name']}", spec["id_test"])]
    sets += [(f"eval/{o['name']}", o) for o in spec["ood"]]
    assert sorted(p.stem for p in (out / "eval").glob("*.parquet")) == sorted(n.split("/")[1] for n, _ in sets[1:])
    for name, entry in sets:
        df, meta = schema.read(out / f"{name}.parquet")
        src, _ = schema.read(sources_dir / f"{entry['source']}.parquet")
        want = src[src["split"] == entry["split"]].reset_index(drop=True)
        assert meta == {"label_names": spec["labels"], "source": entry["source"]}
        assert len(df) == len(want) > 0 and df["uid"].is_unique
        assert df["uid"].tolist() == want["uid"].tolist() and df["label"].tolist() == want["label"].tolist()
        assert list(df.columns) == list(want.columns)


@pytest.mark.parametrize(
    ("change", "parts"),
    [({"ood": [{"name": "hate", "source": "cad", "split": "test"}]},
      ["'cad'", "'test'", "['nothate', 'hate']", "['entailment', 'neutral', 'contradiction']"]),
     ({"ood": [{"name": "x", "source": "anli", "split": "test_r9"}]}, ["test_r9", "test_r1", "dev_r1"]),
     ({"train": {"source": "anli", "split": "train_r1"}}, ["train_r1", "missing or empty"]),  # absent in the fixtures
     ({"train": {"source": "snli", "split": "train"}}, ["snli.parquet"])],
)  # fmt: skip
def test_assemble_label_mismatch_and_missing_split(sources_dir, tasks, tmp_path, change, parts):
    with pytest.raises(DataError) as err:
        assemble(tasks["nli"] | change, sources_dir, tmp_path / "train.parquet", tmp_path / "eval")
    for part in parts:
        assert part in str(err.value), part
