"""Checkpoint evaluation: class probabilities on an eval set, accuracy and macro-F1 (over the task's whole label
set; a class with no true and no predicted instance scores 0, scikit-learn's convention).
"""

from __future__ import annotations

import numpy as np
import torch

from .data import Encoded, collate


@torch.no_grad()
def predict_probs(model, data: Encoded, batch_size: int, device: torch.device) -> np.ndarray:
    """Softmax probabilities [M, C] (float32) of ``model`` on ``data`` in eval mode, in the order of ``data``
    (batches of length-sorted instances: the least padding)."""
    was_training = model.training
    model.eval()
    chunks = []
    order = np.argsort(data.lengths, kind="stable")
    try:
        for start in range(0, len(data), batch_size):
            batch = collate(data, order[start : start + batch_size], device)
            logits = model(**batch.inputs).logits
            chunks.append(torch.softmax(logits.float(), dim=-1))
    finally:
        model.train(was_training)
    probs = np.empty((len(data), chunks[0].shape[1]), np.float32)
    probs[order] = torch.cat(chunks).cpu().numpy()
    return probs


def accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(labels) == np.asarray(pred))) if len(labels) else 0.0


def macro_f1(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Mean over classes 0..n_classes-1 of F1 = 2 TP / (2 TP + FP + FN), 0 when undefined."""
    confusion = np.bincount(n_classes * np.asarray(labels) + pred, minlength=n_classes**2).reshape(n_classes, -1)
    tp, denom = np.diag(confusion), confusion.sum(0) + confusion.sum(1)
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)))


def scores(labels: np.ndarray, probs: np.ndarray, n_classes: int) -> dict[str, float]:
    """{'accuracy', 'macro_f1'} of argmax predictions."""
    pred = probs.argmax(axis=1)
    return {"accuracy": accuracy(labels, pred), "macro_f1": macro_f1(labels, pred, n_classes)}


def majority_baseline(labels: np.ndarray, n_classes: int, metric: str) -> float:
    """Score of always predicting the most frequent label (ties: the lowest label)."""
    labels = np.asarray(labels)
    majority = int(np.bincount(labels, minlength=n_classes).argmax())
    pred = np.full_like(labels, majority)
    return accuracy(labels, pred) if metric == "accuracy" else macro_f1(labels, pred, n_classes)
