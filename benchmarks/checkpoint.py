"""Benchmark: how long a checkpoint blocks the training thread, before (``state.save`` on the training
thread) and after (``state.BackgroundSaver``: a copy to host buffers, written by a background thread).

The state is what the engine saves for a model of ``--params`` parameters (DeBERTaV3-Large: 435M):
the fp32 weights and AdamW's two fp32 moments as ~1M-element tensors, on the GPU when there is one.
After the save the training thread runs the next step's forward and backward (matmuls for
``--step-s`` seconds; they only read the weights), then the optimiser step's pre-hook (it waits for
the copy; on CUDA the device waits, not the thread) and an in-place update of every weight.
Reported: seconds the training thread is blocked per checkpoint, before and after (best over the
checkpoints; the first ``BackgroundSaver`` checkpoint allocates its buffers), and the background
copy + write's own time. Target: blocked after <= 10% of before.

Usage: .venv/bin/python benchmarks/checkpoint.py [--params 400e6] [--checkpoints 3] [--dir /tmp/ftft-ckpt]
"""

from __future__ import annotations

import argparse
import shutil
import time

import torch

from ftft.train import state as state_io


def engine_like_state(params: float, device: str) -> dict:
    n = max(1, int(params) // 2**20)
    weights = [torch.randn(2**20, device=device) for _ in range(n)]
    optimizer = {"state": {i: {"step": torch.tensor(1.0), "exp_avg": torch.randn_like(w),
                               "exp_avg_sq": torch.rand_like(w)} for i, w in enumerate(weights)},
                 "param_groups": [{"lr": 2e-5, "params": list(range(n))}]}  # fmt: skip
    return {"fingerprint": "bench", "position": {"step": 0}, "optimizer": optimizer,
            "model": {f"layer.{i}.weight": w for i, w in enumerate(weights)}}  # fmt: skip


def forward_backward(seconds: float, device: str) -> float:
    """Stand-in for a step's forward and backward passes (they read the weights only): matmuls for ``seconds``."""
    a, start = torch.randn(256, 256, device=device), time.perf_counter()
    while time.perf_counter() - start < seconds:
        a = torch.tanh(a @ a)
        if device == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - start


def stalls(params: float, checkpoints: int, folder, device: str, step_s: float) -> dict:
    """{'before_s', 'after_s', 'write_s'}: best over ``checkpoints`` (module docstring)."""
    state = engine_like_state(params, device)
    weights = list(state["model"].values())
    before, after, write = [], [], []
    saver = state_io.BackgroundSaver()
    for _ in range(checkpoints):
        t = time.perf_counter()
        state_io.save(folder, state)
        before.append(time.perf_counter() - t)
        t = time.perf_counter()
        saver.save(folder, state)
        blocked = time.perf_counter() - t
        forward_backward(step_s, device)
        t2 = time.perf_counter()
        saver.before_update()  # the optimiser step's pre-hook
        for w in weights:
            w.add_(1e-3)
        if device == "cuda":
            torch.cuda.synchronize()  # the update waited for the copy on the device: include it
        after.append(blocked + time.perf_counter() - t2)
        saver.wait()
        write.append(time.perf_counter() - t)
    shutil.rmtree(folder, ignore_errors=True)
    return {"params": len(weights) * 2**20, "before_s": min(before), "after_s": min(after),
            "after_max_s": max(after), "write_s": min(write)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=float, default=400e6)
    ap.add_argument("--checkpoints", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/ftft-ckpt")
    ap.add_argument("--step-s", type=float, default=2.0, help="forward + backward time of the training step")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    r = stalls(args.params, args.checkpoints, args.dir, device, args.step_s)
    print(f"state of {r['params'] / 1e6:.0f}M parameters (weights + 2 AdamW moments, {12 * r['params'] / 2**30:.1f} GiB) "
          f"on {device}, {args.checkpoints} checkpoints (best):")  # fmt: skip
    print(f"before: training thread blocked {r['before_s']:.2f} s per checkpoint (save on the training thread)")
    print(f"after:  blocked {r['after_s']:.3f} s per checkpoint (at most {r['after_max_s']:.3f} s; the first allocates "
          f"the buffers) with a {args.step_s:g} s forward + backward after the save; the background copy and "
          f"write take {r['write_s']:.2f} s")  # fmt: skip
    print(f"ratio blocked after / before: {r['after_s'] / r['before_s']:.3f} (target <= 0.10)")


if __name__ == "__main__":
    main()
