"""Real-layout release archives built from ``tests/fixtures/``, served like the real hosts (offline rehearsal).

``build_archives`` writes the five releases at their canonical URL paths (member lists, sources and placeholders:
``tests/rehearsal/README.md``; fixture files byte for byte; deterministic zips). ``serve`` answers those paths
(percent-encoded, query ignored) with ``Content-Length``, a hub-like 302 to a CDN path for ``/resolve/`` and
Zenodo's ``Content-Disposition``. ``rehearsal_urls`` moves the configured ``datasets.*.url`` onto that server.
"""

import contextlib
import csv
import http.server
import io
import json
import shutil
import threading
import urllib.parse
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "workflow_config.yaml"
SOURCES = ("mnli", "wanli", "anli", "cad", "dynahate")
ZIP_DATE = (2020, 6, 30, 0, 0, 0)  # fixed member timestamps: the archives are reproducible
DYNAHATE_CSV = "Dynamically Generated Hate Dataset v0.2.3.csv"
CDN_PREFIX = "_cdn"  # where the hub-like redirect points (not a real host path)
SPLITS = ("train", "dev", "test")


def config_urls(config: str | Path = CONFIG) -> dict[str, str]:
    """``datasets.<source>.url`` for the five paper sources, from ``workflow_config.yaml``."""
    cfg = yaml.safe_load(Path(config).read_text())
    return {s: cfg["datasets"][s]["url"] for s in SOURCES}


def url_path(url: str) -> str:
    """The decoded URL path without the leading slash (``glue/data/MNLI.zip``)."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path).lstrip("/")


def rehearsal_urls(base_url: str, config: str | Path = CONFIG) -> dict[str, str]:
    """The configured ``datasets.*.url`` values rewritten onto ``base_url`` (path and query kept)."""
    base = urllib.parse.urlsplit(base_url)
    return {
        source: urllib.parse.urlsplit(url)._replace(scheme=base.scheme, netloc=base.netloc, fragment="").geturl()
        for source, url in config_urls(config).items()
    }


def write_zip(path: Path, entries: list[tuple[str, bytes | None]]) -> Path:
    """A deterministic zip: ``(name, bytes)`` files and ``(name/, None)`` folder entries, in order."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.create_system = 3  # unix, so the modes below mean what they say
            if data is None:
                info.external_attr = (0o40755 << 16) | 0x10
                zf.writestr(info, b"")
            else:
                info.external_attr = 0o100644 << 16  # stored: the bytes (and the pins) do not depend on zlib
                zf.writestr(info, data, compress_type=zipfile.ZIP_STORED)
    return path


def with_folders(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes | None]]:
    """``files`` and their folder entries (``a/``, ``a/b/``), sorted by name: each folder before its members."""
    folders = {name.rsplit("/", i)[0] + "/" for name, _ in files for i in range(1, name.count("/") + 1)}
    return sorted([*files, *((f, None) for f in folders)], key=lambda entry: entry[0])


def placeholder(what: str, real: str) -> bytes:
    return (
        f"PLACEHOLDER written by tests/rehearsal/archives.py for an offline rehearsal.\n"
        f"The real release has {real} here; {what}.\n"
        "ftft does not read this file.\n"
    ).encode()


def placeholder_pdf(title: str) -> bytes:
    """A valid one-page PDF saying that it is a placeholder (matplotlib's writer; no creation date: reproducible)."""
    from matplotlib.figure import Figure

    fig, out = Figure(figsize=(8.5, 11)), io.BytesIO()
    fig.text(0.1, 0.9, f"PLACEHOLDER: {title} (ftft offline rehearsal)")
    fig.savefig(out, format="pdf", metadata={"CreationDate": None})
    return out.getvalue()


MNLI_TSVS = ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv", "test_matched.tsv", "test_mismatched.tsv")
MULTINLI_TXT_COLUMNS = (
    "gold_label sentence1_binary_parse sentence2_binary_parse sentence1_parse sentence2_parse sentence1 sentence2 "
    "promptID pairID genre label1 label2 label3 label4 label5"
).split()


def multinli_original(glue_tsv: bytes) -> tuple[bytes, bytes]:
    """MultiNLI 1.0 ``.txt`` and ``.jsonl`` versions of a labelled GLUE TSV's rows (derived placeholders)."""
    rows = csv.DictReader(io.StringIO(glue_tsv.decode("utf-8"), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    txt, jsonl = ["\t".join(MULTINLI_TXT_COLUMNS)], []
    keys = ("genre", "gold_label", "pairID", "promptID", *(f"sentence{i}{p}" for i in "12"
            for p in ("", "_binary_parse", "_parse")))  # fmt: skip
    for r in rows:
        labels = [r.get(f"label{i}", "") or "" for i in range(1, 6)]
        txt.append("\t".join([r["gold_label"], *(r[c] for c in MULTINLI_TXT_COLUMNS[1:10]), *labels]))
        jsonl.append(json.dumps({"annotator_labels": [x for x in labels if x]} | {k: r[k] for k in keys}))
    return ("\n".join(txt) + "\n").encode(), ("\n".join(jsonl) + "\n").encode()


def mnli_members(fix: Path) -> list[tuple[str, bytes]]:
    files = [(f"MNLI/{name}", (fix / name).read_bytes()) for name in MNLI_TSVS]
    for split in ("train", "dev_matched", "dev_mismatched"):
        txt, jsonl = multinli_original((fix / f"{split}.tsv").read_bytes())
        files.append((f"MNLI/original/multinli_1.0_{split}.txt", txt))
        files.append((f"MNLI/original/multinli_1.0_{split}.jsonl", jsonl))
    files.append(("MNLI/README.txt", placeholder("its content was not available offline", "the GLUE MNLI readme")))
    return files


def anli_train_from_dev(dev: bytes, rnd: int) -> bytes:
    """Placeholder ``train.jsonl`` for a round: its dev rows with new uids and a train tag."""
    rows = [json.loads(line) for line in dev.decode("utf-8").splitlines() if line.strip()]
    for obj in rows:
        obj["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"ftft-rehearsal/anli/train/{obj['uid']}"))
        obj["tag"] = f"r{rnd}_train"
    # json.dumps defaults: the release's separators and \\u escapes
    return ("\n".join(map(json.dumps, rows)) + "\n").encode()


def anli_members(fix: Path) -> list[tuple[str, bytes]]:
    files = [("anli_v1.0/README.txt", placeholder("its text is the release's own readme (rules of use)",
                                                  "the ANLI v1.0 README.txt"))]  # fmt: skip
    for r in (1, 2, 3):
        dev = (fix / f"R{r}" / "dev.jsonl").read_bytes()
        files.append((f"anli_v1.0/R{r}/dev.jsonl", dev))
        files.append((f"anli_v1.0/R{r}/test.jsonl", (fix / f"R{r}" / "test.jsonl").read_bytes()))
        files.append((f"anli_v1.0/R{r}/train.jsonl", anli_train_from_dev(dev, r)))
    return files


def cad_members(fix: Path) -> list[tuple[str, bytes]]:
    v11 = {name: (fix / name).read_bytes() for name in ("cad_v1_1.tsv", *(f"cad_v1_1_{s}.tsv" for s in SPLITS))}
    files = [(f"data/{name}", data) for name, data in v11.items()]
    # v1 (the NAACL paper version) differs from v1.1 in the labels of 95 entries: copies stand in
    files.append(("data/cad_v1.tsv", v11["cad_v1_1.tsv"]))
    files += [(f"data/cad_v1_{s}.tsv", v11[f"cad_v1_1_{s}.tsv"]) for s in SPLITS]
    what = "the real file lists the 95 entries whose labels changed"
    files.append(("data/errata_v1_to_v1_1", placeholder(what, "the v1 -> v1.1 errata")))
    files.append(("data/cad_codebook_april2021.pdf", placeholder_pdf("CAD codebook, April 2021")))
    for name in ("test_data.tsv", "test_data_test.tsv", "test_predictions.tsv"):
        files.append((f"data/test/{name}", placeholder("the authors' unit-test data", f"data/test/{name}")))
    return files


def build_archives(fixtures_dir: str | Path, out_dir: str | Path, config: str | Path = CONFIG) -> dict[str, str]:
    """Write the five releases under ``out_dir``; ``{decoded URL path without '/': written file}`` (WANLI: two)."""
    fix, out = Path(fixtures_dir), Path(out_dir)
    urls = config_urls(config)
    written: dict[str, str] = {}

    def put(path: str, build) -> None:
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        build(target)
        written[path] = str(target)

    put(url_path(urls["mnli"]), lambda t: write_zip(t, with_folders(mnli_members(fix / "mnli"))))
    put(url_path(urls["anli"]), lambda t: write_zip(t, with_folders(anli_members(fix / "anli"))))
    put(url_path(urls["cad"]), lambda t: write_zip(t, with_folders(cad_members(fix / "cad"))))
    for name in ("train.jsonl", "test.jsonl"):
        put(f"{url_path(urls['wanli']).rstrip('/')}/{name}", lambda t, n=name: shutil.copyfile(fix / "wanli" / n, t))
    put(url_path(urls["dynahate"]), lambda t: shutil.copyfile(fix / "dynahate" / DYNAHATE_CSV, t))
    return written


class ReleaseHandler(http.server.BaseHTTPRequestHandler):
    """GET/HEAD of ``root/<decoded path>`` (query ignored); 404 for anything else."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self, body: bool = True) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        with self.lock:
            self.requests.append(path)
        cdn, path = path.startswith(CDN_PREFIX + "/"), path.removeprefix(CDN_PREFIX + "/")
        target = (self.root / path).resolve()
        if not target.is_file() or not target.is_relative_to(self.root):
            return self.send_error(404, "Not Found")
        if "/resolve/" in path and not cdn:  # the hub answers large files with a redirect to its CDN
            self.send_response(302)
            self.send_header("Location", f"/{CDN_PREFIX}/{urllib.parse.quote(path)}")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(target.stat().st_size))
        self.send_header("Content-Disposition", f"attachment; filename*=UTF-8''{urllib.parse.quote(target.name)}")
        self.end_headers()
        if body:
            with open(target, "rb") as fh:
                shutil.copyfileobj(fh, self.wfile)

    def do_HEAD(self) -> None:
        self.do_GET(body=False)


@contextlib.contextmanager
def serve(root_dir: str | Path, requests: list[str] | None = None, port: int = 0) -> Iterator[str]:
    """Serve ``root_dir`` on 127.0.0.1 (``port`` 0: a free one); yield the base URL; log decoded paths to ``requests``."""
    root = Path(root_dir).resolve()
    attrs = {"root": root, "requests": [] if requests is None else requests, "lock": threading.Lock()}
    handler = type("Handler", (ReleaseHandler,), attrs)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
