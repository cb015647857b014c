"""MultiBootstrap (Sellam et al. 2022, "The MultiBERTs") for Table 5.

Compare system A (e.g. DM, several seeds) with system B (ERM, several seeds) on one test set
(all OOD sets of a task pooled). Each bootstrap sample draws, with replacement,

1. ``S_a`` seeds of A and ``S_b`` seeds of B, independently per system (unpaired seeds), and
2. ``N`` test instances, the same instance sample for both systems,

and computes ``stat(X) = mean over the drawn seeds s of metric(preds_X[s, I], labels[I])``.
The result is the mean of ``stat(A) - stat(B)`` over the samples and the one-sided p-value
of H0 "A is not better than B" (or, with a ``margin``, "A is worse than B by at least the
margin": a non-inferiority test), ``p = (1 + #{samples with diff + margin <= 0}) / (1 + B)``:
the bootstrap p-value with the usual +1 correction, never 0.

Vectorised: an instance sample is a count vector ``w`` (how often each instance is drawn), so
accuracy is ``correct @ w / N`` and macro-F1 comes from the weighted confusion counts
``TP_c = sum w [pred=c][label=c]``, ``P_c = sum w [pred=c]``, ``L_c = sum w [label=c]``,
``F1_c = 2 TP_c / (P_c + L_c)``, averaged over the classes with ``P_c + L_c > 0`` (as sklearn's
``f1_score(average="macro")``, which only counts labels present in y_true or y_pred).

Random draws (numpy ``Generator(PCG64(seed))``), in this order: all seed draws of A
``[n_samples, S_a]``, then all of B ``[n_samples, S_b]``, then the instance draws in chunks of
``CHUNK`` samples, ``[k, N]`` each; ``bootstrap_draws`` yields exactly these, so a direct
computation can replay them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CHUNK = 250
METRICS = ("accuracy", "macro_f1")


def bootstrap_draws(
    n_samples: int, n: int, s_a: int, s_b: int, seed: int, chunk: int = CHUNK
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (instance indices [k, n], seeds of A [k, s_a], seeds of B [k, s_b]) per chunk."""
    rng = np.random.Generator(np.random.PCG64(seed))
    seeds_a = rng.integers(0, s_a, size=(n_samples, s_a))
    seeds_b = rng.integers(0, s_b, size=(n_samples, s_b))
    for start in range(0, n_samples, chunk):
        k = min(chunk, n_samples - start)
        inst = rng.integers(0, n, size=(k, n))
        yield inst, seeds_a[start : start + k], seeds_b[start : start + k]


def _counts(idx: np.ndarray, size: int) -> np.ndarray:
    """[k, m] indices in [0, size) -> [k, size] counts (float64)."""
    k = idx.shape[0]
    flat = idx + (np.arange(k)[:, None] * size)
    return np.bincount(flat.ravel(), minlength=k * size).reshape(k, size).astype(np.float64)


def _per_seed_scores(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray, metric: str, n_classes: int):
    """Metric of every seed under every instance weighting: [k, S].

    Every sum over instances is one product ``weights [k, N] @ indicators.T [N, m]`` (this
    orientation keeps BLAS fast on C-ordered arrays).
    """
    s = preds.shape[0]
    total = weights.sum(axis=1)[:, None]  # [k, 1]
    if metric == "accuracy":
        correct = (preds == labels[None, :]).astype(np.float64)  # [S, N]
        return weights @ correct.T / total
    if metric == "macro_f1":
        classes = np.arange(n_classes)
        lab = (labels[None, :] == classes[:, None]).astype(np.float64)  # [C, N]
        prd = (preds[:, None, :] == classes[None, :, None]).astype(np.float64)  # [S, C, N]
        ind = np.concatenate([(prd * lab[None]).reshape(s * n_classes, -1), prd.reshape(s * n_classes, -1), lab])
        sums = weights @ ind.T  # [k, 2 S C + C]
        k = weights.shape[0]
        tp = sums[:, : s * n_classes].reshape(k, s, n_classes)
        p = sums[:, s * n_classes : 2 * s * n_classes].reshape(k, s, n_classes)
        lc = sums[:, 2 * s * n_classes :][:, None, :]  # [k, 1, C]
        denom = p + lc
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        present = (denom > 0).sum(axis=2)
        return f1.sum(axis=2) / np.maximum(present, 1)
    raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")


def _system_stat(scores: np.ndarray, seed_idx: np.ndarray) -> np.ndarray:
    """scores [k, S], seed_idx [k, m] -> mean over the drawn seeds per sample [k]."""
    k = seed_idx.shape[0]
    return scores[np.arange(k)[:, None], seed_idx].mean(axis=1)


def p_value(diffs: np.ndarray, margin: float = 0.0) -> float:
    """One-sided bootstrap p-value of H0 "diff <= -margin": (1 + #{diff + margin <= 0}) / (1 + B)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    return float((1 + np.sum(diffs + margin <= 0)) / (1 + len(diffs)))


def multibootstrap(
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    labels: np.ndarray,
    metric: str = "accuracy",
    n_samples: int = 5000,
    seed: int = 0,
    margin: float = 0.0,
) -> tuple[float, float]:
    """(mean of stat(A) - stat(B), one-sided p-value ``p_value(diffs, margin)``); metric units (0-1).

    ``preds_a`` [S_a, N] and ``preds_b`` [S_b, N]: predicted class ids of each seed on the same
    N instances (same order as ``labels``). Deterministic for a given ``seed``.
    """
    diffs = multibootstrap_samples(preds_a, preds_b, labels, metric, n_samples, seed)
    return float(diffs.mean()), p_value(diffs, margin)


def relative_bootstrap_samples(
    a_at, a_full, b_at, b_full, labels, metric="accuracy", n_samples=1000, seed=0
) -> np.ndarray:
    """Per-sample ``rel(A) - rel(B)``, rel(X) = mean_seeds score(X at f) / mean_seeds score(X full budget).

    ``x_at`` / ``x_full`` [S_x, N]: predictions of the same seeds at the halting fraction and at
    the end (the seed draw is shared by a system's two checkpoints; instances by everything).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.shape[0]
    arrays = [np.atleast_2d(np.asarray(x, dtype=np.int64)) for x in (a_at, a_full, b_at, b_full)]
    n_classes = int(max(labels.max(), *(x.max() for x in arrays))) + 1
    out = np.empty(n_samples, dtype=np.float64)
    pos = 0
    for inst, sa, sb in bootstrap_draws(n_samples, n, arrays[0].shape[0], arrays[2].shape[0], seed):
        w = _counts(inst, n)
        st = [
            _system_stat(_per_seed_scores(x, labels, w, metric, n_classes), s)
            for x, s in zip(arrays, (sa, sa, sb, sb), strict=True)
        ]
        rel_a = st[0] / np.where(st[1] > 0, st[1], np.nan)
        rel_b = st[2] / np.where(st[3] > 0, st[3], np.nan)
        out[pos : pos + len(w)] = rel_a - rel_b
        pos += len(w)
    return out


def _ranks(a) -> np.ndarray:
    import pandas as pd

    return pd.Series(np.asarray(a, float)).rank().to_numpy()


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN if either side is constant."""
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _rho_rows(rx: np.ndarray, rys: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``rx`` with each row of ``rys`` (rows: permutations of one rank vector)."""
    dx = rx - rx.mean()
    dy = rys - rys.mean(axis=1, keepdims=True)
    return (dy @ dx) / (np.sqrt(dx @ dx) * np.sqrt((dy * dy).sum(axis=1)))


def spearman_permutation_p(x, y, max_exact: int = 8, n_samples: int = 10000, seed: int = 0) -> float:
    """One-sided p-value of rho > 0: share of permutations of y with rho >= the observed one
    (all n! permutations up to ``max_exact`` points, the identity included, so never 0; else
    ``n_samples`` random ones, +1 corrected). Vectorised over the permutations: the ranks of a
    permuted y are the permuted ranks of y."""
    import itertools

    x, y = np.asarray(x, float), np.asarray(y, float)
    if np.isnan(spearman(x, y)):
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    obs = _rho_rows(rx, ry[None, :])[0]
    if len(y) <= max_exact:
        perms = np.array(list(itertools.permutations(range(len(y)))), dtype=np.int64)
        return float(np.mean(_rho_rows(rx, ry[perms]) >= obs - 1e-12))
    rng = np.random.default_rng(seed)
    rys = np.stack([rng.permutation(ry) for _ in range(n_samples)])
    hits = int(np.sum(_rho_rows(rx, rys) >= obs - 1e-12))
    return float((1 + hits) / (1 + n_samples))


def multibootstrap_samples(preds_a, preds_b, labels, metric="accuracy", n_samples=5000, seed=0) -> np.ndarray:
    """The per-sample differences stat(A) - stat(B) [n_samples]."""
    preds_a = np.atleast_2d(np.asarray(preds_a, dtype=np.int64))
    preds_b = np.atleast_2d(np.asarray(preds_b, dtype=np.int64))
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.shape[0]
    if preds_a.shape[1] != n or preds_b.shape[1] != n:
        raise ValueError(f"predictions {preds_a.shape}, {preds_b.shape} do not match {n} labels")
    if preds_a.shape[0] == 0 or preds_b.shape[0] == 0 or n == 0:
        raise ValueError("multibootstrap needs at least one seed per system and one instance")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    n_classes = int(max(labels.max(), preds_a.max(), preds_b.max())) + 1
    out = np.empty(n_samples, dtype=np.float64)
    pos = 0
    for inst, sa, sb in bootstrap_draws(n_samples, n, preds_a.shape[0], preds_b.shape[0], seed):
        w = _counts(inst, n)
        stat_a = _system_stat(_per_seed_scores(preds_a, labels, w, metric, n_classes), sa)
        stat_b = _system_stat(_per_seed_scores(preds_b, labels, w, metric, n_classes), sb)
        out[pos : pos + len(w)] = stat_a - stat_b
        pos += len(w)
    return out
