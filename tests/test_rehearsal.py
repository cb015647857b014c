"""The paper rehearsal: the whole paper grid of workflow_config.yaml (two seeds) on CPU, on the real code paths.

config/rehearsal.yaml over the paper config; the five release archives (tests/rehearsal/archives.py) are downloaded from
a local HTTP server at their real URL paths; the nine checkpoints are loaded by hub id from an offline Hugging Face
cache of hub-faithful stand-ins (tests/rehearsal/hub.py) with ``HF_HUB_OFFLINE=1``. Every job must succeed; every table,
figure and report must be built."""

import json
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from rehearsal import __main__ as rehearsal
from rehearsal.archives import rehearsal_urls, serve
from test_workflow import jobs
from wfutil import ROOT, assert_artefacts, assert_report, make_copy, snakemake

from ftft import config as ftft_config
from ftft import grid
from ftft.layout import Layout

pytestmark = pytest.mark.slow
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def test_paper_grid_rehearsal(tmp_path):
    wf = make_copy(tmp_path / "wf")
    rehearsal.build(wf)
    requests: list[str] = []
    with serve(wf / "rehearsal" / "www", requests) as base:
        urls = {"datasets": {s: {"url": u} for s, u in rehearsal_urls(base).items()}}
        (wf / "urls.yaml").write_text(yaml.safe_dump(urls))
        args = ("--configfile", "config/rehearsal.yaml", "urls.yaml")
        planned = jobs(wf, *args)
        t0 = time.monotonic()
        res = snakemake(wf, "--cores", "2", *args, timeout=3000, env=OFFLINE)
        wall = time.monotonic() - t0
    out = res.stdout + res.stderr
    print(f"paper rehearsal: {sum(planned.values())} jobs ({planned['train'] + planned['train_bias_model']} "
          f"training) in {wall:.0f} s on 2 cores")  # fmt: skip
    assert res.returncode == 0, out[-6000:]

    cfg = ftft_config.load(ROOT / "workflow_config.yaml", wf / "config" / "rehearsal.yaml", wf / "urls.yaml")
    runs = grid.all_runs(cfg)
    # the paper grid, unreduced but for the seeds: 25 configurations x 2 tasks per seed (200 with 4)
    assert planned["train"] + planned["train_bias_model"] == len(runs) == 50 * len(cfg["seeds"]) == 100
    assert planned["download"] == 5 and planned["fetch_model"] == 9
    # every archive came from the server, once; the hub only from the offline cache
    downloads = Counter(p for p in requests if not p.lstrip("/").startswith("_cdn/"))  # the hub's CDN redirect
    assert len(downloads) == 6 and set(downloads.values()) == {1}, downloads  # WANLI is two files
    L = Layout(wf / cfg["results"], wf / cfg["resources"])
    trained = 0
    for r in runs:  # every run whose reference did not fail loaded its model by hub id
        record = json.loads(Path(L.run_file("run.json", r)).read_text())
        if (record.get("failure_reason") or "").startswith("reference failed"):
            continue
        m = cfg["models"][r.model]  # loaded by hub id at the pinned revision
        assert f"training {m['hub_id']}@{m['revision']} on" in Path(L.train_log(r)).read_text(), r.path
        trained += 1
    assert trained >= len({(r.task, r.model) for r in runs})  # at least every model of every task
    assert_artefacts(wf, cfg)
    failed = pd.read_csv(L.failed_runs("csv"))
    print(f"rehearsal: {trained} runs trained, {len(failed)} of {len(runs)} failed (tiny random stand-ins, 30 steps)")
    assert_report(wf, cfg, *args, env=OFFLINE)
