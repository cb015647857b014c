"""``ftft tokenize``: tokenise a task's training and evaluation sets once per tokenizer, as a ``datasets``
``DatasetDict`` on disk (uid, label, input_ids, [token_type_ids], length; no padding) plus ``stats.json``."""

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from .data import schema
from .errors import DataError
from .io import REBUILD, atomic_dir, rebuild, write_json

log = logging.getLogger(__name__)

MAP_BATCH = 1000
STATS = "stats.json"


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of what decides the ids: class, vocabulary, special tokens, input names, lower-casing."""
    parts = {"class": type(tokenizer).__name__.removesuffix("Fast"), "vocab": sorted(tokenizer.get_vocab().items()),
             "special": sorted(map(str, tokenizer.all_special_tokens)), "inputs": list(tokenizer.model_input_names),
             "probe": tokenizer("The Quick brown fox, jumps!", "A second TEXT.")["input_ids"]}  # fmt: skip
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tokenize_frame(df, tokenizer, max_length: int):
    """A normalised frame -> ``datasets.Dataset`` with uid, label, input_ids[, token_type_ids], length."""
    import datasets

    names = [n for n in tokenizer.model_input_names if n in ("input_ids", "token_type_ids")]

    def encode(batch: dict) -> dict:
        text_a, text_b = batch["text_a"], batch["text_b"]
        out = {n: [None] * len(text_a) for n in names}
        for paired in (True, False):  # one call for the pairs, one for the single texts
            if rows := [i for i, b in enumerate(text_b) if (b is not None) == paired]:
                pairs = [text_b[i] for i in rows] if paired else None
                enc = tokenizer([text_a[i] for i in rows], pairs, truncation=True, max_length=max_length)
                for n in names:
                    for i, ids in zip(rows, enc[n], strict=True):
                        out[n][i] = ids
        out["length"] = [len(ids) for ids in out["input_ids"]]
        return out

    frame = df[["uid", "text_a", "text_b", "label"]].copy()
    frame["uid"] = frame["uid"].astype(str)
    frame["text_a"] = frame["text_a"].astype(str)
    frame["text_b"] = frame["text_b"].astype(object).where(frame["text_b"].notna(), None)
    value, sequence = datasets.Value, datasets.Sequence
    features = {"uid": value("string"), "label": value("int64"), "input_ids": sequence(value("int32")),
                "length": value("int32"), "token_type_ids": sequence(value("int8"))}  # fmt: skip
    features = {k: v for k, v in features.items() if k != "token_type_ids" or k in names}
    ds = datasets.Dataset.from_pandas(frame, preserve_index=False)
    return ds.map(encode, batched=True, batch_size=MAP_BATCH,
                  remove_columns=["text_a", "text_b"], features=datasets.Features(features), desc=None)  # fmt: skip


def pad_to(lengths: np.ndarray, multiple: int) -> np.ndarray:
    """``lengths`` rounded up to a multiple of ``multiple`` (the engine pads widths to 8 on CUDA)."""
    return -(-np.asarray(lengths, dtype=np.int64) // multiple) * multiple


def bucket_bounds(widths: np.ndarray, buckets: int) -> np.ndarray:
    """Split points [nb, buckets + 1] of each row of ascending ``widths`` [nb, B] into at most ``buckets``
    micro-batches, each padded to its longest, with the fewest padded tokens (exact dynamic programming;
    on ties the fewer micro-batches). Empty micro-batches have equal bounds."""
    nb, size = widths.shape
    w = np.concatenate([np.zeros((nb, 1), np.int64), widths], axis=1)  # w[:, i]: width of a bucket ending at i
    cost = np.full((buckets + 1, nb, size + 1), np.inf)
    cost[0, :, 0] = 0.0
    arg = np.zeros((buckets + 1, nb, size + 1), dtype=np.int64)
    rows = np.arange(nb)
    for j in range(1, buckets + 1):
        for i in range(size + 1):  # last bucket (m, i]: the largest m among equal costs
            c = cost[j - 1, :, : i + 1] + (i - np.arange(i + 1)) * w[:, i : i + 1]
            arg[j, :, i] = i - c[:, ::-1].argmin(axis=1)
            cost[j, :, i] = c[rows, arg[j, :, i]]
    bounds = np.full((nb, buckets + 1), size, dtype=np.int64)
    for j in range(buckets, 0, -1):
        bounds[:, j - 1] = arg[j, rows, bounds[:, j]]
    return bounds


def padded_widths(lengths: np.ndarray, perm: np.ndarray, batch_size: int, buckets=1, multiple=1) -> tuple:
    """(width, size) of every batch of one pass in the order ``perm``, or of every micro-batch when each
    batch runs as ``buckets`` length-bucketed micro-batches (also the engine's padded FLOPs)."""
    n = len(perm)
    full = n - n % batch_size
    out = ([], [])
    for part in (perm[:full].reshape(-1, batch_size), perm[full:][None]):
        if part.size == 0:
            continue
        w = np.sort(pad_to(lengths[part], multiple), axis=1)
        bounds = bucket_bounds(w, buckets)
        sizes = np.diff(bounds, axis=1)
        out[0].append(w[np.arange(len(w))[:, None], np.maximum(bounds[:, 1:] - 1, 0)][sizes > 0])
        out[1].append(sizes[sizes > 0])
    return np.concatenate(out[0]), np.concatenate(out[1])


def padded_per_example(lengths: np.ndarray, batch_size: int, seed=0, buckets=1, multiple=1) -> float:
    """Mean tokens per example when batches of a random order are padded (per micro-batch) to their longest."""
    if len(lengths) == 0:
        return 0.0
    perm = np.random.default_rng(seed).permutation(len(lengths))
    widths, sizes = padded_widths(lengths, perm, batch_size, buckets, multiple)
    return float((widths * sizes).sum() / len(lengths))


def tokenize_task(train, eval_dir, eval_sets: list[str], model_source: str, max_length: int, out, batch_size=32):
    """Tokenise ``train`` and each ``eval_dir/{name}.parquet``; write the DatasetDict to ``out`` atomically."""
    import datasets

    from .modeling import load_tokenizer

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()

    tokenizer = load_tokenizer(model_source)
    splits = {"train": Path(train), **{name: Path(eval_dir) / f"{name}.parquet" for name in eval_sets}}
    if "train" in eval_sets:
        raise DataError("an evaluation set may not be called 'train'")
    dd = {}
    stats = {"tokenizer": tokenizer_fingerprint(tokenizer), "model_source": model_source, "max_length": max_length}
    eval_fix = f"{rebuild(eval_dir)} (the assemble job writes it)"
    for split, path in splits.items():
        df, _ = schema.read(path, REBUILD if split == "train" else eval_fix)
        if df.empty:
            raise DataError(f"{path}: no rows to tokenise")
        ds = tokenize_frame(df, tokenizer, max_length)
        lengths = np.asarray(ds["length"], dtype=np.int64)
        dd[split] = ds
        stats[split] = {
            "rows": len(ds),
            "tokens": int(lengths.sum()),
            "tokens_per_example": float(lengths.mean()),
            "truncated": int((lengths >= max_length).sum()),
            "padded_tokens_per_example": padded_per_example(lengths, batch_size),
            "length_counts": np.bincount(lengths).tolist(),  # the plan's padding with any bucketing
        }
        log.info("%s: %d rows, %.1f tokens per example (%d at max_length %d)", split, len(ds),
                 lengths.mean(), stats[split]["truncated"], max_length)  # fmt: skip
    with atomic_dir(out) as tmp:
        datasets.DatasetDict(dd).save_to_disk(str(tmp / "data"))
        write_json(tmp / STATS, stats)
    log.info("tokenised data -> %s", out)
    return stats


def add_arguments(parser) -> None:
    parser.add_argument("--train", required=True, help="task training set (normalised parquet)")
    parser.add_argument("--eval-dir", required=True, help="folder with {name}.parquet per evaluation set")
    parser.add_argument("--eval-sets", nargs="+", required=True, help="evaluation set names (the first is ID)")
    parser.add_argument("--model", required=True, help="hub id or folder whose tokenizer to use")
    parser.add_argument("--max-length", type=int, required=True, help="truncate longer inputs")
    parser.add_argument("--batch-size", type=int, default=32, help="for the padded-tokens statistic")
    parser.add_argument("--out", required=True, help="output folder (DatasetDict + stats.json)")


def run(args) -> None:
    tokenize_task(args.train, args.eval_dir, args.eval_sets, args.model, args.max_length, args.out, args.batch_size)


def run_job(smk) -> None:
    """The tokenize rule's job (``script:``; Snakemake injects ``smk``). Like a training job it takes the
    hub cache and offline mode from the config in its own process: they are not params, so moving the
    cache or going online re-runs nothing."""
    from .cli import log_to
    from .errors import FtftError
    from .workflow import hub_environment

    log_to(smk.log[0])
    os.environ.update(hub_environment(smk.config))  # before huggingface_hub is imported: it reads them once
    p = dict(smk.params.settings)
    try:
        tokenize_task(smk.input.train, smk.input.evals, p["eval_sets"], p["model"], p["max_length"], smk.output[0])
    except FtftError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
