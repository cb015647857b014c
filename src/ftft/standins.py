"""Tiny random-init stand-ins for the paper's models (``ftft build-demo-model``): per model key, a tiny model of the
same family (size: ``DEMO_ARCH``, init seed from the key) with a WordPiece tokenizer trained on the demo corpus. A
stand-in holds the *encoder only* (``AutoModel``), like the hub checkpoints, so one folder serves every task (loading
adds a fresh head). RoBERTa, as roberta-large: positions start at ``pad_token_id + 1``, ``type_vocab_size`` 1.
"""

import argparse
import hashlib
import logging
from collections import Counter
from pathlib import Path

from .errors import ModelError
from .io import atomic_dir
from .modeling import count_params, load_tokenizer_and_model, silence_transformers

log = logging.getLogger(__name__)

FAMILIES = ("deberta-v2", "electra", "bert", "roberta")
MAX_POSITIONS = 128
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TOKENIZER_VOCAB = 2000  # upper bound; the demo corpus has a few hundred words

# hidden size, layers, heads, intermediate size; ELECTRA's embedding size is hidden // 2
# (ELECTRA-Small factorises its embeddings the same way). TinyBERT's (bert-tiny: 2 heads, half
# ELECTRA-Small's hidden size, intermediate 4 x hidden) is the fewest parameters, as the real one.
DEMO_ARCH: dict[str, dict[str, int]] = {
    "tiny": {"hidden": 12, "layers": 1, "heads": 2, "intermediate": 48},
    "small": {"hidden": 24, "layers": 2, "heads": 2, "intermediate": 48},
    "base": {"hidden": 32, "layers": 2, "heads": 2, "intermediate": 64},
    "large": {"hidden": 48, "layers": 2, "heads": 2, "intermediate": 96},
}
SIZES = tuple(DEMO_ARCH)


# ---------------------------------------------------------------- tokenizer
def train_tokenizer(texts, out_dir: str | Path | None = None, family: str = "bert", vocab_size: int = TOKENIZER_VOCAB):
    """A WordPiece tokenizer for ``texts`` (deterministic); return a PreTrainedTokenizerFast (saved to out_dir if given)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    texts = [t for t in texts if isinstance(t, str) and t]
    if not texts:
        raise ModelError("train_tokenizer: empty corpus (no non-empty texts)")
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts = Counter(w for text in texts for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    # Deterministic vocabulary (the WordPiece trainer breaks frequency ties differently from
    # run to run): special tokens, every character as a word start and as a "##" continuation,
    # then whole words by descending frequency (ties alphabetical), up to vocab_size.
    chars = sorted({c for w in counts for c in w})
    vocab = list(SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars]
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1]
    vocab += words[: max(0, vocab_size - len(vocab))]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
    )
    input_names = ["input_ids", *(["token_type_ids"] if family != "roberta" else []), "attention_mask"]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_POSITIONS,
        padding_side="right",
        model_input_names=input_names,
    )
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


# ---------------------------------------------------------------- config / model
def demo_config(family: str, size: str, vocab_size: int, pad_token_id: int, num_labels: int = 2):
    """The transformers config of a tiny ``family`` model of ``size``."""
    from transformers import CONFIG_MAPPING

    for what, value, known in (("family", family, FAMILIES), ("size", size, SIZES)):
        if value not in known:
            raise ModelError(f"build-demo-model: unknown {what} {value!r}; expected one of {known}")
    a = DEMO_ARCH[size]
    positions = MAX_POSITIONS + (pad_token_id + 1 if family == "roberta" else 0)  # see the module docstring
    extra = {
        "bert": {},
        "electra": {"embedding_size": max(8, a["hidden"] // 2)},
        "roberta": {"type_vocab_size": 1, "bos_token_id": None, "eos_token_id": None},
        # deberta-v2 / v3: relative attention with bucketed positions, no absolute positions
        "deberta-v2": dict(
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            position_buckets=32,
            max_relative_positions=-1,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            type_vocab_size=0,
        ),
    }[family]
    return CONFIG_MAPPING[family](
        vocab_size=vocab_size,
        hidden_size=a["hidden"],
        num_hidden_layers=a["layers"],
        num_attention_heads=a["heads"],
        intermediate_size=a["intermediate"],
        max_position_embeddings=positions,
        pad_token_id=pad_token_id,
        num_labels=num_labels,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        **extra,
    )


def build_demo_model(key: str, family: str, size: str, corpus_texts, out_dir: str | Path, num_labels: int = 2) -> Path:
    """Build, save (atomically) and verify the tiny stand-in for model ``key``; returns out_dir."""
    import torch
    from transformers import AutoModel

    silence_transformers()
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        tok = train_tokenizer(corpus_texts, tmp, family=family)
        cfg = demo_config(family, size, len(tok), tok.pad_token_id, num_labels)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little"))  # key's seed
            model = AutoModel.from_config(cfg)
        model.save_pretrained(str(tmp), safe_serialization=True)
        # verify: reload through AutoTokenizer / AutoModelForSequenceClassification and run a pair
        tok, clf = load_tokenizer_and_model(str(tmp), num_labels)
        enc = tok(["the man painted the fence"], ["the man painted the car"], return_tensors="pt", padding=True)
        with torch.no_grad():
            logits = clf.eval()(**enc).logits
        if tuple(logits.shape) != (1, num_labels) or not torch.isfinite(logits).all():
            raise ModelError(f"{tmp}: verification forward pass gave logits of shape {tuple(logits.shape)}")
    log.info("built %s (%s/%s, %d params) -> %s", key, family, size, count_params(model)[0], out_dir)
    return out_dir


# ---------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, action="append", help="model key (e.g. deberta-v3-large); repeat")
    parser.add_argument("--family", required=True, action="append", choices=FAMILIES, help="one per --model")
    parser.add_argument("--size", required=True, action="append", choices=SIZES, help="one per --model")
    parser.add_argument("--out", required=True, action="append", help="model directory, one per --model")
    parser.add_argument("--corpus", required=True, nargs="+", help="normalised parquet(s): text_a + text_b")
    parser.add_argument("--num-labels", type=int, default=2, help="recorded in config.json (head is re-made at load)")


def run(args: argparse.Namespace) -> int:
    """Build every stand-in in one process (the imports dominate a tiny model's build time)."""
    if not len(args.model) == len(args.family) == len(args.size) == len(args.out):
        raise ModelError("build-demo-model: give one --family, --size and --out per --model")
    from .data import schema

    texts = [t for p in args.corpus for t in schema.read(p)[0][["text_a", "text_b"]].stack().dropna().astype(str)]
    for key, family, size, out in zip(args.model, args.family, args.size, args.out, strict=True):
        build_demo_model(key, family, size, texts, out, num_labels=args.num_labels)
    return 0
