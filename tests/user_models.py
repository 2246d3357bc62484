"""A user's own model code, written into a project's ``src/<name>/`` folder; packages
edited as tests need them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

NETS = '''"""The project's networks (a user's own code)."""

import torch
from torch import nn

from {name}.layers import mean_pool


class BagNet(nn.Module):
    """Mean of token embeddings -> hidden layer -> logits; takes the built-in model's keys."""

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 8,
                 hidden_dim: int = 8, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.head = nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden_dim, num_classes))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, C)
        return self.head(mean_pool(self.embed(ids), ids != 0))


class NoVocab(nn.Module):
    def __init__(self, num_classes: int, embed_dim: int = 8, hidden_dim: int = 8,
                 dropout: float = 0.0):
        super().__init__()
        self.out = nn.Linear(embed_dim, num_classes)


class BadLayer(BagNet):
    def __init__(self, vocab_size: int, num_classes: int, **kwargs):
        super().__init__(vocab_size, num_classes, **kwargs)
        self.extra = nn.Linear("eight", num_classes)  # a TypeError inside __init__


class OneColumn(BagNet):
    def forward(self, ids):
        return super().forward(ids)[:, :1]  # (B, 1): not one logit per class


class Crashes(BagNet):
    def forward(self, ids):
        raise RuntimeError("no forward today")


def make_net(vocab_size, num_classes, **kwargs):
    return BagNet(vocab_size, num_classes, **kwargs)
'''

LAYERS = '''import torch


def mean_pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T, E) -> (B, E)
    mask = mask.unsqueeze(-1).float()
    return (x * mask).sum(1) / mask.sum(1).clamp(min=1.0)
'''


def project_name(tmp_path: Path) -> str:
    """A package name of its own per test (modules stay imported across tests)."""
    return "proj_" + re.sub(r"\W", "_", tmp_path.name)


def write_user_code(root: Path, name: str) -> Path:
    """``root/src/<name>/`` with ``nets.py`` and ``layers.py``; returns ``root/src``."""
    package = root / "src" / name
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""A user project."""\n')
    (package / "nets.py").write_text(NETS.format(name=name))
    (package / "layers.py").write_text(LAYERS)
    (package / "notes.txt").write_text("not code: not carried\n")
    return root / "src"


def python_elsewhere(code: str, folder: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter whose working directory is ``folder`` (made
    here) and whose PYTHONPATH is unset: nothing of the project is on its path."""
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)


def resign(folder: Path) -> None:
    """Record the package's files' digests again (after a test edited one)."""
    from dlforge.core.hashing import sha256_file
    from dlforge.models.package import read_sums

    names = [*read_sums(folder)]
    (folder / "SHA256SUMS").write_text("".join(f"{sha256_file(folder / n)}  {n}\n"
                                               for n in names))


def as_format_1(folder: Path) -> None:
    """Make the package one of format 1, as an older dlforge wrote it: model.json named
    a built-in architecture, with no class, source or format."""
    spec = json.loads((folder / "model.json").read_text())
    for key in ("format", "class", "source"):
        spec.pop(key)
    (folder / "model.json").write_text(json.dumps({**spec, "architecture": "embedding_bag"}))
    resign(folder)
