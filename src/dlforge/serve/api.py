"""The LitServe API: request schema, routing to a model version, batched forward passes.

A request names a model (or gets ``default_model``) and optionally a version
or an alias; otherwise the model's release strategy picks the version. Loaded
models live in a :class:`ModelCache`; every prediction is appended to the
prediction log, remembered in the shared state for feedback, and counted in
the metrics. Errors are HTTP errors with a message: 404 for an unknown model,
version or alias, 503 for a version that does not load.

Every ``refresh_seconds`` a worker re-reads the aliases (blue-green switches),
the bandit rewards from feedback, and reports what it has loaded (``/info``).

One request's error is its own. LitServe's batched loop answers a whole batch
with the first exception raised in it, so nothing here raises for a request:
routing, decoding, the forward pass and logging each catch their errors, keep
them with the request that caused them (``{"error": (status, message)}``), and
:meth:`ModelAPI.encode_response` turns them into that request's JSON answer.
A batched forward pass that fails is run again one request at a time, so that
only the request that caused it fails.
"""

# No `from __future__ import annotations`: LitServe reads decode_request's
# annotation at run time to build the endpoint's request schema.
import errno
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable

import litserve as ls
from fastapi import HTTPException
from fastapi.responses import JSONResponse

from dlforge.serve.log import input_digest
from dlforge.serve.parts import ServingParts, build_parts
from dlforge.serve.schema import PredictRequest, PredictResponse
from dlforge.serve.settings import ServeSettings
from dlforge.serve.transport import request_loop

MISSING_VERSION_SECONDS = 5.0  # a version the registry lacks is not looked up again for this long

log = logging.getLogger(__name__)


class ModelAPI(ls.LitAPI):
    """Serves the registered models in ``settings.models``.

    Args:
        settings: the resolved ``conf/serve.yaml`` (plain data: this object is
            sent to the inference worker processes).
        parts_factory: builds a worker's parts in ``setup`` (:mod:`dlforge.serve.parts`);
            a test hands in its own.
    """

    def __init__(self, settings: ServeSettings,
                 parts_factory: Callable[[ServeSettings, str], ServingParts] = build_parts):
        super().__init__(max_batch_size=settings.max_batch_size,
                         batch_timeout=settings.batch_timeout,
                         loop=request_loop(settings.max_batch_size))
        self.settings, self.parts_factory = settings, parts_factory

    async def authorize(self) -> None:
        """The endpoint's FastAPI dependency: a no-op, the key is the middleware's job.

        LitServe's default is a plain function, which FastAPI runs in its thread
        pool: one thread hop per request for nothing.
        """

    def setup(self, device) -> None:
        """In each worker process: its parts (``parts_factory``), the aliases and
        rewards read once, then again every ``refresh_seconds``."""
        self.device = str(device)
        self.parts = self.parts_factory(self.settings, self.device)
        self.reported = None
        self.missing: dict[tuple[str, str], float] = {}  # versions the registry lacks
        self._refresh()
        if self.settings.refresh_seconds > 0:  # off the request path: a registry read is slow
            threading.Thread(target=self._refresh_forever, name="dlforge-refresh",
                             daemon=True).start()

    def _refresh_forever(self) -> None:
        while True:
            time.sleep(self.settings.refresh_seconds)
            try:
                self._refresh()
            except Exception:  # the next round tries again; requests go on meanwhile
                log.exception("refreshing aliases and rewards failed")

    def _refresh(self) -> None:
        """Re-read aliases and bandit rewards; report what this worker has loaded."""
        for name, release in self.parts.releases.items():
            try:
                aliases = self.parts.client.get_registered_model(name).aliases
            except Exception as err:  # an unknown model answers 404 per request
                log.warning("cannot read aliases of %s: %s", name, err)
                continue
            release.aliases = {a: str(v) for a, v in dict(aliases).items()}
            if release.strategy == "bandit":
                release.rewards = self.parts.state.rewards(name)
        self.parts.state.forget_old()
        self._report(force=True)

    def _report(self, force: bool = False) -> None:
        """Tell /info what this worker has loaded, when that changed."""
        loaded, releases = self.parts.cache.loaded(), self.parts.releases
        if force or loaded != self.reported:
            self.parts.state.report_worker(f"{self.device}/{os.getpid()}", os.getpid(),
                                           self.device, loaded,
                                           {n: r.aliases for n, r in releases.items()})
            self.reported = loaded

    def health(self) -> bool:
        """LitServe's /health (in the HTTP process): the log and state disks can be written."""
        if not hasattr(self, "disk"):
            from dlforge.serve.health import disk_check

            self.disk = disk_check(self.settings)
        return self.disk.problem() is None

    def decode_request(self, request: PredictRequest) -> dict:
        try:
            return self._route(request)
        except HTTPException as err:
            return self._refused(request, err.status_code, err.detail)
        except Exception as err:  # a bug, or the registry failing: this request only
            log.exception("routing a request failed")
            return self._refused(request, 503, f"cannot route the request now ({_name(err)})")

    def _refused(self, request: PredictRequest, status: int, message: str) -> dict:
        name = request.model or self.settings.default_model
        self.parts.metrics.error(name, None, status)  # no version label: versions are unbounded
        return {"error": (status, message), "request_id": uuid.uuid4().hex}

    def _route(self, request: PredictRequest) -> dict:
        name = request.model or self.settings.default_model
        if name not in self.parts.releases:  # also checked before batching (schema.py)
            raise HTTPException(404, f"model {name!r} is not served here (served: "
                                     f"{sorted(self.parts.releases)})")
        if not self.settings.refresh_seconds:
            self._refresh()  # 0: before every request (tests, debugging)
        release, shadow, routed = self.parts.releases[name], None, False
        if request.version is not None:
            version = str(request.version)
            self._check_version(name, version)
        elif request.alias is not None:
            version = release.aliases.get(request.alias)
            if version is None:
                raise _no_alias(name, request.alias, release.aliases)
        else:
            try:
                route = release.route(self.parts.rng)
            except LookupError:
                raise _no_alias(name, release.alias, release.aliases) from None
            version, shadow = route.version, route.shadow
            routed = release.strategy == "bandit"
        return {"model": name, "version": version, "shadow": shadow, "routed": routed,
                "inputs": request.inputs, "top_k": request.top_k,
                "request_id": uuid.uuid4().hex, "received": time.time()}

    def _check_version(self, name: str, version: str) -> None:
        """404 for a version the registry does not have (a loaded one exists: no lookup)."""
        from mlflow.exceptions import MlflowException

        if (name, version) in self.parts.cache.loaded():
            return
        missing = self.missing.get((name, version))
        if missing is None or time.monotonic() - missing > MISSING_VERSION_SECONDS:
            try:
                self.parts.client.get_model_version(name, version)
                self.missing.pop((name, version), None)
                return
            except MlflowException:
                if len(self.missing) > 1000:  # bounded: unknown versions are unbounded
                    self.missing.clear()
                self.missing[(name, version)] = time.monotonic()
        raise HTTPException(404, f"model {name} has no version {version}")

    def predict(self, requests):
        requests = requests if isinstance(requests, list) else [requests]
        # One forward pass per (model, version) over all the batched requests' inputs.
        groups: dict[tuple[str, str], list[dict]] = {}
        for request in requests:
            if "error" not in request:
                groups.setdefault((request["model"], request["version"]), []).append(request)
        answers: dict[str, dict] = {r["request_id"]: r for r in requests if "error" in r}
        for (name, version), members in groups.items():
            answers.update(self._forward_isolated(name, version, members))
        for request in requests:  # shadow: the candidate sees a copy; only the log keeps it
            if request.get("shadow") and "error" not in answers[request["request_id"]]:
                self._forward_isolated(request["model"], request["shadow"], [request],
                                       shadow=True)
        self._report()
        return [answers[r["request_id"]] for r in requests]

    def _forward_isolated(self, name: str, version: str, members: list[dict],
                          shadow: bool = False) -> dict[str, dict]:
        """:meth:`_forward`; if the batch fails, each request again on its own."""
        try:
            return self._forward(name, version, members, shadow)
        except Exception:
            if len(members) == 1:
                log.exception("%s v%s failed on request %s", name, version,
                              members[0]["request_id"])
                self.parts.metrics.error(name, version, 422)
                return {members[0]["request_id"]: {"error": (
                    422, f"model {name} version {version} could not process these inputs")}}
        out = {}
        for member in members:
            out.update(self._forward_isolated(name, version, [member], shadow))
        return out

    def _forward(self, name: str, version: str, members: list[dict],
                 shadow: bool = False) -> dict[str, dict]:
        from dlforge.serve.cache import LoadFailed

        try:
            model = self.parts.cache.get(name, version)
        except LoadFailed as err:
            for _ in members:
                self.parts.metrics.error(name, version, 503)
            return {r["request_id"]: {"error": (503, f"model unavailable: {err}")}
                    for r in members}
        out, ready, encoded, summaries = {}, [], [], []
        for r in members:
            try:
                mine, about = self._encode(model, r["inputs"])
            except InputError as err:  # an input that does not decode fails its request only
                out[r["request_id"]] = {"error": (err.status, str(err))}
                self.parts.metrics.error(name, version, err.status)
                continue
            ready.append(r)
            encoded += mine
            summaries += about
        if ready:
            results = model.predict_encoded(encoded, top_k=max(r["top_k"] for r in ready))
            if not shadow:
                self.parts.metrics.batch_size.labels(name, version).observe(len(encoded))
            out.update(self._answer(name, version, ready, results, summaries, shadow))
        return out

    def _answer(self, name: str, version: str, members: list[dict], results: list[dict],
                summaries: list[dict], shadow: bool) -> dict[str, dict]:
        """Each request's response; every prediction logged and remembered for feedback."""
        out, start, records, answers = {}, 0, [], []
        for r in members:
            mine = results[start:start + len(r["inputs"])]
            about = summaries[start:start + len(r["inputs"])]
            start += len(r["inputs"])
            predictions = [{**p, "top_k": p["top_k"][:r["top_k"]], "labels": p.get("labels")}
                           for p in mine]
            out[r["request_id"]] = {"model": name, "version": version,
                                    "predictions": predictions, "request_id": r["request_id"]}
            latency = time.time() - r["received"]
            if not shadow:
                self.parts.metrics.answered(name, version, len(mine), latency)
                answers += [(r["request_id"], i, name, version, p["label"], r["routed"])
                            for i, p in enumerate(mine)]
            records += [{"request_id": r["request_id"], "time": r["received"], "model": name,
                         "version": version, "input_digest": input_digest(x), "input": a,
                         "label": p["label"], "score": p["score"],
                         "latency_ms": round(latency * 1000, 2), "shadow": shadow}
                        for x, p, a in zip(r["inputs"], mine, about, strict=True)]
        try:
            self.parts.prediction_log.write(records)
            if answers:
                self.parts.state.record(answers)
        except OSError as err:  # an answer that cannot be logged is not given
            status = 507 if err.errno in (errno.ENOSPC, errno.EDQUOT) else 503
            log.error("cannot write the prediction log or state: %s", err)
            message = (f"the server cannot store predictions ({err.strerror or err}); "
                       + ("it is not ready until its disk has room again" if status == 507
                          else "try again later"))
            return {r["request_id"]: {"error": (status, message)} for r in members}
        return out

    def _encode(self, model, inputs: list[str]) -> tuple[list, list[dict]]:
        """The inputs as the model reads them, and a summary of each for the log.

        Each input arrives in its encoder's wire format and is held to the limit that
        the encoder names (``max_input_chars``, ``max_image_pixels``).

        Raises:
            InputError: naming the first input that cannot be read.
        """
        from dlforge.models.preprocessing import InputTooLarge, UnreadableInput

        encoder = model.encoder
        encoded, summaries, limit = [], [], getattr(self.settings, encoder.size_limit)
        for i, x in enumerate(inputs):
            try:
                mine, about = encoder.read_wire(x, limit)
            except InputTooLarge as err:
                raise InputError(413, f"inputs.{i}: {err}") from None
            except UnreadableInput as err:
                raise InputError(422, f"inputs.{i}: {err}") from None
            encoded.append(mine)
            summaries.append(about)
        return encoded, summaries

    def encode_response(self, output: dict) -> PredictResponse:
        """The answer as JSON, encoded here in the worker: the HTTP process only forwards
        it (a Response passes FastAPI unchanged; the annotation documents its schema)."""
        if "error" in output:
            status, message = output["error"]
            return JSONResponse({"detail": message}, status_code=status)
        return JSONResponse(output)


class InputError(Exception):
    """An input a model cannot read; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _no_alias(name: str, alias: str, aliases: dict[str, str]) -> HTTPException:
    """404 for an alias no version of ``name`` has, naming the aliases it has."""
    known = ", ".join(f"{a} (v{v})" for a, v in sorted(aliases.items())) or "none"
    return HTTPException(404, f"model {name} has no alias {alias!r} (its aliases: {known}). "
                              "Fix: name one of them, a version, or no alias; or point the "
                              f"alias at a version: `dlforge models promote {name} VERSION "
                              "--alias ALIAS`")


def _name(error: Exception) -> str:
    """An exception's type, for a message that must not echo what the client sent."""
    return type(error).__name__
