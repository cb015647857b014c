"""Download one dataset from its canonical public source: verified before it is kept, then extracted.

``ftft download --source NAME [--url URL] --out DIR [--sha256 HEX|JSON] [--mirror PATH] [--retries N]``

``--url`` may be left out, given empty (``--url ''``) or given without a value: all mean "no
URL" (``datasets.<name>.url: null``, the air-gapped set-up, which needs ``--mirror``).

The contract (``download_source``):

1. **Files.** Most sources are one file named after the last URL path segment (``MNLI.zip``,
   ``anli_v1.0.zip``, ``data.zip`` for CAD, the DynaHate CSV with its spaces); without a URL the
   built-in sources keep those names (``DEFAULT_FILES``), so ``DIR`` looks the same whichever
   way the data came. WANLI's URL is a folder (``.../resolve/<revision>``) holding ``train.jsonl`` and
   ``test.jsonl`` (``MULTI_FILE``).
2. **Expected hash** of a file, in order: the *pinned* one (``--sha256``: a hex string for a
   single-file source or a JSON ``{file: hex}`` map, i.e. ``datasets.<name>.sha256``), else the
   one *recorded* by an earlier run in ``DIR/<file>.sha256``, else none (first run).
3. **Nothing unverified is kept under its final name.** New content (a download or a mirror
   copy) is written to a temporary file beside the target, with the user's umask (``0o666 &
   ~umask``), and checked there: a zip must pass its CRC check (every member), and the sha256
   must equal the expected hash when there is one. Only then is it renamed into place and its
   hash recorded (``<file>.sha256``, ``sha256sum`` format). A file that fails is deleted; the
   ``DIR`` it was meant for holds no trace of it. So a bad mirror or a bad download cannot
   poison ``DIR``: fixing the mirror (or the network) and running again is enough.
4. **Sources of content**, for each file:
   * already in ``DIR`` (an earlier run): verified (hash, then zip CRC) and used; a file that
     fails is *not* deleted or replaced (it is the evidence): the error names the exact file(s)
     to delete to fetch it again; never a silent re-download;
   * ``--mirror`` (``datasets.<name>.mirror``): a file, or a folder holding the expected file
     names, is *copied* (reflink / ``copy_file_range`` where the filesystem can, else a plain
     copy; never a hard link, so editing ``DIR`` never edits the mirror); any other folder is
     an already-extracted release whose whole tree is copied into ``DIR`` (each file verified
     against a ``{relative/path: hex}`` pin or its record; a pinned *archive* hash cannot be
     checked then: logged, and listed as ``unverified`` in the marker);
   * otherwise downloaded with urllib.
5. **One retry layer.** ``--retries`` (default 3) is the only retry loop of the download step
   (the Snakemake rule does not retry on top of it). Retried, with exponential backoff
   (``backoff * 2**attempt`` seconds, or the server's ``Retry-After`` when longer, at most 5
   minutes): network errors and timeouts, HTTP 5xx and 429, truncation (fewer bytes than
   ``Content-Length``). Never retried: HTTP 4xx other than 429 (the URL is wrong or the host
   refuses: fails at once), a sha256 mismatch (the host serves different bytes; retrying cannot
   fix a pin) and a complete download that is no sound zip (the same bytes would come again).
6. **Errors say what to do**: they name the file, the config key and value, the origin (URL
   or mirror path) and both hashes. A mismatch with a pinned hash says the content differs
   from the pin, to re-download or fix the mirror, and that the pin itself may be wrong; only
   a mismatch with a *recorded* hash says that deleting the ``.sha256`` record accepts it.
7. Zips are extracted into ``DIR`` through a temporary folder (members with absolute paths,
   ``..``, symbolic links or names that would overwrite the download, a record or the marker are
   refused before the zip is kept; ``__MACOSX`` is skipped). A kept zip that still fails to
   extract is removed with its record (the error says so), so a fixed source is fetched again.
8. ``DIR/DONE.json`` (the rule output) is written last: source, origins, files and hashes,
   extracted members, unverified files. It is deleted first, so a failed run leaves none.
9. Temporaries left by a killed run (``.<file>.XXXXXXXX.tmp``, ``.extract-XXXXXXXX``) are
   removed at the start of the next run in the same ``DIR``.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ChecksumError, DataError
from ..io import atomic_path, write_json, write_text

log = logging.getLogger(__name__)

# Sources whose URL is a folder holding several files.
MULTI_FILE: dict[str, list[str]] = {"wanli": ["train.jsonl", "test.jsonl"]}
# File names of the single-file sources when no URL is configured (mirror-only set-up).
DEFAULT_FILES: dict[str, str] = {
    "mnli": "MNLI.zip",
    "anli": "anli_v1.0.zip",
    "cad": "data.zip",
    "dynahate": "Dynamically Generated Hate Dataset v0.2.3.csv",
}
MARKER = "DONE.json"
CHUNK = 1 << 20
USER_AGENT = "ftft-workflow/0.1 (+https://arxiv.org/abs/2310.06588)"
HEX = re.compile(r"^[0-9a-f]{64}$")
MAX_DELAY = 300.0
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
# Temporaries this module (through io.atomic_path / mkdtemp) creates: cleaned after a kill.
_TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_TEMP_DIR = re.compile(r"^\.extract-[a-z0-9_]{8}$")
PIN_HINT = (
    "The pin itself may be wrong: compare it with its source (docs/FIDELITY.md, pinned data) and the host's "
    "published hash before changing it."
)


class _Retryable(Exception):
    """A transient failure (network, truncation, corrupt zip): try again."""

    def __init__(self, msg: str, retry_after: float | None = None):
        super().__init__(msg)
        self.retry_after = retry_after


class _ClientError(Exception):
    """HTTP 4xx other than 429: retrying cannot help."""


def key(source: str, what: str) -> str:
    return f"datasets.{source}.{what}"


# --------------------------------------------------------------------------- hashes


@dataclass(frozen=True)
class Expected:
    """What a file must hash to: ``kind`` is ``pinned`` (config), ``recorded`` (earlier run) or ``none``."""

    digest: str | None
    kind: str
    record: Path


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_recorded(path: Path) -> str | None:
    rec = record_path(path)
    if not rec.is_file():
        return None
    text = rec.read_text().split()
    if not text or not HEX.match(text[0].lower()):
        raise DataError(
            f"{rec}: not a sha256 record (expected '<64 hex digits>  {path.name}'); delete {rec} and run again"
        )
    return text[0].lower()


def record(path: Path, digest: str) -> None:
    write_text(record_path(path), f"{digest}  {path.name}\n")


def expected_for(source: str, dest: Path, pinned: str | None) -> Expected:
    recorded = read_recorded(dest)
    if pinned and recorded and recorded != pinned:
        log.warning(
            "%s: recorded sha256 %s differs from the pinned %s = %s; the pin wins",
            dest,
            recorded,
            key(source, "sha256"),
            pinned,
        )
    if pinned:
        return Expected(pinned, "pinned", record_path(dest))
    if recorded:
        return Expected(recorded, "recorded", record_path(dest))
    return Expected(None, "none", record_path(dest))


def parse_sha256(value, source: str, names: list[str]) -> dict[str, str]:
    """Config/CLI sha256 (None, hex string, {name: hex} map or its JSON) -> {name: hex}."""
    k = key(source, "sha256")
    if isinstance(value, str):
        value = value.strip()
        if value in ("", "null", "None"):
            value = None
        elif value.startswith("{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise DataError(f"{k}: not valid JSON: {exc}") from exc
    if value is None:
        return {}
    if isinstance(value, str):
        if len(names) != 1:
            raise DataError(f"{k}: a single hash was given but the source has files {names}; use a {{file: hash}} map")
        value = {names[0]: value}
    if not isinstance(value, dict):
        raise DataError(f"{k}: expected null, a hex string or a {{file: hex}} map, got {value!r}")
    out = {}
    for name, hexd in value.items():
        hexd = str(hexd).strip().lower()
        if not HEX.match(hexd):
            raise DataError(f"{k}: value for '{name}' is not a 64-digit hex sha256: {hexd!r}")
        out[str(name)] = hexd
    return out


def new_content_mismatch(source: str, dest: Path, exp: Expected, actual: str, origin: str, fix: str) -> ChecksumError:
    """Downloaded / copied content differs from the expected hash (it was not kept)."""
    if exp.kind == "pinned":
        return ChecksumError(
            f"{dest.name} from {origin} differs from the pinned hash {key(source, 'sha256')}: "
            f"pinned {exp.digest}, got {actual}. It was not kept (nothing was written to {dest}). {fix} {PIN_HINT}"
        )
    return ChecksumError(
        f"{dest.name} from {origin} differs from the sha256 an earlier run recorded in {exp.record}: "
        f"recorded {exp.digest}, got {actual}. It was not kept (nothing was written to {dest}). {fix} "
        f"If the source legitimately changed, delete {exp.record} to accept the new content "
        f"(and pin it in {key(source, 'sha256')})."
    )


def existing_mismatch(source: str, dest: Path, exp: Expected, actual: str, origin: str) -> ChecksumError:
    """A file already in ``DIR`` no longer matches what it was verified against."""
    if exp.kind == "pinned":
        return ChecksumError(
            f"{dest} differs from the pinned hash {key(source, 'sha256')}: pinned {exp.digest}, the file has "
            f"{actual} (it was changed or damaged after it was verified). "
            f"Delete {dest} and run again to fetch it again from {origin}. {PIN_HINT}"
        )
    return ChecksumError(
        f"{dest} differs from its record {exp.record}: recorded {exp.digest}, the file has {actual} "
        f"(it was changed or damaged after it was verified). Delete {dest} and run again to fetch it again "
        f"from {origin}; if you replaced the file on purpose, delete {exp.record} as well to accept its content."
    )


# --------------------------------------------------------------------------- files on disk


def is_zip(name: str) -> bool:
    return name.lower().endswith(".zip")


def unsafe_member(name: str) -> bool:
    """A zip member that would land outside the folder (absolute, ``..``, a drive letter)."""
    parts = Path(name).parts
    return name.startswith(("/", "\\")) or ".." in parts or bool(parts and ":" in parts[0])


def zip_problem(path: Path) -> str | None:
    """Why ``path`` is not a sound, safely extractable zip (every member's CRC is read), or None."""
    try:
        with zipfile.ZipFile(path) as zf:
            unsafe = [
                i.filename for i in zf.infolist() if unsafe_member(i.filename) or stat.S_ISLNK(i.external_attr >> 16)
            ]
            if unsafe:
                return f"zip member(s) {unsafe[:3]} would be written outside the folder or are symbolic links (refused)"
            tops = {n.split("/")[0] for n in zf.namelist()}
            reserved = sorted(t for t in tops if t == MARKER or t.endswith(".sha256"))
            if reserved:
                return f"zip member name(s) {reserved[:3]} would overwrite the download step's own files (refused)"
            bad = zf.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        return f"not a valid zip file (truncated or corrupt?): {exc}"
    except (NotImplementedError, RuntimeError) as exc:  # unsupported compression, encrypted members
        return f"not a zip file that can be extracted: {exc}"
    if bad is not None:
        return f"not a valid zip file: member '{bad}' fails its CRC check (corrupt?)"
    return None


def copy_file(src: Path, dst: Path) -> str:
    """Copy the bytes of ``src`` into ``dst`` (never a hard link). Returns the method used.

    A reflink (``FICLONE``: copy-on-write, instant on btrfs/xfs) where the filesystem can, else
    ``copy_file_range`` (in-kernel, server-side on NFS 4.2), else a plain read/write copy.
    """
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        try:
            import fcntl

            fcntl.ioctl(fo.fileno(), FICLONE, fi.fileno())
            return "reflink"
        except (ImportError, OSError):
            pass
        size = os.fstat(fi.fileno()).st_size
        try:
            done = 0
            while done < size:
                n = os.copy_file_range(fi.fileno(), fo.fileno(), size - done)
                if n == 0:
                    break
                done += n
            if done == size:
                return "copy_file_range"
        except (AttributeError, OSError):
            pass
        fi.seek(0)
        fo.seek(0)
        fo.truncate()
        shutil.copyfileobj(fi, fo, CHUNK)
        return "copy"


def remove_leftovers(out: Path) -> list[str]:
    """Delete the temporaries a killed run left in ``out`` (its own patterns only)."""
    removed = []
    for p in sorted(out.rglob(".*"), key=lambda p: len(p.parts)):
        if not p.exists() and not p.is_symlink():
            continue  # inside a folder removed above
        if p.is_dir() and not p.is_symlink() and _TEMP_DIR.match(p.name):
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_file() and _TEMP_FILE.match(p.name):
            p.unlink()
        else:
            continue
        removed.append(str(p.relative_to(out)))
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run in %s: %s", len(removed), out, removed)
    return removed


def extract(path: Path, out: Path, reserved: set[str]) -> list[str]:
    """Extract a verified zip into ``out`` via a temporary folder; returns the member files."""
    members = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename
            parts = Path(name).parts
            if unsafe_member(name):
                raise DataError(f"{path}: refusing unsafe zip member name {name!r}")
            if parts and parts[0] == "__MACOSX":
                continue
            top = parts[0] if parts else ""
            if top in reserved or top.endswith(".sha256"):
                raise DataError(f"{path}: refusing zip member {name!r}: it would overwrite {out / top}")
            members.append(info)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=out))
        try:
            zf.extractall(tmp, members=members)
            for child in tmp.iterdir():
                dest = out / child.name
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                elif dest.exists() or dest.is_symlink():
                    dest.unlink()
                os.replace(child, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return [m.filename for m in members if not m.is_dir()]


# --------------------------------------------------------------------------- fetching


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def fetch(url: str, dest: Path, timeout: float = 60.0) -> tuple[int, str]:
    """Download ``url`` into ``dest`` (a temporary path). Returns (byte count, sha256).

    Raises _Retryable for transient failures, _ClientError for HTTP 4xx other than 429.
    """
    try:
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            if exc.code >= 500 or exc.code == 429:
                raise _Retryable(f"HTTP {exc.code} {exc.reason}", _retry_after(exc.headers)) from exc
            raise _ClientError(f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        if isinstance(exc, ValueError) or "unknown url type" in str(exc):
            raise _ClientError(f"not a usable URL: {exc}") from exc
        raise _Retryable(f"{getattr(exc, 'reason', exc)}") from exc
    n = 0
    h = hashlib.sha256()
    last_log = time.monotonic()
    with resp:
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        read = getattr(resp, "read1", resp.read)  # what has arrived: progress is on disk as it comes
        try:
            with open(dest, "wb") as fh:
                while True:
                    block = read(CHUNK)
                    if not block:
                        break
                    fh.write(block)
                    h.update(block)
                    n += len(block)
                    if time.monotonic() - last_log > 10:
                        last_log = time.monotonic()
                        total = f" of {expected / 1e6:.1f}" if expected else ""
                        log.info("  %s: %.1f%s MB", url, n / 1e6, total)
        except http.client.IncompleteRead as exc:
            raise _Retryable(f"truncated: connection closed after {n + len(exc.partial)} bytes") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(f"read failed after {n} bytes: {exc}") from exc
    if expected is not None and n != expected:
        raise _Retryable(f"truncated: got {n} bytes, Content-Length says {expected}")
    return n, h.hexdigest()


def download_file(
    source: str,
    url: str,
    dest: Path,
    exp: Expected,
    retries: int = 3,
    backoff: float = 2.0,
    timeout: float = 60.0,
) -> str:
    """Download one file; verify it beside ``dest``; rename it into place. Returns its sha256."""
    last: _Retryable | None = None
    for attempt in range(retries + 1):
        try:
            log.info("downloading %s -> %s (attempt %d/%d)", url, dest, attempt + 1, retries + 1)
            with atomic_path(dest) as tmp:
                n, actual = fetch(url, tmp, timeout=timeout)
                if is_zip(dest.name) and (problem := zip_problem(tmp)):  # the host would send the same bytes
                    raise DataError(f"{url} ({key(source, 'url')}): {n} bytes received, {problem}; not retried. "
                                    f"Nothing was written to {dest}.")  # fmt: skip
                if exp.digest and actual != exp.digest:
                    fix = (
                        "The download is corrupt or the host now serves different bytes: run again to re-download; "
                        f"if it keeps failing, check {key(source, 'url')} ({url})."
                    )
                    raise new_content_mismatch(source, dest, exp, actual, url, fix)
            log.info("downloaded %s (%d bytes, sha256 %s)", dest, n, actual)
            return actual
        except _ClientError as exc:
            raise DataError(
                f"{key(source, 'url')} = {url}: {exc}; not retried (a client error does not go away by retrying). "
                f"Nothing was written to {dest}. Check the URL, or set {key(source, 'url')}: null and "
                f"{key(source, 'mirror')} to a copy of the file."
            ) from exc
        except _Retryable as exc:
            last = exc
            log.warning("download of %s failed (attempt %d/%d): %s", url, attempt + 1, retries + 1, exc)
            if attempt < retries:
                delay = min(MAX_DELAY, max(backoff * 2**attempt, exc.retry_after or 0.0))
                time.sleep(delay)
    raise DataError(
        f"could not download {dest.name} for dataset '{source}' from {url} ({key(source, 'url')}) after "
        f"{retries + 1} attempt(s); last error: {last}. Nothing was written to {dest}. Run again to retry. "
        f"On an offline / air-gapped machine, download the file elsewhere, set {key(source, 'mirror')} "
        f"to the file (or its extracted folder) and {key(source, 'url')}: null."
    )


def copy_from_mirror(source: str, src: Path, dest: Path, exp: Expected, mirror: Path) -> str:
    """Copy one mirror file beside ``dest``, verify it there, rename it into place. Returns its sha256."""
    origin = f"mirror {src} ({key(source, 'mirror')} = {mirror})"
    fix = f"Fix the mirror: replace {src} with a good copy of the file and run again."
    with atomic_path(dest) as tmp:
        how = copy_file(src, tmp)
        actual = sha256_file(tmp)
        if exp.digest and actual != exp.digest:
            raise new_content_mismatch(source, dest, exp, actual, origin, fix)
        if is_zip(dest.name) and (problem := zip_problem(tmp)):
            raise DataError(f"{src} ({key(source, 'mirror')}): {problem}. It was not copied to {dest}. {fix}")
    log.info("copied %s -> %s (%s, sha256 %s)", src, dest, how, actual)
    return actual


def check_existing(source: str, dest: Path, exp: Expected, origin: str) -> str:
    """Verify a file an earlier run placed: hash, then zip CRC. Returns its sha256."""
    log.info("%s exists; verifying (%s sha256)", dest, exp.kind)
    actual = sha256_file(dest)
    if exp.digest and actual != exp.digest:
        raise existing_mismatch(source, dest, exp, actual, origin)
    if is_zip(dest.name) and (problem := zip_problem(dest)):
        if exp.kind == "pinned":
            raise DataError(
                f"{dest}: {problem}, yet it matches the pinned {key(source, 'sha256')} = {exp.digest}: "
                f"the pin names a corrupt file. Delete {dest}, check the pinned value against the host's "
                f"published hash, and run again."
            )
        stale = f" and its record {exp.record}" if exp.kind == "recorded" else ""
        raise DataError(f"{dest}: {problem}. Delete {dest}{stale} and run again to fetch it again from {origin}.")
    return actual


# --------------------------------------------------------------------------- one source


def source_files(source: str, url: str | None) -> list[tuple[str, str | None]]:
    """(file name, its URL) for every file of ``source`` (URL None in the mirror-only set-up)."""
    if source in MULTI_FILE:
        base = (url or "").rstrip("/")
        return [(name, f"{base}/{name}" if url else None) for name in MULTI_FILE[source]]
    if not url:
        if source in DEFAULT_FILES:
            return [(DEFAULT_FILES[source], None)]
        raise DataError(f"dataset '{source}': no URL ({key(source, 'url')}) and no mirror ({key(source, 'mirror')})")
    name = urllib.parse.unquote(Path(urllib.parse.urlparse(url).path).name)
    if not name:
        raise DataError(f"{key(source, 'url')} = {url}: cannot tell a file name from the URL")
    return [(name, url)]


def _files_and_mode(source: str, url: str | None, mirror: Path | None) -> tuple[list[tuple[str, str | None]], bool]:
    """The source's files and whether ``mirror`` is an extracted-release folder (tree mode)."""
    if not url and mirror is None:
        raise DataError(
            f"dataset '{source}': no source: {key(source, 'url')} is null and {key(source, 'mirror')} is not set. "
            f"Set {key(source, 'url')} to the download URL, or {key(source, 'mirror')} to an already-downloaded "
            "file or extracted folder."
        )
    if url or source in MULTI_FILE or source in DEFAULT_FILES:
        files = source_files(source, url)
    elif mirror.is_file():
        files = [(mirror.name, None)]  # a source of unknown layout: keep the mirror's file name
    else:
        return [], True
    names = [n for n, _ in files]
    if mirror is None:
        return files, False
    if mirror.is_file():
        if len(names) > 1:
            raise DataError(
                f"{key(source, 'mirror')} = {mirror}: a file, but the source has files {names}: give a folder holding them"
            )
        return files, False
    present = [n for n in names if (mirror / n).is_file()]
    if present and len(present) < len(names):
        missing = [n for n in names if n not in present]
        raise DataError(
            f"{key(source, 'mirror')} = {mirror}: holds {present} but not {missing}; add them and run again"
        )
    return files, not present


def _tree_mirror(source: str, mirror: Path, out: Path, configured: dict[str, str]) -> tuple[dict, dict, list]:
    """Copy an extracted-release folder into ``out``, each file verified before it is kept."""
    log.info("dataset '%s': using extracted mirror folder %s", source, mirror)
    hashes: dict[str, str] = {}
    origins: dict[str, str] = {}
    for src in sorted(p for p in mirror.rglob("*") if p.is_file()):
        rel = src.relative_to(mirror)
        if rel.name.endswith(".sha256") or rel.as_posix() == MARKER:
            continue
        if any(part.startswith(".") or part == "__MACOSX" for part in rel.parts):
            continue
        name = rel.as_posix()
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        exp = expected_for(source, dest, configured.get(name))
        hashes[name] = copy_from_mirror(source, src, dest, exp, mirror)
        origins[name] = str(src)
        if exp.kind != "recorded":
            record(dest, hashes[name])
    unverified = [n for n in configured if n not in hashes]
    if unverified:
        log.warning(
            "dataset '%s': mirror %s is an extracted folder; pinned hash(es) for %s cannot be checked",
            source,
            mirror,
            unverified,
        )
    return hashes, origins, unverified


def _one_file(source, name, file_url, out, pinned, mirror, retries, backoff, timeout) -> tuple[str, str]:
    """Get one file into ``out`` (existing / mirror / download), verified. Returns (sha256, origin)."""
    dest = out / name
    exp = expected_for(source, dest, pinned)
    if mirror is not None:
        src = mirror if mirror.is_file() else mirror / name
        origin = str(src)
    else:
        src, origin = None, file_url
    if dest.is_file():
        digest = check_existing(source, dest, exp, origin)
    elif src is not None:
        log.info("dataset '%s': copying %s from mirror %s", source, name, src)
        digest = copy_from_mirror(source, src, dest, exp, mirror)
    else:
        digest = download_file(source, file_url, dest, exp, retries, backoff, timeout)
    if read_recorded(dest) != digest:
        record(dest, digest)
    if exp.kind == "none":
        log.info("recorded sha256 of %s: %s (set %s to pin it)", dest, digest, key(source, "sha256"))
    return digest, origin


def download_source(
    source: str,
    url: str | None,
    out: str | Path,
    sha256=None,
    mirror: str | Path | None = None,
    retries: int = 3,
    backoff: float = 2.0,
    timeout: float = 60.0,
) -> dict:
    """Fetch (or copy from ``mirror``), verify and extract one source; write ``out/DONE.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()  # a failed run must not leave an old marker behind
    remove_leftovers(out)
    url = None if url in (None, "", "null", "None") else url
    mirror = None if mirror in (None, "", "null", "None") else Path(mirror)
    if mirror is not None and not mirror.exists():
        raise DataError(f"{key(source, 'mirror')}: path does not exist: {mirror}")
    files, tree = _files_and_mode(source, url, mirror)
    names = [n for n, _ in files]
    configured = parse_sha256(sha256, source, names)

    if tree:
        hashes, origins, unverified = _tree_mirror(source, mirror, out, configured)
    else:
        hashes, origins, unverified = {}, {}, []
        for name, file_url in files:
            hashes[name], origins[name] = _one_file(
                source, name, file_url, out, configured.get(name), mirror, retries, backoff, timeout
            )

    reserved = {*hashes, *(record_path(out / n).name for n in hashes), MARKER}
    extracted: dict[str, list[str]] = {}
    for name in list(hashes):
        if is_zip(name) and (out / name).is_file() and "/" not in name:
            try:
                extracted[name] = extract(out / name, out, reserved)
            except (OSError, ValueError, DataError, zipfile.BadZipFile, zlib.error) as exc:  # keep no unusable zip
                (out / name).unlink(missing_ok=True)
                record_path(out / name).unlink(missing_ok=True)
                raise DataError(
                    f"{out / name}: cannot be extracted ({exc}); removed it and its sha256 record, so the next run "
                    f"fetches it again from {origins[name]}"
                ) from exc
            log.info("extracted %d file(s) from %s into %s", len(extracted[name]), name, out)

    done = {
        "source": source,
        "origin": str(mirror) if mirror is not None else url,
        "url": url,
        "mirror": str(mirror) if mirror is not None else None,
        "files": hashes,
        "origins": origins,
        "extracted": extracted,
        "unverified": unverified,
    }
    write_json(marker, done)
    return done


# --------------------------------------------------------------------------- CLI


def add_arguments(parser) -> None:
    parser.add_argument("--source", required=True, help="dataset name (mnli, wanli, anli, cad, dynahate, ...)")
    parser.add_argument(
        "--url",
        nargs="?",
        default=None,
        const=None,
        help="download URL (a folder URL for multi-file sources such as wanli); omit or leave empty to use --mirror only",
    )
    parser.add_argument("--out", required=True, help="folder for the raw files (resources/{source})")
    parser.add_argument("--sha256", default=None, help="pinned sha256: a hex string or a JSON {file: hex} map")
    parser.add_argument("--mirror", default=None, help="already-downloaded file or folder to use instead of the URL")
    parser.add_argument("--retries", type=int, default=3, help="retries after the first attempt (default 3)")
    parser.add_argument("--backoff", type=float, default=2.0, help="first retry delay in seconds, doubled each time")
    parser.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")


def run(args) -> int:
    try:
        done = download_source(
            args.source,
            args.url,
            args.out,
            sha256=args.sha256,
            mirror=args.mirror,
            retries=max(0, args.retries),
            backoff=max(0.0, args.backoff),
            timeout=args.timeout,
        )
    except OSError as exc:  # disk full, permissions, a file where a folder should be: no traceback
        raise DataError(f"dataset '{args.source}': download into {args.out} failed: {exc}") from exc
    log.info("dataset '%s' ready in %s (%d file(s))", args.source, args.out, len(done["files"]))
    return 0
