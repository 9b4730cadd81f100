"""`feeds import`: line-numbered errors, counts, exit status, idempotence, batches."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from feeds.ingest import import_articles
from tests.conftest import article, jsonl


def test_import_reports_each_rejected_line_and_keeps_the_good_ones(runner, store, write_jsonl):
    rows = [
        article(id="good-1"),
        article(id="bad-title", title="   "),
        "{not json",
        "",
        article(id="bad-date", published="not a date"),
        article(id="good-2", url="https://news.example.cn/2.html"),
        article(id="bad-many", url="ftp://x", title=None, tags=5),
        ["an", "array"],
    ]
    result = runner.invoke("import", write_jsonl(rows))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "line 2: title is empty",
        "line 3: not valid JSON: Expecting property name enclosed in double quotes at column 2",
        'line 5: published: cannot read "not a date"',
        'line 7: url: expected an absolute http(s) URL, got "ftp://x"; title is missing; tags: expected a string or a list of strings',
        "line 8: expected a JSON object, got an array",
    ]
    assert result.stdout.strip() == "2 new, 0 updated, 0 unchanged, 5 rejected"
    assert store.articles.known_ids({"good-1", "good-2", "bad-title", "bad-date"}) == {"good-1", "good-2"}


def test_reimport_changes_nothing_and_exits_zero(runner, store, write_jsonl):
    path = write_jsonl([article(id=str(n), url=f"https://news.example.cn/{n}.html") for n in range(5)])
    first = runner.invoke("import", path)
    assert first.exit_code == 0 and first.stdout.strip() == "5 new, 0 updated, 0 unchanged, 0 rejected"
    second = runner.invoke("import", path)
    assert second.exit_code == 0 and second.stdout.strip() == "0 new, 0 updated, 5 unchanged, 0 rejected"
    assert store.articles.count() == 5


def test_an_edited_line_is_an_update(runner, write_jsonl, client):
    runner.invoke("import", write_jsonl([article()]))
    guid_before = client.get("/feeds/all.json").json["items"][0]["id"]
    result = runner.invoke("import", write_jsonl([article(title="新标题")], "edited.jsonl"))
    assert result.stdout.strip() == "0 new, 1 updated, 0 unchanged, 0 rejected"
    item = client.get("/feeds/all.json").json["items"][0]
    assert item["id"] == guid_before and item["title"] == "新标题"


def test_import_from_stdin(runner, store):
    result = runner.invoke("import", "-", input=jsonl([article()]))
    assert result.exit_code == 0 and store.articles.count() == 1


def test_unknown_fields_are_named(runner, write_jsonl):
    result = runner.invoke("import", write_jsonl([article(publised="2024-01-01")]))
    assert result.exit_code == 1
    assert result.stderr.startswith("line 1: publised: unknown field")


def test_every_batch_is_its_own_transaction(store, settings):
    lines = jsonl([article(id=str(n), url=f"https://news.example.cn/{n}.html") for n in range(7)]).splitlines()
    batches = []
    original = store.articles.upsert
    store.articles.upsert = lambda batch, now=None: batches.append(len(batch)) or original(batch, now)
    report = import_articles(store, settings, lines, batch_size=3)
    assert batches == [3, 3, 1] and report.created == 7


def test_a_killed_import_leaves_a_consistent_database_and_a_rerun_completes_it(tmp_path):
    database = tmp_path / "kill.db"
    path = tmp_path / "many.jsonl"
    path.write_text(jsonl([article(id=f"k{n}", url=f"https://news.example.cn/{n}.html", content="<p>正文。</p>" * 200)
                           for n in range(3000)]), encoding="utf-8")
    env = {**os.environ, "FEEDS_DATABASE_URL": f"sqlite:///{database}", "FEEDS_CONFIG": os.devnull}
    command = [sys.executable, "-m", "feeds", "import", str(path)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it once some batches are in, mid-way
        if database.exists() and _count(database) >= 500:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    connection = sqlite3.connect(database)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = connection.execute("SELECT count(*) FROM articles").fetchone()[0]
    connection.close()
    assert 0 < stored < 3000 and stored % 500 == 0  # whole batches only
    rerun = subprocess.run(command, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip() == f"{3000 - stored} new, 0 updated, {stored} unchanged, 0 rejected"
    assert _count(database) == 3000


def _count(database) -> int:
    try:
        connection = sqlite3.connect(database)
        try:
            return connection.execute("SELECT count(*) FROM articles").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.OperationalError:
        return 0


def test_python_dash_m_feeds():
    result = subprocess.run([sys.executable, "-m", "feeds", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("import", "views", "serve"):
        assert command in result.stdout
