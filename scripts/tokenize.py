# The tokenize rule's `script:` (Snakemake injects `snakemake`): one (task, tokenizer) dataset.
from ftft.tokenize import run_job

run_job(snakemake)  # noqa: F821
