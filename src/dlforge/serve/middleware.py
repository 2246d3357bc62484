"""ASGI middleware of the prediction server, outermost first.

    HttpMetricsMiddleware   every answer counted and timed (GET /metrics)
    ApiKeyMiddleware        the API key, when one is configured (401)
    AdmissionMiddleware     the bounded queue: at most ``max_pending`` requests
                            in flight per HTTP process; more answer 503 at once,
                            so memory stays bounded and the server stays up

The key comes from ``api_key`` in conf/serve.yaml or the ``DLFORGE_API_KEY``
environment variable; clients send it as ``X-API-Key: KEY`` or
``Authorization: Bearer KEY``. ``/health`` stays open for load balancers.
"""

import hmac
import json
import time

OPEN_PATHS = frozenset({"/health"})
QUEUED_PATHS = frozenset({"/predict"})


async def _refuse(send, status: int, message: str, headers: list | None = None) -> None:
    """Answer with a JSON ``{"detail": message}`` (FastAPI's error shape)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *(headers or [])]})
    await send({"type": "http.response.body", "body": json.dumps({"detail": message}).encode()})


class ApiKeyMiddleware:
    """Answer 401 (JSON, with a message) to requests without the right key."""

    def __init__(self, app, api_key: str):
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        await _refuse(send, 401, "missing or wrong API key: send X-API-Key or "
                                 "Authorization: Bearer", [(b"www-authenticate", b"Bearer")])

    def _allowed(self, scope) -> bool:
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(
            b"Bearer ")
        return bool(given) and hmac.compare_digest(given, self.key)


class AdmissionMiddleware:
    """503 with ``Retry-After`` once ``max_pending`` prediction requests are in flight."""

    def __init__(self, app, max_pending: int, metrics_dir: str):
        from dlforge.serve.metrics import http_metrics

        self.app, self.max_pending, self.pending = app, max_pending, 0
        self.metrics = http_metrics(metrics_dir)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] not in QUEUED_PATHS:
            await self.app(scope, receive, send)
            return
        if self.pending >= self.max_pending:
            self.metrics.overloaded.inc()
            await _refuse(send, 503, f"overloaded: {self.pending} requests in flight "
                                     f"(max_pending_requests={self.max_pending}); retry later",
                          [(b"retry-after", b"1")])
            return
        self.pending += 1  # one event loop per process: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.pending -= 1


class HttpMetricsMiddleware:
    """Count and time every HTTP answer by path and status."""

    def __init__(self, app, metrics_dir: str):
        from dlforge.serve.metrics import http_metrics

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
