"""Task "toy" (3 labels) for the engine tests: text pairs whose second text holds the keyword that decides the label
(``yes`` / ``maybe`` / ``no``) among filler words; a demo BERT ("base") with a tokenizer trained on the toy texts;
``tokenize_toy`` runs the real tokenize step (what the engine reads)."""

from pathlib import Path

import numpy as np
import pandas as pd

from ftft import grid
from ftft.data import schema

LABELS = ["entailment", "neutral", "contradiction"]
KEYWORDS = ["yes", "maybe", "no"]
FILLER = "the a cat dog sat ran on under mat box red blue big small happy sad old new tree car".split()
OOD_FILLER = "house river green slow fast bird fish lamp road".split()
N_TRAIN, N_ID, N_OOD = 192, 90, 60
EVAL_SETS = (("toy_id", "id"), ("toy_ood", "ood"))


def toy_frame(n: int, seed: int, prefix: str, filler: list[str], labels: list[int] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(rng.integers(3)) if labels is None else labels[i % len(labels)]
        a = " ".join(rng.choice(filler, size=rng.integers(3, 7)))
        words = list(rng.choice(filler, size=rng.integers(2, 5))) + [KEYWORDS[label]]
        rng.shuffle(words)
        rows.append({"uid": f"{prefix}-{i}", "text_a": a, "text_b": " ".join(words), "label": label, "split": prefix})
    return pd.DataFrame(rows)


MAX_LENGTH = 24


def write_toy_data(root: Path, id_labels: list[int] | None = None) -> Path:
    """data_dir with train.parquet and eval/{toy_id,toy_ood}.parquet; returns it."""
    schema.write(toy_frame(N_TRAIN, 1, "train", FILLER), root / "train.parquet", LABELS, "toy")
    schema.write(toy_frame(N_ID, 2, "id", FILLER, id_labels), root / "eval" / "toy_id.parquet", LABELS, "toy")
    schema.write(toy_frame(N_OOD, 3, "ood", FILLER + OOD_FILLER), root / "eval" / "toy_ood.parquet", LABELS, "toy")
    return root


def tokenize_toy(data: Path, model: Path, out: Path) -> Path:
    """The tokenize step's output for a toy data folder (what ``engine.train`` reads)."""
    from ftft.tokenize import tokenize_task

    tokenize_task(data / "train.parquet", data / "eval", [n for n, _ in EVAL_SETS], str(model), MAX_LENGTH, out)
    return out


def toy_setup(root: Path) -> dict:
    """Toy data, model and tokenised data under ``root``: {"root", "raw", "model", "data"}."""
    raw, model = write_toy_data(root / "raw"), build_toy_model(root / "model")
    return {"root": root, "raw": raw, "model": model, "data": tokenize_toy(raw, model, root / "data")}


def build_toy_model(out: Path) -> Path:
    from ftft.standins import build_demo_model

    texts = FILLER + OOD_FILLER + KEYWORDS
    corpus = [" ".join(texts)] + texts
    return build_demo_model("toy-bert", "bert", "base", corpus, out, num_labels=3)


def toy_config(model_dir: Path, steps: int = 150, checkpoints: int = 5, lr: float = 1e-3, **training) -> dict:
    """A minimal config dict that ``make_spec`` resolves for task 'toy' and model 'tiny'."""
    train = {"batch_size": 16, "warmup_ratio": 0.1, "weight_decay": 0.0, "adam_eps": 1e-6, "max_grad_norm": 1.0,
             "mixed_precision": "auto", "eval_batch_size": 64, "threads": 1, "log_every": 50, "length_buckets": 3,
             "deterministic": False, **training}  # fmt: skip
    task = {"labels": LABELS, "metric": "accuracy", "steps": steps, "checkpoints": checkpoints,
            "max_length": MAX_LENGTH, "id_test": {"name": EVAL_SETS[0][0]}, "ood": [{"name": EVAL_SETS[1][0]}]}  # fmt: skip
    jtt = {"optimizer": "sgd", "momentum": 0.9, "lr": None, "weight_decay": 0.0, "max_grad_norm": 1.0,
           "scheduler": "plateau", "plateau": {"factor": 0.1, "patience": 10}}  # fmt: skip
    return {"mode": "paper", "tasks": {"toy": task}, "training": train,
            "models": {"tiny": {"hub_id": "nobody/tiny", "path": str(model_dir), "lr": lr}},
            "methods": {"jtt": jtt, "poe": {"ce_weight": 0.3, "poe_weight": 1.0}}}  # fmt: skip


def toy_run(method: str = "erm", ref: str = "none", budget: str = "full", seed: int = 0) -> grid.Run:
    return grid.Run("toy", "tiny", method, ref, budget, seed)
