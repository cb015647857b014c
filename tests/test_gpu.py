"""The GPU check ``benchmarks/gpu.py`` (its arguments and model shapes, on any machine) and the GPU hot path
(CUDA only): under ``torch.cuda.set_sync_debug_mode("error")`` any host synchronisation raises; engine steps
fed by the engine's loader (pinned batches built while the previous step runs, copied ``non_blocking``) run clean.
"""

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
    from ftft.train import engine
    from ftft.train.data import train_loader
    from ftft.train.spec import make_spec
    from ftft.train.state import BackgroundSaver

    toy = ef.toy_setup(tmp_path)
    spec = make_spec(ef.toy_config(toy["model"], steps=20, checkpoints=2), ef.toy_run())
    s = engine.Session(spec, toy["data"], None)
    s.model, s.optimizer = s.accelerator.prepare(s.model, s.optimizer)
    assert s.device.type == "cuda"
    BackgroundSaver().guard(s.optimizer.optimizer)  # as the engine: the step waits for a checkpoint's copy
    batches = iter(train_loader(s.train_data, spec["batch_size"], 0, spec["length_buckets"], s.device))
    _, host = next(batches)  # as the engine builds them: micro-batches, widths to 8, pinned
    assert len(host) > 1 and all(b.inputs["input_ids"].is_pinned() and b.width % 8 == 0 for b in host)
    s.model.train()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            batch = [b.to(s.device) for b in host]
            engine.train_step(s.model, batch, s.optimizer, s.accelerator, s.dynamics, s.stats,
                              s.per_step_scheduler, spec["max_grad_norm"])  # fmt: skip
            _, host = next(batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert s.stats.counts["window"] == 5 and s.stats.pop_mean() > 0  # the one sync, after the steps
