"""Hub models: loading a sequence classifier and its tokenizer, and ``ftft fetch-models`` for offline nodes.

A source is a hub id (``org/name[@revision]``: every hub call gets the revision) or a local folder. Errors are
``ModelError`` saying what to do. A ``config.json`` without ``model_type`` (``prajjwal1/bert-tiny``) gets the longest
model type in its name, as transformers < 5 did. ``fetch_model`` downloads what loading needs (``select_files``);
with ``HF_HUB_OFFLINE=1`` it checks the cached snapshot is complete.
"""

import argparse
import fnmatch
import json
import logging
import os
import pickle
from pathlib import Path

from .errors import ModelError
from .io import rebuild, write_json

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
# tokenizer model files that transformers can only read with sentencepiece + protobuf
SENTENCEPIECE_FILES = ("spm.model", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", *SENTENCEPIECE_FILES)  # fmt: skip
# PyTorch weight formats, preferred first: (single file, index of a sharded checkpoint, shard pattern)
WEIGHT_FORMATS = (
    ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"),
)
#: errors of a weights file that is truncated or corrupt (safetensors header, a torch .bin pickle)
UNREADABLE_WEIGHTS = ("SafetensorError", "UnpicklingError", "EOFError")
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
    """A path, not a hub id (at most one '/'): exists, is absolute, starts with '.' or '~', or has a second '/'."""
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


def offline_hint(hub_id: str) -> str:
    return (
        f"on a machine with internet access and the same HF_HOME, run `ftft fetch-models --model {hub_id}` "
        "(or the workflow's fetch_models rule: `snakemake ... fetch_models`), then rerun here; "
        "or set `models.<key>.path` to a local copy"
    )


def _is_offline() -> bool:
    from huggingface_hub import is_offline_mode

    return bool(is_offline_mode())


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The hub cache folder: ``cache_dir`` or huggingface_hub's ``HF_HUB_CACHE`` ($HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE).expanduser()


def _weight_files(names) -> list[str]:
    """The files of the first weight format present in ``names`` (single file, or index + shards)."""
    for single, index, shards in WEIGHT_FORMATS:
        if single in names:
            return [single]
        if index in names:
            return [index, *sorted(n for n in names if fnmatch.fnmatch(n, shards))]
    return []


def select_files(repo_files: list[str], hub_id: str = "") -> list[str]:
    """The files of a repo listing that loading needs: config, tokenizer files, one PyTorch weight format."""
    names, where = set(repo_files), f"hub model {hub_id!r}" if hub_id else "the repository"
    weights, tokenizer = _weight_files(names), [n for n in TOKENIZER_FILES if n in names]
    if CONFIG_FILE not in names:
        raise ModelError(f"{where} has no config.json (files: {sorted(names)}); it cannot be loaded by id")
    if not weights:
        raise ModelError(
            f"{where} has no PyTorch weights (model.safetensors or pytorch_model.bin; files: {sorted(names)}); "
            "convert it or pick another model"
        )
    if not tokenizer:
        raise ModelError(f"{where} has no tokenizer files (files: {sorted(names)})")
    return [CONFIG_FILE, *tokenizer, *weights]


def check_snapshot(snapshot: Path, hub_id: str, how: str, hint: str = "") -> Path:
    """``snapshot`` (``how``: "cached" or "downloaded") if it holds what loading needs, else a ``ModelError`` saying
    what it lacks, then ``hint``. Broken symlinks count as missing."""
    present = {p.name for p in snapshot.iterdir() if p.is_file()} if snapshot.is_dir() else set()
    problems = []
    if CONFIG_FILE not in present:
        problems.append("config.json")
    else:
        try:
            json.loads((snapshot / CONFIG_FILE).read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"a readable config.json ({exc})")
    weights = _weight_files(present)
    if not weights:
        problems.append("weights (model.safetensors or pytorch_model.bin)")
    elif weights[0].endswith(".index.json"):
        index = json.loads((snapshot / weights[0]).read_text())
        missing = sorted(set(index.get("weight_map", {}).values()) - present)
        if missing:
            problems.append(f"weight shards {missing}")
    if not any(n in present for n in TOKENIZER_FILES):
        problems.append("tokenizer files (tokenizer.json, vocab.txt, vocab.json + merges.txt or spm.model)")
    if problems:
        raise ModelError(f"hub model {hub_id!r}: the {how} snapshot {snapshot} lacks {'; '.join(problems)}{hint}")
    return snapshot


def _snapshot(source: str, cache_dir: str | Path | None = None) -> Path:
    """The snapshot folder of hub model ``source`` (``id@revision``) with its config.json. Offline: the complete
    cached snapshot; online: config.json fetched (as from_pretrained would first; a cached commit needs no network)."""
    from huggingface_hub import hf_hub_download, snapshot_download

    name, revision = split_revision(source)
    if not _is_offline():
        try:
            return Path(hf_hub_download(name, CONFIG_FILE, revision=revision, cache_dir=cache_dir)).parent
        except (OSError, ValueError) as exc:  # not found (id or revision), gated, no connection, malformed id
            raise ModelError(
                f"cannot load hub model {source!r}: {str(exc).splitlines()[0]} (misspelt id or revision, gated model "
                f"without HF_TOKEN, or no network access? Without internet: {offline_hint(source)}, and set "
                "HF_HUB_OFFLINE=1)"
            ) from exc
    try:
        snapshot = Path(snapshot_download(name, revision=revision, cache_dir=cache_dir, local_files_only=True))
    except (OSError, ValueError):  # LocalEntryNotFoundError: not in the cache at that revision
        raise ModelError(
            f"hub model {source!r} is not in the Hugging Face cache {hub_cache_dir(cache_dir)} and HF_HUB_OFFLINE=1 "
            f"forbids downloading it: {offline_hint(source)}"
        ) from None
    return check_snapshot(snapshot, source, "cached", f" (an interrupted download?): {offline_hint(source)}")


def _config_without_model_type(source: str, folder: Path, num_labels: int):
    """A config object when ``config.json`` lacks ``model_type`` (None when it has one: the normal path)."""
    from transformers import CONFIG_MAPPING

    path = folder / CONFIG_FILE
    if not path.is_file():
        return None  # transformers' own error will tell
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable config.json ({exc})") from exc
    if "model_type" in raw:
        return None
    # the name to match: the hub id, a local folder's name, or a cached snapshot's repo (models--org--name)
    name = split_revision(source)[0] if not looks_like_path(source) else Path(source).name
    if folder.parent.name == "snapshots":
        name = f"{name} {folder.parent.parent.name}"
    model_type = next((k for k in sorted(CONFIG_MAPPING.keys(), key=len, reverse=True) if k in name.lower()), None)
    if model_type is None:
        raise ModelError(
            f"{path} has no `model_type` and none can be inferred from the name {name!r}: add e.g. "
            '"model_type": "bert" to it (transformers >= 5 requires the key)'
        )
    log.warning("%s has no model_type; using %r inferred from the name, like transformers < 5", path, model_type)
    return CONFIG_MAPPING[model_type].from_dict(raw, num_labels=num_labels)


def _load_error(exc: BaseException, folder: Path, where: str, is_path: bool) -> ModelError:
    if type(exc).__name__ in UNREADABLE_WEIGHTS:  # truncated or corrupt weights: name the file
        files = [*folder.glob("*.safetensors"), *folder.glob("*.bin")]
        name = str(files[0]) if len(files) == 1 else str(folder)
        fix = f"{rebuild(folder)} (a demo model), or replace the copy" if is_path else (
            f"delete the cached copy {folder} and fetch it again")  # fmt: skip
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ModelError(f"{name}: not readable weights of {where} (truncated or corrupt?): {reason}; {fix}")
    hint = "" if is_path else f"; no network access or cached copy? {_HUB_HINT}"
    return ModelError(f"cannot load {where}: {str(exc).splitlines()[0]}{hint}")


def load_tokenizer(source: str):
    """The tokenizer of a hub id or local folder (what the tokenize step uses; no model weights)."""
    return load_tokenizer_and_model(source, None)


def load_tokenizer_and_model(source: str, num_labels: int | None):
    """``(tokenizer, model)`` of a hub id or local folder with a ``num_labels`` head (float32); None: the tokenizer."""
    if is_path := looks_like_path(source):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise ModelError(f"model folder not found: {folder} (expected config.json, weights and tokenizer files)")
        source, where = str(folder), f"local model folder {folder}"
    else:
        folder, where = _snapshot(source), f"hub model {source!r}"
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import is_protobuf_available, is_sentencepiece_available

    # a SentencePiece tokenizer without tokenizer.json: transformers needs both packages (else a tiktoken error)
    spm = [n for n in SENTENCEPIECE_FILES if (folder / n).is_file()]
    available = {"sentencepiece": is_sentencepiece_available(), "protobuf": is_protobuf_available()}
    if spm and not (folder / "tokenizer.json").is_file() and (missing := [p for p, ok in available.items() if not ok]):
        raise ModelError(
            f"the tokenizer of {where} is a SentencePiece model ({spm[0]}, no tokenizer.json), which needs the "
            f"`sentencepiece` and `protobuf` packages; {' and '.join(missing)} cannot be imported: install both "
            "(`pip install sentencepiece protobuf`, versions as pinned in pyproject.toml)"
        )
    silence_transformers()
    try:
        config = _config_without_model_type(source, folder, num_labels or 2)
        name, rev = split_revision(source)
        tokenizer = AutoTokenizer.from_pretrained(name, revision=rev, **({} if config is None else {"config": config}))
        if num_labels is not None:  # torch only here: the tokenize job does not import it
            import torch

            head = {"num_labels": num_labels} if config is None else {"config": config}
            model = AutoModelForSequenceClassification.from_pretrained(name, revision=rev, dtype=torch.float32, **head)
    except (OSError, ValueError, RuntimeError, ImportError, SafetensorError, pickle.UnpicklingError, EOFError) as exc:
        raise _load_error(exc, folder, where, is_path) from exc
    if tokenizer.pad_token_id is None:
        raise ModelError(f"tokenizer of {source} has no padding token; dynamic padding needs one")
    return tokenizer if num_labels is None else (tokenizer, model)


def count_params(model) -> tuple[int, int]:
    """``(total, non_embedding)`` parameter counts (Kaplan et al. 2020): every ``nn.Embedding`` (token, position,
    token type, DeBERTa's relative positions) is embedding; tied parameters count once."""
    import torch

    total = sum(p.numel() for p in model.parameters())
    embeddings = {id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return total, total - sum(embeddings.values())


def arch_dims(config) -> tuple[int, int]:
    """``(n_layer, d_model)`` of a transformers config, for ``ftft.cost.forward_flops``."""
    return int(config.num_hidden_layers), int(config.hidden_size)


def fetch_model(hub_id: str, cache_dir: str | Path | None = None) -> Path:
    """Download (or, offline, verify) what loading ``hub_id`` (``id@revision``) needs; return its snapshot."""
    if _is_offline():
        return _snapshot(hub_id, cache_dir)
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # no progress bars in (Snakemake / SLURM) logs
    try:
        repo, revision = split_revision(hub_id)
        files = select_files(HfApi().list_repo_files(repo, revision=revision), hub_id)
        path = snapshot_download(repo, revision=revision, allow_patterns=files, cache_dir=cache_dir)
    except OSError as exc:  # huggingface_hub's HTTP / not-found / offline errors are OSErrors
        raise ModelError(
            f"cannot download hub model {hub_id!r}: {str(exc).splitlines()[0]} "
            "(misspelt id or revision, gated model without a token (HF_TOKEN), or no internet access: on an offline "
            f"node set HF_HUB_OFFLINE=1 and fetch on a machine with internet access)"
        ) from exc
    snapshot = check_snapshot(Path(path), hub_id, "downloaded")
    log.info("%s: %s (%s)", hub_id, snapshot, ", ".join(sorted(p.name for p in snapshot.iterdir())))
    return snapshot


# ---------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, metavar="HUB_ID[@REV]", help="hub id; repeatable")
    parser.add_argument("--marker", help="write a JSON marker (hub id, revision, files of each model) here")
    parser.add_argument("--cache-dir", help="hub cache folder (default: $HF_HOME/hub)")


def run(args: argparse.Namespace) -> int:
    """Fetch (or verify) every ``--model``; all failures are reported together and no marker is written."""
    entries, errors = [], []
    for hub_id in dict.fromkeys(args.model):  # unique, in order
        try:
            snapshot = fetch_model(hub_id, args.cache_dir)
        except ModelError as exc:
            errors.append(str(exc))
            continue
        files = sorted(p.name for p in snapshot.iterdir())
        entries.append({"hub_id": hub_id, "revision": snapshot.name, "snapshot": str(snapshot), "files": files})
    if errors:
        raise ModelError(("" if len(errors) == 1 else f"{len(errors)} models failed:\n") + "\n".join(errors))
    if args.marker:
        cache = str(hub_cache_dir(args.cache_dir))
        write_json(args.marker, {"cache": cache, "offline": _is_offline(), "models": entries})
    return 0


def model_origin(cfg: dict, key: str) -> str:
    """Where model ``key`` comes from: "demo" (a stand-in built here: demo mode), "path" (a local copy) or "hub"."""
    if key not in cfg["models"]:
        raise ModelError(f"unknown model {key!r}; defined models: {sorted(cfg['models'])}")
    return "demo" if cfg["mode"] == "demo" else "path" if cfg["models"][key]["path"] else "hub"


def model_source(cfg: dict, key: str) -> str:
    """What to load for model ``key``: the demo folder, a local copy or ``hub_id@revision`` (see modeling)."""
    from .layout import Layout

    m, origin = cfg["models"].get(key), model_origin(cfg, key)
    if origin == "demo":
        return Layout.from_config(cfg).demo_model(key)
    if origin == "path":
        return str(m["path"])
    pinned = m.get("revision") not in (None, "main")  # the branch is what a bare hub id reads
    return f"{m['hub_id']}@{m['revision']}" if pinned else m["hub_id"]
