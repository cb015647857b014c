"""Benchmark: a training job's data path at MultiNLI size, before vs after the tokenize step.

392,702 synthetic sentence pairs of ~97 WordPiece tokens each (MultiNLI's size; the issue
measured ~105 tokens with a real BERT tokenizer), one tokenizer, a tiny BERT. Each path runs in a fresh process and reports:
  * time from process start to the first optimiser step, *excluding* the model load (which both
    paths share), and
  * the data's resident memory: peak RSS (VmHWM, reset after the model load) up to the first
    step minus RSS before the data was read.
Paths:
  * before: what every training job did until now: read the normalised parquet, tokenise every
    pair into per-instance Python lists (``encode`` below, the previous ``ftft.train.data.encode``),
    pad the first batch;
  * after: memory-map the tokenize step's Arrow output (``ftft.train.data.load_tokenized``, flat
    int32 ids with offsets), pad the first batch in pinned-capable host memory.
The tokenize step itself (one CPU job per task and tokenizer, not per training run) is timed
separately. Targets: after <= 5 s and <= 1 GB.

Usage: .venv/bin/python benchmarks/data_pipeline.py [--rows 392702] [--work /tmp/ftft-bench-data] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WORDS = [f"w{i:04d}" for i in range(1500)]  # all whole words in the 2,000-entry vocabulary


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    """Peak resident memory since the last ``reset_peak`` (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Forget the peak so far (the model load's), so the data's peak is measured alone."""
    Path("/proc/self/clear_refs").write_text("5")


def make_data(work: Path, rows: int) -> None:
    """train.parquet (rows pairs), eval/ev.parquet and a WordPiece tokenizer + tiny BERT in work/model."""
    import pandas as pd

    from ftft.data import schema
    from ftft.standins import build_demo_model

    rng = np.random.default_rng(0)
    a_len, b_len = rng.integers(55, 75, rows), rng.integers(25, 35, rows)
    ids = rng.integers(0, len(WORDS), (rows, 110))
    words = np.array(WORDS)[ids]
    text_a = [" ".join(w[:k]) for w, k in zip(words, a_len, strict=True)]
    text_b = [" ".join(w[75 : 75 + k]) for w, k in zip(words, b_len, strict=True)]
    df = pd.DataFrame({"uid": [f"u{i}" for i in range(rows)], "text_a": text_a, "text_b": text_b,
                       "label": rng.integers(0, 3, rows), "split": "train"})  # fmt: skip
    schema.write(df, work / "train.parquet", schema.NLI_LABELS, "bench")
    schema.write(df.head(500), work / "eval" / "ev.parquet", schema.NLI_LABELS, "bench")
    build_demo_model("bench", "bert", "tiny", WORDS + text_a[:2000], work / "model", num_labels=3)


def encode(df, tokenizer, max_length: int):
    """The previous ``ftft.train.data.encode``: per-instance lists of ids (the "before" path)."""
    text_a = df["text_a"].astype(str).tolist()
    text_b = df["text_b"].tolist()
    names = [n for n in tokenizer.model_input_names if n in ("input_ids", "token_type_ids")]
    enc = tokenizer(text_a, [str(b) for b in text_b], truncation=True, max_length=max_length)
    features = {n: [list(x) for x in enc[n]] for n in names}
    lengths = np.array([len(x) for x in features["input_ids"]], dtype=np.int64)
    return features, lengths, df["label"].to_numpy(np.int64), df["uid"].astype(str).tolist()


def pad_first_batch(features, lengths, bs: int) -> dict:
    width = int(lengths[:bs].max())
    out = {}
    for name, seqs in features.items():
        arr = np.zeros((bs, width), dtype=np.int64)
        for r in range(bs):
            arr[r, : lengths[r]] = seqs[r]
        out[name] = arr
    return out


def child(path: str, work: Path, t_start: float) -> dict:
    """One training job's start-up on one path; returns the measurements.

    ``t_start``: the parent's clock just before it started this process, so the time to the first
    step includes the interpreter start and every import (not the process's exit)."""
    import torch

    from ftft.modeling import load_tokenizer_and_model

    t_model = time.perf_counter()
    tok, model = load_tokenizer_and_model(str(work / "model"), 3)
    model_load = time.perf_counter() - t_model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    reset_peak()
    base = rss_mb()
    if path == "before":
        from ftft.data import schema

        df, _ = schema.read(work / "train.parquet")
        features, lengths, labels, _ = encode(df, tok, 128)
        inputs = {k: torch.from_numpy(v) for k, v in pad_first_batch(features, lengths, 32).items()}
        y = torch.from_numpy(labels[:32])
    else:
        from ftft.train.data import collate_host, load_tokenized

        data, _ = load_tokenized(work / "tokenized", ["ev"], tok.pad_token_id)
        batch = collate_host(data, np.arange(32))
        inputs, y = {k: v for k, v in batch.inputs.items() if k != "attention_mask"}, batch.labels
    loss = torch.nn.functional.cross_entropy(model(**inputs).logits, y)
    loss.backward()
    opt.step()
    first_step = time.time() - t_start
    return {"model_load_s": model_load, "to_first_step_s": first_step - model_load,
            "data_mb": max(rss_mb(), peak_mb()) - base, "rss_mb_after": rss_mb()}  # fmt: skip


def run_child(path: str, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", path, "--work", str(work), "--t-start", repr(time.time())]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=392_702)
    ap.add_argument("--work", default="/tmp/ftft-bench-data")
    ap.add_argument("--rebuild", action="store_true", help="regenerate the data even if --work has it")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--t-start", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.work)
    if args.child:
        print(json.dumps(child(args.child, work, args.t_start)))
        return
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "tokenized" / "stats.json").is_file() or args.rebuild:
        t = time.perf_counter()
        make_data(work, args.rows)
        print(f"data: {args.rows:,} pairs ({time.perf_counter() - t:.0f} s to generate)")
        from ftft.tokenize import tokenize_task

        t = time.perf_counter()
        tokenize_task(work / "train.parquet", work / "eval", ["ev"], str(work / "model"), 128, work / "tokenized")
        print(f"tokenize step (once per task and tokenizer): {time.perf_counter() - t:.1f} s")
    stats = json.loads((work / "tokenized" / "stats.json").read_text())["train"]
    print(f"training set: {stats['rows']:,} pairs, {stats['tokens_per_example']:.1f} tokens per pair")
    before, after = run_child("before", work), run_child("after", work)
    for name, r in (("before", before), ("after", after)):
        print(f"{name:6s}: {r['to_first_step_s']:6.1f} s to the first step (without the {r['model_load_s']:.1f} s model load), "
              f"data {r['data_mb']:7.0f} MB resident")  # fmt: skip
    print(
        f"time ratio before / after: {before['to_first_step_s'] / after['to_first_step_s']:.1f}x "
        f"(target: after <= 5 s); memory ratio: {before['data_mb'] / max(after['data_mb'], 1):.0f}x (target: after <= 1 GB)"
    )


if __name__ == "__main__":
    main()
