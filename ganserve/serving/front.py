"""ganserve's front on the public inference port: a small, bounded HTTP/1.1 reverse proxy in front of TorchServe.

Why it exists: TorchServe's frontend aggregates every request body (netty's HttpObjectAggregator) and answers a body
over its ``max_request_size`` with a 413 and an *empty* body before any handler runs, and offers no hook to change
that. The front refuses a body over ``ganserve.serving.bodies.MAX_BODY_BYTES`` itself, from ``Content-Length`` or
a chunked body's running total, with the same JSON the handler gives (``bodies.too_large``), without reading it;
TorchServe listens on a loopback port behind it, its own limit set above the front's, so its empty 413 is out of
reach.

Everything else passes through as sent (method, path, headers including ``Authorization``, the body streamed in
64 KiB pieces, keep-alive, chunked bodies both ways, HEAD). The front answers ``Expect: 100-continue`` itself once the
size is known to fit and TorchServe is reachable. Every resource is bounded and every refusal is JSON
(``{"error", "field": "", "message"}``, the shape of ganserve's other errors):

| status | when |
|---|---|
| 413 | a body over the limit (Content-Length, or the chunked total so far) |
| 431 | a request head over ``max_header_bytes`` |
| 408 | a request whose head and body did not arrive within ``request_timeout_s`` of its first byte (slowloris) |
| 400 / 501 / 505 / 417 | a head that cannot be forwarded safely (bad or conflicting framing, obsolete folding ...) |
| 503 + Retry-After | ``max_connections`` client connections are open already |
| 502 / 504 | TorchServe refused the connection, dropped it, or gave no answer within ``response_timeout_s`` |

A connection idle for ``idle_timeout_s`` between requests is closed without an answer. After a refusal the front
half-closes and discards what the client still sends for at most ``linger_s`` (so the client reads the answer instead
of a reset), then closes. The front runs its own event loop in a thread of the process that starts it
(``ganserve.serving.launcher.Server``), so it lives and dies with that process.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import re
import socket
import threading
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from ganserve.serving.bodies import MAX_BODY_BYTES, too_large

log = logging.getLogger(__name__)
T = TypeVar("T")

PIECE = 64 * 1024  # bytes moved per read/write: the most a connection ever holds of a body
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
# Headers about one hop only (RFC 9110 7.6.1): never forwarded; the front sets the framing itself.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"})


@dataclass(frozen=True)
class FrontLimits:
    max_connections: int = 256  # client connections at once; two sockets each (client and TorchServe)
    max_header_bytes: int = 64 * 1024
    idle_timeout_s: float = 60.0  # waiting for a request on an open connection
    request_timeout_s: float = 60.0  # from a request's first byte to the end of its body
    response_timeout_s: float = 150.0  # TorchServe's own default response timeout is 120 s: it answers first
    connect_timeout_s: float = 5.0
    write_timeout_s: float = 60.0  # a client that stops reading its answer
    linger_s: float = 2.0


class HTTPError(Exception):
    """An answer the front gives itself (JSON), after which the connection closes."""

    def __init__(self, status: int, message: str, payload: dict[str, Any] | None = None, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.payload = payload or {"error": http.HTTPStatus(status).phrase.lower(), "field": "", "message": message}
        self.headers = {k.replace("_", "-"): v for k, v in headers.items()}


class _ClientGone(Exception):
    """The client closed or reset its connection: nobody to answer."""


class _UpstreamGone(HTTPError):
    """TorchServe stopped taking the request (it may have answered it early: read that before calling it a 502)."""


def json_response(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response with a JSON body (the bytes ganserve's handler writes: ``json.dumps``), closing."""
    body = json.dumps(payload).encode()
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close"]  # fmt: skip
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    length: int | None  # Content-Length; None: chunked or no body
    chunked: bool
    expect_continue: bool
    keep_alive: bool

    def upstream_head(self) -> bytes:
        """The head sent on to TorchServe: HTTP/1.1, hop-by-hop headers and Expect dropped, framing restated."""
        drop = HOP_BY_HOP | {"expect", "content-length", "transfer-encoding"} | _connection_tokens(self.headers)
        lines = [f"{self.method} {self.target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() not in drop]
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
        elif self.length is not None:
            lines.append(f"Content-Length: {self.length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _connection_tokens(headers: list[tuple[str, str]]) -> set[str]:
    return {t.strip().lower() for k, v in headers if k.lower() == "connection" for t in v.split(",") if t.strip()}


def _split_head(head: bytes, what: str) -> tuple[str, list[tuple[str, str]]]:
    """A head (ending in CRLF CRLF) -> its first line and (name, value) pairs. Refuses what proxies and servers may
    read differently (request smuggling): bare CR/LF or NUL inside a line, folded lines, space before the colon."""
    lines = head.lstrip(b"\r\n")[:-4].split(b"\r\n")
    headers = []
    for raw in lines[1:]:
        name, colon, value = raw.partition(b":")
        if raw[:1] in (b" ", b"\t"):
            raise HTTPError(400, f"the {what} has a folded header line (obsolete line folding is not accepted)")
        if not colon or not TOKEN.fullmatch(name):
            raise HTTPError(400, f"the {what} has a malformed header line: {raw[:40]!r}")
        if any(c in value for c in b"\r\n\0"):
            raise HTTPError(400, f"the {what}'s header {name.decode()} has a bare CR, LF or NUL in its value")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    if any(c in lines[0] for c in b"\r\n\0"):
        raise HTTPError(400, f"the {what} line has a bare CR, LF or NUL")
    return lines[0].decode("latin-1"), headers


def _values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


def parse_request_head(head: bytes) -> Request:
    """The request line and headers, checked for what decides the framing. Raises HTTPError."""
    line, headers = _split_head(head, "request")
    parts = line.split(" ")
    if len(parts) != 3 or not TOKEN.fullmatch(parts[0].encode("latin-1")):
        raise HTTPError(400, f"malformed request line {line[:60]!r} (expected 'METHOD /path HTTP/1.1')")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        status = 505 if version.startswith("HTTP/") else 400
        raise HTTPError(status, f"HTTP version {version[:16]!r} is not supported (HTTP/1.1 or HTTP/1.0)")
    if not (target.startswith("/") or (target == "*" and method == "OPTIONS")):
        raise HTTPError(400, f"request target {target[:60]!r} must be a path starting with '/'")
    te = [t.strip().lower() for v in _values(headers, "transfer-encoding") for t in v.split(",") if t.strip()]
    lengths = {v.strip() for v in _values(headers, "content-length")}
    if te and lengths:
        raise HTTPError(400, "the request has both Transfer-Encoding and Content-Length: send one")
    if te and te != ["chunked"]:
        raise HTTPError(501, f"Transfer-Encoding {', '.join(te)!r} is not supported (only 'chunked')")
    length = None
    if lengths:
        if len(lengths) > 1:
            raise HTTPError(400, f"the request has conflicting Content-Length headers: {', '.join(sorted(lengths))}")
        (text,) = lengths
        if not (text.isascii() and text.isdigit()) or len(text) > 32:
            raise HTTPError(400, f"Content-Length {text[:40]!r} is not a byte count")
        length = int(text)
    expect = [v.strip().lower() for v in _values(headers, "expect")]
    if any(e != "100-continue" for e in expect):
        raise HTTPError(417, f"Expect {expect[0]!r} is not supported (only '100-continue')")
    # HTTP/1.0 clients get one request per connection (an answer TorchServe streams reaches them close-delimited)
    keep_alive = version == "HTTP/1.1" and "close" not in _connection_tokens(headers)
    return Request(method, target, version, headers, length, bool(te), bool(expect), keep_alive)


@dataclass
class Response:
    status: int
    head_line: str
    headers: list[tuple[str, str]]
    length: int | None
    chunked: bool
    close: bool


def parse_response_head(head: bytes) -> Response:
    line, headers = _split_head(head, "response")
    m = re.fullmatch(r"HTTP/1\.[01] ([1-5][0-9][0-9])(?: .*)?", line)
    if not m:
        raise HTTPError(502, f"the inference server answered with a malformed status line {line[:60]!r}")
    te = [t.strip().lower() for v in _values(headers, "transfer-encoding") for t in v.split(",") if t.strip()]
    lengths = {v.strip() for v in _values(headers, "content-length")}
    length = None
    if lengths and not te:
        text = lengths.pop() if len(lengths) == 1 else ", ".join(sorted(lengths))
        if not (text.isascii() and text.isdigit()):
            raise HTTPError(502, f"the inference server answered with a bad Content-Length {text[:40]!r}")
        length = int(text)
    close = "close" in _connection_tokens(headers) or line.startswith("HTTP/1.0")
    return Response(int(m.group(1)), line, headers, length, te[-1:] == ["chunked"], close)


class _ResetIsEof(asyncio.StreamReaderProtocol):
    """TorchServe resets the connection right after an error answer (``connection: close``); a StreamReader would
    then raise the reset before handing over the answer's body it already holds. Read to the end first, then EOF:
    an answer cut short still shows as one (fewer bytes than its Content-Length)."""

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(None)


class _Upstream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def abort(self) -> None:
        self.writer.transport.abort()


class _Connection:
    """One client connection: requests one after another (keep-alive), each forwarded on one TorchServe
    connection that is kept while both sides keep theirs."""

    def __init__(self, front: Front, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.front, self.limits = front, front.limits
        self.reader, self.writer = reader, writer
        self.up: _Upstream | None = None
        self.answered = False  # response bytes of the current request have reached the client's socket
        self.cut = False  # end with a reset: TorchServe failed mid-answer and the client must not take it as whole

    # ---- helpers -------------------------------------------------------------------------------------------------
    async def _timed(self, aw: Awaitable[T], seconds: float, on_timeout: HTTPError) -> T:
        try:
            return await asyncio.wait_for(aw, max(0.0, seconds))
        except asyncio.TimeoutError:
            raise on_timeout from None

    async def _send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.limits.write_timeout_s)
        except (OSError, asyncio.TimeoutError) as e:  # reset, or a client that does not read
            raise _ClientGone from e

    async def _send_up(self, data: bytes) -> None:
        assert self.up is not None
        try:
            self.up.writer.write(data)
            await asyncio.wait_for(self.up.writer.drain(), self.limits.response_timeout_s)
        except (OSError, asyncio.TimeoutError) as e:
            raise _UpstreamGone(502, f"the inference server at {self.front.upstream_label} dropped the connection "
                                     f"while the request was sent ({type(e).__name__})") from None  # fmt: skip

    async def _from_client(self, aw: Awaitable[T], deadline: float) -> T:
        """A read of the request (head or body) before the request's deadline: 408 after it."""
        try:
            return await self._timed(aw, deadline - _now(), _request_timeout(self.limits))
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise _ClientGone from e

    async def _from_upstream(self, aw: Awaitable[T], what: str) -> T:
        seconds = self.limits.response_timeout_s
        try:
            return await self._timed(
                aw, seconds, HTTPError(504, f"the inference server at {self.front.upstream_label} gave no {what} "
                                            f"within {seconds:g} s"))  # fmt: skip
        except asyncio.LimitOverrunError:
            raise HTTPError(502, f"the inference server's {what} has a line over {self.limits.max_header_bytes} "
                                 "bytes") from None  # fmt: skip
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise HTTPError(502, f"the inference server at {self.front.upstream_label} closed the connection "
                                 f"before its {what} was complete ({type(e).__name__})") from None  # fmt: skip

    def abort(self) -> None:
        """Reset both sockets (the front is closing)."""
        self.cut = True
        self._drop_upstream()
        self.writer.transport.abort()

    def _drop_upstream(self) -> None:
        if self.up is not None:
            self.up.abort()
            self.up = None

    async def _connect(self) -> None:
        if self.up is not None and not self.up.reader.at_eof() and not self.up.writer.is_closing():
            return
        self._drop_upstream()
        host, port = self.front.upstream
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=self.limits.max_header_bytes, loop=loop)
        protocol = _ResetIsEof(reader, loop=loop)
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: protocol, host, port), self.limits.connect_timeout_s
            )
        except (OSError, asyncio.TimeoutError) as e:
            why = "no answer" if isinstance(e, asyncio.TimeoutError) else (e.strerror or type(e).__name__)
            raise HTTPError(502, f"the inference server (TorchServe at {self.front.upstream_label}) is not reachable "
                                 f"({why}): it may be down or restarting") from None  # fmt: skip
        self.up = _Upstream(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    # ---- one connection ------------------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            while True:
                self.answered = False
                try:
                    req, deadline = await self._read_request()
                    if req is None:
                        return
                    if not await self._exchange(req, deadline):
                        return
                except HTTPError as e:
                    self._drop_upstream()
                    if self.answered:  # part of an answer went out already: cut it rather than append JSON
                        return
                    with contextlib.suppress(_ClientGone):
                        await self._send(json_response(e.status, e.payload, e.headers))
                    await _linger(self.reader, self.writer, self.limits.linger_s)
                    return
        except _ClientGone:
            return
        finally:
            self._drop_upstream()
            if self.cut:
                self.writer.transport.abort()
            else:
                self.writer.close()

    async def _read_request(self) -> tuple[Request | None, float]:
        try:  # the first byte may take as long as the client likes to keep the connection: idle_timeout_s
            first = await asyncio.wait_for(self.reader.readexactly(1), self.limits.idle_timeout_s)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return None, 0.0
        deadline = _now() + self.limits.request_timeout_s
        try:
            rest = await self._from_client(self.reader.readuntil(b"\r\n\r\n"), deadline)
        except asyncio.LimitOverrunError:
            raise HTTPError(431, f"the request head is over {self.limits.max_header_bytes} bytes") from None
        except _ClientGone:
            return None, 0.0
        return parse_request_head(first + rest), deadline

    async def _exchange(self, req: Request, deadline: float) -> bool:
        """Forward one request and its answer. True: the connection can carry another request."""
        if req.length is not None and req.length > MAX_BODY_BYTES:
            raise _too_large(req.length)
        await self._connect()
        has_body = req.chunked or bool(req.length)
        if req.expect_continue and has_body and req.version == "HTTP/1.1":
            await self._send(b"HTTP/1.1 100 Continue\r\n\r\n")
        gone = None
        try:
            await self._send_up(req.upstream_head())
            if req.chunked:
                await self._copy_chunked_request(deadline)
            elif req.length:
                await self._copy_request_bytes(req.length, deadline)
        except _ClientGone:
            return False  # the request never completed: nothing to answer, TorchServe's connection is dropped
        except _UpstreamGone as e:
            gone = e
        if gone is None:
            return await self._copy_response(req, await self._read_response_head(req))
        try:  # an answer sent before the whole request was taken (then a reset), or none: the 502
            resp = await self._read_response_head(req)
        except HTTPError:
            raise gone from None
        req.keep_alive = False  # the rest of the client's body was never read: close after the answer
        await self._copy_response(req, resp)
        await _linger(self.reader, self.writer, self.limits.linger_s)
        return False

    # ---- request body --------------------------------------------------------------------------------------------
    async def _copy_request_bytes(self, n: int, deadline: float) -> None:
        while n:
            piece = await self._from_client(self.reader.read(min(n, PIECE)), deadline)
            if not piece:
                raise _ClientGone
            n -= len(piece)
            await self._send_up(piece)

    async def _copy_chunked_request(self, deadline: float) -> None:
        total = 0
        while True:
            line = await self._line_from_client(deadline)
            size_text = line[:-2].split(b";", 1)[0].strip(b" \t")
            if not HEX.fullmatch(size_text):
                raise HTTPError(400, f"the chunked request body has a malformed chunk size line {line[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                while await self._line_from_client(deadline) != b"\r\n":  # trailers: read and dropped
                    pass
                await self._send_up(b"0\r\n\r\n")
                return
            total += size
            if total > MAX_BODY_BYTES:
                raise _too_large(total, partial=True)
            await self._send_up(b"%x\r\n" % size)
            await self._copy_request_bytes(size, deadline)
            if await self._from_client(self.reader.readexactly(2), deadline) != b"\r\n":
                raise HTTPError(400, "the chunked request body has a chunk longer than its size line says")
            await self._send_up(b"\r\n")

    async def _line_from_client(self, deadline: float) -> bytes:
        try:
            return await self._from_client(self.reader.readuntil(b"\r\n"), deadline)
        except asyncio.LimitOverrunError:
            raise HTTPError(400, f"the chunked request body has a line over {self.limits.max_header_bytes} "
                                 "bytes") from None  # fmt: skip

    # ---- response ------------------------------------------------------------------------------------------------
    async def _read_response_head(self, req: Request) -> Response:
        assert self.up is not None
        while True:
            head = await self._from_upstream(self.up.reader.readuntil(b"\r\n\r\n"), "answer")
            resp = parse_response_head(head)
            if resp.status == 101:
                raise HTTPError(502, "the inference server switched protocols, which the front does not carry")
            if resp.status >= 200:
                return resp  # 1xx interim answers (the front sent no Expect) are dropped

    async def _copy_response(self, req: Request, resp: Response) -> bool:
        assert self.up is not None
        bodiless = req.method == "HEAD" or resp.status in (204, 304)
        dechunk = resp.chunked and req.version == "HTTP/1.0" and not bodiless
        delimited_by_close = not bodiless and not resp.chunked and resp.length is None
        keep = req.keep_alive and not delimited_by_close and not dechunk
        drop = HOP_BY_HOP | _connection_tokens(resp.headers) | ({"transfer-encoding"} if dechunk else set())
        lines = [f"HTTP/1.1 {resp.head_line.split(' ', 1)[1]}"]
        lines += [f"{k}: {v}" for k, v in resp.headers if k.lower() not in drop]
        if not keep:
            lines.append("Connection: close")
        self.answered = True
        await self._send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        try:
            if bodiless:
                pass
            elif resp.chunked:
                await self._copy_chunked_response(dechunk)
            elif resp.length is not None:
                await self._copy_response_bytes(resp.length)
            else:
                while piece := await self._from_upstream(self.up.reader.read(PIECE), "body"):
                    await self._send(piece)
        except HTTPError:  # TorchServe failed mid-answer: cut the client's connection so it sees a short answer
            self.cut = True
            raise _ClientGone from None
        if resp.close or delimited_by_close:
            self._drop_upstream()
        return keep

    async def _copy_response_bytes(self, n: int) -> None:
        assert self.up is not None
        while n:
            piece = await self._from_upstream(self.up.reader.read(min(n, PIECE)), "body")
            if not piece:
                raise HTTPError(502, "the inference server closed the connection mid-answer")
            n -= len(piece)
            await self._send(piece)

    async def _copy_chunked_response(self, dechunk: bool) -> None:
        """Chunks pass through as they come (streamed), or their data alone for an HTTP/1.0 client."""
        assert self.up is not None
        while True:
            line = await self._from_upstream(self.up.reader.readuntil(b"\r\n"), "body")
            size_text = line[:-2].split(b";", 1)[0].strip(b" \t")
            if not HEX.fullmatch(size_text):
                raise HTTPError(502, "the inference server sent a malformed chunk")
            size = int(size_text, 16)
            if not dechunk:
                await self._send(line)
            if size == 0:
                while (trailer := await self._from_upstream(self.up.reader.readuntil(b"\r\n"), "body")) != b"\r\n":
                    if not dechunk:
                        await self._send(trailer)
                if not dechunk:
                    await self._send(b"\r\n")
                return
            await self._copy_response_bytes(size)
            crlf = await self._from_upstream(self.up.reader.readexactly(2), "body")
            if crlf != b"\r\n":
                raise HTTPError(502, "the inference server sent a chunk longer than its size line says")
            if not dechunk:
                await self._send(crlf)


def _now() -> float:
    return asyncio.get_running_loop().time()


def _too_large(size: int, partial: bool = False) -> HTTPError:
    err = too_large(size, partial=partial)  # the handler's own 413, byte for byte
    return HTTPError(err.status, err.message, err.to_dict())


def _request_timeout(limits: FrontLimits) -> HTTPError:
    return HTTPError(408, f"the request did not arrive within {limits.request_timeout_s:g} s of its first byte")


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seconds: float) -> None:
    """Half-close, then read and discard what the client still sends (bounded in time), so that the answer is read
    instead of lost to a reset; the body itself is never kept."""
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()
    end = _now() + seconds
    with contextlib.suppress(OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        while _now() < end and await asyncio.wait_for(reader.read(PIECE), max(0.0, end - _now())):
            pass


class Front:
    """The front, run in a thread of its own: ``Front(("127.0.0.1", 8080), ("127.0.0.1", 8085)).start()`` ...
    ``close()``. ``start`` binds before it returns (an OSError if the port is taken)."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], limits: FrontLimits | None = None) -> None:
        self.listen, self.upstream = listen, upstream
        self.limits = limits or FrontLimits()
        self.upstream_label = f"{upstream[0]}:{upstream[1]}"
        self.active = 0  # client connections being served
        self._refusing = 0
        self._conns: set[_Connection] = set()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self.port = listen[1]

    @property
    def url(self) -> str:
        return f"http://{self.listen[0]}:{self.port}"

    def start(self) -> Front:
        sock = socket.socket(socket.AF_INET6 if ":" in self.listen[0] else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(self.listen)
            sock.listen(512)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        started = threading.Event()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._accept, sock=sock, limit=self.limits.max_header_bytes)
            started.set()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"ganserve-front-{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("ganserve's front did not start")
        return self

    def close(self, timeout: float = 10) -> None:
        """Stop listening, end every connection, stop the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            # Connections are reset (both sockets), not cancelled: their tasks then end on their own, including those
            # accepted but not started yet (they see _closing); cancelling is the last resort.
            self._closing = True
            if self._server is not None:
                self._server.close()
            end = _now() + timeout / 2
            while (pending := asyncio.all_tasks() - {asyncio.current_task()}) and _now() < end:
                for conn in list(self._conns):
                    conn.abort()
                await asyncio.wait(pending, timeout=0.05)
            for task in pending:
                task.cancel()
            await asyncio.sleep(0)  # aborted transports close their sockets in callbacks of the next round

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = self._server = None

    def __enter__(self) -> Front:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.transport.abort()
            return
        # asyncio turns Nagle off only for sockets made with proto=IPPROTO_TCP, which accepted ones are not: with it
        # on, an answer's body waited for the client's delayed ACK of its head (+40 ms a request, measured)
        with contextlib.suppress(OSError):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self.active >= self.limits.max_connections:
                await self._refuse(reader, writer)
                return
            conn = _Connection(self, reader, writer)
            self.active += 1
            self._conns.add(conn)
            try:
                await conn.run()
            finally:
                self.active -= 1
                self._conns.discard(conn)
        except asyncio.CancelledError:  # close()'s last resort: the task ends here (asyncio's stream callback
            writer.transport.abort()  # would log a re-raised cancellation as an error)
        except Exception:  # a bug here must cost one connection, never the loop
            log.exception("ganserve front: connection failed")
            writer.transport.abort()

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """503 to a connection over the cap; refusals in progress are capped too (beyond: closed at once)."""
        if self._refusing >= self.limits.max_connections:
            writer.transport.abort()
            return
        self._refusing += 1
        try:
            msg = f"the server has {self.limits.max_connections} connections open, its limit: try again shortly"
            payload = {"error": "too many connections", "field": "", "message": msg, "retry_after_s": 1}
            writer.write(json_response(503, payload, {"Retry-After": "1"}))
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.drain(), 1)
            await _linger(reader, writer, min(1.0, self.limits.linger_s))
        finally:
            self._refusing -= 1
            writer.close()
