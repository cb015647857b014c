"""The GPU check, one command: training tokens/s of the engine vs Hugging Face ``Trainer``, per padding mode.

For random-init DeBERTaV3-Large, ELECTRA-Large and DeBERTaV3-Small shapes (``common.SHAPES``, the hub
config values: no network), 3 labels, batch 32, on 8,192 pairs of MultiNLI-like lengths (mean ~45
tokens, long tail to 300):
  * engine: ``ftft.train.engine.train_step`` fed as the engine feeds it (batches built on the host in
    pinned memory while the previous step runs, copied ``non_blocking``; each batch as at most
    ``length_buckets`` length-sorted micro-batches, widths padded to 8; fused AdamW; bf16 autocast;
    inside ``engine.torch_settings``), for every ``--buckets`` setting: real tokens/s, padded / real
    tokens, seconds per step, peak GPU memory;
  * trainer: ``transformers.Trainer`` with its own defaults (bf16 as the engine, the same batch size,
    learning rate and batches padded to their longest), in a separate process;
  * checkpoint: seconds the training thread is blocked per checkpoint for the state of the first
    shape (weights + 2 AdamW moments), saved on the training thread (before) vs the engine's
    ``BackgroundSaver`` (after), ``benchmarks/checkpoint.py``;
  * sync check: a few engine steps (default ``length_buckets``) under
    ``torch.cuda.set_sync_debug_mode("error")``: any host synchronisation in the hot loop raises.
Each timing runs from step ``--warmup`` to ``--warmup + --steps`` (CUDA synchronised at both ends).
Writes JSON (``--out``) and prints a one-line summary. About 4 minutes on one H100. Without CUDA it
says so and exits 0; ``--tiny`` runs small shapes on whatever device there is (a smoke test).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHAPES, mnli_like_lengths, model_config, random_encoded, random_model  # noqa: E402

N_CLASSES = 3
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, vocab_size=1000,
            embedding_size=64)  # fmt: skip
DEFAULT_BUCKETS = 3  # the schema default of training.length_buckets


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    ap.add_argument("--buckets", nargs="+", type=int, default=[1, 2, 3, 4], help="length_buckets settings to time")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--examples", type=int, default=8192)
    ap.add_argument("--checkpoints", type=int, default=2, help="checkpoints timed for the stall (0: skip)")
    ap.add_argument("--out", default="gpu_benchmark.json")
    ap.add_argument("--tiny", action="store_true", help="small shapes on any device (a smoke test of this script)")
    ap.add_argument("--trainer", choices=list(SHAPES), help=argparse.SUPPRESS)  # the Trainer process
    return ap.parse_args(argv)


def build(shape: str, tiny: bool):
    """(config, random-init model on the GPU when there is one)."""
    cfg = model_config(shape, N_CLASSES, **(TINY if tiny else {}))
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        return cfg, random_model(cfg)


def cuda_sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def engine_run(model, data, buckets: int, args, sync_check: bool = False) -> dict:
    from ftft.train import engine
    from ftft.train.data import collate_host, epoch_permutation, micro_batches

    total = args.warmup + args.steps
    spec = {"mixed_precision": "auto", "weight_decay": 0.0, "optimizer": "adamw", "lr": 2e-5, "adam_eps": 1e-6,
            "scheduler": "linear", "warmup_ratio": 0.1, "steps": total + 5}  # fmt: skip
    accelerator = engine.make_accelerator(spec)
    opt = engine.make_optimizer(model, spec)
    sched = engine.make_scheduler(opt, spec)
    model, opt = accelerator.prepare(model, opt)
    device = accelerator.device
    dyn, stats = engine.DynamicsRecorder(len(data), N_CLASSES, device), engine.LossStats(device)
    perm, pin, multiple = epoch_permutation(0, 0, len(data)), device.type == "cuda", engine.pad_multiple(device)
    n_batches = len(data) // args.batch_size

    def host_batch(b):
        first = (b % n_batches) * args.batch_size
        idx = perm[first : first + args.batch_size]
        return [collate_host(data, g, pin, multiple) for g in micro_batches(data.lengths, idx, buckets, multiple)]

    def steps(first, n):
        nonlocal host
        real = padded = 0
        for b in range(first, first + n):
            batch = [m.to(device) for m in host]
            engine.train_step(model, batch, opt, accelerator, dyn, stats, sched, 1.0)
            real += sum(m.n_tokens for m in batch)
            padded += sum(m.width * len(m.labels) for m in batch)
            host = host_batch(b + 1)
        return real, padded

    model.train()
    host = host_batch(0)
    steps(0, args.warmup)
    cuda_sync()
    if pin:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    real, padded = steps(args.warmup, args.steps)
    stats.pop_mean()
    cuda_sync()
    seconds = time.perf_counter() - t0
    out = {"tokens_per_s": real / seconds, "step_s": seconds / args.steps, "padded_per_real": padded / real,
           "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if pin else None}  # fmt: skip
    if sync_check and pin:
        torch.cuda.set_sync_debug_mode("error")
        try:
            steps(total, 5)
            out["sync_check"] = "ok: no host synchronisation in 5 steps"
        except RuntimeError as exc:
            out["sync_check"] = f"FAILED: {str(exc).splitlines()[0]}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return out


def trainer_run(shape: str, args) -> dict:
    """``transformers.Trainer`` with its own defaults (this process has no engine settings)."""
    import datasets
    from transformers import Trainer, TrainerCallback, TrainingArguments

    cfg, model = build(shape, args.tiny)
    data = random_encoded(args.examples, mnli_like_lengths(args.examples), cfg.vocab_size, N_CLASSES)
    rows = {"input_ids": [data.ids[o : o + n].tolist() for o, n in zip(data.offsets, data.lengths, strict=True)],
            "labels": data.labels.tolist()}  # fmt: skip
    counted, marks, total = {"tokens": 0}, {}, args.warmup + args.steps

    def collate(features):
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.zeros((len(features), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, f in enumerate(features):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, : len(f["input_ids"])] = 1
        counted["tokens"] += int(mask.sum())
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["labels"] for f in features])}

    class Clock(TrainerCallback):
        def on_step_end(self, targs, state, control, **kw):
            if state.global_step in (args.warmup, total):
                cuda_sync()
                marks[state.global_step] = (time.perf_counter(), counted["tokens"])

    cuda = torch.cuda.is_available()
    targs = TrainingArguments(output_dir="/tmp/ftft-gpu-bench", per_device_train_batch_size=args.batch_size,
                              max_steps=total, learning_rate=2e-5, bf16=cuda and torch.cuda.is_bf16_supported(),
                              save_strategy="no", report_to=[], disable_tqdm=True, use_cpu=not cuda)  # fmt: skip
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(model=model, args=targs, train_dataset=datasets.Dataset.from_dict(rows), data_collator=collate,
                      callbacks=[Clock()])  # fmt: skip
    trainer.train()
    (t0, k0), (t1, k1) = marks[args.warmup], marks[total]
    # tokens counted at collation run ahead of the steps by the loader's prefetch: the same offset at both ends
    return {"tokens_per_s": (k1 - k0) / (t1 - t0), "optim": str(targs.optim),
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}  # fmt: skip


def trainer_process(shape: str, args) -> dict:
    argv = [sys.executable, __file__, "--trainer", shape, "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--batch-size", str(args.batch_size), "--examples", str(args.examples)] + (["--tiny"] if args.tiny else [])  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.trainer:
        print(json.dumps(trainer_run(args.trainer, args)))
        return 0
    if not torch.cuda.is_available() and not args.tiny:
        print("benchmarks/gpu.py: no CUDA device on this machine; skipped (run it where a GPU is: "
              "python benchmarks/gpu.py; --tiny runs a smoke test of the script here)")  # fmt: skip
        return 0
    from checkpoint import stalls

    from ftft.train import engine

    device = f"cuda: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu"
    import transformers

    report = {"device": device, "torch": torch.__version__, "transformers": transformers.__version__,
              "batch_size": args.batch_size, "steps": args.steps, "shapes": {}}  # fmt: skip
    lengths = mnli_like_lengths(args.examples)
    with engine.torch_settings(torch.get_num_threads()):
        for shape in args.shapes:
            cfg, model = build(shape, args.tiny)
            data = random_encoded(args.examples, lengths, cfg.vocab_size, N_CLASSES)
            runs = {}
            for k in args.buckets:
                runs[k] = engine_run(copy.deepcopy(model), data, k, args, k == DEFAULT_BUCKETS)
                gc.collect()  # the run's model and optimiser are gone before the next one's peak memory
            report["shapes"][shape] = {"params": sum(p.numel() for p in model.parameters()), "engine": runs}
            del model
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            print(f"{shape}: " + ", ".join(f"buckets {k} {r['tokens_per_s']:,.0f} tok/s" for k, r in runs.items()),
                  flush=True)  # fmt: skip
    for shape in args.shapes:
        result = report["shapes"][shape]
        result["trainer"] = trainer_process(shape, args)
        if "tokens_per_s" in result["trainer"]:
            best = max(r["tokens_per_s"] for r in result["engine"].values())
            result["best_engine_over_trainer"] = best / result["trainer"]["tokens_per_s"]
    if args.checkpoints:
        first = report["shapes"][args.shapes[0]]
        step_s = first["engine"][max(first["engine"])]["step_s"]
        report["checkpoint"] = stalls(first["params"], args.checkpoints, "/tmp/ftft-gpu-ckpt",
                                      "cuda" if torch.cuda.is_available() else "cpu", step_s)  # fmt: skip
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(summary(report) + f" (JSON: {args.out})")
    return 0


def summary(report: dict) -> str:
    parts = []
    for shape, r in report["shapes"].items():
        eng = r["engine"]
        best = max(eng, key=lambda k: eng[k]["tokens_per_s"])
        ratio = r.get("best_engine_over_trainer")
        parts.append(f"{shape}: engine {eng[best]['tokens_per_s']:,.0f} tok/s (buckets {best}; "
                     + ("Trainer failed" if ratio is None else f"{ratio:.2f}x Trainer") + ")")  # fmt: skip
        parts += [f"sync {v['sync_check']}" for v in eng.values() if "sync_check" in v][:1]
    if "checkpoint" in report:
        c = report["checkpoint"]
        parts.append(f"checkpoint blocks {c['after_s']:.2f} s (was {c['before_s']:.2f} s)")
    return f"gpu check on {report['device']}: " + "; ".join(parts)


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
