"""Text classifiers over token ids.

Inputs are padded id tensors ``(B, T)`` with 0 as padding; outputs are logits
``(B, C)``. Both models are small enough to train on a CPU in minutes.
"""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingBagClassifier(nn.Module):
    """The reference system's intent model, done right.

    Mean of token (and n-gram) embeddings -> hidden layer with a nonlinearity
    and dropout -> logits. (The book's version was a single linear layer over
    the mean embedding.)
    """

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 128,
                 hidden_dim: int = 256, dropout: float = 0.3):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=0)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(embed_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, C)
        return self.head(self.embedding(ids))


class TextCNN(nn.Module):
    """Convolutions of several widths over word embeddings, max-pooled (Kim, 2014)."""

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 128,
                 channels: int = 128, kernel_sizes: tuple[int, ...] = (2, 3, 4),
                 dropout: float = 0.3):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.convs = nn.ModuleList(
            nn.Conv1d(embed_dim, channels, k, padding=k - 1) for k in kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(channels * len(kernel_sizes), num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, C)
        x = self.embedding(ids).transpose(1, 2)  # (B, E, T)
        pooled = [torch.relu(conv(x)).amax(dim=2) for conv in self.convs]  # each (B, channels)
        return self.out(self.dropout(torch.cat(pooled, dim=1)))
