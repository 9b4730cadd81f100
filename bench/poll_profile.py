"""Where a poll's time goes, in-process: µs per request through the Flask test client, ``feeds`` beside a
few lines of bare Flask answering the same bytes from memory (the framework floor), and a cProfile of the
cache-hit 200 path. No server and no network: what the app itself costs.

    python bench/poll_profile.py                  # about a minute
"""
from __future__ import annotations

import argparse
import cProfile
import gzip
import io
import os
import pstats
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
from _serve import CASES, ENCODING_OF, FLOOR_APP, polled_store  # noqa: E402

def wsgi_call(wsgi: Any, path: str, headers: dict[str, str], requests: int) -> float:
    """µs per poll of the app's own WSGI callable, called as a server calls it: the fast path's whole cost in Python,
    with no test client and no server around it."""
    target, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": target, "QUERY_STRING": query, "REMOTE_ADDR": "127.0.0.1",
               "HTTP_USER_AGENT": "wrk", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "wsgi.url_scheme": "http",
               **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        pass

    for _ in range(1000):
        wsgi(dict(environ), start_response)
    began = time.perf_counter()
    for _ in range(requests):
        wsgi(dict(environ), start_response)
    return (time.perf_counter() - began) / requests * 1e6


def profile(database_url: str, path: str, requests: int) -> tuple[list[tuple], str]:
    """In-process µs per request through the Flask test client, feeds beside the floor app,
    and where a feeds cache-hit request spends its time (cProfile, own time)."""
    from feeds import create_app
    from feeds.config import DatabaseSettings, Settings

    # The package logs a line per request (feeds.access) in batches to stderr, as configure_logging sets it up when
    # nothing else configured logging: keep the cost, lose the lines (the table goes to stdout).
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
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
                     f"{times['floor'] / times['feeds']:.2f}", f"{wsgi_call(app.wsgi_app, path, headers, requests * 10):.2f}"))
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
    parser.add_argument("--limit", type=int, default=2, help="items of the polled feed (default 2: about 8 KB)")
    parser.add_argument("--requests", type=int, default=2000, help="in-process requests timed and profiled (default 2000)")
    args = parser.parse_args()
    path = f"/feeds/category/{args.category}.rss?limit={args.limit}"
    tmp = Path(tempfile.mkdtemp(prefix="feeds-profile-"))
    try:
        polled_store(tmp / "feeds.db", args.articles)
        rows, stats = profile(f"sqlite:///{tmp / 'feeds.db'}", path, args.requests)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(c.header())
    print()
    print(f"In-process (Flask test client, one thread, {args.requests:,} requests of `GET {path}` after 50 warm-up), "
          f"µs per request; floor/feeds is the share of the floor's speed feeds reaches:")
    print()
    print(c.table(("case", "feeds µs", "bare Flask µs", "feeds − floor µs", "floor/feeds", "feeds' WSGI callable alone µs"), rows))
    print()
    print("cProfile of the feeds cache-hit 200 path (same requests):")
    print()
    print("```")
    print(textwrap.dedent(stats).strip())
    print("```")


if __name__ == "__main__":
    main()
