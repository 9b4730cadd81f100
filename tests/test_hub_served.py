"""The WebSub hub as deployed: `feeds serve` (granian workers), subscribed to by Flask-WebSub's subscriber
(a maintained implementation this project did not write), through a restart and a SIGKILL with
deliveries owed, and as two instances on one PostgreSQL that deliver each change once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import feedparser
import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import POSTGRES_URL, article, free_port, reset_postgres
from tests.test_hub import Subscribers
from tests.test_serve import wait_until_up

TOKEN = "s3cret"


class Served:
    """One `feeds serve` instance, started and stopped at will."""

    def __init__(self, folder: Path, database_url: str, port: int | None = None, workers: int = 2):
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        config = folder / f"config-{self.port}.toml"
        config.write_text(
            f'[api]\ntoken = "{TOKEN}"\n[websub]\nallow_callbacks = ["127.0.0.1/32"]\ntimeout = 1\nconcurrency = 4\n'
            f"min_lease_seconds = 60\n", encoding="utf-8")
        self.env = {**os.environ, "FEEDS_DATABASE_URL": database_url, "FEEDS_BASE_URL": self.base, "FEEDS_CONFIG": str(config)}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Served:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "feeds", "serve", "--port", str(self.port), "--workers", str(self.workers)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until_up(f"{self.base}/healthz", self.process)
        return self

    def kill(self) -> None:
        """SIGKILL the server and every worker, mid-work (the workers are each in a process group of their own)."""
        assert self.process is not None
        workers = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout.split()
        os.killpg(self.process.pid, signal.SIGKILL)
        for worker in workers:
            try:
                os.kill(int(worker), signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def post(self, path: str, body: Any) -> int:
        request = urllib.request.Request(f"{self.base}{path}", data=json.dumps(body, ensure_ascii=False).encode(),
                                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status

    def subscribe(self, callback: str, topic: str) -> int:
        form = urllib.parse.urlencode({"hub.mode": "subscribe", "hub.topic": topic, "hub.callback": callback}).encode()
        with urllib.request.urlopen(f"{self.base}/hub", data=form, timeout=10) as response:
            return response.status

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.base}{path}", timeout=10) as response:
            return response.read()


def eventually(check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.05)


@pytest.fixture
def subscribers() -> Iterator[Subscribers]:
    found = Subscribers()
    yield found
    found.close()


def test_flask_websub_subscribes_receives_and_unsubscribes(tmp_path):
    from flask_websub.subscriber import SQLite3SubscriberStorage, SQLite3TempSubscriberStorage, Subscriber, discover

    served = Served(tmp_path, f"sqlite:///{tmp_path / 'feeds.db'}").start()
    try:
        assert served.post("/api/articles", article()) == 201
        port = free_port()
        app = Flask("reader")
        app.config["SERVER_NAME"] = f"127.0.0.1:{port}"
        subscriber = Subscriber(SQLite3SubscriberStorage(str(tmp_path / "subs.db")),
                                SQLite3TempSubscriberStorage(str(tmp_path / "temp.db")))
        app.register_blueprint(subscriber.build_blueprint(url_prefix="/callbacks"))
        received: list[tuple[str, bytes]] = []
        confirmed: list[tuple[str, str]] = []
        subscriber.add_listener(lambda topic, callback_id, body: received.append((topic, body)))
        subscriber.add_success_handler(lambda topic, callback_id, mode: confirmed.append((topic, mode)))
        reader = make_server("127.0.0.1", port, app, threaded=True)
        threading.Thread(target=reader.serve_forever, daemon=True).start()
        try:
            found = discover(f"{served.base}/feeds/category/redian.atom")
            assert found == {"hub_url": f"{served.base}/hub", "topic_url": f"{served.base}/feeds/category/redian.atom"}
            with app.app_context():
                callback_id = subscriber.subscribe(lease_seconds=3600, **found)
            eventually(lambda: confirmed == [(found["topic_url"], "subscribe")])

            began = time.monotonic()
            assert served.post("/api/articles", article(id="2", url="https://news.example.cn/2.html", title="推送来的新闻")) == 201
            eventually(lambda: len(received) == 1)
            assert time.monotonic() - began < 5
            topic, body = received[0]
            assert topic == found["topic_url"] and body == served.get("/feeds/category/redian.atom")
            assert feedparser.parse(body).entries[0].title == "推送来的新闻"

            with app.app_context():
                subscriber.unsubscribe(callback_id)
            eventually(lambda: (found["topic_url"], "unsubscribe") in confirmed)
            served.post("/api/articles", article(id="3", url="https://news.example.cn/3.html", title="没人收到"))
            time.sleep(2)
            assert len(received) == 1
        finally:
            reader.shutdown()
    finally:
        served.stop()


def test_deliveries_owed_survive_a_restart_and_a_sigkill(tmp_path, subscribers):
    served = Served(tmp_path, f"sqlite:///{tmp_path / 'feeds.db'}").start()
    try:
        served.post("/api/articles", article())
        assert served.subscribe(f"{subscribers.url}/reader", f"{served.base}/feeds/all.rss") == 202
        eventually(lambda: len(subscribers["reader"].verifications) == 1)
        time.sleep(0.5)  # the confirmation is stored

        subscribers["reader"].status = 503  # the reader is down: the delivery is owed
        served.post("/api/articles", article(id="2", url="https://news.example.cn/2.html", title="重启前"))
        eventually(lambda: len(subscribers["reader"].deliveries) >= 1)
        served.stop()  # SIGTERM, owing it
        subscribers["reader"].status = 200
        served.start()
        eventually(lambda: any("重启前" in body.decode() for _, body in subscribers["reader"].deliveries[1:]), 30)

        subscribers["reader"].status = 503
        served.post("/api/articles", article(id="3", url="https://news.example.cn/3.html", title="杀掉前"))
        count = len(subscribers["reader"].deliveries)
        eventually(lambda: len(subscribers["reader"].deliveries) > count)
        served.kill()  # SIGKILL, owing it, perhaps mid-delivery
        subscribers["reader"].status = 200
        served.start()
        eventually(lambda: "杀掉前" in subscribers["reader"].deliveries[-1][1].decode()
                   and subscribers["reader"].status == 200, 40)
        assert subscribers["reader"].deliveries[-1][1] == served.get("/feeds/all.rss")
    finally:
        served.stop()


@pytest.mark.skipif(not POSTGRES_URL, reason="FEEDS_TEST_DATABASE_URL is not set; two instances need PostgreSQL")
def test_two_instances_on_postgresql_deliver_each_change_once(tmp_path, subscribers):
    reset_postgres(POSTGRES_URL)
    port = free_port()
    first = Served(tmp_path, POSTGRES_URL, port=port).start()
    # The second instance answers at its own port but publishes the same site: one base URL for both.
    second = Served(tmp_path, POSTGRES_URL)
    second.env["FEEDS_BASE_URL"] = first.base
    second.start()
    try:
        first.post("/api/articles", article())
        names = [f"r{n}" for n in range(20)]
        for n, name in enumerate(names):
            target = first if n % 2 else second
            assert target.subscribe(f"{subscribers.url}/{name}", f"{first.base}/feeds/all.json") == 202
        eventually(lambda: all(subscribers[name].verifications for name in names))
        time.sleep(1)
        for name in names:  # slow readers: a round of deliveries lasts seconds, while the other instance looks for work
            subscribers[name].delay = 0.5
        for n in range(5):
            (first if n % 2 else second).post("/api/articles", article(id=f"x{n}", url=f"https://news.example.cn/x{n}.html",
                                                                         title=f"第{n}条"))
            time.sleep(0.3)
        eventually(lambda: all("第4条" in subscribers[name].deliveries[-1][1].decode()
                               for name in names if subscribers[name].deliveries), 30)
        eventually(lambda: all(subscribers[name].deliveries for name in names))
        time.sleep(2)
        for name in names:
            bodies = [body for _, body in subscribers[name].deliveries]
            assert len(bodies) == len(set(bodies)), f"{name} got the same bytes twice"
            assert len(bodies) <= 5
    finally:
        first.stop()
        second.stop()
        reset_postgres(POSTGRES_URL)
