"""The subset file each method hands the engine (columns and their use: docs/ARCHITECTURE.md, "Subsets"), and the
``ftft subset`` step (methods: ``ftft.methods``). A subset whose reference run (or data map) failed is written with
no rows and the reason in its metadata (``failed``); the training job then records the run as failed."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from . import datamap, methods
from .errors import DataError, FtftError
from .io import parquet_meta, parse_json_arg, read_arrow, read_json, read_parquet, write_parquet

log = logging.getLogger(__name__)


def random_subset(train_uids, q: float, seed: int) -> pd.DataFrame:
    """round(q*N) uids drawn without replacement (numpy ``default_rng(seed)``), in training-set order."""
    uids = np.asarray(train_uids).astype(str)
    k = datamap.category_size(len(uids), q)
    idx = np.sort(np.random.default_rng(seed).choice(len(uids), size=k, replace=False))
    return _frame(uids[idx])


def dm_subset(train_uids, dmap: pd.DataFrame, q: float, where: str = "data map") -> pd.DataFrame:
    """The round(q*N) most ambiguous uids of a data map (ties by uid), in training-set order."""
    uids = _same_uids(train_uids, dmap["uid"].to_numpy(), where)
    return _frame(uids[np.isin(uids, datamap.ambiguous_uids(dmap, q))])


def jtt_subset(train_uids, dyn: datamap.TrainingDynamics, jtt_epoch: int, upweight: int) -> pd.DataFrame:
    """Every uid; those the reference mispredicts in the training forward pass of epoch ``jtt_epoch`` (1-based; the
    last complete one if fewer, with a warning) get ``copies`` 1 + ``upweight``, the others 1 (docs/FIDELITY.md)."""
    uids = _same_uids(train_uids, dyn.uids, dyn.path)
    if dyn.complete_epochs < 1:
        raise DataError(f"{dyn.path}: JTT needs at least one complete epoch of training dynamics")
    if jtt_epoch < 1:
        raise FtftError(f"JTT spec: 'jtt_epoch' must be >= 1, got {jtt_epoch}")
    epoch = min(jtt_epoch, dyn.complete_epochs)
    if epoch < jtt_epoch:
        log.warning(f"{dyn.path}: jtt_epoch={jtt_epoch} but the run has {epoch} complete epoch(s); using epoch {epoch}")
    wrong = dyn.probs[epoch - 1].argmax(axis=-1) != dyn.labels
    log.info("JTT: %d of %d instances mispredicted at epoch %d (+%d copies)", int(wrong.sum()), dyn.n, epoch, upweight)
    df = _frame(dyn.uids).assign(copies=np.where(wrong, 1 + upweight, 1).astype(np.int64))
    return df.set_index("uid").loc[uids].reset_index()


def poe_subset(train_uids, bias: pd.DataFrame, where: str) -> pd.DataFrame:
    """Every uid with the frozen bias model's log-probabilities (its eval-mode pass, ``bias_logp.parquet``)."""
    uids = _same_uids(train_uids, bias["uid"].to_numpy(), where)
    cols = [c for c in bias.columns if c.startswith("bias_logp_")]
    if not cols or not np.isfinite(bias[cols].to_numpy()).all():
        raise DataError(f"{where}: bias log-probabilities missing or not finite (columns {cols})")
    cols.sort(key=lambda c: int(c.rsplit("_", 1)[1]))
    df = _frame(bias["uid"]).assign(**{c: bias[c].to_numpy(np.float32) for c in cols})
    return df.set_index("uid").loc[uids].reset_index()


def _frame(uids) -> pd.DataFrame:
    return pd.DataFrame({"uid": np.asarray(uids).astype(str), "weight": np.ones(len(uids), np.float32)})


def _same_uids(train_uids, other_uids, where: str) -> np.ndarray:
    """The training set's uids (str), checked to be the same instances as ``other_uids`` (those of ``where``)."""
    train_uids = np.asarray(train_uids).astype(str)
    a, b = set(train_uids.tolist()), set(np.asarray(other_uids).astype(str).tolist())
    if len(train_uids) != len(other_uids) or a != b:
        only_t, only_o = sorted(a - b)[:3], sorted(b - a)[:3]
        raise DataError(
            f"{where} covers different instances than the training set "
            f"({len(other_uids)} vs {len(train_uids)} uids; only in training set e.g. {only_t}, "
            f"only in the other file e.g. {only_o})"
        )
    return train_uids


# --------------------------------------------------------------------------- files + CLI
def write(df: pd.DataFrame, path: str | Path, meta: dict | None = None) -> None:
    write_parquet(df.astype({"uid": str, "weight": np.float32}), path, meta)


def read(path: str | Path) -> pd.DataFrame:
    """Read a subset file (what the engine consumes)."""
    df = read_parquet(path, "subset file")
    if missing := [c for c in ("uid", "weight") if c not in df.columns]:
        raise DataError(f"{path}: subset file has no column {missing[0]!r}")
    return df


def add_arguments(parser) -> None:
    parser.add_argument("--method", required=True, choices=[m.name for m in methods.REGISTRY.values() if m.subset])
    parser.add_argument("--train", required=True, help="task training set (parquet with a uid column)")
    parser.add_argument("--out", required=True, help="subset parquet to write")
    parser.add_argument("--q", type=float, default=None, help="fraction selected (random, dm)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (random)")
    parser.add_argument("--datamap", default=None, help="data map parquet (dm)")
    parser.add_argument("--ref-run", default=None, help="reference run folder with dynamics.npz (jtt, poe)")
    parser.add_argument("--spec", default=None, help='JSON object or file, e.g. {"jtt_epoch": 3, "upweight": 4}')


def reference_failure(args, method) -> str | None:
    """Why this subset cannot be built: its reference run (or data map) failed; None if it did not."""
    if "datamap" in method.reads and args.datamap:
        failed = parquet_meta(args.datamap, "data map").get("failed")
        return f"data map {args.datamap}: {failed}" if failed else None
    record = Path(args.ref_run or ".") / "run.json"
    if args.ref_run and record.is_file() and (rec := read_json(record, "run record")).get("status") == "failed":
        return f"{args.ref_run}: {rec.get('failure_reason')}"
    return None


def run(args) -> int:
    method, m = args.method, methods.get(args.method)
    args.settings = parse_json_arg(args.spec, "--spec")
    args.uids = read_arrow(args.train, "training set", columns=["uid"]).column("uid").to_numpy().astype(str)
    meta: dict = {"method": method, "train": str(args.train)}
    if failed := reference_failure(args, m):
        write(_frame([]), args.out, {**meta, "failed": failed})
        log.warning("%s subset not built: reference failed: %s", method, failed)
        return 0
    if m.uses_q and args.q is None:
        raise FtftError(f"--q is required for method {method}")
    for flag, key in (("datamap", "datamap"), ("ref_run", "record")):
        if key in m.reads and not getattr(args, flag):
            raise FtftError(f"--{flag.replace('_', '-')} is required for method {method}")
    df, extra = m.subset(args)
    write(df, args.out, meta | extra)
    log.info("%s subset: %d of %d training instances -> %s", method, len(df), len(args.uids), args.out)
    return 0
