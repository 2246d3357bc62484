"""Post-production monitoring: live predictions against the training data.

    report      the settings of ``dlforge monitor``, report.json and its plots
    traffic     the model's predictions and feedback from the serving logs
    reference   the train split summarised by the served package's encoder
    compare     label, input and latency sections of the report
    drift       PSI and percentiles as pure functions
    decision    thresholds and the verdict
    plots       labels.png, inputs.png
    tracking    the ``monitor`` run in MLflow
    retrain     the retrain marker other stages read: :func:`retrain_request`
"""

from dlforge.monitor.retrain import request_retrain, retrain_request

__all__ = ["request_retrain", "retrain_request"]
