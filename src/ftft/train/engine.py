"""The one training engine: every run (reference, main model, baseline) goes through ``train``.

A plain loop in the spirit of HF ``run_glue_no_trainer.py`` and nanoGPT:

    for each optimiser step until ``steps``:
        batch  = next slice of this epoch's permutation, padded to its longest instance
        loss   = mean of ftft.losses.example_losses (weights / PoE when the subset has them)
        backward, clip, optimiser step, (linear) scheduler step
        dynamics.record(softmax(logits))            # stays on the device
        at checkpoint k (step round(k * steps / K)):
            evaluate every eval set, (plateau) scheduler step, save resumable state

The only host syncs in the loop are the log lines and the checkpoints. ``train_step`` is the
per-step function (``benchmarks/train_step.py`` times it against a bare PyTorch loop).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import cost
from ..errors import DataError
from ..io import atomic_path, write_json
from ..losses import example_losses
from ..modeling import arch_dims, count_params, load_tokenizer_and_model
from . import state as state_io
from .data import (
    Batch,
    Encoded,
    apply_subset,
    batch_indices,
    batches_per_epoch,
    collate,
    encode,
    epoch_permutation,
    read_split,
)
from .dynamics import Dynamics, write_npz
from .evaluate import majority_baseline, predict_probs, scores
from .spec import fingerprint, hparams, validate_spec

log = logging.getLogger("ftft.train")


class SimulatedKill(RuntimeError):
    """Raised by the debug hook ``kill_after_checkpoint`` (used to test resumption).

    Set it in the spec (``"debug": {"kill_after_checkpoint": k}``) or, for whole-workflow
    tests, with the environment variable ``FTFT_DEBUG_KILL_AFTER_CHECKPOINT=k``.
    """


# ---------------------------------------------------------------------------------------------
# The training step
# ---------------------------------------------------------------------------------------------


class LossStats:
    """Device-side loss accumulators: summed every step, read only at log lines/checkpoints."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.count = 0  # steps since the last log line (host int)

    @torch.no_grad()
    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach()
        self.loss_sum.add_(loss)
        self.nonfinite.logical_or_(~torch.isfinite(loss))
        self.count += 1

    def pop_mean(self) -> float:
        """Mean loss since the last call (one host sync), then reset."""
        mean = self.loss_sum.item() / max(self.count, 1)
        self.loss_sum.zero_()
        self.count = 0
        return mean

    def state_dict(self) -> dict:
        return {"loss_sum": self.loss_sum.cpu(), "nonfinite": self.nonfinite.cpu(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.loss_sum.copy_(state["loss_sum"])
        self.nonfinite.copy_(state["nonfinite"])
        self.count = int(state["count"])


def compute_loss(model, batch: Batch, ce_weight: float = 1.0, poe_weight: float = 1.0):
    """Forward pass; returns (mean per-example loss, logits)."""
    logits = model(**batch.inputs).logits
    losses = example_losses(logits, batch.labels, batch.weight, batch.bias_logp, ce_weight, poe_weight)
    return losses.mean(), logits


def train_step(
    model,
    batch: Batch,
    optimizer,
    accelerator,
    dynamics: Dynamics,
    stats: LossStats,
    scheduler=None,
    max_grad_norm: float | None = None,
    ce_weight: float = 1.0,
    poe_weight: float = 1.0,
) -> None:
    """One optimiser step on ``batch``, recording its training dynamics. No host sync."""
    loss, logits = compute_loss(model, batch, ce_weight, poe_weight)
    accelerator.backward(loss)
    if max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    dynamics.record(logits, batch.idx)
    stats.add(loss)


# ---------------------------------------------------------------------------------------------
# Set-up: accelerator, optimiser, scheduler
# ---------------------------------------------------------------------------------------------


def make_accelerator(spec: dict):
    """Accelerator with bf16 autocast on a GPU when the spec says ``auto``, fp32 on CPU."""
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    precision = spec["mixed_precision"]
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    elif precision != "no" and not cuda:
        log.info("mixed precision %s needs a GPU; training in fp32 on CPU", precision)
        precision = "no"
    return Accelerator(mixed_precision=precision, cpu=not cuda)


def make_optimizer(model, spec: dict) -> torch.optim.Optimizer:
    """AdamW (or SGD with momentum for JTT); no weight decay on biases and norm weights (1-D)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": spec["weight_decay"]},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    if spec["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=spec["lr"], momentum=spec["momentum"])
    return torch.optim.AdamW(groups, lr=spec["lr"])


def make_scheduler(optimizer, spec: dict):
    """Linear warmup + decay (stepped every step) or ReduceLROnPlateau (stepped at checkpoints)."""
    if spec["scheduler"] == "plateau":
        p = spec["plateau"]
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=p["factor"], patience=p["patience"]
        )
    from transformers import get_linear_schedule_with_warmup

    warmup = math.ceil(spec["warmup_ratio"] * spec["steps"])
    return get_linear_schedule_with_warmup(optimizer, warmup, spec["steps"])


def checkpoint_steps(steps: int, k: int) -> list[int]:
    """The K evaluation steps, evenly spaced: round(k * steps / K) for k = 1..K."""
    return [round(i * steps / k) for i in range(1, k + 1)]


@contextlib.contextmanager
def torch_settings(threads: int):
    """The spec's thread count (and deterministic CUDA kernels on a GPU), restored afterwards.

    On the CPU a fixed thread count already makes every op this loop uses deterministic
    (the resume tests check bitwise equality), so ``torch.use_deterministic_algorithms`` is
    only switched on with CUDA: its first call costs ~4 s of imports, a fifth of a demo run.
    """
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    cuda = torch.cuda.is_available()
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        prev_det = torch.are_deterministic_algorithms_enabled()
        prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(prev_threads)
        if cuda:
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)


# ---------------------------------------------------------------------------------------------
# Progress and bookkeeping
# ---------------------------------------------------------------------------------------------


@dataclass
class Position:
    """Where the run is, and what it has consumed (host-side, saved with the state)."""

    step: int = 0
    epoch: int = 0  # current pass over the training set
    batch: int = 0  # next batch within the current pass
    tokens_seen: int = 0
    examples_seen: int = 0
    forward_flops: float = 0.0
    wall_time_s: float = 0.0  # of earlier (killed) sessions
    peak_mem_mb: float = 0.0  # of earlier sessions


class ProgressLog:
    """The periodic log line: step/total, mean loss, steps/s, ETA."""

    def __init__(self, total: int, start_step: int):
        self.total = total
        self.last_step, self.last_time = start_step, time.perf_counter()

    def line(self, step: int, stats: LossStats) -> float:
        now = time.perf_counter()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        eta = (self.total - step) / max(rate, 1e-9)
        loss = stats.pop_mean()
        log.info(
            "step %d/%d (%.0f%%) loss %.4f | %.2f steps/s | ETA %s",
            step,
            self.total,
            100 * step / self.total,
            loss,
            rate,
            time.strftime("%H:%M:%S", time.gmtime(eta)) if eta < 86400 else f"{eta / 3600:.0f}h",
        )
        self.last_step, self.last_time = step, now
        return loss


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("ftft", "torch", "transformers", "accelerate", "tokenizers", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def host_info() -> dict:
    """Where the run executed: host name and the scheduler's job / GPU grant, if any."""
    import socket

    env = ("SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_JOB_GPUS", "SLURM_GPUS", "CUDA_VISIBLE_DEVICES")
    return {"hostname": socket.gethostname(), **{k.lower(): os.environ.get(k) for k in env}}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"{device.type} ({torch.get_num_threads()} threads)"


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def load_frames(spec: dict, data_dir: Path, subset: Path | None):
    """Read the training set (restricted to the subset) and the eval sets; fail before the model loads."""
    labels = spec["labels"]
    train_df = read_split(data_dir / "train.parquet", labels)
    extras: dict = {}
    if subset is not None:
        train_df, extras = apply_subset(train_df, Path(subset), len(labels))
    if spec["poe"] is not None and "bias_logp" not in extras:
        raise DataError(f"method poe needs bias_logp_* columns in the subset file; got {subset or 'no subset file'}")
    evals = [
        (name, role, read_split(data_dir / "eval" / f"{name}.parquet", labels)) for name, role in spec["eval_sets"]
    ]
    return train_df, extras, evals


def loss_weights(spec: dict, train: Encoded) -> tuple[float, float]:
    if spec["poe"] is not None:
        return float(spec["poe"]["ce_weight"]), float(spec["poe"]["poe_weight"])
    if train.bias_logp is not None:
        log.warning("subset has bias_logp_* columns but the spec has no poe weights; using 1.0 / 1.0")
    return 1.0, 1.0


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def evaluate_checkpoint(model, evals, spec, device, step: int, k: int) -> tuple[list[dict], list[tuple]]:
    """Metrics rows and (step, name, probs) predictions for every eval set at checkpoint k."""
    rows, preds = [], []
    n_classes = len(spec["labels"])
    for name, role, data in evals:
        probs = predict_probs(model, data, spec["eval_batch_size"], device)
        s = scores(data.labels, probs, n_classes)
        rows.append(
            {
                "step": step,
                "checkpoint": k,
                "fraction": step / spec["steps"],
                "dataset": name,
                "role": role,
                "n": len(data),
                "accuracy": s["accuracy"],
                "macro_f1": s["macro_f1"],
            }
        )
        preds.append((step, name, probs))
    return rows, preds


def final_check(spec: dict, metrics: list[dict], evals) -> tuple[dict, str | None]:
    """Final ID score vs the majority-class baseline of the ID eval set."""
    name, _, data = evals[0]
    metric = spec["metric"]
    base = majority_baseline(data.labels, len(spec["labels"]), metric)
    last = [r for r in metrics if r["dataset"] == name][-1]
    score = last[metric]
    info = {"dataset": name, "metric": metric, "step": last["step"], "score": score, "majority_baseline": base}
    if score <= base:
        return info, f"final ID {metric} on {name} is {score:.4f} <= majority-class baseline {base:.4f}"
    return info, None


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------

METRIC_COLUMNS = ["step", "checkpoint", "fraction", "dataset", "role", "n", "accuracy", "macro_f1"]


def write_metrics(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=METRIC_COLUMNS).to_csv(tmp, index=False)


def write_predictions(path: Path, preds: list[tuple], evals, n_classes: int) -> None:
    by_name = {name: data for name, _, data in evals}
    frames = []
    for step, name, probs in preds:
        data = by_name[name]
        frame = {
            "step": np.full(len(data), step, dtype=np.int64),
            "dataset": [name] * len(data),
            "uid": data.uids,
            "label": data.labels,
        }
        frame.update({f"prob_{c}": probs[:, c].astype(np.float32) for c in range(n_classes)})
        frames.append(pd.DataFrame(frame))
    columns = ["step", "dataset", "uid", "label", *[f"prob_{c}" for c in range(n_classes)]]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class Session:
    """Everything one training session works with (built by ``setup``)."""

    spec: dict
    accelerator: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_data: Encoded
    evals: list  # (name, role, Encoded)
    dynamics: Dynamics
    stats: LossStats
    inst_flops: np.ndarray  # forward FLOPs of each training instance
    n_params: tuple[int, int]  # (total, non-embedding)
    flops_per_epoch: float
    pos: Position = field(default_factory=Position)
    metrics: list = field(default_factory=list)  # metrics.csv rows
    preds: list = field(default_factory=list)  # (step, eval set, probs)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def per_step_scheduler(self):
        return self.scheduler if self.spec["scheduler"] == "linear" else None


def setup(spec: dict, data_dir: Path, subset) -> Session:
    """Read and tokenise the data, load the model (seeded head), build optimiser and scheduler."""
    n_classes = len(spec["labels"])
    train_df, extras, eval_frames = load_frames(spec, data_dir, subset)
    accelerator = make_accelerator(spec)
    state_io.seed_everything(spec["seed"])
    tokenizer, model = load_tokenizer_and_model(spec["model_source"], n_classes)
    train_data = encode(train_df, tokenizer, spec["max_length"], extras)
    evals = [(name, role, encode(df, tokenizer, spec["max_length"])) for name, role, df in eval_frames]
    n_params = count_params(model)
    n_layer, d_model = arch_dims(model.config)
    lengths = train_data.lengths.tolist()
    optimizer = make_optimizer(model, spec)
    return Session(
        spec=spec,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, spec),
        train_data=train_data,
        evals=evals,
        dynamics=Dynamics(len(train_data), n_classes, accelerator.device),
        stats=LossStats(accelerator.device),
        inst_flops=np.array([cost.forward_flops([x], n_params[1], n_layer, d_model) for x in lengths]),
        n_params=n_params,
        flops_per_epoch=cost.forward_flops(lengths, n_params[1], n_layer, d_model),
    )


def restore(s: Session, saved: dict) -> None:
    """Load a saved state into the (not yet prepared) model, optimiser, scheduler, dynamics."""
    s.model.load_state_dict(saved["model"])
    s.optimizer.load_state_dict(saved["optimizer"])
    s.scheduler.load_state_dict(saved["scheduler"])
    s.dynamics.load_state_dict(saved["dynamics"])
    s.stats.load_state_dict(saved["stats"])
    s.pos = Position(**saved["position"])
    s.metrics, s.preds = saved["metrics"], saved["predictions"]


def save_state(s: Session, state_dir: Path, fp: str, session_start: float) -> None:
    position = asdict(s.pos)
    position["wall_time_s"] = s.pos.wall_time_s + time.perf_counter() - session_start
    position["peak_mem_mb"] = max(s.pos.peak_mem_mb, peak_memory_mb(s.device))
    state_io.save(
        state_dir,
        {
            "fingerprint": fp,
            "position": position,
            "model": s.accelerator.unwrap_model(s.model).state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict(),
            "dynamics": s.dynamics.state_dict(),
            "stats": s.stats.state_dict(),
            "metrics": s.metrics,
            "predictions": s.preds,
            "rng": state_io.rng_state(),
        },
    )


def checkpoint(s: Session, k: int, n_checkpoints: int) -> None:
    """Evaluate every eval set at checkpoint k; step the plateau scheduler on the ID metric."""
    rows, preds = evaluate_checkpoint(s.model, s.evals, s.spec, s.device, s.pos.step, k)
    s.metrics, s.preds = s.metrics + rows, s.preds + preds
    id_score = rows[0][s.spec["metric"]]
    log.info("checkpoint %d/%d (step %d): ID %s %.4f", k, n_checkpoints, s.pos.step, s.spec["metric"], id_score)
    if s.per_step_scheduler is None:
        s.scheduler.step(id_score)


def debug_hooks(spec: dict) -> dict:
    debug = dict(spec.get("debug") or {})
    if os.environ.get("FTFT_DEBUG_KILL_AFTER_CHECKPOINT"):
        debug["kill_after_checkpoint"] = int(os.environ["FTFT_DEBUG_KILL_AFTER_CHECKPOINT"])
    return debug


def make_record(s: Session, failure: str | None, final: dict | None, session_start: float) -> dict:
    """The content of run.json (docs/ARCHITECTURE.md)."""
    spec, pos, n = s.spec, s.pos, len(s.train_data)
    return {
        "run": spec["run"],
        "status": "failed" if failure else "ok",
        "failure_reason": failure,
        "steps": spec["steps"],
        "steps_done": pos.step,
        "checkpoints": spec["checkpoints"],
        "epochs": pos.examples_seen / n,  # passes over the training set (examples seen / N)
        "n_train": n,
        "hparams": hparams(spec),
        "model": {"source": spec["model_source"], "params": s.n_params[0], "non_embedding_params": s.n_params[1]},
        "tokens": {"train_tokens_per_epoch": int(s.train_data.lengths.sum()), "train_tokens_seen": pos.tokens_seen},
        "flops": {
            "forward_per_epoch": s.flops_per_epoch,
            "forward_total": pos.forward_flops,
            "train_total": 3.0 * pos.forward_flops,  # backward ~ 2x forward (Kaplan et al. 2020)
        },
        "final": final,
        "wall_time_s": pos.wall_time_s + time.perf_counter() - session_start,
        "peak_mem_mb": max(pos.peak_mem_mb, peak_memory_mb(s.device)),
        "versions": versions(),
        "device": device_name(s.device),
        "mixed_precision": s.accelerator.mixed_precision,
        "host": host_info(),
    }


def write_outputs(s: Session, out_dir: Path, record: dict) -> None:
    """The four run files, each atomically; run.json last."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_metrics(out_dir / "metrics.csv", s.metrics)
    write_predictions(out_dir / "predictions.parquet", s.preds, s.evals, len(s.spec["labels"]))
    write_npz(out_dir / "dynamics.npz", s.train_data.uids, s.train_data.labels, s.dynamics)
    write_json(out_dir / "run.json", record)


def train(
    spec: dict,
    data_dir: str | Path,
    out_dir: str | Path,
    state_dir: str | Path,
    subset: str | Path | None = None,
    model_path: str | Path | None = None,
) -> dict:
    """Train one run; write metrics.csv, predictions.parquet, dynamics.npz, run.json to ``out_dir``.

    Resumes from ``state_dir`` when it holds the state of the same spec; deletes it once the
    outputs are written. Returns the run record (the content of run.json).
    """
    spec = validate_spec(copy.deepcopy(spec))
    if model_path is not None:
        spec["model_source"] = str(model_path)
    with torch_settings(spec["threads"]):
        return _train(spec, Path(data_dir), Path(out_dir), Path(state_dir), subset)


def _train(spec: dict, data_dir: Path, out_dir: Path, state_dir: Path, subset) -> dict:
    session_start = time.perf_counter()
    s = setup(spec, data_dir, subset)
    fp = fingerprint(spec)
    saved = state_io.load(state_dir, fp)
    if saved is not None:
        restore(s, saved)
    s.model, s.optimizer = s.accelerator.prepare(s.model, s.optimizer)
    if saved is not None:
        state_io.set_rng_state(saved["rng"])  # last: loading the model consumed random numbers
    s.model.train()

    steps, bs, n, pos = spec["steps"], spec["batch_size"], len(s.train_data), s.pos
    ckpts = checkpoint_steps(steps, spec["checkpoints"])
    n_batches = batches_per_epoch(n, bs)
    perm = epoch_permutation(spec["seed"], pos.epoch, n)
    progress = ProgressLog(steps, pos.step)
    debug = debug_hooks(spec)
    ce_weight, poe_weight = loss_weights(spec, s.train_data)
    failure = None
    log.info(
        "training %s on %d instances: %d steps of batch %d, %d checkpoints, %s",
        spec["model_source"],
        n,
        steps,
        bs,
        len(ckpts),
        device_name(s.device),
    )

    while pos.step < steps:
        idx = batch_indices(perm, pos.batch, bs)
        batch = collate(s.train_data, idx, s.device)
        if debug.get("nan_at_step") == pos.step + 1:
            with torch.no_grad():
                next(s.model.parameters()).fill_(float("nan"))
        train_step(
            s.model,
            batch,
            s.optimizer,
            s.accelerator,
            s.dynamics,
            s.stats,
            s.per_step_scheduler,
            spec["max_grad_norm"],
            ce_weight,
            poe_weight,
        )
        pos.step += 1
        pos.batch += 1
        pos.tokens_seen += batch.n_tokens
        pos.examples_seen += len(idx)
        pos.forward_flops += float(s.inst_flops[idx].sum())
        if pos.batch == n_batches:  # end of a pass over the training set
            s.dynamics.end_pass(perm)
            pos.epoch, pos.batch = pos.epoch + 1, 0
            perm = epoch_permutation(spec["seed"], pos.epoch, n)

        at_checkpoint = pos.step in ckpts
        if pos.step % spec["log_every"] == 0 or at_checkpoint:
            progress.line(pos.step, s.stats)
        if not at_checkpoint:
            continue
        if bool(s.stats.nonfinite.item()):
            failure = f"non-finite training loss (NaN/inf) detected by step {pos.step}"
            log.error("%s; stopping", failure)
            break
        k = ckpts.index(pos.step) + 1
        checkpoint(s, k, len(ckpts))
        save_state(s, state_dir, fp, session_start)
        if debug.get("kill_after_checkpoint") == k:
            raise SimulatedKill(f"debug: killed after checkpoint {k}")

    if pos.batch > 0:  # the last, partial pass
        s.dynamics.end_pass(perm[: pos.batch * bs])
    final = None
    if failure is None:
        final, failure = final_check(spec, s.metrics, s.evals)
    if failure is not None:
        log.warning("run failed: %s", failure)
    record = make_record(s, failure, final, session_start)
    write_outputs(s, out_dir, record)
    state_io.clear(state_dir)
    log.info("wrote %s (status %s, %.1f s)", out_dir, record["status"], record["wall_time_s"])
    return record
