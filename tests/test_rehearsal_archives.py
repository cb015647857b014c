"""Real-layout releases (tests/rehearsal) served like the real hosts: ``ftft download`` -> prepare == fixtures."""

import json
import zipfile
from pathlib import Path

import pandas as pd
import pooch
import pytest
import yaml
from rehearsal.archives import SOURCES, build_archives, rehearsal_urls, serve, url_path

from ftft.cli import main
from ftft.data import cad
from ftft.data.prepare import normalise

pytestmark = pytest.mark.integration  # real training runs / subprocesses / servers: the integration tier

FIX = Path(__file__).parent / "fixtures"

_MNLI_ORIG = [f"MNLI/original/multinli_1.0_{s}.{e}" for s in ("dev_matched", "dev_mismatched", "train")
              for e in ("jsonl", "txt")]  # fmt: skip
MEMBERS = {
    "MNLI.zip": ["MNLI/", "MNLI/README.txt", "MNLI/dev_matched.tsv", "MNLI/dev_mismatched.tsv", "MNLI/original/",
                 *_MNLI_ORIG, "MNLI/test_matched.tsv", "MNLI/test_mismatched.tsv", "MNLI/train.tsv"],
    "anli_v1.0.zip": ["anli_v1.0/", *(f"anli_v1.0/R{r}/{p}" for r in (1, 2, 3) for p in ("", "dev.jsonl", "test.jsonl",
                      "train.jsonl")), "anli_v1.0/README.txt"],
    "data.zip": sorted(["data/", "data/test/", *cad.MEMBERS["data.zip"]]),  # the authors' published tree
}  # fmt: skip


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    root = tmp_path_factory.mktemp("hosts")
    written = build_archives(FIX, root)
    requests: list[str] = []
    with serve(root, requests) as base:
        yield base, written, requests


def files_of(source: str, url: str, written: dict[str, str]) -> dict[str, Path]:
    """{file name in resources/<source>: served file} for one source."""
    prefix = url_path(url).rstrip("/")
    if source == "wanli":
        return {k.rsplit("/", 1)[1]: Path(v) for k, v in written.items() if k.startswith(prefix + "/")}
    return {Path(prefix).name: Path(written[prefix])}


def split_off_anli_train(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = df["split"].str.startswith("train_")
    return df[train].reset_index(drop=True), df[~train].reset_index(drop=True)


def test_archives_have_the_real_member_lists_and_are_reproducible(tmp_path):
    a = build_archives(FIX, tmp_path / "a")
    b = build_archives(FIX, tmp_path / "b")
    assert sorted(a) == sorted(b) and len(a) == 6
    for path in a:
        assert Path(a[path]).read_bytes() == Path(b[path]).read_bytes(), path
    zips = {Path(p).name: p for p in a.values() if p.endswith(".zip")}
    assert sorted(zips) == sorted(MEMBERS)
    for name, path in zips.items():
        with zipfile.ZipFile(path) as zf:
            assert zf.namelist() == MEMBERS[name]
            assert zf.testzip() is None
    with zipfile.ZipFile(zips["data.zip"]) as zf:  # the fixture files go in byte for byte
        assert zf.read("data/cad_v1_1.tsv") == (FIX / "cad" / "cad_v1_1.tsv").read_bytes()
        assert zf.read("data/cad_codebook_april2021.pdf").startswith(b"%PDF-1.4")
    dyn = "bvidgen/Dynamically-Generated-Hate-Speech-Dataset/03eb1c60af1f213ae19a16ff1d139d88229c2b7b/Dynamically"
    assert f"{dyn} Generated Hate Dataset v0.2.3.csv" in a


@pytest.mark.parametrize("source", SOURCES)
def test_download_extract_prepare_gives_the_fixture_rows(hosted, tmp_path, source):
    base, written, requests = hosted
    url = rehearsal_urls(base)[source]
    out = tmp_path / "resources" / source
    served = files_of(source, url, written)
    before = len(requests)
    assert main(["download", "--source", source, "--url", url, "--out", str(out), "--retries", "0"]) == 0
    assert len(requests) > before  # really fetched over HTTP

    # checksums recorded, marker lists exactly the served files
    done = json.loads((out / "DONE.json").read_text())
    assert done["files"] == {name: pooch.file_hash(str(path)) for name, path in served.items()}
    for name, digest in done["files"].items():
        assert (out / name).read_bytes() == served[name].read_bytes()
        assert (out / f"{name}.sha256").read_text() == f"{digest}  {name}\n"
    # extracted: every file member of the zip is on disk with its bytes
    for name in done["extracted"]:
        with zipfile.ZipFile(out / name) as zf:
            members = [m for m in zf.namelist() if not m.endswith("/")]
            assert done["extracted"][name] == members
            for m in members:
                assert (out / m).read_bytes() == zf.read(m)

    # prepare reads the download exactly as it reads the fixture
    df, summary = normalise(source, out)
    ref, ref_summary = normalise(source, FIX / source)
    if source == "anli":
        train, df = split_off_anli_train(df)
        dev = ref[ref["split"].str.startswith("dev_")].reset_index(drop=True)
        assert train["split"].tolist() == dev["split"].str.replace("dev_", "train_").tolist()
        assert train["text_a"].tolist() == dev["text_a"].tolist()
        assert not set(train["uid"]) & set(ref["uid"])
    pd.testing.assert_frame_equal(df, ref)
    splits = {k: v for k, v in summary["splits"].items() if not k.startswith("train_") or source != "anli"}
    assert splits == ref_summary["splits"]

    # a second run re-uses the verified files: no HTTP request at all (pinned this time)
    before = len(requests)
    pin = json.dumps(done["files"])
    rc = main(["download", "--source", source, "--url", url, "--out", str(out), "--sha256", pin, "--retries", "0"])
    assert rc == 0 and len(requests) == before
    assert json.loads((out / "DONE.json").read_text())["files"] == done["files"]
    again, _ = normalise(source, out)
    pd.testing.assert_frame_equal(split_off_anli_train(again)[1] if source == "anli" else again, ref)


def test_rehearsal_pins_match_the_archives_and_a_wrong_pin_stops_it_early(tmp_path):
    """config/rehearsal.yaml pins the archives it serves and the stand-ins sit under the paper's revisions:
    the download and fetch jobs pass with them and fail at once, with a clear error, with a wrong one."""
    from rehearsal.hub import build_hf_cache
    from wfutil import make_copy, snakemake

    wf = make_copy(tmp_path / "wf")
    written = build_archives(FIX, wf / "www")
    build_hf_cache(wf / "rehearsal" / "hf_home", ["prajjwal1/bert-tiny"])
    pins = yaml.safe_load((wf / "config" / "rehearsal.yaml").read_text())["datasets"]
    for source, url in rehearsal_urls("http://h").items():  # the pins are the served files' hashes (CAD has none)
        pin, files = pins[source].get("sha256"), files_of(source, url, written)
        if source != "cad":
            assert (pin if isinstance(pin, dict) else {Path(url_path(url)).name: pin}) == {
                n: pooch.file_hash(str(f)) for n, f in files.items()
            }, source
    wrong = {"datasets": {"anli": {"sha256": "0" * 64}}, "models": {"tinybert": {"revision": "0" * 40}}}
    with serve(wf / "www") as base:
        for name, overlay in (("right", {}), ("wrong", wrong)):
            urls = {"datasets": {s: {"url": u} for s, u in rehearsal_urls(base).items()}}
            dirs = {"resources": f"res-{name}", "results": f"out-{name}"}  # apart: the two roots may not overlap
            (wf / f"{name}.yaml").write_text(yaml.safe_dump({**dirs, **urls}))
            (wf / f"{name}-pins.yaml").write_text(yaml.safe_dump(overlay))
            args = ("--configfile", "config/rehearsal.yaml", f"{name}.yaml", f"{name}-pins.yaml")
            targets = (f"res-{name}/anli/DONE.json", f"res-{name}/hub/tinybert.json")
            res = snakemake(wf, *targets, "--cores", "1", "--keep-going", *args, env={"HF_HUB_OFFLINE": "1"})
            logs = "".join(p.read_text() for d in (f"res-{name}", f"out-{name}") for p in (wf / d).rglob("*.log"))
            if name == "right":
                assert res.returncode == 0, (res.stderr + logs)[-3000:]
                continue
            assert res.returncode != 0 and not (wf / "res-wrong" / "anli" / "anli_v1.0.zip").exists()
            for part in ("anli_v1.0.zip", "0" * 64, pooch.file_hash(written["anli/anli_v1.0.zip"]),
                         "pin itself may be wrong", f"prajjwal1/bert-tiny@{'0' * 40}", "not in the Hugging Face cache"):  # fmt: skip
                assert part in logs, part
