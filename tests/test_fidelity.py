"""docs/FIDELITY.md and workflow_config.yaml agree: every ledger row with a config key holds its value."""

import re

import pytest
import yaml
from wfutil import ROOT

from ftft import config

LEDGER = ROOT / "docs" / "FIDELITY.md"


def ledger_rows() -> list[dict]:
    rows = []
    for line in LEDGER.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("what", "---"):
            continue
        key = re.fullmatch(r"`([^`]+)`(?: = `([^`]+)`)?", cells[2])
        value = re.search(r"`([^`]+)`", cells[1])
        if key and value:
            rows.append({"what": cells[0], "key": key.group(1), "value": key.group(2) or value.group(1)})
    return rows


@pytest.fixture(scope="module")
def cfg():
    return config.load(ROOT / "workflow_config.yaml")


def lookup(cfg: dict, key: str):
    node = cfg
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", key):
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    return node


def test_the_ledger_has_rows_with_config_keys():
    assert len(ledger_rows()) >= 50


@pytest.mark.parametrize("row", ledger_rows(), ids=lambda r: r["key"])
def test_ledger_value_is_the_paper_config_value(cfg, row):
    expected = yaml.safe_load(row["value"])
    got = lookup(cfg, row["key"])
    if isinstance(got, dict) and not isinstance(expected, dict):
        pytest.fail(f"{row['key']} is a mapping ({got}); the ledger says {row['value']!r}")
    if isinstance(expected, str) and re.fullmatch(r"\d+/\d+", expected):  # a fraction: compared as a number
        expected, got = config.parse_fraction(expected), config.parse_fraction(got)
    if isinstance(got, str) and not isinstance(expected, str):
        expected = str(expected)
    assert got == expected, (
        f"{row['what']}: {row['key']} is {got!r} in workflow_config.yaml, the ledger says {row['value']!r}"
    )
