"""The ``ftft`` command: one subcommand per workflow step that a rule calls.

Each subcommand's module (imported only when it runs: ``ftft --help`` stays fast, a data step never imports torch)
provides ``add_arguments(parser)`` and ``run(args) -> int | None``.
"""

import argparse
import importlib
import logging
import sys

from .errors import FtftError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check-config": ("ftft.config", "validate a workflow config (merged like --configfile)"),
    "plan": ("ftft.plan", "print the compute plan of a config: jobs, tokens, FLOPs, GPU-hours"),
    "status": ("ftft.status", "progress of a running (or finished) workflow: runs done, running, failed, ETA"),
    "download": ("ftft.data.download", "download one dataset (atomic, retried, sha256-checked)"),
    "prepare": ("ftft.data.prepare", "normalise one raw dataset into the common parquet schema"),
    "demo-data": ("ftft.data.demo", "generate the built-in synthetic NLI-like / HSD-like data"),
    "assemble": ("ftft.data.assemble", "collect a task's train / ID / OOD sets from normalised sources"),
    "fetch-models": ("ftft.modeling", "pre-download hub models into the Hugging Face cache (login node)"),
    "build-demo-model": ("ftft.standins", "build a tiny random-init stand-in for a paper model"),
    "tokenize": ("ftft.tokenize", "tokenise a task's data once per tokenizer (datasets, memory-mapped)"),
    "train": ("ftft.train.cli", "train one run (reference, main or baseline) with the one engine"),
    "datamap": ("ftft.datamap", "build a data map from a run's training dynamics"),
    "subset": ("ftft.subsets", "select the training subset / weights / bias log-probs for a method"),
    "config-json": ("ftft.artefacts", "write the config that the table, figure and report jobs read"),
    "table": ("ftft.tables", "build one paper table (csv, md, tex, html) from run outputs"),
    "figure": ("ftft.figures", "build one paper figure (png, pdf) from run outputs"),
    "compare": ("ftft.compare", "compare reproduced cells with the published numbers"),
    "claims": ("ftft.claims", "check the paper's claims on the reproduced runs"),
    "screen": ("ftft.ship", "rank the candidate references of a shipped FTFT model (paper §4.3)"),
    "ship": ("ftft.ship", "the shipped FTFT model: the saved DM run at its halting checkpoint + model card"),
    "failed-runs": ("ftft.failures", "summarise the failed runs and the table cells they empty"),
}


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to(path: str) -> None:
    """Log INFO and up into a rule's log file: the setup of every ``script:`` job."""
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ftft", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    known, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if known.command is None:
        parser.print_help()
        return 2
    level = logging.DEBUG if known.verbose else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S", stream=sys.stderr)
    module = importlib.import_module(COMMANDS[known.command][0])
    sub = argparse.ArgumentParser(prog=f"ftft {known.command}", description=COMMANDS[known.command][1])
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except FtftError as exc:
        logging.getLogger("ftft").error("%s", exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
