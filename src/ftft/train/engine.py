"""The one training engine: every run (reference, main model, baseline) goes through ``train``.

A plain loop in the spirit of HF ``run_glue_no_trainer.py`` (docs/ARCHITECTURE.md): each optimiser step backpropagates
the batch mean of ``example_losses`` over its micro-batches, clips, steps and records the dynamics on the
device; checkpoint k (step round(k * steps / K)) evaluates every eval set and saves the state in the background. The
only host syncs in the loop are the log lines, the end of each pass over the data and the checkpoints.

Schedules (sources in docs/FIDELITY.md): linear with ``int(ratio * steps)`` warm-up steps, stepped every optimiser
step; ``ReduceLROnPlateau`` (JTT) at every checkpoint on the running mean training loss since step 1. No evaluation
score steers training. Dynamics (dataset cartography): softmax(logits) of each training step into a device buffer
[N, C], moved to the host at the end of each pass as one float16 row of [E, N, C] with the mask of the rows it saw.
"""

import contextlib
import copy
import gc
import logging
import os
import resource
import shutil
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import cost, methods
from ..datamap import save_dynamics
from ..errors import DataError
from ..io import atomic_path, write_json, write_parquet
from ..modeling import arch_dims, count_params, load_tokenizer, load_tokenizer_and_model
from . import state as state_io
from .data import (
    Batch,
    Encoded,
    ReferenceFailed,
    apply_subset,
    collate,
    epoch_permutation,
    load_tokenized,
    pad_multiple,
    tokenized_stats,
    train_loader,
)
from .spec import fingerprint, hparams, validate_spec

log = logging.getLogger("ftft.train")
PROB_FLOOR = 1e-6  # bias log-probabilities are clipped to log(1e-6) and renormalised
METRIC_COLUMNS = ["step", "checkpoint", "fraction", "dataset", "role", "n", "accuracy", "macro_f1", "train_loss"]


class SimulatedKill(RuntimeError):
    """Raised after checkpoint k when the spec has ``"debug": {"kill_after_checkpoint": k}`` (or the environment
    ``FTFT_DEBUG_KILL_AFTER_CHECKPOINT=k``): the resumption tests."""


class LossStats:
    """Loss sums on the device since the last log line (``window``), the last checkpoint, and the first step
    (``total``: the plateau scheduler's input); read on the host only at log lines and checkpoints."""

    SUMS = {"window": torch.float32, "checkpoint": torch.float32, "total": torch.float64, "nonfinite": torch.bool}

    def __init__(self, device: torch.device):
        for name, dtype in self.SUMS.items():
            setattr(self, name, torch.zeros((), dtype=dtype, device=device))
        self.counts = {"window": 0, "checkpoint": 0, "total": 0}  # steps (host ints)

    @torch.no_grad()
    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach()
        self.window.add_(loss)
        self.checkpoint.add_(loss)
        self.total.add_(loss.double())
        self.nonfinite.logical_or_(~torch.isfinite(loss))
        self.counts = {k: c + 1 for k, c in self.counts.items()}

    def pop_mean(self, name: str = "window") -> float:
        """The mean loss since the last pop of ``name`` (one host sync), then reset."""
        mean = getattr(self, name).item() / max(self.counts[name], 1)
        getattr(self, name).zero_()
        self.counts[name] = 0
        return mean

    def state_dict(self) -> dict:
        return {**{k: getattr(self, k).cpu() for k in self.SUMS}, "counts": list(self.counts.values())}

    def load_state_dict(self, state: dict) -> None:
        for k in self.SUMS:
            getattr(self, k).copy_(state[k])
        self.counts = dict(zip(self.counts, (int(c) for c in state["counts"]), strict=True))


def checkpoint_steps(steps: int, k: int) -> list[int]:
    """The K evaluation steps: round(k * steps / K) for k = 1..K (a full run's checkpoint k is what halting at
    fraction k/K reads)."""
    return [round(i * steps / k) for i in range(1, k + 1)]


def make_scheduler(optimizer: torch.optim.Optimizer, spec: dict):
    """The spec's scheduler: 'linear' (stepped per step) or 'plateau' (stepped per checkpoint)."""
    if spec["scheduler"] == "plateau":
        p = spec["plateau"]
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=p["factor"], patience=p["patience"]
        )
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, int(spec["warmup_ratio"] * spec["steps"]), spec["steps"])


class DynamicsRecorder:
    """Per-instance class probabilities of every pass over the training set (module docstring)."""

    def __init__(self, n: int, n_classes: int, device: torch.device):
        self.n, self.n_classes = n, n_classes
        self.epoch_probs = torch.zeros(n, n_classes, dtype=torch.float32, device=device)
        self.probs: list[np.ndarray] = []  # float16 [N, C] per finished pass
        self.seen: list[np.ndarray] = []  # bool [N] per finished pass

    @torch.no_grad()
    def record(self, logits: torch.Tensor, idx: torch.Tensor) -> None:
        self.epoch_probs.index_copy_(0, idx, torch.softmax(logits.detach().float(), dim=-1))

    def end_pass(self, seen_idx: np.ndarray) -> None:
        """Move the finished (or, at the end of training, partial) pass to the host."""
        seen = np.zeros(self.n, dtype=bool)
        seen[seen_idx] = True
        self.probs.append(self.epoch_probs.cpu().numpy().astype(np.float16))
        self.seen.append(seen)
        self.epoch_probs.zero_()

    def state_dict(self) -> dict:
        return {"epoch_probs": self.epoch_probs.cpu().clone(), "probs": list(self.probs), "seen": list(self.seen)}

    def load_state_dict(self, state: dict) -> None:  # a state of an earlier version also holds complete_epochs
        self.epoch_probs.copy_(state["epoch_probs"])
        self.probs, self.seen = list(state["probs"]), list(state["seen"])


def write_npz(path, uids: list[str], labels: np.ndarray, dyn: DynamicsRecorder) -> None:
    """Atomically write ``dynamics.npz`` (the one writer: ``ftft.datamap.save_dynamics``)."""
    probs = np.stack(dyn.probs) if dyn.probs else np.zeros((0, dyn.n, dyn.n_classes), np.float16)
    seen = np.stack(dyn.seen) if dyn.seen else np.zeros((0, dyn.n), bool)
    keep = np.sort(np.unique(np.asarray(uids), return_index=True)[1])  # JTT's upsampled copies: the first one
    complete = sum(int(s.all()) for s in dyn.seen)  # passes that saw every row
    save_dynamics(path, np.asarray(uids)[keep], labels[keep], probs[:, keep], seen[:, keep], complete)


@torch.no_grad()
def predict_probs(model, data: Encoded, batch_size: int, device: torch.device) -> np.ndarray:
    """Softmax probabilities [M, C] (float32) of ``model`` on ``data`` in eval mode, in the order of ``data``
    (batches of length-sorted instances: the least padding)."""
    was_training = model.training
    model.eval()
    chunks = []
    order = np.argsort(data.lengths, kind="stable")
    try:
        for start in range(0, len(data), batch_size):
            batch = collate(data, order[start : start + batch_size], device)
            chunks.append(torch.softmax(model(**batch.inputs).logits.float(), dim=-1))
    finally:
        model.train(was_training)
    probs = np.empty((len(data), chunks[0].shape[1]), np.float32)
    probs[order] = torch.cat(chunks).cpu().numpy()
    return probs


def macro_f1(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Mean over classes 0..n_classes-1 of F1 = 2 TP / (2 TP + FP + FN), 0 when undefined."""
    confusion = np.bincount(n_classes * np.asarray(labels) + pred, minlength=n_classes**2).reshape(n_classes, -1)
    tp, denom = np.diag(confusion), confusion.sum(0) + confusion.sum(1)
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)))


def scores(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """{'accuracy', 'macro_f1'} of the predicted labels ``pred``."""
    accuracy = float(np.mean(np.asarray(labels) == pred)) if len(labels) else 0.0
    return {"accuracy": accuracy, "macro_f1": macro_f1(labels, pred, n_classes)}


def majority_baseline(labels: np.ndarray, n_classes: int, metric: str) -> float:
    """Score of always predicting the most frequent label (ties: the lowest label)."""
    labels = np.asarray(labels)
    pred = np.full_like(labels, int(np.bincount(labels, minlength=n_classes).argmax()))
    return scores(labels, pred, n_classes)[metric]


def poe_loss(logits: torch.Tensor, labels: torch.Tensor, bias_logp: torch.Tensor) -> torch.Tensor:
    """Per-example product-of-experts loss: CE of the renormalised sum of log-probabilities (the bias is frozen)."""
    combined = F.log_softmax(logits.float(), dim=-1) + bias_logp.float().detach()
    return F.cross_entropy(combined, labels, reduction="none")


def example_losses(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None,
                   bias_logp: torch.Tensor | None = None, ce_weight: float = 1.0, poe_weight: float = 1.0,
                   main_loss=None) -> torch.Tensor:  # fmt: skip
    """Loss per example (shape [B]; the step averages it over the batch): the method's main loss (``main_loss``:
    (logits, labels) -> [B]; cross-entropy when None) times the subset's ``weight``, plus the product-of-experts
    term when the subset carries a bias model's log-probabilities (Sanh et al. 2021: ce_weight * CE(main) +
    poe_weight * CE(log_softmax(main) + bias_logp)). One function serves every method."""
    loss = (main_loss or partial(F.cross_entropy, reduction="none"))(logits.float(), labels)
    if bias_logp is not None:
        loss = ce_weight * loss + poe_weight * poe_loss(logits, labels, bias_logp)
    if weight is not None:
        loss = loss * weight.float()
    return loss


def loss_for_spec(spec: dict):
    """``example_losses`` with the spec's method loss and PoE weights bound: (logits, labels, weight, bias_logp)."""
    poe = spec["poe"] or {"ce_weight": 1.0, "poe_weight": 1.0}
    return partial(example_losses, **poe, main_loss=methods.get(spec["run"]["method"]).loss)


def train_step(model, batches: list[Batch], optimizer, accelerator, dynamics: DynamicsRecorder, stats: LossStats,
               scheduler=None, max_grad_norm: float | None = None, loss_fn=example_losses) -> None:  # fmt: skip
    """One optimiser step on a batch given as micro-batches, recording its dynamics; no host sync. Each
    micro-batch contributes its loss sum / batch size: the gradient of the batch mean (up to float rounding)."""
    n = sum(len(b.labels) for b in batches)
    loss = 0.0
    for b in batches:
        logits = model(**b.inputs).logits
        losses = loss_fn(logits, b.labels, b.weight, b.bias_logp)
        part = losses.mean() if len(batches) == 1 else losses.sum() / n
        accelerator.backward(part)
        dynamics.record(logits, b.idx)
        loss = loss + part.detach()
    if max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    stats.add(loss)


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
    """AdamW (fused on CUDA) or SGD with momentum (JTT); no weight decay on 1-D parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": spec["weight_decay"]},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    if spec["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=spec["lr"], momentum=spec["momentum"])
    return torch.optim.AdamW(groups, lr=spec["lr"], eps=spec["adam_eps"], fused=torch.cuda.is_available())


@contextlib.contextmanager
def torch_settings(threads: int, deterministic: bool = False):
    """The spec's thread count and, when ``deterministic`` on CUDA, deterministic kernels; restored afterwards.

    On the CPU a fixed thread count already makes this loop deterministic (the resume tests check bitwise
    equality); on CUDA the deterministic kernels are opt-in (``training.deterministic``, docs/FIDELITY.md)."""
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    cuda = deterministic and torch.cuda.is_available()
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        prev = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(prev_threads)
        if cuda:
            torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])


@dataclass
class Position:
    """Where the run is, and what it has consumed (saved with the state)."""

    step: int = 0
    epoch: int = 0  # current pass over the training set
    batch: int = 0  # next batch within the current pass
    tokens_seen: int = 0
    padded_tokens_seen: int = 0
    examples_seen: int = 0
    forward_flops: float = 0.0  # real tokens
    forward_flops_padded: float = 0.0
    wall_time_s: float = 0.0  # of earlier (killed) sessions
    peak_mem_mb: float = 0.0  # of earlier sessions


def log_progress(step: int, total: int, stats: LossStats, last: tuple[int, float]) -> tuple[int, float]:
    """The periodic log line since ``last`` (step, time): step/total, mean loss, steps/s, ETA (``ftft status``
    parses it); returns the new ``last``."""
    now = time.perf_counter()
    rate = (step - last[0]) / max(now - last[1], 1e-9)
    eta = (total - step) / max(rate, 1e-9)
    eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta < 86400 else f"{eta / 3600:.0f}h"
    log.info("step %d/%d (%.0f%%) loss %.4f | %.2f steps/s | ETA %s",
             step, total, 100 * step / total, stats.pop_mean(), rate, eta_text)  # fmt: skip
    return step, now


def provenance() -> dict:
    """run.json's package versions and host: its name and the scheduler's job / GPU grant, if any."""
    import socket
    from importlib.metadata import PackageNotFoundError, version

    out = dict.fromkeys(("ftft", "torch", "transformers", "accelerate", "tokenizers", "datasets", "numpy"))
    for pkg in out:
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    env = ("SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_JOB_GPUS", "SLURM_GPUS", "CUDA_VISIBLE_DEVICES")
    return {"versions": out, "host": {"hostname": socket.gethostname(), **{k.lower(): os.environ.get(k) for k in env}}}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"{device.type} ({torch.get_num_threads()} threads)"


def process_age() -> float | None:
    """Seconds since this process started (Linux; None elsewhere): ``benchmarks/job_start.py`` reads it."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return round(float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return None


def final_check(spec: dict, metrics: list[dict], evals) -> tuple[dict, str | None]:
    """Final ID score vs the majority-class baseline of the ID eval set."""
    (name, _, data), metric = evals[0], spec["metric"]
    last = [r for r in metrics if r["dataset"] == name][-1]
    base = majority_baseline(data.labels, len(spec["labels"]), metric)
    info = {"dataset": name, "metric": metric, "step": last["step"], "score": last[metric], "majority_baseline": base}
    failure = f"final ID {metric} on {name} is {last[metric]:.4f} <= majority-class baseline {base:.4f}"
    return info, failure if last[metric] <= base else None


def write_metrics(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=METRIC_COLUMNS).to_csv(tmp, index=False)


def write_predictions(path: Path, preds: list[tuple], evals, n_classes: int) -> None:
    data = {name: d for name, _, d in evals}
    columns = ["step", "dataset", "uid", "label", *[f"prob_{c}" for c in range(n_classes)]]
    frames = [
        pd.DataFrame(
            {"step": np.int64(step), "dataset": name, "uid": data[name].uids, "label": data[name].labels}
        ).join(pd.DataFrame(probs.astype(np.float32), columns=columns[4:]))
        for step, name, probs in preds
    ]
    with atomic_path(path) as tmp:
        pd.concat(frames or [pd.DataFrame(columns=columns)], ignore_index=True).to_parquet(tmp, index=False)


def bias_log_probs(probs: np.ndarray) -> np.ndarray:
    """[N, C] float32 log-probabilities of a bias model's softmax, clipped at PROB_FLOOR and renormalised."""
    p = np.clip(probs.astype(np.float64), PROB_FLOOR, None)
    p /= p.sum(axis=1, keepdims=True)
    return np.log(p).astype(np.float32)


def write_bias(path: Path, uids, logp: np.ndarray | None, n_classes: int, meta: dict) -> None:
    """The PoE bias file: uid, bias_logp_0..C-1 (eval-mode pass of the final weights over the training set)."""
    logp = np.full((len(uids), n_classes), np.nan, np.float32) if logp is None else logp
    frame = {"uid": np.asarray(uids).astype(str), **{f"bias_logp_{c}": logp[:, c] for c in range(n_classes)}}
    write_parquet(pd.DataFrame(frame), path, meta)


class Session:
    """Everything one training session works with: the tokenised data (restricted to the subset), the model
    (its head seeded), optimiser, scheduler, dynamics, loss sums, and where the run is."""

    def __init__(self, spec: dict, data_dir: Path, subset):
        from accelerate.utils import set_seed

        from ..tokenize import tokenizer_fingerprint

        self.start, n_classes, stats = time.perf_counter(), len(spec["labels"]), tokenized_stats(data_dir)
        self.spec, self.accelerator = spec, make_accelerator(spec)
        set_seed(spec["seed"])  # python, numpy, torch
        tokenizer, self.model = load_tokenizer_and_model(spec["model_source"], n_classes)
        if stats.get("max_length") != spec["max_length"]:
            raise DataError(
                f"{data_dir}: tokenised with max_length {stats.get('max_length')}, the spec says {spec['max_length']}"
            )
        if stats.get("tokenizer") != tokenizer_fingerprint(tokenizer):
            raise DataError(
                f"{data_dir} was tokenised with another tokenizer ({stats.get('model_source')}) than "
                f"{spec['model_source']}'s: give the model its own group in models.{spec['run']['model']}.tokenizer"
            )
        names = [name for name, _ in spec["eval_sets"]]
        self.train_data, evals = load_tokenized(data_dir, names, int(tokenizer.pad_token_id))
        if subset is not None:
            self.train_data = apply_subset(self.train_data, Path(subset), n_classes)
        if spec["poe"] is not None and self.train_data.bias_logp is None:
            raise DataError(
                f"method poe needs bias_logp_* columns in the subset file; got {subset or 'no subset file'}"
            )
        self.evals = [(name, role, data) for (name, role), (_, data) in zip(spec["eval_sets"], evals, strict=True)]
        self.optimizer = make_optimizer(self.model, spec)
        self.scheduler = make_scheduler(self.optimizer, spec)
        self.dynamics = DynamicsRecorder(len(self.train_data), n_classes, self.device)
        self.stats = LossStats(self.device)
        self.n_params, self.dims = count_params(self.model), arch_dims(self.model.config)  # (total, non-embedding)
        self.pos, self.metrics, self.preds = Position(), [], []  # metrics.csv rows; (step, eval set, probs)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def per_step_scheduler(self):  # linear: stepped every optimiser step; plateau: at every checkpoint
        return self.scheduler if self.spec["scheduler"] == "linear" else None

    def flops(self, tokens: np.ndarray | int, n_ctx) -> float:
        """Forward FLOPs of ``tokens`` positions at context lengths ``n_ctx`` (Kaplan et al.)."""
        per_token = cost.forward_flops_per_token(self.n_params[1], *self.dims, np.asarray(n_ctx))
        return float(np.sum(np.asarray(tokens) * per_token))

    def totals(self) -> dict:
        """Wall time and peak memory (MB; CPU: the process's peak RSS) of the run so far, earlier sessions included."""
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        return {"wall_time_s": self.pos.wall_time_s + time.perf_counter() - self.start,
                "peak_mem_mb": max(self.pos.peak_mem_mb, peak)}  # fmt: skip

    def parts(self) -> dict:
        """What the state saves with ``state_dict`` and restores with ``load_state_dict``."""
        model = self.accelerator.unwrap_model(self.model)
        return {"model": model, "optimizer": self.optimizer, "scheduler": self.scheduler, "dynamics": self.dynamics,
                "stats": self.stats}  # fmt: skip


def checkpoint(s: Session, k: int, n_checkpoints: int) -> None:
    """Evaluate every eval set at checkpoint k; step the plateau scheduler on the running training loss."""
    spec, step, train_loss = s.spec, s.pos.step, s.stats.pop_mean("checkpoint")
    rows, preds = [], []
    for name, role, data in s.evals:
        probs = predict_probs(s.model, data, spec["eval_batch_size"], s.device)
        rows.append({"step": step, "checkpoint": k, "fraction": step / spec["steps"], "dataset": name, "role": role,
                     "n": len(data), **scores(data.labels, probs.argmax(axis=1), len(spec["labels"])),
                     "train_loss": train_loss})  # fmt: skip
        preds.append((step, name, probs))
    s.metrics, s.preds = s.metrics + rows, s.preds + preds
    log.info("checkpoint %d/%d (step %d): ID %s %.4f, training loss %.4f",
             k, n_checkpoints, step, spec["metric"], rows[0][spec["metric"]], train_loss)  # fmt: skip
    if s.per_step_scheduler is None:
        s.scheduler.step(s.stats.total.item() / max(s.stats.counts["total"], 1))


def export_model(s: Session, folder: Path) -> None:
    """The model as it is now as a Hugging Face folder (safetensors, tokenizer, the task's label names)."""
    model = s.accelerator.unwrap_model(s.model)
    model.config.id2label = dict(enumerate(s.spec["labels"]))
    model.config.label2id = {name: i for i, name in enumerate(s.spec["labels"])}
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True)
    load_tokenizer(s.spec["model_source"]).save_pretrained(folder)


def write_outputs(s: Session, out_dir: Path, failure: str | None, final: dict | None, startup, bias_out) -> dict:
    """The run files, each atomically; run.json (docs/ARCHITECTURE.md; ``timing``: seconds since the process
    started) last; returns its content."""
    from ..tokenize import padded_widths

    spec, pos, data = s.spec, s.pos, s.train_data
    perm = epoch_permutation(spec["seed"], 0, len(data))  # the padded FLOPs of a pass: those of the first one
    widths, sizes = padded_widths(data.lengths, perm, spec["batch_size"], spec["length_buckets"], pad_multiple(s.device))  # fmt: skip
    record = {"run": spec["run"], "status": "failed" if failure else "ok", "failure_reason": failure,
            "steps": spec["steps"], "steps_done": pos.step, "checkpoints": spec["checkpoints"],
            "epochs": pos.examples_seen / len(data), "n_train": len(data), "hparams": hparams(spec),
            "model": {"source": spec["model_source"], "params": s.n_params[0], "non_embedding_params": s.n_params[1],
                      "n_layer": s.dims[0], "d_model": s.dims[1]},
            "tokens": {"train_tokens_per_epoch": int(data.lengths.sum()), "train_tokens_seen": pos.tokens_seen,
                       "padded_tokens_seen": pos.padded_tokens_seen},
            "flops": {"forward_per_epoch": s.flops(widths * sizes, widths),
                      "forward_per_epoch_real": s.flops(data.lengths, data.lengths),
                      "forward_total": pos.forward_flops_padded, "forward_total_real": pos.forward_flops,
                      "train_total": 3.0 * pos.forward_flops_padded},  # backward ~ 2x forward (Kaplan et al. 2020)
            "final": final, **s.totals(), "device": device_name(s.device),
            "mixed_precision": s.accelerator.mixed_precision, **provenance(),
            "timing": {"startup_s": startup, "outputs_at_s": process_age()}}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    write_metrics(out_dir / "metrics.csv", s.metrics)
    write_predictions(out_dir / "predictions.parquet", s.preds, s.evals, len(s.spec["labels"]))
    write_npz(out_dir / "dynamics.npz", s.train_data.uids, s.train_data.labels, s.dynamics)
    if bias_out is not None:
        logp = None
        if failure is None:
            logp = bias_log_probs(predict_probs(s.model, s.train_data, s.spec["eval_batch_size"], s.device))
        write_bias(bias_out, s.train_data.uids, logp, len(s.spec["labels"]),
                   {"run": s.spec["run"], "step": s.pos.step, "failed": failure})  # fmt: skip
    if s.spec.get("debug", {}).get("save_weights"):
        from safetensors.torch import save_file

        weights = {k: v.detach().cpu().contiguous() for k, v in s.parts()["model"].state_dict().items()}
        save_file(weights, str(out_dir / "debug_weights.safetensors"))
    write_json(out_dir / "run.json", record)
    return record


def write_reference_failure(spec: dict, out_dir: Path, reason: str) -> dict:
    """A run whose reference failed: no training, the four files with status failed."""
    n_classes = len(spec["labels"])
    out_dir.mkdir(parents=True, exist_ok=True)
    write_metrics(out_dir / "metrics.csv", [])
    write_predictions(out_dir / "predictions.parquet", [], [], n_classes)
    save_dynamics(out_dir / "dynamics.npz", [], np.zeros(0, np.int64), np.zeros((0, 0, n_classes), np.float16))
    record = {"run": spec["run"], "status": "failed", "failure_reason": f"reference failed: {reason}",
              "steps": spec["steps"], "steps_done": 0, "checkpoints": spec["checkpoints"], "hparams": hparams(spec),
              "model": {"source": spec["model_source"]}, "final": None, **provenance()}  # fmt: skip
    write_json(out_dir / "run.json", record)
    log.warning("not trained: reference failed: %s", reason)
    return record


def train(spec: dict, data_dir: str | Path, out_dir: str | Path, state_dir: str | Path,
          subset: str | Path | None = None, model_path: str | Path | None = None,
          bias_out: str | Path | None = None, export_out: str | Path | None = None) -> dict:  # fmt: skip
    """Train one run into ``out_dir`` (the run files); return the record. ``data_dir``: a tokenize output folder;
    ``bias_out``: the eval-mode log-probabilities of the final weights on the training set (PoE bias models);
    ``export_out``: the model at checkpoint ``spec["export_checkpoint"]`` (an empty folder when the run stopped
    before it). Resumes from ``state_dir`` (the state of the same spec); deletes it once the outputs are written."""
    spec = validate_spec(copy.deepcopy(spec))
    if model_path is not None:
        spec["model_source"] = str(model_path)
    saver = state_io.BackgroundSaver()
    with torch_settings(spec["threads"], spec["deterministic"]):
        try:
            return _train(spec, Path(data_dir), Path(out_dir), Path(state_dir), subset, bias_out, saver, export_out)
        except ReferenceFailed as exc:
            return write_reference_failure(spec, Path(out_dir), str(exc))
        finally:
            saver.wait()  # a checkpoint being written is finished even when the run stops with an error
            gc.unfreeze()  # _train froze what lived at its start; a caller may train again in this process


def _train(spec: dict, data_dir: Path, out_dir: Path, state_dir: Path, subset, bias_out, saver, export_out) -> dict:
    s = Session(spec, data_dir, subset)
    fp = fingerprint(spec)
    saved = state_io.load(state_dir, fp)
    rng = None
    if saved is None:  # a fresh start: no model exported by an earlier spec's run may be shipped
        shutil.rmtree(state_dir / "export", ignore_errors=True)
    else:
        for name, part in s.parts().items():
            part.load_state_dict(saved[name])
        s.pos, s.metrics, s.preds = Position(**saved["position"]), saved["metrics"], saved["predictions"]
        rng, saved = saved["rng"], None  # the loaded tensors are freed before training
    s.model, s.optimizer = s.accelerator.prepare(s.model, s.optimizer)
    saver.guard(getattr(s.optimizer, "optimizer", s.optimizer))  # weights change only once the last state is copied
    if rng is not None:
        state_io.set_rng_state(rng)  # last: loading the model consumed random numbers
    s.model.train()
    gc.freeze()  # the imported modules and the model stay out of every collection from here on
    gc.enable()

    steps, bs, n, pos = spec["steps"], spec["batch_size"], len(s.train_data), s.pos
    ckpts = checkpoint_steps(steps, spec["checkpoints"])
    n_batches = -(-n // bs)
    last_log = (pos.step, time.perf_counter())
    debug = dict(spec.get("debug") or {})
    if os.environ.get("FTFT_DEBUG_KILL_AFTER_CHECKPOINT"):
        debug["kill_after_checkpoint"] = int(os.environ["FTFT_DEBUG_KILL_AFTER_CHECKPOINT"])
    loss_fn = loss_for_spec(spec)
    failure = None
    log.info("training %s on %d instances: %d steps of batch %d, %d checkpoints, %s",
             spec["model_source"], n, steps, bs, len(ckpts), device_name(s.device))  # fmt: skip
    startup = process_age()  # the job's fixed cost before its first step

    loader = iter(train_loader(s.train_data, bs, spec["seed"], spec["length_buckets"], s.device, pos.epoch, pos.batch))
    rows, host = next(loader) if pos.step < steps else (None, None)
    while pos.step < steps:
        batch = [b.to(s.device) for b in host]
        if debug.get("nan_at_step") == pos.step + 1:
            saver.before_update()
            with torch.no_grad():
                next(s.model.parameters()).fill_(float("nan"))
        train_step(s.model, batch, s.optimizer, s.accelerator, s.dynamics, s.stats, s.per_step_scheduler,
                   spec["max_grad_norm"], loss_fn)  # fmt: skip
        widths, sizes = np.array([b.width for b in batch]), np.array([len(b.labels) for b in batch])
        lengths = s.train_data.lengths[rows]
        pos.step, pos.batch = pos.step + 1, pos.batch + 1
        pos.tokens_seen += sum(b.n_tokens for b in batch)
        pos.padded_tokens_seen += int((sizes * widths).sum())
        pos.examples_seen += int(sizes.sum())
        pos.forward_flops += s.flops(lengths, lengths)
        pos.forward_flops_padded += s.flops(sizes * widths, widths)
        if pos.batch == n_batches:  # end of a pass over the training set (one host copy)
            s.dynamics.end_pass(np.arange(n))
            pos.epoch, pos.batch = pos.epoch + 1, 0
        if pos.step < steps:  # build the next batch while the device computes this one
            rows, host = next(loader)

        at_checkpoint = pos.step in ckpts
        if pos.step % spec["log_every"] == 0 or at_checkpoint:
            last_log = log_progress(pos.step, steps, s.stats, last_log)
        if not at_checkpoint:
            continue
        if bool(s.stats.nonfinite.item()):
            failure = f"non-finite training loss (NaN/inf) detected by step {pos.step}"
            log.error("%s; stopping", failure)
            break
        k = ckpts.index(pos.step) + 1
        checkpoint(s, k, len(ckpts))
        if k == spec.get("export_checkpoint"):
            export_model(s, state_dir / "export")
        parts = {name: part.state_dict() for name, part in s.parts().items()}
        saver.save(state_dir, {"fingerprint": fp, "position": asdict(s.pos) | s.totals(), **parts, "metrics": s.metrics,
                               "predictions": s.preds, "rng": state_io.rng_state()})  # fmt: skip
        if debug.get("kill_after_checkpoint") == k:
            raise SimulatedKill(f"debug: killed after checkpoint {k}")

    if pos.batch > 0:  # the last, partial pass
        s.dynamics.end_pass(epoch_permutation(spec["seed"], pos.epoch, n)[: pos.batch * bs])
    final = None
    if failure is None:
        final, failure = final_check(spec, s.metrics, s.evals)
    if failure is not None:
        log.warning("run failed: %s", failure)
    record = write_outputs(s, out_dir, failure, final, startup, Path(bias_out) if bias_out else None)
    saver.wait()
    if export_out is not None:  # copied, not moved: until the state is cleared a rerun can still ship it
        shutil.rmtree(export_out, ignore_errors=True)
        if (state_dir / "export").is_dir():
            shutil.copytree(state_dir / "export", export_out)
        else:
            Path(export_out).mkdir(parents=True)
    shutil.rmtree(state_dir, ignore_errors=True)  # the state, set-aside states with it
    log.info("wrote %s (status %s, %.1f s)", out_dir, record["status"], record["wall_time_s"])
    return record
