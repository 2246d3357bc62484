"""The project's networks: any ``torch.nn.Module`` works.

The contract: dlforge builds the class named by ``model.net._target_`` with
``num_classes``, ``channels`` (what the image encoder provides: 1 for grayscale,
3 for RGB) and every other key under ``model.net``; ``forward`` takes one batch
of normalised images ``(B, channels, H, W)`` and returns logits
``(B, num_classes)``. dlforge checks this on one batch before training starts.
"""

from __future__ import annotations

import torch
from torch import nn


class ImageClassifier(nn.Module):
    """Three blocks of 3x3 convolution, batch norm, ReLU and 2x2 max pooling (each
    doubles the width and halves the height and width), then global average pooling
    and a linear layer: any image size works."""

    def __init__(self, channels: int, num_classes: int, width: int = 16):
        super().__init__()
        blocks, c_in = [], channels
        for c_out in (width, 2 * width, 4 * width):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c_out
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(c_in, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, channels, H, W) -> (B, C)
        return self.out(self.features(images))  # features: (B, 4 * width)
