"""Download step: a local HTTP server / file:// URLs stand in for the dataset hosts (no network)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from rehearsal.archives import build_archives

from ftft.cli import main
from ftft.data import download
from ftft.data.download import download_source
from ftft.data.prepare import normalise
from ftft.errors import ChecksumError, DataError

pytestmark = pytest.mark.integration  # real training runs / subprocesses / servers: the integration tier

FIX = Path(__file__).parent / "fixtures"
DYNAHATE_CSV = "Dynamically Generated Hate Dataset v0.2.3.csv"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """Serves ``files`` (url path -> bytes) on 127.0.0.1.

    ``truncate``: paths that lie about Content-Length; ``fail``: path -> how many errors to send
    first (``status`` gives their HTTP code, default 503; ``retry_after`` a Retry-After header);
    ``stall``: path -> bytes to send before hanging until ``close()``. ``hits`` counts GETs.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.fail: dict[str, int] = {}
        self.status: dict[str, int] = {}
        self.retry_after: dict[str, str] = {}
        self.stall: dict[str, int] = {}
        self.hits: dict[str, int] = {}
        self.released = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                outer.hits[path] = outer.hits.get(path, 0) + 1
                if outer.fail.get(path, 0) > 0:
                    outer.fail[path] -= 1
                    self.send_response(outer.status.get(path, 503))
                    if path in outer.retry_after:
                        self.send_header("Retry-After", outer.retry_after[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path not in outer.files:
                    self.send_error(404)
                    return
                data = outer.files[path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data) + (1000 if path in outer.truncate else 0)))
                self.end_headers()
                if path in outer.stall:
                    self.wfile.write(data[: outer.stall[path]])
                    self.wfile.flush()
                    outer.released.wait(60)
                    self.close_connection = True
                    return
                self.wfile.write(data)
                if path in outer.truncate:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def dynahate_bytes() -> bytes:
    return (FIX / "dynahate" / DYNAHATE_CSV).read_bytes()


def dyn_url(server) -> str:
    return server.url + "/bvidgen/main/Dynamically%20Generated%20Hate%20Dataset%20v0.2.3.csv"


def serve_dynahate(server) -> bytes:
    data = dynahate_bytes()
    server.files["/bvidgen/main/Dynamically%20Generated%20Hate%20Dataset%20v0.2.3.csv"] = data
    return data


def make_zip(path: Path, root: Path, prefix: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, f"{prefix}/{f.relative_to(root).as_posix()}")
        zf.writestr("__MACOSX/._junk", b"junk")
    return path


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*") if p.name.endswith((".part", ".tmp")) or p.name.startswith(".extract-")]


# --------------------------------------------------------------------------- plain downloads


def test_download_records_hash_and_verifies_on_rerun(server, tmp_path):
    data = serve_dynahate(server)
    out = tmp_path / "dynahate"
    done = download_source("dynahate", dyn_url(server), out, retries=0)
    target = out / DYNAHATE_CSV
    assert target.read_bytes() == data
    assert (out / (DYNAHATE_CSV + ".sha256")).read_text().split()[0] == sha(data)
    assert done["files"] == {DYNAHATE_CSV: sha(data)}
    assert json.loads((out / "DONE.json").read_text())["files"] == {DYNAHATE_CSV: sha(data)}
    # second run: verified locally, not downloaded again
    hits = dict(server.hits)
    download_source("dynahate", dyn_url(server), out, retries=0)
    assert server.hits == hits
    # prepare reads the download
    df, summary = normalise("dynahate", out)
    assert summary["rows_out"] == len(df) > 200
    assert leftovers(out) == []


def test_corrupted_local_file_is_a_checksum_error(server, tmp_path):
    data = serve_dynahate(server)
    out = tmp_path / "dynahate"
    download_source("dynahate", dyn_url(server), out, retries=0)
    (out / DYNAHATE_CSV).write_bytes(data[:-10] + b"corrupted!")
    with pytest.raises(ChecksumError) as err:
        download_source("dynahate", dyn_url(server), out, retries=0)
    msg = str(err.value)
    assert DYNAHATE_CSV in msg and sha(data) in msg and sha(data[:-10] + b"corrupted!") in msg
    assert not (out / "DONE.json").exists()


def test_changed_source_is_a_checksum_error_against_the_record(server, tmp_path):
    data = serve_dynahate(server)
    out = tmp_path / "dynahate"
    download_source("dynahate", dyn_url(server), out, retries=0)
    (out / DYNAHATE_CSV).unlink()  # the recorded .sha256 stays
    changed = data + b'"x","acl0",0,"new","hate","none","none","original","test",2,"x","2a",NA\n'
    serve_dynahate(server)
    server.files[next(iter(server.files))] = changed
    with pytest.raises(ChecksumError) as err:
        download_source("dynahate", dyn_url(server), out, retries=0)
    assert sha(data) in str(err.value) and sha(changed) in str(err.value) and DYNAHATE_CSV in str(err.value)
    assert not (out / DYNAHATE_CSV).exists() and leftovers(out) == []


def test_configured_hash_mismatch_and_match(server, tmp_path):
    data = serve_dynahate(server)
    with pytest.raises(ChecksumError, match="0" * 64):
        download_source("dynahate", dyn_url(server), tmp_path / "a", sha256="0" * 64, retries=0)
    assert not (tmp_path / "a" / DYNAHATE_CSV).exists() and leftovers(tmp_path / "a") == []
    done = download_source("dynahate", dyn_url(server), tmp_path / "b", sha256=json.dumps({DYNAHATE_CSV: sha(data)}))
    assert done["files"][DYNAHATE_CSV] == sha(data)
    with pytest.raises(DataError, match="datasets.dynahate.sha256"):
        download_source("dynahate", dyn_url(server), tmp_path / "c", sha256="not-a-hash")


def test_truncated_download_is_an_error(server, tmp_path):
    serve_dynahate(server)
    server.truncate.add(next(iter(server.files)))
    out = tmp_path / "dynahate"
    with pytest.raises(DataError, match="truncated") as err:
        download_source("dynahate", dyn_url(server), out, retries=1, backoff=0)
    assert DYNAHATE_CSV in str(err.value)
    assert server.hits[next(iter(server.files))] == 2  # retried once
    assert not (out / DYNAHATE_CSV).exists() and not (out / "DONE.json").exists() and leftovers(out) == []


def test_transient_errors_are_retried(server, tmp_path):
    data = serve_dynahate(server)
    server.fail[next(iter(server.files))] = 2
    done = download_source("dynahate", dyn_url(server), tmp_path / "d", retries=2, backoff=0)
    assert done["files"][DYNAHATE_CSV] == sha(data)
    with pytest.raises(DataError, match="HTTP 404"):
        download_source("dynahate", server.url + "/missing.csv", tmp_path / "e", retries=3, backoff=0)
    assert server.hits["/missing.csv"] == 1  # a 404 is not retried


def test_bad_zip_is_an_error(server, tmp_path):
    server.files["/glue/MNLI.zip"] = b"PK\x03\x04 this is not really a zip" * 10
    with pytest.raises(DataError, match="not a valid zip"):
        download_source("mnli", server.url + "/glue/MNLI.zip", tmp_path / "mnli", retries=1, backoff=0)
    assert not (tmp_path / "mnli" / "MNLI.zip").exists()


def test_offline_without_mirror_names_the_config_key(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/glue/data/MNLI.zip"
    with pytest.raises(DataError) as err:
        download_source("mnli", url, tmp_path / "mnli", retries=1, backoff=0, timeout=5)
    assert "datasets.mnli.mirror" in str(err.value) and url in str(err.value)
    rc = main(["download", "--source", "mnli", "--url", url, "--out", str(tmp_path / "m"), "--retries", "0"])
    assert rc == 1


def test_multi_file_source_wanli(server, tmp_path):
    for name in ("train.jsonl", "test.jsonl"):
        server.files[f"/datasets/alisawuffles/WANLI/resolve/main/{name}"] = (FIX / "wanli" / name).read_bytes()
    out = tmp_path / "wanli"
    done = download_source("wanli", server.url + "/datasets/alisawuffles/WANLI/resolve/main", out, retries=0)
    assert sorted(done["files"]) == ["test.jsonl", "train.jsonl"]
    assert (out / "train.jsonl.sha256").is_file() and (out / "test.jsonl.sha256").is_file()
    df, _ = normalise("wanli", out)
    ref, _ = normalise("wanli", FIX / "wanli")
    pd.testing.assert_frame_equal(df, ref)


# --------------------------------------------------------------------------- zips (file:// URLs) -> prepare


@pytest.mark.parametrize(
    ("source", "fixture", "zip_name", "prefix"),
    [
        ("mnli", "mnli", "MNLI.zip", "MNLI"),
        ("anli", "anli", "anli_v1.0.zip", "anli_v1.0"),
        ("cad", "cad", "data.zip", "data"),
    ],
)
def test_zip_release_downloads_extracts_and_prepares(tmp_path, source, fixture, zip_name, prefix):
    z = make_zip(tmp_path / "host" / zip_name, FIX / fixture, prefix)
    url = z.as_uri()
    out = tmp_path / "resources" / source
    rc = main(["download", "--source", source, "--url", url, "--out", str(out), "--retries", "0"])
    assert rc == 0
    done = json.loads((out / "DONE.json").read_text())
    assert done["files"] == {zip_name: sha(z.read_bytes())}
    assert (out / prefix).is_dir() and not (out / "__MACOSX").exists()
    assert len(done["extracted"][zip_name]) == sum(1 for f in (FIX / fixture).rglob("*") if f.is_file())
    df, summary = normalise(source, out)
    ref, ref_summary = normalise(source, FIX / fixture)
    pd.testing.assert_frame_equal(df, ref)
    assert summary["splits"] == ref_summary["splits"]
    # re-run: verified against the record, extracted again, still fine
    rc = main(["download", "--source", source, "--url", url, "--out", str(out), "--sha256", sha(z.read_bytes())])
    assert rc == 0 and leftovers(out) == []


# --------------------------------------------------------------------------- mirrors


def test_mirror_file_and_folders(tmp_path):
    # a single downloaded archive
    z = make_zip(tmp_path / "elsewhere" / "mnli-copy.zip", FIX / "mnli", "MNLI")
    out = tmp_path / "res" / "mnli"
    done = download_source("mnli", "https://unreachable.invalid/MNLI.zip", out, mirror=z, sha256=sha(z.read_bytes()))
    assert done["files"] == {"MNLI.zip": sha(z.read_bytes())} and done["mirror"] == str(z)
    assert normalise("mnli", out)[1]["rows_out"] > 0
    # a mirror whose content does not match the configured hash
    with pytest.raises(ChecksumError, match="MNLI.zip"):
        download_source("mnli", "https://h/MNLI.zip", tmp_path / "res2" / "mnli", mirror=z, sha256="1" * 64)
    assert not (tmp_path / "res2" / "mnli" / "MNLI.zip").exists()
    # a folder holding the expected files (multi-file source)
    out = tmp_path / "res" / "wanli"
    done = download_source("wanli", None, out, mirror=FIX / "wanli")
    assert sorted(done["files"]) == ["test.jsonl", "train.jsonl"]
    assert normalise("wanli", out)[1]["splits"] == {"test": 40, "train": 60}
    with pytest.raises(DataError, match="datasets.wanli.mirror"):
        download_source("wanli", None, tmp_path / "res" / "w2", mirror=FIX / "wanli" / "train.jsonl")
    # an already-extracted release folder: every file is copied and checksummed
    out = tmp_path / "res" / "anli"
    done = download_source(
        "anli", "https://unreachable.invalid/anli_v1.0.zip", out, mirror=FIX / "anli", sha256="2" * 64
    )
    assert "R1/dev.jsonl" in done["files"] and done["unverified"] == ["anli_v1.0.zip"]
    assert done["files"]["R1/dev.jsonl"] == sha((FIX / "anli" / "R1" / "dev.jsonl").read_bytes())
    assert normalise("anli", out)[1]["rows_out"] == normalise("anli", FIX / "anli")[1]["rows_out"]
    # a missing mirror path names the config key
    with pytest.raises(DataError, match="datasets.cad.mirror"):
        download_source("cad", None, tmp_path / "res" / "cad", mirror=tmp_path / "nope.zip")


def test_mirror_via_cli(tmp_path):
    src = tmp_path / "copy.csv"
    shutil.copyfile(FIX / "dynahate" / DYNAHATE_CSV, src)
    out = tmp_path / "dynahate"
    url = "https://raw.githubusercontent.com/x/y/main/Dynamically%20Generated%20Hate%20Dataset%20v0.2.3.csv"
    rc = main(["download", "--source", "dynahate", "--url", url, "--out", str(out), "--mirror", str(src)])
    assert rc == 0 and (out / DYNAHATE_CSV).is_file() and (out / "DONE.json").is_file()


def test_source_file_names():
    assert download.source_files("cad", "https://zenodo.org/record/4881008/files/data.zip?download=1") == [
        ("data.zip", "https://zenodo.org/record/4881008/files/data.zip?download=1")
    ]
    assert (
        download.source_files("dynahate", "https://h/x/Dynamically%20Generated%20Hate%20Dataset%20v0.2.3.csv")[0][0]
        == DYNAHATE_CSV
    )
    assert [n for n, _ in download.source_files("wanli", "https://h/resolve/main/")] == ["train.jsonl", "test.jsonl"]
    assert download.source_files("wanli", "https://h/resolve/main")[0][1] == "https://h/resolve/main/train.jsonl"


# =========================================================================== hardening
# helpers


def fixture_rows(source: str, raw: Path) -> pd.DataFrame:
    """normalise() rows, without the placeholder ANLI train rows of the rehearsal archive."""
    df, _ = normalise(source, raw)
    if source == "anli":
        df = df[~df["split"].str.startswith("train_")].reset_index(drop=True)
    return df


def advises_dropping_the_pin(msg: str) -> bool:
    return bool(
        re.search(
            r"(delete|remove|drop|unset|update|change|edit|clear)\b[^.]{0,80}(\.sha256\b|sha256 record|pin)", msg, re.I
        )
    )


def good_and_truncated_zip(tmp_path: Path) -> tuple[bytes, bytes]:
    z = make_zip(tmp_path / "build" / "MNLI.zip", FIX / "mnli", "MNLI")
    data = z.read_bytes()
    return data, data[: len(data) // 2]


def crc_corrupt(data: bytes) -> bytes:
    """Same size, one byte of the first member's compressed data flipped: only a CRC check finds it."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    pos = start + info.compress_size // 2
    return data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :]


def nothing_kept(out: Path, name: str) -> bool:
    return not (out / name).exists() and not (out / f"{name}.sha256").exists() and not (out / "DONE.json").exists()


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, Path]:
    """The real-layout archives of tests/rehearsal: {url path: file}."""
    root = tmp_path_factory.mktemp("releases")
    return {k: Path(v) for k, v in build_archives(FIX, root).items()}


def release(releases, name: str) -> Path:
    return next(p for k, p in releases.items() if k.endswith("/" + name))


# --------------------------------------------------------------------------- 1. a bad mirror does not poison resources/


def unsafe_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("MNLI/train.tsv", "x")
        zf.writestr("../outside.txt", "x")
    return buf.getvalue()


def symlink_zip(extra: str | None = None) -> bytes:
    """A zip with a symbolic-link member (and, with ``extra``, a member below it: a file then)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        link = zipfile.ZipInfo("MNLI/dev")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc")
        if extra:
            zf.writestr(extra, "x")
    return buf.getvalue()


@pytest.mark.parametrize("damage", ["truncated", "crc", "empty", "unsafe-member", "symlink-member"])
def test_bad_mirror_zip_is_not_kept_and_a_fixed_mirror_then_works(tmp_path, damage):
    good, truncated = good_and_truncated_zip(tmp_path)
    bad = {"truncated": truncated, "crc": crc_corrupt(good), "empty": b"", "unsafe-member": unsafe_zip(),
           "symlink-member": symlink_zip()}[damage]  # fmt: skip
    mirror = tmp_path / "mirror" / "MNLI.zip"
    mirror.parent.mkdir()
    mirror.write_bytes(bad)
    out = tmp_path / "resources" / "mnli"
    with pytest.raises(DataError) as err:
        download_source("mnli", None, out, mirror=mirror)
    msg = str(err.value)
    assert ("not a valid zip" in msg or "outside the folder" in msg) and "datasets.mnli.mirror" in msg
    assert f"replace {mirror} with a good copy" in msg
    assert (
        nothing_kept(out, "MNLI.zip") and leftovers(out) == [] and not (tmp_path / "resources" / "outside.txt").exists()
    )
    assert mirror.read_bytes() == bad  # the user's file is untouched
    # the user fixes the mirror: the next run just works (no stale copy, no stale record)
    mirror.write_bytes(good)
    done = download_source("mnli", None, out, mirror=mirror)
    assert done["files"] == {"MNLI.zip": sha(good)}
    assert (out / "MNLI.zip.sha256").read_text().split()[0] == sha(good)
    assert normalise("mnli", out)[1]["rows_out"] == normalise("mnli", FIX / "mnli")[1]["rows_out"]


def test_bad_zip_from_the_host_is_not_kept_and_a_fixed_host_then_works(server, tmp_path):
    good, truncated = good_and_truncated_zip(tmp_path)
    server.files["/glue/data/MNLI.zip"] = truncated  # a correct Content-Length for a bad file
    out = tmp_path / "mnli"
    url = server.url + "/glue/data/MNLI.zip"
    with pytest.raises(DataError, match="not a valid zip.*not retried") as err:
        download_source("mnli", url, out, retries=1, backoff=0)
    assert server.hits["/glue/data/MNLI.zip"] == 1 and url in str(err.value)  # the same bytes would come again
    assert nothing_kept(out, "MNLI.zip") and leftovers(out) == []
    server.files["/glue/data/MNLI.zip"] = good
    assert download_source("mnli", url, out, retries=0)["files"] == {"MNLI.zip": sha(good)}


def test_zip_that_fails_extraction_is_removed_with_its_record_and_a_fixed_source_then_works(tmp_path):
    """Sound by its CRC and member names, yet not extractable (a file where a folder must go): the archive and its
    recorded hash are removed and the error says so; the fixed mirror is then fetched again, not the stale copy."""
    good, _ = good_and_truncated_zip(tmp_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("MNLI", "a file")
        zf.writestr("MNLI/train.tsv", "x")
    mirror, out = tmp_path / "MNLI.zip", tmp_path / "resources" / "mnli"
    mirror.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match=f"{out / 'MNLI.zip'}: cannot be extracted .*removed it and its sha256 record"):
        download_source("mnli", None, out, mirror=mirror)
    assert nothing_kept(out, "MNLI.zip")
    mirror.write_bytes(good)
    assert download_source("mnli", None, out, mirror=mirror)["files"] == {"MNLI.zip": sha(good)}


def test_mirror_files_are_copied_not_hard_linked(tmp_path, releases):
    src = release(releases, "MNLI.zip")
    mirror = tmp_path / "mirror.zip"
    shutil.copyfile(src, mirror)
    out = tmp_path / "mnli"
    download_source("mnli", None, out, mirror=mirror)
    dest = out / "MNLI.zip"
    assert os.stat(dest).st_ino != os.stat(mirror).st_ino and os.stat(mirror).st_nlink == 1
    with open(dest, "r+b") as fh:  # editing resources/ must not edit the user's file
        fh.write(b"XX")
    assert mirror.read_bytes() == src.read_bytes()
    # extracted-folder mirror: every file is a copy too
    folder = tmp_path / "extracted"
    zipfile.ZipFile(src).extractall(folder)
    out2 = tmp_path / "mnli2"
    download_source("mnli", None, out2, mirror=folder)
    a, b = folder / "MNLI" / "train.tsv", out2 / "MNLI" / "train.tsv"
    assert os.stat(a).st_ino != os.stat(b).st_ino and os.stat(a).st_nlink == 1 and a.read_bytes() == b.read_bytes()
    # the copy primitive itself
    target = tmp_path / "copy.bin"
    assert download.copy_file(mirror, target) in ("reflink", "copy_file_range", "copy")
    assert target.read_bytes() == mirror.read_bytes()


# --------------------------------------------------------------------------- 2. error messages say what to do


def test_pinned_mismatch_on_download_says_redownload_never_drop_the_pin(server, tmp_path):
    data = serve_dynahate(server)
    out = tmp_path / "dynahate"
    pin = "0" * 64
    with pytest.raises(ChecksumError) as err:
        download_source("dynahate", dyn_url(server), out, sha256=pin, retries=3, backoff=0)
    msg = str(err.value)
    for part in (
        pin,
        sha(data),
        dyn_url(server),
        "datasets.dynahate.sha256",
        "pinned",
        "re-download",
        "pin itself may be wrong",
        str(out / DYNAHATE_CSV),
    ):
        assert part in msg, part
    assert not advises_dropping_the_pin(msg), msg
    assert nothing_kept(out, DYNAHATE_CSV) and leftovers(out) == []


def test_pinned_mismatch_on_mirror_says_fix_the_mirror(tmp_path):
    mirror = tmp_path / "copy.csv"
    mirror.write_bytes(dynahate_bytes()[:-5])
    out = tmp_path / "dynahate"
    pin = sha(dynahate_bytes())
    with pytest.raises(ChecksumError) as err:
        download_source("dynahate", None, out, sha256=pin, mirror=mirror)
    msg = str(err.value)
    for part in (pin, sha(mirror.read_bytes()), str(mirror), "datasets.dynahate.mirror", "Fix the mirror"):
        assert part in msg, part
    assert not advises_dropping_the_pin(msg), msg
    assert nothing_kept(out, DYNAHATE_CSV)
    mirror.write_bytes(dynahate_bytes())  # fixed as told
    assert download_source("dynahate", None, out, sha256=pin, mirror=mirror)["files"] == {DYNAHATE_CSV: pin}


def test_recorded_mismatch_names_the_record_that_accepts_new_content(server, tmp_path):
    data = serve_dynahate(server)
    out = tmp_path / "dynahate"
    download_source("dynahate", dyn_url(server), out, retries=0)
    (out / DYNAHATE_CSV).unlink()
    server.files[next(iter(server.files))] = data + b"\n"
    with pytest.raises(ChecksumError) as err:
        download_source("dynahate", dyn_url(server), out, retries=2, backoff=0)
    msg = str(err.value)
    rec = out / f"{DYNAHATE_CSV}.sha256"
    assert f"delete {rec} to accept the new content" in msg and sha(data) in msg and sha(data + b"\n") in msg
    assert server.hits[next(iter(server.files))] == 2  # 1 first run + 1: a mismatch is not retried
    rec.unlink()  # do as told
    assert download_source("dynahate", dyn_url(server), out, retries=0)["files"] == {DYNAHATE_CSV: sha(data + b"\n")}


def test_changed_local_file_names_the_exact_file_to_delete(server, tmp_path):
    data = serve_dynahate(server)
    out = tmp_path / "dynahate"
    download_source("dynahate", dyn_url(server), out, sha256=sha(data), retries=0)
    (out / DYNAHATE_CSV).write_bytes(b"edited")
    with pytest.raises(ChecksumError) as err:
        download_source("dynahate", dyn_url(server), out, sha256=sha(data), retries=0)
    msg = str(err.value)
    assert f"Delete {out / DYNAHATE_CSV} and run again" in msg and not advises_dropping_the_pin(msg)
    (out / DYNAHATE_CSV).unlink()
    assert download_source("dynahate", dyn_url(server), out, sha256=sha(data), retries=0)["files"][DYNAHATE_CSV]


def test_resources_poisoned_by_an_older_version_name_both_files_to_delete(tmp_path):
    good, truncated = good_and_truncated_zip(tmp_path)
    out = tmp_path / "resources" / "mnli"
    out.mkdir(parents=True)
    (out / "MNLI.zip").write_bytes(truncated)  # what the old downloader left: a bad copy + its recorded hash
    (out / "MNLI.zip.sha256").write_text(f"{sha(truncated)}  MNLI.zip\n")
    mirror = tmp_path / "MNLI.zip"
    mirror.write_bytes(good)
    with pytest.raises(DataError) as err:
        download_source("mnli", None, out, mirror=mirror)
    msg = str(err.value)
    assert f"Delete {out / 'MNLI.zip'} and its record {out / 'MNLI.zip.sha256'} and run again" in msg
    (out / "MNLI.zip").unlink()
    (out / "MNLI.zip.sha256").unlink()
    assert download_source("mnli", None, out, mirror=mirror)["files"] == {"MNLI.zip": sha(good)}


def test_no_url_and_no_mirror_names_both_keys(tmp_path):
    with pytest.raises(DataError) as err:
        download_source("mnli", None, tmp_path / "mnli")
    assert "datasets.mnli.url is null" in str(err.value) and "datasets.mnli.mirror" in str(err.value)
    assert main(["download", "--source", "wanli", "--out", str(tmp_path / "w")]) == 1


def test_cli_turns_os_errors_into_a_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("x")
    rc = main(["download", "--source", "dynahate", "--out", str(tmp_path / "a-file" / "sub"), "--mirror", str(FIX)])
    assert rc == 1


# --------------------------------------------------------------------------- 3. the user's umask


@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_outputs_get_the_users_umask(server, tmp_path, releases, umask):
    serve_dynahate(server)
    old = os.umask(umask)
    try:
        download_source("dynahate", dyn_url(server), tmp_path / "dynahate", retries=0)
        download_source("mnli", None, tmp_path / "mnli", mirror=release(releases, "MNLI.zip"))
        folder = tmp_path / "anli-extracted"
        zipfile.ZipFile(release(releases, "anli_v1.0.zip")).extractall(folder)
        download_source("anli", None, tmp_path / "anli", mirror=folder)
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    paths = [
        tmp_path / "dynahate" / DYNAHATE_CSV,
        tmp_path / "dynahate" / f"{DYNAHATE_CSV}.sha256",
        tmp_path / "dynahate" / "DONE.json",
        tmp_path / "mnli" / "MNLI.zip",
        tmp_path / "mnli" / "MNLI.zip.sha256",
        tmp_path / "mnli" / "MNLI" / "train.tsv",
        tmp_path / "anli" / "anli_v1.0" / "R1" / "test.jsonl",
        tmp_path / "anli" / "anli_v1.0" / "R1" / "test.jsonl.sha256",
    ]
    assert {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths} == {str(p): oct(want) for p in paths}
    assert stat.S_IMODE((tmp_path / "mnli" / "MNLI").stat().st_mode) == 0o777 & ~umask


# --------------------------------------------------------------------------- 4. air-gapped: url null + mirror


AIRGAP = [
    ("mnli", "file"),
    ("mnli", "folder-with-file"),
    ("mnli", "extracted"),
    ("anli", "file"),
    ("anli", "extracted"),
    ("cad", "file"),
    ("cad", "extracted"),
    ("wanli", "folder-with-file"),
    ("dynahate", "file"),
    ("dynahate", "folder-with-file"),
]
RELEASE_FILE = {"mnli": "MNLI.zip", "anli": "anli_v1.0.zip", "cad": "data.zip", "dynahate": DYNAHATE_CSV}


def make_mirror(releases, tmp_path: Path, source: str, kind: str) -> Path:
    if source == "wanli":
        folder = tmp_path / "hf-snapshot"
        folder.mkdir()
        for name in ("train.jsonl", "test.jsonl"):
            shutil.copyfile(release(releases, name), folder / name)
        return folder
    src = release(releases, RELEASE_FILE[source])
    if kind == "file":  # a differently named copy: it still lands under the canonical name
        path = tmp_path / "elsewhere" / f"copy-of-{source}{src.suffix}"
        path.parent.mkdir()
        shutil.copyfile(src, path)
        return path
    if kind == "folder-with-file":
        folder = tmp_path / "downloads"
        folder.mkdir()
        shutil.copyfile(src, folder / src.name)
        return folder
    folder = tmp_path / "extracted"
    zipfile.ZipFile(src).extractall(folder)
    return folder


@pytest.mark.parametrize("url_arg", [[], ["--url", ""], ["--url"]], ids=["no-url", "empty-url", "bare-url"])
@pytest.mark.parametrize(("source", "kind"), AIRGAP, ids=[f"{s}-{k}" for s, k in AIRGAP])
def test_air_gapped_mirror_only_end_to_end(releases, tmp_path, source, kind, url_arg):
    mirror = make_mirror(releases, tmp_path, source, kind)
    out = tmp_path / "resources" / source
    argv = ["download", "--source", source, *url_arg, "--out", str(out), "--mirror", str(mirror)]
    assert main(argv) == 0
    done = json.loads((out / "DONE.json").read_text())
    assert done["url"] is None and done["mirror"] == str(mirror)
    if kind == "extracted":
        assert all((out / f"{name}.sha256").is_file() for name in done["files"])
        assert len(done["files"]) == sum(1 for p in mirror.rglob("*") if p.is_file())
    else:
        names = ["train.jsonl", "test.jsonl"] if source == "wanli" else [RELEASE_FILE[source]]
        assert sorted(done["files"]) == sorted(names)
        assert all((out / f"{n}.sha256").read_text().split()[0] == done["files"][n] for n in names)
    pd.testing.assert_frame_equal(fixture_rows(source, out), fixture_rows(source, FIX / source))
    assert main(argv) == 0 and leftovers(out) == []  # a re-run verifies and re-uses


# --------------------------------------------------------------------------- 5. one retry layer


def test_retry_policy(server, tmp_path):
    assert "only retry loop" in download.__doc__ and "4xx" in download.__doc__
    data = serve_dynahate(server)
    path = next(iter(server.files))
    # a checksum mismatch is never retried
    with pytest.raises(ChecksumError):
        download_source("dynahate", dyn_url(server), tmp_path / "a", sha256="1" * 64, retries=3, backoff=0)
    assert server.hits[path] == 1
    # 4xx (403, 410) fails at once, naming the key
    for code in (403, 410):
        server.hits.clear()
        server.fail[path], server.status[path] = 1, code
        with pytest.raises(DataError, match=f"HTTP {code}") as err:
            download_source("dynahate", dyn_url(server), tmp_path / f"b{code}", retries=3, backoff=0)
        assert server.hits[path] == 1 and "datasets.dynahate.url" in str(err.value) and "not retried" in str(err.value)
    # 429 and 5xx are retried (Retry-After honoured)
    for code in (429, 500, 503):
        server.hits.clear()
        server.fail[path], server.status[path], server.retry_after[path] = 2, code, "0"
        done = download_source("dynahate", dyn_url(server), tmp_path / f"c{code}", retries=2, backoff=0)
        assert server.hits[path] == 3 and done["files"][DYNAHATE_CSV] == sha(data)
    # retries are bounded: --retries N means N + 1 attempts, then a clear error
    server.hits.clear()
    server.fail[path], server.status[path] = 10, 503
    with pytest.raises(DataError, match="after 3 attempt"):
        download_source("dynahate", dyn_url(server), tmp_path / "d", retries=2, backoff=0)
    assert server.hits[path] == 3


# --------------------------------------------------------------------------- kill -9 mid-download


def test_killed_download_leaves_nothing_under_final_names_and_the_next_run_cleans_up(server, tmp_path):
    data = serve_dynahate(server)
    path = next(iter(server.files))
    server.stall[path] = len(data) // 2
    out = tmp_path / "dynahate"
    argv = [sys.executable, "-m", "ftft.cli", "download", "--source", "dynahate"]
    argv += ["--url", dyn_url(server), "--out", str(out), "--retries", "0"]
    env = {k: v for k, v in os.environ.items() if k != "FTFT_WORKER"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = [p for p in out.glob(".*.tmp")] if out.is_dir() else []
            if parts and parts[0].stat().st_size >= len(data) // 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the download never got half way")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert nothing_kept(out, DYNAHATE_CSV) and len(leftovers(out)) == 1
    # an extraction killed half way leaves its temporary folder too
    (out / ".extract-abcd1234" / "MNLI").mkdir(parents=True)
    del server.stall[path]
    done = download_source("dynahate", dyn_url(server), out, retries=0)
    assert done["files"] == {DYNAHATE_CSV: sha(data)} and leftovers(out) == []
    assert not (out / ".extract-abcd1234").exists()
