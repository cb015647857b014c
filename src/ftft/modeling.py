"""Loading a sequence-classification model and its tokenizer, and measuring its size.

One entry point for hub ids (``microsoft/deberta-v3-large``, or ``id@revision`` pinned to a commit,
as ``models.model_source`` writes it) and local folders (the tiny demo models under
``resources/demo_models/``, or a copy on an air-gapped cluster) alike; every hub call (cache look-up,
download, tokenizer, model) gets the revision. Errors are ``ModelError`` that say what to do.

``load_tokenizer_and_model(source, num_labels)``:

- a hub id that is not in the Hugging Face cache while offline (``HF_HUB_OFFLINE=1``) raises a
  ``ModelError`` naming the id and the command that fetches it on a machine with internet access
  (``ftft fetch-models --model <id>``, see ``ftft.hub``), instead of transformers' generic
  "couldn't connect" error; an incomplete cached snapshot is reported the same way;
- a SentencePiece tokenizer (``spm.model`` & co. and no ``tokenizer.json``, e.g. DeBERTa-v3)
  needs the ``sentencepiece`` and ``protobuf`` packages: when either cannot be imported (checked
  on the files of the local folder / cached snapshot, or on the ImportError / tiktoken fallback
  transformers raises), the ``ModelError`` says to install them;
- a ``config.json`` without ``model_type`` (``prajjwal1/bert-tiny``'s) is resolved as
  transformers < 5 did, from the longest model type in the id / folder name (``bert``); since
  transformers 5 refuses such configs ("Unrecognized model ... Should have a `model_type` key");
- weights are loaded as float32 whatever their storage dtype (DeBERTa-v3's hub ``.bin`` is
  float16 and transformers 5 would otherwise keep float16): training keeps fp32 master weights
  and uses autocast for bf16;
- anything else is transformers' behaviour, its errors wrapped in a ``ModelError``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pickle
from pathlib import Path

from .errors import ModelError
from .io import rebuild

log = logging.getLogger(__name__)

#: errors of a weights file that is truncated or corrupt (safetensors header, a torch .bin pickle)
UNREADABLE_WEIGHTS = ("SafetensorError", "UnpicklingError", "EOFError")
_HUB_HINT = (
    "to use a local copy instead, set `models.<key>.path` in the config (or pass --model-path), "
    "or point HF_HOME at a Hugging Face cache that holds it and set HF_HUB_OFFLINE=1"
)
# tokenizer model files that transformers can only read with sentencepiece + protobuf
SENTENCEPIECE_FILES = ("spm.model", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
SENTENCEPIECE_PACKAGES = {"sentencepiece": "sentencepiece", "google.protobuf": "protobuf"}  # module -> package


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


def split_revision(source: str) -> tuple[str, str | None]:
    """``org/name@revision`` -> (``org/name``, ``revision``); a plain id or a path -> (source, None)."""
    name, _, revision = source.partition("@") if not looks_like_path(source) else (source, "", "")
    return name, revision or None


def _cached_folder(source: str) -> Path | None:
    """The cached snapshot folder holding ``source``'s config.json (at its revision), without network access."""
    from huggingface_hub import try_to_load_from_cache

    hub_id, revision = split_revision(source)
    hit = try_to_load_from_cache(hub_id, "config.json", revision=revision)
    return Path(hit).parent if isinstance(hit, str) else None


def _download_config(source: str) -> Path:
    """Online: fetch ``config.json`` (as from_pretrained would first) and return its snapshot folder."""
    from huggingface_hub import hf_hub_download

    from . import hub

    hub_id, revision = split_revision(source)
    try:
        return Path(hf_hub_download(hub_id, "config.json", revision=revision)).parent
    except (OSError, ValueError) as exc:  # not found (id or revision), gated, no connection, malformed id
        raise ModelError(
            f"cannot load hub model {source!r}: {str(exc).splitlines()[0]} (misspelt id or revision, gated model "
            f"without HF_TOKEN, or no network access? Without internet: {hub.offline_hint(source)}, and set "
            "HF_HUB_OFFLINE=1)"
        ) from exc


def _offline_folder(hub_id: str) -> Path:
    """Offline: the complete cached snapshot of ``hub_id`` (``id@revision``), or a ModelError saying how to fetch it."""
    from . import hub

    folder = _cached_folder(hub_id) or hub.cached_snapshot(*split_revision(hub_id))
    if folder is None:
        raise ModelError(
            f"hub model {hub_id!r} is not in the Hugging Face cache {hub.hub_cache_dir()} and HF_HUB_OFFLINE=1 "
            f"forbids downloading it: {hub.offline_hint(hub_id)}"
        )
    problems = hub.check_snapshot(folder)
    if problems:
        raise ModelError(
            f"hub model {hub_id!r}: the cached snapshot {folder} lacks {'; '.join(problems)}: {hub.offline_hint(hub_id)}"
        )
    return folder


def sentencepiece_file(folder: Path | None) -> str | None:
    """The SentencePiece model file of a tokenizer folder that has no ``tokenizer.json``, else None."""
    if folder is None or (folder / "tokenizer.json").is_file():
        return None
    return next((name for name in SENTENCEPIECE_FILES if (folder / name).is_file()), None)


def missing_sentencepiece_packages() -> list[str]:
    """The packages among sentencepiece / protobuf that cannot be imported here."""
    missing = []
    for module, package in SENTENCEPIECE_PACKAGES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    return missing


def _sentencepiece_error(where: str, spm_file: str, missing: list[str]) -> ModelError:
    return ModelError(
        f"the tokenizer of {where} is a SentencePiece model ({spm_file}, no tokenizer.json), which needs the "
        f"`sentencepiece` and `protobuf` packages; {' and '.join(missing) or 'one of them'} cannot be imported: "
        "install both (`pip install sentencepiece protobuf`, versions as pinned in pyproject.toml)"
    )


def _is_dependency_failure(exc: BaseException) -> bool:
    """True if ``exc`` (or its cause chain) is an ImportError or transformers' tiktoken fallback after one."""
    while exc is not None:
        if isinstance(exc, ImportError) or "tiktoken" in str(exc) or "sentencepiece" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def infer_model_type(name: str) -> str | None:
    """The longest transformers model type contained in ``name`` (what transformers < 5 fell back to)."""
    from transformers import CONFIG_MAPPING

    name = name.lower()
    return next((key for key in sorted(CONFIG_MAPPING.keys(), key=len, reverse=True) if key in name), None)


def _config_without_model_type(source: str, folder: Path | None, num_labels: int):
    """A config object when ``config.json`` lacks ``model_type`` (None when it has one: the normal path)."""
    from transformers import CONFIG_MAPPING

    path = folder / "config.json" if folder is not None else None
    if path is None or not path.is_file():
        return None  # not resolvable without downloading: transformers' own error will tell
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable config.json ({exc})") from exc
    if "model_type" in raw:
        return None
    # the name to match: the hub id, a local folder's name, or a cached snapshot's repo (models--org--name)
    name = split_revision(source)[0] if not looks_like_path(source) else Path(source).name
    if folder is not None and folder.parent.name == "snapshots":
        name = f"{name} {folder.parent.parent.name}"
    model_type = infer_model_type(name)
    if model_type is None:
        raise ModelError(
            f"{path} has no `model_type` and none can be inferred from the name {name!r}: add e.g. "
            '"model_type": "bert" to it (transformers >= 5 requires the key)'
        )
    log.warning("%s has no model_type; using %r inferred from the name, like transformers < 5", path, model_type)
    return CONFIG_MAPPING[model_type].from_dict(raw, num_labels=num_labels)


def _resolve(source: str) -> tuple[str, Path | None, str, bool]:
    """(source, local folder or None, description, is_path) after the checks that need no transformers."""
    from . import hub

    is_path = looks_like_path(source)
    if is_path:
        path = Path(source).expanduser()
        if not path.is_dir():
            raise ModelError(f"model folder not found: {path} (expected config.json, weights and tokenizer files)")
        source = str(path)
        folder: Path | None = path
    elif hub.is_offline():
        folder = _offline_folder(source)
    else:
        folder = _cached_folder(source) or _download_config(source)
    where = f"local model folder {source}" if is_path else f"hub model {source!r}"
    spm_file = sentencepiece_file(folder)
    if spm_file and missing_sentencepiece_packages():
        raise _sentencepiece_error(where, spm_file, missing_sentencepiece_packages())
    return source, folder, where, is_path


def _load_error(exc: BaseException, source: str, folder, where: str, is_path: bool) -> ModelError:
    spm_file = sentencepiece_file(folder if is_path else _cached_folder(source))
    if spm_file and _is_dependency_failure(exc):
        return _sentencepiece_error(where, spm_file, missing_sentencepiece_packages())
    if type(exc).__name__ in UNREADABLE_WEIGHTS:  # truncated or corrupt weights: name the file
        files = [*Path(folder).glob("*.safetensors"), *Path(folder).glob("*.bin")] if folder else []
        name = str(files[0]) if len(files) == 1 else str(folder or where)
        if is_path:
            fix = f"{rebuild(folder)} (a demo model), or replace the copy"
        else:
            fix = f"delete the cached copy {folder} and fetch it again"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ModelError(f"{name}: not readable weights of {where} (truncated or corrupt?): {reason}; {fix}")
    hint = "" if is_path else f"; no network access or cached copy? {_HUB_HINT}"
    return ModelError(f"cannot load {where}: {str(exc).splitlines()[0]}{hint}")


def load_tokenizer(source: str):
    """The tokenizer of a hub id or local folder (what the tokenize step uses; no model weights)."""
    source, folder, where, is_path = _resolve(source)
    from transformers import AutoTokenizer

    silence_transformers()
    try:
        config = _config_without_model_type(source, folder, 2)
        name, rev = split_revision(source)
        tokenizer = AutoTokenizer.from_pretrained(name, revision=rev, **({} if config is None else {"config": config}))
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        raise _load_error(exc, source, folder, where, is_path) from exc
    if tokenizer.pad_token_id is None:
        raise ModelError(f"tokenizer of {source} has no padding token; dynamic padding needs one")
    return tokenizer


def load_tokenizer_and_model(source: str, num_labels: int):
    """Return ``(tokenizer, model)`` for a hub id or a local folder, with a ``num_labels`` head (float32)."""
    source, folder, where, is_path = _resolve(source)
    import torch  # after the checks above: they need no torch / transformers
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    silence_transformers()
    try:
        config = _config_without_model_type(source, folder, num_labels)
        name, rev = split_revision(source)
        head = {"num_labels": num_labels} if config is None else {"config": config}
        tokenizer = AutoTokenizer.from_pretrained(name, revision=rev, **({} if config is None else {"config": config}))
        model = AutoModelForSequenceClassification.from_pretrained(name, revision=rev, dtype=torch.float32, **head)
    except (OSError, ValueError, RuntimeError, ImportError, SafetensorError, pickle.UnpicklingError, EOFError) as exc:
        raise _load_error(exc, source, folder, where, is_path) from exc
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
