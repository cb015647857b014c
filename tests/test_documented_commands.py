"""Every `snakemake` / `ftft` command in README.md, config/README.md, the config headers and the Snakefile runs as written.

Commands are taken from fenced code blocks, inline code spans and comment lines of the YAML files.
`snakemake` commands are dry-run verbatim (`-n` appended; a `--report PATH` needs a finished run, so
it is dropped here and the demo's report command runs verbatim on the finished demo in the slow
tier). `ftft` commands that only read the config run verbatim (`--watch` is stopped after its first
screen); those that reach the network (`fetch-models`) have their arguments parsed.
"""

import argparse
import importlib
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import wfutil

from ftft import cli

ROOT = wfutil.ROOT
DOCS = ("README.md", "config/README.md", "workflow_config.yaml", "config/*.yaml", "profiles/*/config.yaml", "Snakefile")
RUN_VERBATIM = {"check-config", "plan", "status", "--help"}


def documented_commands() -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for path in [p for pattern in DOCS for p in sorted(ROOT.glob(pattern))]:
        text = path.read_text()
        lines = [ln for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S) for ln in block.splitlines()]
        lines += re.findall(r"`((?:snakemake|ftft) [^`]*)`", text)
        if path.suffix != ".md":  # YAML files and the Snakefile: commands in their comments
            lines += [ln.lstrip("# ") for ln in text.splitlines() if ln.startswith("#")]
        for line in lines:
            cmd = " ".join(re.split(r"\s+#", line.strip())[0].split())  # a span may wrap across lines
            if re.match(r"(snakemake|ftft) ", cmd):
                found.setdefault(cmd, str(path.relative_to(ROOT)))
    return sorted(found.items())


COMMANDS = documented_commands()


def test_the_documented_commands_are_found():
    cmds = [c for c, _ in COMMANDS]
    assert "snakemake datamaps --cores 2 --configfile config/byo-example.yaml" in cmds
    assert any(c.startswith("ftft status") for c in cmds) and any(c.startswith("snakemake --report") for c in cmds)
    for cmd in cmds:  # a target after --configfile would be read as a config file
        words = shlex.split(cmd)
        if "--configfile" in words:
            tail = words[words.index("--configfile") + 1 :]
            assert all(w.endswith(".yaml") for w in tail[: next((i for i, w in enumerate(tail) if w[0] == "-"), None)])


@pytest.fixture(scope="module")
def workflows(tmp_path_factory) -> list[Path]:
    return [wfutil.make_copy(tmp_path_factory.mktemp(f"docs{i}") / "wf") for i in range(2)]


@pytest.fixture(scope="module")
def dry_runs(workflows) -> dict[str, subprocess.CompletedProcess]:
    """Every documented `snakemake` command, dry-run two at a time (a dry run keeps one core busy), alternately in
    two copies of the workflow."""

    def dry_run(cmd: str, workflow: Path) -> subprocess.CompletedProcess:
        argv = shlex.split(re.sub(r" --report \S+", "", cmd))[1:]
        return wfutil.snakemake(workflow, *argv, "-n", timeout=300)

    cmds = [cmd for cmd, _ in COMMANDS if cmd.startswith("snakemake ")]
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(cmds, pool.map(dry_run, cmds, workflows * len(cmds)), strict=True))


@pytest.mark.integration
@pytest.mark.parametrize("cmd,source", COMMANDS, ids=[c for c, _ in COMMANDS])
def test_documented_command_runs(cmd, source, workflows, request):
    argv, workflow = shlex.split(cmd), workflows[0]
    full = [str(Path(sys.executable).with_name("ftft")), *argv[1:]]
    if argv[0] == "snakemake":
        res = request.getfixturevalue("dry_runs")[cmd]
        assert res.returncode == 0, f"{source}: {cmd}\n{(res.stdout + res.stderr)[-3000:]}"
    elif "--watch" in argv:  # refreshes until stopped: stopped after its first screen
        with subprocess.Popen(full, cwd=workflow, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
            first = p.stdout.readline()
            p.terminate()
            err = p.communicate(timeout=60)[1]
        assert "training runs:" in first, f"{source}: {cmd}\n{err[-3000:]}"
    elif argv[1] in RUN_VERBATIM:
        res = subprocess.run(full, cwd=workflow, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"{source}: {cmd}\n{res.stderr[-3000:]}"
    else:
        module = importlib.import_module(cli.COMMANDS[argv[1]][0])
        parser = argparse.ArgumentParser(prog=f"ftft {argv[1]}", exit_on_error=False)
        module.add_arguments(parser)
        parser.parse_args(argv[2:])
