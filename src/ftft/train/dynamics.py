"""Training dynamics recorded from the training forward pass itself (dataset cartography).

Each step writes softmax(logits) of its batch into a device buffer ``[N, C]`` at the batch's
row numbers: no host transfer per step. At the end of each pass over the training set (and
at the end of training for a partial last pass) the buffer moves to the host once, as one
float16 row of the ``[E, N, C]`` array, with the mask of the instances that pass saw.
"""

from __future__ import annotations

import numpy as np
import torch


class DynamicsRecorder:
    """Records per-instance class probabilities for every pass over the training set (on the device)."""

    def __init__(self, n: int, n_classes: int, device: torch.device):
        self.n, self.n_classes = n, n_classes
        self.epoch_probs = torch.zeros(n, n_classes, dtype=torch.float32, device=device)
        self.probs: list[np.ndarray] = []  # float16 [N, C] per finished pass
        self.seen: list[np.ndarray] = []  # bool [N] per finished pass
        self.complete_epochs = 0

    @torch.no_grad()
    def record(self, logits: torch.Tensor, idx: torch.Tensor) -> None:
        """Store softmax(logits) of a training batch at rows ``idx`` (stays on the device)."""
        self.epoch_probs.index_copy_(0, idx, torch.softmax(logits.detach().float(), dim=-1))

    def end_pass(self, seen_idx: np.ndarray) -> None:
        """Move the finished (or, at the end of training, partial) pass to the host."""
        seen = np.zeros(self.n, dtype=bool)
        seen[seen_idx] = True
        self.probs.append(self.epoch_probs.cpu().numpy().astype(np.float16))
        self.seen.append(seen)
        self.complete_epochs += int(seen.all())
        self.epoch_probs.zero_()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``probs`` float16 [E, N, C] and ``seen`` bool [E, N]."""
        if not self.probs:
            return np.zeros((0, self.n, self.n_classes), np.float16), np.zeros((0, self.n), bool)
        return np.stack(self.probs), np.stack(self.seen)

    def state_dict(self) -> dict:
        return {
            "epoch_probs": self.epoch_probs.cpu().clone(),
            "probs": list(self.probs),
            "seen": list(self.seen),
            "complete_epochs": self.complete_epochs,
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch_probs.copy_(state["epoch_probs"])
        self.probs = list(state["probs"])
        self.seen = list(state["seen"])
        self.complete_epochs = int(state["complete_epochs"])


def write_npz(path, uids: list[str], labels: np.ndarray, dyn: DynamicsRecorder) -> None:
    """Atomically write ``dynamics.npz`` (the one writer: ``ftft.datamap.save_dynamics``)."""
    from ..datamap import save_dynamics

    probs, seen = dyn.arrays()
    keep = np.sort(np.unique(np.asarray(uids), return_index=True)[1])  # JTT's upsampled copies: the first one
    save_dynamics(path, np.asarray(uids)[keep], labels[keep], probs[:, keep], seen[:, keep], dyn.complete_epochs)
