"""The project's networks: any ``torch.nn.Module`` works.

The contract: dlforge builds the class named by ``model.net._target_`` with
``num_classes``, ``vocab_size`` (what the text encoder provides) and every other
key under ``model.net``; ``forward`` takes one batch of token ids ``(B, T)``
(0 is padding) and returns logits ``(B, num_classes)``. dlforge checks this on
one batch before training starts.
"""

from __future__ import annotations

import torch
from torch import nn


class TextClassifier(nn.Module):
    """The mean of the token (and n-gram) embeddings, then a linear layer."""

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 64):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=0)
        self.out = nn.Linear(embed_dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, C)
        return self.out(self.embedding(ids))
