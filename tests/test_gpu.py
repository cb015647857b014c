"""The GPU hot path: training steps never synchronise the host with the device (CUDA only).

Under ``torch.cuda.set_sync_debug_mode("error")`` any host synchronisation (``.item()``, a
blocking copy to the host, ...) raises; a few engine steps fed as the engine feeds them (batch
built in pinned memory while the previous step runs, copied ``non_blocking``) must run clean.
Skipped on a machine without CUDA; run it where a GPU is available (e.g. before a paper run).
"""

from __future__ import annotations

import engine_fixtures as ef
import pytest
import torch

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (host-sync check of the GPU hot path)"),
]


def test_training_steps_do_not_sync_with_the_host(tmp_path):
    from ftft.train import engine, schedule
    from ftft.train.data import batch_indices, collate_host, epoch_permutation

    raw = ef.write_toy_data(tmp_path / "raw")
    model_dir = ef.build_toy_model(tmp_path / "model")
    data_dir = ef.tokenize_toy(raw, model_dir, tmp_path / "data")
    spec = ef.toy_config(model_dir, steps=20, checkpoints=2)
    from ftft.train.spec import make_spec

    spec = make_spec(spec, ef.toy_run())
    s = engine.setup(spec, data_dir, None)
    s.model, s.optimizer = s.accelerator.prepare(s.model, s.optimizer)
    assert s.device.type == "cuda"
    perm = epoch_permutation(0, 0, len(s.train_data))
    host = collate_host(s.train_data, batch_indices(perm, 0, spec["batch_size"]), pin=True)
    assert host.inputs["input_ids"].is_pinned()
    s.model.train()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(5):
            batch = host.to(s.device)
            engine.train_step(s.model, batch, s.optimizer, s.accelerator, s.dynamics, s.stats,
                              s.per_step_scheduler, spec["max_grad_norm"])  # fmt: skip
            host = collate_host(s.train_data, batch_indices(perm, step + 1, spec["batch_size"]), pin=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert s.stats.count == 5 and s.stats.pop_mean() > 0  # the one sync, after the steps
    assert schedule.steps_per_step(spec)
