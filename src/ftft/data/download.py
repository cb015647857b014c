"""Download one dataset (``ftft download``): fetched with pooch, verified before it is kept, then extracted.

- One file per URL, named after its last path segment (WANLI: ``MULTI_FILE`` below a folder URL), or copied
  (never linked) from ``--mirror``: that file, a folder of those files, or an extracted release, file by file.
- Expected hash: pinned (``--sha256``), else recorded by an earlier run (``DIR/FILE.sha256``), else none. New
  content is checked beside its target (sha256, zip CRC and member names) and renamed into place only if sound;
  a file already in ``DIR`` that fails is left there and the error names what to delete.
- ``--retries`` is the only retry loop: network errors, HTTP 5xx/429 and truncation; never HTTP 4xx, a hash
  mismatch or a bad zip. Zips are extracted through a temporary folder; one that fails is removed with its record.
- ``DIR/DONE.json`` is deleted first and written last; temporaries of a killed run are removed at the start.
"""

import json
import logging
import re
import shutil
import stat
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import pooch

from ..errors import ChecksumError, DataError
from ..io import atomic_path, write_json, write_text

log = logging.getLogger(__name__)

MULTI_FILE = {"wanli": ["train.jsonl", "test.jsonl"]}
DYNAHATE = "Dynamically Generated Hate Dataset v0.2.3.csv"
DEFAULT_FILES = {"mnli": "MNLI.zip", "anli": "anli_v1.0.zip", "cad": "data.zip", "dynahate": DYNAHATE}
MARKER = "DONE.json"
USER_AGENT = "ftft-workflow/0.1 (+https://arxiv.org/abs/2310.06588)"
HEX = re.compile(r"^[0-9a-f]{64}$")
_NOT_DATA = re.compile(r"(^|/)(\.|__MACOSX/)|\.sha256$|^DONE\.json$")  # hidden files, records, the marker
_TEMP = re.compile(r"^\.(extract-[a-z0-9_]{8}|.+\.[a-z0-9_]{8}\.tmp)$")  # extract()'s and io.atomic_path's
PIN_HINT = "The pin itself may be wrong: check it against its source (docs/FIDELITY.md) and the host's published hash."


class Expected(NamedTuple):
    digest: str | None
    kind: str  # pinned | recorded | none
    record: Path


def key(source: str, what: str) -> str:
    return f"datasets.{source}.{what}"


def expected_for(source: str, dest: Path, pinned: str | None) -> Expected:
    rec = dest.with_name(dest.name + ".sha256")
    recorded = (rec.read_text().lower().split() or [""])[0] if rec.is_file() else None
    if recorded is not None and not HEX.match(recorded):
        raise DataError(f"{rec}: not a sha256 record ('<64 hex digits>  {dest.name}'); delete {rec} and run again")
    if pinned and recorded and recorded != pinned:
        log.warning("%s: recorded sha256 %s differs from the pinned %s; the pin wins", dest, recorded, pinned)
    return Expected(pinned or recorded, "pinned" if pinned else "recorded" if recorded else "none", rec)


def parse_sha256(value: str | None, source: str, names: list[str]) -> dict[str, str]:
    """``--sha256`` (none, a hex string for a one-file source, or a JSON ``{file: hex}`` map) -> {file: hex}."""
    text = (value or "").strip()
    if text in ("", "null", "None"):
        return {}
    if not text.startswith("{") and len(names) != 1:
        raise DataError(f"{key(source, 'sha256')}: one hash for the files {names}: give a {{file: hex}} map")
    try:
        pins = json.loads(text) if text.startswith("{") else {names[0]: text}
    except json.JSONDecodeError as exc:
        raise DataError(f"{key(source, 'sha256')}: not valid JSON: {exc}") from exc
    if not isinstance(pins, dict) or not all(HEX.match(str(h)) for h in pins.values()):
        raise DataError(f"{key(source, 'sha256')}: not a 64-digit lower-case hex sha256 or a {{file: hex}} map: {text}")
    return pins


def mismatch(source: str, dest: Path, exp: Expected, actual: str, origin: str, fix: str = "") -> ChecksumError:
    """New content (``fix``: what to do; it was not kept) or a file already in ``DIR`` that fails its hash."""
    pinned = exp.kind == "pinned"
    against = f"the pinned hash {key(source, 'sha256')}: pinned" if pinned else f"its record {exp.record}: recorded"
    if fix:
        accept = f"If the source legitimately changed, delete {exp.record} to accept the new content (and pin it)."
        return ChecksumError(
            f"{dest.name} from {origin} differs from {against} {exp.digest}, got {actual}. It was not kept (nothing "
            f"was written to {dest}). {fix} {PIN_HINT if pinned else accept}"
        )
    accept = f"If you replaced the file on purpose, delete {exp.record} as well to accept its content."
    return ChecksumError(
        f"{dest} differs from {against} {exp.digest}, the file has {actual} (changed or damaged?). Delete {dest} "
        f"and run again to fetch it again from {origin}. {PIN_HINT if pinned else accept}"
    )


def zip_problem(path: Path, name: str) -> str | None:
    """Why ``path`` (to be ``DIR/name``) is not a sound zip that is safe to extract (every member's CRC is read)."""
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                parts = Path(info.filename).parts or ("",)
                outside = info.filename.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]
                ours = parts[0] in (MARKER, name) or parts[0].endswith(".sha256")  # the download step's own files
                if outside or ours or stat.S_ISLNK(info.external_attr >> 16):
                    return f"zip member {info.filename!r} would land outside the folder or on our files, or is a link"
            bad = zf.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        return f"not a valid zip file that can be extracted (truncated, corrupt, encrypted?): {exc}"
    return None if bad is None else f"not a valid zip file: member '{bad}' fails its CRC check (corrupt?)"


def extract(path: Path, out: Path) -> list[str]:
    """Extract a zip that passed ``zip_problem`` into ``out`` via a temporary folder; returns the member files."""
    with zipfile.ZipFile(path) as zf:
        members = [i for i in zf.infolist() if Path(i.filename).parts[:1] != ("__MACOSX",)]
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=out))
        try:
            zf.extractall(tmp, members=members)
            for child in tmp.iterdir():
                if (target := out / child.name).is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                target.unlink(missing_ok=True)
                child.replace(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return [m.filename for m in members if not m.is_dir()]


def take(dest: Path, exp: Expected, source: str, origin: str, fix: str, fill) -> str:
    """``fill(tmp)`` writes new content beside ``dest``; it is renamed into place only if sound. Returns its sha256."""
    with atomic_path(dest) as tmp:
        fill(tmp)
        if dest.suffix.lower() == ".zip" and (problem := zip_problem(tmp, dest.name)):
            raise DataError(f"{dest.name} from {origin}: {problem}. Nothing was written to {dest}. {fix}")
        actual = pooch.file_hash(str(tmp))
        if exp.digest and actual != exp.digest:
            raise mismatch(source, dest, exp, actual, origin, fix)
    return actual


def download_file(source: str, url: str, dest: Path, exp: Expected, retries=3, backoff=2.0, timeout=60.0) -> str:
    """Download ``url`` into ``dest`` (``take``) with pooch; retry network errors, HTTP 5xx/429 and truncation."""
    import requests

    k, mirror = key(source, "url"), key(source, "mirror")
    fix = f"It was not retried (the host sent these bytes): run again to re-download; if it keeps failing, check {k}."
    client = f"not retried (a client error does not go away by retrying). Nothing was written to {dest}. Check the "
    client += f"URL, or set {k}: null and {mirror} to a copy of the file."
    get = pooch.HTTPDownloader(sys.stderr.isatty(), 1 << 16, timeout=timeout, headers={"User-Agent": USER_AGENT})
    local = urllib.request.url2pathname(urllib.parse.urlparse(url).path) if url.startswith("file:") else None
    fill = (lambda tmp: shutil.copyfile(local, tmp)) if local else (lambda tmp: get(url, str(tmp), None))
    for attempt in range(retries + 1):
        log.info("downloading %s -> %s (attempt %d/%d)", url, dest, attempt + 1, retries + 1)
        wait = backoff * 2**attempt
        try:
            return take(dest, exp, source, f"{url} ({k})", fix, fill)
        except requests.HTTPError as exc:
            code, after = exc.response.status_code, exc.response.headers.get("Retry-After", "")
            error = f"HTTP {code} {exc.response.reason}"
            if code < 500 and code != 429:
                raise DataError(f"{k} = {url}: {error}; {client}") from exc
            wait = max(wait, float(after) if after.isdigit() else 0.0)
        except requests.exceptions.ChunkedEncodingError as exc:
            error = f"truncated: the connection closed early ({exc})"
        except (ValueError, OSError) as exc:  # requests' InvalidURL (ValueError), ConnectionError, Timeout (OSError)
            if isinstance(exc, ValueError) or local:
                raise DataError(f"{k} = {url}: not usable ({exc}); {client}") from exc
            error = str(exc)
        log.warning("download of %s failed (attempt %d/%d): %s", url, attempt + 1, retries + 1, error)
        time.sleep(min(300.0, wait) if attempt < retries else 0)
    raise DataError(
        f"could not download {dest.name} for dataset '{source}' from {url} ({k}) after {retries + 1} attempt(s); "
        f"last error: {error}. Nothing was written to {dest}. Run again to retry. On an offline / air-gapped machine, "
        f"download the file elsewhere, set {mirror} to the file (or its extracted folder) and {k}: null."
    )


def get_file(source: str, name: str, url, out: Path, pinned, mirror: Path | None, **net) -> tuple[str, str]:
    """One file into ``out``: verified if an earlier run placed it, else copied from the mirror or downloaded."""
    dest = out / name
    exp = expected_for(source, dest, pinned)
    src = None if mirror is None else mirror if mirror.is_file() else mirror / name
    origin = url if src is None else str(src)
    if dest.is_file():  # never replaced silently: a file that fails is the evidence
        digest = pooch.file_hash(str(dest))
        if exp.digest and digest != exp.digest:
            raise mismatch(source, dest, exp, digest, origin)
        if dest.suffix.lower() == ".zip" and (problem := zip_problem(dest, dest.name)):
            what = f" and its record {exp.record}" if exp.kind == "recorded" else ""
            hint = f" It matches the pin {key(source, 'sha256')}: {PIN_HINT}" if exp.kind == "pinned" else ""
            raise DataError(f"{dest}: {problem}. Delete {dest}{what} and run again to fetch it from {origin}.{hint}")
    elif src is not None:
        fix = f"Fix the mirror: replace {src} with a good copy of the file and run again."
        origin_ = f"mirror {src} ({key(source, 'mirror')} = {mirror})"
        digest = take(dest, exp, source, origin_, fix, lambda tmp: shutil.copyfile(src, tmp))  # a copy, never a link
    else:
        digest = download_file(source, url, dest, exp, **net)
    if not exp.record.is_file() or exp.record.read_text().split()[:1] != [digest]:
        write_text(exp.record, f"{digest}  {dest.name}\n")
    log.info("%s: sha256 %s from %s (%s pins it)", dest, digest, origin, key(source, "sha256"))
    return digest, origin


def source_files(source: str, url: str | None, mirror: Path | None) -> tuple[list[tuple[str, str | None]], bool]:
    """(file name, its URL) for every file of ``source``, and whether ``mirror`` is an extracted release folder."""
    kurl, kmirror = key(source, "url"), key(source, "mirror")
    if not url and mirror is None:
        raise DataError(
            f"dataset '{source}': no source: {kurl} is null and {kmirror} is not set. Set {kurl} to the download "
            f"URL, or {kmirror} to an already-downloaded file or extracted folder."
        )
    if source in MULTI_FILE:
        files = [(n, f"{url.rstrip('/')}/{n}" if url else None) for n in MULTI_FILE[source]]
    elif url:
        if not (name := urllib.parse.unquote(Path(urllib.parse.urlparse(url).path).name)):
            raise DataError(f"{kurl} = {url}: cannot tell a file name from the URL")
        files = [(name, url)]
    else:  # the mirror-only set-up keeps the release names
        files = [(DEFAULT_FILES.get(source, mirror.name), None)] if source in DEFAULT_FILES or mirror.is_file() else []
    names = [n for n, _ in files]
    if mirror is not None and mirror.is_file() and len(names) > 1:
        raise DataError(f"{kmirror} = {mirror}: a file, but the source has files {names}: give a folder holding them")
    present = [n for n in names if mirror is not None and (mirror / n).is_file()]
    if 0 < len(present) < len(names):
        missing = [n for n in names if n not in present]
        raise DataError(f"{kmirror} = {mirror}: holds {present} but not {missing}; add them and run again")
    return files, mirror is not None and mirror.is_dir() and not present


def download_source(source: str, url, out, sha256=None, mirror=None, **net) -> dict:
    """Fetch (or copy from ``mirror``), verify and extract one source; write ``out/DONE.json`` last."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)  # a failed run must not leave an old marker behind
    for p in sorted(out.rglob(".*"), key=lambda p: len(p.parts)):  # temporaries a killed run left (our patterns)
        if _TEMP.match(p.name) and (p.is_file() or p.is_dir()) and not p.is_symlink():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            log.info("removed %s, left by an interrupted run", p)
    url = None if url in (None, "", "null", "None") else url
    mirror = None if mirror in (None, "", "null", "None") else Path(mirror)
    if mirror is not None and not mirror.exists():
        raise DataError(f"{key(source, 'mirror')}: path does not exist: {mirror}")
    files, tree = source_files(source, url, mirror)
    pins = parse_sha256(sha256, source, [n for n, _ in files])
    unverified = []
    if tree:  # an extracted release: every file copied, verified against its {path: hex} pin or its record
        rel = [p.relative_to(mirror).as_posix() for p in sorted(mirror.rglob("*")) if p.is_file()]
        files = [(r, None) for r in rel if not _NOT_DATA.search(r)]
        if unverified := [n for n in pins if n not in dict(files)]:
            log.warning("%s is an extracted folder: the pinned hash of %s cannot be checked", mirror, unverified)
    hashes, origins, extracted = {}, {}, {}
    for name, file_url in files:
        hashes[name], origins[name] = get_file(source, name, file_url, out, pins.get(name), mirror, **net)
    for name in [n for n in hashes if n.lower().endswith(".zip") and "/" not in n]:
        try:
            extracted[name] = extract(out / name, out)
        except (OSError, ValueError, zipfile.BadZipFile, zlib.error) as exc:  # keep no unusable zip
            (out / name).unlink(missing_ok=True)
            (out / f"{name}.sha256").unlink(missing_ok=True)
            raise DataError(
                f"{out / name}: cannot be extracted ({exc}); removed it and its sha256 record, so the next run "
                f"fetches it again from {origins[name]}"
            ) from exc
        log.info("extracted %d file(s) from %s into %s", len(extracted[name]), name, out)
    mirror = mirror and str(mirror)
    done = dict(source=source, origin=mirror or url, url=url, mirror=mirror, files=hashes, origins=origins)
    done |= dict(extracted=extracted, unverified=unverified)
    write_json(out / MARKER, done)
    return done


def add_arguments(parser) -> None:
    arg = parser.add_argument
    arg("--source", required=True, help="dataset name (mnli, wanli, anli, cad, dynahate, ...)")
    arg("--url", nargs="?", help="download URL (wanli: the folder URL); omit or leave empty to use --mirror only")
    arg("--out", required=True, help="folder for the raw files (resources/{source})")
    arg("--sha256", help="pinned sha256: a hex string or a JSON {file: hex} map")
    arg("--mirror", help="already-downloaded file or folder to use instead of the URL")
    arg("--retries", type=int, default=3, help="retries after the first attempt (default 3)")


def run(args) -> None:
    try:
        done = download_source(args.source, args.url, args.out, args.sha256, args.mirror, retries=max(0, args.retries))
    except OSError as exc:  # disk full, permissions, a file where a folder should be: no traceback
        raise DataError(f"dataset '{args.source}': download into {args.out} failed: {exc}") from exc
    log.info("dataset '%s' ready in %s (%d file(s))", args.source, args.out, len(done["files"]))
