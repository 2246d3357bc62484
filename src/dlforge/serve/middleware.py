"""ASGI middleware of the prediction server, outermost first.

    HttpMetricsMiddleware   every answer counted and timed (GET /metrics)
    HostMiddleware          the Host names answered (421), when limited: see hosts.py
    ApiKeyMiddleware        the API key, when one is configured (401)
    RequestGate             reads a request's body (bounded in size), checks a
                            /predict request before it is queued (404, 413,
                            422: see schema.py), then admits it: at most
                            ``max_pending_requests`` whose body has arrived are
                            in flight per HTTP process; more answer 503 at once

A request is counted for admission only once its whole body has arrived, so
slow clients cannot hold the slots; the time they may take is bounded below
the application (``read_timeout``, see http.py).

The key comes from ``api_key`` in conf/serve.yaml or the ``DLFORGE_API_KEY``
environment variable; clients send it as ``X-API-Key: KEY`` or
``Authorization: Bearer KEY``, once: a request that carries either header more
than once is refused whatever the values (servers and proxies disagree on
which of two copies counts). The health checks stay open for load balancers.
"""

import hmac
import json
import time

from dlforge.serve.schema import MAX_MESSAGE, RequestError, check_predict, parse_json
from dlforge.serve.settings import ServeSettings

OPEN_PATHS = frozenset({"/health", "/health/live", "/health/ready"})
CHECKED_PATHS = frozenset({"/predict", "/feedback"})
KEY_HEADERS = (b"x-api-key", b"authorization")


async def _refuse(send, status: int, message: str, headers: list | None = None) -> None:
    """Answer with a JSON ``{"detail": message}`` (FastAPI's error shape)."""
    body = json.dumps({"detail": message[:MAX_MESSAGE]}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class HostMiddleware:
    """Answer 421 (JSON, naming the fix) to requests for a Host name not in ``hosts``."""

    def __init__(self, app, hosts: frozenset[str]):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        await _refuse(send, 421, f"this server answers only the host names "
                                 f"{', '.join(sorted(self.hosts))} (any port). Fix: use one of "
                                 "them, or list the name in allowed_hosts (conf/serve.yaml); "
                                 "a server without an API key answers only loopback names, "
                                 "since a web page could reach it through DNS rebinding under "
                                 "any other (set DLFORGE_API_KEY to serve other names)")

    def _allowed(self, scope) -> bool:
        from dlforge.serve.hosts import host_name

        given = [value for name, value in scope["headers"] if name == b"host"]
        return len(given) == 1 and host_name(given[0]) in self.hosts


class ApiKeyMiddleware:
    """Answer 401 (JSON, with a message) to requests without the right key."""

    def __init__(self, app, api_key: str):
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        repeated = [name.decode() for name in KEY_HEADERS
                    if sum(1 for header, _ in scope["headers"] if header == name) > 1]
        if repeated:
            await _refuse(send, 401, f"the {repeated[0]} header is sent more than once: send "
                                     "the API key once", [(b"www-authenticate", b"Bearer")])
        elif self._allowed(scope):
            await self.app(scope, receive, send)
        else:
            await _refuse(send, 401, "missing or wrong API key: send X-API-Key or "
                                     "Authorization: Bearer", [(b"www-authenticate", b"Bearer")])

    def _allowed(self, scope) -> bool:
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key")
        if given is None:
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            given = token.strip() if scheme.lower() == b"bearer" else b""
        return bool(given) and hmac.compare_digest(given, self.key)


class RequestGate:
    """Read the body, check a prediction request, admit it; refuse it otherwise.

    Args:
        settings: the server's settings (limits, served models).
        metrics_dir: where the HTTP process records its metrics.
    """

    def __init__(self, app, settings: ServeSettings, metrics_dir: str):
        from dlforge.serve.prometheus import http_metrics

        self.app, self.settings, self.pending = app, settings, 0
        self.served = set(settings.models)
        self.metrics = http_metrics(metrics_dir)

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] != "http" or scope["path"] not in CHECKED_PATHS
                or scope["method"] != "POST"):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._body(receive)
            if body is None:
                return  # the client went away
            if scope["path"] == "/predict":
                self._check(body)
            else:
                parse_json(body)
        except RequestError as err:
            await _refuse(send, err.status, str(err), [(b"connection", b"close")]
                          if err.status == 413 else None)
            return
        await self._admit(scope, _replay(body, receive), send)

    async def _body(self, receive) -> bytes | None:
        """The whole body, or None when the client disconnected first.

        Raises:
            RequestError: 413 past ``max_body_bytes``.
        """
        limit, chunks, size = self.settings.max_body_bytes, [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"the body is too large: over {limit} bytes "
                                        "(max_body_bytes)")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _check(self, body: bytes) -> None:
        s = self.settings
        check_predict(body, self.served, s.default_model, s.max_inputs, s.max_input_chars)

    async def _admit(self, scope, receive, send) -> None:
        limit = self.settings.max_pending_requests
        if self.pending >= limit:
            self.metrics.overloaded.inc()
            await _refuse(send, 503, f"overloaded: {self.pending} requests in flight "
                                     f"(max_pending_requests={limit}); retry later",
                          [(b"retry-after", b"1")])
            return
        self.pending += 1  # one event loop per process: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.pending -= 1


def _replay(body: bytes, receive):
    """An ASGI ``receive`` that gives the body already read, then the connection's events."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class HttpMetricsMiddleware:
    """Count and time every HTTP answer by path and status."""

    def __init__(self, app, metrics_dir: str):
        from dlforge.serve.prometheus import http_metrics

        self.app, self.metrics = app, http_metrics(metrics_dir)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def record_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.answered(scope["path"], status, time.perf_counter() - start)
