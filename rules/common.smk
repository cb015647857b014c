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


# Warm worker (config `worker`, ftft.worker): started when a local run with jobs to do begins;
# every `ftft` job then runs in a fork of it instead of importing torch/transformers anew.
from ftft import worker as ftft_worker


def start_worker():
    settings = PLAN.worker_settings()
    if (
        settings is None
        or workflow.touch
        or not workflow.local_exec
        or workflow.remote_exec
    ):
        return
    path = ftft_worker.start(settings["log"], settings["idle_timeout"])
    if path:
        os.environ[ftft_worker.SOCKET_ENV] = path


def stop_worker():
    ftft_worker.stop(os.environ.pop(ftft_worker.SOCKET_ENV, None))


onstart:
    start_worker()


onsuccess:
    stop_worker()


onerror:
    stop_worker()
