"""MultiBootstrap: vectorised result == a direct per-sample loop on the same draws; sanity."""

from __future__ import annotations

import numpy as np
import pytest

from ftft import stats


def direct_accuracy(pred, labels) -> float:
    return sum(int(p == y) for p, y in zip(pred, labels, strict=True)) / len(labels)


def direct_macro_f1(pred, labels) -> float:
    classes = sorted(set(labels) | set(pred))
    f1s = []
    for c in classes:
        tp = sum(1 for p, y in zip(pred, labels, strict=True) if p == c and y == c)
        fp = sum(1 for p, y in zip(pred, labels, strict=True) if p == c and y != c)
        fn = sum(1 for p, y in zip(pred, labels, strict=True) if p != c and y == c)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(f1s) / len(f1s)


DIRECT = {"accuracy": direct_accuracy, "macro_f1": direct_macro_f1}


def direct_multibootstrap(preds_a, preds_b, labels, metric, n_samples, seed):
    """Slow reference: replay the same draws, one sample and one seed at a time."""
    fn = DIRECT[metric]
    diffs = []
    draws = stats.bootstrap_draws(n_samples, len(labels), len(preds_a), len(preds_b), seed)
    for inst, sa, sb in draws:
        for b in range(len(inst)):
            idx = inst[b]
            lab = [int(labels[i]) for i in idx]
            a = np.mean([fn([int(preds_a[s][i]) for i in idx], lab) for s in sa[b]])
            bb = np.mean([fn([int(preds_b[s][i]) for i in idx], lab) for s in sb[b]])
            diffs.append(a - bb)
    diffs = np.array(diffs)
    return float(diffs.mean()), float(np.mean(diffs <= 0)), diffs


@pytest.fixture
def small_data():
    rng = np.random.default_rng(3)
    n, c = 40, 3
    labels = rng.integers(0, c, n)
    preds_a = np.where(rng.random((3, n)) < 0.7, labels, rng.integers(0, c, (3, n)))
    preds_b = np.where(rng.random((4, n)) < 0.6, labels, rng.integers(0, c, (4, n)))
    return preds_a, preds_b, labels


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_matches_direct_loop(small_data, metric):
    preds_a, preds_b, labels = small_data
    n_samples = stats.CHUNK + 60  # crosses a chunk boundary
    mean, p = stats.multibootstrap(preds_a, preds_b, labels, metric, n_samples, seed=7)
    d_mean, d_p, d_diffs = direct_multibootstrap(preds_a, preds_b, labels, metric, n_samples, seed=7)
    samples = stats.multibootstrap_samples(preds_a, preds_b, labels, metric, n_samples, seed=7)
    np.testing.assert_allclose(samples, d_diffs, atol=1e-12)
    assert mean == pytest.approx(d_mean, abs=1e-12)
    assert p == pytest.approx(d_p, abs=1e-12)


def test_macro_f1_absent_class_follows_sklearn_convention():
    # class 2 never occurs in labels or predictions: it does not enter the macro average
    labels = np.array([0, 0, 1, 1])
    preds = np.array([[0, 1, 1, 1]])
    diffs = stats.multibootstrap_samples(preds, np.array([[0, 0, 0, 0]]), labels, "macro_f1", 50, seed=0)
    draws = stats.bootstrap_draws(50, 4, 1, 1, 0)
    inst = np.concatenate([d[0] for d in draws])
    expected = [
        direct_macro_f1(list(preds[0][i]), list(labels[i])) - direct_macro_f1([0] * 4, list(labels[i])) for i in inst
    ]
    np.testing.assert_allclose(diffs, expected, atol=1e-12)


def test_deterministic_for_a_seed(small_data):
    a, b, y = small_data
    assert stats.multibootstrap(a, b, y, "accuracy", 300, seed=1) == stats.multibootstrap(a, b, y, "accuracy", 300, 1)
    s1 = stats.multibootstrap_samples(a, b, y, "accuracy", 300, seed=1)
    s2 = stats.multibootstrap_samples(a, b, y, "accuracy", 300, seed=2)
    assert not np.array_equal(s1, s2)


def test_identical_systems_mean_zero(small_data):
    a, _, y = small_data
    mean, p = stats.multibootstrap(a[:1], a[:1], y, "accuracy", 500, seed=0)
    assert mean == 0.0 and p == 1.0  # one seed each: every difference is exactly 0
    mean, p = stats.multibootstrap(a, a.copy(), y, "macro_f1", 2000, seed=0)
    assert abs(mean) < 0.01 and 0.3 < p < 0.8  # seeds resampled independently: symmetric around 0


def test_clearly_better_system_has_p_zero():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    good = np.tile(y, (4, 1))
    bad = np.where(rng.random((4, 200)) < 0.5, y, 1 - y)
    mean, p = stats.multibootstrap(good, bad, y, "accuracy", 1000, seed=0)
    assert p == 0.0
    assert mean == pytest.approx(1 - (bad == y).mean(), abs=0.03)
    mean_r, p_r = stats.multibootstrap(bad, good, y, "accuracy", 1000, seed=0)
    assert p_r == 1.0 and mean_r < 0


def test_bad_input():
    with pytest.raises(ValueError):
        stats.multibootstrap(np.zeros((2, 3), int), np.zeros((2, 4), int), np.zeros(3, int))
    with pytest.raises(ValueError):
        stats.multibootstrap(np.zeros((1, 3), int), np.zeros((1, 3), int), np.zeros(3, int), metric="auc")
