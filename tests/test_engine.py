"""The one training engine on a tiny BERT and an easily learnable toy task (tests/engine_fixtures.py).

Real training runs of a few seconds each on the tokenize step's real output: learning beats the
majority baseline, the output files follow docs/ARCHITECTURE.md, a killed run resumes to
bitwise identical outputs, subsets / weights / PoE flow into the loss, no evaluation label
steers training, failures (also of a reference) are recorded, bad input fails clearly.
"""

from __future__ import annotations

import copy
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
from ftft.losses import example_losses
from ftft.train import engine, schedule
from ftft.train.data import apply_subset, batch_indices, collate, epoch_permutation, load_tokenized
from ftft.train.engine import SimulatedKill, train
from ftft.train.evaluate import macro_f1, majority_baseline
from ftft.train.spec import make_spec, validate_spec

pytestmark = pytest.mark.integration  # real training runs / subprocesses / servers: the integration tier

REPO = Path(__file__).resolve().parents[1]
# 192 training instances, batch 20: 10 batches per pass (the last one 12), so 125 steps are
# 12 complete passes plus a partial 13th; checkpoints at 25, 50, 75, 100, 125.
STEPS, K, BATCH = 125, 5, 20


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    raw = ef.write_toy_data(root / "raw")
    model = ef.build_toy_model(root / "model")
    data = ef.tokenize_toy(raw, model, root / "data")
    return {"root": root, "raw": raw, "data": data, "model": model}


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
    cols = ["step", "checkpoint", "fraction", "dataset", "role", "n", "accuracy", "macro_f1", "train_loss"]
    assert list(m.columns) == cols
    # the training loss since the previous checkpoint, one value per checkpoint, falling
    loss = m.drop_duplicates("checkpoint")["train_loss"].to_numpy()
    assert np.isfinite(loss).all() and loss[-1] < loss[0]
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
    train_df = pd.read_parquet(Path(erm["out"]).parent / "raw" / "train.parquet")
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
    # real tokens: every pass sees the same tokens; padded: every position of each padded batch
    assert 12 * flops["forward_per_epoch_real"] < flops["forward_total_real"] < 13 * flops["forward_per_epoch_real"]
    assert flops["forward_per_epoch"] > flops["forward_per_epoch_real"]
    assert flops["forward_total"] > flops["forward_total_real"]
    assert flops["train_total"] == pytest.approx(3 * flops["forward_total"])
    assert tokens["padded_tokens_seen"] > tokens["train_tokens_seen"]
    assert rec["wall_time_s"] > 0 and rec["peak_mem_mb"] > 0
    assert {"torch", "transformers", "accelerate", "ftft"} <= set(rec["versions"])
    assert rec["device"].startswith("cpu")
    assert rec["hparams"]["lr"] == 1e-3 and rec["hparams"]["optimizer"] == "adamw"
    assert rec["hparams"]["adam_eps"] == 1e-6
    assert not erm["state"].exists()  # state deleted after a successful finish


# ------------------------------------------------------------------------------ resumption


def test_killed_run_resumes_to_identical_outputs(toy, erm):
    out, state = toy["root"] / "resumed", toy["root"] / "state_resumed"
    spec = _spec(toy)
    with pytest.raises(SimulatedKill):
        train({**spec, "debug": {"kill_after_checkpoint": 3}}, toy["data"], out, state)
    assert (state / "resume.pt").is_file()
    assert not (out / "run.json").exists()
    train(spec, toy["data"], out, state)
    got = _outputs(out)
    assert got["metrics_bytes"] == erm["metrics_bytes"]
    pd.testing.assert_frame_equal(got["predictions"], erm["predictions"], check_exact=True)
    for key, value in erm["dynamics"].items():
        np.testing.assert_array_equal(got["dynamics"][key], value, err_msg=key)
    volatile = {"wall_time_s", "peak_mem_mb", "timing"}
    assert {k: v for k, v in got["record"].items() if k not in volatile} == {
        k: v for k, v in erm["record"].items() if k not in volatile
    }
    assert not state.exists()


def test_full_disk_at_the_end_keeps_the_finished_training(toy, erm, monkeypatch, caplog):
    """A real ENOSPC (/dev/full) while the outputs are written: an error naming the file and the cause; the state of
    the last checkpoint survives, and the rerun resumes there (no step trained again) to identical outputs."""
    from ftft.io import atomic_path

    def full(path, *args):
        with atomic_path(path), open("/dev/full", "wb") as fh:
            fh.write(b"x" * 100_000)

    out, state = toy["root"] / "full", toy["root"] / "state_full"
    monkeypatch.setattr(engine, "write_npz", full)
    with pytest.raises(DataError, match=r"dynamics\.npz: cannot write it: .*\(ENOSPC\)"):
        train(_spec(toy), toy["data"], out, state)
    monkeypatch.undo()
    assert (state / "resume.pt").is_file()
    with caplog.at_level("INFO"):
        train(_spec(toy), toy["data"], out, state)
    assert f"at step {STEPS}" in caplog.text
    assert _outputs(out)["metrics_bytes"] == erm["metrics_bytes"]


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
    return pd.read_parquet(toy["raw"] / "train.parquet")


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
    data, _ = load_tokenized(toy["data"], [], tok.pad_token_id)
    data = apply_subset(data, subset, 3)
    batch = collate(data, np.arange(16), torch.device("cpu"))

    def grad_norm(bias):
        model.zero_grad()
        batch.bias_logp = bias
        logits = model(**batch.inputs).logits
        example_losses(logits, batch.labels, None, batch.bias_logp, 0.0, 1.0).mean().backward()
        return torch.sqrt(sum((p.grad**2).sum() for p in model.parameters() if p.grad is not None)).item()

    assert grad_norm(batch.bias_logp) < 1e-6 * grad_norm(torch.full_like(batch.bias_logp, np.log(1 / 3)))


def test_poe_without_bias_columns_fails(toy, tmp_path):
    subset = _write_subset(tmp_path / "s.parquet", _train_frame(toy)["uid"][:10])
    with pytest.raises(DataError, match="bias_logp"):
        train(_spec(toy, "poe", steps=4, checkpoints=1), toy["data"], tmp_path / "o", tmp_path / "st", subset)


def test_jtt_uses_sgd_and_plateau_on_the_training_loss(toy, tmp_path):
    spec = _spec(toy, "jtt", steps=20, checkpoints=2)
    assert (spec["optimizer"], spec["scheduler"], spec["warmup_ratio"]) == ("sgd", "plateau", 0.0)
    assert spec["momentum"] == 0.9 and spec["plateau"] == {"factor": 0.1, "patience": 10}
    copies = np.where(np.arange(ef.N_TRAIN) % 3, 1, 5)  # JTT's upsampled error set (subsets.jtt_subset)
    subset = _write_subset(tmp_path / "s.parquet", _train_frame(toy)["uid"])
    pd.read_parquet(subset).assign(copies=copies).to_parquet(subset)
    data = apply_subset(load_tokenized(toy["data"], [], 0)[0], subset, 3)
    assert len(data) == copies.sum() and sorted(pd.Series(data.uids).value_counts().unique()) == [1, 5]
    rec = train(spec, toy["data"], tmp_path / "out", tmp_path / "st", subset)
    assert rec["hparams"]["optimizer"] == "sgd" and rec["steps_done"] == 20
    assert _prob_change(tmp_path / "out") > 0
    # patience 0: the LR drops at every checkpoint whose running training loss does not improve
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = schedule.make_scheduler(opt, {**spec, "plateau": {"factor": 0.1, "patience": 0}})
    for loss in (1.0, 0.9, 0.95, 0.95):
        sched.step(loss)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)  # min mode: two non-improvements


def _eval_labels_shuffled(toy, tmp_path) -> Path:
    """The toy data with every evaluation label replaced (a permutation of the classes)."""
    raw = tmp_path / "raw"
    ef.write_toy_data(raw)
    for name, _ in ef.EVAL_SETS:
        path = raw / "eval" / f"{name}.parquet"
        df = pd.read_parquet(path)
        df["label"] = (df["label"] + 1) % 3
        from ftft.data import schema

        schema.write(df, path, ef.LABELS, "toy")
    return ef.tokenize_toy(raw, toy["model"], tmp_path / "data")


@pytest.mark.parametrize("method", ["erm", "dm", "jtt", "poe"])
def test_no_evaluation_label_steers_training(toy, tmp_path, method):
    """Replacing every evaluation label leaves the weights, the dynamics and the loss trace bitwise equal."""
    df = _train_frame(toy)
    subset = None
    if method == "dm":
        subset = _write_subset(tmp_path / "s.parquet", df["uid"][::2])
    if method == "jtt":
        subset = _write_subset(tmp_path / "s.parquet", df["uid"], weight=np.where(np.arange(len(df)) % 3, 1.0, 4.0))
    if method == "poe":
        subset = _write_subset(tmp_path / "s.parquet", df["uid"], bias_logp=np.full((len(df), 3), np.log(1 / 3)))
    spec = {**_spec(toy, method, steps=30, checkpoints=3), "debug": {"save_weights": True}}
    outs = {}
    for name, data in (("orig", toy["data"]), ("relabelled", _eval_labels_shuffled(toy, tmp_path / "x"))):
        train(spec, data, tmp_path / name, tmp_path / f"st-{name}", subset)
        outs[name] = _outputs(tmp_path / name)
    from safetensors.torch import load_file

    w = [load_file(str(tmp_path / n / "debug_weights.safetensors")) for n in outs]
    assert w[0].keys() == w[1].keys() and all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    for key, value in outs["orig"]["dynamics"].items():
        np.testing.assert_array_equal(outs["relabelled"]["dynamics"][key], value, err_msg=key)
    a, b = (outs[n]["metrics"] for n in outs)
    np.testing.assert_array_equal(a["train_loss"].to_numpy(), b["train_loss"].to_numpy())
    assert not np.array_equal(a["accuracy"].to_numpy(), b["accuracy"].to_numpy())  # the scores did change


def test_bias_model_writes_eval_mode_log_probs_of_its_final_weights(toy, tmp_path):
    from ftft.modeling import load_tokenizer_and_model
    from ftft.train.evaluate import predict_probs

    out, bias = tmp_path / "out", tmp_path / "out" / "bias_logp.parquet"
    spec = {**_spec(toy, steps=STEPS, checkpoints=2), "debug": {"save_weights": True}}
    assert train(spec, toy["data"], out, tmp_path / "st", bias_out=bias)["status"] == "ok"
    got = pd.read_parquet(bias)
    assert list(got.columns) == ["uid", "bias_logp_0", "bias_logp_1", "bias_logp_2"]
    assert got["uid"].tolist() == _train_frame(toy)["uid"].tolist()
    # the same numbers from the saved final weights, in eval mode (no dropout)
    from safetensors.torch import load_file

    tok, model = load_tokenizer_and_model(str(toy["model"]), 3)
    model.load_state_dict(load_file(str(out / "debug_weights.safetensors")))
    data, _ = load_tokenized(toy["data"], [], tok.pad_token_id)
    probs = predict_probs(model, data, 64, torch.device("cpu"))
    np.testing.assert_allclose(got.iloc[:, 1:].to_numpy(), engine.bias_log_probs(probs), rtol=1e-5, atol=1e-6)


def test_run_whose_reference_failed_is_recorded_failed_without_training(toy, tmp_path):
    from ftft.io import write_parquet

    subset = tmp_path / "failed.parquet"
    write_parquet(pd.DataFrame({"uid": [], "weight": []}), subset, {"failed": "runs/toy/ref: non-finite loss"})
    rec = train(_spec(toy, "dm", steps=20, checkpoints=2), toy["data"], tmp_path / "out", tmp_path / "st", subset)
    assert rec["status"] == "failed" and rec["failure_reason"] == "reference failed: runs/toy/ref: non-finite loss"
    got = _outputs(tmp_path / "out")
    assert got["record"]["steps_done"] == 0 and len(got["metrics"]) == 0 and len(got["predictions"]) == 0


def test_batches_equal_the_tokenizer_called_per_instance(toy):
    """Every batch of a pass is what tokenising each pair directly and padding gives (the old path)."""
    from ftft.modeling import load_tokenizer_and_model

    tok, _ = load_tokenizer_and_model(str(toy["model"]), 3)
    data, _ = load_tokenized(toy["data"], [], tok.pad_token_id)
    df = _train_frame(toy)
    perm = epoch_permutation(0, 0, len(df))
    for b in range(-(-len(df) // BATCH)):
        idx = batch_indices(perm, b, BATCH)
        enc = [tok(df["text_a"][i], df["text_b"][i], truncation=True, max_length=ef.MAX_LENGTH) for i in idx]
        width = max(len(e["input_ids"]) for e in enc)
        ids = np.full((len(idx), width), tok.pad_token_id, np.int64)
        types = np.zeros((len(idx), width), np.int64)
        for r, e in enumerate(enc):
            ids[r, : len(e["input_ids"])] = e["input_ids"]
            types[r, : len(e["input_ids"])] = e["token_type_ids"]
        batch = collate(data, idx, torch.device("cpu"))
        assert torch.equal(batch.inputs["input_ids"], torch.from_numpy(ids))
        assert torch.equal(batch.inputs["token_type_ids"], torch.from_numpy(types))
        assert torch.equal(batch.inputs["attention_mask"], torch.from_numpy((ids != tok.pad_token_id).astype(np.int64)))
        assert torch.equal(batch.labels, torch.from_numpy(df["label"].to_numpy()[idx]))


def test_micro_batches_give_the_batch_loss_gradient_and_dynamics(toy):
    """One (weighted) batch as length-bucketed micro-batches: the same loss, gradient (SGD lr=1 step) and dynamics."""
    from ftft.modeling import load_tokenizer_and_model
    from ftft.train.data import micro_batches
    from ftft.train.dynamics import DynamicsRecorder

    tok, model = load_tokenizer_and_model(str(toy["model"]), 3)
    model.eval()  # no dropout: the two paths see the same network
    data, _ = load_tokenized(toy["data"], [], tok.pad_token_id)
    data.weight = np.random.default_rng(0).uniform(0, 2, len(data)).astype(np.float32)
    idx = batch_indices(epoch_permutation(0, 0, len(data)), 0, BATCH)
    groups = micro_batches(data.lengths, idx, 3)
    assert len(groups) > 1 and sorted(np.concatenate(groups)) == sorted(idx)
    widths = [data.lengths[g].max() * len(g) for g in groups]
    assert sum(widths) < data.lengths[idx].max() * len(idx)  # less padding
    accelerator = engine.make_accelerator({"mixed_precision": "no"})
    results = []
    for parts in ([idx], groups):
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=1.0)
        dyn, stats = DynamicsRecorder(len(data), 3, torch.device("cpu")), engine.LossStats(torch.device("cpu"))
        before = [p.detach().clone() for p in m.parameters()]
        engine.train_step(m, [collate(data, g, torch.device("cpu")) for g in parts], opt, accelerator, dyn, stats)
        grads = [b - p.detach() for b, p in zip(before, m.parameters(), strict=True)]
        results.append((stats.pop_mean(), grads, dyn.epoch_probs.clone()))
    (loss_a, grads_a, dyn_a), (loss_b, grads_b, dyn_b) = results
    assert loss_b == pytest.approx(loss_a, rel=1e-6)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)
    assert torch.count_nonzero(dyn_a.sum(1)) == BATCH
    torch.testing.assert_close(dyn_b, dyn_a, rtol=1e-5, atol=1e-6)


def test_length_buckets_keep_the_data_map_categories(toy, tmp_path):
    """Whole padded batches (length_buckets 1) vs micro-batches, without dropout (its draws depend on the
    shapes): the same data-map categories, up to ties (here: at most 2 of 192 instances change)."""
    import shutil

    from ftft import datamap

    model = shutil.copytree(toy["model"], tmp_path / "model")
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(cfg))
    maps = []
    for buckets in (1, 3):
        out = tmp_path / f"b{buckets}"
        train(_spec(toy, length_buckets=buckets), toy["data"], out, tmp_path / "st", model_path=model)
        maps.append(datamap.categorize(datamap.compute(datamap.load_dynamics(out / "dynamics.npz")), 0.25))
    for col in ("ambiguous", "hard_to_learn", "easy"):
        assert (maps[0][col] != maps[1][col]).sum() <= 2, col


def test_evaluation_in_length_order_writes_back_in_data_order(toy):
    """Length-sorted evaluation batches give the predictions of one instance at a time (no padding), in order."""
    from ftft.modeling import load_tokenizer_and_model
    from ftft.train.evaluate import predict_probs

    tok, model = load_tokenizer_and_model(str(toy["model"]), 3)
    data, evals = load_tokenized(toy["data"], ["toy_ood"], tok.pad_token_id)
    one = predict_probs(model, evals[0][1], 1, torch.device("cpu"))
    sorted_batches = predict_probs(model, evals[0][1], 16, torch.device("cpu"))
    np.testing.assert_allclose(sorted_batches, one, rtol=1e-5, atol=1e-6)
    in_length_order = one[np.argsort(evals[0][1].lengths, kind="stable")]
    assert not np.allclose(in_length_order, one, rtol=1e-5, atol=1e-6)  # the order is restored, not a no-op


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
    raw = ef.write_toy_data(tmp_path / "raw", id_labels=[1])  # ID set of one class: baseline 1.0
    data = ef.tokenize_toy(raw, toy["model"], tmp_path / "data")
    rec = train(_spec(toy, steps=6, checkpoints=1), data, tmp_path / "out", tmp_path / "st")
    assert rec["status"] == "failed"
    assert "majority-class baseline 1.0000" in rec["failure_reason"]
    assert f"{rec['final']['score']:.4f}" in rec["failure_reason"]


def test_missing_tokenised_split_names_it(toy, tmp_path):
    spec = _spec(toy)
    spec["eval_sets"] = [*spec["eval_sets"], ["toy_extra", "ood"]]
    with pytest.raises(DataError, match=r"toy_extra"):
        train(spec, toy["data"], tmp_path / "out", tmp_path / "st")
    with pytest.raises(DataError, match=r"nowhere.*tokenize"):
        train(_spec(toy), tmp_path / "nowhere", tmp_path / "out", tmp_path / "st")


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
        jtt = cfg["methods"]["jtt"] if run.method == "jtt" else {"optimizer": "adamw", "lr": None} | cfg["training"]
        assert spec["optimizer"] == jtt["optimizer"] and spec["lr"] == (jtt["lr"] or cfg["models"][run.model]["lr"])
        assert (spec["weight_decay"], spec["max_grad_norm"]) == (jtt["weight_decay"], jtt["max_grad_norm"])
        if run.method == "jtt" and not overlay:  # Liu et al.'s MultiNLI JTT stage (docs/FIDELITY.md)
            assert (spec["optimizer"], spec["lr"], spec["weight_decay"], spec["max_grad_norm"]) == (
                "sgd",
                1e-5,
                0.1,
                None,
            )
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


def test_checkpoint_steps_and_warmup():
    assert schedule.checkpoint_steps(60000, 15) == [4000 * k for k in range(1, 16)]
    assert schedule.checkpoint_steps(10, 3) == [3, 7, 10]
    assert schedule.checkpoint_steps(5, 5) == [1, 2, 3, 4, 5]
    # int(ratio * steps) as the official code; the LR peaks after the warm-up
    assert schedule.warmup_steps(60000, 0.1) == 6000 and schedule.warmup_steps(125, 0.1) == 12
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = schedule.make_scheduler(opt, {"scheduler": "linear", "steps": 125, "warmup_ratio": 0.1})
    lrs = []
    for _ in range(125):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert int(np.argmax(lrs)) == 12 and lrs[0] == 0.0


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
    with pytest.raises(ModelError, match=r"nobody-xyz/absent-model.*HF_HUB_OFFLINE.*fetch-models.*models\.<key>\.path"):
        load_tokenizer_and_model("nobody-xyz/absent-model", 3)


def test_count_params_and_arch_dims(toy):
    from ftft.modeling import arch_dims, count_params, load_tokenizer_and_model

    _, model = load_tokenizer_and_model(str(toy["model"]), 3)
    total, non_emb = count_params(model)
    emb = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n and "LayerNorm" not in n)
    assert total == sum(p.numel() for p in model.parameters())
    assert non_emb == total - emb
    assert arch_dims(model.config) == (2, 32)


def test_apply_subset_aligns_weights_by_uid(toy, tmp_path):
    data, _ = load_tokenized(toy["data"], [], 0)
    uids = data.uids
    sub = _write_subset(tmp_path / "s.parquet", [uids[5], uids[2]], weight=[3.0, 1.0])
    got = apply_subset(data, sub, 3)
    assert got.uids.tolist() == [uids[2], uids[5]]  # training-set order
    np.testing.assert_array_equal(got.weight, [1.0, 3.0])
    assert got.lengths.tolist() == data.lengths[[2, 5]].tolist()
    start = data.offsets[5]
    np.testing.assert_array_equal(got.ids[got.offsets[1] :], data.ids[start : start + data.lengths[5]])
