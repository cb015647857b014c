"""FTFT as a fine-tuning tool: the shipped model (saved by a real run at its halting checkpoint) loads
with ``transformers.pipeline`` offline and reproduces the run's recorded scores; the screening ranks
real reference runs; the quickstart config runs end to end with real snakemake."""

from __future__ import annotations

import json

import engine_fixtures as ef
import numpy as np
import pandas as pd
import pytest

from ftft.train.engine import train
from ftft.train.spec import make_spec

pytestmark = pytest.mark.integration  # real training runs / snakemake


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
