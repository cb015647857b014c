# The train rule's `script:` (Snakemake injects `snakemake`): one run with the one engine.
import gc

gc.disable()  # no cyclic garbage while torch and transformers import (the engine re-enables it)

from ftft.train.cli import run_job  # noqa: E402

run_job(snakemake)  # noqa: F821
