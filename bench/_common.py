"""What the benchmark scripts share: the machine line, timing statistics, Markdown tables,
and a PostgreSQL database of their own (created on the server named, dropped at the end)."""
from __future__ import annotations

import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parents[1]  # the checkout whose feeds package the benchmarks measure


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def header() -> str:
    """The command line and the machine, as Markdown lines to print above a table."""
    command = " ".join(shlex.quote(arg) for arg in [Path(sys.executable).name, *sys.argv])
    return (f"command: `{command}`\n\n"
            f"machine: nproc {os.cpu_count()}, {cpu_model()}, Python {sys.version.split()[0]}, "
            f"load average at start {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def timed(work: Callable[[], object], runs: int, warmup: int = 1) -> list[float]:
    """Milliseconds of each of ``runs`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        work()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append((time.perf_counter() - began) * 1000)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None) -> str:
    """A Markdown table; ``align`` is one letter a column, l or r (default: first l, rest r)."""
    align = align or "l" + "r" * (len(columns) - 1)
    lines = ["| " + " | ".join(columns) + " |",
             "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def exit_cleanly_on_sigterm() -> None:
    """SIGTERM raises SystemExit, so ``finally`` blocks (dropping our database) still run."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class OwnPostgres:
    """A database of our own on the server of ``server_url``: created (dropped first if a
    previous run left it), and dropped by ``drop()``, so other users' databases are never touched."""

    def __init__(self, server_url: str, name: str):
        from sqlalchemy.engine import make_url

        self.server = make_url(server_url)
        self.name = name
        self.url = self.server.set(database=name).render_as_string(hide_password=False)

    def _admin(self):  # type: ignore[no-untyped-def]
        import psycopg

        url = self.server
        return psycopg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
                               password=url.password, dbname="postgres", autocommit=True)

    def create(self) -> str:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self.url

    def exists(self) -> bool:
        with self._admin() as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)).fetchone() is not None

    def drop(self) -> None:
        try:
            with self._admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001 - report, never hide the benchmark's own result
            log(f"could not drop database {self.name}: {exc}")

    def size(self) -> str:
        with self._admin() as conn:
            return conn.execute("SELECT pg_size_pretty(pg_database_size(%s))", (self.name,)).fetchone()[0]
