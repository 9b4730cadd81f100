"""The ``feeds`` command: import articles and reads, serve the feeds."""
from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import IO, Any

import click

from feeds import Services, create_app, open_services
from feeds.config import Settings, load_settings
from feeds.errors import ConfigError
from feeds.ingest import Report, import_articles, import_reads, load_sample


class Context:
    """Settings and services, opened on first use; tests hand in an app instead."""

    def __init__(self, config_path: str | None, app: Any = None):
        self.config_path = config_path
        self.app = app
        self._services: Services | None = app.extensions["feeds"] if app is not None else None

    def services(self) -> Services:
        if self._services is None:
            try:
                settings = load_settings(self.config_path)
            except ConfigError as exc:
                raise click.ClickException(f"configuration: {exc}") from exc
            self._services = open_services(settings)
        return self._services


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="FEEDS_CONFIG",
              help="config.toml to read (default: $FEEDS_CONFIG, else ./config.toml).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Publish a news site's articles as RSS, Atom and JSON feeds."""
    if not isinstance(ctx.obj, Context):
        ctx.obj = Context(config_path, app=ctx.obj)


@main.command("import")
@click.argument("path", type=click.File("r", encoding="utf-8"))
@click.pass_obj
def import_command(obj: Context, path: IO[str]) -> None:
    """Upsert articles from a JSON Lines file (one article a line; - for stdin)."""
    services = obj.services()
    with _progress(path) as lines:
        report = import_articles(services.store, services.settings, lines)
    _finish(services, report)


@main.command("views")
@click.argument("path", type=click.File("r", encoding="utf-8"))
@click.pass_obj
def views_command(obj: Context, path: IO[str]) -> None:
    """Record read events from a JSON Lines file ({"id", "count", "at"} a line; - for stdin)."""
    services = obj.services()
    with _progress(path) as lines:
        report = import_reads(services.store, services.settings, lines)
    _finish(services, report)


@main.command("serve")
@click.option("--host", default=None, help="Address to listen on [server.host].")
@click.option("--port", type=int, default=None, help="Port [server.port].")
@click.option("--workers", type=int, default=None, help="Worker processes [server.workers].")
@click.option("--threads", type=int, default=None, help="Threads per worker [server.threads].")
@click.option("--demo", is_flag=True, help="Load the bundled sample articles and reads into an empty database first.")
@click.pass_obj
def serve_command(obj: Context, host: str | None, port: int | None, workers: int | None, threads: int | None, demo: bool) -> None:
    """Serve the feeds on gunicorn, a production WSGI server."""
    from gunicorn.app.base import BaseApplication

    services = obj.services()
    settings, store = services.settings, services.store
    server = settings.server
    if demo:
        _load_demo(store, settings)
    store.close()
    bind = f"{host or server.host}:{port or server.port}"
    click.echo(f"Serving {store.url} on http://{bind}/  (feeds listed at /, OPML at /feeds.opml)", err=True)

    class Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {
                "bind": bind,
                "workers": workers or server.workers,
                "threads": threads or server.threads,
                "worker_class": "gthread",
                "accesslog": "-",
                "errorlog": "-",
                "timeout": 60,
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(settings)

    Gunicorn().run()


def _load_demo(store: Any, settings: Settings) -> None:
    now = datetime.now(timezone.utc)
    shortest = min(settings.hot.windows.values(), default=24)
    if store.count_articles() and store.has_reads_since(now - timedelta(hours=shortest)):
        click.echo("Database already holds articles; not loading the sample.", err=True)
        return
    articles, reads = load_sample(store, settings, now)
    click.echo(f"Sample loaded: {articles.summary()}; {reads.summary()}.", err=True)


@contextmanager
def _progress(stream: IO[str]) -> Iterator[Iterator[str]]:
    """The lines of ``stream``, with a progress bar by bytes when stderr is a terminal and the size is known."""
    size = _size(stream)
    if size is None or not sys.stderr.isatty():
        yield iter(stream)
        return
    with click.progressbar(length=size, label="importing", file=sys.stderr) as bar:

        def lines() -> Iterator[str]:
            for line in stream:
                bar.update(len(line.encode("utf-8")))
                yield line

        yield lines()


def _size(stream: IO[str]) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size or None
    except (OSError, io.UnsupportedOperation, AttributeError):
        return None


def _finish(services: Services, report: Report) -> None:
    if not services.publisher.wait():
        click.echo("Some WebSub hubs were not told of the changes in time.", err=True)
    for number, reason in report.rejected:
        click.echo(f"line {number}: {reason}", err=True)
    click.echo(report.summary())
    if report.rejected:
        sys.exit(1)
