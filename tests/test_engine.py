"""The training engine: real runs of seconds on a tiny BERT and a learnable toy task (tests/engine_fixtures.py)."""

import copy
import json
from pathlib import Path

import engine_fixtures as ef
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from ftft import config, grid, methods
from ftft.config import ConfigError
from ftft.data import schema
from ftft.errors import DataError, ModelError
from ftft.io import atomic_path, write_parquet
from ftft.modeling import load_tokenizer_and_model
from ftft.train import engine
from ftft.train.data import apply_subset, collate, epoch_permutation, load_tokenized, micro_batches, train_loader
from ftft.train.engine import DynamicsRecorder, SimulatedKill, macro_f1, majority_baseline, predict_probs, train
from ftft.train.spec import make_spec, validate_spec

pytestmark = pytest.mark.integration  # real training runs / subprocesses / servers: the integration tier

REPO = Path(__file__).resolve().parents[1]
# 192 training instances, batch 20: 10 batches per pass (the last one 12), so 125 steps are
# 12 complete passes plus a partial 13th; checkpoints at 25, 50, 75, 100, 125.
STEPS, K, BATCH = 125, 5, 20
PROBS = ["prob_0", "prob_1", "prob_2"]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    toy = ef.toy_setup(tmp_path_factory.mktemp("toy"))
    return toy | {"train": pd.read_parquet(toy["raw"] / "train.parquet")}


def _spec(toy, method="erm", ref="none", steps=STEPS, checkpoints=K, cfg_update=None, **training):
    training.setdefault("batch_size", BATCH)
    cfg = ef.toy_config(toy["model"], steps=steps, checkpoints=checkpoints, **training)
    if cfg_update:
        config.deep_update(cfg, cfg_update)
    return make_spec(cfg, ef.toy_run(method, "tiny" if methods.get(method).needs_ref else ref))


def _outputs(out: Path) -> dict:
    with np.load(out / "dynamics.npz") as npz:
        got = {"dynamics": {k: npz[k] for k in npz.files}, "record": json.loads((out / "run.json").read_text())}
    metrics, predictions = pd.read_csv(out / "metrics.csv"), pd.read_parquet(out / "predictions.parquet")
    return got | {"metrics": metrics, "metrics_bytes": (out / "metrics.csv").read_bytes(), "predictions": predictions}


def _assert_same_outputs(got: dict, want: dict) -> None:
    assert got["metrics_bytes"] == want["metrics_bytes"]
    pd.testing.assert_frame_equal(got["predictions"], want["predictions"], check_exact=True)
    for key, value in want["dynamics"].items():
        np.testing.assert_array_equal(got["dynamics"][key], value, err_msg=key)
    volatile = {"wall_time_s", "peak_mem_mb", "timing"}
    stable = [{k: v for k, v in r["record"].items() if k not in volatile} for r in (got, want)]
    assert stable[0] == stable[1]


@pytest.fixture(scope="module")
def erm(toy):
    out, state = toy["root"] / "erm", toy["root"] / "state_erm"
    train(_spec(toy), toy["data"], out, state)
    return {"out": out, "state": state, **_outputs(out)}


def _tiny_model(toy):
    tok, model = load_tokenizer_and_model(str(toy["model"]), 3)
    return model, load_tokenized(toy["data"], [], tok.pad_token_id)[0], tok


def test_metrics_and_predictions_every_checkpoint_and_eval_set(erm):
    m, p = erm["metrics"], erm["predictions"]
    assert list(m.columns) == engine.METRIC_COLUMNS and len(m) == K * len(ef.EVAL_SETS)
    loss = m.drop_duplicates("checkpoint")["train_loss"].to_numpy()  # since the previous checkpoint, falling
    assert np.isfinite(loss).all() and loss[-1] < loss[0]
    assert sorted(set(m["step"])) == [25, 50, 75, 100, 125] and list(m["checkpoint"].unique()) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(m["fraction"], m["step"] / STEPS)
    assert dict(zip(m["dataset"], m["role"], strict=True)) == dict(ef.EVAL_SETS)
    assert set(m.query("dataset == 'toy_id'")["n"]) == {ef.N_ID}
    assert m[["accuracy", "macro_f1"]].stack().between(0, 1).all()
    assert list(p.columns) == ["step", "dataset", "uid", "label", *PROBS] and len(p) == K * (ef.N_ID + ef.N_OOD)
    assert all(p[c].dtype == np.float32 for c in PROBS)
    np.testing.assert_allclose(p[PROBS].sum(axis=1), 1.0, atol=1e-5)
    last = p[(p["step"] == STEPS) & (p["dataset"] == "toy_id")]  # the metrics are the argmax accuracy of these
    acc = (last[PROBS].to_numpy().argmax(1) == last["label"]).mean()
    assert acc == pytest.approx(m[(m["step"] == STEPS) & (m["dataset"] == "toy_id")]["accuracy"].item())


def test_dynamics_shape_and_values(erm, toy):
    d, n = erm["dynamics"], ef.N_TRAIN
    assert d["probs"].dtype == np.float16 and d["probs"].shape == (13, n, 3)
    assert d["seen"].shape == (13, n) and d["seen"].dtype == bool and int(d["complete_epochs"]) == 12
    assert d["seen"][:12].all() and d["seen"][12].sum() == 5 * BATCH
    probs = d["probs"].astype(np.float32)
    assert (probs >= 0).all() and (probs <= 1).all() and (probs[12][~d["seen"][12]] == 0).all()
    np.testing.assert_allclose(probs[d["seen"]].sum(-1), 1.0, atol=5e-3)
    assert list(d["uids"]) == toy["train"]["uid"].tolist()
    np.testing.assert_array_equal(d["labels"], toy["train"]["label"])
    p_true = probs[:, np.arange(n), d["labels"]]  # the model learns its training set
    assert p_true[11].mean() > p_true[0].mean() + 0.2


def test_erm_learns_beyond_majority_baseline_and_its_run_record(erm):
    rec = erm["record"]
    assert rec["status"] == "ok" and rec["failure_reason"] is None
    final = rec["final"]
    assert final["dataset"] == "toy_id" and final["step"] == STEPS
    assert final["score"] > final["majority_baseline"] + 0.2, final
    assert final["score"] >= erm["metrics"].query("dataset == 'toy_id'")["accuracy"].iloc[0]
    assert rec["run"] == {"task": "toy", "model": "tiny", "method": "erm", "ref": "none", "budget": "full", "seed": 0}
    assert rec["steps"] == STEPS and rec["checkpoints"] == K and rec["n_train"] == ef.N_TRAIN
    assert rec["epochs"] == pytest.approx(12 + 5 * BATCH / ef.N_TRAIN)  # examples seen / N
    tokens, flops = rec["tokens"], rec["flops"]
    assert 0 < tokens["train_tokens_per_epoch"] < ef.N_TRAIN * 24
    assert 12 * tokens["train_tokens_per_epoch"] < tokens["train_tokens_seen"] < 13 * tokens["train_tokens_per_epoch"]
    assert tokens["padded_tokens_seen"] > tokens["train_tokens_seen"]
    assert 0 < rec["model"]["non_embedding_params"] < rec["model"]["params"]
    # real tokens: every pass sees the same tokens; padded: every position of each padded batch
    assert 12 * flops["forward_per_epoch_real"] < flops["forward_total_real"] < 13 * flops["forward_per_epoch_real"]
    assert flops["forward_per_epoch"] > flops["forward_per_epoch_real"]
    assert flops["forward_total"] > flops["forward_total_real"]
    assert flops["train_total"] == pytest.approx(3 * flops["forward_total"])
    assert rec["wall_time_s"] > 0 and rec["peak_mem_mb"] > 0 and rec["device"].startswith("cpu")
    assert {"torch", "transformers", "accelerate", "ftft"} <= set(rec["versions"])
    hp = rec["hparams"]
    assert (hp["lr"], hp["optimizer"], hp["adam_eps"], hp["scheduler"]) == (1e-3, "adamw", 1e-6, "linear")
    assert hp["poe"] is None
    assert not erm["state"].exists()  # state deleted after a successful finish


@pytest.mark.parametrize(("steps", "kill"), [(STEPS, 3), (50, 1)], ids=["resumes", "state-of-another-spec"])
def test_killed_run_reruns_to_identical_outputs(toy, erm, steps, kill):
    """Killed after a checkpoint, run again: the uninterrupted run's outputs, resumed (same spec) or afresh."""
    out, state = toy["root"] / f"killed-{steps}", toy["root"] / f"state_killed-{steps}"
    with pytest.raises(SimulatedKill):
        train({**_spec(toy, steps=steps), "debug": {"kill_after_checkpoint": kill}}, toy["data"], out, state)
    assert (state / "resume.pt").is_file() and not (out / "run.json").exists()
    train(_spec(toy), toy["data"], out, state)
    _assert_same_outputs(_outputs(out), erm)
    assert not state.exists()


def test_full_disk_at_the_end_keeps_the_finished_training(toy, erm, monkeypatch, caplog):
    """A real ENOSPC (/dev/full) while the outputs are written: an error naming the file and the cause; the state of
    the last checkpoint survives, and the rerun resumes there (no step trained again) to identical outputs."""

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
    _assert_same_outputs(_outputs(out), erm)


def _write_subset(path: Path, uids, weight=None, bias_logp=None, **columns) -> Path:
    df = pd.DataFrame({"uid": list(uids), **columns})
    df["weight"] = np.float32(1.0) if weight is None else np.asarray(weight, np.float32)
    for c in range(0 if bias_logp is None else bias_logp.shape[1]):
        df[f"bias_logp_{c}"] = bias_logp[:, c].astype(np.float32)
    df.to_parquet(path, index=False)
    return path


def test_subset_trains_only_on_listed_uids(toy, erm, tmp_path):
    uids = toy["train"]["uid"].tolist()[::4][::-1]  # 48 uids, in another order
    subset = _write_subset(tmp_path / "subset.parquet", uids)
    rec = train(_spec(toy, "dm", steps=10, checkpoints=2), toy["data"], tmp_path / "out", tmp_path / "st", subset)
    assert rec["n_train"] == len(uids)
    with np.load(tmp_path / "out" / "dynamics.npz") as d:
        assert d["probs"].shape[1] == len(uids)
        assert list(d["uids"]) == [u for u in toy["train"]["uid"] if u in set(uids)]  # training-file order
        assert d["seen"][:3].all()  # 10 steps of 20 over 48 instances: 3 passes + a partial one
    assert rec["tokens"]["train_tokens_per_epoch"] < 0.5 * erm["record"]["tokens"]["train_tokens_per_epoch"]
    data = load_tokenized(toy["data"], [], 0)[0]  # weights align by uid, the instances repacked
    got = apply_subset(data, _write_subset(tmp_path / "s.parquet", data.uids[[5, 2]], weight=[3.0, 1.0]), 3)
    assert got.uids.tolist() == data.uids[[2, 5]].tolist()  # training-set order
    np.testing.assert_array_equal(got.weight, [1.0, 3.0])
    assert got.lengths.tolist() == data.lengths[[2, 5]].tolist()
    start = data.offsets[5]
    np.testing.assert_array_equal(got.ids[got.offsets[1] :], data.ids[start : start + data.lengths[5]])


BAD_INPUT = {  # name: (method, change of the spec or the train() arguments, error, message)
    "unknown-uid": ("dm", {"subset": ["train-0", "not-a-uid"]}, DataError, r"bad\.parquet.*'not-a-uid'"),
    "missing-subset": ("dm", {"subset": "nope.parquet"}, DataError, "nope.parquet"),
    "poe-without-bias": ("poe", {"subset": ["train-0", "train-1"]}, DataError, "bias_logp"),
    "missing-split": ("erm", {"eval_sets": [["toy_extra", "ood"]]}, DataError, "toy_extra"),
    "missing-data": ("erm", {"data": "nowhere"}, DataError, "nowhere.*tokenize"),
    "missing-model": ("erm", {"model_path": "no/such/model"}, ModelError, "no/such/model"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_fails_naming_it(toy, tmp_path, case):
    method, change, error, message = BAD_INPUT[case]
    spec, subset, kwargs = _spec(toy, method, steps=4, checkpoints=1), None, {}
    spec["eval_sets"] += change.get("eval_sets", [])
    if isinstance(change.get("subset"), list):
        subset = _write_subset(tmp_path / "bad.parquet", change["subset"])
    elif "subset" in change:
        subset = tmp_path / change["subset"]
    if "model_path" in change:
        kwargs["model_path"] = tmp_path / change["model_path"]
    data = tmp_path / change["data"] if "data" in change else toy["data"]
    with pytest.raises(error, match=message):
        train(spec, data, tmp_path / "out", tmp_path / "st", subset, **kwargs)


def _prob_change(out: Path) -> float:
    """Largest change of an eval probability between the first and the last checkpoint."""
    p = pd.read_parquet(out / "predictions.parquet")
    first, last = p[p["step"] == p["step"].min()], p[p["step"] == p["step"].max()]
    return float(np.abs(first[PROBS].to_numpy() - last[PROBS].to_numpy()).max())


@pytest.mark.parametrize("method", ["jtt", "poe"])
def test_subset_that_leaves_nothing_to_learn_leaves_the_model_unchanged(toy, erm, tmp_path, method):
    """Zero weights; or a PoE bias expert that is certain and right on every example (PoE gradients vanish)."""
    certain = np.full((ef.N_TRAIN, 3), np.log(1e-12), dtype=np.float32)
    certain[np.arange(ef.N_TRAIN), toy["train"]["label"]] = 0.0
    column = {"jtt": {"weight": np.zeros(ef.N_TRAIN)}, "poe": {"bias_logp": certain}}[method]
    subset = _write_subset(tmp_path / "s.parquet", toy["train"]["uid"], **column)
    spec = _spec(toy, method, steps=20, checkpoints=2, cfg_update={"methods": {"poe": {"ce_weight": 0.0}}})
    assert spec["poe"] == (None if method == "jtt" else {"ce_weight": 0.0, "poe_weight": 1.0})
    train(spec, toy["data"], tmp_path / "out", tmp_path / "st", subset)
    assert _prob_change(tmp_path / "out") <= {"jtt": 0.0, "poe": 1e-3}[method]
    assert _prob_change(erm["out"]) > 0.1  # while ERM moves them


def test_jtt_uses_sgd_and_plateau_on_the_training_loss(toy, tmp_path):
    spec = _spec(toy, "jtt", steps=20, checkpoints=2)
    assert (spec["optimizer"], spec["scheduler"], spec["warmup_ratio"]) == ("sgd", "plateau", 0.0)
    assert spec["momentum"] == 0.9 and spec["plateau"] == {"factor": 0.1, "patience": 10}
    copies = np.where(np.arange(ef.N_TRAIN) % 3, 1, 5)  # JTT's upsampled error set (subsets.jtt_subset)
    subset = _write_subset(tmp_path / "s.parquet", toy["train"]["uid"], copies=copies)
    data = apply_subset(load_tokenized(toy["data"], [], 0)[0], subset, 3)
    assert len(data) == copies.sum() and sorted(pd.Series(data.uids).value_counts().unique()) == [1, 5]
    rec = train(spec, toy["data"], tmp_path / "out", tmp_path / "st", subset)
    assert rec["hparams"]["optimizer"] == "sgd" and rec["steps_done"] == 20
    assert _prob_change(tmp_path / "out") > 0


@pytest.mark.parametrize("method", ["erm", "dm", "jtt", "poe"])
def test_no_evaluation_label_steers_training(toy, tmp_path, method):
    """Replacing every evaluation label leaves the weights, the dynamics and the loss trace bitwise equal."""
    raw = ef.write_toy_data(tmp_path / "raw")
    for name, _ in ef.EVAL_SETS:
        df = pd.read_parquet(raw / "eval" / f"{name}.parquet")
        schema.write(df.assign(label=(df["label"] + 1) % 3), raw / "eval" / f"{name}.parquet", ef.LABELS, "toy")
    relabelled = ef.tokenize_toy(raw, toy["model"], tmp_path / "data")
    uids, subset = toy["train"]["uid"], tmp_path / "s.parquet"
    columns = {"erm": None, "dm": {"uids": uids[::2]}, "jtt": {"weight": np.where(np.arange(ef.N_TRAIN) % 3, 1.0, 4.0)},
               "poe": {"bias_logp": np.full((ef.N_TRAIN, 3), np.log(1 / 3))}}[method]  # fmt: skip
    if columns is not None:
        _write_subset(subset, **{"uids": uids, **columns})
    spec = {**_spec(toy, method, steps=30, checkpoints=3), "debug": {"save_weights": True}}
    outs = {}
    for name, data in (("orig", toy["data"]), ("relabelled", relabelled)):
        train(spec, data, tmp_path / name, tmp_path / f"st-{name}", subset if columns else None)
        outs[name] = _outputs(tmp_path / name)
    w = [load_file(str(tmp_path / n / "debug_weights.safetensors")) for n in outs]
    assert w[0].keys() == w[1].keys() and all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    for key, value in outs["orig"]["dynamics"].items():
        np.testing.assert_array_equal(outs["relabelled"]["dynamics"][key], value, err_msg=key)
    a, b = (outs[n]["metrics"] for n in outs)
    np.testing.assert_array_equal(a["train_loss"].to_numpy(), b["train_loss"].to_numpy())
    assert not np.array_equal(a["accuracy"].to_numpy(), b["accuracy"].to_numpy())  # the scores did change


def test_bias_model_writes_eval_mode_log_probs_and_evaluation_restores_the_data_order(toy, tmp_path):
    out, bias = tmp_path / "out", tmp_path / "out" / "bias_logp.parquet"
    spec = {**_spec(toy, steps=STEPS, checkpoints=2), "debug": {"save_weights": True}}
    assert train(spec, toy["data"], out, tmp_path / "st", bias_out=bias)["status"] == "ok"
    got = pd.read_parquet(bias)
    assert list(got.columns) == ["uid", "bias_logp_0", "bias_logp_1", "bias_logp_2"]
    assert got["uid"].tolist() == toy["train"]["uid"].tolist()
    model, data, tok = _tiny_model(toy)  # the same numbers from the saved final weights, in eval mode (no dropout)
    model.load_state_dict(load_file(str(out / "debug_weights.safetensors")))
    probs = predict_probs(model, data, 64, CPU)
    np.testing.assert_allclose(got.iloc[:, 1:].to_numpy(), engine.bias_log_probs(probs), rtol=1e-5, atol=1e-6)
    # length-sorted evaluation batches give the predictions of one instance at a time (no padding), in data order
    data = load_tokenized(toy["data"], ["toy_ood"], tok.pad_token_id)[1][0][1]
    one = predict_probs(model, data, 1, CPU)
    np.testing.assert_allclose(predict_probs(model, data, 16, CPU), one, rtol=1e-5, atol=1e-6)
    in_length_order = one[np.argsort(data.lengths, kind="stable")]
    assert not np.allclose(in_length_order, one, rtol=1e-5, atol=1e-6)  # the order is restored, not a no-op


def test_run_whose_reference_failed_is_recorded_failed_without_training(toy, tmp_path):
    subset = tmp_path / "failed.parquet"
    write_parquet(pd.DataFrame({"uid": [], "weight": []}), subset, {"failed": "runs/toy/ref: non-finite loss"})
    rec = train(_spec(toy, "dm", steps=20, checkpoints=2), toy["data"], tmp_path / "out", tmp_path / "st", subset)
    assert rec["status"] == "failed" and rec["failure_reason"] == "reference failed: runs/toy/ref: non-finite loss"
    got = _outputs(tmp_path / "out")
    assert got["record"]["steps_done"] == 0 and len(got["metrics"]) == 0 and len(got["predictions"]) == 0


def test_training_batches_are_the_tokenizer_output_in_the_seeded_order(toy):
    """The loader's batches: each pass the seeded permutation, cut into batches of micro-batches that hold what
    tokenising each pair and padding it gives; a resumed run's loader starts at its (epoch, batch)."""
    _, data, tok = _tiny_model(toy)
    df, per_epoch = toy["train"], -(-ef.N_TRAIN // BATCH)
    loader = iter(train_loader(data, BATCH, 0, 3, CPU))
    passes = [[next(loader) for _ in range(per_epoch)] for _ in range(2)]
    for epoch, batches in enumerate(passes):
        np.testing.assert_array_equal(np.concatenate([rows for rows, _ in batches]), epoch_permutation(0, epoch, 192))
    for rows, parts in passes[0]:
        assert sorted(np.concatenate([b.idx.numpy() for b in parts])) == sorted(rows) and len(parts) <= 3
        for b in parts:
            idx = b.idx.numpy()
            pairs = df["text_a"][idx].tolist(), df["text_b"][idx].tolist()
            want = tok(*pairs, truncation=True, max_length=ef.MAX_LENGTH, padding=True, return_tensors="pt")
            assert b.inputs.keys() == want.keys() and all(torch.equal(b.inputs[k], want[k]) for k in want)
            assert b.width == want["input_ids"].shape[1]
            assert torch.equal(b.labels, torch.from_numpy(df["label"].to_numpy()[idx]))
    rows, parts = next(iter(train_loader(data, BATCH, 0, 3, CPU, epoch=1, batch=3)))
    np.testing.assert_array_equal(rows, passes[1][3][0])


def test_micro_batches_give_the_batch_loss_gradient_and_dynamics(toy):
    """One (weighted) batch as length-bucketed micro-batches: the same loss, gradient (SGD lr=1 step) and dynamics."""
    model, data, _ = _tiny_model(toy)
    model.eval()  # no dropout: the two paths see the same network
    data.weight = np.random.default_rng(0).uniform(0, 2, len(data)).astype(np.float32)
    idx = epoch_permutation(0, 0, len(data))[:BATCH]
    groups = micro_batches(data.lengths, idx, 3)
    assert len(groups) > 1 and sorted(np.concatenate(groups)) == sorted(idx)
    assert sum(data.lengths[g].max() * len(g) for g in groups) < data.lengths[idx].max() * len(idx)  # less padding
    accelerator = engine.make_accelerator({"mixed_precision": "no"})
    results = []
    for parts in ([idx], groups):
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=1.0)
        dyn, stats = DynamicsRecorder(len(data), 3, CPU), engine.LossStats(CPU)
        before = [p.detach().clone() for p in m.parameters()]
        engine.train_step(m, [collate(data, g, CPU) for g in parts], opt, accelerator, dyn, stats)
        grads = [b - p.detach() for b, p in zip(before, m.parameters(), strict=True)]
        results.append((stats.pop_mean(), grads, dyn.epoch_probs.clone()))
    (loss_a, grads_a, dyn_a), (loss_b, grads_b, dyn_b) = results
    assert loss_b == pytest.approx(loss_a, rel=1e-6)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)
    assert torch.count_nonzero(dyn_a.sum(1)) == BATCH
    torch.testing.assert_close(dyn_b, dyn_a, rtol=1e-5, atol=1e-6)


def test_nonfinite_loss_or_a_score_at_the_majority_baseline_marks_run_failed(toy, tmp_path):
    spec = {**_spec(toy, steps=20, checkpoints=4), "debug": {"nan_at_step": 7}}
    out, state = tmp_path / "out", tmp_path / "st"
    rec = train(spec, toy["data"], out, state)
    assert rec["status"] == "failed" and "non-finite" in rec["failure_reason"]
    assert rec["steps_done"] == 10  # stopped at the first checkpoint after the NaN
    got = _outputs(out)
    assert got["record"]["status"] == "failed" and got["dynamics"]["probs"].shape[0] == 1
    assert len(got["metrics"]) == 1 * len(ef.EVAL_SETS)  # only the checkpoint before the NaN
    assert not state.exists()
    raw = ef.write_toy_data(tmp_path / "raw", id_labels=[1])  # ID set of one class: baseline 1.0
    data = ef.tokenize_toy(raw, toy["model"], tmp_path / "data")
    rec = train(_spec(toy, steps=6, checkpoints=1), data, tmp_path / "out1", tmp_path / "st1")
    assert rec["status"] == "failed" and "majority-class baseline 1.0000" in rec["failure_reason"]
    assert f"{rec['final']['score']:.4f}" in rec["failure_reason"]


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
            assert (spec["optimizer"], spec["lr"], spec["max_grad_norm"]) == ("sgd", 1e-5, None)
            assert spec["weight_decay"] == 0.1
        assert (spec["poe"] is not None) == (run.method == "poe")
        assert spec["eval_sets"][0] == [cfg["tasks"][run.task]["id_test"]["name"], "id"]


def test_spec_errors_name_the_field(toy):
    with pytest.raises(ConfigError, match="'lr'"):
        make_spec(ef.toy_config(toy["model"], lr=0.0), ef.toy_run())
    spec = _spec(toy)
    for bad, match in (({"steps": 3, "checkpoints": 5}, "'steps'.*checkpoints"), ({"batch_size": 0}, "'batch_size'"),
                       ({"eval_sets": [["a", "ood"]]}, "'eval_sets'"), ({"labels": ...}, "'labels'")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            validate_spec({k: v for k, v in (spec | bad).items() if v is not ...})  # ...: left out


def test_checkpoint_steps_of_full_and_limited_runs_and_warmup(toy):
    assert engine.checkpoint_steps(60000, 15) == [4000 * k for k in range(1, 16)]
    assert engine.checkpoint_steps(10, 3) == [3, 7, 10] and engine.checkpoint_steps(5, 5) == [1, 2, 3, 4, 5]
    assert json.loads(json.dumps(_spec(toy))) == _spec(toy)  # a job parameter
    short = make_spec(ef.toy_config(toy["model"], steps=30, checkpoints=15), ef.toy_run(budget="1-3"))
    assert (short["steps"], short["checkpoints"]) == (10, 5)  # 15 * 1/3 checkpoints
    cfg = ef.toy_config(toy["model"], steps=12, checkpoints=15)
    assert make_spec(cfg, ef.toy_run(budget="1-3"))["checkpoints"] == 4  # K <= steps
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = engine.make_scheduler(opt, {"scheduler": "linear", "steps": 125, "warmup_ratio": 0.1})
    lrs = []
    for _ in range(125):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert int(np.argmax(lrs)) == 12 and lrs[0] == 0.0  # int(ratio * steps) warm-up steps, as the official code


def test_macro_f1_and_majority_baseline():
    y, p = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 0, 2])
    # F1: class 0: 2*1/(2+1+1)=0.5, class 1: 2*2/(4+1+0)=0.8, class 2: 2*1/(2+0+1)=2/3
    assert macro_f1(y, p, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert macro_f1(np.array([0, 0]), np.array([0, 0]), 2) == pytest.approx(0.5)  # absent class scores 0
    assert majority_baseline(np.array([1, 1, 1, 0]), 2, "accuracy") == 0.75
    assert majority_baseline(np.array([1, 1, 1, 0]), 2, "macro_f1") == pytest.approx((0 + 2 * 3 / 7) / 2)
