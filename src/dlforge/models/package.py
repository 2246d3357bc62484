"""The model package: a self-contained folder that later stages load.

    model.json           architecture (a registered name) and its arguments,
                         labels, task (single- or multi-label), provenance
    preprocessing.json   the fitted input encoder
    weights.safetensors  the weights (no pickle: loading runs no stored code)
    SHA256SUMS           digests of the three files above

``Predictor`` is preprocessing -> forward -> postprocessing, the one inference
path shared by evaluation, the MLflow pyfunc, batch prediction and serving.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dlforge.errors import DlforgeError
from dlforge.models import architecture
from dlforge.models.preprocessing import encoder_from_dict

FILES = ("model.json", "preprocessing.json", "weights.safetensors")


def save_package(folder: Path, weights: dict[str, torch.Tensor], arch: str, arch_kwargs: dict,
                 encoder, labels: list[str], multi_label: bool, info: dict) -> Path:
    """Write a package into ``folder``.

    Args:
        weights: the network's full (unsharded) state dict.
        arch: registered architecture name; ``arch_kwargs`` rebuild the network.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    spec = {"format": 1, "architecture": arch, "arguments": arch_kwargs, "labels": labels,
            "multi_label": multi_label, **info}
    (folder / "model.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    (folder / "preprocessing.json").write_text(json.dumps(encoder.to_dict()) + "\n")
    state = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    save_file(state, folder / "weights.safetensors")
    sums = "".join(f"{_sha256(folder / f)}  {f}\n" for f in FILES)
    (folder / "SHA256SUMS").write_text(sums)
    return folder


@dataclass
class Predictor:
    """A loaded package: ``predict(inputs)`` -> labels and scores."""

    net: torch.nn.Module
    encoder: object
    labels: list[str]
    multi_label: bool
    spec: dict

    def encode(self, inputs: Sequence) -> list:
        """Each input as the network reads it (raises on an input it cannot read)."""
        return [self.encoder.encode(x) for x in inputs]

    def scores(self, inputs: Sequence) -> torch.Tensor:
        """Class probabilities ``(N, C)``: softmax, or sigmoid for multi-label models."""
        return self.scores_of(self.encode(inputs))

    @torch.inference_mode()
    def scores_of(self, encoded: Sequence) -> torch.Tensor:
        """:meth:`scores` of already encoded inputs: one forward pass."""
        batch = self.encoder.collate(encoded)
        device = next(self.net.parameters()).device
        logits = self.net(batch.to(device, non_blocking=True))
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)
        return probs.cpu()

    def predict(self, inputs: Sequence, top_k: int = 5, threshold: float = 0.5) -> list[dict]:
        """One dict per input: ``label``, ``score``, ``top_k`` (and ``labels`` if multi-label)."""
        return self.predict_encoded(self.encode(inputs), top_k, threshold)

    def predict_encoded(self, encoded: Sequence, top_k: int = 5,
                        threshold: float = 0.5) -> list[dict]:
        """:meth:`predict` of already encoded inputs."""
        probs = self.scores_of(encoded)
        k = min(top_k, len(self.labels))
        values, indices = probs.topk(k, dim=1)
        out = []
        for row, (vals, idx) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
            item = {"label": self.labels[idx[0]], "score": vals[0],
                    "top_k": [{"label": self.labels[i], "score": v} for i, v in zip(idx, vals,
                                                                                    strict=True)]}
            if self.multi_label:
                item["labels"] = [self.labels[i] for i in
                                  (probs[row] >= threshold).nonzero().flatten().tolist()]
            out.append(item)
        return out


def load_package(folder: str | Path, device: str = "cpu") -> Predictor:
    """Load a package onto ``device`` ("cpu", "cuda:0", ...), refusing one whose files
    do not match their recorded digests."""
    from safetensors.torch import load_file

    folder = Path(folder)
    verify_package(folder)
    spec = json.loads((folder / "model.json").read_text())
    net = architecture(spec["architecture"])(**spec["arguments"])
    net.load_state_dict(load_file(folder / "weights.safetensors"))
    net.to(device).eval()
    encoder = encoder_from_dict(json.loads((folder / "preprocessing.json").read_text()))
    return Predictor(net, encoder, spec["labels"], spec["multi_label"], spec)


def verify_package(folder: Path) -> None:
    """Raise when a file is missing or was changed after the package was written."""
    sums_file = folder / "SHA256SUMS"
    if not sums_file.is_file():
        raise DlforgeError(f"{folder} is not a dlforge model package (no SHA256SUMS). "
                           "Fix: point at the model folder written by `dlforge train`")
    for line in sums_file.read_text().splitlines():
        digest, name = line.split("  ", 1)
        path = folder / name
        if not path.is_file() or _sha256(path) != digest:
            raise DlforgeError(f"{path} is missing or does not match SHA256SUMS: the package "
                               "was modified or damaged and is refused. Fix: use the package "
                               "as written by training (or re-register it)")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
