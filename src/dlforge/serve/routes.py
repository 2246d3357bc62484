"""The endpoints answered by the HTTP process itself: /feedback, /info and /metrics.

``POST /predict`` goes to the inference workers (``api.py``); these three read
and write what the processes share (``state.py``, ``metrics.py``), so they
answer without waiting behind predictions.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations.
import threading
import time

from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field


class FeedbackRequest(BaseModel):
    """``POST /feedback`` body: the true label of one input of an answered request."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, description="the request_id of the answer")
    label: str = Field(min_length=1, description="the true label")
    index: int = Field(0, ge=0, description="which input of the request (from 0)")


class FeedbackResponse(BaseModel):
    request_id: str
    index: int
    model: str
    version: str
    predicted: str
    label: str
    reward: float


class Routes:
    """The handlers, over the shared state of one server run (opened once per process)."""

    def __init__(self, settings: dict, server_info: dict):
        self.settings, self.server_info = settings, server_info
        self._state, self._feedback_log, self._lock = None, None, threading.Lock()

    def add_to(self, app: FastAPI) -> None:
        app.add_api_route("/feedback", self.feedback, methods=["POST"],
                          response_model=FeedbackResponse, summary="Give the true label of "
                          "an answered input (rewards the bandit, feeds monitoring)")
        app.add_api_route("/info", self.info, methods=["GET"],
                          summary="Served models, their releases, what the workers loaded")
        app.add_api_route("/metrics", self.metrics, methods=["GET"],
                          summary="Prometheus metrics", response_class=Response)

    def _open(self):
        with self._lock:
            if self._state is None:
                from dlforge.serve.log import PredictionLog
                from dlforge.serve.state import ServingState

                s = self.settings
                self._feedback_log = PredictionLog(s["log_dir"], s["log_max_bytes"],
                                                   name="feedback")
                self._state = ServingState(s["state_path"], s["feedback_window_seconds"])
        return self._state

    def feedback(self, request: FeedbackRequest) -> dict:  # sync: FastAPI's thread pool
        from dlforge.serve.state import FeedbackError

        state = self._open()
        try:
            scored = state.feedback(request.request_id, request.label, request.index)
        except FeedbackError as err:
            raise HTTPException(err.status, str(err)) from None
        self._feedback_log.write([{**scored, "time": time.time()}])
        return scored

    def info(self) -> dict:
        state, models = self._open(), {}
        workers = state.workers()
        for name, spec in self.settings["models"].items():
            models[name] = {
                "release": spec,
                "aliases": workers[0]["aliases"].get(name, {}) if workers else {},
                "loaded": sorted({x["version"] for w in workers for x in w["loaded"]
                                  if x["model"] == name}, key=int),
                "rewards": {v: {"wins": w, "losses": lost}
                            for v, (w, lost) in state.rewards(name).items()},
            }
        return {"models": models, "default_model": self.settings["default_model"],
                "cache_capacity": self.settings["cache_capacity"], "workers": workers,
                "server": self.server_info}

    def metrics(self) -> Response:
        from dlforge.serve.metrics import render

        body, content_type = render(self.settings["metrics_dir"])
        return Response(body, media_type=content_type)
