"""The HTTP connection limits of the prediction server, below the application.

uvicorn reads a request's headers without a size limit and without a time
limit: a client can send megabytes of headers, or hold a connection open by
sending a byte now and then, and no ASGI middleware can see it, since the
application only starts once the headers are complete. This protocol (uvicorn's
httptools protocol with two additions) closes such connections:

    header size   a request whose request line and headers exceed
                  ``max_header_bytes`` is answered 431 and the connection closed
    read time     a request must arrive whole, headers and body, within
                  ``read_timeout`` seconds of its first byte; a connection
                  must send its first request within that time too. Past it:
                  408 (if nothing was answered yet) and the connection closed

A refusal is sent with a FIN, and what the client still sends is read and dropped
until it closes, for ``linger`` seconds at most (nginx's lingering close): closing at
once, with the client's bytes still arriving, would answer them with a reset that can
overtake the refusal, and the client would see its connection reset instead.

Idle keep-alive connections are closed by uvicorn's own ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

STATUS = {408: b"408 Request Timeout", 431: b"431 Request Header Fields Too Large"}


def guarded_protocol(max_header_bytes: int, read_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class to give uvicorn (``http=``), with these limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,),
                {"max_header_bytes": max_header_bytes, "read_timeout": read_timeout})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit and a read deadline."""

    max_header_bytes = 16384
    read_timeout = 10.0
    linger = 2.0  # seconds a refused connection is read and dropped before it is closed

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._header_bytes, self._unparsed, self._in_headers = 0, 0, True
        self._refused = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:  # after a refusal, the rest of the request is not parsed
            return
        if self._in_headers:
            self._unparsed += len(data)
        super().data_received(data)
        # httptools hands a header over only once it is complete: bytes that are
        # still part of unfinished headers are counted here, as they arrive
        if self._in_headers and self._unparsed > self.max_header_bytes:
            self._refuse(431, f"request headers over {self.max_header_bytes} bytes "
                              "(max_header_bytes)")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._cancel_read_timer()
        self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        if not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers, self._unparsed = False, 0
        if not self._refused:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_read_timer()
        self._in_headers = True  # what comes next is the next request's headers
        if not self._refused:
            super().on_message_complete()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes and not self._refused:
            self._refuse(431, f"request headers over {self.max_header_bytes} bytes "
                              "(max_header_bytes)")

    def _read_timed_out(self) -> None:
        self._read_timer = None
        answered = self.cycle is not None and self.cycle.response_started
        silent = self.cycle is None and self._header_bytes == 0 and self._unparsed == 0
        if silent and not self.transport.is_closing():
            self.transport.close()  # a connection that never sent a request
        elif not answered:
            self._refuse(408, f"the request did not arrive within {self.read_timeout:g} s "
                              "(read_timeout)")
        elif not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with a JSON message, and close the connection."""
        self._refused = True
        self._cancel_read_timer()
        if self.transport.is_closing():
            return
        body = b'{"detail": "' + message.encode() + b'"}'
        self.transport.write(b"HTTP/1.1 " + STATUS[status] + b"\r\ncontent-type: "
                             b"application/json\r\ncontent-length: " + str(len(body)).encode()
                             + b"\r\nconnection: close\r\n\r\n" + body)
        if self.transport.can_write_eof():  # the answer, then FIN; the rest read and dropped
            self.transport.write_eof()
            self._linger_timer = self.loop.call_later(self.linger, self.transport.close)
        else:
            self.transport.close()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the application's answer, if any, goes nowhere
            self.cycle.message_event.set()

    def _cancel_read_timer(self) -> None:
        timer = getattr(self, "_read_timer", None)
        if timer is not None:
            timer.cancel()
            self._read_timer = None
