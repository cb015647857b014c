"""The README's two copy-paste commands stay true: CI runs the test command verbatim."""

import re

from wfutil import ROOT


def test_ci_runs_the_readme_test_command_verbatim():
    blocks = [b.strip() for b in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)]
    demo, tests = blocks[0], blocks[1]
    assert "config/demo.yaml" in demo and demo.startswith("python3 -m venv")
    assert tests.endswith("pytest -m 'not slow and not slurm'") and "torch==2.13.0" in tests
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci_lines, "the README test command must appear verbatim as a line of .ci/run"
    for block in (demo, tests):  # the CPU torch is pinned before the package
        assert block.index("pip install torch==2.13.0") < block.index("pip install -e")
