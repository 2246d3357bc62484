"""Evaluation of a model package on a snapshot's test split.

Runs the package (the inference path serving uses) over the test split and
writes, in the evaluation folder (:class:`~dlforge.core.layout.EvalFiles`):

    metrics.json     accuracy, macro-F1 (in-scope accuracy and out-of-scope
                     recall for intent data with an out-of-scope label; exact
                     match, micro/macro-F1 and Hamming loss for multi-label)
    per_class.csv    precision, recall, F1 and support per class
    confusion.csv    one (actual, predicted) row per example: `dvc plots` confusion
    confusion.png    the confusion matrix, normalised per true class

:func:`log_to_run` adds them to an MLflow run (metrics as ``eval/<name>``). The
``dlforge evaluate`` stage is :func:`dlforge.stages.evaluate.evaluate`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dlforge.core.io import write_json_atomic
from dlforge.core.layout import EvalFiles
from dlforge.registry import scores as m

if TYPE_CHECKING:
    from dlforge.data.snapshot import Snapshot


def evaluate_package(model, snapshot: Snapshot, out: EvalFiles, batch_size: int,
                     threshold: float, oos_label: str | None) -> dict:
    """Score ``model`` on the test split of ``snapshot`` and write the files above to ``out``.

    Args:
        model: a loaded :class:`~dlforge.models.package.Predictor` with the snapshot's labels.
        threshold: multi-label models predict a label at this probability.
        oos_label: the out-of-scope label of intent data, or None.

    Returns:
        The headline metrics (also in ``metrics.json``), with the snapshot's version.
    """
    probs = _scores(model, snapshot.inputs("test"), batch_size)
    labels = model.labels
    truth = _truth(snapshot, len(labels), model.multi_label)
    if model.multi_label:
        result = m.multi_label(truth, probs >= threshold, labels)
    else:
        result = m.single_label(truth, probs.argmax(axis=1), labels, oos_label)
    headline = {k: round(v, 6) if isinstance(v, float) else v
                for k, v in result.items() if k not in ("per_class", "confusion")}
    headline["snapshot"] = snapshot.version
    _write(out, headline, result, labels, truth, probs, model.multi_label)
    return headline


def _truth(snapshot: Snapshot, num_classes: int, multi_label: bool) -> np.ndarray:
    """The test split's classes ``(N,)``, or multi-hot ``(N, C)`` for multi-label, read from
    its ``label_ids`` column alone."""
    import pyarrow.compute as pc

    ids = snapshot.table("test", ["label_ids"]).column("label_ids").combine_chunks()
    if not multi_label:
        return pc.list_element(ids, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    truth = np.zeros((len(ids), num_classes), dtype=bool)
    rows = np.repeat(np.arange(len(ids)), pc.list_value_length(ids).to_numpy())
    truth[rows, pc.list_flatten(ids).to_numpy()] = True
    return truth


def _scores(model, inputs, batch_size: int) -> np.ndarray:
    """Class probabilities ``(N, C)`` in batches; ``inputs`` is read a batch at a time."""
    parts = [model.scores(inputs[i:i + batch_size]).numpy()
             for i in range(0, len(inputs), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, len(model.labels)))


def _write(out: EvalFiles, headline: dict, result: dict, labels: list[str], truth, probs,
           multi_label: bool) -> None:
    out.dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out.metrics, headline)
    with out.per_class.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["label", "precision", "recall", "f1", "support"])
        writer.writeheader()
        writer.writerows(result["per_class"])
    with out.confusion_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        if not multi_label:
            predicted = probs.argmax(axis=1)
            writer.writerows((labels[t], labels[p]) for t, p in zip(truth, predicted,
                                                                    strict=True))
    _plot_confusion(out.confusion_png, result.get("confusion"), labels)


def _plot_confusion(path: Path, matrix, labels: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 7))
    if matrix is None:  # multi-label: no single confusion matrix
        ax.text(0.5, 0.5, "multi-label model: see per_class.csv", ha="center", va="center")
        ax.set_axis_off()
    else:
        rows = matrix.sum(axis=1, keepdims=True)
        image = ax.imshow(np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0),
                          cmap="Blues", vmin=0, vmax=1)
        fig.colorbar(image, ax=ax, label="share of the true class")
        if len(labels) <= 30:  # more labels than that would not be legible
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set(xlabel="predicted", ylabel="actual", title=f"confusion ({len(labels)} classes)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def log_to_run(client, run_id: str, out: EvalFiles, headline: dict) -> None:
    """The float metrics of ``headline`` as ``eval/<name>`` and the metrics, per-class,
    per-example (confusion.csv: what model cards bootstrap) and confusion plot files as
    artifacts under ``eval/``, on run ``run_id`` (the training run)."""
    for name, value in headline.items():
        if isinstance(value, float):
            client.log_metric(run_id, f"eval/{name}", value)
    for path in (out.metrics, out.per_class, out.confusion_csv, out.confusion_png):
        client.log_artifact(run_id, str(path), artifact_path="eval")
