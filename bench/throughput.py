"""Served throughput of a category feed with wrk, beside a bare-Flask floor, nginx and Django.

One SQLite store (``bench/_data.py``, ``--articles`` articles, the newest with ~4 KB items)
serves ``/feeds/category/<slug>.rss?limit=50`` from four servers at once on 127.0.0.1:

- **feeds**: ``feeds:create_app()`` under gunicorn (gthread, ``--workers`` × ``--threads``);
- **bare Flask (floor)**: a few lines of Flask returning the same bytes (and gzip bytes,
  ETag, 304, Cache-Control, Vary) from memory, same gunicorn settings: the framework floor;
- **nginx (ceiling)**: the same bytes as a static file (and a ``.gz`` beside it for
  ``gzip_static``), 2 worker processes, foreground, temp config on a free port;
- **Django (peer)**: ``django.contrib.syndication`` ``Feed`` over the same SQLite file (raw
  SQL, the same 50 articles with content:encoded), ``GZipMiddleware`` and
  ``ConditionalGetMiddleware`` for gzip and 304, persistent DB connections, same gunicorn settings.

Three cases, each run against every server in turn (so the machine's noise falls on all
alike): cache-hit 200s (feeds warmed first), 304s (``If-None-Match`` of that server's
current ETag) and gzip 200s (``Accept-Encoding: gzip``). Each is ``wrk -t2 -c32 -d5s
--latency`` after a 1 s warm-up of the same command, and the whole sequence is run
``--rounds`` times. A row shows the median over the rounds; "vs floor" is the median of
each round's ratio to the floor measured just before or after it, which holds on a
machine whose speed drifts from one minute to the next. "CPU µs" is the CPU time the
server's processes used (``/proc``, all of them: master and workers) per request
answered: the work a request costs, which other load on the machine moves less than it
moves requests per second. A run in which one worker did more than ``--lopsided`` of the
work (wrk's connections all landed on it) is run again (``measured``). Then, unless ``--no-profile``, one request path is profiled
in-process (Flask test client, cProfile) beside the floor app.

    python bench/throughput.py                       # about 5 minutes
    python bench/throughput.py --rounds 1 --duration 3 --articles 2000   # a quick run

wrk and nginx come from Debian (``apt-get install -y wrk nginx``, tried when running as
root), Django from PyPI (``pip install django``, tried); a server that cannot be had is
left out with a message.
"""
from __future__ import annotations

import argparse
import cProfile
import gzip
import io
import os
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
import _data  # noqa: E402
from render import BIG_CONTENT  # noqa: E402

from feeds.store import Store  # noqa: E402
from feeds.store.schema import articles  # noqa: E402

CASES = ("cache-hit 200", "304", "gzip 200")

FLOOR_APP = '''
"""The framework floor: the feed's bytes from memory, with the same headers as the service."""
from pathlib import Path
from flask import Flask, Response, request

here = Path(__file__).parent
BODY, GZ = (here / "feed.rss").read_bytes(), (here / "feed.rss.gz").read_bytes()
ETAG = (here / "feed.etag").read_text().strip()
app = Flask(__name__)


@app.get("/feeds/<path:path>")
def feed(path):
    gz = "gzip" in request.headers.get("Accept-Encoding", "")
    etag = ETAG + "-gzip" if gz else ETAG
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        response = Response(GZ if gz else BODY, content_type="application/rss+xml; charset=utf-8")
        if gz:
            response.content_encoding = "gzip"
    response.set_etag(etag)
    response.cache_control.public = True
    response.cache_control.max_age = 300
    response.vary.add("Accept-Encoding")
    return response
'''

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
LIMIT 50
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

NGINX_CONF = '''
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ application/rss+xml rss; }}
    default_type application/octet-stream;
    charset utf-8;
    charset_types application/rss+xml;
    gzip_static on;
    gzip_vary on;
    etag on;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        add_header Cache-Control "public, max-age=300";
    }}
}}
'''


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    etag: str = ""
    checks: dict[str, str] = field(default_factory=dict)
    results: dict[str, list[dict]] = field(default_factory=lambda: {case: [] for case in CASES})  # one per round

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def wait_up(url: str, process: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}); its log:\n{log.read_text()[-3000:]}")
        try:
            if fetch(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no answer from {url} in {seconds} s; log:\n{log.read_text()[-3000:]}")


def ensure_tools(skip_install: bool) -> tuple[bool, bool]:
    """(wrk, nginx) available, installing them from Debian when root and allowed."""
    if (not shutil.which("wrk") or not shutil.which("nginx")) and not skip_install:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            c.log("installing wrk and nginx with apt-get ...")
            subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx",
                           shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            c.log("wrk or nginx missing and not root: cannot apt-get install them")
    return bool(shutil.which("wrk")), bool(shutil.which("nginx") or Path("/usr/sbin/nginx").exists())


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


def gunicorn(name: str, app: str, tmp: Path, args: argparse.Namespace, env: dict[str, str]) -> Server:
    port = free_port()
    log = tmp / f"{name}.log"
    command = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", str(args.workers), "--threads", str(args.threads),
               "-b", f"127.0.0.1:{port}", "--chdir", str(tmp), "--timeout", "60",
               "--control-socket", str(tmp / f"{name.split()[0]}.ctl"), app]  # not the shared ~/.gunicorn/gunicorn.ctl
    process = subprocess.Popen(command, cwd=tmp, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    return Server(name, port, process)


def cpu_by_process(root: int) -> dict[int, float]:
    """CPU time (user + system) used so far by process ``root`` and by each of its children:
    a server's master and its workers."""
    pids = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == root:
                pids.append(int(entry.name))
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return used


def measured(server: Server, url: str, headers: dict[str, str], args: argparse.Namespace) -> dict:
    """One timed wrk run, with the server's CPU time per request.

    wrk opens all its connections at once and keeps them; now and then the kernel hands
    every one of them to the same worker, which then does all the work on one core while
    the other idles (seen here: half the requests per second, for every server alike).
    Such a lopsided run measures the accept lottery, not the server: it is run again, up to
    ``--retries`` times, and counted.
    """
    for attempt in range(args.retries + 1):
        before = cpu_by_process(server.process.pid)
        result = wrk(url, headers, args, args.duration)
        after = cpu_by_process(server.process.pid)
        spent = {pid: after[pid] - before.get(pid, 0.0) for pid in after if pid != server.process.pid}
        result["cpu_us"] = (sum(after.values()) - sum(before.values())) / max(result["requests"], 1) * 1e6
        result["retried"] = attempt
        busiest = max(spent.values(), default=0.0) / (sum(spent.values()) or 1.0)
        if len(spent) < 2 or busiest <= args.lopsided:
            break
        c.log(f"{server.name}: one worker did {busiest:.0%} of the work; running again")
    return result


def parse_duration(text: str) -> float:
    """wrk's ``1.23ms`` / ``456.00us`` / ``1.02s`` in ms."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def wrk(url: str, headers: dict[str, str], args: argparse.Namespace, duration: float) -> dict:
    command = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{duration:g}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(command + [url], capture_output=True, text=True, timeout=duration + 60).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
              "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for q in ("50", "99"):
        result["p" + q] = parse_duration(re.search(rf"^\s+{q}%\s+(\S+)", out, re.M).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    result["bad"] = (f"{bad.group(1)} non-2xx/3xx" if bad else "") + (f" socket errors: {errors.group(1)}" if errors else "")
    result["command"] = " ".join(command)
    return result


def headers_for(case: str, server: Server) -> dict[str, str]:
    if case == "304":
        return {"If-None-Match": server.etag}
    if case == "gzip 200":
        return {"Accept-Encoding": "gzip"}
    return {}


def check(server: Server, path: str, case: str, plain: bytes) -> str:
    """One request as wrk will send it: the status and body length, and the body right."""
    status, headers, body = fetch(server.url(path), headers_for(case, server))
    expected = {"cache-hit 200": 200, "304": 304, "gzip 200": 200}[case]
    lowered = {k.lower(): v for k, v in headers.items()}
    note = f"{status}, {len(body):,} B"
    if status != expected:
        note += f" (EXPECTED {expected})"
    if case == "gzip 200":
        if lowered.get("content-encoding") != "gzip":
            note += " (NOT GZIPPED)"
        else:
            body = gzip.decompress(body)
    if status == 200 and server.name != "Django (peer)" and body != plain:
        note += " (DIFFERENT BYTES)"
    return note


def profile(database_url: str, path: str, requests: int) -> tuple[list[tuple], str]:
    """In-process µs per request through the Flask test client, feeds beside the floor app,
    and where a feeds cache-hit request spends its time (cProfile, own time)."""
    import logging

    from feeds import create_app
    from feeds.config import DatabaseSettings, Settings

    from feeds.metrics import BufferedLines

    # The package logs a line per request (feeds.access), as configure_logging sets it up: keep the cost, lose the lines.
    package_log = logging.getLogger("feeds")
    handler = BufferedLines(os.open(os.devnull, os.O_WRONLY))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    package_log.addHandler(handler)
    package_log.setLevel(logging.INFO)

    app = create_app(Settings(database=DatabaseSettings(url=database_url)))
    client = app.test_client()
    first = client.get(path)
    tmp = Path(tempfile.mkdtemp(prefix="floor-"))
    import atexit

    atexit.register(shutil.rmtree, tmp, True)
    (tmp / "feed.rss").write_bytes(first.data)
    (tmp / "feed.rss.gz").write_bytes(gzip.compress(first.data))
    (tmp / "feed.etag").write_text(first.headers["ETag"].strip('"'))
    (tmp / "floor_app.py").write_text(FLOOR_APP)
    sys.path.insert(0, str(tmp))
    import floor_app  # noqa: PLC0415

    floor = floor_app.app.test_client()
    rows = []
    for case in CASES:
        headers = {"If-None-Match": first.headers["ETag"]} if case == "304" else {"Accept-Encoding": "gzip"} if case == "gzip 200" else {}
        times = {}
        for name, target in (("feeds", client), ("floor", floor)):
            for _ in range(50):
                target.get(path, headers=headers)
            began = time.perf_counter()
            for _ in range(requests):
                target.get(path, headers=headers)
            times[name] = (time.perf_counter() - began) / requests * 1e6
        rows.append((case, f"{times['feeds']:.0f}", f"{times['floor']:.0f}", f"{times['feeds'] - times['floor']:+.0f}",
                     f"{times['floor'] / times['feeds']:.2f}"))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        client.get(path)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(r"feeds/|sqlalchemy/engine/base|pool", 14)
    return rows, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=10_000, help="articles in the store (default 10000)")
    parser.add_argument("--category", default="caijing", help="category slug path (default caijing)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for every Python server (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (default 4)")
    parser.add_argument("--duration", type=float, default=5, help="seconds of each timed wrk run (default 5)")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of the untimed wrk run before each (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="times every case is run against every server (default 3)")
    parser.add_argument("--retries", type=int, default=3, help="times a lopsided run is run again (default 3)")
    parser.add_argument("--lopsided", type=float, default=0.8,
                        help="share of the work one worker may do before a run counts as lopsided (default 0.8)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    parser.add_argument("--profile-requests", type=int, default=2000, help="in-process requests profiled (default 2000)")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-install", action="store_true", help="never apt-get or pip install; skip what is missing")
    args = parser.parse_args()
    c.exit_cleanly_on_sigterm()
    began = time.perf_counter()
    has_wrk, has_nginx = ensure_tools(args.no_install)
    if not has_wrk:
        sys.exit("wrk is not installed and could not be (apt-get install -y wrk as root); nothing measured")
    has_django = ensure_django(args.no_install)
    notes = []
    if not has_nginx:
        notes.append("nginx row skipped: nginx is not installed and could not be (apt-get install -y nginx as root)")
    if not has_django:
        notes.append("Django row skipped: django is not installed and could not be (pip install django)")
    path = f"/feeds/category/{args.category}.rss?limit=50"
    servers: list[Server] = []
    tmp = Path(tempfile.mkdtemp(prefix="feeds-throughput-"))
    tmp.chmod(0o755)  # nginx workers run as nobody when started by root
    try:
        database = tmp / "feeds.db"
        store = Store(f"sqlite:///{database}")
        store.migrate()
        data = _data.generate(args.articles, 0)
        _data.load(store, data)
        with store.db.engine.begin() as conn:
            conn.execute(articles.update().where(articles.c.pk > args.articles - 5000).values(content=BIG_CONTENT))
        store.close()
        c.log(f"store: {args.articles:,} articles, {data.category_sizes.get(args.category, 0):,} in {args.category}")

        env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDS_")}
        env["FEEDS_DATABASE_URL"] = f"sqlite:///{database}"
        feeds = gunicorn("feeds", "feeds:create_app()", tmp, args, env)
        servers.append(feeds)
        wait_up(feeds.url(path), feeds.process, tmp / "feeds.log")
        status, headers, plain = fetch(feeds.url(path))
        etag = headers["ETag"].strip('"')
        (tmp / "feed.rss").write_bytes(plain)
        _, gz_headers, gz = fetch(feeds.url(path), {"Accept-Encoding": "gzip"})
        (tmp / "feed.rss.gz").write_bytes(gz)
        (tmp / "feed.etag").write_text(etag)
        c.log(f"feed: {len(plain):,} bytes, gzip {len(gz):,} bytes ({gz_headers.get('Content-Encoding')}), ETag {etag}")

        (tmp / "floor_app.py").write_text(FLOOR_APP)
        servers.append(gunicorn("bare Flask (floor)", "floor_app:app", tmp, args, env))
        if has_nginx:
            www = tmp / "www" / Path(path.split("?")[0]).parent.relative_to("/")
            www.mkdir(parents=True)
            name = Path(path.split("?")[0]).name
            (www / name).write_bytes(plain)
            (www / (name + ".gz")).write_bytes(gz)
            for folder in [tmp / "www", *(p for p in (tmp / "www").rglob("*") if p.is_dir())]:
                folder.chmod(0o755)
            port = free_port()
            (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=port))
            nginx = shutil.which("nginx") or "/usr/sbin/nginx"
            log = tmp / "nginx.log"
            process = subprocess.Popen([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "nginx-error.log")],
                                       stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
            servers.append(Server("nginx (static ceiling)", port, process))
        if has_django:
            (tmp / "djfeed.py").write_text(DJANGO_APP % {"database": str(database), "slug": args.category,
                                                         "url_path": path.split("?")[0].lstrip("/")})
            servers.append(gunicorn("Django (peer)", "djfeed:application", tmp, args, env))
        for server in servers:
            wait_up(server.url(path), server.process, tmp / f"{server.name}.log" if server.name != "nginx (static ceiling)" else tmp / "nginx-error.log")
            server.etag = fetch(server.url(path))[1]["ETag"]
            c.log(f"{server.name} up on port {server.port}, ETag {server.etag}")

        for case in CASES:
            for server in servers:
                server.checks[case] = check(server, path, case, plain)
        for round_ in range(1, args.rounds + 1):
            for case in CASES:
                for server in servers:
                    headers = headers_for(case, server)
                    if args.warmup:
                        wrk(server.url(path), headers, args, args.warmup)
                    result = measured(server, server.url(path), headers, args)
                    server.results[case].append(result)
                    c.log(f"round {round_} {case} {server.name}: {result['rps']:.0f} req/s, {result['cpu_us']:.0f} CPU µs/request, "
                          f"p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms {result['bad']}")
        profiled = None if args.no_profile else profile(f"sqlite:///{database}", path, args.profile_requests)
    finally:
        for server in servers:
            if server.process.poll() is None:
                os.killpg(server.process.pid, signal.SIGTERM)
        for server in servers:
            try:
                server.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.process.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)

    print(c.header())
    print()
    print(f"`GET {path}` ({len(plain):,} B, gzip {len(gz):,} B; {args.articles:,} articles in SQLite), "
          f"all servers on 127.0.0.1 at once, measured in turn. Python servers: gunicorn gthread "
          f"`-w {args.workers} --threads {args.threads}`, no gunicorn access log (the package's own `feeds.access` "
          f"line per request goes to the server's log file, as it ships). "
          f"Load: `wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration:g}s --latency` after a "
          f"{args.warmup:g} s warm-up run of the same command (wrk counts a request slower than its 2 s default timeout "
          f"as a timeout), {args.rounds} rounds; medians over the rounds. \"vs floor\" = the median of each round's "
          f"req/s ÷ bare Flask's req/s in the same case and round; \"CPU µs\" = CPU time of the server's processes "
          f"per request.")
    print()
    floor = next(s for s in servers if s.name.startswith("bare"))
    django = next((s for s in servers if s.name.startswith("Django")), None)
    def ratio(server: Server, other: Server, case: str) -> float:
        return c.median([mine["rps"] / theirs["rps"] for mine, theirs in zip(server.results[case], other.results[case])])

    rows = []
    for case in CASES:
        for server in servers:
            runs = server.results[case]
            bad = "; ".join(sorted({r["bad"] for r in runs if r["bad"]}))
            retried = sum(r["retried"] for r in runs)
            bad += f"{'; ' if bad else ''}{retried} lopsided run(s) repeated" if retried else ""
            rows.append((case, server.name, f"{c.median([r['rps'] for r in runs]):,.0f}",
                         f"{c.median([r['cpu_us'] for r in runs]):.0f}",
                         f"{c.median([r['p50'] for r in runs]):.2f}", f"{c.median([r['p99'] for r in runs]):.2f}",
                         f"{ratio(server, floor, case):.2f}", f"{ratio(server, django, case):.1f}×" if django and server is not django else "",
                         " / ".join(f"{r['rps']:,.0f}" for r in runs), server.checks[case] + (f"; {bad}" if bad else "")))
    print(c.table(("case", "server", "req/s", "CPU µs", "p50 ms", "p99 ms", "vs floor", "vs Django", "req/s by round",
                   "check: status, body"), rows, "llrrrrrrrl"))
    for note in notes:
        print(f"\n- {note}")
    if profiled:
        rows, stats = profiled
        print()
        print(f"In-process (Flask test client, one thread, {args.profile_requests:,} requests after 50 warm-up), "
              f"µs per request; floor/feeds is the share of the floor's speed feeds reaches:")
        print()
        print(c.table(("case", "feeds µs", "bare Flask µs", "feeds − floor µs", "floor/feeds"), rows))
        print()
        print("cProfile of the feeds cache-hit 200 path (same requests):")
        print()
        print("```")
        print(textwrap.dedent(stats).strip())
        print("```")
    print(f"\ntotal run time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
