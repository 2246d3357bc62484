"""``dlforge monitor`` on a toy project: a trained and registered model, synthetic logs."""

from __future__ import annotations

import json
import random
import time

import mlflow
import pytest

from dlforge.core.config import compose
from dlforge.core.errors import DlforgeError
from dlforge.models.package import load_package
from dlforge.monitor import retrain_request
from dlforge.monitor.retrain import ensure_marker
from dlforge.serve.log import PredictionLog
from dlforge.stages.monitor import monitor
from tests.toy import toy_rows


def served(project, texts: list[str], labels: list[str], version: str = "1") -> list[dict]:
    """Log records as the server writes them: inputs summarised by the package's encoder."""
    encoder = load_package(project.root / "outputs/intent/train/model").encoder
    rng, now = random.Random(0), time.time()
    return [{"request_id": f"r{i}", "time": now - i, "model": project.model_name,
             "version": version, "input_digest": f"d{i}", "input": encoder.summarize(text),
             "label": label, "score": 0.9, "latency_ms": rng.uniform(5, 50), "shadow": False}
            for i, (text, label) in enumerate(zip(texts, labels, strict=True))]


def write(project, records: list[dict], name: str = "predictions") -> None:
    PredictionLog(project.root / "outputs/serve/predictions", name=name).write(records)


def like_training(n: int) -> tuple[list[str], list[str]]:
    rows = [line.rsplit(",", 1) for line in toy_rows(n, seed=7).splitlines()]
    return [text for text, _ in rows], [label for _, label in rows]


def test_traffic_like_the_train_split_is_no_drift(two_versions):
    project = two_versions  # v1 champion, v2 candidate
    marker = ensure_marker(project.root / "outputs/intent/retrain.json")  # as ingest leaves it
    before = marker.read_bytes()
    write(project, served(project, *like_training(150)))
    summary = monitor(project.config("monitor"))
    assert summary["status"] == "ok" and summary["drift"] is False
    assert summary["predictions"] == 150 and summary["versions"] == ["1"]
    assert summary["label_psi"] < 0.2 and summary["input_psi"] < 0.2
    assert marker.read_bytes() == before and summary["retrain_request"] is None
    out = project.root / "outputs/intent/monitor"
    report = json.loads((out / "report.json").read_text())
    assert report["reference"]["source"] == "registry" and report["reference"]["version"] == "1"
    assert report["counts"]["per_version"] == {"1": 150}
    assert report["inputs"]["kind"] == "text" and report["inputs"]["oov"]["live"] < 0.3
    assert 5 <= report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= 50
    assert (out / "labels.png").stat().st_size > 0 and (out / "inputs.png").stat().st_size > 0
    run = mlflow.MlflowClient(project.tracking_uri).get_run(summary["run_id"])
    assert run.info.run_name == "monitor" and run.info.status == "FINISHED"
    assert run.data.metrics["counts.predictions"] == 150 and run.data.metrics["drift"] == 0
    assert "labels.psi" in run.data.metrics and "latency_ms.p95" in run.data.metrics
    artifacts = {a.path for a in mlflow.MlflowClient(project.tracking_uri)
                 .list_artifacts(summary["run_id"])}
    assert artifacts == {"report.json", "labels.png", "inputs.png"}


def test_drifting_traffic_requests_a_retrain_on_every_run(two_versions):
    project = two_versions  # v1 champion, v2 candidate
    ensure_marker(project.root / "outputs/intent/retrain.json")  # request 0
    texts = [" ".join(f"zorp{i}{j}" for j in range(20)) for i in range(80)]
    write(project, served(project, texts, ["music"] * 80))
    cfg = project.config("monitor")
    first = monitor(cfg)
    assert first["status"] == "drift" and first["retrain_request"] == 1
    reasons = " | ".join(first["reasons"])
    assert "predicted label PSI" in reasons and "out-of-vocabulary rate increase" in reasons
    assert "input token count PSI" in reasons
    marker = json.loads((project.root / "outputs/intent/retrain.json").read_text())
    assert marker["reasons"] == first["reasons"] and marker["report"] == first["report"]
    assert monitor(cfg)["retrain_request"] == 2
    assert retrain_request(project.root / "outputs/intent/retrain.json") == 2


def test_little_traffic_feedback_and_damaged_lines(two_versions):
    project = two_versions  # v1 champion, v2 candidate
    cfg = project.config("monitor")
    empty = monitor(cfg)
    assert empty["status"] == "no traffic" and empty["drift"] is None
    texts, labels = like_training(20)
    write(project, served(project, texts[:10], labels[:10]) +
          served(project, texts[10:], labels[10:], version="2"))
    with (project.root / "outputs/serve/predictions/predictions.jsonl").open("a") as handle:
        handle.write('{"request_id": "cut')  # a writer killed mid-line
    write(project, [{"request_id": f"r{i}", "index": 0, "model": project.model_name,
                     "version": "1" if i < 4 else "2", "predicted": "music", "label": "music",
                     "reward": float(i % 2), "time": time.time()} for i in range(6)],
          name="feedback")
    summary = monitor(cfg)
    assert summary["status"] == "not enough traffic" and summary["drift"] is None
    report = json.loads((project.root / "outputs/intent/monitor/report.json").read_text())
    assert report["counts"]["per_version"] == {"1": 10, "2": 10}
    assert report["counts"]["damaged_lines"] == 1
    assert any("1 damaged line(s)" in note for note in report["notes"])
    assert report["feedback"]["count"] == 6 and report["feedback"]["accuracy"] == 0.5
    assert report["feedback"]["per_version"] == {"1": {"count": 4, "accuracy": 0.5},
                                                 "2": {"count": 2, "accuracy": 0.5}}
    assert not (project.root / "outputs/intent/retrain.json").exists()


def test_without_a_champion_the_trained_package_is_the_reference(project):
    project.run("train", "trainer.max_epochs=1")  # a package is needed, not its quality
    summary = monitor(project.config("monitor"))
    assert summary["status"] == "no traffic"
    report = json.loads((project.root / "outputs/intent/monitor/report.json").read_text())
    assert report["reference"]["source"] == "train_dir"
    assert any("does not exist" in note for note in report["notes"])
    assert any("no prediction log" in note for note in report["notes"])


def test_a_missing_snapshot_names_the_file_and_the_fix(project):
    (project.root / "outputs/intent/snapshot.json").unlink()
    with pytest.raises(DlforgeError, match=r"outputs/intent/snapshot.json is missing.*Fix: run "
                                           r"`dlforge snapshot experiment=intent`"):
        monitor(project.config("monitor"))


def test_the_monitor_config_reads_where_the_server_logs():
    cfg = compose("monitor", ["experiment=intent"])
    assert cfg.log_dir == compose("serve").log_dir
    assert cfg.registry.model_name == "intent" and cfg.thresholds.min_predictions == 50


def test_a_failure_ends_the_run_as_failed(project):
    cfg = project.config("monitor")  # a snapshot, but nothing trained or registered
    with pytest.raises(DlforgeError, match=r"does not exist and there is no trained package.*"
                                           r"Fix: run `dlforge train`"):
        monitor(cfg)
    client = mlflow.MlflowClient(project.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert [(r.info.run_name, r.info.status) for r in runs] == [("monitor", "FAILED")]


@pytest.mark.parametrize(("override", "words"), [
    ("window_hours=-1", "window_hours=-1 in conf/monitor.yaml: expected a value > 0. Fix"),
    ("input_bins=1", "input_bins=1 in conf/monitor.yaml: expected a value >= 2. Fix"),
    ("thresholds.label_psi=high", "thresholds.label_psi='high'"),
])
def test_bad_settings_name_the_key(tmp_path, override, words):
    cfg = compose("monitor", ["experiment=intent", f"paths.root={tmp_path}", override])
    with pytest.raises(DlforgeError, match=words.replace(".", r"\.")):
        monitor(cfg)  # before anything is read or written
    assert list(tmp_path.iterdir()) == []
