"""How the tables, figures and reports name things: models, tasks, datasets, fractions, seeds,
and the note a reader must see first on demo numbers. Plain functions of the merged config."""

from fractions import Fraction

from . import grid
from .config import active_tasks, demo_kind

DEMO_NOTE = (
    "Demo: tiny random-init stand-in models trained from scratch on built-in synthetic data. It runs every step "
    "of the pipeline; its numbers do not show the paper's effect (DM and FTFT above ERM out of distribution): "
    "that needs pretrained models, while models trained from scratch learn the labels one at a time, so their "
    "data maps rank instances by when their label is learned, not by how hard they are."
)
STANDIN_NOTE = (
    "Demo mode on your data: tiny random-init stand-in models; the numbers exercise the pipeline. For real "
    "results give each model its hub id and set mode: paper."
)


def demo_models(cfg: dict) -> bool:
    """Do stand-in models built here (``modeling.model_origin`` "demo") make some of this run's numbers?"""
    from .modeling import model_origin

    return any(model_origin(cfg, m) == "demo" for m in {r.model for r in grid.all_runs(cfg)})


def data_note(cfg: dict) -> str | None:
    """What the reader must know first about this run's numbers (None unless a stand-in model made them)."""
    if not demo_models(cfg):
        return None
    return DEMO_NOTE if any(demo_kind(cfg, src) is not None for src in grid.source_users(cfg)) else STANDIN_NOTE


def model_label(cfg: dict, key: str) -> str:
    if key in ("", "none"):
        return "-"
    return cfg["models"].get(key, {}).get("label", key)


def ref_label(cfg: dict, method: str, ref: str) -> str:
    return "Random" if method == "random" else model_label(cfg, ref)


def task_label(task: str) -> str:
    """How a task is named in tables and figures: the paper's NLI / HSD, a user's task as its key."""
    return task.upper() if task in ("nli", "hsd") else task


def task_metric(cfg: dict, task: str) -> str:
    return cfg["tasks"][task]["metric"]


def metric_label(metric: str) -> str:
    return {"accuracy": "accuracy", "macro_f1": "macro-F1"}.get(metric, metric)


def id_set(cfg: dict, task: str) -> str:
    return grid.task_eval_sets(cfg, task)[0]


def ood_sets(cfg: dict, task: str) -> list[str]:
    return grid.task_eval_sets(cfg, task)[1:]


def train_title(cfg: dict, task: str) -> str:
    """The training set's display name (``tasks.<t>.train.label``, else its source)."""
    return cfg["tasks"][task]["train"]["label"] or cfg["tasks"][task]["train"]["source"]


def dataset_label(cfg: dict, task: str, name: str) -> tuple[str, str]:
    """(label, group) of an evaluation set: ``("R1", "AdversarialNLI")``; (name, "") for a set the config lacks."""
    t = cfg["tasks"].get(task, {"id_test": {}, "ood": []})
    entry = next((e for e in [t["id_test"], *t["ood"]] if e.get("name") == name), {})
    return entry.get("label", name), entry.get("group", "")


def dataset_title(cfg: dict, task: str, name: str) -> str:
    label, group = dataset_label(cfg, task, name)
    return f"{group} {label}".strip()


def q_percent(q: float) -> str:
    return str(int(round(q * 100)))


def frac_label(f: Fraction) -> str:
    return "1" if f == 1 else f"{f.numerator}/{f.denominator}"


def seeds_phrase(cfg: dict) -> str:
    n = len(cfg["seeds"])
    return f"{n} seed{'s' if n != 1 else ''} ({', '.join(map(str, cfg['seeds']))})"


def budgets_phrase(cfg: dict) -> str:
    return ", ".join(f"{t}: {cfg['tasks'][t]['steps']:,} steps" for t in active_tasks(cfg))
