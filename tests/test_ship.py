"""FTFT as a fine-tuning tool: the shipped model (saved by a real run at its halting checkpoint) loads
with ``transformers.pipeline`` offline and reproduces the run's recorded scores; the screening ranks
real reference runs; the quickstart config runs end to end with real snakemake."""

import json
import re
from pathlib import Path

import engine_fixtures as ef
import numpy as np
import pandas as pd
import pytest

from ftft import config, grid
from ftft.config import ConfigError
from ftft.train.engine import train
from ftft.train.spec import make_spec
from ftft.workflow import Plan

QUICKSTART = ("workflow_config.yaml", "config/ftft-quickstart.yaml")


def test_quickstart_plans_screening_and_model_without_paper_tables(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    cfg = config.load(*QUICKSTART)
    plan, s = Plan(cfg), cfg["ship"]
    assert sorted(plan.runs) == sorted(grid.ref_run("comments", r, 0) for r in s["refs"])
    targets = plan.final_targets()
    assert plan.layout.screening("csv") in targets and plan.layout.shipped("comments") in targets
    assert not [t for t in targets if "/tables/" in t or "/figures/" in t]  # no tables the user did not ask for
    shipped = grid.ship_run(cfg, s["refs"][0])
    assert plan.train_spec(shipped)["export_checkpoint"] == 5  # 1/3 of 15 checkpoints
    assert "export_checkpoint" not in plan.train_spec(grid.ref_run("comments", s["refs"][0], 0))
    erm = Plan(config.load(*QUICKSTART, overrides={"ship": {"erm": True}}))  # ship.erm: the main model's ERM run too
    main_erm = grid.ref_run("comments", s["main"], 0)
    assert main_erm in erm.runs and erm.train_spec(main_erm)["export_checkpoint"] == 15  # its whole schedule
    assert erm.layout.shipped("comments-erm") in erm.final_targets()


@pytest.mark.parametrize(
    ("ship", "key"),
    [({"refs": ["nobody"]}, "ship.refs[0]"), ({"fraction": "1/4"}, "ship.fraction"), ({"task": "nli"}, "ship.task")],
)
def test_ship_config_errors_name_the_key(monkeypatch, ship, key):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    with pytest.raises(ConfigError, match=re.escape(key)):
        config.load(*QUICKSTART, overrides={"ship": ship})


@pytest.mark.integration
def test_exported_model_loads_with_pipeline_offline_and_reproduces_the_run(tmp_path, monkeypatch):
    raw = ef.write_toy_data(tmp_path / "raw")
    model = ef.build_toy_model(tmp_path / "model")
    data = ef.tokenize_toy(raw, model, tmp_path / "data")
    spec = make_spec(ef.toy_config(model, steps=100, checkpoints=5, lr=3e-3), ef.toy_run())
    spec["export_checkpoint"] = 2  # halted at 2/5: step 40
    out, export = tmp_path / "run", tmp_path / "export"
    train(spec, data, out, tmp_path / "state", export_out=export)
    assert not (tmp_path / "state").exists()  # moved out with the outputs
    config = json.loads((export / "config.json").read_text())
    assert config["id2label"] == {str(i): n for i, n in enumerate(ef.LABELS)}
    assert (export / "model.safetensors").is_file()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(export), top_k=None)
    ev = pd.read_parquet(raw / "eval" / "toy_id.parquet")
    got = classify([{"text": a, "text_pair": b} for a, b in zip(ev.text_a, ev.text_b, strict=True)])
    probs = np.array([[{d["label"]: d["score"] for d in row}[n] for n in ef.LABELS] for row in got])
    preds = pd.read_parquet(out / "predictions.parquet")
    recorded = preds[(preds.step == 40) & (preds.dataset == "toy_id")].set_index("uid").loc[ev.uid]
    np.testing.assert_allclose(probs, recorded[[f"prob_{i}" for i in range(3)]].to_numpy(), atol=1e-4)
    metrics = pd.read_csv(out / "metrics.csv")
    acc = metrics[(metrics.checkpoint == 2) & (metrics.dataset == "toy_id")].accuracy.item()
    assert (probs.argmax(1) == ev.label.to_numpy()).mean() == pytest.approx(acc)
    final = preds[(preds.step == 100) & (preds.dataset == "toy_id")].set_index("uid").loc[ev.uid]
    assert not np.allclose(probs, final[[f"prob_{i}" for i in range(3)]].to_numpy(), atol=1e-3)  # not the end's


def _easy_ratio_at_half(npz_path) -> float:
    """Easy share at q = 50% straight from a run's dynamics (numpy only): neither in the top half by
    variability nor in the bottom half by confidence of p_true over the complete epochs."""
    with np.load(npz_path) as z:
        e, labels = int(z["complete_epochs"]), z["labels"]
        pt = z["probs"][:e, np.arange(len(labels)), labels].astype(np.float64)
    conf, var = pt.mean(0), pt.std(0)
    k = round(0.5 * len(labels))
    amb, hard = np.zeros(len(labels), bool), np.zeros(len(labels), bool)
    amb[np.argsort(-var, kind="stable")[:k]] = True
    hard[np.argsort(conf, kind="stable")[:k]] = True
    return float((~amb & ~hard).mean())


@pytest.mark.slow  # a whole quickstart workflow run
def test_quickstart_screens_ships_a_pipeline_model_with_its_card(tmp_path, monkeypatch):
    import wfutil
    import yaml
    from sklearn.metrics import f1_score

    wf = wfutil.make_copy(tmp_path / "wf")
    (wf / "erm.yaml").write_text("ship: {erm: true}\n")  # the ERM model of the main model as well
    r = wfutil.snakemake(wf, "--cores", "2", "--configfile", "config/ftft-quickstart.yaml", "erm.yaml", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = config.load(wf / "workflow_config.yaml", wf / "config/ftft-quickstart.yaml", wf / "erm.yaml")
    res, s = wf / cfg["results"], cfg["ship"]

    screening = pd.read_csv(res / "screening.csv", keep_default_na=False)
    assert sorted(screening.ref) == sorted(s["refs"])
    runs = {ref: res / f"runs/comments/{ref}/erm-none/full/seed0" for ref in s["refs"]}
    easy = {ref: _easy_ratio_at_half(runs[ref] / "dynamics.npz") for ref in s["refs"]}
    assert screening.set_index("ref").easy_ratio.to_dict() == pytest.approx(easy, abs=0.01)
    best = screening.ref[0]
    assert list(screening.ref[screening.recommended.astype(str) == "True"]) == [best]
    ranks = screening[["easy_ratio", "hard_ptrue", "id_score"]].rank(ascending=False).mean(axis=1)
    assert ranks.is_monotonic_increasing and ranks.tolist() == pytest.approx(screening.mean_rank.tolist(), abs=1e-4)
    assert (screening.flag != "").tolist() == [easy[r] <= 0.45 for r in screening.ref]
    assert f"`{best}`" in (res / "screening.md").read_text().split("\n")[2]
    assert (res / "screening.png").stat().st_size > 0 and "<table" in (res / "screening.html").read_text()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import pipeline

    # the FTFT model (DM run from the recommended reference, halted at 1/3 of 15 checkpoints) and the ERM model
    for folder, run, ckpt, says in [(res / "model/comments", f"dm-{best}", 5, f"reference model `{best}`"),
                                    (res / "model/comments-erm", "erm-none", 15, "The ERM model")]:  # fmt: skip
        card = (folder / "README.md").read_text()
        front = yaml.safe_load(card.split("---\n")[1])
        assert says in card
        metrics = pd.read_csv(res / f"runs/comments/{s['main']}/{run}/full/seed0/metrics.csv")
        at = metrics[metrics.checkpoint == ckpt].set_index("dataset")
        classify = pipeline("text-classification", model=str(folder))
        for result in front["model-index"][0]["results"]:
            name = result["dataset"]["name"]
            ev = pd.read_parquet(res / f"data/comments/eval/{name}.parquet")
            pred = [cfg["tasks"]["comments"]["labels"].index(p["label"]) for p in classify(list(ev.text_a))]
            f1 = f1_score(ev.label, pred, average="macro")
            assert f1 == pytest.approx(at.loc[name, "macro_f1"], abs=1e-6)
            assert {m["type"]: m["value"] for m in result["metrics"]}["f1"] == pytest.approx(f1, abs=1e-4)


@pytest.mark.slow
def test_demo_hsd_screening_ranks_the_weak_reference_last_and_flags_it(tmp_path):
    """§4.3 on the demo's HSD task: the references of Table 8 screened; the one the paper finds too weak
    (the TinyBERT stand-in: the fewest parameters) is ranked last and flagged."""
    import wfutil

    wf = wfutil.make_copy(tmp_path / "wf")
    demo = config.load(wf / "workflow_config.yaml", wf / "config/demo.yaml")
    refs, weak = demo["easy_ratio"]["refs"], demo["claims"]["weak_refs"]["hsd"]
    ship = {"task": "hsd", "main": "deberta-v3-large", "refs": refs}
    (wf / "hsd.yaml").write_text(json.dumps({"active_tasks": ["hsd"], "ship": ship}))
    r = wfutil.snakemake(wf, "screen", "--cores", "2", "--configfile", "config/demo.yaml", "hsd.yaml", timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    screening = pd.read_csv(wf / demo["results"] / "screening.csv", keep_default_na=False)
    assert len(screening) == len(refs) and (screening.failed == "").all()
    assert screening.ref.tolist()[-len(weak) :] == weak
    npz = wf / demo["results"] / f"runs/hsd/{weak[0]}/erm-none/full/seed0/dynamics.npz"
    assert _easy_ratio_at_half(npz) <= 0.45 and screening.flag.iloc[-1].startswith("ineffective")
