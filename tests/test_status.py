"""``ftft status``: the run's own arguments, estimates from measured job times, "unknown" when unknown."""

import json
from pathlib import Path

import pytest

from ftft import cli, config, grid, status
from ftft.layout import Layout
from ftft.workflow import Plan

ROOT = Path(__file__).resolve().parents[1]


def _finish(layout: Layout, run: grid.Run, job_s: float, train_s: float, steps: int) -> None:
    rec = Path(layout.run_file("run.json", run))
    rec.parent.mkdir(parents=True, exist_ok=True)
    rec.write_text(json.dumps({"status": "ok", "wall_time_s": train_s, "steps_done": steps}))
    bench = Path(layout.train_benchmark(run))
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text(f"s\th:m:s\tmax_rss\n{job_s}\t0:00:{int(job_s):02d}\t100\n")


def _log(layout: Layout, run: grid.Run, text: str) -> None:
    log = Path(layout.train_log(run))
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text)


def test_status_estimates_from_measured_jobs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = config.load_overlays([ROOT / "config/demo.yaml"], ROOT / "workflow_config.yaml")
    layout = Layout.from_config(cfg)
    runs = sorted(grid.all_runs(cfg))
    states = status.collect(cfg)
    assert {s.state for s in states} == {"waiting"}
    assert "estimated time left: unknown" in status.report(states)  # nothing measured yet: no 0m00s

    done, starting, running = runs[0], runs[1], runs[2]
    steps = done.steps(cfg)
    _finish(layout, done, job_s=12.0, train_s=4.0, steps=steps)  # 8 s outside the training loop
    _log(layout, starting, "12:00:00 INFO ftft.train: training demo model\n")
    _log(layout, running, f"step 50/{running.steps(cfg)} (48%) loss 0.9000 | 10.00 steps/s | ETA 0m05s\n")
    states = status.collect(cfg)
    by_run = {s.run: s for s in states}
    assert by_run[done].state == "done" and by_run[done].overhead == 8.0
    text = status.report(states, parallel=2)
    assert f"starting {starting.path}" in text and " 0.00 steps/s" not in text
    assert f"running  {running.path}  step 50/" in text

    # each run still to start is expected to take as long as a finished one of its model (or of any)
    per_step = 4.0 / steps
    todo = [s for s in states if s.state == "waiting" or s.run == starting]
    expected = (running.steps(cfg) - 50) / 10.0 + sum(8.0 + per_step * s.steps for s in todo)
    assert abs(status.eta_seconds(states) - expected) < 1e-6
    assert status._hms(expected / 2) in text and "at 2 jobs at once" in text

    # the run's own arguments, as written for snakemake
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(status, "collect", lambda c, now=None: states)
    assert cli.main(["status", "--cores", "2", "--configfile", "config/demo.yaml"]) == 0
    assert "at 2 jobs at once" in capsys.readouterr().out


def test_check_config_merges_an_overlay_onto_the_workflow_config(tmp_path, monkeypatch, capsys):
    overlay = tmp_path / "my.yaml"
    overlay.write_text("seeds: [0, 1]\n")  # an overlay: only the keys it changes
    monkeypatch.chdir(ROOT)
    assert cli.main(["check-config", str(overlay)]) == 0
    assert "config OK" in capsys.readouterr().out
    assert cli.main(["check-config", "--configfile", "config/demo.yaml", "--summary"]) == 0
    runs = grid.all_runs(config.load_overlays(["config/demo.yaml"]))
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["runs"] == len(runs)


def test_a_dev_set_is_evaluated_but_not_tabled(monkeypatch):
    """tasks.<t>.dev: assembled, tokenised and evaluated (role dev) like the others; the tables keep id + ood."""
    monkeypatch.chdir(ROOT)
    dev = {"tasks": {"nli": {"dev": {"name": "dev", "source": "demo_nli", "split": "dev", "label": "Dev"}}}}
    cfg = config.load(ROOT / "workflow_config.yaml", ROOT / "config/demo.yaml", overrides=dev)
    plan = Plan(cfg)
    plan.check()
    run = grid.Run("nli", "tinybert", "erm", "none", "full", 0)
    assert ["dev", "dev"] in plan.train_spec(run)["eval_sets"]
    assert "dev" in plan.tokenize_params("nli", "demo")["eval_sets"]
    assert "dev" not in grid.task_eval_sets(cfg, "nli")  # the paper tables report id + ood only
    dev["tasks"]["nli"]["dev"]["split"] = "nope"
    bad = config.load(ROOT / "workflow_config.yaml", ROOT / "config/demo.yaml", overrides=dev)
    with pytest.raises(config.ConfigError, match=r"tasks\.nli\.dev.*'nope'"):
        Plan(bad).check()
