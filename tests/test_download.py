"""Download step: a local HTTP server / file:// URLs stand in for the dataset hosts (no network)."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import socket
import threading
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from ftft.cli import main
from ftft.data import download
from ftft.data.download import download_source
from ftft.data.prepare import normalise
from ftft.errors import ChecksumError, DataError

FIX = Path(__file__).parent / "fixtures"
DYNAHATE_CSV = "Dynamically Generated Hate Dataset v0.2.3.csv"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """Serves ``files`` (url path -> bytes); ``truncate`` paths lie about Content-Length;
    ``fail`` maps a path to how many 503s to send first. ``hits`` counts GETs per path."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.fail: dict[str, int] = {}
        self.hits: dict[str, int] = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                outer.hits[path] = outer.hits.get(path, 0) + 1
                if outer.fail.get(path, 0) > 0:
                    outer.fail[path] -= 1
                    self.send_error(503, "try later")
                    return
                if path not in outer.files:
                    self.send_error(404)
                    return
                data = outer.files[path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data) + (1000 if path in outer.truncate else 0)))
                self.end_headers()
                self.wfile.write(data)
                if path in outer.truncate:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
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
