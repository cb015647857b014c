"""Training dynamics (dataset cartography) from the training forward pass itself: each step writes softmax(logits)
into a device buffer [N, C] at the batch's rows (no host transfer); at the end of each pass (and of a partial last
one) the buffer moves to the host once, as one float16 row of [E, N, C] with the mask of the rows that pass saw.
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
        self.epoch_probs.zero_()

    def state_dict(self) -> dict:
        return {"epoch_probs": self.epoch_probs.cpu().clone(), "probs": list(self.probs), "seen": list(self.seen)}

    def load_state_dict(self, state: dict) -> None:  # a state of an earlier version also holds complete_epochs
        self.epoch_probs.copy_(state["epoch_probs"])
        self.probs, self.seen = list(state["probs"]), list(state["seen"])


def write_npz(path, uids: list[str], labels: np.ndarray, dyn: DynamicsRecorder) -> None:
    """Atomically write ``dynamics.npz`` (the one writer: ``ftft.datamap.save_dynamics``)."""
    from ..datamap import save_dynamics

    probs = np.stack(dyn.probs) if dyn.probs else np.zeros((0, dyn.n, dyn.n_classes), np.float16)
    seen = np.stack(dyn.seen) if dyn.seen else np.zeros((0, dyn.n), bool)
    keep = np.sort(np.unique(np.asarray(uids), return_index=True)[1])  # JTT's upsampled copies: the first one
    complete = sum(int(s.all()) for s in dyn.seen)  # passes that saw every row
    save_dynamics(path, np.asarray(uids)[keep], labels[keep], probs[:, keep], seen[:, keep], complete)
