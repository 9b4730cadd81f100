"""Served throughput of polls with wrk: `feeds serve` beside the same app on gunicorn, a bare-Flask
floor, bjoern and granian with no app work, nginx serving the same bytes as static files, and Django's
syndication framework.

One SQLite store (``bench/_data.py``, ``--articles`` articles, the newest with ~4 KB items)
serves ``/feeds/category/<slug>.rss?limit=<--limit>`` (about 8 KB) from eight servers at once on 127.0.0.1:

- **feeds serve**: ``feeds serve --workers W --threads T`` as the README starts it, with its default workers
  and threads: bjoern workers (one thread each), with the polling fast path (``feeds.web.FastPolls``) in front
  of Flask;
- **feeds serve --threads N** (``--more-threads``, 4 unless 0): the same app on granian, which
  ``feeds serve`` runs for more than one thread a worker; the threads take turns holding Python's lock;
- **bjoern, no app work (server floor)**: a plain WSGI callable answering with the very bytes and
  headers ``feeds serve`` gives (200 and 304, each encoding) from memory, on bjoern workers forked as
  ``feeds serve`` forks them: how fast the server goes when the app does nothing;
- **granian, no app work**: the same callable on granian, with the same workers and threads;
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
not in Debian); 1,000 source feeds × 3 formats polled round-robin (a Lua ``request()``), so
that the cache's working set is real, against nginx serving the same 3,000 files, with the
cold first request of each; the cold render of 50-item category feeds (the first request of
each); and unless ``--no-profile``, one request path profiled in-process (Flask test client,
cProfile) beside the floor app.

    python bench/throughput.py                       # about 10 minutes
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
import json
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
from email.message import Message
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
import _data  # noqa: E402
from render import BIG_CONTENT  # noqa: E402

import brotli  # noqa: E402

from feeds.config import ServerSettings  # noqa: E402
from feeds.store import Store  # noqa: E402
from feeds.store.schema import articles  # noqa: E402

CASES = ("200", "gzip 200", "br 200", "304", "gzip 304")
ENCODING_OF = {"200": "identity", "gzip 200": "gzip", "br 200": "br", "304": "identity", "gzip 304": "gzip"}

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

NO_WORK_APP = '''
"""The servers' floors: a plain WSGI callable answering with the service's own bytes and headers, from memory."""
import json
from pathlib import Path

ANSWERS = {encoding: (bytes.fromhex(body), [tuple(h) for h in fresh], [tuple(h) for h in not_modified], etag)
           for encoding, (body, fresh, not_modified, etag) in json.loads((Path(__file__).parent / "answers.json").read_text()).items()}


def app(environ, start_response):
    body, fresh, not_modified, etag = ANSWERS.get(environ.get("HTTP_ACCEPT_ENCODING", ""), ANSWERS["identity"])
    if environ.get("HTTP_IF_NONE_MATCH") == etag:
        start_response("304 Not Modified", list(not_modified))
        return [b""]
    start_response("200 OK", list(fresh))
    return [body]
'''

BJOERN_FLOOR_SERVER = '''
"""The server floor of `feeds serve`: the no-work callable on bjoern workers forked from one socket, as
feeds/server.py forks them, with a Date header fixed at start (bjoern writes none)."""
import os
import sys
from email.utils import formatdate

import bjoern

from no_work_app import ANSWERS, app

for _, fresh, not_modified, _ in ANSWERS.values():
    fresh.append(("Date", formatdate(usegmt=True)))
    not_modified.append(("Date", formatdate(usegmt=True)))
listener = bjoern.bind_and_listen("127.0.0.1", int(sys.argv[1]))
for _ in range(int(sys.argv[2]) - 1):
    if os.fork() == 0:
        break
bjoern.server_run(listener, app)
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
    open_file_cache max=10000 inactive=60s;  # as a static-file server is tuned: no open() and stat() a request
    open_file_cache_valid 60s;
    types {{ application/rss+xml rss; application/atom+xml atom; application/feed+json json; }}
    default_type application/octet-stream;
    charset utf-8;
    charset_types application/rss+xml application/atom+xml application/feed+json;
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
        root {root};
        add_header Cache-Control "public, max-age=300";
    }}
}}
'''


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    etags: dict[str, str] = field(default_factory=dict)  # by encoding
    checks: dict[str, str] = field(default_factory=dict)
    results: dict[str, list[dict]] = field(default_factory=lambda: {case: [] for case in CASES})  # one per round

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:  # header names in any case
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


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


def wrk(url: str, headers: dict[str, str], args: argparse.Namespace, duration: float, script: Path | None = None,
        connections: int | None = None) -> dict:
    command = ["wrk", f"-t{args.wrk_threads}", f"-c{connections or args.connections}", f"-d{duration:g}s", "--latency"]
    command += ["-s", str(script)] if script else []
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
    encoding = ENCODING_OF[case]
    headers = {"Accept-Encoding": encoding}
    if case.endswith("304"):
        headers["If-None-Match"] = server.etags[encoding]
    return headers


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


def feeds_serve(name: str, tmp: Path, args: argparse.Namespace, env: dict[str, str], threads: int | None = None) -> Server:
    """``feeds serve`` as the README starts it (bjoern with one thread a worker, granian with more; the fast path
    in front of Flask)."""
    port = free_port()
    log = tmp / f"{name}.log"
    command = [sys.executable, "-m", "feeds", "serve", "--port", str(port), "--workers", str(args.workers),
               "--threads", str(threads or args.threads)]
    process = subprocess.Popen(command, cwd=tmp, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    return Server(name, port, process)


def write_answers(tmp: Path, feeds: Server, path: str) -> None:
    """``answers.json``: the bytes and headers ``feeds`` gives for ``path`` (200 and 304, each encoding), which the
    server floors answer with."""
    answers = {}
    for encoding in ("identity", "gzip", "br"):
        status, headers, body = fetch(feeds.url(path), {"Accept-Encoding": encoding})
        etag = headers["ETag"]
        _, not_modified, _ = fetch(feeds.url(path), {"Accept-Encoding": encoding, "If-None-Match": etag})
        drop = ("date", "server", "transfer-encoding", "connection")  # the servers write their own
        answers[encoding] = (body.hex(), [(k, v) for k, v in headers.items() if k.lower() not in drop],
                             [(k, v) for k, v in not_modified.items() if k.lower() not in drop], etag)
    (tmp / "answers.json").write_text(json.dumps(answers))


def server_floor(name: str, tmp: Path, args: argparse.Namespace, env: dict[str, str]) -> Server:
    """A server answering from ``answers.json`` with no other work, with the same workers: bjoern forked as
    ``feeds serve`` forks it, or granian with the same threads."""
    port = free_port()
    (tmp / "no_work_app.py").write_text(NO_WORK_APP)
    if name == BJOERN_FLOOR:
        (tmp / "bjoern_floor.py").write_text(BJOERN_FLOOR_SERVER)
        command = [sys.executable, "bjoern_floor.py", str(port), str(args.workers)]
    else:
        command = [sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", str(args.workers), "--blocking-threads",
                   str(args.threads), "--no-ws", "--port", str(port), "--log-level", "warning", "no_work_app:app"]
    process = subprocess.Popen(command, cwd=tmp, env=env, stdout=(tmp / f"{name}.log").open("w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    return Server(name, port, process)


def start_nginx(tmp: Path, root: Path, name: str) -> Server:
    """nginx serving ``root`` (files and their .gz), 2 workers, in the foreground, on a free port."""
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)  # nginx workers run as nobody when started by root
    port = free_port()
    conf = tmp / f"{name}.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=root))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    log = tmp / f"{name}-error.log"
    process = subprocess.Popen([nginx, "-p", str(tmp), "-c", str(conf), "-e", str(log)],
                               stdout=(tmp / f"{name}.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    return Server(NGINX, port, process)


def stop(servers: list[Server]) -> None:
    for server in servers:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGTERM)
    for server in servers:
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)


RATE_SCRIPT = """
-- wrk has no fixed request rate (wrk2 is not in Debian): each connection waits %(delay_ms)d ms
-- before each request, so %(connections)d connections ask for about %(rate)d requests a second.
function delay() return %(delay_ms)d end
"""

PATHS_SCRIPT = """
-- Every connection walks the list of feed URLs, so the server's cache holds all of them at once.
local paths = {}
for line in io.lines("%(file)s") do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
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


def many_feeds(tmp: Path, args: argparse.Namespace, env: dict[str, str]) -> tuple[list[tuple], str]:
    """1,000 source feeds × 3 formats polled round-robin: a cache working set of 3,000 feeds, against
    nginx serving the same 3,000 files. Also the first (cold) request of each, timed one by one."""
    database = tmp / "many.db"
    store = Store(f"sqlite:///{database}")
    store.migrate()
    _data.load(store, _data.generate(args.many_sources * 3, 0, n_sources=args.many_sources))
    store.close()
    many_env = {**env, "FEEDS_DATABASE_URL": f"sqlite:///{database}"}
    urls = [f"/feeds/source/laiyuan{n}.{extension}" for n in range(1, args.many_sources + 1) for extension in ("rss", "atom", "json")]
    (tmp / "many-paths.txt").write_text("".join(url + "\n" for url in urls))
    script = tmp / "many.lua"
    script.write_text(PATHS_SCRIPT % {"file": tmp / "many-paths.txt"})
    servers = [feeds_serve(FEEDS_SERVE, tmp, args, many_env)]
    try:
        wait_up(servers[0].url(urls[0]), servers[0].process, tmp / f"{servers[0].name}.log")
        root = tmp / "www-many"
        cold = []
        for url in urls:
            began = time.perf_counter()
            status, _, body = fetch(servers[0].url(url), {"Accept-Encoding": "identity"})
            cold.append((time.perf_counter() - began) * 1000)
            assert status == 200, url
            (root / url.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / url.lstrip("/")).write_bytes(body)
        sizes = sorted(len((root / url.lstrip("/")).read_bytes()) for url in urls)
        note = (f"{len(urls):,} feeds ({args.many_sources:,} sources × 3 formats, {args.many_sources * 3:,} articles), "
                f"{sizes[len(sizes) // 2]:,} B median; first request of each, one at a time (cold: rendered then): "
                f"median {c.median(cold):.1f} ms, p99 {c.percentile(cold, 0.99):.1f} ms")
        servers.append(start_nginx(tmp, root, "nginx-many"))
        servers[1].name = NGINX
        wait_up(servers[1].url(urls[0]), servers[1].process, tmp / "nginx-many-error.log")
        rows = []
        for server in servers:
            # Each worker process renders each feed once into its own memory cache (no cache.url): warm
            # until the rate stops climbing, so the timed run is of a warm working set.
            rates = [0.0]
            for _ in range(12):
                rates.append(wrk(server.url("/"), {}, args, 2, script)["rps"])
                if rates[-1] < rates[-2] * 1.1:
                    break
            c.log(f"many feeds {server.name}: warm-up rates {' / '.join(f'{rate:.0f}' for rate in rates[1:])}")
            result = wrk(server.url("/"), {}, args, args.duration, script)
            c.log(f"many feeds {server.name}: {result['rps']:.0f} req/s {result['bad']}")
            rows.append((server.name, f"{result['rps']:,.0f}", f"{result['p50']:.2f}", f"{result['p99']:.2f}", result["bad"]))
        return rows, note
    finally:
        stop(servers)


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
    etags = {encoding: client.get(path, headers={"Accept-Encoding": encoding}).headers["ETag"] for encoding in ("identity", "gzip")}
    for case in CASES:
        encoding = ENCODING_OF[case]
        headers = {"Accept-Encoding": encoding, **({"If-None-Match": etags[encoding]} if case.endswith("304") else {})}
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


FEEDS_SERVE = "feeds serve (bjoern, fast path)"
FEEDS_MORE_THREADS = "feeds serve --threads %d (granian)"
BJOERN_FLOOR = "bjoern, no app work (server floor)"
GRANIAN_FLOOR = "granian, no app work"
FEEDS_GUNICORN = "feeds on gunicorn (gthread)"
FLOOR = "bare Flask on gunicorn (floor)"
NGINX = "nginx (static files)"
DJANGO = "Django (peer)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=10_000, help="articles in the store (default 10000)")
    parser.add_argument("--category", default="caijing", help="category slug path (default caijing)")
    parser.add_argument("--limit", type=int, default=2, help="items of the polled feed (default 2: about 8 KB)")
    defaults = ServerSettings()
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help=f"workers of every Python server (default {defaults.workers}, as feeds serve's)")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help=f"threads per worker of every Python server (default {defaults.threads}, as feeds serve's)")
    parser.add_argument("--more-threads", type=int, default=4,
                        help="also run feeds serve with this many threads per worker (default 4; 0: not)")
    parser.add_argument("--duration", type=float, default=5, help="seconds of each timed wrk run (default 5)")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of the untimed wrk run before each (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="times every case is run against every server (default 3)")
    parser.add_argument("--retries", type=int, default=3, help="times a lopsided run is run again (default 3)")
    parser.add_argument("--lopsided", type=float, default=0.8,
                        help="share of the work one worker may do before a run counts as lopsided (default 0.8)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    parser.add_argument("--rate", type=int, default=2000, help="requests/s of the fixed-rate latency runs (default 2000)")
    parser.add_argument("--many-sources", type=int, default=1000, help="source feeds of the many-feeds run (default 1000)")
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
        notes.append("nginx rows skipped: nginx is not installed and could not be (apt-get install -y nginx as root)")
    if not has_django:
        notes.append("Django row skipped: django is not installed and could not be (pip install django)")
    path = f"/feeds/category/{args.category}.rss?limit={args.limit}"
    servers: list[Server] = []
    tmp = Path(tempfile.mkdtemp(prefix="feeds-throughput-"))
    tmp.chmod(0o755)  # nginx workers run as nobody when started by root
    many, many_note, latency, cold = [], "", [], ""
    try:
        database = tmp / "feeds.db"
        store = Store(f"sqlite:///{database}")
        store.migrate()
        data = _data.generate(args.articles, 0)
        _data.load(store, data)
        with store.db.engine.begin() as conn:
            conn.execute(articles.update().where(articles.c.pk > args.articles - 5000).values(content=BIG_CONTENT))
        categories = sorted({row["slug_path"] for row in data.categories if data.category_sizes.get(row["slug_path"], 0) >= 50})
        store.close()
        c.log(f"store: {args.articles:,} articles, {data.category_sizes.get(args.category, 0):,} in {args.category}")

        env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDS_")}
        env.update(FEEDS_DATABASE_URL=f"sqlite:///{database}", FEEDS_CONFIG=os.devnull)
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
        servers += [server_floor(BJOERN_FLOOR, tmp, args, env), server_floor(GRANIAN_FLOOR, tmp, args, env)]
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
        stop(servers)
        if has_nginx:
            many, many_note = many_feeds(tmp, args, env)
        profiled = None if args.no_profile else profile(f"sqlite:///{database}", path, args.profile_requests)
    finally:
        stop(servers)
        shutil.rmtree(tmp, ignore_errors=True)

    print(c.header())
    print()
    print(f"`GET {path}` ({len(plain):,} B, gzip {len(gz):,} B; {args.articles:,} articles in SQLite), "
          f"all servers on 127.0.0.1 at once, measured in turn. Python servers: `-w {args.workers} --threads "
          f"{args.threads}` (gunicorn gthread; `feeds serve` forks that many bjoern workers, or runs granian with more threads), "
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
                         ratio(server, NGINX, case), ratio(server, BJOERN_FLOOR, case), ratio(server, FLOOR, case),
                         " / ".join(f"{r['rps']:,.0f}" for r in runs), server.checks[case] + (f"; {bad}" if bad else "")))
    print(c.table(("case", "server", "req/s", "CPU µs", "p50 ms", "p99 ms", "vs nginx", "vs server floor", "vs Flask floor",
                   "req/s by round", "check: status, body"), rows, "llrrrrrrrrl"))
    print()
    print(f"At a fixed rate (`wrk -c20` with a Lua `delay()` of {max(1, round(20000 / args.rate))} ms per connection "
          f"between requests, about {args.rate:,} req/s; wrk2 is not in Debian; the latencies are of each request as sent, "
          f"not corrected for coordinated omission), `{args.duration:g}` s each:")
    print()
    print(c.table(("case", "server", "req/s", "p50 ms", "p99 ms", "errors"), latency, "llrrrl"))
    if many:
        print()
        print(f"Many feeds: {many_note}. Then `wrk` round-robin over all of them (Lua `request()`), identity 200s, "
              f"`-c{args.connections}`, after 2 s warm-up runs until the rate stopped climbing (each worker process keeps "
              f"its own cache, so each renders each feed once):")
        print()
        print(c.table(("server", "req/s", "p50 ms", "p99 ms", "errors"), many, "lrrrl"))
    print()
    print(f"- {cold}")
    for note in notes:
        print(f"- {note}")
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
