"""Slow clients hold no request slot: more slow connections than workers x threads (a part
of a request line, a head without its body, a head sent a byte at a time, a client that
goes on sending after its answer) and /healthz and the API still answer within a second;
past the header timeout (or the close's linger) they are closed."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from tests.support.reliability import private_server

pytestmark = pytest.mark.full
WORKERS, THREADS, HEADER_TIMEOUT = 2, 2, 3


def _connect(port: int, first: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(first)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.2)
    try:
        sock.recv(1024)  # an answer (408) or the end of the stream
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


def test_slow_connections_do_not_starve_the_server(tmp_path):
    env = {"AUDIENCE_AUTHZ_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT)}
    args = ["--workers", str(WORKERS), "--threads", str(THREADS)]
    with private_server("sqlite", tmp_path, env=env, extra_args=args) as (url, live, api):
        slots = WORKERS * THREADS
        partial_line = [_connect(live.port, b"GET /heal") for _ in range(3 * slots)]
        no_body = [_connect(live.port, b"POST /v1/audiences HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
                   for _ in range(3 * slots)]
        trickled = [_connect(live.port, b"G") for _ in range(3 * slots)]
        # answered, then sending on and on: the server must not wait for them to stop
        chatty = [_connect(live.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                  for _ in range(3 * slots)]
        stop = threading.Event()

        def trickle():  # a byte every half second: never idle long enough to be dropped as idle
            line = b"ET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 100
            for i in range(len(line)):
                if stop.wait(0.5):
                    return
                for sock in trickled + chatty:
                    try:
                        sock.send(line[i:i + 1])
                    except OSError:
                        pass

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            took = []
            deadline = time.monotonic() + HEADER_TIMEOUT + 2
            while time.monotonic() < deadline:
                for path in ("/healthz", "/v1/events?limit=1"):
                    started = time.monotonic()
                    answer = requests.get(live.base_url + path, timeout=5,
                                          headers={"Authorization": f"Bearer {live.token}"})
                    took.append(time.monotonic() - started)
                    assert answer.status_code == 200, answer.text
                time.sleep(0.2)
            # within 1 s (starved, none would be); a busy test machine may delay one in ten
            print(f"\nSLOW CLIENTS: {len(took)} requests beside {12 * slots} slow connections;"
                  f" slowest {max(took):.3f}s, {sum(t >= 1 for t in took)} over 1s")
            assert sum(t >= 1 for t in took) <= len(took) // 10, took
            # past the header timeout every slow connection has been answered 408 or closed
            open_ones = {name: sum(not _closed_by_server(s) for s in group) for name, group in (
                ("partial line", partial_line), ("no body", no_body), ("trickled", trickled), ("chatty", chatty))}
            assert open_ones == {"partial line": 0, "no body": 0, "trickled": 0, "chatty": 0}
        finally:
            stop.set()
            sender.join(5)
            for sock in partial_line + no_body + trickled + chatty:
                sock.close()
        # a request line already over gunicorn's limit is refused at once, not waited for
        sock = _connect(live.port, b"GET /" + b"a" * 6000)
        assert sock.recv(1024).startswith(b"HTTP/1.1 414")
        sock.close()
        # ordinary clients are served as before: kept-alive sessions, bodies, 100-continue
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {live.token}"
        for i in range(5):
            assert session.put(f"{live.base_url}/v1/business-centers/bc{i}", json={"name": "BC"}).status_code == 200
        body = b'{"name": "BC 100"}'
        sock = _connect(live.port, b"PUT /v1/business-centers/bc100 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                        + live.token.encode() + b"\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
                        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
