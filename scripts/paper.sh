#!/usr/bin/env bash
# Thin entry point: the full paper grid on one GPU workstation, then the HTML report.
# Usage: scripts/paper.sh [extra snakemake args]
set -euo pipefail
cd "$(dirname "$0")/.."
snakemake --cores "${CORES:-all}" --resources gpu="${GPUS:-1}" "$@"
snakemake --cores 1 --report results/report.html
