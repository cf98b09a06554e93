"""ganserve's front (ganserve.serving.front) against a tiny stdlib upstream standing in for TorchServe: the JSON 413 at
every size, pass-through (keep-alive, chunked both ways, 100-continue, HEAD, Authorization), and its bounds."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ganserve.serving.bodies import MAX_BODY_BYTES, parse_json_object
from ganserve.serving.config import free_port
from ganserve.serving.front import Front, FrontLimits, HTTPError, parse_request_head
from ganserve.serving.launcher import port_is_free

FAST = FrontLimits(request_timeout_s=1.0, idle_timeout_s=5.0, response_timeout_s=5.0, linger_s=0.5)


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: UpstreamServer

    def log_message(self, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return out
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_POST(self) -> None:
        body = self._body()
        seen = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append({"path": self.path, "port": self.client_address[1], "headers": seen})
        self._reply(200, json.dumps({"length": len(body), "sha": hashlib.sha256(body).hexdigest(),
                                     "headers": seen}).encode())  # fmt: skip

    def do_GET(self) -> None:
        self.server.seen.append({"path": self.path, "port": self.client_address[1]})
        if self.path.startswith("/big"):  # streamed in chunks; waits for the test between the first and the rest
            n = int(self.path.split("=")[1])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            while sent < n:
                piece = pattern(sent, min(PIECE, n - sent))
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                if sent == 0:
                    self.server.first_chunk_read.wait(30)
                sent += len(piece)
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/hang":
            time.sleep(3)
            self._reply(200, b"{}")
        else:
            self._reply(200, b'{"fixed": true}')

    do_HEAD = do_GET


class UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Upstream)
        self.seen: list[dict] = []
        self.first_chunk_read = threading.Event()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a request the front dropped midway (the chunked 413) is expected to fail here


PIECE = 64 * 1024


def pattern(offset: int, n: int) -> bytes:
    return bytes((offset + i) % 251 for i in range(n))


@pytest.fixture(scope="module")
def upstream():
    server = UpstreamServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture()
def front(upstream):
    upstream.seen.clear()
    with Front(("127.0.0.1", 0), upstream.server_address, FAST) as f:
        yield f


def conn(front: Front) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", front.port, timeout=30)


def raw(front: Front) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", front.port), timeout=30)
    return s


def read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole response from a raw socket (Content-Length framing, as every answer of the front's own has)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += s.recv(65536)
    return int(lines[0].split()[1]), headers, body


def handler_413(size: int) -> bytes:
    """What ganserve's handler answers for a body of ``size`` bytes (its own code path: parse, then error_response)."""
    from ganserve.serving.service import error_response

    with pytest.raises(Exception) as err:
        parse_json_object(b"x" * size)
    return error_response(err.value.status, err.value.to_dict()).body


# ---- the one 413 -------------------------------------------------------------------------------------------------
def test_a_body_over_the_limit_gets_the_handlers_413_and_never_reaches_the_upstream(front, upstream):
    c = conn(front)
    c.request("POST", "/predictions/m", body=b"x" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read()
    assert r.status == 413 and r.getheader("Content-Type") == "application/json"
    assert body == handler_413(MAX_BODY_BYTES + 1)  # byte for byte
    assert json.loads(body)["error"] == "request too large" and str(MAX_BODY_BYTES) in json.loads(body)["message"]
    assert upstream.seen == []


def test_a_huge_content_length_is_refused_without_reading_the_body(front, upstream):
    s = raw(front)
    s.sendall(b"POST /predictions/m HTTP/1.1\r\nHost: x\r\nContent-Length: 52428800\r\n\r\n" + b"x" * 1000)
    status, headers, body = read_response(s)
    assert status == 413 and headers["connection"] == "close"
    assert body == handler_413(52428800) and "52428800 bytes" in json.loads(body)["message"]
    assert upstream.seen == []


def test_a_body_of_exactly_the_limit_passes_with_the_authorization_untouched(front, upstream):
    data = pattern(0, MAX_BODY_BYTES)
    c = conn(front)
    c.request("POST", "/predictions/m", body=data, headers={"Authorization": "Bearer k3y"})
    r = c.getresponse()
    got = json.loads(r.read())
    assert r.status == 200 and got["length"] == MAX_BODY_BYTES
    assert got["sha"] == hashlib.sha256(data).hexdigest() and got["headers"]["authorization"] == "Bearer k3y"


def chunked_request(front: Front, pieces: list[bytes]) -> tuple[int, dict[str, str], bytes]:
    s = raw(front)
    s.sendall(b"POST /predictions/m HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for p in pieces:
        s.sendall(b"%x;ext=1\r\n%s\r\n" % (len(p), p))
    s.sendall(b"0\r\nX-Trailer: t\r\n\r\n")
    return read_response(s)


def test_a_chunked_body_is_refused_when_its_running_total_passes_the_limit(front, upstream):
    piece = b"y" * (256 * 1024)
    status, _, body = chunked_request(front, [piece] * 4 + [b"z"])  # limit + 1
    msg = json.loads(body)
    assert status == 413 and msg["error"] == "request too large" and msg["field"] == ""
    assert f"at least {MAX_BODY_BYTES + 1} bytes" in msg["message"] and f"limit of {MAX_BODY_BYTES}" in msg["message"]
    assert upstream.seen == []  # the partial request was dropped with its connection, never answered


def test_a_chunked_body_of_exactly_the_limit_streams_through(front, upstream):
    pieces = [pattern(i, 256 * 1024) for i in range(4)]
    status, _, body = chunked_request(front, pieces)
    got = json.loads(body)
    assert status == 200 and got["length"] == MAX_BODY_BYTES
    assert got["sha"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert got["headers"]["transfer-encoding"] == "chunked" and "x-trailer" not in got["headers"]


# ---- pass-through ------------------------------------------------------------------------------------------------
def test_keep_alive_two_requests_on_one_connection_each_side(front, upstream):
    c = conn(front)
    for i in range(2):
        c.request("POST", "/predictions/m", body=b'{"seeds": [%d]}' % i)
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["length"] == len(b'{"seeds": [0]}')
        if i == 0:
            first = c.sock
    assert c.sock is first  # the client's connection was kept
    assert len({s["port"] for s in upstream.seen}) == 1  # and so was the front's to the upstream


def test_head_then_get_on_one_connection(front):
    c = conn(front)
    c.request("HEAD", "/fixed")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Length") == str(len(b'{"fixed": true}')) and r.read() == b""
    c.request("GET", "/fixed")
    assert c.getresponse().read() == b'{"fixed": true}'


def test_expect_100_continue(front, upstream):
    s = raw(front)
    s.sendall(b"POST /predictions/m HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    interim = b""
    while b"\r\n\r\n" not in interim:
        interim += s.recv(1)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(b"hello")
    status, _, body = read_response(s)
    assert status == 200 and json.loads(body)["length"] == 5 and "expect" not in json.loads(body)["headers"]
    # over the limit: the final 413 at once, no 100, so the client never sends the body
    s = raw(front)
    s.sendall(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (1 << 30))
    status, _, body = read_response(s)
    assert status == 413 and json.loads(body)["error"] == "request too large"


def test_a_large_response_is_streamed_not_buffered(front, upstream):
    """The upstream holds back everything after its first chunk until the client has read that chunk: a front
    that buffered the whole answer would never pass it on (the test would fail on its timeout, not pass)."""
    n = 20 * 1024 * 1024
    upstream.first_chunk_read.clear()
    c = conn(front)
    c.request("GET", f"/big?n={n}")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Transfer-Encoding") == "chunked"
    first = r.read1(PIECE)
    assert first == pattern(0, len(first)) and first
    upstream.first_chunk_read.set()
    rest = first + r.read()
    assert len(rest) == n and rest[-PIECE:] == pattern(n - PIECE, PIECE)


def test_an_http_1_0_client_gets_a_streamed_answer_without_chunks(front, upstream):
    upstream.first_chunk_read.set()
    s = raw(front)
    s.sendall(b"GET /big?n=200000 HTTP/1.0\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower() and b"connection: close" in head.lower()
    assert body == pattern(0, 200000)


# ---- bounds and failures -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sent, status, words",
    [
        (b"POST /p HTTP/1.1\r\nHost: x\r\n", 408, "did not arrive"),  # a head that never ends (slowloris)
        (b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", 408, "did not arrive"),  # a slow body
    ],
)
def test_a_slow_client_gets_408(front, sent, status, words):
    s = raw(front)
    s.sendall(sent)
    got, headers, body = read_response(s)
    assert got == status and words in json.loads(body)["message"] and headers["connection"] == "close"


def test_an_idle_connection_is_closed_without_an_answer(upstream):
    with Front(("127.0.0.1", 0), upstream.server_address, FrontLimits(idle_timeout_s=0.3)) as f:
        s = raw(f)
        assert s.recv(100) == b""


def test_a_head_over_64_kib_gets_431(front, upstream):
    s = raw(front)
    s.sendall(b"GET /fixed HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n")
    status, _, body = read_response(s)
    assert status == 431 and "65536" in json.loads(body)["message"]


@pytest.mark.parametrize(
    "head, status, words",
    [
        (b"POST /p HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "both"),
        (b"POST /p HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400, "conflicting"),
        (b"POST /p HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400, "Content-Length"),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "gzip"),
        (b"POST /p HTTP/1.1\r\nX: a\r\n  folded\r\n\r\n", 400, "folded"),
        (b"POST /p HTTP/1.1\r\nX : a\r\n\r\n", 400, "malformed header"),
        (b"POST /p HTTP/1.1\r\nX: a\nContent-Length: 4\r\n\r\n", 400, "bare CR, LF"),
        (b"POST /p HTTP/2.0\r\n\r\n", 505, "HTTP/2.0"),
        (b"POST http://evil/ HTTP/1.1\r\n\r\n", 400, "must be a path"),
        (b"GET /p HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 417, "200-ok"),
    ],
)
def test_a_head_that_cannot_be_forwarded_safely_is_refused_naming_why(head, status, words):
    with pytest.raises(HTTPError) as err:
        parse_request_head(head)
    assert err.value.status == status and words in err.value.payload["message"]


def test_the_connection_cap_answers_503_with_retry_after(upstream):
    with Front(("127.0.0.1", 0), upstream.server_address, FrontLimits(max_connections=2)) as f:
        held = [raw(f) for _ in range(2)]
        for s in held:
            s.sendall(b"GET /fixed HTTP/1.1\r\n")  # started requests keep their connections busy
        deadline = time.monotonic() + 30
        while f.active < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        c = conn(f)
        c.request("GET", "/fixed")
        r = c.getresponse()
        msg = json.loads(r.read())
        assert r.status == 503 and r.getheader("Retry-After") == "1" and msg["retry_after_s"] == 1
        assert "2 connections" in msg["message"]
        held[0].sendall(b"Host: x\r\n\r\n")  # the held ones are still served
        assert read_response(held[0])[0] == 200


def test_the_upstream_down_is_a_502_naming_it():
    port = free_port()
    with Front(("127.0.0.1", 0), ("127.0.0.1", port), FAST) as f:
        c = conn(f)
        c.request("POST", "/predictions/m", body=b"{}")
        r = c.getresponse()
        msg = json.loads(r.read())
    assert r.status == 502 and msg["error"] == "bad gateway"
    assert f"TorchServe at 127.0.0.1:{port}" in msg["message"] and "not reachable" in msg["message"]


def test_an_upstream_that_drops_the_connection_is_a_502():
    listener = socket.create_server(("127.0.0.1", 0))

    def drop() -> None:
        s, _ = listener.accept()
        s.recv(65536)
        s.close()

    threading.Thread(target=drop, daemon=True).start()
    with Front(("127.0.0.1", 0), listener.getsockname(), FAST) as f:
        c = conn(f)
        c.request("GET", "/ping")
        r = c.getresponse()
        msg = json.loads(r.read())
    listener.close()
    assert r.status == 502 and "closed the connection" in msg["message"]


def test_an_answer_followed_by_a_reset_reaches_the_client_whole():
    """TorchServe answers an error with ``connection: close`` and resets the connection right after it."""
    import struct

    listener = socket.create_server(("127.0.0.1", 0))
    answer = b'{"error": "invalid request", "field": "", "message": "' + b"m" * 5000 + b'"}'

    def answer_then_reset() -> None:
        s, _ = listener.accept()
        s.recv(65536)
        s.sendall(
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(answer), answer)
        )
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        s.close()

    threading.Thread(target=answer_then_reset, daemon=True).start()
    with Front(("127.0.0.1", 0), listener.getsockname(), FAST) as f:
        c = conn(f)
        c.request("POST", "/predictions/m", body=b"{oops")
        r = c.getresponse()
        assert r.status == 400 and r.read() == answer
    listener.close()


def test_an_upstream_without_an_answer_is_a_504(upstream):
    with Front(("127.0.0.1", 0), upstream.server_address, FrontLimits(response_timeout_s=0.3)) as f:
        c = conn(f)
        c.request("GET", "/hang")
        r = c.getresponse()
        msg = json.loads(r.read())
    assert r.status == 504 and "no answer within 0.3 s" in msg["message"]


def test_close_ends_connections_and_frees_the_port(upstream):
    f = Front(("127.0.0.1", 0), upstream.server_address, FAST).start()
    s = raw(f)
    s.sendall(b"GET /fixed HTTP/1.1\r\n")
    deadline = time.monotonic() + 30
    while f.active < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    f.close()
    assert s.recv(100) == b""
    assert port_is_free("127.0.0.1", f.port)  # nothing listens there any more


# ---- wiring: the launcher puts the front on the public port ------------------------------------------------------
def test_torchserve_listens_behind_the_front_with_its_limit_above_the_fronts(tmp_path):
    from ganserve.serving.config import ServerConfig
    from ganserve.serving.launcher import Server

    server = Server({}, tmp_path)
    c = server.config
    props = c.properties()
    assert c.upstream_port not in (c.inference_port, c.management_port, c.metrics_port, c.grpc_inference_port)
    assert props["inference_address"] == f"http://127.0.0.1:{c.upstream_port}" == c.upstream_url
    assert c.inference_url == f"http://127.0.0.1:{c.inference_port}"  # what clients and `ganserve serve` print
    assert int(props["max_request_size"]) > MAX_BODY_BYTES  # the front refuses first, at every size
    assert server.front_limits.response_timeout_s > int(props["default_response_timeout"])
    # without a front (the config alone), TorchServe listens where it is told, as before
    assert ServerConfig(model_store=tmp_path, inference_port=9).properties()["inference_address"].endswith(":9")


def test_bench_front_pairs_calls_alternating_the_order(monkeypatch):
    from ganserve.benchmarks import serve as bench

    clock, order = [0.0], []

    def call(side: str, ms: float):
        def fn(i: int) -> int:
            order.append(side)
            clock[0] += ms / 1000
            return 200 if i != 99 else 500

        return fn

    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    r = bench.paired_calls(call("f", 3.0), call("d", 1.0), 4, warmup=0)
    assert order == ["f", "d", "d", "f", "f", "d", "d", "f"]  # alternated call by call
    assert r["pairs"] == 4 and r["added_median_ms"] == 2.0 and r["front_over_direct"] == 3.0
    with pytest.raises(RuntimeError, match="front: HTTP 500"):
        bench.paired_calls(lambda i: 500, call("d", 1.0), 1, warmup=0)
