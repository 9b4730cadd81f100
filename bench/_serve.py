"""The shared runner of the served benchmarks (throughput.py, many_feeds.py, push.py): a store of generated
articles, servers started on free ports of 127.0.0.1 (``feeds serve``, gunicorn, the servers' no-work floors,
nginx serving the same bytes as files), wrk runs against them, and the CPU time their processes use."""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import _common as c
import _data
from render import BIG_CONTENT

from feeds.config import ServerSettings
from feeds.store import Store
from feeds.store.schema import articles

CASES = ("200", "gzip 200", "br 200", "304", "gzip 304")


ENCODING_OF = {"200": "identity", "gzip 200": "gzip", "br 200": "br", "304": "identity", "gzip 304": "gzip"}

FEEDS_SERVE = "feeds serve (granian, fast path)"
FEEDS_MORE_THREADS = "feeds serve --threads %d"
GRANIAN_FLOOR = "granian, no app work (server floor)"
FEEDS_GUNICORN = "feeds on gunicorn (gthread)"
FLOOR = "bare Flask on gunicorn (floor)"
NGINX = "nginx (static files)"
DJANGO = "Django (peer)"

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


def server_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every served benchmark takes: the servers' workers and threads, and how wrk loads them."""
    defaults = ServerSettings()
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help=f"workers of every Python server (default {defaults.workers}, as feeds serve's)")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help=f"threads per worker of every Python server (default {defaults.threads}, as feeds serve's)")
    parser.add_argument("--duration", type=float, default=5, help="seconds of each timed wrk run (default 5)")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of the untimed wrk run before each (default 1)")
    parser.add_argument("--retries", type=int, default=3, help="times a lopsided run is run again (default 3)")
    parser.add_argument("--lopsided", type=float, default=0.8,
                        help="share of the work one worker may do before a run counts as lopsided (default 0.8)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    parser.add_argument("--no-install", action="store_true", help="never apt-get or pip install; skip what is missing")


def polled_store(database: Path, count: int) -> tuple[_data.Dataset, list[str]]:
    """A SQLite store at ``database`` with ``count`` generated articles, the newest 5,000 with ~4 KB of content;
    its data, and the slugs of the categories with 50 articles or more."""
    store = Store(f"sqlite:///{database}")
    store.migrate()
    data = _data.generate(count, 0)
    _data.load(store, data)
    with store.db.engine.begin() as conn:
        conn.execute(articles.update().where(articles.c.pk > count - 5000).values(content=BIG_CONTENT))
    store.close()
    return data, sorted({row["slug_path"] for row in data.categories if data.category_sizes.get(row["slug_path"], 0) >= 50})


def server_env(database: Path) -> dict[str, str]:
    """The environment of a served ``feeds``: this one's, less any FEEDS_ setting, on ``database``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDS_")}
    # One base URL for every server, whatever port it listens on: the same links, so the same bytes.
    env.update(FEEDS_DATABASE_URL=f"sqlite:///{database}", FEEDS_CONFIG=os.devnull, FEEDS_BASE_URL="http://127.0.0.1:8000")
    return env


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


def feeds_serve(name: str, tmp: Path, args: argparse.Namespace, env: dict[str, str], threads: int | None = None) -> Server:
    """``feeds serve`` as the README starts it: granian workers, the fast path in front of Flask."""
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
    """granian answering from ``answers.json`` with no other work, set up as ``feeds serve`` sets it up (the same
    workers, threads, backlog and connection limit): how fast the server goes when the app does nothing."""
    from feeds.server import BACKLOG, MAX_CONNECTIONS

    port = free_port()
    (tmp / "no_work_app.py").write_text(NO_WORK_APP)
    command = [sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", str(args.workers), "--blocking-threads",
               str(args.threads), "--backlog", str(BACKLOG), "--backpressure", str(MAX_CONNECTIONS), "--no-ws",
               "--port", str(port), "--log-level", "warning", "no_work_app:app"]
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
