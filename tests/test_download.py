"""Download step: a local HTTP server, file:// URLs and mirrors stand in for the dataset hosts (no network)."""

import contextlib
import hashlib
import http.server
import io
import json
import os
import re
import shutil
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
from ftft.data.download import download_source
from ftft.data.prepare import normalise
from ftft.errors import ChecksumError, DataError

pytestmark = pytest.mark.integration  # real servers and subprocesses: the integration tier

FIX = Path(__file__).parent / "fixtures"
DYN = "Dynamically Generated Hate Dataset v0.2.3.csv"
DYN_PATH = "/bvidgen/main/Dynamically%20Generated%20Hate%20Dataset%20v0.2.3.csv"
DYN_BYTES = (FIX / "dynahate" / DYN).read_bytes()
DROPS_PIN = re.compile(r"(delete|remove|drop|unset|update|change|edit|clear)\b[^.]{0,80}(\.sha256\b|pin)", re.I)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``files``; ``fail``: errors (``status``) to send first; ``truncate``: a Content-Length 1000 too high;
    ``stall``: bytes sent before hanging (all keyed by path)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        s, path = self.server, self.path.split("?")[0]
        s.hits[path] = s.hits.get(path, 0) + 1
        if failing := s.fail.get(path, 0) > 0:
            s.fail[path] -= 1
        if failing or path not in s.files:
            self.send_response(s.status.get(path, 503) if failing else 404)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        self.send_response(200)
        self.send_header("Content-Length", str(len(s.files[path]) + (1000 if path in s.truncate else 0)))
        self.end_headers()
        self.wfile.write(s.files[path][: s.stall.get(path)])
        self.wfile.flush()
        if path in s.stall:
            s.released.wait(60)
        self.close_connection = path in s.stall or path in s.truncate


@pytest.fixture
def server():
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    s.files, s.hits, s.fail, s.status, s.stall, s.truncate = {DYN_PATH: DYN_BYTES}, {}, {}, {}, {}, set()
    s.released, s.url = threading.Event(), f"http://127.0.0.1:{s.server_address[1]}"
    s.dyn = s.url + DYN_PATH
    threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield s
    s.released.set()
    s.shutdown()
    s.server_close()


def zip_of(*members: tuple[str | zipfile.ZipInfo, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*") if p.name.endswith(".tmp") or p.name.startswith(".extract-")]


def nothing_kept(out: Path, name: str) -> bool:
    return not any((out / n).exists() for n in (name, f"{name}.sha256", "DONE.json")) and leftovers(out) == []


def rows(source: str, raw: Path) -> pd.DataFrame:
    """normalise() rows, without the placeholder ANLI train rows of the rehearsal archive."""
    df, _ = normalise(source, raw)
    return df[~df["split"].str.startswith("train_")].reset_index(drop=True) if source == "anli" else df


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, Path]:
    """The real-layout archives of tests/rehearsal, by file name."""
    built = build_archives(FIX, tmp_path_factory.mktemp("releases")).values()
    return {Path(p).name: Path(p) for p in built}


@pytest.fixture
def good_zip(releases) -> bytes:
    return releases["MNLI.zip"].read_bytes()


@pytest.mark.parametrize(
    ("status", "fails", "hits", "error"),
    [(429, 2, 3, None), (500, 2, 3, None), (503, 9, 3, "after 3 attempt"), ("truncated", 0, 3, "error: truncated")]
    + [(code, 1, 1, f"HTTP {code}.*not retried.*datasets.dynahate.url") for code in (403, 404, 410)],
)
def test_retry_policy(server, tmp_path, status, fails, hits, error):
    """--retries 2: HTTP 5xx and 429 (Retry-After) and truncation are retried, at most twice; HTTP 4xx is not."""
    server.fail[DYN_PATH], server.status[DYN_PATH] = fails, status
    server.truncate = {DYN_PATH} if status == "truncated" else set()
    with pytest.raises(DataError, match=error) if error else contextlib.nullcontext():
        assert download_source("dynahate", server.dyn, tmp_path, retries=2, backoff=0)["files"] == {DYN: sha(DYN_BYTES)}
    assert server.hits[DYN_PATH] == hits and (not error or nothing_kept(tmp_path, DYN))


@pytest.mark.parametrize("origin", ["download", "mirror"])
def test_pinned_mismatch_is_not_kept_nor_retried_and_never_advises_dropping_the_pin(server, tmp_path, origin):
    mirror, out, pin, bad = tmp_path / "copy.csv", tmp_path / "dynahate", sha(DYN_BYTES), DYN_BYTES[:-5]
    mirror.write_bytes(bad)
    server.files[DYN_PATH] = bad
    kw = {"mirror": mirror} if origin == "mirror" else {"retries": 3, "backoff": 0}  # a mirror replaces the URL
    with pytest.raises(ChecksumError) as err:
        download_source("dynahate", server.dyn, out, sha256=pin, **kw)
    msg = str(err.value)
    by_mirror = [str(mirror), "datasets.dynahate.mirror", "Fix the mirror"]
    where = by_mirror if "mirror" in kw else [server.dyn, "re-download"]
    for part in [pin, sha(bad), str(out / DYN), "datasets.dynahate.sha256", "pin itself may be wrong", *where]:
        assert part in msg, part
    assert not DROPS_PIN.search(msg) and nothing_kept(out, DYN) and server.hits.get(DYN_PATH, 1) == 1
    mirror.write_bytes(DYN_BYTES)  # fixed as told
    server.files[DYN_PATH] = DYN_BYTES
    assert download_source("dynahate", server.dyn, out, sha256=pin, **kw)["files"] == {DYN: pin}
    with pytest.raises(DataError, match="datasets.dynahate.sha256"):
        download_source("dynahate", server.dyn, out, sha256="not-a-hash")


def test_changed_source_names_the_record_that_accepts_it(server, tmp_path):
    out, rec = tmp_path / "dynahate", tmp_path / "dynahate" / f"{DYN}.sha256"
    download_source("dynahate", server.dyn, out, retries=0)
    (out / DYN).unlink()  # the record stays
    server.files[DYN_PATH] = DYN_BYTES + b"\n"
    with pytest.raises(ChecksumError) as err:
        download_source("dynahate", server.dyn, out, retries=2, backoff=0)
    msg = str(err.value)
    assert f"delete {rec} to accept the new content" in msg and sha(DYN_BYTES) in msg and sha(DYN_BYTES + b"\n") in msg
    assert server.hits[DYN_PATH] == 2 and not (out / DYN).exists() and leftovers(out) == []  # not retried
    rec.unlink()  # do as told
    assert download_source("dynahate", server.dyn, out, retries=0)["files"] == {DYN: sha(DYN_BYTES + b"\n")}


@pytest.mark.parametrize("kind", ["recorded", "pinned"])
def test_changed_local_file_is_kept_and_the_error_names_it(server, tmp_path, kind):
    out, pin = tmp_path / "dynahate", sha(DYN_BYTES) if kind == "pinned" else None
    download_source("dynahate", server.dyn, out, sha256=pin, retries=0)
    (out / DYN).write_bytes(b"edited")
    with pytest.raises(ChecksumError) as err:
        download_source("dynahate", server.dyn, out, sha256=pin, retries=0)
    msg = str(err.value)
    assert f"Delete {out / DYN} and run again" in msg and sha(DYN_BYTES) in msg and sha(b"edited") in msg
    assert (f"delete {out / DYN}.sha256 as well" in msg) == (kind == "recorded") and not (out / "DONE.json").exists()
    assert kind == "recorded" or not DROPS_PIN.search(msg)
    assert (out / DYN).read_bytes() == b"edited" and server.hits[DYN_PATH] == 1  # the evidence, no silent refetch
    (out / DYN).unlink()
    assert download_source("dynahate", server.dyn, out, sha256=pin, retries=0)["files"] == {DYN: sha(DYN_BYTES)}


def test_file_url_is_copied_and_a_missing_file_is_a_clear_error(tmp_path, releases):
    url = releases["data.zip"].as_uri()  # downloads over HTTP: test_rehearsal_archives
    assert download_source("cad", url, tmp_path / "cad", retries=0)["files"] == {
        "data.zip": sha(releases["data.zip"].read_bytes())
    }
    pd.testing.assert_frame_equal(normalise("cad", tmp_path / "cad")[0], normalise("cad", FIX / "cad")[0])
    assert main(["download", "--source", "cad", "--url", url + "x", "--out", str(tmp_path / "x")]) == 1


def test_bad_zip_from_the_host_is_not_retried_and_a_fixed_host_then_works(server, tmp_path, good_zip):
    server.files["/glue/data/MNLI.zip"] = good_zip[: len(good_zip) // 2]  # a correct Content-Length for a bad file
    out, url = tmp_path / "mnli", server.url + "/glue/data/MNLI.zip"
    with pytest.raises(DataError, match="not a valid zip.*not retried") as err:
        download_source("mnli", url, out, retries=1, backoff=0)
    assert server.hits["/glue/data/MNLI.zip"] == 1 and url in str(err.value) and nothing_kept(out, "MNLI.zip")
    server.files["/glue/data/MNLI.zip"] = good_zip
    assert download_source("mnli", url, out, retries=0)["files"] == {"MNLI.zip": sha(good_zip)}


@pytest.mark.parametrize("damage", ["truncated", "crc", "empty", "unsafe-member", "symlink-member"])
def test_bad_mirror_zip_is_not_kept_and_a_fixed_mirror_then_works(tmp_path, good_zip, damage):
    stored = zip_of(("MNLI/train.tsv", "x" * 99))  # member data at bytes 44-142: a flipped byte fails only its CRC
    bad = {"truncated": good_zip[:-100], "crc": stored[:80] + b"y" + stored[81:], "empty": b"",
           "unsafe-member": zip_of(("MNLI/train.tsv", "x"), ("../outside.txt", "x")),
           "symlink-member": zip_of((symlink("MNLI/dev"), "/etc"))}[damage]  # fmt: skip
    mirror, out = tmp_path / "MNLI.zip", tmp_path / "resources" / "mnli"
    mirror.write_bytes(bad)
    with pytest.raises(DataError) as err:
        download_source("mnli", None, out, mirror=mirror)
    msg = str(err.value)
    assert ("not a valid zip" in msg or "outside the folder" in msg) and "datasets.mnli.mirror" in msg
    assert f"replace {mirror} with a good copy" in msg and mirror.read_bytes() == bad
    assert nothing_kept(out, "MNLI.zip") and not (tmp_path / "resources" / "outside.txt").exists()
    mirror.write_bytes(good_zip)  # fixed: the next run just works (no stale copy, no stale record)
    assert download_source("mnli", None, out, mirror=mirror)["files"] == {"MNLI.zip": sha(good_zip)}
    assert normalise("mnli", out)[1]["rows_out"] == normalise("mnli", FIX / "mnli")[1]["rows_out"]


def test_unextractable_zip_and_resources_poisoned_by_an_older_version(tmp_path, good_zip):
    """A zip sound by its CRC and member names, yet not extractable (a file where a folder must go), is removed with
    its record; a bad copy and its recorded hash (left by an older version) are named, both, for deletion."""
    mirror, out = tmp_path / "MNLI.zip", tmp_path / "resources" / "mnli"
    mirror.write_bytes(zip_of(("MNLI", "a file"), ("MNLI/train.tsv", "x")))
    with pytest.raises(DataError, match=f"{out / 'MNLI.zip'}: cannot be extracted .*removed it and its sha256 record"):
        download_source("mnli", None, out, mirror=mirror)
    assert nothing_kept(out, "MNLI.zip")
    out.mkdir(parents=True, exist_ok=True)
    (out / "MNLI.zip").write_bytes(good_zip[:-100])  # a bad copy and its recorded hash
    (out / "MNLI.zip.sha256").write_text(f"{sha(good_zip[:-100])}  MNLI.zip\n")
    mirror.write_bytes(good_zip)
    with pytest.raises(DataError, match=f"Delete {out / 'MNLI.zip'} and its record {out / 'MNLI.zip.sha256'} and run"):
        download_source("mnli", None, out, mirror=mirror)
    for p in out.iterdir():  # do as told
        p.unlink()
    assert download_source("mnli", None, out, mirror=mirror)["files"] == {"MNLI.zip": sha(good_zip)}


def test_mirror_errors_name_the_key_and_an_extracted_folder_lists_the_unchecked_pin(tmp_path):
    url = "http://127.0.0.1:9/glue/data/MNLI.zip"  # offline: nothing listens there
    with pytest.raises(DataError) as err:
        download_source("mnli", url, tmp_path / "mnli", retries=1, backoff=0, timeout=5)
    assert "datasets.mnli.mirror" in str(err.value) and url in str(err.value)
    assert main(["download", "--source", "mnli", "--url", url, "--out", str(tmp_path / "m"), "--retries", "0"]) == 1
    with pytest.raises(DataError, match="datasets.wanli.mirror"):  # a file for a two-file source
        download_source("wanli", None, tmp_path / "w", mirror=FIX / "wanli" / "train.jsonl")
    with pytest.raises(DataError, match="datasets.cad.mirror"):
        download_source("cad", None, tmp_path / "cad", mirror=tmp_path / "nope.zip")
    with pytest.raises(DataError, match="datasets.mnli.url is null.*datasets.mnli.mirror"):
        download_source("mnli", None, tmp_path / "mnli")
    done = download_source("anli", None, tmp_path / "anli", mirror=FIX / "anli", sha256="2" * 64)
    dev = sha((FIX / "anli" / "R1" / "dev.jsonl").read_bytes())
    assert done["unverified"] == ["anli_v1.0.zip"] and done["files"]["R1/dev.jsonl"] == dev
    (tmp_path / "a-file").write_text("x")  # an OSError (a file where a folder must go): no traceback
    argv = ["download", "--source", "dynahate", "--out", str(tmp_path / "a-file" / "x"), "--mirror", str(FIX)]
    assert main(argv) == 1


AIRGAP = [("mnli", "file"), ("mnli", "folder-with-file"), ("mnli", "extracted"), ("anli", "file"),
          ("anli", "extracted"), ("cad", "file"), ("cad", "extracted"), ("wanli", "folder-with-file"),
          ("dynahate", "file"), ("dynahate", "folder-with-file")]  # fmt: skip
RELEASE = {"mnli": ["MNLI.zip"], "anli": ["anli_v1.0.zip"], "cad": ["data.zip"], "dynahate": [DYN],
           "wanli": ["test.jsonl", "train.jsonl"]}  # fmt: skip


@pytest.mark.parametrize(("source", "kind"), AIRGAP, ids=[f"{s}-{k}" for s, k in AIRGAP])
def test_air_gapped_mirror_only_end_to_end(releases, tmp_path, source, kind):
    i = AIRGAP.index((source, kind))  # varies the umask and how "no URL" is said
    files = [releases[n] for n in RELEASE[source]]
    mirror = tmp_path / "downloads"  # folder-with-file
    mirror.mkdir()
    for f in files:
        shutil.copyfile(f, mirror / f.name)
    if kind == "file":  # a differently named copy: it still lands under the release name
        mirror = shutil.copyfile(files[0], tmp_path / f"copy-of-{source}{files[0].suffix}")
    if kind == "extracted":
        zipfile.ZipFile(files[0]).extractall(mirror := tmp_path / "extracted")
    out, umask = tmp_path / "resources" / source, [0o027, 0o002][i % 2]
    no_url = [[], ["--url", ""], ["--url"]][i % 3]  # all three mean "no URL"
    argv = ["download", "--source", source, *no_url, "--out", str(out), "--mirror", str(mirror)]
    old = os.umask(umask)
    try:
        assert main(argv) == 0
    finally:
        os.umask(old)
    done = json.loads((out / "DONE.json").read_text())
    assert done["url"] is None and done["mirror"] == str(mirror)
    listed = {p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file()}
    assert set(done["files"]) == (listed if kind == "extracted" else set(RELEASE[source]))
    assert all((out / f"{n}.sha256").read_text().split()[0] == h for n, h in done["files"].items())
    copies = [(mirror, out / RELEASE[source][0])] if kind == "file" else [(mirror / n, out / n) for n in done["files"]]
    assert all(os.stat(a).st_nlink == 1 and not os.path.samefile(a, b) for a, b in copies)  # copied, never linked
    made = [out / "DONE.json", *(out / f"{n}{ext}" for n in done["files"] for ext in ("", ".sha256"))]
    made += [out / m for ms in done["extracted"].values() for m in ms]  # the user's umask, as for any output
    assert all(stat.S_IMODE(p.parent.stat().st_mode) == 0o777 & ~umask for p in made)
    assert [str(p) for p in made if stat.S_IMODE(p.stat().st_mode) != 0o666 & ~umask] == []
    pd.testing.assert_frame_equal(rows(source, out), rows(source, FIX / source))
    assert main(argv) == 0 and leftovers(out) == []  # a rerun verifies and reuses


def test_killed_download_leaves_nothing_under_final_names_and_the_next_run_cleans_up(server, tmp_path):
    out, data = tmp_path / "dynahate", DYN_BYTES * 100  # many of the downloader's chunks
    server.files[DYN_PATH], server.stall[DYN_PATH] = data, len(data) // 2
    argv = [sys.executable, "-m", "ftft.cli", "download", "--source", "dynahate", "--url", server.dyn]
    proc = subprocess.Popen([*argv, "--out", str(out), "--retries", "0"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not [p for p in out.glob(".*.tmp") if p.stat().st_size >= len(data) // 4]:
            assert time.monotonic() < deadline, "the download never got a quarter of the way"
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL: no clean-up of its own
        proc.wait(10)
    assert not [p.name for p in out.iterdir() if not p.name.endswith(".tmp")] and len(leftovers(out)) == 1
    (out / ".extract-abcd1234" / "MNLI").mkdir(parents=True)  # an extraction killed half way
    del server.stall[DYN_PATH]
    assert download_source("dynahate", server.dyn, out, retries=0)["files"] == {DYN: sha(data)}
    assert leftovers(out) == []
