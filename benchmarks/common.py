"""Shared pieces of the benchmarks: synthetic tokenised data in the engine's format, small models."""

from __future__ import annotations

import numpy as np

from ftft.train.data import Encoded


def random_encoded(n: int, lengths: np.ndarray, vocab: int, n_classes: int, seed: int = 0) -> Encoded:
    """``n`` instances of random token ids with the given lengths, flat with offsets (the tokenize step's layout)."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    total = int(lengths.sum())
    return Encoded(
        uids=np.array([str(i) for i in range(n)]),
        labels=rng.integers(0, n_classes, n).astype(np.int64),
        ids=rng.integers(5, vocab, total).astype(np.int32),
        type_ids=np.zeros(total, dtype=np.int8),
        offsets=offsets,
        lengths=lengths,
    )


def mnli_like_lengths(n: int, seed: int = 0, mean: float = 45.0, sd: float = 18.0, max_length: int = 300) -> np.ndarray:
    """Pair lengths (tokens) shaped like MultiNLI's with a DeBERTa-v3 tokenizer: ~45 on average, a long tail."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(mean) - 0.08, 0.4, n).round(), 8, max_length).astype(np.int64)
