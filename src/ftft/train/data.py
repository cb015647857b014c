"""The engine's data: the tokenised splits (memory-mapped Arrow, kept as flat int32 token ids with offsets), the
subset, and the training batches (docs/ARCHITECTURE.md): each step's rows follow the epoch's seeded permutation,
split by ``micro_batches`` into length-sorted micro-batches, each padded to its longest (to 8 on CUDA, pinned).
"""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from ..io import parquet_meta, read_json, read_parquet, rebuild, unreadable
from ..tokenize import bucket_bounds, pad_to


def _retokenize(data_dir: str | Path) -> str:
    return f"{rebuild(data_dir)} (the tokenize job writes it)"


class ReferenceFailed(DataError):
    """The subset file says the run's reference run failed (the run is recorded as failed)."""


def pad_multiple(device: torch.device) -> int:
    """Batch widths are padded to a multiple of 8 on CUDA (tensor-core tiles), not on the CPU."""
    return 8 if device.type == "cuda" else 1


@dataclass
class Encoded:
    """A tokenised split: flat token ids with offsets, plus the per-instance training extras."""

    uids: np.ndarray  # str [N]
    labels: np.ndarray  # int64 [N]
    ids: np.ndarray  # int32, all instances' token ids back to back
    type_ids: np.ndarray | None  # int8, same layout as ids (tokenizers with token types)
    offsets: np.ndarray  # int64 [N]: start of instance i in ids
    lengths: np.ndarray  # int64 [N], real (non-pad) tokens
    weight: np.ndarray | None = None  # float32 [N]
    bias_logp: np.ndarray | None = None  # float32 [N, C]
    pad_id: int = 0

    def __len__(self) -> int:
        return len(self.uids)

    def take(self, rows: np.ndarray) -> "Encoded":
        """The instances ``rows`` (in that order), repacked."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        src = _positions(self.offsets[rows], lengths)
        pick = lambda a, at=rows: None if a is None else a[at]  # noqa: E731
        return replace(self, uids=self.uids[rows], labels=self.labels[rows], ids=self.ids[src],
                       type_ids=pick(self.type_ids, src), offsets=np.cumsum(lengths) - lengths, lengths=lengths,
                       weight=pick(self.weight), bias_logp=pick(self.bias_logp))  # fmt: skip


def _positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat positions of every token of the instances with these starts and lengths."""
    rel = np.arange(lengths.sum(), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + rel


@dataclass
class Batch:
    """One padded batch, on the host (pinned for a GPU) or on the training device."""

    inputs: dict[str, torch.Tensor]  # model keyword arguments
    labels: torch.Tensor  # [B]
    idx: torch.Tensor  # [B] row numbers in the training set (for the dynamics)
    weight: torch.Tensor | None = None
    bias_logp: torch.Tensor | None = None
    n_tokens: int = 0  # real tokens in the batch (host-side count)
    width: int = 0  # padded length

    def to(self, device: torch.device) -> "Batch":
        """Copy to ``device`` (non-blocking from pinned memory); a no-op on the CPU."""
        if device.type == "cpu":
            return self
        mv = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return replace(self, inputs={k: mv(v) for k, v in self.inputs.items()}, labels=mv(self.labels),
                       idx=mv(self.idx), weight=mv(self.weight), bias_logp=mv(self.bias_logp))  # fmt: skip


def _list_column(table, name: str, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(flat values, starts) of an Arrow list column."""
    column = table.column(name).combine_chunks()
    off = column.offsets.to_numpy().astype(np.int64)
    values = column.values.to_numpy(zero_copy_only=False)[off[0] : off[-1]]
    return values.astype(dtype, copy=False), off[:-1] - off[0]


def encoded_from_arrow(table, pad_id: int, where: str) -> Encoded:
    for col in ("uid", "label", "input_ids", "length"):
        if col not in table.column_names:
            raise DataError(f"{where}: tokenised split has no column {col!r} (re-run the tokenize step)")
    ids, starts = _list_column(table, "input_ids", np.int32)
    type_ids = _list_column(table, "token_type_ids", np.int8)[0] if "token_type_ids" in table.column_names else None
    uids = np.asarray(table.column("uid").to_numpy(zero_copy_only=False)).astype(str)
    labels, lengths = (table.column(c).to_numpy().astype(np.int64) for c in ("label", "length"))
    return Encoded(uids, labels, ids, type_ids, starts, lengths, pad_id=pad_id)


def tokenized_stats(data_dir: str | Path) -> dict:
    return read_json(Path(data_dir) / "stats.json", "tokenised data statistics file", _retokenize(data_dir))


def _read_split(folder: Path, data_dir: str | Path):
    """One split of a ``save_to_disk`` folder as a pyarrow Table, memory-mapped (no ``datasets`` import)."""
    import pyarrow as pa

    fix = _retokenize(data_dir)
    state = read_json(folder / "state.json", "tokenised split index", fix)
    try:
        files = [folder / f["filename"] for f in state["_data_files"]]
    except (KeyError, TypeError) as exc:
        raise unreadable(folder / "state.json", "tokenised split index", exc, fix) from exc
    tables = []
    for f in files:
        try:
            tables.append(pa.ipc.open_stream(pa.memory_map(str(f))).read_all())
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise unreadable(f, "tokenised split (Arrow file)", exc, fix) from exc
    if not tables:
        raise DataError(f"{folder / 'state.json'}: tokenised split lists no data files; {fix}")
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def load_tokenized(
    data_dir: str | Path, eval_names: list[str], pad_id: int
) -> tuple[Encoded, list[tuple[str, Encoded]]]:
    """The training split and the named evaluation splits of a tokenize output folder."""
    folder = Path(data_dir) / "data"
    index = folder / "dataset_dict.json"
    fix = _retokenize(data_dir)
    if not index.is_file():
        raise DataError(f"{folder}: not a tokenised dataset, no dataset_dict.json; {fix}")
    splits = read_json(index, "tokenised dataset index", fix).get("splits")
    if not isinstance(splits, list):
        raise DataError(f"{index}: tokenised dataset index has no list 'splits'; {fix}")
    missing = [n for n in ["train", *eval_names] if n not in splits]
    if missing:
        raise DataError(f"{folder}: no split(s) {missing}; it has {splits}")
    out = {
        n: encoded_from_arrow(_read_split(folder / n, data_dir), pad_id, f"{folder}/{n}")
        for n in ["train", *eval_names]
    }
    stats = tokenized_stats(data_dir) if (Path(data_dir) / "stats.json").is_file() else {}
    for name, data in out.items():
        if len(data) == 0:
            raise DataError(f"{folder}/{name}: no rows")
        entry = stats.get(name)
        rows = entry.get("rows") if isinstance(entry, dict) else None
        if rows is not None and rows != len(data):  # an Arrow stream cut at a record batch boundary reads fine
            raise DataError(
                f"{folder}/{name}: {len(data)} rows, but {Path(data_dir) / 'stats.json'} says {rows} (truncated?); {fix}"
            )
    return out["train"], [(n, out[n]) for n in eval_names]


def apply_subset(train: Encoded, subset_path: Path, n_labels: int) -> Encoded:
    """Restrict ``train`` to the subset's uids (training-set order, ``copies`` each), with weights / bias log-probs."""
    subset_path = Path(subset_path)
    if not subset_path.is_file():
        raise DataError(f"subset file not found: {subset_path}")
    failure = parquet_meta(subset_path, "subset file").get("failed")
    if failure:
        raise ReferenceFailed(failure)
    sub = read_parquet(subset_path, "subset file")
    if "uid" not in sub.columns:
        raise DataError(f"{subset_path}: missing column 'uid'; have {list(sub.columns)}")
    sub["uid"] = sub["uid"].astype(str)
    dup = sub["uid"][sub["uid"].duplicated()]
    if len(dup):
        raise DataError(f"{subset_path}: column 'uid' is not unique, e.g. {dup.iloc[0]!r}")
    row_of = pd.Series(np.arange(len(train)), index=pd.Index(train.uids))
    found = sub["uid"].isin(row_of.index)
    if not found.all():
        bad = sub.loc[~found, "uid"]
        raise DataError(f"{subset_path}: uid {bad.iloc[0]!r} is not in the training set ({len(bad)} unknown uid(s))")
    rows = np.sort(row_of.loc[sub["uid"]].to_numpy())
    out = train.take(rows)
    sub = sub.set_index("uid").loc[out.uids]
    if "weight" in sub.columns:
        w = sub["weight"].to_numpy(dtype=np.float32)
        if not np.isfinite(w).all() or (w < 0).any():
            raise DataError(f"{subset_path}: column 'weight' must be finite and >= 0")
        out.weight = w
    bias_cols = [f"bias_logp_{c}" for c in range(n_labels)]
    present = [c for c in sub.columns if c.startswith("bias_logp_")]
    if present:
        if sorted(present) != sorted(bias_cols):
            raise DataError(f"{subset_path}: bias columns {present} do not match the {n_labels} labels {bias_cols}")
        out.bias_logp = sub[bias_cols].to_numpy(dtype=np.float32)
    if "copies" in sub.columns:  # JTT's upsampling: each instance ``copies`` times in the training set
        copies = sub["copies"].to_numpy()
        if (copies < 1).any():
            raise DataError(f"{subset_path}: column 'copies' must be >= 1")
        out = out.take(np.repeat(np.arange(len(out)), copies))
    return out


def collate(data: Encoded, idx: np.ndarray, device: torch.device) -> Batch:
    """Pad the instances ``idx`` to the batch's longest: on the host (pinned for a GPU), then to ``device``."""
    return collate_host(data, idx, device.type == "cuda", pad_multiple(device)).to(device)


def micro_batches(lengths: np.ndarray, idx: np.ndarray, buckets: int, multiple: int = 1) -> list[np.ndarray]:
    """The rows ``idx`` of one batch as at most ``buckets`` length-sorted micro-batches, padding minimised."""
    if buckets == 1:
        return [idx]
    idx = idx[np.argsort(lengths[idx], kind="stable")]
    bounds = bucket_bounds(pad_to(lengths[idx], multiple)[None], buckets)[0]
    return [idx[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def collate_host(data: Encoded, idx: np.ndarray, pin: bool = False, multiple: int = 1) -> Batch:
    """The batch of ``idx`` in host memory (page-locked when ``pin``), its width rounded up to ``multiple``."""
    idx = np.asarray(idx, dtype=np.int64)
    lengths = data.lengths[idx]
    width = int(pad_to(lengths.max(), multiple))
    mask = np.arange(width)[None, :] < lengths[:, None]
    src = _positions(data.offsets[idx], lengths)

    def padded(flat: np.ndarray, pad: int) -> np.ndarray:
        arr = np.full((len(idx), width), pad, dtype=np.int64)
        arr[mask] = flat[src]
        return arr

    def t(arr, rows=slice(None)):
        if arr is None:
            return None
        x = torch.from_numpy(np.ascontiguousarray(arr[rows]))
        return x.pin_memory() if pin else x

    inputs = {"input_ids": t(padded(data.ids, data.pad_id))}
    if data.type_ids is not None:
        inputs["token_type_ids"] = t(padded(data.type_ids, 0))
    inputs["attention_mask"] = t(mask.astype(np.int64))
    weight, bias_logp = t(data.weight, idx), t(data.bias_logp, idx)
    return Batch(inputs, t(data.labels, idx), t(idx), weight, bias_logp, int(lengths.sum()), width)


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the training set in ``epoch``: a permutation seeded by (seed, epoch)."""
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=gen).numpy()


def train_loader(data: Encoded, batch_size: int, seed: int, buckets: int, device: torch.device, epoch=0, batch=0):
    """(rows, micro-batches on the host) of every optimiser step from (epoch, batch) on, endlessly: epoch ``e`` is
    the permutation seeded by (seed, e) cut into batches; built in the main process (pinned for a GPU)."""
    pin, multiple = device.type == "cuda", pad_multiple(device)

    def batch_rows():
        e, first = epoch, batch
        while True:
            perm = epoch_permutation(seed, e, len(data))
            yield from (perm[b * batch_size : (b + 1) * batch_size] for b in range(first, -(-len(data) // batch_size)))
            e, first = e + 1, 0

    def micro(rows: np.ndarray) -> tuple[np.ndarray, list[Batch]]:
        return rows, [
            collate_host(data, g, pin, multiple) for g in micro_batches(data.lengths, rows, buckets, multiple)
        ]

    return torch.utils.data.DataLoader(
        np.arange(len(data)),  # indexed by a batch's rows, it gives the rows
        sampler=batch_rows(),
        batch_size=None,
        collate_fn=micro,
        generator=torch.Generator(),  # its seed draw must leave the global (dropout) random stream alone
    )
