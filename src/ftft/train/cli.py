"""``ftft train`` (a spec as JSON or ``@file``) and ``run_job``, the train rule's ``script:``: the spec
arrives as a job parameter, paths from ``ftft.layout``, the log goes to the job's log file, and on a
workstation with several GPUs the job first claims its own device (``ftft.devices``) before torch starts.
"""

import json
import logging
import os
import shutil
import sys
from pathlib import Path

from ..io import parse_json_arg

log = logging.getLogger("ftft.train")
LOCK_ENV = "FTFT_GPU_LOCK_DIR"  # share one lock folder between several checkouts / workflows
KEPT = "finished"  # {state_dir}/{run}/finished/: a finished run's outputs until Snakemake has taken them


def add_arguments(parser) -> None:
    parser.add_argument("--spec", required=True, help="training spec as JSON, or @FILE holding it (make_spec)")
    parser.add_argument("--data-dir", required=True, help="tokenised data folder (the tokenize step's output)")
    parser.add_argument("--out", required=True, help="run folder for metrics.csv, predictions.parquet, ...")
    parser.add_argument("--state-dir", required=True, help="resumable training state (deleted after success)")
    parser.add_argument("--subset", default=None, help="subset parquet (uid, weight, [bias_logp_*])")
    parser.add_argument("--model-path", default=None, help="local model folder; overrides the spec's model source")
    parser.add_argument("--bias-out", default=None, help="also write the bias log-probabilities of the final model")
    lock_help = f"claim one free GPU through lock files in this folder first (default ${LOCK_ENV})"
    parser.add_argument("--gpu-lock-dir", default=os.environ.get(LOCK_ENV), help=lock_help)


def run(args) -> int:
    from ..devices import claim_gpu, hold_run

    if args.gpu_lock_dir:
        claim_gpu(args.gpu_lock_dir)  # before anything starts CUDA
    from .engine import train

    held = hold_run(args.state_dir)
    try:
        train(parse_json_arg(args.spec, "--spec"), args.data_dir, args.out, args.state_dir, args.subset,
              args.model_path, args.bias_out)  # fmt: skip
    finally:
        held.release()  # the command may run inside a longer process (tests)
    return 0


def run_job(smk) -> None:
    """The train rule's job: ``smk`` is the ``snakemake`` object of a ``script:``."""
    from ..cli import log_to
    from ..devices import claim_gpu, die_with_parent, hold_run
    from ..errors import FtftError
    from ..grid import Run
    from ..layout import Layout

    die_with_parent()  # a killed Snakemake leaves no orphaned trainer
    log_to(smk.log[0])
    cfg, spec = smk.config, dict(smk.params.spec)
    from ..workflow import OPERATIONAL_TRAINING, hub_environment

    spec.update({k: cfg["training"][k] for k in OPERATIONAL_TRAINING})  # from the config: no rerun triggers
    layout = Layout.from_config(cfg)
    state_dir = Path(layout.state_dir(Run(**spec["run"])))
    os.environ.update(hub_environment(cfg))  # the fetch_model rule's cache (nothing a local model folder reads)
    try:
        hold_run(state_dir)
        # A finished run's outputs are kept (hard links) until a successful Snakemake run has taken them
        # (``Plan.clear_kept``), with their key: the spec and the inputs' identity. Snakemake interrupted by SIGINT
        # lets running jobs finish but marks their outputs incomplete; ``--rerun-incomplete`` restores them from here.
        kept, inputs = state_dir / KEPT, {k: [os.stat(p).st_ino, os.stat(p).st_mtime_ns] for k, p in smk.input.items()}
        key = {"spec": spec, "inputs": inputs, "outputs": sorted(Path(p).name for p in smk.output)}
        key = json.dumps(key, sort_keys=True, default=str)
        complete = all((kept / Path(p).name).exists() for p in smk.output) and (kept / "key.json").is_file()
        if complete and (kept / "key.json").read_text() == key:
            for p in map(Path, smk.output):
                _link(kept / p.name, p)
            log.warning("restored the outputs of this finished run from %s (Snakemake was interrupted before "
                        "it took them)", kept)  # fmt: skip
            return
        claim = None  # one GPU of a workstation's (a scheduler's grant is set already: claim_gpu returns None)
        if int(smk.resources.get("gpu", 0) or 0) == 1:
            claim = claim_gpu(os.environ.get(LOCK_ENV) or layout.gpu_locks())
        from .engine import train

        train(spec, smk.input.data, Path(smk.output.record).parent, state_dir, smk.input.get("subset"),
              bias_out=smk.output.get("bias"), export_out=smk.output.get("export"))  # fmt: skip
        if claim is not None:
            claim.release()
        shutil.rmtree(kept, ignore_errors=True)
        try:
            kept.mkdir(parents=True)
            for p in map(Path, smk.output):
                _link(p, kept / p.name)
            (kept / "key.json").write_text(key)  # last: the copy is complete
        except OSError as exc:  # the outputs are written: an interrupt now means training again, nothing worse
            log.warning("could not keep the outputs in %s: %s", kept, exc)
    except FtftError as exc:
        log.error("%s", exc)
        sys.exit(1)
    logging.shutdown()  # every output is written and renamed: skip the interpreter's teardown of torch
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dst, ignore_errors=True) if dst.is_dir() else dst.unlink(missing_ok=True)
    try:
        shutil.copytree(src, dst, copy_function=os.link) if src.is_dir() else os.link(src, dst)
    except OSError:  # another file system
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
