# Shared setup: config validation, the Plan (ftft.workflow) and the input/params functions
# the rules call. All logic lives in the ftft package; these are thin adapters.
import os
import sys

from snakemake.exceptions import WorkflowError

sys.path.insert(0, os.path.join(workflow.basedir, "src"))

from ftft.config import ConfigError, validate
from ftft.workflow import Plan

try:
    validate(
        config,
        source=", ".join(
            ["workflow_config.yaml", *map(str, workflow.overwrite_configfiles)]
        ),
    )
except ConfigError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

PLAN = Plan(config)
WILDCARDS = PLAN.wildcard_constraints()


wildcard_constraints:
    task=WILDCARDS["task"],
    model=WILDCARDS["model"],
    ref=WILDCARDS["ref"],
    method=WILDCARDS["method"],
    budget=WILDCARDS["budget"],
    seed=WILDCARDS["seed"],
    kind=WILDCARDS["kind"],
    variant=WILDCARDS["variant"],
    source=WILDCARDS["source"],


def train_input(wildcards):
    return PLAN.train_inputs(PLAN.run_of(wildcards))


def train_spec(wildcards):
    return PLAN.train_spec(PLAN.run_of(wildcards))


def train_extra(wildcards, input):
    return PLAN.train_extra(PLAN.run_of(wildcards), input)


def train_runtime(wildcards):
    return PLAN.train_runtime(wildcards.task)


def datamap_input(wildcards):
    return PLAN.datamap_inputs(wildcards.task, wildcards.ref, int(wildcards.seed))


def subset_input(wildcards):
    return PLAN.subset_inputs(
        wildcards.task, wildcards.method, wildcards.ref, int(wildcards.seed)
    )


def parent_dir(key, of="input"):
    """Params function: the folder of a named input (or output) file."""
    if of == "input":
        return lambda wildcards, input: os.path.dirname(input[key])
    return lambda wildcards, output: os.path.dirname(output[key])
