"""The servers bench_serve.py compares `dlforge serve` with, besides MLflow's.

Usage:
    python benchmarks/serve_baseline.py app --package FOLDER --port P [--handler sync|async]
    python benchmarks/serve_baseline.py trivial --port P

``app``: a minimal FastAPI app under uvicorn (one worker, uvicorn's defaults,
access log included) that loads a dlforge model package once and does one
forward pass per request: ``POST /predict`` ``{"inputs": [text], "top_k": 1}``
-> ``{"predictions": [...]}``; ``GET /health`` -> 200 ``ok``. The ``sync``
handler (FastAPI's idiom for blocking work) runs in the threadpool; ``async``
runs the forward pass on the event loop.

``trivial``: a raw asyncio (uvloop) HTTP/1.1 server that answers every request
at once with a fixed small JSON body, for the load generator's own ceiling.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations at run
# time, and a string annotation naming PredictRequest would make it a query parameter.
import argparse
import asyncio

from pydantic import BaseModel, Field

TRIVIAL_BODY = b'{"predictions":[{"label":"x","score":1.0}]}'
TRIVIAL_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(TRIVIAL_BODY), TRIVIAL_BODY))


class PredictRequest(BaseModel):
    """``POST /predict`` body, as `dlforge serve` takes it (the fields used here)."""

    inputs: list[str] = Field(min_length=1)
    top_k: int = Field(5, ge=1, le=100)


def make_app(package: str, handler: str = "sync"):
    """The FastAPI app serving the package in ``package``."""
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    from dlforge.models.package import load_package

    model = load_package(package)
    app = FastAPI()

    @app.get("/health", response_class=PlainTextResponse)
    def health() -> str:
        return "ok"

    if handler == "sync":
        @app.post("/predict")
        def predict(request: PredictRequest) -> dict:
            return {"predictions": model.predict(request.inputs, top_k=request.top_k)}
    else:
        @app.post("/predict")
        async def predict(request: PredictRequest) -> dict:
            return {"predictions": model.predict(request.inputs, top_k=request.top_k)}
    return app


class _Trivial(asyncio.Protocol):
    """Answers each complete request head (bodies are small: counted by Content-Length)."""

    def connection_made(self, transport) -> None:
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(TRIVIAL_RESPONSE)


async def _serve_trivial(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Trivial, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=("app", "trivial"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--package", help="model package folder (app)")
    parser.add_argument("--handler", choices=("sync", "async"), default="sync")
    args = parser.parse_args()
    if args.kind == "trivial":
        import uvloop

        uvloop.run(_serve_trivial(args.port))
        return 0
    import uvicorn

    uvicorn.run(make_app(args.package, args.handler), host="127.0.0.1", port=args.port,
                workers=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
