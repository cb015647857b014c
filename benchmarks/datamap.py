"""Benchmark: vectorised data map vs a per-instance Python implementation.

Generates MNLI-size training dynamics (392,702 instances x 15 epochs x 3 classes, float16, as
in dynamics.npz), then times
  * ftft.datamap.compute + categorize (vectorised numpy), with and without loading the .npz;
  * a per-instance implementation in the style of allenai/cartography
    (cartography/selection/train_dy_filtering.py::compute_train_dy_metrics): a Python loop
    over instances that builds a dict uid -> list of per-epoch p_true / correctness values,
    then np.mean / np.std per instance, then a pandas sort for the categories.
The per-instance version is timed on a random sample (default 20,000 instances) and
extrapolated linearly to N (its cost is linear in N); pass --full-baseline to time it on all N.

Usage: .venv/bin/python benchmarks/datamap.py [--n 392702] [--epochs 15] [--sample 20000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ftft import datamap


def synthetic_dynamics(n: int, epochs: int, classes: int, seed: int = 0) -> datamap.Dynamics:
    """Dynamics with a realistic spread: per-instance difficulty, p_true drifting over epochs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    difficulty = rng.normal(0.0, 2.0, n)
    speed = rng.uniform(0.1, 1.0, n)
    t = np.arange(1, epochs + 1)[:, None]
    logit_true = -difficulty[None, :] + speed[None, :] * t + rng.normal(0, 0.5, (epochs, n))
    logits = rng.normal(0, 1.0, (epochs, n, classes)).astype(np.float32)
    logits[:, np.arange(n), labels] = logit_true
    logits -= logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    uids = np.array([f"mnli-train-{i:06d}" for i in range(n)])
    return datamap.Dynamics(uids, labels.astype(np.int64), probs.astype(np.float16), np.ones((epochs, n), bool), epochs)


def per_instance_map(dyn: datamap.Dynamics, idx: np.ndarray, q: float) -> pd.DataFrame:
    """allenai/cartography-style: Python loops and dicts, numpy per instance."""
    probs = dyn.probs
    uids = dyn.uids.tolist()
    labels = dyn.labels.tolist()
    # the per-epoch records a training-dynamics log provides: one (uid, label, probs) per instance per epoch
    gold_probs: dict[str, list[float]] = {}
    correct: dict[str, list[float]] = {}
    for e in range(dyn.complete_epochs):
        pe = probs[e]
        for i in idx:
            uid = uids[i]
            p = pe[i]
            gold = labels[i]
            gold_probs.setdefault(uid, []).append(float(p[gold]))
            correct.setdefault(uid, []).append(float(int(np.argmax(p)) == gold))
    rows = []
    for uid in gold_probs:
        g = np.array(gold_probs[uid])
        c = np.array(correct[uid])
        rows.append(
            {
                "uid": uid,
                "confidence": np.mean(g),
                "variability": np.std(g),
                "correctness": np.mean(c),
            }
        )
    df = pd.DataFrame(rows)
    k = int(round(q * len(df)))
    amb = set(df.sort_values("variability", ascending=False).head(k)["uid"])
    hard = set(df.sort_values("confidence", ascending=True).head(k)["uid"])
    df["ambiguous"] = df["uid"].isin(amb)
    df["hard_to_learn"] = df["uid"].isin(hard)
    df["easy"] = ~(df["ambiguous"] | df["hard_to_learn"])
    return df


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=392_702)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--q", type=float, default=0.33)
    ap.add_argument("--sample", type=int, default=20_000, help="instances the per-instance baseline is timed on")
    ap.add_argument("--full-baseline", action="store_true", help="time the per-instance baseline on all N")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    t = time.perf_counter()
    dyn = synthetic_dynamics(args.n, args.epochs, args.classes)
    print(
        f"generated dynamics: N={args.n:,} E={args.epochs} C={args.classes} float16 ({time.perf_counter() - t:.1f} s)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dynamics.npz"
        datamap.save_dynamics(path, dyn.uids, dyn.labels, dyn.probs, dyn.seen, dyn.complete_epochs)
        t_load = best_of(lambda: datamap.load_dynamics(path), args.repeat)
        t_incl = best_of(lambda: datamap.categorize(datamap.compute(datamap.load_dynamics(path)), args.q), args.repeat)
        zpath = Path(tmp) / "dynamics_compressed.npz"  # what the training engine writes
        np.savez_compressed(
            zpath, uids=dyn.uids, labels=dyn.labels, probs=dyn.probs, seen=dyn.seen, complete_epochs=dyn.complete_epochs
        )
        t_zincl = best_of(
            lambda: datamap.categorize(datamap.compute(datamap.load_dynamics(zpath)), args.q), args.repeat
        )
    t_vec = best_of(lambda: datamap.categorize(datamap.compute(dyn), args.q), args.repeat)
    print(f"vectorised compute+categorize (in memory):     {t_vec:.3f} s  (best of {args.repeat})")
    print(f"load_dynamics alone:                           {t_load:.3f} s")
    print(f"load_dynamics + compute + categorize:          {t_incl:.3f} s  (np.savez file)")
    print(f"load_dynamics + compute + categorize:          {t_zincl:.3f} s  (np.savez_compressed file)")

    n_base = args.n if args.full_baseline else min(args.sample, args.n)
    idx = np.sort(np.random.default_rng(1).choice(args.n, n_base, replace=False))
    t = time.perf_counter()
    per_instance_map(dyn, idx, args.q)
    t_sample = time.perf_counter() - t
    t_base = t_sample * args.n / n_base
    how = (
        "measured on all N"
        if n_base == args.n
        else f"{t_sample:.2f} s on {n_base:,} instances, extrapolated x{args.n / n_base:.1f}"
    )
    print(f"per-instance Python (cartography-style):       {t_base:.1f} s  ({how})")
    print(f"speed-up (per-instance / vectorised in memory): {t_base / t_vec:.0f}x")

    # sanity: the two implementations agree on the sample's metrics
    vec = datamap.compute(dyn).iloc[idx].reset_index(drop=True)
    ref = per_instance_map(dyn, idx[:2000], args.q)
    merged = vec.merge(ref, on="uid", suffixes=("", "_ref"))
    for col in datamap.METRICS:
        assert np.allclose(merged[col], merged[f"{col}_ref"]), col
    print(f"metrics agree with the per-instance version on {len(merged):,} instances")


if __name__ == "__main__":
    main()
