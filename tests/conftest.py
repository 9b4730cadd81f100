"""Shared fixtures: a fresh database per test, on SQLite always and on PostgreSQL when
``FEEDS_TEST_DATABASE_URL`` names one; ``app``, ``client`` and ``runner`` as in Flask's tutorial.

The suite runs in parallel (pytest-xdist, ``-n`` in pyproject.toml): each worker process has a
PostgreSQL database and Redis databases of its own, so that a test wiping its schema or flushing its
Redis database never touches another worker's."""
from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient

from feeds import create_app
from feeds.cli import main
from feeds.config import Settings, load_settings
from feeds.polls import PollCounter
from feeds.store import Store

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", … under pytest-xdist; "" in one process
WORKER_NUMBER = int(WORKER.removeprefix("gw")) if WORKER else 0
SEED_ARTICLE = {
    "id": "20240404-0001",
    "url": "https://news.example.cn/redian/guonei/2024/0404/0001.html",
    "title": "中国财贸轻纺烟草工会与中国纺织工业联合会召开第二十一次联席会议",
    "content": (
        "<p>原标题:中国财贸轻纺烟草工会与中国纺织工业联合会召开第二十一次联席会议</p>"
        "<p>中工网北京4月2日电(工人日报-中工网记者朱欣)中国财贸轻纺烟草工会与中国纺织工业联合会今天在京召开第二十一次联席会议,"
        "总结2023年合作成果,部署2024年工作任务。据悉,2024年双方将围绕“优竞赛、树典型、强技能”这一主线开展工作。</p>"
        "<p>免责声明</p><p>融易新媒体转载此文目的在于传递更多信息,不代表本网的观点和立场。</p>"
    ),
    "author": "朱欣",
    "source": "互联网",
    "category": "热点/国内",
    "tags": ["工会", "纺织"],
    "image": "https://news.example.cn/images/0001.jpg",
    "published": "2024-04-04 16:49:39",
}


def worker_postgres(url: str) -> str:
    """``url`` for this worker: its database with the worker's name appended (``test_gw1``), created
    on the same server when missing; ``url`` itself outside pytest-xdist."""
    if not url or not WORKER:
        return url
    import psycopg

    server = sa.make_url(url)
    name = f"{server.database}_{WORKER}"
    params = {"host": server.host or "127.0.0.1", "port": server.port or 5432, "user": server.username,
              "password": server.password, "dbname": server.database, "autocommit": True}
    with psycopg.connect(**params) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    return server.set(database=name).render_as_string(hide_password=False)


MAX_WORKERS = 4  # each worker takes three of the 16 databases a Redis server has by default


def redis_database(url: str, offset: int = 0) -> str:
    """``url`` with a Redis database of this worker's own: the one its tests share (``offset`` 0: ``url``'s own
    outside pytest-xdist, else 0-3), and two a test empties and fills for itself (``offset`` 1 and 2: 8-15)."""
    if not url or (offset == 0 and not WORKER):
        return url
    if WORKER_NUMBER >= MAX_WORKERS:
        raise pytest.UsageError(f"the Redis tests give each of at most {MAX_WORKERS} workers databases of its own: run with -n {MAX_WORKERS} or fewer")
    parts = urlsplit(url)
    number = WORKER_NUMBER if offset == 0 else 8 + 2 * WORKER_NUMBER + offset - 1
    return urlunsplit((parts.scheme, parts.netloc, f"/{number}", parts.query, parts.fragment))


POSTGRES_URL = worker_postgres(os.environ.get("FEEDS_TEST_DATABASE_URL", ""))
REDIS_URL = redis_database(os.environ.get("FEEDS_TEST_REDIS_URL", ""))


def apt_install(packages: list[str]) -> str:
    """apt-get install Debian's ``packages``; '' when done, else why not. One install at a time across
    the workers of a parallel run (dpkg takes one), under a lock file."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "installing needs root and apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(Path(tempfile.gettempdir()) / "feeds-tests-apt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *packages]):
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
            except (OSError, subprocess.SubprocessError) as exc:
                return f"{' '.join(command)}: {exc}"
            if done.returncode != 0:
                return f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-500:]}"
    return ""


def debian_tool(command: str, package: str = "") -> str:
    """The path of ``command``, installed from Debian's ``package`` (by default of the same name) when
    missing; the test skips, saying why, when it cannot be had."""
    found = shutil.which(command, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        problem = apt_install([package or command])
        found = shutil.which(command, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
        if found is None:
            pytest.skip(f"{command} is not installed and installing Debian's {package or command} failed: {problem}")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reset_postgres(url: str) -> None:
    """An empty schema, and no connection of an earlier test left open: the pools of apps a test
    did not close would otherwise add up over the suite to the server's connection limit, and a
    thread of one could write into the next test's tables."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def _database_params() -> list[Any]:
    postgres = pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(not POSTGRES_URL, reason="FEEDS_TEST_DATABASE_URL is not set; PostgreSQL tests need it"),
    )
    return ["sqlite", postgres]


# For a test of what only PostgreSQL can do (transactions that overlap): ``database_url`` is PostgreSQL alone.
only_postgresql = pytest.mark.parametrize("database_url", _database_params()[1:], indirect=True)


@pytest.fixture(params=_database_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: SQLite in a temporary folder, or a wiped PostgreSQL schema."""
    if request.param == "postgresql":
        reset_postgres(POSTGRES_URL)
        return POSTGRES_URL
    return f"sqlite:///{tmp_path / 'feeds.db'}"


@pytest.fixture(autouse=True)
def poll_counters_stop_with_their_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each poll counter a test made stops its background flushes when the test ends, and makes no last
    one at exit. One left running writes into, and drops the days past retention of, whatever the next
    test keeps in the same PostgreSQL schema (the tests' days are in 2024); hundreds flushing at exit
    would each open a connection."""
    made: list[PollCounter] = []
    counting = PollCounter.__init__

    def tracked(self: PollCounter, *args: Any, **kwargs: Any) -> None:
        counting(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(PollCounter, "__init__", tracked)
    yield
    for counter in made:
        counter._stopped.set()
        atexit.unregister(counter.close)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'feeds.db'}"


def make_settings(database_url: str, **sections: dict[str, Any]) -> Settings:
    overrides: dict[str, Any] = {"database": {"url": database_url}, "site": {"base_url": "http://feeds.test"}}
    for name, values in sections.items():
        overrides[name] = {**overrides.get(name, {}), **values}
    return load_settings(overrides=overrides, environ={})


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return make_settings(sqlite_url, api={"token": "s3cret"})


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["feeds"].store.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def store(app: Flask) -> Store:
    return app.extensions["feeds"].store


class Runner:
    """Runs the ``feeds`` command against the test app's settings and store."""

    def __init__(self, app: Flask):
        self.app = app
        self.cli = CliRunner()

    def invoke(self, *args: str, input: str | None = None) -> Result:
        return self.cli.invoke(main, list(args), obj=self.app, input=input, catch_exceptions=False)


@pytest.fixture
def runner(app: Flask) -> Runner:
    return Runner(app)


def migrated_from(store: Store, revision: str, *later_tables: str) -> Store:
    """``store``'s database made one of ``revision`` (the tables added since dropped), closed, then opened
    and migrated again: how an upgrade finds a database that holds articles already."""
    with store.db.engine.begin() as conn:
        if revision < "0007":  # 0007 adds columns to articles, which dropping tables cannot undo: it is downgraded
            config = Config()
            config.set_main_option("script_location", str(Path(__file__).parents[1] / "feeds" / "store" / "migrations"))
            config.attributes["connection"] = conn
            command.downgrade(config, "0006")
        for table in later_tables:
            conn.execute(sa.text(f"DROP TABLE {table}"))
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision})
    store.close()
    upgraded = Store(store.url)
    upgraded.migrate()
    return upgraded


def article(**changes: Any) -> dict[str, Any]:
    """The seed article with some fields changed (a value of None removes the field)."""
    raw = {**SEED_ARTICLE, **changes}
    return {key: value for key, value in raw.items() if value is not None}


def jsonl(rows: list[Any]) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n" for row in rows)


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[[list[Any]], str]:
    def write(rows: list[Any], name: str = "input.jsonl") -> str:
        path = tmp_path / name
        path.write_text(jsonl(rows), encoding="utf-8")
        return str(path)

    return write
