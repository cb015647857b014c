"""Benchmark: padding of length-bucketed micro-batches (``training.length_buckets``) vs whole padded batches.

At MultiNLI-like lengths (``common.mnli_like_lengths``: mean ~45 tokens, long tail to 300), batch 32:
  * padded tokens per example of one pass, for 1 (today: each batch padded to its longest), 2, 3,
    4 micro-batches, with widths as on the CPU and rounded up to 8 as on CUDA; target ratio
    (default buckets / 1) <= 0.6; and of evaluation batches of 128, in file order vs length-sorted;
  * the engine's training step (``engine.train_step``, AdamW, clipping, dynamics) on the same
    batches for each setting, seconds per step on this machine (a small DeBERTa-v3 shape at random
    init; direction only on a CPU: the GPU check, ``benchmarks/gpu.py``, times the real shapes).

Usage: .venv/bin/python benchmarks/padding.py [--examples 400000] [--steps 6] [--hidden 256] [--layers 4]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from common import mnli_like_lengths, model_config, random_encoded, random_model

from ftft.tokenize import padded_per_example, padded_widths
from ftft.train import engine
from ftft.train.data import collate, epoch_permutation, micro_batches

DEFAULT = 3  # the schema default of training.length_buckets


def step_seconds(model, data, buckets: int, args) -> float:
    spec = {"mixed_precision": "no", "weight_decay": 0.0, "optimizer": "adamw", "lr": 2e-5, "adam_eps": 1e-6,
            "scheduler": "linear", "warmup_ratio": 0.1, "steps": args.steps + 1}  # fmt: skip
    accelerator = engine.make_accelerator(spec)
    opt = engine.make_optimizer(model, spec)
    sched = engine.make_scheduler(opt, spec)
    dyn, stats = engine.DynamicsRecorder(len(data), 3, accelerator.device), engine.LossStats(accelerator.device)
    perm, cpu = epoch_permutation(0, 0, len(data)), torch.device("cpu")
    batches = [[collate(data, g, cpu) for g in micro_batches(data.lengths, perm[b * 32 : (b + 1) * 32], buckets)]
               for b in range(args.steps + 1)]  # fmt: skip
    model.train()
    engine.train_step(model, batches[0], opt, accelerator, dyn, stats, sched, 1.0)  # warm-up
    start = time.perf_counter()
    for batch in batches[1:]:
        engine.train_step(model, batch, opt, accelerator, dyn, stats, sched, 1.0)
    stats.pop_mean()
    return (time.perf_counter() - start) / args.steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=400_000)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    lengths = mnli_like_lengths(args.examples)
    real = lengths.mean()
    print(f"{args.examples:,} MultiNLI-like lengths: {real:.1f} real tokens per example, batch 32")
    base = {m: padded_per_example(lengths, 32, buckets=1, multiple=m) for m in (1, 8)}
    for k in (1, 2, 3, 4):
        cpu, cuda = (padded_per_example(lengths, 32, buckets=k, multiple=m) for m in (1, 8))
        print(f"length_buckets {k}: {cpu:6.1f} padded tokens per example (ratio {cpu / base[1]:.3f}, padded/real "
              f"{cpu / real:.2f}); widths to 8 (CUDA): {cuda:6.1f} (ratio {cuda / base[8]:.3f})")  # fmt: skip
    ratio = padded_per_example(lengths, 32, buckets=DEFAULT) / base[1]
    print(f"default length_buckets {DEFAULT}: ratio {ratio:.3f} (target <= 0.6)")
    order, sort = np.arange(len(lengths)), np.argsort(lengths, kind="stable")
    file, by_length = (
        float((w * n).sum()) / len(lengths) for w, n in (padded_widths(lengths, p, 128) for p in (order, sort))
    )
    print(f"evaluation, batch 128: {file:.1f} padded tokens per example in file order, {by_length:.1f} length-sorted")

    with engine.torch_settings(args.threads):
        heads = max(1, args.hidden // 64)
        cfg = model_config("deberta-v3-small", hidden_size=args.hidden, num_hidden_layers=args.layers,
                           num_attention_heads=heads, intermediate_size=4 * args.hidden, vocab_size=1000)  # fmt: skip
        model = random_model(cfg)
        data = random_encoded(32 * (args.steps + 1), lengths[: 32 * (args.steps + 1)], 1000, 3)
        print(f"train step, DeBERTa-v3 shape hidden {args.hidden}, {args.layers} layers, "
              f"{sum(p.numel() for p in model.parameters()):,} params, {args.steps} steps, {args.threads} thread(s):")  # fmt: skip
        times = {k: step_seconds(copy.deepcopy(model), data, k, args) for k in (1, 2, 3, 4)}
    for k, t in times.items():
        print(f"length_buckets {k}: {t * 1000:7.1f} ms per step ({times[1] / t:.2f}x today's)")


if __name__ == "__main__":
    main()
