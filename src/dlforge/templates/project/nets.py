"""The project's networks: any ``torch.nn.Module`` works.

The contract: dlforge builds the class named by ``model.net._target_`` with
``num_classes`` plus what the model's encoder provides (``vocab_size`` for text,
``channels`` for images) and every other key under ``model.net``; ``forward``
takes one batch from the encoder (token ids ``(B, T)``, 0 is padding; or images
``(B, C, H, W)``) and returns logits ``(B, num_classes)``. dlforge checks this
on one batch before training starts.
"""

from __future__ import annotations

import torch
from torch import nn


class TextClassifier(nn.Module):
    """The mean of the token embeddings, then a linear layer."""

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 64):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=0)
        self.out = nn.Linear(embed_dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, C)
        return self.out(self.embedding(ids))


class ImageClassifier(nn.Module):
    """Two convolutions, global average pooling, then a linear layer."""

    def __init__(self, channels: int, num_classes: int, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C)
        return self.out(self.features(images))
