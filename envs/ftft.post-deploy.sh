#!/usr/bin/env bash
# Run by Snakemake inside the freshly created envs/ftft.yaml environment: install the
# `ftft` package of this repository (dependencies come from the yaml). Snakemake runs it
# from the workflow's working directory, normally the repository root; set FTFT_REPO when
# running with --directory elsewhere.
set -euo pipefail
root="${FTFT_REPO:-$PWD}"
if [ ! -f "$root/pyproject.toml" ] || [ ! -d "$root/src/ftft" ]; then
    echo "ftft.post-deploy.sh: $root is not the ftft repository; set FTFT_REPO=/path/to/repo" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation -e "$root"
