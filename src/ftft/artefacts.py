"""The id -> kind registry of the paper's tables and figures (docs/ARCHITECTURE.md): a kind's ``needs`` (what it
reads, as ``grid.Needs``), ``caption`` and ``make`` (writes ``PREFIX.*``, returns the numbers it shows);
``ftft table`` and ``ftft figure`` are the same command over their registry."""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from . import grid
from .errors import FtftError
from .io import read_json, write_json
from .results import Results

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registry:
    what: str  # "table" or "figure"
    kinds: dict[str, Any]  # kind name -> an object with needs(cfg, id), caption(cfg, id), make(cfg, res, id, prefix)
    ids: Callable[[dict], dict[str, str]]  # config -> {id: kind name}, in the order they are listed
    examples: str  # ids for --help

    def kind(self, cfg: dict, key: str):
        ids = self.ids(cfg)
        if key not in ids:
            raise FtftError(f"{self.what} {key!r} is not produced by this config ({self.what}s: {list(ids)})")
        return self.kinds[ids[key]]

    def needs(self, cfg: dict, key: str) -> grid.Needs:
        return self.kind(cfg, key).needs(cfg, key)

    def caption(self, cfg: dict, key: str) -> str:
        return self.kind(cfg, key).caption(cfg, key)

    def make(self, cfg: dict, results: str | Path | Results, key: str, prefix: str | Path) -> pd.DataFrame:
        res = results if isinstance(results, Results) else Results(results)
        return self.kind(cfg, key).make(cfg, res, key, prefix)

    def add_arguments(self, parser) -> None:
        parser.add_argument("--id", required=True, help=f"{self.what} id ({self.examples})")
        io_arguments(parser)

    def run(self, args) -> int:
        df = self.make(read_json(args.config_json, "config JSON"), args.results, args.id, args.out_prefix)
        log.info("%s %s: %d rows -> %s.*", self.what, args.id, len(df), args.out_prefix)
        return 0


def io_arguments(parser) -> None:
    """The arguments of every table, figure and report command."""
    parser.add_argument("--config-json", required=True, help="the merged workflow config as JSON")
    parser.add_argument("--results", required=True, help="results root (holds runs/, datamaps/, tables/)")
    parser.add_argument("--out-prefix", required=True, help="output path without extension")


def report_run(write: Callable[[dict, str, str], pd.DataFrame], what: str) -> Callable:
    """``run(args)`` of a report command: ``write(cfg, results, prefix)`` writes ``PREFIX.{csv,md,html}``."""

    def run(args) -> int:
        df = write(read_json(args.config_json, "config JSON"), args.results, args.out_prefix)
        log.info("%s: %d rows -> %s.{csv,md,html}", what, len(df), args.out_prefix)
        return 0

    return run


def add_arguments(parser) -> None:  # ftft config-json
    parser.add_argument("--json", required=True, help="the merged config without its operational keys, as JSON")
    parser.add_argument("--out", required=True, help="where to write it (results/config.json)")


def run(args) -> int:
    """``results/config.json``: what every table, figure and report job reads (``workflow.Plan.config_dump``)."""
    write_json(args.out, json.loads(args.json))
    return 0
