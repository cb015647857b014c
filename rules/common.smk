# Shared setup: config validation, the Plan (ftft.workflow), the layout (ftft.layout) and the
# input/params functions the rules call. All logic lives in the ftft package.
import os
import sys

from snakemake.exceptions import WorkflowError

sys.path.insert(0, os.path.join(workflow.basedir, "src"))

from ftft.config import ConfigError, read_yaml, validate
from ftft.errors import FtftError
from ftft.modeling import model_source
from ftft.workflow import Plan

try:
    # Snakemake has already read the overlays (and evaluated a YTE one, before this file runs): refuse to
    # go on with one that is not plain data (YAML tags, __use_yte__), naming the file
    for f in workflow.overwrite_configfiles:
        read_yaml(f)
    validate(
        config,
        source=", ".join(
            [
                os.path.join(workflow.basedir, "workflow_config.yaml"),
                *map(str, workflow.overwrite_configfiles),
            ]
        ),
    )
    PLAN = Plan(config)
    PLAN.check()
except (ConfigError, FtftError) as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

L = PLAN.layout
WILDCARDS = PLAN.wildcard_constraints()


wildcard_constraints:
    task=WILDCARDS["task"],
    model=WILDCARDS["model"],
    ref=WILDCARDS["ref"],
    method=WILDCARDS["method"],
    budget=WILDCARDS["budget"],
    seed=WILDCARDS["seed"],
    tokenizer=WILDCARDS["tokenizer"],
    kind=WILDCARDS["kind"],
    source=WILDCARDS["source"],
    table=WILDCARDS["table"],
    figure=WILDCARDS["figure"],


onstart:
    print(PLAN.compute_summary(), file=sys.stderr)


onsuccess:
    PLAN.clear_kept()
    print(PLAN.failed_runs_message(), file=sys.stderr)


onerror:
    print(PLAN.failed_runs_message(), file=sys.stderr)


def ship_ref():
    """The shipped model's reference: ship.ref, else the screening's recommendation (after the screen checkpoint)."""
    from ftft.ship import recommended

    ref = PLAN.cfg["ship"]["ref"]
    return ref or recommended(
        checkpoints.screen.get().output.csv, PLAN.cfg["ship"]["refs"]
    )
