"""How ``feeds serve`` runs the app: on bjoern with one thread a worker (the default), on granian with more.

bjoern is an HTTP server written in C around an event loop (libev): it reads and writes every connection of a
worker without Python, and calls the app for one request at a time. A poll answered from a kept answer
(``feeds.web.FastPolls``) then costs a few microseconds of Python and little else, which is what keeps
polls within a factor of two of nginx serving files. granian (in Rust) runs the app on a pool of threads a
worker instead, for deployments whose requests wait on something other than the CPU (see the README,
*Workers and threads*); the same app on granian with one thread a worker answered polls at about 0.6 of
bjoern's rate.

bjoern has no timeouts of its own (a client may hold a connection open as long as it likes, and a request
body is read whole before the app sees it), so on the open internet it belongs behind a proxy or a CDN
that has them; the README's deployment section says so.
"""
from __future__ import annotations

import atexit
import functools
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any

import click

from feeds.app import create_app
from feeds.config import Settings

KILL_SECONDS = 30  # SIGTERM: how long a worker may take to stop before it is killed
DRAIN_SECONDS = 5  # SIGTERM: how long a bjoern worker goes on answering its open connections before it exits
RESPAWN_PAUSE = 1.0  # a worker that died is replaced after this long, so that one dying at start does not spin


def serve(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully: each worker writes its last poll counts,
    metrics and log lines."""
    if threads > 1:
        _serve_on_granian(settings, host, port, workers, threads)
    else:
        _serve_on_bjoern(settings, host, port, workers)


def _serve_on_granian(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        "feeds:create_app", address=host, port=port, interface=Interfaces.WSGI, workers=workers,
        blocking_threads=threads, websockets=False,
        log_access=False,  # the app logs each request itself (feeds.access)
        workers_kill_timeout=KILL_SECONDS,  # requests in flight get this long to finish
    ).serve(spawn_target=_granian_worker, target_loader=functools.partial(_worker_app, settings), wrap_loader=False)


def _worker_app(settings: Settings) -> Any:
    """The app of one worker process, made after it started: each runs the hub's deliveries from its start."""
    return create_app(settings, deliver=True)


def _granian_worker(*args: Any, **kwargs: Any) -> None:
    """A granian WSGI worker, ended as a process exits cleanly: granian's workers end with ``os._exit``,
    which skips the exit handlers that write the last poll counts and log lines."""
    from granian.server import MPServer

    try:
        MPServer._spawn_wsgi_worker(*args, **kwargs)
    finally:
        atexit._run_exitfuncs()


def _serve_on_bjoern(settings: Settings, host: str, port: int, workers: int) -> None:
    """A pre-forking parent, as gunicorn's: it binds the socket, forks the workers (each accepts from the
    shared socket), replaces a worker that dies, and passes SIGTERM and SIGINT on to them."""
    try:
        import bjoern
    except ImportError as exc:  # no build for this platform (Windows): granian serves there
        raise click.ClickException(f"bjoern is not installed ({exc}); serve with --threads 2 or more (granian)") from exc

    if ":" in host:  # bjoern accepts connections as IPv4 only: an IPv6 peer's address would come out garbled
        raise click.ClickException(f"{host}: one thread a worker (bjoern) listens on IPv4 addresses only; "
                                   "serve IPv6 with --threads 2 or more (granian), or through a proxy")
    _take_the_open_files_limit()
    try:
        listener = bjoern.bind_and_listen(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    children: set[int] = set()
    stopping = False

    def spawn() -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _bjoern_worker(bjoern, listener, settings, parent)
        children.add(pid)

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _signal(pid, signal.SIGTERM)
        signal.alarm(KILL_SECONDS)

    def kill(_signum: int, _frame: Any) -> None:
        for pid in children:
            _signal(pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGALRM, kill)
    for _ in range(workers):
        spawn()
    while children:
        pid, status = os.wait()
        children.discard(pid)
        if stopping:
            if status:
                click.echo(f"worker {pid} did not stop cleanly ({_exit_reason(status)})", err=True)
            continue
        click.echo(f"worker {pid} died ({_exit_reason(status)}); starting another", err=True)
        time.sleep(RESPAWN_PAUSE)
        if not stopping:
            spawn()
    listener.close()


def _take_the_open_files_limit() -> None:
    """Every open connection is a file descriptor, and bjoern keeps idle ones open: raise the soft limit (often
    1024) to the hard one, as nginx's worker_rlimit_nofile and Go's runtime do, so that a worker does not run out
    and stop accepting."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _bjoern_worker(bjoern: Any, listener: Any, settings: Settings, parent: int) -> None:
    """One worker: the app, made in this process, answering on bjoern's loop until SIGTERM. Never returns."""
    status = 0
    try:
        signal.signal(signal.SIGTERM, _drain)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        # bjoern's loop takes SIGINT as its signal to stop accepting, ends once its connections have closed, and
        # then raises SIGINT in Python again: that needs a handler in Python (with SIG_DFL, bjoern crashes).
        signal.signal(signal.SIGINT, _ignore)
        # Out of the parent's process group, so that a terminal's Ctrl-C reaches the parent alone, which then
        # stops the workers with SIGTERM (a SIGINT would stop bjoern's loop where Python's handlers no longer run).
        os.setpgid(0, 0)
        threading.Thread(target=_stop_when_orphaned, args=(parent,), name="feeds-orphan-watch", daemon=True).start()
        bjoern.server_run(listener, _dated(_worker_app(settings)))
    except BaseException as exc:  # noqa: BLE001 - a worker must never return into the parent's loop
        click.echo(f"worker {os.getpid()} failed: {exc!r}", err=True)
        status = 1
    finally:
        _exit(status)


def _stop_when_orphaned(parent: int) -> None:
    """A worker whose parent was killed (SIGKILL, out of memory) stops as if it were told to, rather than go on
    holding the port."""
    while os.getppid() == parent:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)


def _ignore(_signum: int, _frame: Any) -> None:
    pass


def _drain(_signum: int, _frame: Any) -> None:
    """SIGTERM in a worker. bjoern runs Python signal handlers between requests, so none is in the app now:
    stop accepting (bjoern's own SIGINT), answer what comes on open connections for a while, then exit."""
    if _draining.acquire(blocking=False):  # once: after the first, bjoern leaves SIGINT to its default, which kills
        os.kill(os.getpid(), signal.SIGINT)
        threading.Timer(DRAIN_SECONDS, _exit, (0,)).start()


_draining = threading.Lock()
_exiting = threading.Lock()


def _exit(status: int) -> None:
    """Run the exit handlers (they write the last poll counts and log lines), then leave at once: a forked
    worker must not run the parent's code that follows ``fork``."""
    if _exiting.acquire(blocking=False):
        try:
            atexit._run_exitfuncs()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _exit_reason(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _dated(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Add the Date header HTTP asks of an origin server, which bjoern does not write (granian does)."""
    clock = [0, ""]

    def with_date(environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            now = int(time.time())
            if now != clock[0]:
                clock[:] = now, formatdate(now, usegmt=True)
            headers.append(("Date", clock[1]))  # a list of the request's own: Answer.to and werkzeug each hand a copy
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return with_date
