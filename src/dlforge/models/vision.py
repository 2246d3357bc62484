"""A small convolutional classifier for ``image_class`` datasets."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Two conv blocks and a linear head; adapts to any input size by pooling.

    Input ``(B, channels, H, W)`` normalised images; output logits ``(B, C)``.
    """

    def __init__(self, num_classes: int, channels: int = 1, width: int = 32,
                 dropout: float = 0.25):
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out),
                                 nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True))

        self.features = nn.Sequential(block(channels, width), block(width, 2 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(2 * width, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        return self.head(self.pool(self.features(images)))
