"""The endpoints answered by the HTTP process itself: /feedback, /info and /metrics.

``POST /predict`` goes to the inference workers (``api.py``); these three read
and write what the processes share (``state.py``, ``metrics.py``), so they
answer without waiting behind predictions.

A feedback body is checked strictly and answered 422 naming the field, never
echoing what was sent: a ``request_id`` of at most 64 characters, a ``label``
of at most ``max_label_chars``, an ``index`` below ``max_inputs``, and text
that is valid Unicode (no lone surrogates: it could not be stored as UTF-8).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations.
import threading
import time

from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from dlforge.serve.schema import Text, answer_validation_errors
from dlforge.serve.settings import ServeSettings

MAX_REQUEST_ID = 64  # the server's request ids are 32 hex characters
MAX_INDEX = 2**31 - 1  # SQLite stores up to 2**63 - 1; no request has this many inputs


class FeedbackRequest(BaseModel):
    """``POST /feedback`` body: the true label of one input of an answered request."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: Text = Field(
        min_length=1, max_length=MAX_REQUEST_ID, description="the request_id of the answer")
    label: Text = Field(
        min_length=1, description="the true label (at most max_label_chars characters)")
    index: int = Field(0, ge=0, le=MAX_INDEX, description="which input of the request "
                                                          "(from 0, below max_inputs)")


class FeedbackResponse(BaseModel):
    request_id: str
    index: int
    model: str
    version: str
    predicted: str
    label: str
    reward: float = Field(description="1 when the label is the predicted one, else 0")
    rewarded: bool = Field(description="whether the reward counted for the bandit: only "
                                       "for answers it routed, up to max_rewards_per_minute "
                                       "per version")


class Routes:
    """The handlers, over the shared state of one server run (opened once per process)."""

    def __init__(self, settings: ServeSettings, server_info: dict):
        self.settings, self.server_info = settings, server_info
        self._state, self._feedback_log, self._lock = None, None, threading.Lock()

    def add_to(self, app: FastAPI) -> None:
        answer_validation_errors(app)  # 422s name the fields, never the values sent
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

                self._feedback_log = PredictionLog.from_settings(self.settings, name="feedback")
                self._state = ServingState.from_settings(self.settings)
        return self._state

    def feedback(self, request: FeedbackRequest) -> dict:  # sync: FastAPI's thread pool
        """Score and log the feedback (both or neither: a log write that fails, e.g. a
        full disk, raises its OSError and the feedback is not taken)."""
        from dlforge.serve.state import FeedbackError, StateUnavailable

        max_chars, max_inputs = self.settings.max_label_chars, self.settings.max_inputs
        if len(request.label) > max_chars:
            raise HTTPException(422, f"label: {len(request.label)} characters, at most "
                                     f"{max_chars} (max_label_chars)")
        if request.index >= max_inputs:
            raise HTTPException(422, f"index: {request.index} is past the last input of any "
                                     f"request (max_inputs={max_inputs}; index counts from 0)")
        state = self._open()
        try:
            return state.feedback(request.request_id, request.label, request.index,
                                  then=self._log_feedback)
        except FeedbackError as err:
            raise HTTPException(err.status, str(err)) from None
        except StateUnavailable as err:  # the next request connects again
            raise HTTPException(503, str(err)) from None

    def _log_feedback(self, scored: dict) -> None:
        self._feedback_log.write([{**scored, "time": time.time()}])

    def info(self) -> dict:
        from dlforge.serve.state import StateUnavailable

        state, models = self._open(), {}
        try:
            workers = state.workers()
            rewards = {name: state.rewards(name) for name in self.settings.models}
        except StateUnavailable as err:
            raise HTTPException(503, str(err)) from None
        for name, spec in self.settings.models.items():
            models[name] = {
                "release": spec.as_dict(),
                "aliases": workers[0]["aliases"].get(name, {}) if workers else {},
                "loaded": sorted({x["version"] for w in workers for x in w["loaded"]
                                  if x["model"] == name}, key=int),
                "rewards": {v: {"wins": w, "losses": lost}
                            for v, (w, lost) in rewards[name].items()},
            }
        return {"models": models, "default_model": self.settings.default_model,
                "cache_capacity": self.settings.cache_capacity, "workers": workers,
                "server": self.server_info}

    def metrics(self) -> Response:
        from dlforge.serve.prometheus import render

        body, content_type = render(self.settings.metrics_dir)
        return Response(body, media_type=content_type)
