"""The training methods: one ``Method`` record each, the only place a method is described (what reads ``REGISTRY``
and how to add a method: docs/ARCHITECTURE.md). ``register`` is the only way in: a config can name a registered
method, never define one (nothing runs code from a config file).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import FtftError
from .io import read_parquet
from .layout import BIAS_FILE


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # its row label in the tables
    needs_ref: bool = False  # the run is named by (and reads the outputs of) a reference model's ERM run
    ref_cost: bool = False  # cost = reference + main * fraction; else the main model alone (paper Table 4)
    uses_q: bool = False  # trains on the data-map fraction q (the q column of the tables)
    trains_as: str | None = None  # a table label read from another method's runs (FTFT: DM checkpoints)
    #: files of the reference run the subset step reads: "datamap", "dynamics", "record", "bias"
    reads: tuple[str, ...] = ()
    #: the subset step: its arguments (train, q, seed, datamap, ref_run; uids; settings: ``--spec``) -> (frame,
    #: metadata); None trains on the whole training set with no subset file (ERM)
    subset: Callable | None = None
    #: the subset step's settings from the config: (cfg, task) -> JSON object (``ftft subset --spec``)
    settings: Callable[[dict, str], dict] = lambda cfg, task: {}  # noqa: E731
    #: the spec fields this method sets for a run: (cfg, run) -> dict updating ``train.spec.make_spec``'s
    spec: Callable[[dict, object], dict] = lambda cfg, run: {}  # noqa: E731
    #: per-example main loss (logits, labels) -> [B]; None: cross-entropy (``ftft.train.engine.example_losses``)
    loss: Callable | None = None


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method (code only: tests and forks call it; configs can only name registered methods)."""
    if not re.fullmatch(r"[a-z][a-z0-9]*", method.name):  # a path part ("{method}-{ref}") and a wildcard value
        raise ValueError(f"method name {method.name!r}: lower-case letters and digits only")
    REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; expected one of {tuple(REGISTRY)}")
    return REGISTRY[name]


def run_methods() -> tuple[str, ...]:
    """Methods that are trained as runs (every method but the table labels read from another's runs)."""
    return tuple(m.name for m in REGISTRY.values() if m.trains_as is None)


# ------------------------------------------- the paper's methods (builders import pandas on use: config imports us)


def _random(a):
    from .subsets import random_subset

    return random_subset(a.uids, a.q, a.seed), {"q": a.q, "seed": a.seed}


def _dm(a):
    from . import datamap, subsets

    where = f"data map {a.datamap} (training set {a.train})"
    return subsets.dm_subset(a.uids, datamap.read(a.datamap), a.q, where), {"q": a.q, "datamap": str(a.datamap)}


def _jtt(a):
    from . import datamap, subsets

    epoch, upweight = a.settings.get("jtt_epoch"), a.settings.get("upweight")
    if epoch is None:
        raise FtftError(f"--spec: method jtt needs an integer 'jtt_epoch'; got {a.settings}")
    upweight = 4 if upweight is None else int(upweight)  # the paper's and Liu et al.'s default
    df = subsets.jtt_subset(a.uids, datamap.load_dynamics(Path(a.ref_run) / "dynamics.npz"), int(epoch), upweight)
    return df, {"ref_run": str(a.ref_run), "jtt_epoch": int(epoch), "upweight": upweight}


def _poe(a):
    from .subsets import poe_subset

    bias = Path(a.ref_run) / BIAS_FILE
    df = poe_subset(a.uids, read_parquet(bias, "bias log-probabilities file"), str(bias))
    return df, {"ref_run": str(a.ref_run), "bias": str(bias)}


def _jtt_spec(cfg: dict, run) -> dict:  # Liu et al.'s JTT stage: its own optimiser, rate, weight decay and clipping
    j = cfg["methods"]["jtt"]
    return {"optimizer": j["optimizer"], "momentum": float(j["momentum"]), "scheduler": j["scheduler"],
            "plateau": dict(j["plateau"]) if j["scheduler"] == "plateau" else None,
            "lr": float(j["lr"] or cfg["models"][run.model]["lr"]), "weight_decay": float(j["weight_decay"]),
            "max_grad_norm": j["max_grad_norm"]}  # fmt: skip


def _poe_spec(cfg: dict, run) -> dict:  # the PoE loss terms' weights (Sanh et al. 2021)
    p = cfg["methods"]["poe"]
    return {"poe": {"ce_weight": float(p["ce_weight"]), "poe_weight": float(p["poe_weight"])}}


register(Method("erm", "ERM"))
register(Method("random", "DM", uses_q=True, subset=_random))
register(Method("dm", "DM", needs_ref=True, ref_cost=True, uses_q=True, reads=("datamap",), subset=_dm))
register(Method("ftft", "FTFT", needs_ref=True, ref_cost=True, uses_q=True, trains_as="dm"))
register(Method("jtt", "JTT", needs_ref=True, ref_cost=True, reads=("dynamics", "record"), subset=_jtt,
                settings=lambda cfg, task: {"jtt_epoch": cfg["tasks"][task]["jtt_epoch"],
                                            "upweight": cfg["methods"]["jtt"]["upweight"]},
                spec=_jtt_spec))  # fmt: skip
register(Method("poe", "PoE", needs_ref=True, reads=("dynamics", "record", "bias"), subset=_poe, spec=_poe_spec))
