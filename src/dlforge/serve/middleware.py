"""ASGI middleware of the prediction server: an API key, when one is configured.

The key comes from ``api_key`` in conf/serve.yaml or the ``DLFORGE_API_KEY``
environment variable; clients send it as ``X-API-Key: KEY`` or
``Authorization: Bearer KEY``. ``/health`` stays open for load balancers.
"""

import hmac
import json

OPEN_PATHS = frozenset({"/health"})


class ApiKeyMiddleware:
    """Answer 401 (JSON, with a message) to requests without the right key."""

    def __init__(self, app, api_key: str):
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": "missing or wrong API key: send X-API-Key or "
                                     "Authorization: Bearer"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope) -> bool:
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(
            b"Bearer ")
        return bool(given) and hmac.compare_digest(given, self.key)
