"""Pre-downloading hub models for offline compute nodes (``ftft fetch-models``).

Many clusters give compute nodes no internet access. The workflow then needs every hub model in
a Hugging Face cache *before* the training jobs start: run ``ftft fetch-models --model ID ...``
(or the workflow's ``fetch_models`` rule) on a machine with internet access and the same
``HF_HOME`` (a shared file system), then run the jobs with ``HF_HUB_OFFLINE=1``.

Contract:

- ``fetch_model(source, cache_dir=None) -> Path`` downloads what loading a sequence-classification
  model needs, and nothing else, into the cache (``cache_dir``, default: huggingface_hub's
  ``HF_HUB_CACHE``, i.e. ``$HF_HOME/hub``) with ``huggingface_hub.snapshot_download`` at the
  revision of ``source`` (``org/name@revision``, ``models.<key>.revision``; a plain id: ``main``),
  under which the jobs load it offline, and returns the snapshot folder. What it needs (``select_files``): ``config.json``,
  the tokenizer files the repo has, and ONE PyTorch weight format: ``model.safetensors`` (or its
  shards) if the repo has it, else ``pytorch_model.bin`` (or its shards); never TensorFlow,
  Flax, ONNX, Rust or msgpack files.
- With ``HF_HUB_OFFLINE=1`` it downloads nothing: it checks that the model is in the cache and
  complete (``check_snapshot``) and returns the snapshot, or raises ``ModelError`` naming the
  hub id and the command to run on a machine with internet access.
- ``ftft fetch-models --model ID[@REV] [--model ID[@REV] ...] [--marker FILE] [--cache-dir DIR]`` does that
  for each model (all failures reported together); ``--marker`` writes (atomically, only when
  every model succeeded) a JSON file ``{"cache", "offline", "models": [{"hub_id", "revision",
  "snapshot", "files"}]}`` for Snakemake to depend on.

Errors are ``ModelError`` naming the hub id and what to do.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
from pathlib import Path

from .errors import ModelError
from .modeling import split_revision

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
# Every tokenizer file transformers may read (only those the repo has are fetched).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spm.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
SENTENCEPIECE_FILES = ("spm.model", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
# PyTorch weight formats, preferred first: (single file, index of a sharded checkpoint, shard pattern)
WEIGHT_FORMATS = (
    ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"),
)


def fetch_command(hub_id: str) -> str:
    """The command that puts ``hub_id`` into the cache, for error messages."""
    return f"ftft fetch-models --model {hub_id}"


def offline_hint(hub_id: str) -> str:
    return (
        f"on a machine with internet access and the same HF_HOME, run `{fetch_command(hub_id)}` "
        "(or the workflow's fetch_models rule: `snakemake ... fetch_models`), then rerun here; "
        "or set `models.<key>.path` to a local copy"
    )


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The hub cache folder: ``cache_dir`` or huggingface_hub's ``HF_HUB_CACHE`` ($HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE).expanduser()


def is_offline() -> bool:
    """True when huggingface_hub is in offline mode (``HF_HUB_OFFLINE=1`` when it was imported)."""
    from huggingface_hub import is_offline_mode

    return bool(is_offline_mode())


def cached_snapshot(hub_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> Path | None:
    """The cached snapshot folder of ``hub_id`` at ``revision`` (a commit or a branch; None: main), or None."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hub_id, revision=revision, cache_dir=cache_dir, local_files_only=True))
    except (OSError, ValueError):  # LocalEntryNotFoundError: not in the cache at that revision
        return None


def _weight_files(names: list[str] | set[str]) -> list[str]:
    """The files of the first weight format present in ``names`` (single file, or index + shards)."""
    names = set(names)
    for single, index, shards in WEIGHT_FORMATS:
        if single in names:
            return [single]
        if index in names:
            return [index, *sorted(n for n in names if fnmatch.fnmatch(n, shards))]
    return []


def select_files(repo_files: list[str], hub_id: str = "") -> list[str]:
    """The files of a repo listing that loading needs: config, tokenizer files, one PyTorch weight format."""
    names = set(repo_files)
    weights = _weight_files(names)
    where = f"hub model {hub_id!r}" if hub_id else "the repository"
    if CONFIG_FILE not in names:
        raise ModelError(f"{where} has no config.json (files: {sorted(names)}); it cannot be loaded by id")
    if not weights:
        raise ModelError(
            f"{where} has no PyTorch weights (model.safetensors or pytorch_model.bin; files: {sorted(names)}); "
            "convert it or pick another model"
        )
    tokenizer = [n for n in TOKENIZER_FILES if n in names]
    if not tokenizer:
        raise ModelError(f"{where} has no tokenizer files (files: {sorted(names)})")
    return [CONFIG_FILE, *tokenizer, *weights]


def check_snapshot(snapshot: Path) -> list[str]:
    """What a cached snapshot lacks for loading (empty list: complete). Broken symlinks count as missing."""
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
    return problems


def _verify_cached(hub_id: str, cache_dir: str | Path | None) -> Path:
    snapshot = cached_snapshot(*split_revision(hub_id), cache_dir=cache_dir)
    if snapshot is None:
        raise ModelError(
            f"hub model {hub_id!r} is not in the Hugging Face cache {hub_cache_dir(cache_dir)} and HF_HUB_OFFLINE=1 "
            f"forbids downloading it: {offline_hint(hub_id)}"
        )
    problems = check_snapshot(snapshot)
    if problems:
        raise ModelError(
            f"hub model {hub_id!r}: the cached snapshot {snapshot} lacks {'; '.join(problems)} "
            f"(an interrupted download?): {offline_hint(hub_id)}"
        )
    log.info("%s: in the cache (offline): %s", hub_id, snapshot)
    return snapshot


def fetch_model(hub_id: str, cache_dir: str | Path | None = None) -> Path:
    """Download (or, offline, verify) what loading ``hub_id`` (``id@revision``) needs; return its snapshot."""
    if is_offline():
        return _verify_cached(hub_id, cache_dir)
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
    snapshot = Path(path)
    problems = check_snapshot(snapshot)
    if problems:
        raise ModelError(f"hub model {hub_id!r}: the downloaded snapshot {snapshot} lacks {'; '.join(problems)}")
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
        entries.append(
            {
                "hub_id": hub_id,
                "revision": snapshot.name,
                "snapshot": str(snapshot),
                "files": sorted(p.name for p in snapshot.iterdir()),
            }
        )
    if errors:
        raise ModelError(
            "\n".join(errors) if len(errors) == 1 else f"{len(errors)} models failed:\n" + "\n".join(errors)
        )
    if args.marker:
        from .io import write_json

        write_json(
            args.marker,
            {"cache": str(hub_cache_dir(args.cache_dir)), "offline": is_offline(), "models": entries},
        )
    return 0
