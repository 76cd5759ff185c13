"""The random baseline: seeded uniform scores, the floor every metric must beat."""

from __future__ import annotations

import hashlib

import torch
from torch import nn
from torch.utils.data import Dataset

from dattr_eval.explainers import register
from dattr_eval.explainers.base import Explainer
from dattr_eval.explainers.memory import block_bytes


def _content_key(x: torch.Tensor) -> int:
    """A process-independent 63-bit key of a tensor's bytes (Python's ``hash`` is salted)."""
    digest = hashlib.blake2b(
        x.detach().cpu().contiguous().numpy().tobytes(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") >> 1


@register("random")
class RandomExplainer(Explainer):
    """Uniform random attributions in ``[0, 1)``, reproducible from ``seed``.

    Each test input's row depends only on the seed and the input's content (a hash of its
    bytes), so explaining the same input twice, alone or in any batch, gives the same row.
    Cost: O(n_test × n_train) random numbers, no model pass.
    """

    summary = "seeded uniform random scores (baseline)"
    #: a reference row in leaderboards: shown, never shifting the methods' ranks
    role = "reference"
    citation = "—"

    def __init__(self, seed: int = 0, device: str | None = None) -> None:
        self.seed = seed
        self.device = device

    def _fit(self, model: nn.Module, train_dataset: Dataset) -> None:
        pass

    def _row(self, key: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + key) % (2**63 - 1))
        return torch.rand(self.n_train_, generator=gen)

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        keys = [_content_key(x) for x in inputs]
        return torch.stack([self._row(k) for k in keys]).to(inputs.device)

    def _self_influence(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        return torch.rand(self.n_train_, generator=gen)

    def estimate_memory(
        self, model: nn.Module, train_dataset: Dataset, n_test: int, batch_size: int
    ) -> int:
        """Estimated peak extra bytes: the ``(b, n_train)`` rows (generated, then stacked: twice)
        and the ``(n_train,)`` self-influence."""
        n, b = len(train_dataset), min(batch_size, max(1, n_test))
        return int(2 * block_bytes(b, n) + block_bytes(n))
