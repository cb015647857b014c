"""Download one dataset from its canonical public source: atomic, retried, sha256-checked.

``ftft download --source NAME --url URL --out DIR [--sha256 HEX|JSON] [--mirror PATH] [--retries N]``

What one run does (``download_source``):

1. Work out the files of the source. Most sources are one file whose name is the last path
   segment of the URL (``MNLI.zip``, ``anli_v1.0.zip``, ``data.zip`` for CAD, the DynaHate
   CSV with its spaces). WANLI's URL is a folder (``.../resolve/main``) holding ``train.jsonl``
   and ``test.jsonl`` (``MULTI_FILE``).
2. Get each file into ``DIR``:
   * already there (an earlier run): verify it against the expected hash (below); a mismatch is
     a ``ChecksumError`` (delete the file to download it again), never a silent re-download;
   * from ``--mirror`` (air-gapped clusters): a file is hard-linked or copied to ``DIR/<name>``;
     a folder holding the expected file names is used the same way; any other folder is taken
     as an already-extracted release and its whole tree is linked/copied into ``DIR`` (a
     configured archive hash cannot be checked then: logged, and listed as ``unverified`` in
     the marker);
   * otherwise downloaded with urllib into a temporary file beside the target, retried with
     exponential backoff (``backoff * 2**attempt`` seconds) on network errors, HTTP 5xx/429,
     truncation (fewer bytes than ``Content-Length``) and corrupt zips; renamed into place only
     once verified. HTTP 4xx (other than 429) fails at once.
3. The expected hash of a file is, in order: the configured one (``--sha256`` a hex string for
   single-file sources, or a JSON ``{filename: hex}`` map), else the one recorded by an earlier
   run in ``DIR/<name>.sha256``. With neither (``sha256: null``, first run) the hash is
   recorded. A mismatch raises ``ChecksumError`` naming the file and both hashes.
4. Zips are checked (``testzip``: every member's CRC) and extracted into ``DIR`` (members with
   absolute paths or ``..`` are refused, ``__MACOSX`` is skipped).
5. ``DIR/DONE.json`` (the rule output) is written last: source, origin, files and hashes,
   extracted members, unverified files.

Without network and without a mirror, the error names the config key to set
(``datasets.<name>.mirror``) and the URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from ..errors import ChecksumError, DataError
from ..io import write_json, write_text

log = logging.getLogger(__name__)

# Sources whose URL is a folder holding several files.
MULTI_FILE: dict[str, list[str]] = {"wanli": ["train.jsonl", "test.jsonl"]}
MARKER = "DONE.json"
CHUNK = 1 << 20
USER_AGENT = "ftft-workflow/0.1 (+https://arxiv.org/abs/2310.06588)"
HEX = re.compile(r"^[0-9a-f]{64}$")


class _Retryable(Exception):
    """A transient failure (network, truncation, corrupt zip): try again."""


# --------------------------------------------------------------------------- helpers


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def source_files(source: str, url: str | None) -> list[tuple[str, str | None]]:
    """(file name, its URL) for every file of ``source``."""
    if source in MULTI_FILE:
        base = (url or "").rstrip("/")
        return [(name, f"{base}/{name}" if url else None) for name in MULTI_FILE[source]]
    if not url:
        raise DataError(f"dataset '{source}': no URL (datasets.{source}.url) and no mirror (datasets.{source}.mirror)")
    name = urllib.parse.unquote(Path(urllib.parse.urlparse(url).path).name)
    if not name:
        raise DataError(f"dataset '{source}': cannot tell a file name from URL {url}")
    return [(name, url)]


def parse_sha256(value, source: str, names: list[str]) -> dict[str, str]:
    """Config/CLI sha256 (None, hex string, {name: hex} map or its JSON) -> {name: hex}."""
    key = f"datasets.{source}.sha256"
    if isinstance(value, str):
        value = value.strip()
        if value in ("", "null", "None"):
            value = None
        elif value.startswith("{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise DataError(f"{key}: not valid JSON: {exc}") from exc
    if value is None:
        return {}
    if isinstance(value, str):
        if len(names) != 1:
            raise DataError(
                f"{key}: a single hash was given but the source has files {names}; use a {{file: hash}} map"
            )
        value = {names[0]: value}
    if not isinstance(value, dict):
        raise DataError(f"{key}: expected null, a hex string or a {{file: hex}} map, got {value!r}")
    out = {}
    for name, hexd in value.items():
        hexd = str(hexd).strip().lower()
        if not HEX.match(hexd):
            raise DataError(f"{key}: value for '{name}' is not a 64-digit hex sha256: {hexd!r}")
        out[str(name)] = hexd
    return out


def read_recorded(path: Path) -> str | None:
    rec = path.with_name(path.name + ".sha256")
    if not rec.is_file():
        return None
    text = rec.read_text().split()
    if not text or not HEX.match(text[0].lower()):
        raise DataError(f"{rec}: not a sha256 record (expected '<64 hex digits>  {path.name}')")
    return text[0].lower()


def record(path: Path, digest: str) -> None:
    write_text(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n")


def verify(path: Path, expected: str | None, origin: str) -> str:
    """Hash ``path``; raise ChecksumError if it differs from ``expected`` (when known)."""
    actual = sha256_file(path)
    if expected and actual != expected:
        raise ChecksumError(
            f"{path}: sha256 mismatch ({origin}): expected {expected}, got {actual}. "
            "If the source legitimately changed, delete the file and its .sha256 record "
            "(or update the configured hash) and run again."
        )
    return actual


def check_zip(path: Path, label: str) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{label}: not a valid zip file (truncated or corrupt download?): {exc}") from exc
    if bad is not None:
        raise DataError(f"{label}: zip member '{bad}' fails its CRC check (corrupt download?)")


def extract(path: Path, out: Path) -> list[str]:
    """Extract a verified zip into ``out`` (via a temporary folder; safe member names only)."""
    members = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename
            parts = Path(name).parts
            if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise DataError(f"{path}: refusing unsafe zip member name {name!r}")
            if parts and parts[0] == "__MACOSX":
                continue
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


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# --------------------------------------------------------------------------- fetching


def fetch(url: str, dest: Path, timeout: float = 60.0) -> int:
    """Download ``url`` into ``dest`` (a temporary path). Returns the byte count.

    Raises _Retryable for transient failures, DataError for permanent ones.
    """
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Retryable(f"HTTP {exc.code} {exc.reason}") from exc
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retryable(f"{getattr(exc, 'reason', exc)}") from exc
    n = 0
    last_log = time.monotonic()
    with resp:
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        try:
            with open(dest, "wb") as fh:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    fh.write(block)
                    n += len(block)
                    if time.monotonic() - last_log > 10:
                        last_log = time.monotonic()
                        total = f" of {expected / 1e6:.1f}" if expected else ""
                        log.info("  %s: %.1f%s MB", dest.name, n / 1e6, total)
        except http.client.IncompleteRead as exc:
            raise _Retryable(f"truncated: connection closed after {n + len(exc.partial)} bytes") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(f"read failed after {n} bytes: {exc}") from exc
    if expected is not None and n != expected:
        raise _Retryable(f"truncated: got {n} bytes, Content-Length says {expected}")
    return n


def download_file(
    source: str,
    name: str,
    url: str,
    dest: Path,
    expected: str | None,
    retries: int = 3,
    backoff: float = 2.0,
    timeout: float = 60.0,
) -> str:
    """Download one file atomically into ``dest``; returns its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    last = None
    for attempt in range(retries + 1):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            log.info("downloading %s -> %s (attempt %d/%d)", url, dest, attempt + 1, retries + 1)
            n = fetch(url, tmp, timeout=timeout)
            if name.endswith(".zip"):
                try:
                    check_zip(tmp, f"{dest} (from {url})")
                except DataError as exc:
                    raise _Retryable(str(exc)) from exc
            actual = sha256_file(tmp)
            if expected and actual != expected:
                raise ChecksumError(
                    f"{dest}: sha256 mismatch after download from {url}: expected {expected}, got {actual}. "
                    f"If the source legitimately changed, update datasets.{source}.sha256 or delete "
                    f"{dest.name}.sha256 and run again."
                )
            os.replace(tmp, dest)
            log.info("downloaded %s (%d bytes, sha256 %s)", dest, n, actual)
            return actual
        except _Retryable as exc:
            last = exc
            log.warning("download of %s failed (attempt %d/%d): %s", url, attempt + 1, retries + 1, exc)
            if attempt < retries:
                time.sleep(backoff * 2**attempt)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    raise DataError(
        f"could not download {name} for dataset '{source}' from {url} after {retries + 1} attempt(s): {last}. "
        f"On an offline / air-gapped machine, download it elsewhere and set datasets.{source}.mirror "
        "to the downloaded file or folder."
    )


# --------------------------------------------------------------------------- one source


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
    mirror = None if mirror in (None, "", "null", "None") else Path(mirror)
    if mirror is not None and not mirror.exists():
        raise DataError(f"datasets.{source}.mirror: path does not exist: {mirror}")
    files = source_files(source, url) if (url or source in MULTI_FILE) else []
    if not files and mirror is not None and mirror.is_file():
        files = [(mirror.name, None)]
    if not files and mirror is None:
        source_files(source, url)  # raises with the config keys to set
    names = [n for n, _ in files]
    if mirror is not None and mirror.is_file() and len(names) > 1:
        raise DataError(
            f"datasets.{source}.mirror: {mirror} is a file, but the source has files {names}: give a folder holding them"
        )
    configured = parse_sha256(sha256, source, names or ["<file>"])
    hashes: dict[str, str] = {}
    unverified: list[str] = []
    origin = str(mirror) if mirror is not None else url

    tree_mirror = mirror is not None and mirror.is_dir() and not (names and all((mirror / n).is_file() for n in names))
    if tree_mirror:
        log.info("dataset '%s': using extracted mirror folder %s", source, mirror)
        for src in sorted(p for p in mirror.rglob("*") if p.is_file()):
            rel = src.relative_to(mirror)
            if rel.name.endswith(".sha256") or rel.name == MARKER:
                continue
            dest = out / rel
            _link_or_copy(src, dest)
            key = rel.as_posix()
            expected = configured.get(key) or read_recorded(dest)
            hashes[key] = verify(dest, expected, f"mirror {src}")
            if expected is None:
                record(dest, hashes[key])
        missing = [n for n in configured if n not in hashes]
        if missing:
            log.warning(
                "dataset '%s': mirror %s is an extracted folder; configured hash(es) for %s cannot be checked",
                source,
                mirror,
                missing,
            )
            unverified.extend(missing)
    else:
        for name, file_url in files:
            dest = out / name
            expected = configured.get(name)
            recorded = read_recorded(dest)
            if expected and recorded and recorded != expected:
                log.warning(
                    "%s: recorded sha256 %s differs from configured %s; the configured one wins",
                    dest,
                    recorded,
                    expected,
                )
            expected = expected or recorded
            how = "configured" if configured.get(name) else ("recorded" if recorded else "recorded now")
            if dest.is_file():
                log.info("%s exists; verifying (%s sha256)", dest, how)
                hashes[name] = verify(dest, expected, f"existing file, {how} hash")
            elif mirror is not None:
                src = mirror if mirror.is_file() else mirror / name
                log.info("dataset '%s': copying %s from mirror %s", source, name, src)
                _link_or_copy(src, dest)
                try:
                    hashes[name] = verify(dest, expected, f"mirror {src}, {how} hash")
                except ChecksumError:
                    dest.unlink()
                    raise
            else:
                if not file_url:
                    raise DataError(
                        f"dataset '{source}': no URL for {name}; set datasets.{source}.url or datasets.{source}.mirror"
                    )
                hashes[name] = download_file(source, name, file_url, dest, expected, retries, backoff, timeout)
            if recorded is None:
                record(dest, hashes[name])
            if not configured.get(name) and not recorded:
                log.info("recorded sha256 of %s: %s (set datasets.%s.sha256 to pin it)", dest, hashes[name], source)

    extracted: dict[str, list[str]] = {}
    for name in list(hashes):
        if name.endswith(".zip") and (out / name).is_file():
            check_zip(out / name, str(out / name))
            extracted[name] = extract(out / name, out)
            log.info("extracted %d file(s) from %s into %s", len(extracted[name]), name, out)

    done = {
        "source": source,
        "origin": str(origin),
        "url": url,
        "mirror": str(mirror) if mirror is not None else None,
        "files": hashes,
        "extracted": extracted,
        "unverified": unverified,
    }
    write_json(marker, done)
    return done


# --------------------------------------------------------------------------- CLI


def add_arguments(parser) -> None:
    parser.add_argument("--source", required=True, help="dataset name (mnli, wanli, anli, cad, dynahate, ...)")
    parser.add_argument("--url", default=None, help="download URL (a folder URL for multi-file sources such as wanli)")
    parser.add_argument("--out", required=True, help="folder for the raw files (resources/{source})")
    parser.add_argument("--sha256", default=None, help="expected sha256: a hex string or a JSON {file: hex} map")
    parser.add_argument("--mirror", default=None, help="already-downloaded file or folder to use instead of the URL")
    parser.add_argument("--retries", type=int, default=3, help="retries after the first attempt (default 3)")
    parser.add_argument("--backoff", type=float, default=2.0, help="first retry delay in seconds, doubled each time")
    parser.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")


def run(args) -> int:
    url = None if args.url in (None, "", "null", "None") else args.url
    done = download_source(
        args.source,
        url,
        args.out,
        sha256=args.sha256,
        mirror=args.mirror,
        retries=max(0, args.retries),
        backoff=args.backoff,
        timeout=args.timeout,
    )
    log.info("dataset '%s' ready in %s (%d file(s))", args.source, args.out, len(done["files"]))
    return 0
