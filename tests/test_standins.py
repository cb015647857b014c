"""Tiny demo models: every family builds, reloads, orders by size and is deterministic."""

import json

import pytest
import torch
from safetensors.torch import load_file

from ftft import standins
from ftft.cli import main
from ftft.data import schema
from ftft.errors import ModelError
from ftft.modeling import load_tokenizer_and_model, looks_like_path, model_source, split_revision

pytestmark = pytest.mark.integration  # real training runs / subprocesses / servers: the integration tier


@pytest.fixture(scope="module")
def built(tmp_path_factory, demo_texts):
    root = tmp_path_factory.mktemp("demo_models")
    return {
        (fam, size): standins.build_demo_model(f"m-{fam}-{size}", fam, size, demo_texts, root / f"{fam}-{size}")
        for fam in standins.FAMILIES
        for size in standins.SIZES
    }


@pytest.mark.parametrize("family", standins.FAMILIES)
def test_sizes_are_strictly_ordered(built, family):
    weights = [load_file(str(built[family, size] / "model.safetensors")) for size in standins.SIZES]
    counts = [sum(t.numel() for t in w.values()) for w in weights]
    assert counts == sorted(counts) and len(set(counts)) == 4, counts
    assert counts[-1] < 200_000


@pytest.mark.parametrize("family", standins.FAMILIES)
@pytest.mark.parametrize("num_labels", [2, 3])
def test_reload_and_forward_pair(built, demo_frames, family, num_labels):
    path = built[family, "small"]
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == family and cfg["max_position_embeddings"] >= standins.MAX_POSITIONS
    tok, model = load_tokenizer_and_model(str(path), num_labels)
    nli = demo_frames["nli"].head(8)
    enc = tok(nli["text_a"].tolist(), nli["text_b"].tolist(), padding=True, truncation=True, return_tensors="pt")
    ids = enc["input_ids"][0].tolist()
    assert ids[0] == tok.cls_token_id and ids.count(tok.sep_token_id) == 2
    assert ("token_type_ids" in enc) == (family != "roberta")
    if "token_type_ids" in enc:
        assert enc["token_type_ids"].max().item() == 1
    assert enc["input_ids"].shape[1] <= 32
    # padding on the right with the model's pad id
    assert (enc["input_ids"][enc["attention_mask"] == 0] == model.config.pad_token_id).all()
    model.train()
    out = model(**enc, labels=torch.tensor(nli["label"].tolist()) % num_labels)
    assert out.logits.shape == (8, num_labels)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    # the encoder weights come from the checkpoint; only the head is new (RoBERTa's
    # classifier does not use the pooler, as with roberta-large)
    saved = load_file(str(path / "model.safetensors"))
    state = model.state_dict()
    prefix = model.base_model_prefix
    shared = [k for k in saved if f"{prefix}.{k}" in state]
    assert {k for k in saved if k not in shared} <= {"pooler.dense.weight", "pooler.dense.bias"}
    assert len(shared) >= len(saved) - 2
    assert all(torch.equal(saved[k], state[f"{prefix}.{k}"]) for k in shared)


def test_same_key_same_weights_other_key_differs_and_a_rebuild_overwrites(tmp_path, demo_texts):
    a = standins.build_demo_model("electra-small", "electra", "small", demo_texts, tmp_path / "a")
    b = standins.build_demo_model("electra-small", "electra", "small", demo_texts, tmp_path / "b")
    c = standins.build_demo_model("electra-base", "electra", "small", demo_texts, tmp_path / "c")
    wa, wb, wc = (load_file(str(p / "model.safetensors")) for p in (a, b, c))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    standins.build_demo_model("k", "bert", "tiny", demo_texts, c)  # over another model: replaced, no temp dirs left
    cfg = json.loads((c / "config.json").read_text())
    assert (cfg["model_type"], cfg["hidden_size"]) == ("bert", standins.DEMO_ARCH["tiny"]["hidden"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]


def test_cli_builds_several_models_in_one_process(tmp_path, demo_frames, capsys):
    corpus = tmp_path / "nli.parquet"
    schema.write(demo_frames["nli"], corpus, schema.NLI_LABELS, "demo_nli")
    out, out2 = tmp_path / "models" / "deberta-v3-small", tmp_path / "models" / "roberta-large"
    args = ["build-demo-model", "--model", "deberta-v3-small", "--family", "deberta-v2", "--size", "small", "--out",
            str(out)]  # fmt: skip
    args += ["--model", "roberta-large", "--family", "roberta", "--size", "large", "--out", str(out2)]
    assert main([*args, "--corpus", str(corpus), "--num-labels", "3"]) == 0
    assert len(json.loads((out / "config.json").read_text())["id2label"]) == 3
    assert json.loads((out2 / "config.json").read_text())["model_type"] == "roberta"
    tok, _ = load_tokenizer_and_model(str(out), 3)
    assert tok.tokenize("the man painted the fence") == ["the", "man", "painted", "the", "fence"]
    assert main([*args[:9], "--model", "roberta-large", "--corpus", str(corpus)]) == 1  # a --model without its --out
    captured = capsys.readouterr()
    assert captured.out.strip() == ""  # no progress bars / blank lines from the trainers


def test_errors_name_the_problem(tmp_path, demo_texts):
    with pytest.raises(ModelError, match="family"):
        standins.build_demo_model("k", "gpt2", "tiny", demo_texts, tmp_path / "x")
    with pytest.raises(ModelError, match="size"):
        standins.build_demo_model("k", "bert", "huge", demo_texts, tmp_path / "x")
    with pytest.raises(ModelError, match="not found"):
        load_tokenizer_and_model(str(tmp_path / "missing"), 2)
    with pytest.raises(ModelError, match="not found"):
        load_tokenizer_and_model("resources/demo_models/missing", 2)
    assert not looks_like_path("microsoft/deberta-v3-small") and not looks_like_path("roberta-large")
    assert not (tmp_path / "x").exists()


def test_model_source_and_dir():
    models_ = {"a": {"hub_id": "org/a", "path": None}, "b": {"hub_id": "org/b", "path": "/models/b"}}
    cfg = {"mode": "paper", "results": "out", "resources": "res", "state_dir": "st", "models": models_}
    assert model_source(cfg, "a") == "org/a"
    cfg["models"]["a"]["revision"] = "0123abc"  # every hub call gets it (modeling.split_revision)
    assert model_source(cfg, "a") == "org/a@0123abc" and split_revision("org/a@0123abc") == ("org/a", "0123abc")
    assert model_source(cfg, "b") == "/models/b"
    assert model_source({**cfg, "mode": "demo"}, "b") == "res/demo_models/b"
    with pytest.raises(ModelError, match="unknown model"):
        model_source(cfg, "c")
