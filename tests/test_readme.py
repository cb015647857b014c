"""The README's two copy-paste commands stay true: CI runs the test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command_verbatim():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    demo, tests = blocks[0], blocks[1]
    assert "config/demo.yaml" in demo and demo.startswith("python3 -m venv")
    assert tests.endswith("pytest -m 'not slow and not slurm'") and "torch==2.13.0" in tests
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci_lines, "the README test command must appear verbatim as a line of .ci/run"


def test_install_pins_cpu_torch_before_the_package():
    for block in _bash_blocks((ROOT / "README.md").read_text())[:2]:
        assert block.index("pip install torch==2.13.0") < block.index("pip install -e")
