"""How ``feeds serve`` runs the app: on granian, an HTTP server in Rust, with its own worker processes.

granian reads and writes every connection in Rust and calls the app (WSGI) on a pool of threads a worker:
one by default, as a poll answered from a kept answer (``feeds.web.FastPolls``) costs a few microseconds of
Python and threads would only take turns holding Python's lock. What makes it safe to face the internet with
nothing in front is granian's, set from ``[server]``:

- a request head must arrive whole within ``server.header_timeout`` seconds, and a kept-alive connection
  that brings no new request within as long is closed (hyper, underneath, runs one timer for both);
- a head over ``server.max_head_bytes`` is answered 431;
- a body is read only as the app reads it: the app answers 413 from a Content-Length over
  ``api.max_body_bytes``, stops reading a chunked one at the limit with a 413, and answers a write without
  valid credentials before reading any (Flask's ``MAX_CONTENT_LENGTH`` and the API's token check); granian
  then closes the connection rather than read the rest;
- pipelined requests are answered in order; idle connections wait in Rust and cost no thread.

Processes: granian's parent binds the socket, starts the workers and starts another when one dies. SIGTERM
or SIGINT stops them gracefully: each finishes the requests in flight and then runs the process's exit
handlers (the last poll counts, metrics and log lines), which granian's workers would otherwise skip. A
worker whose parent was killed writes its last counts and leaves at once, giving the port back.
"""
from __future__ import annotations

import atexit
import errno
import functools
import logging
import os
import resource
import signal
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import click
from granian import Granian
from granian.constants import HTTPModes, Interfaces
from granian.errors import ConfigurationError
from granian.http import HTTP1Settings, HTTP2Settings

from feeds.app import create_app
from feeds.config import Settings
from feeds.errors import StoreUnavailable

log = logging.getLogger("feeds.server")

BACKLOG = 4096  # connections waiting to be accepted (Linux caps it at net.core.somaxconn)
MAX_CONNECTIONS = 16_384  # open connections a worker keeps at once
KILL_SECONDS = 30  # SIGTERM: how long a worker may take to finish its requests before it is killed
STORE_RETRY_SECONDS = 1.0  # a worker that finds the database down at its start tries again after this long
ORPHAN_CHECK_SECONDS = 0.05  # how often a worker looks whether its parent is still there
PORT_WAIT_SECONDS = 5  # how long feeds serve waits for its port to be given back (by a server killed just before)


def serve(settings: Settings, workers: int, threads: int) -> None:
    """Serve at ``settings.server``'s address until SIGTERM or SIGINT, then stop gracefully."""
    server = settings.server
    _check_address(server.host, server.port)
    tls = _tls(server.tls_certificate, server.tls_key)
    _take_the_open_files_limit()
    try:
        granian = _Granian(
            "feeds.app:create_app",  # named for granian's log line; the workers' app comes from _worker_app
            address=server.host, port=server.port, interface=Interfaces.WSGI, workers=workers, blocking_threads=threads,
            # HTTP/2 only over TLS, where a client asks for it (ALPN): unasked-for HTTP/2 in the clear (h2c) would
            # reach the app past the HTTP/1 timeouts. Its head size is bounded alike, and an unanswered ping ends it.
            http=HTTPModes.auto if tls else HTTPModes.http1,
            http1_settings=HTTP1Settings(header_read_timeout=server.header_timeout * 1000, max_buffer_size=server.max_head_bytes),
            http2_settings=HTTP2Settings(max_headers_size=server.max_head_bytes, keep_alive_interval=server.header_timeout * 1000,
                                         keep_alive_timeout=server.header_timeout),
            websockets=False,
            # granian counts open connections, idle ones too, against its backpressure (by default the backlog over
            # the workers: 512 each): past it, a poll waits for an idle connection to time out. Connections cost
            # Rust memory, not threads, and header_timeout closes idle ones.
            backlog=BACKLOG, backpressure=MAX_CONNECTIONS,
            log_access=False,  # the app logs each request itself (feeds.access)
            respawn_failed_workers=True,  # at once; a worker that dies again within seconds stops the server
            workers_kill_timeout=KILL_SECONDS,
            **tls,
        )
        granian.serve(target_loader=functools.partial(_worker_app, settings), wrap_loader=False)
    except ConfigurationError as exc:
        raise click.ClickException(f"cannot serve on {server.host}:{server.port}: {exc}") from exc


class _Granian(Granian):
    """granian, but a worker that is stopping is given the time it takes.

    granian joins each worker (``Process.join``), which returns as soon as the worker's end of a pipe
    closes: while it exits, a moment before it can be reaped. granian then looks once more after a
    millisecond and kills a worker still there, one stop in four on a busy machine here: a worker that
    had written its last poll counts and was leaving, logged as "refused to gracefully stop". This
    waits until the worker is gone, up to ``KILL_SECONDS`` in all, as granian's own timeout meant."""

    def _stop_workers(self) -> None:
        for worker in self.wrks:
            worker.terminate()
        deadline = time.monotonic() + KILL_SECONDS
        for worker in self.wrks:
            worker.join(max(deadline - time.monotonic(), 0.001))
            while worker.is_alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            if worker.is_alive():
                log.warning("Killing worker-%d after it refused to gracefully stop in %d s", worker.idx + 1, KILL_SECONDS)
                worker.kill()
                worker.join()
        self.wrks.clear()


def _check_address(host: str, port: int) -> None:
    """Fail with a message, not granian's trace from Rust, when the address cannot be listened on; a port in use
    is waited for a few seconds, as the workers of a server killed just before give it back."""
    deadline = time.monotonic() + PORT_WAIT_SECONDS
    while True:
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as granian binds: a closed socket's port is free
                probe.bind((host, port))
            return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
            time.sleep(0.05)


def _worker_app(settings: Settings) -> Any:
    """The app of one worker process, made after it started: each runs the schedule and the outbox's sender from its start."""
    # Out of the parent's process group, so that a terminal's Ctrl-C (SIGINT to the group) reaches the parent
    # alone, which stops the workers with SIGTERM: a SIGINT to the worker itself left it, one time in two here,
    # waiting for a shutdown that never came. A supervisor's SIGKILL of the group kills the parent, and the
    # workers follow it at once (_leave_when_orphaned), watching from before the app is made.
    os.setpgid(0, 0)
    # granian sets the worker's own SIGTERM handling once the app is made; a SIGTERM before that went to the handler
    # inherited from the parent, which does nothing here, and the worker served on until it was killed 30 s later.
    # Nothing is served yet, so such a stop is a plain exit.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threading.Thread(target=_leave_when_orphaned, args=(os.getppid(),), name="feeds-orphan-watch", daemon=True).start()
    while True:
        try:
            app = create_app(settings, background=True)
            break
        except StoreUnavailable as exc:
            # granian stops the whole server when a worker it replaced dies again within seconds: a worker
            # replaced while the database is down waits for it instead, as a request would get a 503.
            log.warning("worker %d: the database is unavailable; trying again: %s", os.getpid(), exc)
            time.sleep(STORE_RETRY_SECONDS)
    threading.Thread(target=_exit_handlers_after_main, name="feeds-exit-handlers").start()
    return app


def _exit_handlers_after_main() -> None:
    """Run the exit handlers once the worker's main thread is done. A granian worker is a multiprocessing
    process: it leaves with ``os._exit``, which runs none, but only after Python has joined the threads
    that are not daemons, such as this one."""
    threading.main_thread().join()
    _run_exit_handlers()


def _leave_when_orphaned(parent: int) -> None:
    """A worker whose parent was killed (SIGKILL, out of memory, a supervisor stopping the service) writes its last
    counts and leaves at once, giving the port back: a new server started right after it takes the port, and no
    connection lands on a worker that is going away."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    _run_exit_handlers()
    os._exit(0)


_ran = threading.Lock()


def _run_exit_handlers() -> None:
    if _ran.acquire(blocking=False):
        atexit._run_exitfuncs()


def _tls(certificate: str, key: str) -> dict[str, Path]:
    """granian's TLS arguments, after loading the pair once here: a file that cannot be read, is no PEM, or a key
    under a passphrase is a message now, not a trace (or a passphrase prompt) from a worker."""
    if not certificate:
        return {}
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certificate, key, password=lambda: b"")
    except (ssl.SSLError, OSError) as exc:
        raise click.ClickException(f"server.tls_certificate and server.tls_key cannot be used (a key must not need a "
                                   f"passphrase): {exc}") from exc
    return {"ssl_cert": Path(certificate), "ssl_key": Path(key)}


def _take_the_open_files_limit() -> None:
    """Every open connection is a file descriptor: raise the soft limit (often 1024) to the hard one, as
    nginx's worker_rlimit_nofile and Go's runtime do, so that idle connections cannot use them all up."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
