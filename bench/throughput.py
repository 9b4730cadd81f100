"""Served throughput of polls with wrk: `feeds serve` beside the same app on gunicorn, a bare-Flask
floor, granian with no app work, nginx serving the same bytes as static files, and Django's
syndication framework.

One SQLite store (``bench/_data.py``, ``--articles`` articles, the newest with ~4 KB items)
serves ``/feeds/category/<slug>.rss?limit=<--limit>`` (about 8 KB) from seven servers at once on 127.0.0.1:

- **feeds serve**: ``feeds serve --workers W --threads T`` as the README starts it, with its default workers
  and threads: granian workers (one thread each), with the polling fast path (``feeds.web.FastPolls``) in
  front of Flask;
- **feeds serve --threads N** (``--more-threads``, 4 unless 0): the same with more threads a worker, which
  take turns holding Python's lock;
- **granian, no app work (server floor)**: a plain WSGI callable answering with the very bytes and
  headers ``feeds serve`` gives (200 and 304, each encoding) from memory, on granian set up as ``feeds serve``
  sets it up: how fast the server goes when the app does nothing;
- **feeds on gunicorn**: ``feeds:create_app()`` under gunicorn (gthread, ``-w W --threads T``),
  the server ``feeds serve`` ran before: the same app, so the difference is the server;
- **bare Flask (floor)**: a few lines of Flask returning the same bytes (and gzip bytes,
  ETag, 304, Cache-Control, Vary) from memory, same gunicorn settings: the framework floor;
- **nginx**: the same bytes as a static file (and a ``.gz`` beside it for ``gzip_static``),
  2 worker processes, foreground, temp config on a free port; no ``br`` (no module for it);
- **Django (peer)**: ``django.contrib.syndication`` ``Feed`` over the same SQLite file (raw
  SQL, the same articles with content:encoded), ``GZipMiddleware`` and
  ``ConditionalGetMiddleware`` for gzip and 304, persistent DB connections, same gunicorn settings.

Five cases, each run against every server in turn (so the machine's noise falls on all
alike): cache-hit 200s in identity, gzip and br, and 304s (``If-None-Match`` of that server's
ETag) in identity and gzip. Each is ``wrk -t2 -c32 -d5s --latency`` after a 1 s warm-up of the
same command, and the whole sequence is run ``--rounds`` times. A row shows the median over
the rounds; "vs nginx", "vs server floor" and "vs Flask floor" are the median of each round's ratio to that server
measured just before or after it, which holds on a machine whose speed drifts from one minute
to the next. "CPU µs" is the CPU time the server's processes used (``/proc``, all of them:
master and workers) per request answered. A run in which one worker did more than
``--lopsided`` of the work (wrk's connections all landed on it) is run again (``measured``).

Then: p50 and p99 at a fixed request rate (``--rate``; wrk with a Lua ``delay()``, as wrk2 is
not in Debian), and the cold render of 50-item category feeds (the first request of each).
``many_feeds.py`` measures a working set of 3,000 feeds, ``poll_profile.py`` where a poll's time
goes in-process; ``_serve.py`` is the runner the three share.

    python bench/throughput.py                       # about 10 minutes
    python bench/throughput.py --rounds 1 --duration 3 --articles 2000   # a quick run

wrk and nginx come from Debian (``apt-get install -y wrk nginx``, tried when running as
root), Django from PyPI (``pip install django``, tried); a server that cannot be had is
left out with a message.
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
from _serve import (CASES, DJANGO, ENCODING_OF, FEEDS_GUNICORN, FEEDS_MORE_THREADS, FEEDS_SERVE,  # noqa: E402
                    FLOOR, FLOOR_APP, GRANIAN_FLOOR, NGINX, Server, ensure_tools, feeds_serve, fetch, gunicorn, headers_for,
                    measured, polled_store, server_arguments, server_env, server_floor, start_nginx, stop, wait_up, wrk,
                    write_answers)

import brotli  # noqa: E402

DJANGO_APP = '''
"""The peer: Django's syndication framework over the same SQLite database, settings.configure style."""
from datetime import datetime, timezone
import json

from django.conf import settings

settings.configure(
    DEBUG=False, SECRET_KEY="bench", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, USE_TZ=True, TIME_ZONE="Asia/Shanghai",
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": %(database)r, "CONN_MAX_AGE": None}},
    INSTALLED_APPS=[], MIDDLEWARE=["django.middleware.gzip.GZipMiddleware", "django.middleware.http.ConditionalGetMiddleware"],
)

import django  # noqa: E402

django.setup()

from django.contrib.syndication.views import Feed  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils.feedgenerator import Rss201rev2Feed  # noqa: E402

QUERY = """
SELECT a.id, a.url, a.title, a.summary, a.content, a.author, a.tags, a.published, a.updated, c2.path, s.name
FROM article_categories ac
JOIN categories c ON c.id = ac.category_id
JOIN articles a ON a.pk = ac.article_pk
LEFT JOIN categories c2 ON c2.id = a.category_id
LEFT JOIN sources s ON s.id = a.source_id
WHERE c.slug_path = %%s
ORDER BY ac.published DESC, ac.article_pk DESC
LIMIT %(limit)d
"""
COLUMNS = ("id", "url", "title", "summary", "content", "author", "tags", "published", "updated", "category", "source")


def utc(value):  # the store keeps naive UTC; Django's sqlite3 backend may already parse it
    if not value:
        return None
    value = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


class ContentRss(Rss201rev2Feed):
    def rss_attributes(self):
        return {**super().rss_attributes(), "xmlns:content": "http://purl.org/rss/1.0/modules/content/"}

    def add_item_elements(self, handler, item):
        super().add_item_elements(handler, item)
        handler.addQuickElement("content:encoded", item["content"])


class CategoryFeed(Feed):
    feed_type = ContentRss
    title = "融易新闻 · 财经"
    link = "https://news.example.cn/"
    description = "融易新闻「财经」栏目的最新文章"
    language = "zh-CN"

    def items(self):
        with connection.cursor() as cursor:
            cursor.execute(QUERY, [%(slug)r])
            return [dict(zip(COLUMNS, row)) for row in cursor.fetchall()]

    def item_title(self, item): return item["title"]
    def item_link(self, item): return item["url"]
    def item_description(self, item): return item["summary"]
    def item_guid(self, item): return "tag:news.example.cn,2024:article:" + item["id"]
    item_guid_is_permalink = False
    def item_pubdate(self, item): return utc(item["published"])
    def item_updateddate(self, item): return utc(item["updated"] or item["published"])
    def item_author_name(self, item): return item["author"]
    def item_categories(self, item): return ([item["category"]] if item["category"] else []) + json.loads(item["tags"])
    def item_extra_kwargs(self, item): return {"content": item["content"]}


urlpatterns = [path(%(url_path)r, CategoryFeed())]
application = get_wsgi_application()
'''


def ensure_django(skip_install: bool) -> bool:
    try:
        import django  # noqa: F401
        return True
    except ImportError:
        if skip_install:
            return False
        c.log("installing django with pip ...")
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "django"], capture_output=True)
        return done.returncode == 0


def check(server: Server, path: str, case: str, plain: bytes) -> str:
    """One request as wrk will send it: the status and body length, and the body right."""
    status, headers, body = fetch(server.url(path), headers_for(case, server))
    expected = 304 if case.endswith("304") else 200
    encoding = ENCODING_OF[case]
    sent = {k.lower(): v for k, v in headers.items()}.get("content-encoding", "identity")
    note = f"{status}, {len(body):,} B"
    if status != expected:
        note += f" (EXPECTED {expected})"
    if status == 200 and sent != encoding:
        note += f" (sent {sent}, not {encoding})"
    if status == 200:
        body = {"gzip": gzip.decompress, "br": brotli.decompress}.get(sent, bytes)(body)
        if server.name != "Django (peer)" and body != plain:
            note += " (DIFFERENT BYTES)"
    return note


RATE_SCRIPT = """
-- wrk has no fixed request rate (wrk2 is not in Debian): each connection waits %(delay_ms)d ms
-- before each request, so %(connections)d connections ask for about %(rate)d requests a second.
function delay() return %(delay_ms)d end
"""


def fixed_rate(servers: list[Server], path: str, tmp: Path, args: argparse.Namespace) -> list[tuple]:
    """p50 and p99 of polls at a fixed request rate, well below any server's limit: the time a poll takes."""
    connections = 20
    delay_ms = max(1, round(connections * 1000 / args.rate))
    script = tmp / "rate.lua"
    script.write_text(RATE_SCRIPT % {"delay_ms": delay_ms, "connections": connections, "rate": args.rate})
    rows = []
    for case in ("200", "304"):
        for server in servers:
            result = wrk(server.url(path), headers_for(case, server), args, args.duration, script, connections)
            c.log(f"fixed rate {case} {server.name}: {result['rps']:.0f} req/s, p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms")
            rows.append((case, server.name, f"{result['rps']:,.0f}", f"{result['p50']:.2f}", f"{result['p99']:.2f}", result["bad"]))
    return rows


def cold_renders(server: Server, categories: list[str]) -> str:
    """The first request of 50-item category feeds, one at a time: a cache miss, rendered then."""
    times = []
    for slug in categories:
        for extension in ("rss", "atom", "json"):
            began = time.perf_counter()
            status, _, body = fetch(server.url(f"/feeds/category/{slug}.{extension}?limit=50"), {"Accept-Encoding": "identity"})
            times.append((time.perf_counter() - began) * 1000)
            assert status == 200
    return (f"cold render of a 50-item category feed (items of ~4 KB) through `feeds serve`, the first request of each of "
            f"{len(times)} feeds ({len(categories)} categories × 3 formats), one at a time: median {c.median(times):.1f} ms, "
            f"p99 {c.percentile(times, 0.99):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=10_000, help="articles in the store (default 10000)")
    parser.add_argument("--category", default="caijing", help="category slug path (default caijing)")
    parser.add_argument("--limit", type=int, default=2, help="items of the polled feed (default 2: about 8 KB)")
    server_arguments(parser)
    parser.add_argument("--more-threads", type=int, default=4,
                        help="also run feeds serve with this many threads per worker (default 4; 0: not)")
    parser.add_argument("--rounds", type=int, default=3, help="times every case is run against every server (default 3)")
    parser.add_argument("--rate", type=int, default=2000, help="requests/s of the fixed-rate latency runs (default 2000)")
    args = parser.parse_args()
    c.exit_cleanly_on_sigterm()
    began = time.perf_counter()
    has_wrk, has_nginx = ensure_tools(args.no_install)
    if not has_wrk:
        sys.exit("wrk is not installed and could not be (apt-get install -y wrk as root); nothing measured")
    has_django = ensure_django(args.no_install)
    notes = []
    if not has_nginx:
        notes.append("nginx rows skipped: nginx is not installed and could not be (apt-get install -y nginx as root)")
    if not has_django:
        notes.append("Django row skipped: django is not installed and could not be (pip install django)")
    path = f"/feeds/category/{args.category}.rss?limit={args.limit}"
    servers: list[Server] = []
    tmp = Path(tempfile.mkdtemp(prefix="feeds-throughput-"))
    tmp.chmod(0o755)  # nginx workers run as nobody when started by root
    latency, cold = [], ""
    try:
        database = tmp / "feeds.db"
        data, categories = polled_store(database, args.articles)
        c.log(f"store: {args.articles:,} articles, {data.category_sizes.get(args.category, 0):,} in {args.category}")
        env = server_env(database)
        feeds = feeds_serve(FEEDS_SERVE, tmp, args, env)
        servers.append(feeds)
        wait_up(feeds.url(path), feeds.process, tmp / f"{feeds.name}.log")
        cold = cold_renders(feeds, categories[:10])
        status, headers, plain = fetch(feeds.url(path), {"Accept-Encoding": "identity"})
        etag = headers["ETag"].strip('"')
        _, gz_headers, gz = fetch(feeds.url(path), {"Accept-Encoding": "gzip"})
        (tmp / "feed.rss").write_bytes(plain)
        (tmp / "feed.rss.gz").write_bytes(gz)
        (tmp / "feed.etag").write_text(etag)
        c.log(f"feed: {len(plain):,} bytes, gzip {len(gz):,} bytes ({gz_headers.get('Content-Encoding')}), ETag {etag}")

        write_answers(tmp, feeds, path)
        servers.append(server_floor(GRANIAN_FLOOR, tmp, args, env))
        if args.more_threads:
            servers.append(feeds_serve(FEEDS_MORE_THREADS % args.more_threads, tmp, args, env, args.more_threads))
        servers.append(gunicorn(FEEDS_GUNICORN, "feeds:create_app()", tmp, args, env))
        (tmp / "floor_app.py").write_text(FLOOR_APP)
        servers.append(gunicorn(FLOOR, "floor_app:app", tmp, args, env))
        if has_nginx:
            www = tmp / "www" / Path(path.split("?")[0]).parent.relative_to("/")
            www.mkdir(parents=True)
            name = Path(path.split("?")[0]).name
            (www / name).write_bytes(plain)
            (www / (name + ".gz")).write_bytes(gz)
            servers.append(start_nginx(tmp, tmp / "www", "nginx"))
        if has_django:
            (tmp / "djfeed.py").write_text(DJANGO_APP % {"database": str(database), "slug": args.category, "limit": args.limit,
                                                         "url_path": path.split("?")[0].lstrip("/")})
            servers.append(gunicorn(DJANGO, "djfeed:application", tmp, args, env))
        for server in servers:
            wait_up(server.url(path), server.process, tmp / (f"{server.name}.log" if server.name != NGINX else "nginx-error.log"))
            for encoding in ("identity", "gzip"):
                server.etags[encoding] = fetch(server.url(path), {"Accept-Encoding": encoding})[1].get("ETag", "")
            c.log(f"{server.name} up on port {server.port}, ETags {server.etags}")

        measuring = {case: [s for s in servers if not (case == "br 200" and s.name in (NGINX, FLOOR, DJANGO))] for case in CASES}
        for case in CASES:
            for server in measuring[case]:
                server.checks[case] = check(server, path, case, plain)
        for round_ in range(1, args.rounds + 1):
            for case in CASES:
                for server in measuring[case]:
                    headers = headers_for(case, server)
                    if args.warmup:
                        wrk(server.url(path), headers, args, args.warmup)
                    result = measured(server, server.url(path), headers, args)
                    server.results[case].append(result)
                    c.log(f"round {round_} {case} {server.name}: {result['rps']:.0f} req/s, {result['cpu_us']:.0f} CPU µs/request, "
                          f"p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms {result['bad']}")
        latency = fixed_rate([s for s in servers if s.name in (FEEDS_SERVE, FEEDS_MORE_THREADS % args.more_threads, FEEDS_GUNICORN, NGINX)],
                             path, tmp, args)
    finally:
        stop(servers)
        shutil.rmtree(tmp, ignore_errors=True)

    print(c.header())
    print()
    print(f"`GET {path}` ({len(plain):,} B, gzip {len(gz):,} B; {args.articles:,} articles in SQLite), "
          f"all servers on 127.0.0.1 at once, measured in turn. Python servers: `-w {args.workers} --threads "
          f"{args.threads}` (gunicorn gthread; `feeds serve` runs that many granian workers and threads), "
          f"no server access log (the package's own `feeds.access` line per request goes to the server's log file, as it "
          f"ships). Load: `wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration:g}s --latency` after a "
          f"{args.warmup:g} s warm-up run of the same command, {args.rounds} rounds; medians over the rounds. \"vs nginx\", "
          f"\"vs server floor\", \"vs Flask floor\" = the median of each round's req/s ÷ that server's req/s in the same case and round (nginx answers "
          f"`br` with no module for it: no row); \"CPU µs\" = CPU time of the server's processes per request.")
    print()
    by_name = {server.name: server for server in servers}

    def ratio(server: Server, other: str, case: str) -> str:
        theirs = by_name.get(other)
        if theirs is None or not theirs.results[case] or not server.results[case]:
            return ""
        return f"{c.median([m['rps'] / t['rps'] for m, t in zip(server.results[case], theirs.results[case])]):.2f}"

    rows = []
    for case in CASES:
        for server in measuring[case]:
            runs = server.results[case]
            bad = "; ".join(sorted({r["bad"] for r in runs if r["bad"]}))
            retried = sum(r["retried"] for r in runs)
            bad += f"{'; ' if bad else ''}{retried} lopsided run(s) repeated" if retried else ""
            rows.append((case, server.name, f"{c.median([r['rps'] for r in runs]):,.0f}",
                         f"{c.median([r['cpu_us'] for r in runs]):.0f}",
                         f"{c.median([r['p50'] for r in runs]):.2f}", f"{c.median([r['p99'] for r in runs]):.2f}",
                         ratio(server, NGINX, case), ratio(server, GRANIAN_FLOOR, case), ratio(server, FLOOR, case),
                         " / ".join(f"{r['rps']:,.0f}" for r in runs), server.checks[case] + (f"; {bad}" if bad else "")))
    print(c.table(("case", "server", "req/s", "CPU µs", "p50 ms", "p99 ms", "vs nginx", "vs server floor", "vs Flask floor",
                   "req/s by round", "check: status, body"), rows, "llrrrrrrrrl"))
    print()
    print(f"At a fixed rate (`wrk -c20` with a Lua `delay()` of {max(1, round(20000 / args.rate))} ms per connection "
          f"between requests, about {args.rate:,} req/s; wrk2 is not in Debian; the latencies are of each request as sent, "
          f"not corrected for coordinated omission), `{args.duration:g}` s each:")
    print()
    print(c.table(("case", "server", "req/s", "p50 ms", "p99 ms", "errors"), latency, "llrrrl"))
    print()
    print(f"- {cold}")
    for note in notes:
        print(f"- {note}")
    print(f"\ntotal run time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
