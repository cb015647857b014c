"""Loading a sequence-classification model and its tokenizer, and measuring its size.

One entry point for hub ids (``microsoft/deberta-v3-large``) and local folders (the tiny demo
models under ``resources/demo_models/``, or a copy on an air-gapped cluster) alike. Errors are
``ModelError`` with a message that says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelError

_HUB_HINT = (
    "to use a local copy instead, set `models.<key>.path` in the config (or pass --model-path), "
    "or point HF_HOME at a Hugging Face cache that holds it and set HF_HUB_OFFLINE=1"
)


def silence_transformers() -> None:
    """Quiet transformers / huggingface_hub: errors only, no progress bars on stderr."""
    import huggingface_hub.utils
    import transformers.utils.logging as tlog

    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def looks_like_path(source: str) -> bool:
    """True if ``source`` is meant as a filesystem path rather than a hub id (``org/name``).

    Hub ids contain at most one '/', so a path is something that exists, is absolute, starts
    with '.' or '~', ends with a separator or has more than one separator.
    """
    return (
        Path(source).expanduser().exists()
        or source.startswith((".", "~", os.sep))
        or source.endswith(os.sep)
        or source.count(os.sep) > 1
    )


def load_tokenizer_and_model(source: str, num_labels: int):
    """Return ``(tokenizer, model)`` for a hub id or a local folder, with a ``num_labels`` head."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    silence_transformers()
    is_path = looks_like_path(source)
    if is_path:
        path = Path(source).expanduser()
        if not path.is_dir():
            raise ModelError(f"model folder not found: {path} (expected config.json, weights and tokenizer files)")
        source = str(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels)
    except (OSError, ValueError, RuntimeError) as exc:
        where = f"local model folder {source}" if is_path else f"hub model {source!r}"
        hint = "" if is_path else f"; no network access or cached copy? {_HUB_HINT}"
        raise ModelError(f"cannot load {where}: {str(exc).splitlines()[0]}{hint}") from exc
    if tokenizer.pad_token_id is None:
        raise ModelError(f"tokenizer of {source} has no padding token; dynamic padding needs one")
    return tokenizer, model


def count_params(model) -> tuple[int, int]:
    """``(total, non_embedding)`` parameter counts (Kaplan et al. 2020 exclude embedding matrices).

    Every ``nn.Embedding`` (token, position, token type, DeBERTa's relative positions) counts as
    embedding; shared (tied) parameters are counted once.
    """
    import torch

    total = sum(p.numel() for p in model.parameters())
    seen: set[int] = set()
    embedding = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            embedding += module.weight.numel()
    return total, total - embedding


def arch_dims(config) -> tuple[int, int]:
    """``(n_layer, d_model)`` of a transformers config, for ``ftft.cost.forward_flops``."""
    return int(config.num_hidden_layers), int(config.hidden_size)
