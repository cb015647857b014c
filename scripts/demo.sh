#!/usr/bin/env bash
# Thin entry point: run the offline demo end to end and build its HTML report.
# Usage: scripts/demo.sh [extra snakemake args]   (inside the installed environment)
set -euo pipefail
cd "$(dirname "$0")/.."
snakemake --cores "${CORES:-2}" --configfile config/demo.yaml "$@"
snakemake --cores 1 --configfile config/demo.yaml --report results/demo/report.html
echo "tables: results/demo/tables/  figures: results/demo/figures/  report: results/demo/report.html"
