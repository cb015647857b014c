"""Hub-faithful tiny stand-ins for the paper's nine hub models, installed in an offline HF cache.

``build_hf_cache(hf_home)`` installs, under the revisions ``workflow_config.yaml`` pins, tiny random-init checkpoints in
huggingface_hub's cache layout, so that ``HF_HUB_OFFLINE=1`` loads them by hub id. Faithful (sources:
``tests/fixtures/hub/README.md``): file names, ``config.json`` keys and layout, tokenizer kinds and settings, weight
formats, dtypes and parameter names. Not: the weights, the tiny vocabularies, placeholder files the loader never reads.
Deterministic: the same inputs give byte-identical files.
"""

import functools
import hashlib
import io
import json
import os
import random
from collections import OrderedDict, namedtuple
from pathlib import Path

# Git-LFS file patterns of these repos' .gitattributes (suffix match).
LFS_SUFFIXES = (".bin", ".h5", ".msgpack", ".safetensors", ".model", ".onnx", ".ot", ".tar.gz", ".pt", ".pth")
PLACEHOLDER_FILES = ("tf_model.h5", "flax_model.msgpack", "rust_model.ot", "model.onnx", "whole-word-masking.tar.gz")


# hidden size, layers, heads, intermediate size and (ELECTRA only) embedding size
Dims = namedtuple("Dims", "hidden layers heads intermediate embedding", defaults=[None])
# family: deberta-v3 | electra | bert-tiny | bert-large | roberta; files: the real repo's file set on main
StandIn = namedtuple("StandIn", "hub_id family files dims seed")


# The real repos' file sets on main; real sizes in comments; the stand-ins keep small < base < large.
_DEBERTA_FILES = ".gitattributes README.md config.json pytorch_model.bin spm.model tf_model.h5 tokenizer_config.json"
_ELECTRA_FILES = (
    ".gitattributes README.md config.json flax_model.msgpack pytorch_model.bin tf_model.h5 tokenizer.json "
    "tokenizer_config.json vocab.txt"
)
STANDINS: dict[str, StandIn] = {
    s.hub_id: s
    for s in (
        StandIn("microsoft/deberta-v3-small", "deberta-v3", tuple(_DEBERTA_FILES.split()),
                Dims(32, 2, 2, 64), 11),  # 768 / 6 layers / 12 heads / 3072
        StandIn("microsoft/deberta-v3-base", "deberta-v3", tuple(sorted([*_DEBERTA_FILES.split(), "rust_model.ot"])),
                Dims(48, 2, 2, 96), 12),  # 768 / 12 / 12 / 3072
        StandIn("microsoft/deberta-v3-large", "deberta-v3", tuple(_DEBERTA_FILES.split()),
                Dims(64, 2, 4, 128), 13),  # 1024 / 24 / 16 / 4096
        StandIn("google/electra-small-discriminator", "electra", tuple(_ELECTRA_FILES.split()),
                Dims(32, 2, 2, 64, embedding=16), 21),  # 256 / 12 / 4 / 1024, embedding 128
        StandIn("google/electra-base-discriminator", "electra", tuple(sorted([*_ELECTRA_FILES.split(), "rust_model.ot"])),
                Dims(48, 2, 2, 96, embedding=48), 22),  # 768 / 12 / 12 / 3072, embedding 768
        StandIn("google/electra-large-discriminator", "electra", tuple(_ELECTRA_FILES.split()),
                Dims(64, 2, 4, 128, embedding=64), 23),  # 1024 / 24 / 16 / 4096, embedding 1024
        StandIn("prajjwal1/bert-tiny", "bert-tiny", (".gitattributes", "README.md", "config.json", "pytorch_model.bin",
                "vocab.txt"), Dims(16, 2, 2, 64), 31),  # 128 / 2 / 2 / 512
        StandIn("bert-large-uncased", "bert-large", tuple(
            ".gitattributes README.md config.json flax_model.msgpack model.safetensors pytorch_model.bin rust_model.ot "
            "tf_model.h5 tokenizer.json tokenizer_config.json vocab.txt whole-word-masking.tar.gz".split()),
                Dims(64, 2, 4, 128), 32),  # 1024 / 24 / 16 / 4096
        StandIn("roberta-large", "roberta", tuple(
            ".gitattributes README.md config.json flax_model.msgpack merges.txt model.onnx model.safetensors "
            "pytorch_model.bin tf_model.h5 tokenizer.json tokenizer_config.json vocab.json".split()),
                Dims(64, 2, 4, 128), 41),  # 1024 / 24 / 16 / 4096
    )
}  # fmt: skip
HUB_IDS: tuple[str, ...] = tuple(STANDINS)

# tokenizer settings as published (see the README for byte-size cross-checks)
DEBERTA_TOKENIZER_CONFIG = '{\n\t\t"do_lower_case": false,\n\t\t"vocab_type": "spm"\n}\n'
UNCASED_TOKENIZER_CONFIG = '{"do_lower_case": true, "model_max_length": 512}'
ROBERTA_TOKENIZER_CONFIG = '{"model_max_length": 512}'


_NAMES = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Paris", "London", "Berlin", "Monday", "Friday"]
_NOUNS = "man woman child dog cat bird fence car house garden river city teacher doctor painter book letter song table window".split()
_VERBS = "paints painted painting sees saw seeing walks walked walking reads read reading builds built building opens opened".split()
_ADJS = "red blue green old young happy quiet tall small large bright dark".split()
_ADVS = "quickly slowly carefully happily quietly".split()
_PREPS = "near behind under beside inside".split()


def corpus(n: int = 600, seed: int = 2310) -> list[str]:
    """A deterministic small English corpus (mixed case, punctuation) for training the tokenizers."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        subj = rng.choice(_NAMES) if i % 3 == 0 else f"the {rng.choice(_ADJS)} {rng.choice(_NOUNS)}"
        sent = f"{subj} {rng.choice(_VERBS)} the {rng.choice(_NOUNS)} {rng.choice(_PREPS)} the {rng.choice(_NOUNS)}"
        if i % 4 == 0:
            sent += f" {rng.choice(_ADVS)}"
        sent = sent[0].upper() + sent[1:] + rng.choice([".", ".", "!", "?"])
        if i % 5 == 0:
            sent += f" It was {rng.randint(2, 99)} years old, wasn't it?"
        out.append(sent)
    return out


def blob_id(name: str, data: bytes) -> str:
    """The etag huggingface_hub names the blob by: sha256 for LFS files, the git blob sha1 otherwise."""
    if name.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def install(hub_cache: Path, hub_id: str, files: dict[str, bytes], revision: str) -> Path:
    """Install ``files`` as the snapshot ``revision`` of ``hub_id`` in the cache folder ``hub_cache``."""
    repo = hub_cache / ("models--" + hub_id.replace("/", "--"))
    ids = {name: blob_id(name, data) for name, data in files.items()}
    snapshot = repo / "snapshots" / revision
    for name, data in sorted(files.items()):
        blob, link = repo / "blobs" / ids[name], snapshot / name
        for folder in (blob.parent, link.parent):
            folder.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link.unlink(missing_ok=True)  # a rebuild replaces it
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_bytes(revision.encode())
    return snapshot


@functools.lru_cache(maxsize=4)
def train_spm(texts: tuple[str, ...], vocab_size: int = 400) -> bytes:
    """A SentencePiece Unigram model with DeBERTa-v3's special pieces (deterministic, one thread)."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3,
        unk_piece="[UNK]", num_threads=1, hard_vocab_limit=False, character_coverage=1.0,
        shuffle_input_sentence=False, minloglevel=2,
    )  # fmt: skip
    return buf.getvalue()


def wordpiece_files(texts: list[str]) -> tuple[dict[str, bytes], int]:
    """``vocab.txt``, ``tokenizer.json`` and vocab size of the demo stand-ins' uncased BERT WordPiece tokenizer."""
    from ftft.standins import train_tokenizer

    tok = train_tokenizer(texts)
    vocab = sorted(tok.get_vocab(), key=tok.get_vocab().get)
    files = {"vocab.txt": "".join(f"{t}\n" for t in vocab), "tokenizer.json": tok.backend_tokenizer.to_str()}
    return {k: v.encode() for k, v in files.items()}, len(vocab)


def roberta_tokenizer_files(texts: list[str]) -> tuple[dict[str, bytes], int]:
    """``vocab.json``, ``merges.txt``, ``tokenizer.json`` and vocab size of a deterministic byte-level BPE tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=560, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    vocab = tok.get_vocab()
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]), trim_offsets=True, add_prefix_space=False
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True)
    merges = json.loads(tok.to_str())["model"]["merges"]
    files = {"vocab.json": json.dumps(dict(sorted(vocab.items(), key=lambda kv: kv[1])), ensure_ascii=False),
             "merges.txt": "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), "tokenizer.json": tok.to_str()}  # fmt: skip
    return {k: v.encode() for k, v in files.items()}, len(vocab)


# ---------------------------------------------------------------- config.json (published key sets and layout)
def deberta_v3_config(d: Dims, vocab_size: int, position_buckets: int = 32) -> bytes:
    """microsoft/deberta-v3-*: 20 keys in the published order, tab-tab indented (``position_buckets`` is 256 in the
    hub files; it sets the size of ``rel_embeddings``)."""
    cfg = {"model_type": "deberta-v2", "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
           "hidden_dropout_prob": 0.1, "hidden_size": d.hidden, "initializer_range": 0.02,
           "intermediate_size": d.intermediate, "max_position_embeddings": 512, "relative_attention": True,
           "position_buckets": position_buckets, "norm_rel_ebd": "layer_norm", "share_att_key": True,
           "pos_att_type": "p2c|c2p", "layer_norm_eps": 1e-7, "max_relative_positions": -1,
           "position_biased_input": False, "num_attention_heads": d.heads, "num_hidden_layers": d.layers,
           "type_vocab_size": 0, "vocab_size": vocab_size}  # fmt: skip
    return (json.dumps(cfg, indent="\t\t").replace("1e-07", "1e-7") + "\n").encode()


# the keys beyond those BERT-style configs share (``bert_like_config``)
CONFIG_EXTRA = {
    "electra": dict(architectures=["ElectraForPreTraining"], model_type="electra", position_embedding_type="absolute",
                    summary_activation="gelu", summary_last_dropout=0.1, summary_type="first", summary_use_proj=True,
                    transformers_version="4.6.0.dev0"),
    "bert-large": dict(architectures=["BertForMaskedLM"], gradient_checkpointing=False, model_type="bert",
                       position_embedding_type="absolute", transformers_version="4.6.0.dev0", use_cache=True),
    "roberta": dict(architectures=["RobertaForMaskedLM"], bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-05,
                    max_position_embeddings=514, model_type="roberta", pad_token_id=1, type_vocab_size=1),
}  # fmt: skip


def bert_like_config(s: StandIn, vocab_size: int) -> bytes:
    """ELECTRA, BERT and RoBERTa: sorted, 2-space indented; prajjwal1/bert-tiny: these 11 keys in this order on one
    line, no ``model_type`` and no ``architectures``."""
    d = s.dims
    cfg = {"hidden_size": d.hidden, "hidden_act": "gelu", "initializer_range": 0.02, "vocab_size": vocab_size,
           "hidden_dropout_prob": 0.1, "num_attention_heads": d.heads, "type_vocab_size": 2,
           "max_position_embeddings": 512, "num_hidden_layers": d.layers, "intermediate_size": d.intermediate,
           "attention_probs_dropout_prob": 0.1}  # fmt: skip
    if s.family == "bert-tiny":
        return json.dumps(cfg).encode()
    cfg |= {"layer_norm_eps": 1e-12, "pad_token_id": 0} | ({"embedding_size": d.embedding} if d.embedding else {})
    return (json.dumps(cfg | CONFIG_EXTRA[s.family], indent=2, sort_keys=True) + "\n").encode()


# ---------------------------------------------------------------- weights (published parameter names)
def _encoder_state(config_bytes: bytes, seed: int, prefix: str):
    """Random-init base model (no head) from the stand-in config: its state dict (names under ``prefix``), a head
    generator, and the config object."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModel

    raw = {k: v for k, v in json.loads(config_bytes).items() if k not in ("architectures", "transformers_version")}
    cfg = CONFIG_MAPPING[raw.pop("model_type", "bert")](**raw)  # bert-tiny's file has none: it is a BERT
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModel.from_config(cfg)
    # jitter every tensor (LayerNorm ones / zero biases included) so that a weight the loader fails to
    # load, and re-initialises instead, differs from the checkpoint
    gen = torch.Generator().manual_seed(seed + 1)
    state = OrderedDict(
        (f"{prefix}.{k}", v.detach().clone() + 0.01 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone())
        for k, v in model.state_dict().items()
    )  # fmt: skip
    return state, torch.Generator().manual_seed(seed), cfg


def _heads(gen, specs: list[tuple[str, tuple[int, ...], str]]) -> OrderedDict:
    """Head tensors: ``normal`` (std 0.02), ``ones`` or ``zeros``."""
    import torch

    make = {"normal": lambda s: torch.randn(s, generator=gen) * 0.02, "ones": torch.ones, "zeros": torch.zeros}
    return OrderedDict((name, make[init](shape)) for name, shape, init in specs)


def _linear(name: str, n_out: int, n_in: int) -> list[tuple[str, tuple[int, ...], str]]:
    return [(f"{name}.weight", (n_out, n_in), "normal"), (f"{name}.bias", (n_out,), "zeros")]


def _norm(name: str, n: int) -> list[tuple[str, tuple[int, ...], str]]:
    return [(f"{name}.weight", (n,), "ones"), (f"{name}.bias", (n,), "zeros")]


def _to_safetensors(state: OrderedDict) -> bytes:
    from safetensors.torch import save

    first = {}  # shared tensors are not allowed: keep the first name, like the hub converter
    for k, v in state.items():
        first.setdefault(v.data_ptr(), (k, v.contiguous()))
    return save(OrderedDict(first.values()), metadata={"format": "pt"})


def standin_weights(cfg_bytes: bytes, s: StandIn) -> dict[str, bytes]:
    """The pretraining checkpoint: the encoder and the published pretraining heads, in the repo's formats."""
    import torch

    prefix = {"deberta-v3": "deberta", "electra": "electra", "roberta": "roberta"}.get(s.family, "bert")
    state, gen, cfg = _encoder_state(cfg_bytes, s.seed, prefix)
    h, v = cfg.hidden_size, cfg.vocab_size
    if s.family == "deberta-v3":
        heads = [*_linear("lm_predictions.lm_head.dense", h, h), *_norm("lm_predictions.lm_head.LayerNorm", h),
                 ("lm_predictions.lm_head.bias", (v,), "zeros"), *_linear("mask_predictions.dense", h, h),
                 *_norm("mask_predictions.LayerNorm", h), *_linear("mask_predictions.classifier", 1, h)]  # fmt: skip
    elif s.family == "electra":
        # base / large: the 2020 conversion kept an (unused) embeddings_project although embedding == hidden
        project = [] if "electra.embeddings_project.weight" in state else _linear("electra.embeddings_project", h, h)
        d = "discriminator_predictions"
        heads = [*project, *_linear(f"{d}.dense", h, h), *_linear(f"{d}.dense_prediction", 1, h)]
    elif s.family == "roberta":
        heads = [("lm_head.bias", (v,), "zeros"), *_linear("lm_head.dense", h, h), *_norm("lm_head.layer_norm", h)]
    else:
        heads = [("cls.predictions.bias", (v,), "zeros"), *_linear("cls.predictions.transform.dense", h, h),
                 *_norm("cls.predictions.transform.LayerNorm", h), ("cls.seq_relationship.weight", (2, h), "normal"),
                 ("cls.seq_relationship.bias", (2,), "zeros")]  # fmt: skip
    state.update(_heads(gen, heads))
    if s.family in ("roberta", "bert-tiny", "bert-large"):  # the decoder is tied to the word embeddings, stored once
        decoder = "lm_head.decoder.weight" if s.family == "roberta" else "cls.predictions.decoder.weight"
        state[decoder] = state[f"{prefix}.embeddings.word_embeddings.weight"]
    if s.family == "deberta-v3":
        state = OrderedDict((k, t.half()) for k, t in state.items())  # the hub .bin stores float16 (HalfStorage)
    if s.family == "bert-large":  # pytorch-pretrained-bert era names, renamed by transformers on load
        state = OrderedDict((k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"),
                             t) for k, t in state.items())  # fmt: skip
    buf = io.BytesIO()
    torch.save(state, buf)
    out = {"pytorch_model.bin": buf.getvalue()}
    return out | ({"model.safetensors": _to_safetensors(state)} if "model.safetensors" in s.files else {})


def standin_files(hub_id: str, texts: list[str]) -> dict[str, bytes]:
    """Every file of the stand-in for ``hub_id`` (name -> bytes), exactly the real repo's file names."""
    s = STANDINS[hub_id]
    if s.family == "deberta-v3":
        import sentencepiece

        spm_model = train_spm(tuple(texts))
        n_pieces = sentencepiece.SentencePieceProcessor(model_proto=spm_model).get_piece_size()
        files = {"spm.model": spm_model, "tokenizer_config.json": DEBERTA_TOKENIZER_CONFIG.encode()}
        files["config.json"] = deberta_v3_config(s.dims, n_pieces + 100)  # pieces + 100, like 128100 = 128000 + 100
    else:
        files, vocab_size = roberta_tokenizer_files(texts) if s.family == "roberta" else wordpiece_files(texts)
        files["tokenizer_config.json"] = (
            ROBERTA_TOKENIZER_CONFIG if s.family == "roberta" else UNCASED_TOKENIZER_CONFIG
        ).encode()
        files = {k: v for k, v in files.items() if k in s.files}  # bert-tiny: vocab.txt only
        files["config.json"] = bert_like_config(s, vocab_size)
    files |= standin_weights(files["config.json"], s)
    for name in set(s.files) & set(PLACEHOLDER_FILES):
        note = f"ftft stand-in placeholder for {name} of {hub_id}: not a real file of this format; the loader never reads it."
        files[name] = f"{note}\n".encode()
    files["README.md"] = (
        f"# Stand-in for {hub_id}\n\nTiny random-init checkpoint with the hub repository's file names, config keys, "
        "tokenizer settings, weight format and parameter names (ftft tests/rehearsal/hub.py). Not a trained model.\n"
    ).encode()
    files[".gitattributes"] = "".join(f"*{x} filter=lfs diff=lfs merge=lfs -text\n" for x in LFS_SUFFIXES).encode()
    if set(files) != set(s.files):
        raise AssertionError(f"{hub_id}: built {sorted(files)}, the repo has {sorted(s.files)}")
    return files


def build_hf_cache(hf_home: Path, models: list[str] | None = None) -> dict[str, Path]:
    """Install the stand-ins for ``models`` (default: all nine) under ``hf_home/hub``; return their snapshots."""
    import torch
    import yaml

    hub_cache, texts = Path(hf_home) / "hub", corpus()
    # served under the paper config's ``models.<key>.revision``
    paper = yaml.safe_load((Path(__file__).resolve().parents[2] / "workflow_config.yaml").read_text())["models"]
    revisions = {m["hub_id"]: m["revision"] for m in paper.values()}
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # deterministic init is per-generator anyway; keep CPU use low
        return {h: install(hub_cache, h, standin_files(h, texts), revisions[h]) for h in (models or HUB_IDS)}
    finally:
        torch.set_num_threads(threads)
