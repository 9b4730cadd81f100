"""The ``feeds`` command: import articles and reads, serve the feeds."""
from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import click

from feeds import Services, create_app, open_services
from feeds.api import MAX_QUEUE_LIMIT, QUEUE_LIMIT, queued_entry
from feeds.config import WILDCARD_HOSTS, Settings, load_settings
from feeds.errors import ConfigError
from feeds.ingest import Report, import_articles, import_reads, load_sample
from feeds.server import serve
from feeds.serving import compress
from feeds.stats import report, text_table
from feeds.text import aligned
from feeds.services import catalog, services
from feeds.web import directory
from feeds.writers import FORMATS
from feeds.metrics import count_imports, reset_multiprocess_dir
from feeds.partners import readiness


class Context:
    """Settings and services, opened on first use; tests hand in an app instead."""

    def __init__(self, config_path: str | None, app: Any = None):
        self.config_path = config_path
        self.app = app
        self._services: Services | None = app.extensions["feeds"] if app is not None else None

    def services(self, **overrides: dict[str, Any]) -> Services:
        """The services, opened with the settings and ``overrides`` (nested like config.toml) on first use."""
        if self._services is None:
            try:
                settings = load_settings(self.config_path, overrides=overrides)
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
    count_imports("cli", created=report.created, updated=report.updated, unchanged=report.unchanged,
                  rejected=len(report.rejected))
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
    """Serve the feeds on granian (an HTTP server in Rust), safe to face the internet (README: Deployment)."""
    # The address goes into the settings before anything is opened: an unset site.base_url is where this listens,
    # in the links of the demo's announcements as in every worker's feeds.
    services = obj.services(server={name: value for name, value in (("host", host), ("port", port)) if value is not None})
    settings, store = services.settings, services.store
    server = settings.server
    if demo:
        _load_demo(store, settings)
    store.close()
    reset_multiprocess_dir()
    if not settings.site.base_url and server.host in WILDCARD_HOSTS:
        click.echo(f"site.base_url is not set: feeds will link to {settings.base_url}; set it to the address readers use.", err=True)
    click.echo(f"Serving {store.url} at {settings.base_url}/  (feeds listed at /, OPML at /feeds.opml)", err=True)
    serve(settings, workers or server.workers, threads or server.threads)


@main.command("build")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--etags", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write an nginx map from each file's path to its ETag (see README).")
@click.pass_obj
def build_command(obj: Context, outdir: Path, etags: Path | None) -> None:
    """Write every feed, archive page and preview, the index and the OPML as static files under OUTDIR,
    each with a .gz sibling, for nginx or a CDN; each file's time is its Last-Modified."""
    # The files are the service's own answers, asked of the app itself (as Frozen-Flask does),
    # so they are byte for byte what it serves: one way to render each thing.
    app = obj.app if obj.app is not None else create_app(obj.services().settings)
    app.extensions["feeds"].schedule.release()  # a copy of now: what fell due is in it, what expired is not
    with app.app_context():
        urls = _site_urls(app)
    client = app.test_client()
    tags: list[str] = []
    for url in urls:
        response = client.get(url, headers={"Accept-Encoding": "identity"})
        if response.status_code != 200:
            raise click.ClickException(f"{url}: the service answered {response.status}")
        target = outdir / (url.lstrip("/") or "index.html")
        modified = response.last_modified.timestamp() if response.last_modified else None
        _write(target, response.get_data(), modified)
        _write(target.with_name(target.name + ".gz"), compress(response.get_data(), "gzip"), modified)
        etag, _ = response.get_etag()
        if etag and not url.startswith("/static/"):
            tags.append(f'{url if url != "/" else "/index.html"} "{etag}";\n')  # nginx's $uri after `index`
    if etags is not None:
        etags.write_text("".join(tags), encoding="utf-8")
    click.echo(f"Wrote {len(urls)} files, each with a .gz sibling, to {outdir}.")


def _site_urls(app: Any) -> list[str]:
    """Every URL a static copy serves: the index, the OPML, robots.txt and the sitemaps, each feed in every
    format with its preview, each archive page, and the static assets the pages use."""
    urls = ["/", "/feeds.opml", "/robots.txt", "/sitemap.xml", "/sitemaps/news.xml"]
    urls += [f"/sitemaps/articles-{number}.xml" for number, _ in services().store.sitemaps.pages()]
    for spec in directory().all_specs():
        urls += [f"/feeds/{spec.path}.{extension}" for extension in (*FORMATS, "html")]
        if spec.kind != "hot":
            for page in range(1, catalog().archive_pages(spec) + 1):
                urls += [f"/feeds/{catalog().archive_page(spec, page).path}.{extension}" for extension in FORMATS]
    static = Path(app.static_folder or "")
    urls += sorted(f"/static/{path.relative_to(static).as_posix()}" for path in static.rglob("*") if path.is_file())
    return urls


def _write(target: Path, body: bytes, modified: float | None) -> None:
    """Replace ``target`` whole, so a server never sends half a file; dated ``modified`` when known."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(body)
    if modified is not None:
        os.utime(partial, (modified, modified))
    partial.replace(target)


@main.command("stats")
@click.pass_obj
def stats_command(obj: Context) -> None:
    """Print who polls each feed: subscribers today, requests and 304s over 30 days, top clients."""
    services = obj.services()
    rows = report(services.stats, services.catalog, services.store.subscriptions)
    click.echo(text_table(rows) if rows else "No feed was polled in the last 30 days.")


@main.group("partners")
def partners_group() -> None:
    """Distribution partners' feeds (README: Partner feeds)."""


@partners_group.command("check")
@click.argument("name", required=False)
@click.pass_obj
def partners_check_command(obj: Context, name: str | None) -> None:
    """Print every rule of its partner's profile that a partner's feed, or an article in it, breaks; exit 1 when any does."""
    services = obj.services()
    if name is not None and name not in services.settings.partners:
        raise click.ClickException(f"no partner {name!r} in config (partners: {', '.join(services.settings.partners) or 'none'})")
    app = obj.app if obj.app is not None else create_app(services.settings)
    with app.app_context():
        found = readiness(name)
    if not found:
        click.echo("No partner has a profile to check against (partners.<name>.profile).")
        return
    for partner, problems in found.items():
        if not problems:
            click.echo(f"{partner}: ready (every rule of its profile {services.settings.partners[partner].profile} holds)")
            continue
        click.echo(f"{partner}: {len(problems)} problem{'s' if len(problems) > 1 else ''}")
        for problem in problems:
            click.echo(f"  {problem.rule}  {problem.where}: {problem.found}; wanted {problem.wanted} ({problem.source})")
    if any(found.values()):
        sys.exit(1)


@main.command("scheduled")
@click.option("--expired", is_flag=True, help="List the expired articles instead, the latest to expire first.")
@click.option("--limit", type=click.IntRange(1, MAX_QUEUE_LIMIT), default=QUEUE_LIMIT, show_default=True,
              help="List at most this many.")
@click.pass_obj
def scheduled_command(obj: Context, expired: bool, limit: int) -> None:
    """Print the articles scheduled for later, the next first (what GET /api/articles?status=scheduled lists)."""
    services = obj.services()
    status = "expired" if expired else "scheduled"
    total, found = services.store.articles.queued(status, limit)
    if not total:
        click.echo(f"No article is {status}.")
        return
    entries = [queued_entry(services, article) for article in found]
    rows = [("发布时间", "过期时间", "id", "栏目", "标题")]
    rows += [(_minute(entry["published"]), _minute(entry["expires"]), entry["id"], entry["category"], entry["title"]) for entry in entries]
    shown = f", the first {len(found)} listed" if len(found) < total else ""
    click.echo(f"{total} {status} ({services.settings.site.timezone}){shown}:\n{aligned(rows)}")


def _minute(moment: str | None) -> str:
    """An ISO time as the terminal lists it: to the minute, without offset (the heading names the timezone)."""
    return moment[:16].replace("T", " ") if moment else "-"


def _load_demo(store: Any, settings: Settings) -> None:
    now = datetime.now(timezone.utc)
    shortest = min(settings.hot.windows.values(), default=24)
    if store.articles.count() and store.reads.any_since(now - timedelta(hours=shortest)):
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
    if not services.sender.drain(seconds=30):
        click.echo("Some pushes (hub deliveries, pings, search engines) are still queued: the service sends them.", err=True)
    for number, reason in report.rejected:
        click.echo(f"line {number}: {reason}", err=True)
    click.echo(report.summary())
    if report.rejected:
        sys.exit(1)
