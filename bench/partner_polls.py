"""Partner feeds beside public ones: polls of the same feed through its public URL and through a partner's
keyed URL, on one `feeds serve`.

A public poll is answered by the fast path in front of Flask; a partner poll goes through Flask's view
(the key is looked up, the partner's limits applied), from the same rendered-feed cache. The same
category feed (`?limit=2`, about 8 KB) of a 10,000-article SQLite store; `wrk -t2 -c32` for
``--duration`` seconds after a warm-up, the two alternating for ``--rounds`` rounds; req/s are medians
over the rounds, CPU the server's per request.

    python bench/partner_polls.py          # about 2 minutes
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
from _serve import (ENCODING_OF, ensure_tools, feeds_serve, fetch, measured, polled_store, server_arguments,  # noqa: E402
                    server_env, stop, wait_up, wrk)

KEY = "bench-partner-key-0001"
CASES = ("200", "gzip 200", "304", "gzip 304")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    server_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the two, alternating (default 3)")
    args = parser.parse_args()
    c.exit_cleanly_on_sigterm()
    has_wrk, _ = ensure_tools(args.no_install)
    if not has_wrk:
        sys.exit("wrk is not installed: nothing to measure")
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        _, categories = polled_store(tmp / "feeds.db", 10_000)
        path = f"category/{categories[0]}.rss?limit=2"
        config = tmp / "config.toml"
        config.write_text(f'[partners.bench]\nkeys = ["{KEY}"]\nlimit = 50\n', encoding="utf-8")
        env = {**server_env(tmp / "feeds.db"), "FEEDS_CONFIG": str(config)}
        server = feeds_serve("feeds serve", tmp, args, env)
        urls = {"public": f"/feeds/{path}", "partner": f"/partner/{KEY}/{path}"}
        try:
            wait_up(server.url(urls["public"]), server.process, tmp / "feeds serve.log")
            etags = {(kind, encoding): fetch(server.url(url), {"Accept-Encoding": encoding})[1]["ETag"]
                     for kind, url in urls.items() for encoding in ("identity", "gzip")}
            for _ in range(args.rounds):
                for case in CASES:
                    for kind, url in urls.items():
                        encoding = ENCODING_OF[case]
                        headers = {"Accept-Encoding": encoding, **({"If-None-Match": etags[kind, encoding]} if case.endswith("304") else {})}
                        wrk(server.url(url), headers, args, args.warmup)
                        result = measured(server, server.url(url), headers, args)
                        results.setdefault((case, kind), []).append(result)
                        c.log(f"{case} {kind}: {result['rps']:,.0f} req/s {result['bad']}")
        finally:
            stop([server])

    def median(case: str, kind: str, key: str) -> float:
        return statistics.median(result[key] for result in results[case, kind])

    rows = [(case, f"{median(case, 'public', 'rps'):,.0f}", f"{median(case, 'partner', 'rps'):,.0f}",
             f"{statistics.median(p['rps'] / q['rps'] for p, q in zip(results[case, 'partner'], results[case, 'public'])):.2f}",
             f"{median(case, 'public', 'cpu_us'):.0f}", f"{median(case, 'partner', 'cpu_us'):.0f}") for case in CASES]
    print(c.header())
    print()
    print(f"`feeds serve` ({args.workers} workers × {args.threads} thread), `GET {path}` as a public feed and as a partner's, "
          f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration:g}s, {args.rounds} rounds:")
    print()
    print(c.table(("case", "public req/s", "partner req/s", "partner/public", "public CPU µs/req", "partner CPU µs/req"), rows))


if __name__ == "__main__":
    main()
