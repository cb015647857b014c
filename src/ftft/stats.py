"""MultiBootstrap (Sellam et al. 2022) for Table 5, and Spearman's rank correlation with a permutation p-value.

A bootstrap sample draws ``S_a`` seeds of A and ``S_b`` of B (with replacement, independently) and N test
instances (shared by both systems); ``stat(X)`` is the mean over the drawn seeds of the metric on the drawn
instances. ``p = (1 + #{diff + margin <= 0}) / (1 + B)``: one-sided, H0 "A is not better than B" (with a margin:
non-inferiority). Macro-F1 averages the classes present in labels or predictions (as sklearn). Draws
(``PCG64(seed)``): all seed draws of A, then of B, then the instances in chunks of ``CHUNK`` samples.
"""

import itertools
from collections.abc import Iterator

import numpy as np
import pandas as pd

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
        yield rng.integers(0, n, size=(k, n)), seeds_a[start : start + k], seeds_b[start : start + k]


def _per_seed_scores(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray, metric: str, n_classes: int):
    """Metric of every seed under every instance weighting [k, N]: [k, S]. The weighted counts are sums of
    integers, exact in float64."""
    if metric == "accuracy":
        return weights @ (preds == labels).astype(np.float64).T / weights.sum(axis=1)[:, None]
    if metric == "macro_f1":
        (s, _), k, classes = preds.shape, weights.shape[0], np.arange(n_classes)
        lab = (labels == classes[:, None]).astype(np.float64)  # [C, N]
        prd = (preds[:, None, :] == classes[:, None]).astype(np.float64)  # [S, C, N]
        tp, p = ((weights @ x.reshape(s * n_classes, -1).T).reshape(k, s, n_classes) for x in (prd * lab, prd))
        denom = p + (weights @ lab.T)[:, None, :]  # predicted + true counts per class
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        return f1.sum(axis=2) / np.maximum((denom > 0).sum(axis=2), 1)
    raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")


def p_value(diffs: np.ndarray, margin: float = 0.0) -> float:
    """One-sided bootstrap p-value of H0 "diff <= -margin": (1 + #{diff + margin <= 0}) / (1 + B)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    return float((1 + np.sum(diffs + margin <= 0)) / (1 + len(diffs)))


def multibootstrap(
    preds_a, preds_b, labels, metric="accuracy", n_samples=5000, seed=0, margin=0.0
) -> tuple[float, float]:
    """(mean of stat(A) - stat(B), one-sided ``p_value(diffs, margin)``) in metric units (0-1), deterministic for a
    ``seed``; ``preds_a`` [S_a, N], ``preds_b`` [S_b, N]: class ids of each seed on the N instances of ``labels``."""
    diffs = multibootstrap_samples(preds_a, preds_b, labels, metric, n_samples, seed)
    return float(diffs.mean()), p_value(diffs, margin)


def _bootstrap(systems_a, systems_b, labels, metric: str, n_samples: int, seed: int, combine) -> np.ndarray:
    """``combine(stat of each system of A, then of B [k])`` per sample; the systems of A (and of B) share a seed draw."""
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.shape[0]
    a, b = ([np.atleast_2d(np.asarray(x, dtype=np.int64)) for x in xs] for xs in (systems_a, systems_b))
    if any(x.shape[1] != n for x in a + b):
        raise ValueError(f"predictions {', '.join(str(x.shape) for x in a + b)} do not match {n} labels")
    if any(x.shape[0] == 0 for x in a + b) or n == 0:
        raise ValueError("multibootstrap needs at least one seed per system and one instance")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    n_classes = int(max(labels.max(), *(x.max() for x in a + b))) + 1
    out = []
    for inst, sa, sb in bootstrap_draws(n_samples, n, a[0].shape[0], b[0].shape[0], seed):
        k = len(inst)  # instance counts [k, n]: the weights of each bootstrap sample (exact in float64)
        w = np.bincount((inst + n * np.arange(k)[:, None]).ravel(), minlength=k * n).reshape(k, n).astype(np.float64)
        stat = [
            np.take_along_axis(_per_seed_scores(x, labels, w, metric, n_classes), s, axis=1).mean(axis=1)
            for xs, s in ((a, sa), (b, sb))
            for x in xs
        ]
        out.append(combine(*stat))
    return np.concatenate(out)


def relative_bootstrap_samples(
    a_at, a_full, b_at, b_full, labels, metric="accuracy", n_samples=1000, seed=0
) -> np.ndarray:
    """Per-sample ``rel(A) - rel(B)``, rel(X) = mean_seeds score(X at f) / mean_seeds score(X full budget); a
    system's two checkpoints share its seed draw."""

    def combine(at_a, full_a, at_b, full_b):
        return at_a / np.where(full_a > 0, full_a, np.nan) - at_b / np.where(full_b > 0, full_b, np.nan)

    return _bootstrap((a_at, a_full), (b_at, b_full), labels, metric, n_samples, seed, combine)


def _ranks(a) -> np.ndarray:
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
    """One-sided p-value of rho > 0: share of permutations of y with rho >= the observed one (all n! permutations up
    to ``max_exact`` points, the identity included, so never 0; else ``n_samples`` random ones, +1 corrected)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if np.isnan(spearman(x, y)):
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    if exact := len(y) <= max_exact:
        rys = ry[np.array(list(itertools.permutations(range(len(y)))), dtype=np.int64)]
    else:
        rng = np.random.default_rng(seed)
        rys = np.stack([rng.permutation(ry) for _ in range(n_samples)])
    hits = int(np.sum(_rho_rows(rx, rys) >= _rho_rows(rx, ry[None, :])[0] - 1e-12))
    return hits / len(rys) if exact else (1 + hits) / (1 + n_samples)


def multibootstrap_samples(preds_a, preds_b, labels, metric="accuracy", n_samples=5000, seed=0) -> np.ndarray:
    """The per-sample differences stat(A) - stat(B) [n_samples]."""
    return _bootstrap((preds_a,), (preds_b,), labels, metric, n_samples, seed, np.subtract)
