"""``dlforge evaluate experiment=X``: the trained model on its snapshot's test split.

Runs the model package (the inference path serving uses) over the test split
of the snapshot it was trained on and writes, under ``paths.eval_dir``:

    metrics.json     accuracy, macro-F1 (in-scope accuracy and out-of-scope
                     recall for intent data with ``dataset.oos_label``; exact
                     match, micro/macro-F1 and Hamming loss for multi-label)
    per_class.csv    precision, recall, F1 and support per class
    confusion.csv    one (actual, predicted) row per example: `dvc plots` confusion
    confusion.png    the confusion matrix, normalised per true class

and logs them to the training run in MLflow (metrics as ``eval/<name>``).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from dlforge.core.errors import DlforgeError
from dlforge.core.io import write_json_atomic
from dlforge.registry import scores as m

log = logging.getLogger(__name__)


def trained(cfg: DictConfig) -> dict:
    """The frozen config of the experiment's last training, or an error naming the fix."""
    frozen = Path(cfg.paths.train_dir) / "config.yaml"
    state = Path(cfg.paths.train_dir) / "run.json"
    if not frozen.is_file() or not (Path(cfg.paths.train_dir) / "model").is_dir():
        raise DlforgeError(f"no trained model for experiment '{cfg.experiment_name}' under "
                           f"{cfg.paths.train_dir}. Fix: run `dlforge train "
                           f"experiment={cfg.experiment_name}`")
    if json.loads(state.read_text()).get("status") != "finished":
        raise DlforgeError(f"the last training of '{cfg.experiment_name}' did not finish "
                           f"({state}). Fix: run `dlforge train experiment="
                           f"{cfg.experiment_name}` again (it resumes)")
    return OmegaConf.to_container(OmegaConf.load(frozen), resolve=True)


def evaluate(cfg: DictConfig) -> dict:
    """The evaluate stage. Returns the headline metrics (also in ``metrics.json``)."""
    from dlforge.data.build import read_split
    from dlforge.data.types import get_type
    from dlforge.models.package import load_package

    train = trained(cfg)
    model = load_package(Path(cfg.paths.train_dir) / "model")
    snapshot = Path(train["snapshot_path"])
    manifest = json.loads((snapshot / "manifest.json").read_text())
    if manifest["labels"] != model.labels:
        raise DlforgeError(f"the model's labels differ from snapshot {manifest['version']}'s: "
                           "the package and training config are out of step. Fix: re-run "
                           f"`dlforge train experiment={cfg.experiment_name}`")
    test = read_split(snapshot / "test.parquet")
    inputs = test[get_type(manifest["type"]).input_column].tolist()
    probs = _scores(model, inputs, int(cfg.batch_size))
    labels = model.labels
    if model.multi_label:
        truth = np.zeros((len(test), len(labels)), dtype=bool)
        for row, ids in enumerate(test["label_ids"]):
            truth[row, list(ids)] = True
        result = m.multi_label(truth, probs >= cfg.threshold, labels)
    else:
        truth = np.array([int(ids[0]) for ids in test["label_ids"]])
        result = m.single_label(truth, probs.argmax(axis=1), labels,
                                cfg.dataset.get("oos_label"))
    headline = {k: round(v, 6) if isinstance(v, float) else v
                for k, v in result.items() if k not in ("per_class", "confusion")}
    headline["snapshot"] = manifest["version"]
    out = Path(cfg.paths.eval_dir)
    _write(out, headline, result, labels, truth, probs, model.multi_label)
    _log_to_run(cfg, train["run_id"], out, headline)
    log.info("evaluated %s on %d test examples: %s", cfg.experiment_name, len(test),
             {k: v for k, v in headline.items() if isinstance(v, float)})
    return headline


def _scores(model, inputs: list, batch_size: int) -> np.ndarray:
    """Class probabilities ``(N, C)`` in batches."""
    parts = [model.scores(inputs[i:i + batch_size]).numpy()
             for i in range(0, len(inputs), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, len(model.labels)))


def _write(out: Path, headline: dict, result: dict, labels: list[str], truth, probs,
           multi_label: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "metrics.json", headline)
    with (out / "per_class.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["label", "precision", "recall", "f1", "support"])
        writer.writeheader()
        writer.writerows(result["per_class"])
    with (out / "confusion.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        if not multi_label:
            predicted = probs.argmax(axis=1)
            writer.writerows((labels[t], labels[p]) for t, p in zip(truth, predicted,
                                                                    strict=True))
    _plot_confusion(out / "confusion.png", result.get("confusion"), labels)


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


def _log_to_run(cfg: DictConfig, run_id: str, out: Path, headline: dict) -> None:
    import mlflow

    from dlforge.core.tracking import setup_tracking_uri

    setup_tracking_uri(cfg.tracking)
    client = mlflow.MlflowClient()
    for name, value in headline.items():
        if isinstance(value, float):
            client.log_metric(run_id, f"eval/{name}", value)
    for name in ("metrics.json", "per_class.csv", "confusion.png"):
        client.log_artifact(run_id, str(out / name), artifact_path="eval")
