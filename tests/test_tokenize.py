"""The tokenize step: a real ``datasets`` map over several batches, read back as the engine reads it."""

import json

import numpy as np
import pandas as pd
import pytest
from engine_fixtures import FILLER, LABELS, build_toy_model

from ftft import tokenize
from ftft.data import schema
from ftft.errors import DataError
from ftft.modeling import load_tokenizer
from ftft.train.data import load_tokenized

MAX_LENGTH = 12


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_toy_model(tmp_path_factory.mktemp("model") / "tiny")


def frame(n: int, seed: int, prefix: str) -> pd.DataFrame:
    """Pairs and single texts mixed (HSD rows have no text_b), some longer than MAX_LENGTH."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a = " ".join(rng.choice(FILLER, size=rng.integers(1, 12)))
        b = None if i % 3 == 0 else " ".join(rng.choice(FILLER, size=rng.integers(1, 6)))
        rows.append({"uid": f"{prefix}{i}", "text_a": a, "text_b": b, "label": int(rng.integers(3)), "split": prefix})
    return pd.DataFrame(rows, columns=["uid", "text_a", "text_b", "label", "split"])


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory, model):
    root = tmp_path_factory.mktemp("data")
    n_train = 2 * tokenize.MAP_BATCH + 37  # several map batches, the last one short
    train, ev = frame(n_train, 0, "t"), frame(50, 1, "e")
    schema.write(train, root / "train.parquet", LABELS, "toy")
    schema.write(ev, root / "eval" / "ev.parquet", LABELS, "toy")
    stats = tokenize.tokenize_task(root / "train.parquet", root / "eval", ["ev"], str(model), MAX_LENGTH, root / "tok")
    return root / "tok", stats, train, ev


def direct(tokenizer, df: pd.DataFrame) -> list[dict]:
    """What the engine always did: one tokenizer call per row, truncated, no padding."""
    pairs = zip(df["text_a"], df["text_b"], strict=True)
    return [tokenizer(a, b if isinstance(b, str) else None, truncation=True, max_length=MAX_LENGTH) for a, b in pairs]


def test_ids_equal_per_row_tokenizer_calls_across_batches(tokenized, model):
    folder, _, train, ev = tokenized
    tok = load_tokenizer(str(model))
    data, evals = load_tokenized(folder, ["ev"], tok.pad_token_id)
    for enc, df in ((data, train), (evals[0][1], ev)):
        assert list(enc.uids) == list(df["uid"]) and list(enc.labels) == list(df["label"])
        expected = direct(tok, df)
        assert [int(n) for n in enc.lengths] == [len(e["input_ids"]) for e in expected]
        for i in [i for i in (0, 1, tokenize.MAP_BATCH - 1, tokenize.MAP_BATCH, len(df) - 1) if i < len(df)]:
            s, n = enc.offsets[i], enc.lengths[i]
            assert enc.ids[s : s + n].tolist() == expected[i]["input_ids"]
            assert enc.type_ids[s : s + n].tolist() == expected[i]["token_type_ids"]
    assert data.ids.dtype == np.int32 and data.type_ids.dtype == np.int8
    assert data.lengths.max() == MAX_LENGTH  # the long rows are truncated, not dropped


def test_stats_describe_the_data(tokenized, model):
    folder, stats, train, _ = tokenized
    assert json.loads((folder / tokenize.STATS).read_text()) == stats
    lengths = [len(e["input_ids"]) for e in direct(load_tokenizer(str(model)), train)]
    assert stats["train"]["rows"] == len(train) and stats["train"]["tokens"] == sum(lengths)
    assert stats["train"]["truncated"] == sum(n >= MAX_LENGTH for n in lengths)
    assert stats["train"]["tokens_per_example"] <= stats["train"]["padded_tokens_per_example"] <= MAX_LENGTH
    assert stats["tokenizer"] == tokenize.tokenizer_fingerprint(load_tokenizer(str(model)))
    assert sorted(p.name for p in folder.iterdir()) == ["data", tokenize.STATS]  # written atomically, no leftovers


def test_bad_inputs_are_data_errors_naming_the_file(tmp_path, model):
    schema.write(frame(5, 0, "t"), tmp_path / "train.parquet", LABELS, "toy")
    schema.write(frame(0, 0, "e"), tmp_path / "eval" / "ev.parquet", LABELS, "toy")
    with pytest.raises(DataError, match=r"ev\.parquet: no rows"):
        tokenize.tokenize_task(tmp_path / "train.parquet", tmp_path / "eval", ["ev"], str(model), 8, tmp_path / "o")
    with pytest.raises(DataError, match="may not be called 'train'"):
        tokenize.tokenize_task(tmp_path / "train.parquet", tmp_path / "eval", ["train"], str(model), 8, tmp_path / "o")
    assert not (tmp_path / "o").exists()
    with pytest.raises(DataError, match="not a tokenised dataset"):
        load_tokenized(tmp_path, ["ev"], 0)
