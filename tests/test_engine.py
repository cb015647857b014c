"""The one training engine on a tiny BERT and an easily learnable toy task (tests/engine_fixtures.py).

Real training runs of a few seconds each: learning beats the majority baseline, the output
files follow docs/ARCHITECTURE.md, a killed run resumes to bitwise identical outputs, subsets /
weights / PoE flow into the loss, failures are recorded, bad input fails clearly.
"""

from __future__ import annotations

import json
from pathlib import Path

import engine_fixtures as ef
import numpy as np
import pandas as pd
import pytest
import torch

from ftft import config, grid
from ftft.config import ConfigError
from ftft.errors import DataError, ModelError
from ftft.train import engine
from ftft.train.data import apply_subset, collate, encode
from ftft.train.engine import SimulatedKill, train
from ftft.train.evaluate import macro_f1, majority_baseline
from ftft.train.spec import make_spec, validate_spec

REPO = Path(__file__).resolve().parents[1]
# 192 training instances, batch 20: 10 batches per pass (the last one 12), so 125 steps are
# 12 complete passes plus a partial 13th; checkpoints at 25, 50, 75, 100, 125.
STEPS, K, BATCH = 125, 5, 20


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    data = ef.write_toy_data(root / "data")
    model = ef.build_toy_model(root / "model")
    return {"root": root, "data": data, "model": model}


def _spec(toy, method="erm", ref="none", steps=STEPS, checkpoints=K, cfg_update=None, **training):
    training.setdefault("batch_size", BATCH)
    cfg = ef.toy_config(toy["model"], steps=steps, checkpoints=checkpoints, **training)
    if cfg_update:
        config.deep_update(cfg, cfg_update)
    return make_spec(cfg, ef.toy_run(method, "tiny" if method in grid.NEEDS_REF else ref))


def _outputs(out: Path) -> dict:
    with np.load(out / "dynamics.npz") as npz:
        dyn = {k: npz[k] for k in npz.files}
    return {
        "metrics": pd.read_csv(out / "metrics.csv"),
        "metrics_bytes": (out / "metrics.csv").read_bytes(),
        "predictions": pd.read_parquet(out / "predictions.parquet"),
        "dynamics": dyn,
        "record": json.loads((out / "run.json").read_text()),
    }


@pytest.fixture(scope="module")
def erm(toy):
    out, state = toy["root"] / "erm", toy["root"] / "state_erm"
    train(_spec(toy), toy["data"], out, state)
    return {"out": out, "state": state, **_outputs(out)}


# ------------------------------------------------------------------------------ a plain run


def test_erm_learns_beyond_majority_baseline(erm):
    rec = erm["record"]
    assert rec["status"] == "ok" and rec["failure_reason"] is None
    final = rec["final"]
    assert final["dataset"] == "toy_id" and final["step"] == STEPS
    assert final["score"] > final["majority_baseline"] + 0.2, final
    first = erm["metrics"].query("dataset == 'toy_id'")["accuracy"].iloc[0]
    assert final["score"] >= first


def test_metrics_rows_are_checkpoints_times_eval_sets(erm):
    m = erm["metrics"]
    assert list(m.columns) == ["step", "checkpoint", "fraction", "dataset", "role", "n", "accuracy", "macro_f1"]
    assert len(m) == K * len(ef.EVAL_SETS)
    assert sorted(set(m["step"])) == [25, 50, 75, 100, 125]
    assert list(m["checkpoint"].unique()) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(m["fraction"], m["step"] / STEPS)
    assert dict(zip(m["dataset"], m["role"], strict=True)) == dict(ef.EVAL_SETS)
    assert set(m.query("dataset == 'toy_id'")["n"]) == {ef.N_ID}
    assert m[["accuracy", "macro_f1"]].stack().between(0, 1).all()


def test_predictions_every_checkpoint_and_eval_set(erm):
    p = erm["predictions"]
    assert list(p.columns) == ["step", "dataset", "uid", "label", "prob_0", "prob_1", "prob_2"]
    assert len(p) == K * (ef.N_ID + ef.N_OOD)
    assert all(p[f"prob_{c}"].dtype == np.float32 for c in range(3))
    np.testing.assert_allclose(p[["prob_0", "prob_1", "prob_2"]].sum(axis=1), 1.0, atol=1e-5)
    # the metrics are the argmax accuracy of these probabilities
    last = p[(p["step"] == STEPS) & (p["dataset"] == "toy_id")]
    acc = (last[["prob_0", "prob_1", "prob_2"]].to_numpy().argmax(1) == last["label"]).mean()
    m = erm["metrics"]
    assert acc == pytest.approx(m[(m["step"] == STEPS) & (m["dataset"] == "toy_id")]["accuracy"].item())


def test_dynamics_shape_and_values(erm):
    d = erm["dynamics"]
    n = ef.N_TRAIN
    assert d["probs"].dtype == np.float16 and d["probs"].shape == (13, n, 3)
    assert d["seen"].shape == (13, n) and d["seen"].dtype == bool
    assert int(d["complete_epochs"]) == 12
    assert d["seen"][:12].all() and d["seen"][12].sum() == 5 * BATCH
    probs = d["probs"].astype(np.float32)
    assert (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_allclose(probs[d["seen"]].sum(-1), 1.0, atol=5e-3)
    assert (probs[12][~d["seen"][12]] == 0).all()
    train_df = pd.read_parquet(Path(erm["out"]).parent / "data" / "train.parquet")
    assert list(d["uids"]) == train_df["uid"].tolist()
    np.testing.assert_array_equal(d["labels"], train_df["label"])
    # the model learns its training set: p_true rises from the first to the last full pass
    p_true = probs[:, np.arange(n), d["labels"]]
    assert p_true[11].mean() > p_true[0].mean() + 0.2


def test_run_record(erm):
    rec = erm["record"]
    assert rec["run"] == {"task": "toy", "model": "tiny", "method": "erm", "ref": "none", "budget": "full", "seed": 0}
    assert rec["steps"] == STEPS and rec["checkpoints"] == K and rec["n_train"] == ef.N_TRAIN
    assert rec["epochs"] == pytest.approx(12 + 5 * BATCH / ef.N_TRAIN)  # examples seen / N
    tokens = rec["tokens"]
    assert 0 < tokens["train_tokens_per_epoch"] < ef.N_TRAIN * 24
    assert 12 * tokens["train_tokens_per_epoch"] < tokens["train_tokens_seen"] < 13 * tokens["train_tokens_per_epoch"]
    assert 0 < rec["model"]["non_embedding_params"] < rec["model"]["params"]
    flops = rec["flops"]
    assert flops["forward_total"] > 12 * flops["forward_per_epoch"]
    assert flops["train_total"] == pytest.approx(3 * flops["forward_total"])
    assert rec["wall_time_s"] > 0 and rec["peak_mem_mb"] > 0
    assert {"torch", "transformers", "accelerate", "ftft"} <= set(rec["versions"])
    assert rec["device"].startswith("cpu")
    assert rec["hparams"]["lr"] == 1e-3 and rec["hparams"]["optimizer"] == "adamw"
    assert not erm["state"].exists()  # state deleted after a successful finish


# ------------------------------------------------------------------------------ resumption


def test_killed_run_resumes_to_identical_outputs(toy, erm):
    out, state = toy["root"] / "resumed", toy["root"] / "state_resumed"
    spec = _spec(toy)
    with pytest.raises(SimulatedKill):
        train({**spec, "debug": {"kill_after_checkpoint": 3}}, toy["data"], out, state)
    assert (state / "state.pt").is_file()
    assert not (out / "run.json").exists()
    train(spec, toy["data"], out, state)
    got = _outputs(out)
    assert got["metrics_bytes"] == erm["metrics_bytes"]
    pd.testing.assert_frame_equal(got["predictions"], erm["predictions"], check_exact=True)
    for key, value in erm["dynamics"].items():
        np.testing.assert_array_equal(got["dynamics"][key], value, err_msg=key)
    volatile = {"wall_time_s", "peak_mem_mb"}
    assert {k: v for k, v in got["record"].items() if k not in volatile} == {
        k: v for k, v in erm["record"].items() if k not in volatile
    }
    assert not state.exists()


def test_state_of_another_spec_is_ignored(toy, erm):
    out, state = toy["root"] / "respec", toy["root"] / "state_respec"
    with pytest.raises(SimulatedKill):
        train({**_spec(toy, steps=50), "debug": {"kill_after_checkpoint": 1}}, toy["data"], out, state)
    train(_spec(toy), toy["data"], out, state)  # different steps: starts afresh
    assert _outputs(out)["metrics_bytes"] == erm["metrics_bytes"]


# ------------------------------------------------------------------------------ subsets, weights, PoE


def _write_subset(path: Path, uids, weight=None, bias_logp=None) -> Path:
    df = pd.DataFrame({"uid": list(uids)})
    df["weight"] = np.float32(1.0) if weight is None else np.asarray(weight, np.float32)
    if bias_logp is not None:
        for c in range(bias_logp.shape[1]):
            df[f"bias_logp_{c}"] = bias_logp[:, c].astype(np.float32)
    df.to_parquet(path, index=False)
    return path


def _train_frame(toy) -> pd.DataFrame:
    return pd.read_parquet(toy["data"] / "train.parquet")


def test_subset_trains_only_on_listed_uids(toy, erm, tmp_path):
    uids = _train_frame(toy)["uid"].tolist()[::4][::-1]  # 48 uids, in another order
    subset = _write_subset(tmp_path / "subset.parquet", uids)
    rec = train(_spec(toy, "dm", steps=10, checkpoints=2), toy["data"], tmp_path / "out", tmp_path / "st", subset)
    assert rec["n_train"] == len(uids)
    with np.load(tmp_path / "out" / "dynamics.npz") as d:
        assert d["probs"].shape[1] == len(uids)
        assert sorted(d["uids"]) == sorted(uids)
        assert list(d["uids"]) == [u for u in _train_frame(toy)["uid"] if u in set(uids)]  # training-file order
        assert d["seen"][:3].all()  # 10 steps of 20 over 48 instances: 3 passes + a partial one
    assert rec["tokens"]["train_tokens_per_epoch"] < 0.5 * erm_tokens_per_epoch(toy)


def erm_tokens_per_epoch(toy) -> int:
    rec = json.loads((toy["root"] / "erm" / "run.json").read_text())
    return rec["tokens"]["train_tokens_per_epoch"]


def test_subset_with_unknown_uid_names_file_and_uid(toy, tmp_path):
    subset = _write_subset(tmp_path / "bad.parquet", ["train-0", "not-a-uid"])
    with pytest.raises(DataError, match=r"bad\.parquet.*'not-a-uid'"):
        train(_spec(toy, "dm", steps=4, checkpoints=1), toy["data"], tmp_path / "o", tmp_path / "s", subset)


def test_missing_subset_file(toy, tmp_path):
    with pytest.raises(DataError, match="nope.parquet"):
        train(
            _spec(toy, "dm", steps=4, checkpoints=1),
            toy["data"],
            tmp_path / "o",
            tmp_path / "s",
            tmp_path / "nope.parquet",
        )


def _prob_change(out: Path) -> float:
    """Largest change of an eval probability between the first and the last checkpoint."""
    p = pd.read_parquet(out / "predictions.parquet")
    cols = ["prob_0", "prob_1", "prob_2"]
    first, last = p[p["step"] == p["step"].min()], p[p["step"] == p["step"].max()]
    return float(np.abs(first[cols].to_numpy() - last[cols].to_numpy()).max())


def test_zero_weights_leave_the_model_unchanged(toy, tmp_path):
    uids = _train_frame(toy)["uid"]
    subset = _write_subset(tmp_path / "w.parquet", uids, weight=np.zeros(len(uids)))
    train(_spec(toy, "jtt", steps=20, checkpoints=2), toy["data"], tmp_path / "out", tmp_path / "st", subset)
    assert _prob_change(tmp_path / "out") == 0.0
    assert _prob_change(toy["root"] / "erm") > 0.1  # while ERM moves them


def test_poe_with_certain_correct_bias_learns_nothing(toy, tmp_path):
    """A bias expert that is certain and right explains every example: PoE gradients vanish."""
    df = _train_frame(toy)
    certain = np.full((len(df), 3), np.log(1e-12), dtype=np.float32)
    certain[np.arange(len(df)), df["label"]] = 0.0
    subset = _write_subset(tmp_path / "poe.parquet", df["uid"], bias_logp=certain)
    spec = _spec(toy, "poe", steps=20, checkpoints=2, cfg_update={"methods": {"poe": {"ce_weight": 0.0}}})
    assert spec["poe"] == {"ce_weight": 0.0, "poe_weight": 1.0}
    train(spec, toy["data"], tmp_path / "out", tmp_path / "st", subset)
    assert _prob_change(tmp_path / "out") < 1e-3

    # the same through the per-step loss: near-zero gradient vs an uninformative bias
    from ftft.modeling import load_tokenizer_and_model

    torch.manual_seed(0)
    tok, model = load_tokenizer_and_model(str(toy["model"]), 3)
    model.eval()
    data = encode(df, tok, 24, {"bias_logp": certain})
    batch = collate(data, np.arange(16), torch.device("cpu"))

    def grad_norm(bias):
        model.zero_grad()
        batch.bias_logp = bias
        loss, _ = engine.compute_loss(model, batch, 0.0, 1.0)
        loss.backward()
        return torch.sqrt(sum((p.grad**2).sum() for p in model.parameters() if p.grad is not None)).item()

    assert grad_norm(batch.bias_logp) < 1e-6 * grad_norm(torch.full_like(batch.bias_logp, np.log(1 / 3)))


def test_poe_without_bias_columns_fails(toy, tmp_path):
    subset = _write_subset(tmp_path / "s.parquet", _train_frame(toy)["uid"][:10])
    with pytest.raises(DataError, match="bias_logp"):
        train(_spec(toy, "poe", steps=4, checkpoints=1), toy["data"], tmp_path / "o", tmp_path / "st", subset)


def test_jtt_uses_sgd_and_plateau(toy, tmp_path):
    spec = _spec(toy, "jtt", steps=20, checkpoints=2)
    assert (spec["optimizer"], spec["scheduler"], spec["warmup_ratio"]) == ("sgd", "plateau", 0.0)
    assert spec["momentum"] == 0.9
    subset = _write_subset(tmp_path / "s.parquet", _train_frame(toy)["uid"], weight=np.full(ef.N_TRAIN, 4.0))
    rec = train(spec, toy["data"], tmp_path / "out", tmp_path / "st", subset)
    assert rec["hparams"]["optimizer"] == "sgd" and rec["steps_done"] == 20
    assert _prob_change(tmp_path / "out") > 0


# ------------------------------------------------------------------------------ failures


def test_nonfinite_loss_marks_run_failed(toy, tmp_path):
    spec = {**_spec(toy, steps=20, checkpoints=4), "debug": {"nan_at_step": 7}}
    out, state = tmp_path / "out", tmp_path / "st"
    rec = train(spec, toy["data"], out, state)
    assert rec["status"] == "failed" and "non-finite" in rec["failure_reason"]
    assert rec["steps_done"] == 10  # stopped at the first checkpoint after the NaN
    got = _outputs(out)
    assert got["record"]["status"] == "failed"
    assert len(got["metrics"]) == 1 * len(ef.EVAL_SETS)  # only the checkpoint before the NaN
    assert got["dynamics"]["probs"].shape[0] == 1
    assert not state.exists()


def test_score_at_majority_baseline_marks_run_failed(toy, tmp_path):
    data = ef.write_toy_data(tmp_path / "data", id_labels=[1])  # ID set of one class: baseline 1.0
    rec = train(_spec(toy, steps=6, checkpoints=1), data, tmp_path / "out", tmp_path / "st")
    assert rec["status"] == "failed"
    assert "majority-class baseline 1.0000" in rec["failure_reason"]
    assert f"{rec['final']['score']:.4f}" in rec["failure_reason"]


def test_missing_eval_file_names_it(toy, tmp_path):
    data = ef.write_toy_data(tmp_path / "data")
    (data / "eval" / "toy_ood.parquet").unlink()
    with pytest.raises(DataError, match=r"eval/toy_ood\.parquet"):
        train(_spec(toy), data, tmp_path / "out", tmp_path / "st")


def test_missing_model_folder_names_it(toy, tmp_path):
    with pytest.raises(ModelError, match="no/such/model"):
        train(_spec(toy), toy["data"], tmp_path / "out", tmp_path / "st", model_path=tmp_path / "no/such/model")


# ------------------------------------------------------------------------------ the spec


def test_make_spec_fields(toy):
    spec = _spec(toy, budget="full")
    assert spec["steps"] == STEPS and spec["checkpoints"] == K
    assert spec["labels"] == ef.LABELS and spec["metric"] == "accuracy"
    assert spec["eval_sets"] == [["toy_id", "id"], ["toy_ood", "ood"]]
    assert spec["model_source"] == str(toy["model"]) and spec["lr"] == 1e-3
    assert (spec["optimizer"], spec["scheduler"], spec["poe"]) == ("adamw", "linear", None)
    assert json.loads(json.dumps(spec)) == spec
    cfg = ef.toy_config(toy["model"], steps=30, checkpoints=15)
    short = make_spec(cfg, ef.toy_run(budget="1-3"))
    # a limited run keeps the full run's checkpoint spacing: 15 * 1/3 = 5 checkpoints
    assert (short["steps"], short["checkpoints"]) == (10, 5)
    cfg = ef.toy_config(toy["model"], steps=12, checkpoints=15)
    assert make_spec(cfg, ef.toy_run(budget="1-3"))["checkpoints"] == 4  # K <= steps


@pytest.mark.parametrize("overlay", [[], ["config/demo.yaml"]])
def test_make_spec_for_every_run_of_the_grid(overlay):
    cfg = config.load(REPO / "workflow_config.yaml", *[REPO / o for o in overlay])
    for run in sorted(grid.all_runs(cfg)):
        spec = make_spec(cfg, run)
        assert spec["steps"] == run.steps(cfg) and spec["checkpoints"] <= spec["steps"]
        jtt_optimizer = cfg["methods"]["jtt"]["optimizer"]
        assert spec["optimizer"] == (jtt_optimizer if run.method == "jtt" else "adamw")
        assert (spec["poe"] is not None) == (run.method == "poe")
        assert spec["eval_sets"][0] == [cfg["tasks"][run.task]["id_test"]["name"], "id"]


def test_spec_errors_name_the_field(toy):
    cfg = ef.toy_config(toy["model"], lr=0.0)
    with pytest.raises(ConfigError, match="'lr'"):
        make_spec(cfg, ef.toy_run())
    spec = _spec(toy)
    with pytest.raises(ConfigError, match="'steps'.*checkpoints"):
        validate_spec({**spec, "steps": 3, "checkpoints": 5})
    with pytest.raises(ConfigError, match="'batch_size'"):
        validate_spec({**spec, "batch_size": 0})
    with pytest.raises(ConfigError, match="'eval_sets'"):
        validate_spec({**spec, "eval_sets": [["a", "ood"]]})
    missing = dict(spec)
    del missing["labels"]
    with pytest.raises(ConfigError, match="'labels'"):
        validate_spec(missing)


def test_checkpoint_steps():
    assert engine.checkpoint_steps(60000, 15) == [4000 * k for k in range(1, 16)]
    assert engine.checkpoint_steps(10, 3) == [3, 7, 10]
    assert engine.checkpoint_steps(5, 5) == [1, 2, 3, 4, 5]


# ------------------------------------------------------------------------------ metrics, model loading


def test_macro_f1_and_majority_baseline():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 0, 2])
    # F1: class 0: 2*1/(2+1+1)=0.5, class 1: 2*2/(4+1+0)=0.8, class 2: 2*1/(2+0+1)=2/3
    assert macro_f1(y, p, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert macro_f1(np.array([0, 0]), np.array([0, 0]), 2) == pytest.approx(0.5)  # absent class scores 0
    assert majority_baseline(np.array([1, 1, 1, 0]), 2, "accuracy") == 0.75
    assert majority_baseline(np.array([1, 1, 1, 0]), 2, "macro_f1") == pytest.approx((0 + 2 * 3 / 7) / 2)


def test_hub_id_without_network_says_how_to_use_a_local_copy(monkeypatch):
    import huggingface_hub.constants

    from ftft.modeling import load_tokenizer_and_model

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match=r"nobody-xyz/absent-model.*models\.<key>\.path.*HF_HUB_OFFLINE"):
        load_tokenizer_and_model("nobody-xyz/absent-model", 3)


def test_count_params_and_arch_dims(toy):
    from ftft.modeling import arch_dims, count_params, load_tokenizer_and_model

    _, model = load_tokenizer_and_model(str(toy["model"]), 3)
    total, non_emb = count_params(model)
    emb = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n and "LayerNorm" not in n)
    assert total == sum(p.numel() for p in model.parameters())
    assert non_emb == total - emb
    assert arch_dims(model.config) == (2, 32)


def test_apply_subset_aligns_weights_by_uid(tmp_path):
    train_df = pd.DataFrame({"uid": ["a", "b", "c"], "text_a": ["x"] * 3, "text_b": [None] * 3, "label": [0, 1, 0]})
    sub = _write_subset(tmp_path / "s.parquet", ["c", "a"], weight=[3.0, 1.0])
    df, extras = apply_subset(train_df, sub, 2)
    assert df["uid"].tolist() == ["a", "c"]
    np.testing.assert_array_equal(extras["weight"], [1.0, 3.0])


def test_encode_mixes_single_and_paired_texts(toy):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(toy["model"]))
    df = pd.DataFrame(
        {"uid": ["a", "b", "c"], "text_a": ["the cat", "a dog sat", "red box"], "text_b": [None, "yes no", None]}
    )
    df["label"] = 0
    enc = encode(df, tok, max_length=4)
    for i, (a, b) in enumerate(zip(df["text_a"], df["text_b"], strict=True)):
        expected = tok(a, b if isinstance(b, str) else None, truncation=True, max_length=4)
        assert enc.features["input_ids"][i] == expected["input_ids"]
        assert enc.features["token_type_ids"][i] == expected["token_type_ids"]
    assert enc.lengths.tolist() == [len(x) for x in enc.features["input_ids"]] and enc.lengths.max() <= 4
    batch = collate(enc, np.array([2, 1]), torch.device("cpu"))
    assert batch.inputs["input_ids"].shape == (2, int(enc.lengths[[2, 1]].max()))
    assert batch.inputs["attention_mask"].sum().item() == enc.lengths[[2, 1]].sum()
    assert batch.n_tokens == enc.lengths[[2, 1]].sum()
