"""Benchmark: training tokens/s of the engine vs Hugging Face ``Trainer``, same model and data, on one GPU.

Model: a random-init DeBERTa-v3-small shape (6 layers, hidden 768, 12 heads, vocab 128,100,
relative attention as the hub config), 3 labels, bf16 autocast, batch 32; data: 8,192 pairs
with MultiNLI-like lengths (~45 tokens, long tail, max 300), padded per batch to its longest.
  * engine: ``ftft.train.engine.train_step`` fed as the engine feeds it: batches built on the
    host in pinned memory while the previous step runs, copied ``non_blocking``
    (``ftft.train.data.collate_host`` / ``Batch.to``), dynamics recorded on the device.
  * trainer: ``transformers.Trainer`` (bf16, AdamW, linear warm-up, pinned DataLoader, the same
    padding), no logging, no saving, no evaluation.
Each is timed from step ``--warmup`` to ``--warmup + --steps`` (CUDA synchronised at both ends);
real (non-padding) tokens per second and the ratio engine / Trainer are printed (target >= 1.0).
Ready to run in a few minutes on one GPU: ``python benchmarks/gpu.py``. ``--tiny`` runs a small
model on whatever device there is (a smoke test of the script on a CPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import mnli_like_lengths, random_encoded  # noqa: E402

from ftft.train import engine, schedule  # noqa: E402
from ftft.train.data import batch_indices, collate_host, epoch_permutation  # noqa: E402
from ftft.train.dynamics import DynamicsRecorder  # noqa: E402

N_CLASSES = 3


def deberta_small(tiny: bool):
    from transformers import AutoModelForSequenceClassification, DebertaV2Config

    from ftft.modeling import silence_transformers

    silence_transformers()
    dims = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, vocab_size=1000)
    if not tiny:
        dims = dict(
            hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072, vocab_size=128100
        )
    cfg = DebertaV2Config(
        **dims, max_position_embeddings=512, relative_attention=True, pos_att_type=["p2c", "c2p"],
        position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False,
        max_relative_positions=-1, type_vocab_size=0, layer_norm_eps=1e-7, num_labels=N_CLASSES,
    )  # fmt: skip
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(cfg), dims["vocab_size"]


def engine_tokens_per_s(model, data, args) -> float:
    spec = {"mixed_precision": "auto", "weight_decay": 0.0, "optimizer": "adamw", "lr": 2e-5, "adam_eps": 1e-6,
            "scheduler": "linear", "warmup_ratio": 0.1, "steps": args.warmup + args.steps}  # fmt: skip
    accelerator = engine.make_accelerator(spec)
    opt = engine.make_optimizer(model, spec)
    sched = schedule.make_scheduler(opt, spec)
    model, opt = accelerator.prepare(model, opt)
    device = accelerator.device
    dyn, stats = DynamicsRecorder(len(data), N_CLASSES, device), engine.LossStats(device)
    perm = epoch_permutation(0, 0, len(data))
    pin = device.type == "cuda"
    model.train()
    host = collate_host(data, batch_indices(perm, 0, args.batch_size), pin)
    tokens, t0 = 0, None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if pin:
                torch.cuda.synchronize()
            t0, tokens = time.perf_counter(), 0
        batch = host.to(device)
        engine.train_step(model, batch, opt, accelerator, dyn, stats, sched, 1.0)
        tokens += batch.n_tokens
        host = collate_host(
            data, batch_indices(perm, (step + 1) % (len(data) // args.batch_size), args.batch_size), pin
        )
    stats.pop_mean()
    if pin:
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - t0)


def trainer_tokens_per_s(model, data, args) -> float:
    import datasets
    from transformers import Trainer, TrainerCallback, TrainingArguments

    rows = {"input_ids": [data.ids[o : o + n].tolist() for o, n in zip(data.offsets, data.lengths, strict=True)],
            "labels": data.labels.tolist()}  # fmt: skip
    ds = datasets.Dataset.from_dict(rows)
    counted = {"tokens": 0}

    def collate(features):
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.zeros((len(features), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, f in enumerate(features):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, : len(f["input_ids"])] = 1
        counted["tokens"] += int(mask.sum())
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["labels"] for f in features])}

    marks = {}

    class Clock(TrainerCallback):
        def on_step_end(self, targs, state, control, **kw):
            if state.global_step in (args.warmup, args.warmup + args.steps):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                marks[state.global_step] = (time.perf_counter(), counted["tokens"])

    cuda = torch.cuda.is_available()
    targs = TrainingArguments(
        output_dir="/tmp/ftft-gpu-bench", per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup + args.steps, learning_rate=2e-5, warmup_steps=int(0.1 * (args.warmup + args.steps)),
        adam_epsilon=1e-6,
        bf16=cuda and torch.cuda.is_bf16_supported(), logging_strategy="no", save_strategy="no", report_to=[],
        dataloader_pin_memory=cuda, disable_tqdm=True, use_cpu=not cuda, max_grad_norm=1.0,
    )  # fmt: skip
    Trainer(model=model, args=targs, train_dataset=ds, data_collator=collate, callbacks=[Clock()]).train()
    (t0, k0), (t1, k1) = marks[args.warmup], marks[args.warmup + args.steps]
    # tokens counted at collation run ahead of the steps by the loader's prefetch: same offset at both ends
    return (k1 - k0) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--examples", type=int, default=8192)
    ap.add_argument("--tiny", action="store_true", help="a small model (a CPU smoke test of this script)")
    args = ap.parse_args()
    device = "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    lengths = mnli_like_lengths(args.examples)
    with engine.torch_settings(1 if not torch.cuda.is_available() else torch.get_num_threads()):
        model, vocab = deberta_small(args.tiny)
        data = random_encoded(args.examples, lengths, vocab, N_CLASSES)
        print(f"model: {sum(p.numel() for p in model.parameters()):,} params; batch {args.batch_size}; "
              f"mean {lengths.mean():.1f} tokens per example; {args.steps} timed steps after {args.warmup}; {device}")  # fmt: skip
        import copy

        eng = engine_tokens_per_s(copy.deepcopy(model), data, args)
        print(f"engine:  {eng:,.0f} tokens/s")
        hf = trainer_tokens_per_s(copy.deepcopy(model), data, args)
        print(f"Trainer: {hf:,.0f} tokens/s")
    print(f"ratio engine / Trainer: {eng / hf:.3f} (target >= 1.0)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
