"""Reading the serving logs: one model's served predictions, feedback per version."""

from __future__ import annotations

import time

from dlforge.monitor.traffic import read_feedback, read_predictions
from dlforge.serve.log import PredictionLog


def prediction(version="1", label="music", model="m", at=None, **extra) -> dict:
    return {"request_id": "r", "time": time.time() if at is None else at, "model": model,
            "version": version, "input_digest": "d", "label": label, "score": 0.9,
            "input": {"chars": 20, "tokens": 4, "oov": 0.25}, "latency_ms": 12.5,
            "shadow": False, **extra}


def test_only_the_models_served_predictions_in_the_window(tmp_path):
    now = time.time()
    PredictionLog(tmp_path).write([
        prediction(), prediction("2", "food"), prediction(model="other"),
        prediction(shadow=True), prediction(at=now - 7200), prediction(input=None), {"x": 1}])
    traffic = read_predictions(tmp_path, "m", since=now - 3600)
    assert traffic.predictions == 3 and traffic.summarised == 2
    assert traffic.versions == {"1": 2, "2": 1}
    assert traffic.labels == {"music": 2, "food": 1}
    assert traffic.left_out == {"other_models": 1, "shadow": 1, "outside_window": 1,
                                "invalid": 1}
    assert traffic.inputs["tokens"] == [4.0, 4.0] and traffic.latencies == [12.5] * 3
    assert traffic.first >= now - 3600 and traffic.last >= traffic.first
    assert read_predictions(tmp_path, "m", since=None).predictions == 4


def test_damaged_lines_are_skipped_and_counted(tmp_path):
    PredictionLog(tmp_path).write([prediction()])
    with (tmp_path / "predictions.jsonl").open("a") as handle:
        handle.write('{"request_id": "cut sh\n')
    PredictionLog(tmp_path).write([prediction()])
    traffic = read_predictions(tmp_path, "m", since=None)
    assert traffic.predictions == 2 and traffic.damaged_lines == 1


def test_a_missing_log_folder_is_no_traffic(tmp_path):
    traffic = read_predictions(tmp_path / "nothing", "m", since=None)
    assert traffic.predictions == 0 and traffic.files == 0
    assert read_feedback(tmp_path / "nothing", "m", since=None)["count"] == 0


def test_feedback_accuracy_per_version(tmp_path):
    def answer(version, reward, model="m"):
        return {"request_id": "r", "index": 0, "model": model, "version": version,
                "predicted": "a", "label": "a" if reward else "b", "reward": reward,
                "time": time.time()}

    PredictionLog(tmp_path, name="feedback").write(
        [answer("1", 1.0), answer("1", 0.0), answer("2", 1.0), answer("10", 1.0),
         answer("1", 1.0, model="other"), {"model": "m"}])
    feedback = read_feedback(tmp_path, "m", since=None)
    assert feedback["count"] == 4 and feedback["accuracy"] == 0.75
    assert feedback["per_version"] == {"1": {"count": 2, "accuracy": 0.5},
                                       "2": {"count": 1, "accuracy": 1.0},
                                       "10": {"count": 1, "accuracy": 1.0}}
    assert list(feedback["per_version"]) == ["1", "2", "10"] and feedback["invalid"] == 1
