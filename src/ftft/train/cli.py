"""``ftft train``: train one run with the one engine (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import logging

from ..io import parse_json_arg

log = logging.getLogger("ftft.train")


def add_arguments(parser) -> None:
    parser.add_argument("--spec", required=True, help="training spec as JSON, or @FILE holding it (make_spec)")
    parser.add_argument("--data-dir", required=True, help="task folder with train.parquet and eval/{name}.parquet")
    parser.add_argument("--out", required=True, help="run folder for metrics.csv, predictions.parquet, ...")
    parser.add_argument("--state-dir", required=True, help="resumable training state (deleted after success)")
    parser.add_argument("--subset", default=None, help="subset parquet (uid, weight, [bias_logp_*])")
    parser.add_argument("--model-path", default=None, help="local model folder; overrides the spec's model source")


def run(args) -> int:
    from .engine import train

    record = train(
        parse_json_arg(args.spec, "--spec"),
        data_dir=args.data_dir,
        out_dir=args.out,
        state_dir=args.state_dir,
        subset=args.subset,
        model_path=args.model_path,
    )
    if record["status"] != "ok":
        log.warning("run finished with status %s: %s", record["status"], record["failure_reason"])
    return 0
