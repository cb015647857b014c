"""The GPU check ``benchmarks/gpu.py`` (its arguments and model shapes, on any machine) and the GPU
hot path: training steps never synchronise the host with the device (CUDA only).

Under ``torch.cuda.set_sync_debug_mode("error")`` any host synchronisation (``.item()``, a
blocking copy to the host, ...) raises; a few engine steps fed as the engine feeds them (batch
built in pinned memory while the previous step runs, copied ``non_blocking``) must run clean.
Skipped on a machine without CUDA; run it where a GPU is available (e.g. before a paper run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import engine_fixtures as ef
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_gpu_check_arguments_shapes_and_skip_without_cuda(monkeypatch, capsys):
    """The paper's batch size and shapes, built offline: their parameter counts are the plan's; no CUDA: a skip."""
    import gpu
    from common import model_config, random_model

    from ftft.modeling import count_params
    from ftft.plan import MODEL_DIMS

    args = gpu.parse_args([])
    assert (args.shapes, args.batch_size, args.buckets) == (list(gpu.SHAPES), 32, [1, 2, 3, 4])
    hub = {"deberta-v3-large": "microsoft/deberta-v3-large", "electra-large": "google/electra-large-discriminator",
           "deberta-v3-small": "microsoft/deberta-v3-small"}  # fmt: skip
    for shape in args.shapes:
        with torch.device("meta"):
            total, non_embedding = count_params(random_model(model_config(shape)))
        assert total == pytest.approx(MODEL_DIMS[hub[shape]][3], rel=0.005), shape
        assert non_embedding == pytest.approx(MODEL_DIMS[hub[shape]][0], rel=0.02), shape
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main([]) == 0 and "no CUDA device" in capsys.readouterr().out


@pytest.mark.integration
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (host-sync check of the GPU hot path)")
def test_training_steps_do_not_sync_with_the_host(tmp_path):
    from ftft.train import engine, schedule
    from ftft.train.data import batch_indices, collate_host, epoch_permutation, micro_batches
    from ftft.train.state import BackgroundSaver

    raw = ef.write_toy_data(tmp_path / "raw")
    model_dir = ef.build_toy_model(tmp_path / "model")
    data_dir = ef.tokenize_toy(raw, model_dir, tmp_path / "data")
    spec = ef.toy_config(model_dir, steps=20, checkpoints=2)
    from ftft.train.spec import make_spec

    spec = make_spec(spec, ef.toy_run())
    s = engine.setup(spec, data_dir, None)
    s.model, s.optimizer = s.accelerator.prepare(s.model, s.optimizer)
    assert s.device.type == "cuda"
    BackgroundSaver().guard(s.optimizer.optimizer)  # as the engine: the step waits for a checkpoint's copy
    perm, data = epoch_permutation(0, 0, len(s.train_data)), s.train_data

    def host_batch(b):  # as the engine builds it: micro-batches, widths to 8, pinned
        groups = micro_batches(data.lengths, batch_indices(perm, b, spec["batch_size"]), spec["length_buckets"], 8)
        return [collate_host(data, g, pin=True, multiple=8) for g in groups]

    host = host_batch(0)
    assert len(host) > 1 and all(b.inputs["input_ids"].is_pinned() and b.width % 8 == 0 for b in host)
    s.model.train()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(5):
            batch = [b.to(s.device) for b in host]
            engine.train_step(s.model, batch, s.optimizer, s.accelerator, s.dynamics, s.stats,
                              s.per_step_scheduler, spec["max_grad_norm"])  # fmt: skip
            host = host_batch(step + 1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert s.stats.count == 5 and s.stats.pop_mean() > 0  # the one sync, after the steps
    assert schedule.steps_per_step(spec)
