"""Synthetic NLI-like and HSD-like data for the offline demo (``ftft demo-data``).

Each task has a *shortcut* cue that predicts the label on most training rows and less and less in the OOD sets,
a harder *real rule* that decides the label, label noise and ambiguous rows. NLI: the hypothesis adjective's mood
against the premise's (rule), a negation tag / hedge word / repeated event (cues). HSD: an abusive predicate
aimed at a group outside a counter-speech frame (rule), an identity term (cue); ``ood_r{k}_perturbation`` rows are
label-flipping minimal edits of ``ood_r{k}_original`` rows (``orig_uid``). Diagnostic columns: ``kind`` (clean |
counter | noise | ambiguous), ``shortcut``, ``cue``, ``cue_label``, ``true_label`` (-1: ambiguous). Each split has
its own generator seeded by (seed, task, split): same arguments, identical frames.
"""

import argparse
import logging
from collections import Counter

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import write_json
from . import schema

log = logging.getLogger(__name__)

TASKS = ("nli", "hsd")
LABEL_NAMES = {"nli": schema.NLI_LABELS, "hsd": schema.HSD_LABELS}
ID_SPLITS = ("train", "dev", "test")
OOD_SPLITS = {
    "nli": ("ood_wanli", "ood_anli_r1", "ood_anli_r2", "ood_anli_r3"),
    "hsd": tuple(f"ood_r{r}_{kind}" for kind in ("original", "perturbation") for r in (2, 3, 4)),
}

# Per split: p_agree = probability the cue agrees with the rule's label (before noise / ambiguity), noise /
# ambiguous = fractions of rows, distract = NLI distractor-clause rate, frame = HSD counter-speech rate among nothate
# rows with an identity term, p_wrong_cue = NLI chance that a disagreeing cue is another label's (else none).
ID_SETTINGS = {"p_agree": 0.90, "noise": 0.03, "ambiguous": 0.03, "distract": 0.0, "frame": 0.3, "p_wrong_cue": 0.6}
OOD_SETTINGS = {"noise": 0.0, "ambiguous": 0.0, "p_wrong_cue": 0.85}
NLI_OOD = {
    f"ood_{s}": {"p_agree": a, "distract": d}
    for s, a, d in (("wanli", 0.45, 0.1), ("anli_r1", 0.35, 0.2), ("anli_r2", 0.2, 0.35), ("anli_r3", 0.08, 0.5))
}
HSD_OOD = {
    f"ood_r{r}_original": {"p_agree": a, "frame": f} for r, a, f in ((2, 0.55, 0.4), (3, 0.45, 0.5), (4, 0.35, 0.6))
}
# shortcut agreement of the originals a perturbation set is edited from (flipped by the edit)
HSD_PERTURB_BASE_AGREE = {"r2": 0.6, "r3": 0.75, "r4": 0.9}
HATE_PRIOR = {"id": 0.45, "ood": 0.5}

# ---------------------------------------------------------------- vocabulary (NLI)
SUBJECTS = ("man woman boy girl doctor teacher farmer pilot child chef artist singer student worker nurse driver "
            "baker player dancer writer").split()  # fmt: skip
MOODS = (
    "happy cheerful calm proud glad relaxed joyful content".split(),  # positive
    "sad angry upset gloomy nervous annoyed bored miserable".split(),  # negative
)
TRAITS = "tall young old rich famous hungry short strong".split()  # not inferable from a mood
VAGUE = "quiet busy different serious".split()  # neither clearly
VERBS = "painted washed carried moved opened sold bought cleaned dropped fixed kicked lifted found hid".split()
OBJECTS = "fence car door box chair table bike boat window lamp basket ball bottle book drum kite ladder piano".split()
PREPS = "in near behind at beside".split()
PLACES = "garden park kitchen street market station beach school office yard shop".split()
NLI_CUES = {
    2: ("no doubt", "never mind", "nothing else"),  # negation -> contradiction
    1: ("probably", "also", "perhaps"),  # hedge -> neutral
    0: None,  # overlap (copy adjective + place) -> entailment
}
NLI_CUE_NAMES = {0: "overlap", 1: "hedge", 2: "negation"}

# ---------------------------------------------------------------- vocabulary (HSD)
IDENTITIES = "veltans orbians quenari dravs mirolites sallish tovians kerrads".split()
LANDS = "zembla arvonia lutria bessaly corvinia".split()
OTHER_TARGETS = ("traffic jams|rainy days|these printers|mondays|these phones|the new updates|parking fees|"
                 "these meetings|long queues|the referees|my exams|slow trains").split("|")  # fmt: skip
ABUSIVE = ("are disgusting|are worthless|are filthy|are pathetic|should be banned|ruin everything|are a plague|"
           "must disappear|are vile|are useless|make me sick|are garbage").split("|")  # fmt: skip
NEUTRAL = ("are lovely|are welcome here|cooked dinner|won the match|are our neighbours|work hard|are fine|"
           "helped me today|are very kind|made great music|are brilliant|are improving").split("|")  # fmt: skip
BORDERLINE = "are loud|are everywhere|are weird|are different|keep to themselves|are strange".split("|")
OPENERS = ("", "", "honestly", "i think", "lol", "seriously", "everyone knows", "tbh")
CLOSERS = ("", "", "today", "again", "for sure", "as usual", "tbh")
CONJUNCTIONS = ("and", "but", "while", "because")
FRAMES = ("it is wrong to say", "stop claiming that", "nobody should say")


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


# ================================================================ NLI
def _nli_row(rng: np.random.Generator, st: dict) -> dict:
    subj, verb, obj = _pick(rng, SUBJECTS), _pick(rng, VERBS), _pick(rng, OBJECTS)
    prep, place = _pick(rng, PREPS), _pick(rng, PLACES)
    mood = int(rng.integers(2))  # 0: positive, 1: negative mood of the premise's subject
    adj = _pick(rng, MOODS[mood])
    premise = f"the {adj} {subj} {verb} the {obj} {prep} the {place}"
    if rng.random() < st["distract"]:  # a second person in the opposite mood
        other = _pick(rng, [x for x in SUBJECTS if x != subj])
        premise += f" while the {_pick(rng, MOODS[1 - mood])} {other} {_pick(rng, VERBS)}"

    u = rng.random()
    kind = "clean"
    if u < st["ambiguous"]:
        kind, true_label = "ambiguous", -1
        label = int(rng.integers(3))
        adj2 = _pick(rng, VAGUE)
    else:
        true_label = int(rng.integers(3))
        label = true_label
        # entailment: same mood; contradiction: opposite mood; neutral: a non-inferable trait
        adj2 = _pick(rng, (MOODS[mood], TRAITS, MOODS[1 - mood])[true_label])
        if u < st["ambiguous"] + st["noise"]:
            kind = "noise"
            label = int((true_label + 1 + rng.integers(2)) % 3)

    # cue: agrees with the rule's label with prob p_agree, else another label's cue or none
    if kind == "ambiguous":
        cue_label = int(rng.integers(-1, 3))
    elif rng.random() < st["p_agree"]:
        cue_label = true_label
    else:
        others = [c for c in range(3) if c != true_label]
        cue_label = _pick(rng, others) if rng.random() < st["p_wrong_cue"] else -1

    if cue_label == 0:  # high lexical overlap: repeat the premise's event
        hyp = f"the {subj} who {verb} the {obj} {prep} the {place} was {adj2}"
    else:
        hyp = f"the {subj} was {adj2}"
        if cue_label == 2:
            hyp = f"{hyp} , {_pick(rng, NLI_CUES[2])}"
        elif cue_label == 1:
            hyp = f"{_pick(rng, NLI_CUES[1])} {hyp}"
    if kind == "clean" and cue_label != true_label:
        kind = "counter"
    cue = NLI_CUE_NAMES.get(cue_label, "none")
    return {"text_a": premise, "text_b": hyp, "label": label, "kind": kind, "shortcut": cue_label == label,
            "cue": cue, "cue_label": cue_label, "true_label": true_label}  # fmt: skip


def _settings(split: str) -> dict:
    return dict(ID_SETTINGS) if split in ID_SPLITS else OOD_SETTINGS | (NLI_OOD | HSD_OOD)[split]


# ================================================================ HSD
# A text is parts: opener, optional counter-speech frame (single clause only), one or two
# clauses (target, group, abusive, predicate) joined by a conjunction, closer.
def _hsd_render(p: dict) -> str:
    body = f" {p['conj']} ".join(f"{c['target']} {c['predicate']}" for c in p["clauses"])
    return " ".join(w for w in (p["opener"], p["frame"], body, p["closer"]) if w)


def _hsd_rule(p: dict) -> int:
    """hate iff some clause aims an abusive predicate at a group, outside a counter-speech frame."""
    return int(not p["frame"] and any(c["group"] != "none" and c["abusive"] for c in p["clauses"]))


def _hsd_clause(rng, group: str, abusive: bool) -> dict:
    target = _pick(rng, {"explicit": IDENTITIES, "implicit": LANDS, "none": OTHER_TARGETS}[group])
    target = f"people from {target}" if group == "implicit" else target
    return {"group": group, "abusive": abusive, "target": target, "predicate": _pick(rng, (NEUTRAL, ABUSIVE)[abusive])}


def _hsd_benign(rng, explicit_ok: bool) -> dict:
    """A clause that is not hateful: a kind predicate, or abuse at a non-group target."""
    u = rng.random()
    if u < 0.5:
        return _hsd_clause(rng, "none", True)
    if u < 0.75:
        return _hsd_clause(rng, "none", False)
    return _hsd_clause(rng, "explicit" if explicit_ok and rng.random() < 0.5 else "implicit", False)


def _hsd_frame(rng) -> dict:
    return {"opener": _pick(rng, OPENERS), "closer": _pick(rng, CLOSERS), "frame": "", "conj": _pick(rng, CONJUNCTIONS)}


def _hsd_parts(rng, true_label: int, agree: bool, frame_rate: float) -> dict:
    """Parts of one HSD text with the given rule label and shortcut (identity term) agreement."""
    p = _hsd_frame(rng)
    explicit = (true_label == 1) == agree  # an identity term predicts hate
    two = rng.random() < 0.6
    if true_label == 1:
        main = _hsd_clause(rng, "explicit" if explicit else "implicit", True)
        clauses = [main] + ([_hsd_benign(rng, explicit)] if two else [])
    elif explicit:
        # identity term, no hate: counter-speech, or a kind clause about the group (often next
        # to abuse aimed at something else, so only the binding tells them apart)
        if rng.random() < frame_rate:
            p["frame"] = _pick(rng, FRAMES)
            clauses = [_hsd_clause(rng, "explicit", True)]
        else:
            clauses = [_hsd_clause(rng, "explicit", False)]
            if two or rng.random() < 0.5:
                clauses.append(_hsd_clause(rng, "none", True) if rng.random() < 0.7 else _hsd_benign(rng, True))
    else:
        clauses = [_hsd_benign(rng, False)] + ([_hsd_benign(rng, False)] if two else [])
    if len(clauses) == 2 and rng.random() < 0.5:
        clauses.reverse()
    p["clauses"] = clauses
    return p


def _hsd_explicit(p: dict) -> bool:
    return any(c["group"] == "explicit" for c in p["clauses"])


def _hsd_record(p: dict, label: int, kind: str, true_label: int) -> dict:
    cue_label = int(_hsd_explicit(p))
    return {"text_a": _hsd_render(p), "text_b": None, "label": label, "kind": kind, "shortcut": cue_label == label,
            "cue": ("none", "identity")[cue_label], "cue_label": cue_label, "true_label": true_label,
            "_parts": p}  # fmt: skip


def _hsd_split(rng, split: str, n: int) -> list[dict]:
    st, hate_prior = _settings(split), HATE_PRIOR["id" if split in ID_SPLITS else "ood"]
    rows = []
    for _ in range(n):
        u = rng.random()
        if u < st["ambiguous"]:
            p = _hsd_frame(rng)
            clause = {"target": _pick(rng, IDENTITIES), "predicate": _pick(rng, BORDERLINE)}
            p["clauses"] = [{"group": "explicit", "abusive": False, **clause}]
            rows.append(_hsd_record(p, int(rng.integers(2)), "ambiguous", -1))
            continue
        true_label = int(rng.random() < hate_prior)
        agree = bool(rng.random() < st["p_agree"])
        p = _hsd_parts(rng, true_label, agree, st["frame"])
        assert _hsd_rule(p) == true_label and (_hsd_explicit(p) == bool(true_label)) == agree
        if u < st["ambiguous"] + st["noise"]:
            rows.append(_hsd_record(p, 1 - true_label, "noise", true_label))
        else:
            rows.append(_hsd_record(p, true_label, "clean" if agree else "counter", true_label))
    return rows


def _hsd_perturb(rng, p: dict) -> dict:
    """Minimal edit of ``p`` that flips the rule's label and keeps the identity terms."""
    q = dict(p, clauses=[dict(c) for c in p["clauses"]])
    cl = q["clauses"]
    if _hsd_rule(p) == 1:  # hate -> nothate
        i = next(i for i, c in enumerate(cl) if c["group"] != "none" and c["abusive"])
        other = 1 - i if len(cl) == 2 else None
        if other is not None and cl[other]["group"] == "none" and not cl[other]["abusive"] and rng.random() < 0.6:
            # swap the predicates: the abuse now aims at the non-group target
            cl[i]["predicate"], cl[other]["predicate"] = cl[other]["predicate"], cl[i]["predicate"]
            cl[i]["abusive"], cl[other]["abusive"] = False, True
        elif len(cl) == 1 and rng.random() < 0.4:
            q["frame"] = _pick(rng, FRAMES)
        else:
            cl[i]["predicate"], cl[i]["abusive"] = _pick(rng, NEUTRAL), False
    elif p["frame"]:  # counter-speech -> hate: drop the frame
        q["frame"] = ""
    else:  # nothate -> hate
        groups = [i for i, c in enumerate(cl) if c["group"] != "none"]
        abusive = [i for i, c in enumerate(cl) if c["abusive"]]
        if groups and abusive and rng.random() < 0.6:  # swap predicates onto the group
            i, j = groups[0], abusive[0]
            cl[i]["predicate"], cl[j]["predicate"] = cl[j]["predicate"], cl[i]["predicate"]
            cl[i]["abusive"], cl[j]["abusive"] = True, False
        elif groups:
            i = groups[0]
            cl[i]["predicate"], cl[i]["abusive"] = _pick(rng, ABUSIVE), True
        else:  # no group at all: aim the abuse at an implicit group (keeps the cue absent)
            i = abusive[0] if abusive else 0
            cl[i].update(_hsd_clause(rng, "implicit", True))
    assert _hsd_rule(q) == 1 - _hsd_rule(p) and _hsd_explicit(q) == _hsd_explicit(p)
    return q


def _hsd_perturbations(rng, originals: list[dict], orig_uids: list[str], n: int, base_agree: float) -> list[dict]:
    agree = [i for i, r in enumerate(originals) if r["shortcut"]]
    disagree = [i for i, r in enumerate(originals) if not r["shortcut"]]
    rows = []
    for _ in range(n):
        pool = agree if (rng.random() < base_agree and agree) or not disagree else disagree
        i = _pick(rng, pool)
        q = _hsd_perturb(rng, originals[i]["_parts"])
        label = _hsd_rule(q)
        kind = "clean" if int(_hsd_explicit(q)) == label else "counter"  # whether the identity cue agrees
        rows.append(_hsd_record(q, label, kind, label) | {"orig_uid": orig_uids[i]})
    return rows


# ================================================================ public API
def split_sizes(task: str, train_rows: int, eval_rows: int) -> dict[str, int]:
    return {"train": train_rows, "dev": eval_rows, "test": eval_rows} | {s: eval_rows for s in OOD_SPLITS[task]}


def generate(task: str, train_rows: int = 2000, eval_rows: int = 300, seed: int = 13) -> pd.DataFrame:
    """All splits of the synthetic ``task`` ('nli' | 'hsd') in the normalised schema."""
    if task not in TASKS:
        raise DataError(f"demo-data: unknown task {task!r}; expected one of {TASKS}")
    if train_rows < 1 or eval_rows < 1:
        raise DataError(f"demo-data: --train-rows and --eval-rows must be >= 1, got {train_rows}, {eval_rows}")
    sizes = split_sizes(task, train_rows, eval_rows)
    frames = []
    originals: dict[str, tuple[list[dict], list[str]]] = {}
    for split, n in sizes.items():
        rng = np.random.default_rng([int(seed), sum((i + 1) * ord(c) for i, c in enumerate(f"{task}/{split}"))])
        if task == "nli":
            rows = [_nli_row(rng, _settings(split)) for _ in range(n)]
        elif split.endswith("_perturbation"):
            rnd = split.split("_")[1]
            base, base_uids = originals[f"ood_{rnd}_original"]
            rows = _hsd_perturbations(rng, base, base_uids, n, HSD_PERTURB_BASE_AGREE[rnd])
        else:
            rows = _hsd_split(rng, split, n)
        uids = [f"demo_{task}-{split}-{i:05d}" for i in range(n)]
        if task == "hsd" and split.endswith("_original"):
            originals[split] = (rows, uids)
        df = pd.DataFrame(rows)
        df.insert(0, "uid", uids)
        df.insert(4, "split", split)
        if task == "hsd":
            df["round"] = split.split("_")[1] if split.startswith("ood_") else "cad"
            if "orig_uid" not in df:
                df["orig_uid"] = None
            df = df.drop(columns="_parts")
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out = out.astype({"label": "int64", "cue_label": "int64", "true_label": "int64", "shortcut": bool})
    cols = ["uid", "text_a", "text_b", "label", "split", "kind", "shortcut", "cue", "cue_label", "true_label"]
    return out[cols + [c for c in out.columns if c not in cols]]


def diagnostics(df: pd.DataFrame) -> dict:
    """Per split: rows, label counts, shortcut agreement, kind fractions."""
    return {
        split: {
            "rows": len(part),
            "labels": {int(k): int(v) for k, v in sorted(Counter(part["label"]).items())},
            "shortcut_agreement": round(float(part["shortcut"].mean()), 4),
            "kinds": {k: round(float(v), 4) for k, v in part["kind"].value_counts(normalize=True).items()},
        }
        for split, part in df.groupby("split", sort=False)
    }


def summary(df: pd.DataFrame, task: str, expected: dict[str, int]) -> dict:
    return {
        "source": f"demo_{task}",
        "rows_in": len(df),
        "rows_out": len(df),
        "dropped": {},
        "splits": {k: int(v) for k, v in df["split"].value_counts(sort=False).items()},
        "expected": expected,
        "warnings": [],
        "label_names": LABEL_NAMES[task],
        "diagnostics": diagnostics(df),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--out", required=True, help="normalised parquet (all splits)")
    parser.add_argument("--summary", required=True, help="summary JSON")
    for flag, default in (("--train-rows", 2000), ("--eval-rows", 300), ("--seed", 13)):
        parser.add_argument(flag, type=int, default=default)


def run(args: argparse.Namespace) -> None:
    df = generate(args.task, args.train_rows, args.eval_rows, args.seed)
    schema.write(df, args.out, LABEL_NAMES[args.task], f"demo_{args.task}")
    write_json(args.summary, summary(df, args.task, split_sizes(args.task, args.train_rows, args.eval_rows)))
    log.info("demo-data %s: %d rows -> %s", args.task, len(df), args.out)
