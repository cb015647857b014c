"""ftft.stats: MultiBootstrap (vectorised == a direct loop on the same draws), its p-value and
non-inferiority margin, the halting-curve bootstrap, Spearman and its permutation p-value."""

import itertools

import numpy as np
import pytest

from ftft import stats


def direct_macro_f1(pred, labels) -> float:
    """Mean F1 over the classes in labels or predictions (as sklearn), counted one instance at a time."""
    pairs, f1s = list(zip(pred, labels, strict=True)), []
    for c in sorted(set(labels) | set(pred)):
        tp = sum(p == c and y == c for p, y in pairs)
        fp_fn = sum((p == c) != (y == c) for p, y in pairs)
        f1s.append(2 * tp / (2 * tp + fp_fn))
    return sum(f1s) / len(f1s)


DIRECT = {"accuracy": lambda pred, labels: np.mean(np.equal(pred, labels)), "macro_f1": direct_macro_f1}


def direct_samples(systems, labels, metric, n_samples, seed, combine=lambda a, b: a - b):
    """Slow reference: replay the same draws, one sample and one seed at a time; ``systems``: (preds, "a" | "b")."""
    fn = DIRECT[metric]
    n_a, n_b = (next(len(x) for x, w in systems if w == who) for who in "ab")
    out = []
    for inst, sa, sb in stats.bootstrap_draws(n_samples, len(labels), n_a, n_b, seed):
        for b, idx in enumerate(inst):
            lab = [int(labels[i]) for i in idx]
            means = [
                np.mean([fn([int(x[s][i]) for i in idx], lab) for s in (sa if w == "a" else sb)[b]]) for x, w in systems
            ]
            out.append(combine(*means))
    return np.array(out)


def brute_p(diffs, margin=0.0) -> float:
    """(1 + #{diff + margin <= 0}) / (1 + B), counted one by one."""
    return (1 + sum(d + margin <= 0 for d in diffs)) / (1 + len(diffs))


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_matches_direct_loop(metric):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 40)  # 40 instances, 3 classes, 3 seeds of A and 4 of B
    preds_a = np.where(rng.random((3, 40)) < 0.7, labels, rng.integers(0, 3, (3, 40)))
    preds_b = np.where(rng.random((4, 40)) < 0.6, labels, rng.integers(0, 3, (4, 40)))
    n_samples = stats.CHUNK + 60  # crosses a chunk boundary
    mean, p = stats.multibootstrap(preds_a, preds_b, labels, metric, n_samples, seed=7)
    d_diffs = direct_samples([(preds_a, "a"), (preds_b, "b")], labels, metric, n_samples, seed=7)
    samples = stats.multibootstrap_samples(preds_a, preds_b, labels, metric, n_samples, seed=7)
    np.testing.assert_allclose(samples, d_diffs, atol=1e-12)
    assert mean == pytest.approx(d_diffs.mean(), abs=1e-12)
    assert p == pytest.approx(brute_p(d_diffs), abs=1e-12)
    assert (mean, p) == stats.multibootstrap(preds_a, preds_b, labels, metric, n_samples, seed=7)  # deterministic
    assert not np.array_equal(samples, stats.multibootstrap_samples(preds_a, preds_b, labels, metric, n_samples, 8))


def test_macro_f1_absent_class_follows_sklearn_convention():
    # a class in neither the drawn labels nor the predictions does not enter the macro average
    labels, systems = np.array([0, 0, 1, 1]), [(np.array([[0, 1, 1, 1]]), "a"), (np.zeros((1, 4), int), "b")]
    diffs = stats.multibootstrap_samples(systems[0][0], systems[1][0], labels, "macro_f1", 50, seed=0)
    np.testing.assert_allclose(diffs, direct_samples(systems, labels, "macro_f1", 50, 0), atol=1e-12)


def test_identical_systems():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    a = np.where(rng.random((3, 50)) < 0.7, y, (y + 1) % 3)
    mean, p = stats.multibootstrap(a[:1], a[:1], y, "accuracy", 500, seed=0)
    assert mean == 0.0 and p == 1.0  # one seed each: every difference is exactly 0 (all count as <= 0)
    mean, p = stats.multibootstrap(a, a.copy(), y, "macro_f1", 2000, seed=0)
    assert abs(mean) < 0.01 and 0.3 < p < 0.8  # seeds resampled independently: symmetric around 0


def test_p_value_formula():
    diffs = np.array([0.3, -0.1, 0.0, 0.2, 0.05])
    assert stats.p_value(diffs) == (1 + 2) / (1 + 5)  # -0.1 and 0.0 count
    assert stats.p_value(diffs, margin=0.1) == (1 + 1) / 6  # only -0.1 + 0.1 = 0 is <= 0
    assert stats.p_value(diffs, margin=0.2) == 1 / 6
    assert stats.p_value(np.ones(99)) == 0.01


def test_margin_is_a_non_inferiority_test():
    """A system 1 point worse than B is not better (p large) but non-inferior with a 3-point margin."""
    rng = np.random.default_rng(11)
    n = 2000
    y = rng.integers(0, 2, n)
    u = rng.random(n)
    b = np.tile(np.where(u < 0.80, y, 1 - y), (3, 1))
    a = np.tile(np.where(u < 0.79, y, 1 - y), (3, 1))  # right on a subset of B's instances
    diffs = stats.multibootstrap_samples(a, b, y, "accuracy", 400, seed=0)
    mean, p = stats.multibootstrap(a, b, y, "accuracy", 400, seed=0)
    assert mean < 0 and p > 0.9
    mean_m, p_m = stats.multibootstrap(a, b, y, "accuracy", 400, seed=0, margin=0.03)
    assert p_m == pytest.approx(brute_p(diffs, 0.03)) and p_m < 0.05 and mean_m == mean  # the mean ignores it
    _, p_small = stats.multibootstrap(a, b, y, "accuracy", 400, seed=0, margin=0.005)
    assert p_small > 0.5  # 1 point worse is not within half a point


@pytest.mark.parametrize(
    ("a", "b", "kw"), [((2, 3), (2, 4), {}), ((1, 3), (1, 3), {"metric": "auc"}), ((0, 3), (1, 3), {})]
)
def test_bad_input(a, b, kw):
    with pytest.raises(ValueError):
        stats.multibootstrap(np.zeros(a, int), np.zeros(b, int), np.zeros(3, int), **kw)


def test_relative_bootstrap_matches_direct_loop():
    rng = np.random.default_rng(4)
    n = 30
    y = rng.integers(0, 2, n)
    arrays = [np.where(rng.random((s, n)) < p, y, 1 - y) for s, p in ((2, 0.6), (2, 0.8), (3, 0.5), (3, 0.9))]
    d = stats.relative_bootstrap_samples(*arrays, y, "accuracy", 40, seed=3)
    systems = list(zip(arrays, "aabb", strict=True))
    expect = direct_samples(
        systems, y, "accuracy", 40, 3, lambda a_at, a_full, b_at, b_full: a_at / a_full - b_at / b_full
    )
    np.testing.assert_allclose(d, expect, atol=1e-12)


def direct_spearman(x, y) -> float:
    """The reference: scipy's Spearman (average ranks for ties)."""
    return float(pytest.importorskip("scipy.stats").spearmanr(x, y).statistic)


@pytest.mark.parametrize(
    "x,y",
    [
        ([1, 2, 3, 4, 5], [1, 3, 2, 5, 4]),
        ([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]),  # perfectly negative: every permutation counts
        ([0.2, 0.4, 0.1, 0.9, 0.5, 0.7], [1, 2, 2, 7, 3, 6]),  # ties
        ([0.3, 0.1, 0.1, 0.9, 0.5, 0.7], [10, 20, 20, 5, 1, 0]),  # ties on both sides
        ([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 8]),  # 8! permutations, only one as good
    ],
)
def test_spearman_and_its_permutation_p_exact_for_small_n(x, y):
    obs = direct_spearman(x, y)
    assert stats.spearman(x, y) == pytest.approx(obs)
    perms = list(itertools.permutations(y))
    hits = sum(direct_spearman(x, p) >= obs - 1e-9 for p in perms) if len(y) < 8 else 1
    assert stats.spearman_permutation_p(x, y) == pytest.approx(hits / len(perms))
    assert stats.spearman_permutation_p(x, y) > 0


def test_spearman_permutation_p_random_beyond_max_exact_and_nan_for_a_constant_side():
    rng = np.random.default_rng(1)
    x = rng.random(10)
    y = x + 0.3 * rng.random(10)
    p = stats.spearman_permutation_p(x, y, max_exact=8, n_samples=300, seed=4)
    # brute force on the same permutations: numpy's permutation of y with the same generator
    gen = np.random.default_rng(4)
    obs = direct_spearman(x, y)
    hits = sum(direct_spearman(x, gen.permutation(y)) >= obs - 1e-9 for _ in range(300))
    assert p == pytest.approx((1 + hits) / 301) and 0 < p < 0.05
    assert np.isnan(stats.spearman([1, 1, 1], [1, 2, 3]))
    assert np.isnan(stats.spearman_permutation_p([1, 2, 3], [4, 4, 4]))
