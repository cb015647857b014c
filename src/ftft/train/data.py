"""Training and evaluation data for the engine: read, select the subset, tokenise once, batch.

Texts are tokenised once up front into lists of ids (no padding); each batch is padded to its
own longest instance (dynamic padding). Nothing is sorted: batches follow the epoch's
permutation, so a run is a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data import schema
from ..errors import DataError


@dataclass
class Encoded:
    """A tokenised dataset: per-instance id lists plus the per-instance training extras."""

    uids: list[str]
    labels: np.ndarray  # int64 [N]
    features: dict[str, list[list[int]]]  # input name -> per-instance ids (input_ids, token_type_ids)
    lengths: np.ndarray  # int64 [N], real (non-pad) tokens
    weight: np.ndarray | None = None  # float32 [N]
    bias_logp: np.ndarray | None = None  # float32 [N, C]
    pad_id: int = 0

    def __len__(self) -> int:
        return len(self.uids)


@dataclass
class Batch:
    """One padded batch on the training device."""

    inputs: dict[str, torch.Tensor]  # model keyword arguments
    labels: torch.Tensor  # [B]
    idx: torch.Tensor  # [B] row numbers in the training set (for the dynamics)
    weight: torch.Tensor | None = None
    bias_logp: torch.Tensor | None = None
    n_tokens: int = 0  # real tokens in the batch (host-side count)


def read_split(path: Path, labels: list[str]) -> pd.DataFrame:
    """Read a normalised task file; its label names (when recorded) must be the task's."""
    df, meta = schema.read(path)
    names = meta.get("label_names")
    if names is not None and list(names) != list(labels):
        raise DataError(f"{path}: label names {names} differ from the task's labels {labels}")
    if len(df) == 0:
        raise DataError(f"{path}: no rows")
    return df


def apply_subset(train: pd.DataFrame, subset_path: Path, n_labels: int) -> tuple[pd.DataFrame, dict]:
    """Restrict ``train`` to the subset's uids (training-file order); return weights / bias log-probs."""
    subset_path = Path(subset_path)
    if not subset_path.is_file():
        raise DataError(f"subset file not found: {subset_path}")
    sub = pd.read_parquet(subset_path)
    if "uid" not in sub.columns:
        raise DataError(f"{subset_path}: missing column 'uid'; have {list(sub.columns)}")
    sub["uid"] = sub["uid"].astype(str)
    dup = sub["uid"][sub["uid"].duplicated()]
    if len(dup):
        raise DataError(f"{subset_path}: column 'uid' is not unique, e.g. {dup.iloc[0]!r}")
    known = set(train["uid"].astype(str))
    unknown = [u for u in sub["uid"] if u not in known]
    if unknown:
        raise DataError(f"{subset_path}: uid {unknown[0]!r} is not in the training set ({len(unknown)} unknown uid(s))")
    train = train[train["uid"].astype(str).isin(set(sub["uid"]))].reset_index(drop=True)
    sub = sub.set_index("uid").loc[train["uid"].astype(str)]
    extras: dict = {}
    if "weight" in sub.columns:
        w = sub["weight"].to_numpy(dtype=np.float32)
        if not np.isfinite(w).all() or (w < 0).any():
            raise DataError(f"{subset_path}: column 'weight' must be finite and >= 0")
        extras["weight"] = w
    bias_cols = [f"bias_logp_{c}" for c in range(n_labels)]
    present = [c for c in sub.columns if c.startswith("bias_logp_")]
    if present:
        if sorted(present) != sorted(bias_cols):
            raise DataError(f"{subset_path}: bias columns {present} do not match the {n_labels} labels {bias_cols}")
        extras["bias_logp"] = sub[bias_cols].to_numpy(dtype=np.float32)
    return train, extras


def encode(df: pd.DataFrame, tokenizer, max_length: int, extras: dict | None = None) -> Encoded:
    """Tokenise a normalised frame once (truncated to ``max_length``, unpadded)."""
    text_a = df["text_a"].astype(str).tolist()
    text_b = df["text_b"].tolist()
    has_b = [not pd.isna(b) for b in text_b]
    names = [n for n in tokenizer.model_input_names if n in ("input_ids", "token_type_ids")]
    features: dict[str, list] = {n: [None] * len(df) for n in names}
    for paired in (True, False):
        rows = [i for i, h in enumerate(has_b) if h == paired]
        if not rows:
            continue
        pairs = [str(text_b[i]) for i in rows] if paired else None
        enc = tokenizer([text_a[i] for i in rows], pairs, truncation=True, max_length=max_length)
        for n in names:
            for i, ids in zip(rows, enc[n], strict=True):
                features[n][i] = list(ids)
    lengths = np.array([len(ids) for ids in features["input_ids"]], dtype=np.int64)
    extras = extras or {}
    return Encoded(
        uids=df["uid"].astype(str).tolist(),
        labels=df["label"].to_numpy(dtype=np.int64),
        features=features,
        lengths=lengths,
        weight=extras.get("weight"),
        bias_logp=extras.get("bias_logp"),
        pad_id=int(tokenizer.pad_token_id),
    )


def collate(data: Encoded, idx: np.ndarray, device: torch.device) -> Batch:
    """Pad the instances ``idx`` to the batch's longest and move them to ``device``."""
    lengths = data.lengths[idx]
    width = int(lengths.max())
    inputs = {}
    for name, seqs in data.features.items():
        pad = data.pad_id if name == "input_ids" else 0
        arr = np.full((len(idx), width), pad, dtype=np.int64)
        for row, i in enumerate(idx):
            arr[row, : lengths[row]] = seqs[i]
        inputs[name] = torch.from_numpy(arr).to(device)
    mask = np.arange(width)[None, :] < lengths[:, None]
    inputs["attention_mask"] = torch.from_numpy(mask.astype(np.int64)).to(device)
    return Batch(
        inputs=inputs,
        labels=torch.from_numpy(data.labels[idx]).to(device),
        idx=torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(device),
        weight=None if data.weight is None else torch.from_numpy(data.weight[idx]).to(device),
        bias_logp=None if data.bias_logp is None else torch.from_numpy(data.bias_logp[idx]).to(device),
        n_tokens=int(lengths.sum()),
    )


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the training set in ``epoch``: a permutation seeded by (seed, epoch)."""
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=gen).numpy()


def batch_indices(perm: np.ndarray, b: int, batch_size: int) -> np.ndarray:
    """Row numbers of batch ``b`` of an epoch (the last batch of an epoch may be smaller)."""
    return perm[b * batch_size : (b + 1) * batch_size]


def batches_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)
