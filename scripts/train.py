# The train rule's `script:` (Snakemake injects `snakemake`): one run with the one engine.
from ftft.train.cli import run_job

run_job(snakemake)  # noqa: F821
