"""Benchmark: the engine's training step vs a bare PyTorch loop, on the same model and batches.

Both loops start from the same tiny random-init BERT (copies of one model), the same AdamW +
linear-warmup schedule and the same pre-built, dynamically padded batches (made once with the
engine's ``collate``). Timed per step:
  * engine: ``ftft.train.engine.train_step`` (Accelerator backward, gradient clipping,
    per-example loss via engine.example_losses, training-dynamics recording into the device buffer,
    device-side loss accumulation);
  * bare:   forward, cross-entropy, backward, (the same clipping), optimizer step, scheduler step.
Rounds alternate between the two (to share any drift of the machine); the best round of each
is reported, with steps/s and the ratio engine / bare (target >= 0.95).

Usage: .venv/bin/python benchmarks/train_step.py [--steps 100] [--rounds 5] [--batch-size 32]
       [--seq-len 64] [--hidden 32] [--layers 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from common import random_encoded

from ftft.train import engine
from ftft.train.data import collate

N_CLASSES = 3
VOCAB = 200


def tiny_model(hidden: int, layers: int):
    from transformers import AutoModelForSequenceClassification, BertConfig

    from ftft.modeling import silence_transformers

    silence_transformers()
    cfg = BertConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=256,
        num_labels=N_CLASSES,
    )
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(cfg)


def make_batches(n_batches: int, batch_size: int, seq_len: int, device) -> list:
    """Random token ids with lengths in [seq_len/2, seq_len], padded per batch by the engine."""
    rng = np.random.default_rng(0)
    n = n_batches * batch_size
    data = random_encoded(n, rng.integers(seq_len // 2, seq_len + 1, n), VOCAB, N_CLASSES)
    return [collate(data, np.arange(b * batch_size, (b + 1) * batch_size), device) for b in range(n_batches)], n


def optimizer_and_scheduler(model, steps: int):
    spec = {"weight_decay": 0.0, "optimizer": "adamw", "lr": 1e-3, "scheduler": "linear", "warmup_ratio": 0.1}
    spec.update(steps=steps, adam_eps=1e-6)
    opt = engine.make_optimizer(model, spec)
    return opt, engine.make_scheduler(opt, spec)


def time_engine(model, batches, n, steps, max_grad_norm) -> float:
    accelerator = engine.make_accelerator({"mixed_precision": "auto"})
    opt, sched = optimizer_and_scheduler(model, steps)
    model, opt = accelerator.prepare(model, opt)
    dynamics = engine.DynamicsRecorder(n, N_CLASSES, accelerator.device)
    stats = engine.LossStats(accelerator.device)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        batch = batches[step % len(batches)]
        engine.train_step(model, [batch], opt, accelerator, dynamics, stats, sched, max_grad_norm)
    stats.pop_mean()  # the one sync, as at a log line
    return steps / (time.perf_counter() - start)


def time_bare(model, batches, steps, max_grad_norm) -> float:
    opt, sched = optimizer_and_scheduler(model, steps)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        batch = batches[step % len(batches)]
        logits = model(**batch.inputs).logits
        loss = F.cross_entropy(logits, batch.labels)
        loss.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    loss.item()
    return steps / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-grad-norm", type=float, default=1.0, help="0: no clipping (both loops)")
    args = ap.parse_args()

    with engine.torch_settings(args.threads):
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        base = tiny_model(args.hidden, args.layers)
        batches, n = make_batches(20, args.batch_size, args.seq_len, device)
        params = sum(p.numel() for p in base.parameters())
        print(
            f"model: BERT hidden {args.hidden}, {args.layers} layers, {params:,} params; batch {args.batch_size} "
            f"x <= {args.seq_len} tokens; {args.steps} steps x {args.rounds} rounds; {device}, {args.threads} threads"
        )
        time_bare(copy.deepcopy(base), batches, 20, args.max_grad_norm)  # warm-up
        time_engine(copy.deepcopy(base), batches, n, 20, args.max_grad_norm)
        eng, bare = [], []
        for r in range(args.rounds):
            bare.append(time_bare(copy.deepcopy(base), batches, args.steps, args.max_grad_norm))
            eng.append(time_engine(copy.deepcopy(base), batches, n, args.steps, args.max_grad_norm))
            print(f"round {r + 1}: engine {eng[-1]:.1f} steps/s, bare {bare[-1]:.1f} steps/s")
    print(f"engine step: {max(eng):.1f} steps/s (best round)")
    print(f"bare loop:   {max(bare):.1f} steps/s (best round)")
    print(f"ratio engine / bare: {max(eng) / max(bare):.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
