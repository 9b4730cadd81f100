"""A working set of many feeds: 1,000 source feeds × 3 formats polled round-robin (a Lua ``request()``), so
that the cache's working set is real, through ``feeds serve`` against nginx serving the same 3,000 files,
with the cold first request of each, timed one at a time.

    python bench/many_feeds.py                    # about 2 minutes
    python bench/many_feeds.py --many-sources 200 --duration 3
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
import _data  # noqa: E402
from _serve import FEEDS_SERVE, NGINX, ensure_tools, feeds_serve, fetch, server_arguments, server_env, start_nginx, stop, wait_up, wrk  # noqa: E402

from feeds.store import Store  # noqa: E402

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


def many_feeds(tmp: Path, args: argparse.Namespace) -> tuple[list[tuple], str]:
    """1,000 source feeds × 3 formats polled round-robin: a cache working set of 3,000 feeds, against
    nginx serving the same 3,000 files. Also the first (cold) request of each, timed one by one."""
    database = tmp / "many.db"
    store = Store(f"sqlite:///{database}")
    store.migrate()
    _data.load(store, _data.generate(args.many_sources * 3, 0, n_sources=args.many_sources))
    store.close()
    many_env = server_env(database)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    server_arguments(parser)
    parser.add_argument("--many-sources", type=int, default=1000, help="source feeds (default 1000)")
    args = parser.parse_args()
    c.exit_cleanly_on_sigterm()
    has_wrk, has_nginx = ensure_tools(args.no_install)
    if not (has_wrk and has_nginx):
        sys.exit("wrk and nginx are needed and could not be installed (apt-get install -y wrk nginx as root); nothing measured")
    tmp = Path(tempfile.mkdtemp(prefix="feeds-many-"))
    tmp.chmod(0o755)  # nginx workers run as nobody when started by root
    try:
        rows, note = many_feeds(tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(c.header())
    print()
    print(f"Many feeds: {note}. Then `wrk` round-robin over all of them (Lua `request()`), identity 200s, "
          f"`-c{args.connections}`, after 2 s warm-up runs until the rate stopped climbing (each worker process keeps "
          f"its own cache, so each renders each feed once):")
    print()
    print(c.table(("server", "req/s", "p50 ms", "p99 ms", "errors"), rows, "lrrrl"))


if __name__ == "__main__":
    main()
