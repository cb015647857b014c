# FTFT: Fine-Tuning by transFerring Training dynamics (Du, Gatt & Nguyen, arXiv 2310.06588).
#
#   snakemake --cores all --resources gpu=1                 # paper grid, workstation (1 GPU)
#   snakemake --cores 2 --configfile config/demo.yaml       # offline demo, CPU only
#   snakemake --cores 2 --configfile config/ftft-quickstart.yaml  # FTFT on your data: a model to ship
#   snakemake --workflow-profile profiles/slurm             # paper grid on a SLURM cluster
#
# The grid (which runs each table and figure needs) is data: ftft.grid expands the config,
# ftft.layout names every file, ftft.workflow turns both into targets, inputs and parameters.
# See docs/ARCHITECTURE.md.
import os

from snakemake.utils import min_version

min_version("9.0")


# the base config beside this Snakefile, whatever the working directory (--directory, snakedeploy)
configfile: os.path.join(workflow.basedir, "workflow_config.yaml")


# validates the merged config (JSON schema + semantic checks) before any job; defines PLAN and L
include: "rules/common.smk"


report: "src/ftft/report/workflow.rst"


include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/train.smk"
include: "rules/datamaps.smk"
include: "rules/tables.smk"
include: "rules/ship.smk"


rule all:
    default_target: True
    input:
        PLAN.final_targets(),
    localrule: True
