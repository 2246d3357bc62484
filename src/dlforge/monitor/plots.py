"""The report's plots: label shares and input histograms, reference against live.

    labels.png   share of each of the top labels, train split vs predictions
    inputs.png   token counts and OOV rates (text), or mean intensity and
                 image sizes (images), as densities
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_labels(path: Path, top: list[dict]) -> None:
    """Grouped horizontal bars: each label's share in the train split and in live traffic."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * max(len(top), 1)))
    if top:
        y = np.arange(len(top))
        ax.barh(y - 0.2, [t["reference"] for t in top], 0.4, label="reference (train)")
        ax.barh(y + 0.2, [t["live"] for t in top], 0.4, label="live (predicted)")
        ax.set_yticks(y, [t["label"] for t in top], fontsize=8)
        ax.invert_yaxis()  # largest share on top
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no labels", ha="center", va="center")
    ax.set(xlabel="share", title=f"label shares (top {len(top)})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _histogram(ax, reference: list[float], live: list[float], title: str,
               bins: np.ndarray | None = None) -> None:
    """Both samples as densities over the same ``bins`` (default: 30 over their range)."""
    values = [*reference, *live]
    ax.set(title=title, ylabel="density")
    if not values:
        ax.text(0.5, 0.5, "no inputs", ha="center", va="center")
        return
    if bins is None:
        low, high = min(values), max(values)
        bins = np.linspace(low, high if high > low else low + 1, 31)
    for data, label in ((reference, "reference (train)"), (live, "live")):
        if data:
            ax.hist(data, bins=bins, density=True, alpha=0.5, label=label)
    ax.legend()


def _integer_bins(values: list[float]) -> np.ndarray | None:
    """One bin per integer, centred on it, when that is few enough to read."""
    if not values or max(values) - min(values) > 60:
        return None
    return np.arange(min(values) - 0.5, max(values) + 1.5)


def plot_inputs(path: Path, kind: str, reference, traffic) -> None:
    """Histograms of the input summaries that drift is measured on."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    if kind == "image":
        _histogram(axes[0], reference.inputs.get("mean", []), traffic.inputs.get("mean", []),
                   "mean intensity", np.linspace(0, 1, 31))
        _histogram(axes[1], [h * w for h, w in reference.sizes],
                   [h * w for h, w in traffic.sizes], "pixels (height x width)")
    else:
        tokens = reference.inputs.get("tokens", []), traffic.inputs.get("tokens", [])
        _histogram(axes[0], *tokens, "tokens per input", _integer_bins([*tokens[0], *tokens[1]]))
        _histogram(axes[1], reference.inputs.get("oov", []), traffic.inputs.get("oov", []),
                   "out-of-vocabulary rate", np.linspace(0, 1, 21))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
