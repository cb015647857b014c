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


#: the hub config.json values of the paper models the benchmarks build at random init (no network)
DEBERTA_V3 = dict(max_position_embeddings=512, relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=256,
                  norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False, max_relative_positions=-1,
                  type_vocab_size=0, layer_norm_eps=1e-7, vocab_size=128100, hidden_act="gelu")  # fmt: skip
SHAPES = {
    "deberta-v3-large": ("deberta-v2", dict(DEBERTA_V3, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                            intermediate_size=4096)),
    "electra-large": ("electra", dict(vocab_size=30522, embedding_size=1024, hidden_size=1024, num_hidden_layers=24,
                                      num_attention_heads=16, intermediate_size=4096, max_position_embeddings=512,
                                      type_vocab_size=2, layer_norm_eps=1e-12)),
    "deberta-v3-small": ("deberta-v2", dict(DEBERTA_V3, hidden_size=768, num_hidden_layers=6, num_attention_heads=12,
                                            intermediate_size=3072)),
}  # fmt: skip


def model_config(shape: str, n_classes: int = 3, **override):
    """The transformers config of a benchmark shape (``SHAPES``), with ``override`` (e.g. a smaller size)."""
    from transformers import AutoConfig

    kind, dims = SHAPES[shape]
    return AutoConfig.for_model(kind, **{**dims, **override}, num_labels=n_classes)


def random_model(config, seed: int = 0):
    """A random-init sequence classifier of ``config`` (no download)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from ftft.modeling import silence_transformers

    silence_transformers()
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config)
