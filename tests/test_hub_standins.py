"""The real loading path: hub ids from an offline Hugging Face cache of stand-ins (``tests/rehearsal/hub.py``), loaded
in subprocesses that read ``HF_HOME`` / ``HF_HUB_OFFLINE`` as on a compute node; ``HF_ENDPOINT`` is a closed port."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rehearsal import hub as standins

from ftft.errors import ModelError
from ftft.modeling import select_files

pytestmark = pytest.mark.integration  # real training runs / subprocesses / servers: the integration tier

UNCASED = (
    "prajjwal1/bert-tiny",
    "bert-large-uncased",
    *(f"google/electra-{s}-discriminator" for s in ("small", "base", "large")),
)
MODEL_TYPES = {"microsoft/deberta": "deberta-v2", "google/electra": "electra", "roberta": "roberta", "": "bert"}

# parameters a sequence-classification model gets fresh (not in any pretraining checkpoint)
TWO_LAYER_HEAD = {f"classifier.{layer}.{p}" for layer in ("dense", "out_proj") for p in ("weight", "bias")}
NEW_HEAD = {"deberta-v2": {f"{m}.{p}" for m in ("pooler.dense", "classifier") for p in ("weight", "bias")},
            "electra": TWO_LAYER_HEAD, "bert": {"classifier.weight", "classifier.bias"}, "roberta": TWO_LAYER_HEAD}  # fmt: skip


def offline_env(hf_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    # nothing listens at HF_ENDPOINT: a network attempt fails at once
    return env | dict(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9",
                      HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1", PYTHONHASHSEED="0") | extra  # fmt: skip


def run_py(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", textwrap.dedent(script), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def last_json(proc: subprocess.CompletedProcess):
    assert proc.returncode == 0, f"rc {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def hf_cache(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """``(HF_HOME, {hub id: snapshot})`` with all nine stand-ins, built once."""
    home = tmp_path_factory.mktemp("hf_home")
    return home, standins.build_hf_cache(home)


LOAD_SCRIPT = """
    import json, os, sys
    import torch
    from safetensors.torch import load_file
    from ftft.errors import ModelError
    from ftft.modeling import load_tokenizer_and_model

    torch.manual_seed(0)
    out = {}
    def check(hub_id, snap):
        r = {}
        for task, n, a, b in (("nli", 3, ["Alice painted the red fence.", "The dog walked quickly."],
                                          ["A woman painted the fence.", "The cat is sleeping."]),
                              ("hsd", 2, ["It was a happy song, wasn't it?"], None)):
            tok, model = load_tokenizer_and_model(hub_id, n)
            enc = tok(a, b, return_tensors="pt", padding=True, truncation=True, max_length=64)
            model.eval()
            with torch.no_grad():
                logits = model(**enc).logits
            r[task] = {"shape": list(logits.shape), "finite": bool(torch.isfinite(logits).all())}
        st = f"{snap}/model.safetensors"
        try:
            ckpt = load_file(st)
        except FileNotFoundError:
            ckpt = torch.load(f"{snap}/pytorch_model.bin", weights_only=True)
        ckpt = {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
                for k, v in ckpt.items()}
        own = model.state_dict()
        r["new"] = sorted(k for k in own if k not in ckpt)
        r["max_diff"] = max(float((own[k] - ckpt[k].float()).abs().max()) for k in own if k in ckpt)
        ids = lambda s: tok(s)["input_ids"]
        r.update(
            tokenizer=type(tok).__name__,
            model=type(model).__name__,
            model_type=model.config.model_type,
            dtypes=sorted({str(p.dtype) for p in model.parameters()}),
            pad=[tok.pad_token_id, model.config.pad_token_id],
            lowercases=ids("Alice SAW Paris") == ids("alice saw paris"),
            mask_token=tok.mask_token,
        )
        return r

    for hub_id, snap in json.loads(sys.argv[1]).items():
        try:
            out[hub_id] = check(f"{hub_id}@{os.path.basename(snap)}", snap)  # at the pinned revision
        except Exception as exc:  # reported per model by the test
            out[hub_id] = {"error": f"{type(exc).__name__}: {exc}"}
    for key, source in (("missing", "prajjwal1/bert-mini"), ("wrong_revision", "prajjwal1/bert-tiny@" + "0" * 40)):
        try:
            load_tokenizer_and_model(source, 2)
            out[key] = None
        except ModelError as exc:
            out[key] = str(exc)
    print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def offline_loads(hf_cache):
    home, snaps = hf_cache
    return last_json(run_py(LOAD_SCRIPT, offline_env(home), json.dumps({k: str(v) for k, v in snaps.items()})))


@pytest.mark.parametrize("hub_id", standins.HUB_IDS)
def test_loads_by_hub_id_offline(offline_loads, hub_id):
    r = offline_loads[hub_id]
    assert "error" not in r, r.get("error")
    assert r["nli"] == {"shape": [2, 3], "finite": True}
    assert r["hsd"] == {"shape": [1, 2], "finite": True}
    assert r["dtypes"] == ["torch.float32"]  # DeBERTa-v3's float16 .bin included
    assert r["pad"][0] == r["pad"][1] is not None
    family = {"deberta-v2": "DebertaV2", "electra": "Electra", "bert": "Bert", "roberta": "Roberta"}[r["model_type"]]
    assert r["model"] == f"{family}ForSequenceClassification"
    # every pretrained weight is loaded (legacy gamma/beta names included); only the head is new
    assert set(r["new"]) == NEW_HEAD[r["model_type"]], r["new"]
    assert r["max_diff"] == 0.0
    tokenizers = {"DebertaV2": ["DebertaV2"], "Electra": ["Electra", "Bert"], "Bert": ["Bert"], "Roberta": ["Roberta"]}
    assert r["tokenizer"].removesuffix("Fast") in {f"{t}Tokenizer" for t in tokenizers[family]}
    assert r["lowercases"] == (hub_id in UNCASED)
    assert r["mask_token"] == ("<mask>" if hub_id == "roberta-large" else "[MASK]")
    # bert-tiny's config.json has no model_type: inferred from the id
    assert r["model_type"] == next(t for p, t in MODEL_TYPES.items() if hub_id.startswith(p))


SPM_SCRIPT = (
    'from ftft.modeling import load_tokenizer_and_model\nload_tokenizer_and_model("microsoft/deberta-v3-small", 3)'
)


@pytest.mark.parametrize("blocked", [("sentencepiece",), ("google.protobuf",), ("sentencepiece", "google.protobuf")])
def test_missing_sentencepiece_or_protobuf_is_a_clear_error(hf_cache, tmp_path, blocked):
    """With the module(s) made unimportable (as if not installed), the DeBERTa-v3 load says what to install."""
    home, _ = hf_cache
    stub = tmp_path / "stub"
    stub.mkdir()
    # sys.modules[name] = None: `import name` raises ImportError and importlib.util.find_spec(name) is None,
    # exactly what transformers sees when the package is not installed
    (stub / "sitecustomize.py").write_text("import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked))
    env = offline_env(
        home, PYTHONPATH=os.pathsep.join([str(stub), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    )
    proc = run_py(SPM_SCRIPT, env)
    assert proc.returncode == 1, "loaded although sentencepiece/protobuf are blocked"
    err = proc.stderr.rsplit("ftft.errors.ModelError: ", 1)[1]  # the message, not the chained tracebacks
    assert "sentencepiece" in err and "protobuf" in err and "pip install sentencepiece protobuf" in err
    assert "microsoft/deberta-v3-small" in err and "spm.model" in err
    assert "tiktoken" not in err
    missing = {"sentencepiece": "sentencepiece", "google.protobuf": "protobuf"}
    assert " and ".join(missing[m] for m in blocked) + " cannot be imported" in err


FETCH_SCRIPT = """
    import json, sys
    from ftft import cli, modeling
    from ftft.errors import ModelError
    argv = json.loads(sys.argv[1])
    out = {"rcs": [cli.main(a) for a in argv["cli"]], "direct": []}
    for hub_id, cache in argv["direct"]:
        try:
            out["direct"].append(str(modeling.fetch_model(hub_id, cache)))
        except ModelError as exc:
            out["direct"].append("ModelError: " + str(exc))
    print(json.dumps(out))
"""


def test_fetch_models_offline_verifies_the_cache_and_a_missing_model_names_it(hf_cache, offline_loads, tmp_path):
    msg = offline_loads["missing"]  # loading a model absent from the cache names the id and the fetch command
    assert msg is not None
    assert "'prajjwal1/bert-mini'" in msg and "HF_HUB_OFFLINE=1" in msg and "models.<key>.path" in msg
    assert "ftft fetch-models --model prajjwal1/bert-mini" in msg and "fetch_models" in msg
    wrong = offline_loads["wrong_revision"]  # the id is cached, but not at that revision: as on the hub
    assert wrong is not None and f"ftft fetch-models --model prajjwal1/bert-tiny@{'0' * 40}" in wrong
    home, snaps = hf_cache
    marker = tmp_path / "out" / "models.json"
    broken = tmp_path / "broken"
    standins.build_hf_cache(broken, ["prajjwal1/bert-tiny"])
    weights = next((broken / "hub").glob("models--prajjwal1--bert-tiny/snapshots/*/pytorch_model.bin"))
    weights.resolve().unlink()  # an interrupted download: the link is there, the blob is not
    models = (["microsoft/deberta-v3-base", "roberta-large"],
              ["google/electra-small-discriminator", "prajjwal1/bert-mini", "org/absent-too"])  # fmt: skip
    cli = [["fetch-models", *(a for m in ms for a in ("--model", m)), "--marker", str(marker.with_name(name))]
           for ms, name in zip(models, ("models.json", "failed.json"), strict=True)]  # fmt: skip
    argv = {"cli": cli, "direct": [["prajjwal1/bert-tiny", str(broken / "hub")], ["bert-large-uncased", None]]}
    proc = run_py(FETCH_SCRIPT, offline_env(home), json.dumps(argv))
    out = last_json(proc)
    assert out["rcs"] == [0, 1]
    # the CLI logs the ModelError (no traceback), naming the missing id and the command
    assert "2 models failed" in proc.stderr and "ftft fetch-models --model prajjwal1/bert-mini" in proc.stderr
    assert "ftft fetch-models --model org/absent-too" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.with_name("failed.json").exists()  # no marker unless every model is there
    doc = json.loads(marker.read_text())
    assert doc["offline"] is True and doc["cache"] == str(home / "hub")
    assert [m["hub_id"] for m in doc["models"]] == ["microsoft/deberta-v3-base", "roberta-large"]
    for m in doc["models"]:
        snap = snaps[m["hub_id"]]
        assert m["revision"] == snap.name == (snap.parent.parent / "refs" / "main").read_text()
        assert m["snapshot"] == str(snap)
        assert m["files"] == sorted(p.name for p in snap.iterdir())
    incomplete, present = out["direct"]
    assert incomplete.startswith("ModelError: ") and "'prajjwal1/bert-tiny'" in incomplete
    assert "weights" in incomplete and "ftft fetch-models --model prajjwal1/bert-tiny" in incomplete
    assert present == str(snaps["bert-large-uncased"])


@pytest.mark.parametrize(
    ("hub_id", "chosen"),
    [("roberta-large", "tokenizer.json tokenizer_config.json vocab.json merges.txt model.safetensors"),
     ("microsoft/deberta-v3-base", "tokenizer_config.json spm.model pytorch_model.bin"),
     ("google/electra-small-discriminator", "tokenizer.json tokenizer_config.json vocab.txt pytorch_model.bin"),
     ("bert-large-uncased", "tokenizer.json tokenizer_config.json vocab.txt model.safetensors"),
     ("prajjwal1/bert-tiny", "vocab.txt pytorch_model.bin")],
)  # fmt: skip
def test_select_files_takes_config_tokenizer_and_one_pytorch_format(hub_id, chosen):
    """The repos' main file lists (tests/fixtures/hub/README.md), as the stand-ins copy them."""
    assert select_files(list(standins.STANDINS[hub_id].files)) == ["config.json", *chosen.split()]
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    sharded = ["config.json", "tokenizer.json", "model.safetensors.index.json", "pytorch_model.bin", *shards]
    assert select_files(sharded) == ["config.json", "tokenizer.json", "model.safetensors.index.json", *shards]


@pytest.mark.parametrize(
    ("files", "error"),
    [(["config.json", "vocab.txt", "tf_model.h5", "flax_model.msgpack"], "no PyTorch weights"),
     (["pytorch_model.bin", "vocab.txt"], "no config.json"), (["config.json", "pytorch_model.bin"], "no tokenizer")],
)  # fmt: skip
def test_select_files_errors_name_the_model(files, error):
    with pytest.raises(ModelError, match=f"'org/x' has {error}"):
        select_files(files, "org/x")
