"""The production server: gunicorn with N worker processes, each with its own app,
enforcer and connection pool (nothing is shared across a fork).

SIGTERM drains, then stops gracefully: ``/readyz`` answers 503 ``draining`` at once while
the server keeps accepting and answering for ``drain_seconds`` (time for a load balancer's
probe to take the instance out), then gunicorn stops accepting, lets the requests in flight
finish (up to ``graceful_timeout``) and exits. A second SIGTERM skips the rest of the drain;
SIGINT and SIGQUIT stop at once, as in gunicorn.

Slow clients: gunicorn's threaded worker gives a connection a thread as soon as its first
bytes arrive, and the thread then blocks until the request head is complete, so clients
that send part of a request line and stop could hold every thread (workers x threads) and
starve /healthz. ``HeadFirstWorker`` reads what has arrived in its main loop, without
blocking, and a request still incomplete (its head, and a body of known length) goes back to
the poller (no thread held) until more arrives, for at most ``header_timeout`` seconds in
all (then 408 and close).

Pools: a complete request goes to the thread pool of its kind (``http/capacity.py``):
decisions (``--threads``), probes (2 threads) or feeds (event streams and long polls, one
thread each, bounded by ``max_subscribers``), so that hundreds of idle subscribers or a
flood of decisions never leave /healthz and /readyz without a thread, and subscribers never
take a decision's. Once it is complete, each read of
the rest and each write of the answer waits at most ``header_timeout`` seconds too. And a
connection closed after its answer is drained by the poller, not by gthread's main loop
(which waited up to 2 s per connection for a client that kept sending).

Metrics: the workers write prometheus-client's multiprocess files into
``PROMETHEUS_MULTIPROC_DIR``; ``prepare_metrics_dir`` chooses and empties it before
anything imports prometheus_client, and a worker that exits is marked dead so that its
gauges leave the scrape (its counters stay in the totals).

USR2 (gunicorn's zero-downtime upgrade) starts a new master from the old one's
environment while the old one still serves: the new master keeps the metrics directory
as it is (the old workers still write there) and takes it over, and the old master, on
leaving, removes its temporary directory only when no new master is using it.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
import re
import selectors
import shutil
import socket
import tempfile
import time
import urllib.parse
from concurrent import futures
from multiprocessing.sharedctypes import RawValue
from pathlib import Path

from gunicorn import glogging, util
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers import gthread

# HeadFirstWorker hands a connection back to gthread's poller with gthread's own marker
# (gunicorn 27): without it a slow client would hold a thread again, so refuse to start
if not hasattr(gthread, "_DEFER") or not hasattr(gthread.TConn, "wait_for_data"):
    raise ImportError("audience_authz needs gunicorn 27's gthread (_DEFER, TConn.wait_for_data)")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client when first imported
# the temporary metrics directory `serve` made, inherited by a master started by USR2
OWNED_ENV = "_AUDIENCE_AUTHZ_TEMPORARY_METRICS_DIR"
REEXEC_ENV = "GUNICORN_PID"  # set by gunicorn in a master started by USR2: the old master's pid
_arbiter = None  # this process's gunicorn arbiter, once it runs
# set by the master on SIGTERM, read by its workers' /readyz: memory shared across the fork
_DRAINING = RawValue(ctypes.c_bool, False)


def draining() -> bool:
    """Has this server been told to stop (it still answers while it drains)?"""
    return bool(_DRAINING.value)


class _DrainingArbiter(Arbiter):
    """gunicorn's master, with SIGTERM draining before it stops (module docstring)."""

    drain_seconds = 0.0
    _stop_at: float | None = None

    def handle_term(self):
        if self._stop_at is not None or self.drain_seconds <= 0 or _successor_alive():
            raise StopIteration  # a USR2 successor keeps the socket open: nothing to drain
        _DRAINING.value = True
        self._stop_at = time.monotonic() + self.drain_seconds
        self.log.info("draining: /readyz answers 503 draining; stopping in %.1f s", self.drain_seconds)

    def wait_for_signals(self, timeout=1.0):
        if self._stop_at is not None:
            timeout = max(0.0, min(timeout, self._stop_at - time.monotonic()))
        return super().wait_for_signals(timeout=timeout)

    def manage_workers(self):
        if self._stop_at is not None and time.monotonic() >= self._stop_at:
            raise StopIteration  # the main loop's graceful stop
        super().manage_workers()


class Server(BaseApplication):
    def __init__(self, app_kwargs: dict, options: dict, drain_seconds: float = 0.0):
        self.app_kwargs = app_kwargs
        self.options = options
        self.drain_seconds = drain_seconds
        super().__init__()

    def run(self):
        arbiter = _DrainingArbiter(self)
        arbiter.drain_seconds = self.drain_seconds
        arbiter.run()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from audience_authz.http.app import create_app

        return create_app(**self.app_kwargs)


class _AppWritesAccessLines(glogging.Logger):
    """gunicorn's logger without its access line: the app writes the one JSON access line
    of each request, with the status it sent (``http/logs.py``). With ``logconfig_dict``
    set, gunicorn would otherwise build its access atoms for every request (a visible item
    of a worker's profile, docs/performance.md) for a line that goes nowhere."""

    def access(self, resp, req, environ, request_time):
        return None


class HeadFirstWorker(gthread.ThreadWorker):
    """gthread that holds a thread for a connection only once its request head is complete
    (or while it is being answered); see the module's docstring."""

    header_timeout = 10.0  # seconds; set by ``run`` before the workers fork
    max_body = 1024 * 1024  # bytes: a larger body is refused (413) without being waited for
    feed_threads = 520  # event streams and long polls: set by ``run`` (max_subscribers, and some to refuse with)
    PROBE_THREADS = 2  # /healthz, /readyz, /metrics
    _REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

    def enqueue_req(self, conn):
        """Read what has arrived of the request (main thread, without waiting), then give it
        to the pool of its kind: decisions, probes or feeds (module docstring)."""
        state = getattr(conn, "head", None)
        if state is None:  # a new request on this connection
            state = conn.head = _Head(time.monotonic() + self.header_timeout, self._max_head(), self.max_body,
                                      self.cfg.limit_request_line + 2)
        if not state.complete:
            outcome = self._read_head(conn, state)
            if outcome is gthread._DEFER:
                self._wait_for_more(conn)
                return
            if outcome is False:
                self.nr_conns -= 1
                util.close(conn.sock)
                return
        kind = state.kind()
        pool = self.pools[kind]
        pool.queue()
        fs = self.executors[kind].submit(self._serve, conn, pool)
        fs.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    def _serve(self, conn, pool):
        """Serve one request on a thread of ``pool``, counted there while it runs."""
        pool.start()
        try:
            return super().handle(conn)
        finally:
            conn.head = None  # the next request on a kept-alive connection starts again
            pool.stop()

    def _wait_for_more(self, conn) -> None:
        """Back to the poller until more of the request arrives: no thread waits for it."""
        conn.sock.setblocking(False)
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, functools.partial(self.on_pending_socket_readable, conn))

    # -- closing without waiting ------------------------------------------------------------
    # gthread closes a connection "gracefully" (half-close, then read until the client closes,
    # up to 2 s) in its main loop: a client that keeps sending after its answer stalled the
    # whole worker 2 s per connection. Here the lingering is left to the poller instead.
    LINGER = 2.0  # seconds a half-closed connection is drained before it is closed anyway

    def init_process(self):
        from audience_authz.http import capacity  # after the fork: prometheus_client reads its directory

        self.lingering: dict = {}  # socket -> when it is closed anyway
        self.pools = {"decisions": capacity.Pool("decisions", self.cfg.threads),
                      "probes": capacity.Pool("probes", self.PROBE_THREADS),
                      "feeds": capacity.Pool("feeds", self.feed_threads)}
        capacity.POOLS.clear()
        capacity.POOLS.update(self.pools)
        self._published = 0.0
        self.executors = {"decisions": futures.ThreadPoolExecutor(self.cfg.threads, thread_name_prefix="decision"),
                          "probes": futures.ThreadPoolExecutor(self.PROBE_THREADS, thread_name_prefix="probe"),
                          "feeds": futures.ThreadPoolExecutor(self.feed_threads, thread_name_prefix="feed")}
        super().init_process()  # runs the main loop until the worker stops

    def get_thread_pool(self):
        return self.executors["decisions"]  # gthread's own pool (self.tpool): the decisions'

    def handle_quit(self, sig, frame):
        for name in ("probes", "feeds"):
            self.executors[name].shutdown(wait=False)
        super().handle_quit(sig, frame)

    def finish_request(self, conn, fs):
        conn.close = lambda graceful=False: self._close(conn.sock, graceful)  # the main loop's closes
        super().finish_request(conn, fs)

    def _close(self, sock, graceful: bool) -> None:
        if graceful:
            try:
                sock.shutdown(socket.SHUT_WR)  # the answer is complete: FIN after it
                sock.setblocking(False)
                if self._drain(sock):
                    self.poller.register(sock, selectors.EVENT_READ, self._on_lingering_readable)
                    self.lingering[sock] = time.monotonic() + self.LINGER
                    return
            except (OSError, ValueError, KeyError):
                pass
        util.close(sock)

    def _drain(self, sock) -> bool:
        """Read what the client sent, without waiting: True while it may send more."""
        try:
            for _ in range(16):
                if not sock.recv(4096):
                    return False
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        return False  # 64 KiB unread after the answer: close now

    def _on_lingering_readable(self, sock) -> None:
        if not self._drain(sock):
            self._stop_lingering(sock)

    def _stop_lingering(self, sock) -> None:
        self.lingering.pop(sock, None)
        try:
            self.poller.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass
        util.close(sock)

    def murder_keepalived(self, force=False):
        super().murder_keepalived(force)
        now = time.monotonic()
        if now - self._published >= 1.0:  # the main loop passes here at least once a second
            from audience_authz.http import capacity

            self._published = now
            capacity.publish()
        for sock in [s for s, deadline in self.lingering.items() if force or deadline <= now]:
            self._stop_lingering(sock)

    def handle_request(self, req, conn):
        conn.sock.settimeout(self.header_timeout)  # each body read and answer write, bounded
        length = next((v for n, v in req.headers if n == "CONTENT-LENGTH"), "0")
        if not length.isdigit() or int(length) > self.max_body:
            # refused (413) without being read: the connection closes after the answer, and
            # says so (Connection: close), rather than draining the body for a while and then
            # closing under a client that would send its next request on it
            req.must_close = True
        return super().handle_request(req, conn)

    def _max_head(self) -> int:
        """More than any head gunicorn's limits accept: past it the parser answers the error."""
        cfg = self.cfg
        return cfg.limit_request_line + 4 + (cfg.limit_request_fields + 1) * (cfg.limit_request_field_size + 2)

    def _read_head(self, conn, state):
        """True once the request is complete (handed to gunicorn's parser), gthread's defer
        marker while it is not, False to close the connection."""
        if conn.parser is not None:  # kept alive: bytes read ahead with the last request
            state.data += conn.parser.unreader.take_buffered()
        conn.sock.setblocking(False)
        try:
            while not state.ended():
                chunk = conn.sock.recv(65536)
                if not chunk:
                    return False  # the client closed before sending a whole head
                state.data += chunk
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return False
        if not state.ended():
            if time.monotonic() < state.deadline:
                conn.data_ready = False
                return gthread._DEFER  # back to the poller: no thread waits for the rest
            try:
                conn.sock.send(self._REQUEST_TIMEOUT)
            except OSError:
                pass  # closed (without waiting) by finish_request
            self.log.info("closed a connection whose request took over %ss to arrive", self.header_timeout)
            return False
        state.complete = True
        conn.init()
        conn.parser.unreader.unread(bytes(state.data))
        return True


_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"\ncontent-length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r?\n", re.IGNORECASE)
_EXPECT = re.compile(rb"\nexpect[ \t]*:", re.IGNORECASE)


class _Head:
    """A request being read before a thread takes it: its bytes so far, and the time it must
    be complete by. Complete is the head, and the body too when its Content-Length is given
    and within ``max_body`` (a client that asks ``Expect: 100-continue`` waits for gunicorn's
    answer before it sends the body, and a chunked body is read by the thread)."""

    def __init__(self, deadline: float, limit: int, max_body: int, line_limit: int):
        self.deadline, self.limit, self.max_body, self.line_limit = deadline, limit, max_body, line_limit
        self.data = bytearray()
        self.complete = False

    def ended(self) -> bool:
        """The request is all there, or its head is longer than any valid one."""
        end = _HEAD_END.search(self.data)
        if end is None:  # a request line already too long is the parser's to refuse (414) now
            return len(self.data) > self.limit or (len(self.data) > self.line_limit and b"\n" not in self.data)
        head = bytes(self.data[:end.end()])
        length = _CONTENT_LENGTH.search(head)
        if length is None or _EXPECT.search(head) or int(length.group(1)) > self.max_body:
            return True
        return len(self.data) >= end.end() + int(length.group(1))

    def kind(self) -> str:
        """The pool this request is for (``http/capacity.py``): ``feeds`` for an event stream
        or a long poll, ``probes`` for a probe or a scrape, ``decisions`` for the rest. The
        target is read as the app will read it (percent-decoded, absolute form too), so no
        spelling of a stream reaches a decision thread."""
        line = bytes(self.data[:self.data.find(b"\n")]).split(b" ")
        if len(line) < 2:
            return "decisions"  # the parser's to refuse
        target = line[1]
        if target[:1] != b"/":  # absolute form: http://host/path
            target = b"/" + target.split(b"/", 3)[-1] if target.count(b"/") >= 3 else b"/"
        path, _, query = target.partition(b"?")
        path = urllib.parse.unquote_to_bytes(path)
        if path in _PROBES:
            return "probes"
        if line[0] != b"GET":
            return "decisions"
        if path == b"/v1/events/stream":
            return "feeds"
        if path == b"/v1/events" and any(k == "wait" and v.strip("0") for k, v in urllib.parse.parse_qsl(
                query.decode("latin-1"), keep_blank_values=True)):
            return "feeds"
        return "decisions"


_PROBES = frozenset({b"/healthz", b"/readyz", b"/metrics"})


def prepare_metrics_dir(given: str = "") -> str:
    """The multiprocess metrics directory: ``PROMETHEUS_MULTIPROC_DIR`` when set (its metric
    files of an earlier run are removed, as prometheus-client requires), else a temporary
    directory removed when the server exits. Call before prometheus_client is imported.

    A master started by USR2 gets the old master's environment: it keeps the directory's
    files (the old workers still count there, and a scrape adds them up) and, when the
    directory is the old master's temporary one, removes it itself when it exits."""
    upgrading = REEXEC_ENV in os.environ
    if given and upgrading and os.environ.get(OWNED_ENV) == given and Path(given).is_dir():
        atexit.register(_remove_dir, given, os.getpid())  # the temporary directory is now ours
        return given
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        if not upgrading:
            for stale in path.glob("*.db"):
                stale.unlink()
        os.environ[MULTIPROC_ENV] = str(path)  # where prometheus-client reads it
        return str(path)
    path = tempfile.mkdtemp(prefix="audience-authz-metrics-")
    os.environ[MULTIPROC_ENV] = path
    os.environ[OWNED_ENV] = path
    atexit.register(_remove_dir, path, os.getpid())
    return path


def _remove_dir(path: str, owner: int) -> None:
    """Remove the temporary metrics directory, in the master only (forked workers inherit
    atexit handlers) and only when no master started by USR2 still uses it."""
    if os.getpid() != owner or _successor_alive():
        return
    shutil.rmtree(path, ignore_errors=True)


def _successor_alive() -> bool:
    pid = getattr(_arbiter, "reexec_pid", 0)
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _when_ready(arbiter) -> None:
    global _arbiter
    _arbiter = arbiter
    args = arbiter.START_CTX["args"]
    if Path(args[1]).name == "__main__.py":
        # started as `python -m audience_authz`: USR2 must start it the same way, since
        # running the package's __main__.py as a script would put the package's own folder
        # first on sys.path, where its `http` hides the standard library's
        arbiter.START_CTX["args"] = [args[0], "-m", "audience_authz", *args[2:]]


def _child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def run(app_kwargs: dict, *, host: str, port: int, workers: int, threads: int, timeout: int = 30,
        log_level: str = "INFO", drain_seconds: float = 0.0, header_timeout: float = 10.0,
        max_body: int = 1024 * 1024, max_subscribers: int = 512) -> None:
    from audience_authz.http import logs

    HeadFirstWorker.header_timeout, HeadFirstWorker.max_body = header_timeout, max_body
    # the feed pool: a thread per subscriber allowed, and a few to refuse the next ones at once
    HeadFirstWorker.feed_threads = max_subscribers + 8
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        # connections open at once per worker: every subscriber and decision thread, and room for kept-alive ones
        "worker_connections": max(1000, max_subscribers + threads + 500),
        "worker_class": HeadFirstWorker,
        "timeout": timeout,
        "graceful_timeout": 30,  # SIGTERM: stop accepting, finish requests in flight
        "accesslog": None,  # the app writes one JSON access line per request (http/logs.py)
        "logger_class": _AppWritesAccessLines,
        "loglevel": "info",
        "child_exit": _child_exit,
        "when_ready": _when_ready,
        "worker_exit": _flush_decision_log,
        "post_worker_init": _stop_streams_on_exit,
        "control_socket_disable": True,  # one fixed path per user: servers side by side would share it
        "logconfig_dict": logs.config(log_level),  # gunicorn's own lines as JSON too
    }
    Server(app_kwargs, options, drain_seconds).run()


def _stop_streams_on_exit(worker) -> None:
    """A worker asked to stop (SIGTERM, SIGINT, SIGQUIT) ends its event streams and long
    polls at once, so the graceful stop does not wait for consumers that never hang up."""
    import signal

    from audience_authz.http.routes import STOPPING

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        previous = signal.getsignal(signum)

        def stop(sig, frame, previous=previous):
            STOPPING.set()
            if callable(previous):
                previous(sig, frame)

        signal.signal(signum, stop)


def _flush_decision_log(_arbiter, _worker) -> None:
    """A worker that stops writes the decisions it has batched (engine/decision_log.py)."""
    from audience_authz.engine.decision_log import writer

    writer.flush_at_exit()
