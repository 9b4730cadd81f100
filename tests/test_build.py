"""``feeds build OUTDIR``: the whole site as static files, byte for byte what the service serves,
and an nginx in front of them that answers with the service's headers."""
from __future__ import annotations

import gzip
import http.client
import socket
import subprocess
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from feeds import create_app
from tests.conftest import Runner, article, debian_tool, free_port, make_settings

AUTH = {"Authorization": "Bearer s3cret"}
COMPARED = ("Content-Type", "ETag", "Last-Modified", "Cache-Control")

# The README's nginx configuration, with {root}, {etags} and {port} to fill in.
NGINX_SITE = """
map_hash_bucket_size 256;  # room for long paths
map $uri $feeds_etag {{
    volatile;  # `index` changes $uri from / to /index.html: look again
    include {etags};
}}
map $http_accept_encoding $feeds_encoding {{
    default "";
    "~*gzip" "-gzip";
}}
server {{
    listen 127.0.0.1:{port};
    root {root};
    index index.html;
    types {{
        application/rss+xml   rss;
        application/atom+xml  atom;
        application/feed+json json;
        text/x-opml           opml;
        text/html             html;
        text/css              css;
        text/javascript       js;
        image/svg+xml         svg;
        text/plain            txt;
        application/xml       xml;
    }}
    charset utf-8;
    charset_types application/rss+xml application/atom+xml application/feed+json text/x-opml text/plain application/xml;
    gzip_static on;
    gzip_vary on;
    etag off;  # nginx's own ETag is mtime-size; the service's is a hash of the body

    location / {{
        if ($http_if_none_match = '"$feeds_etag$feeds_encoding"') {{ return 304; }}
        add_header ETag '"$feeds_etag$feeds_encoding"';
        add_header Cache-Control "public, max-age=300";
    }}
    location /feeds/archive/ {{
        if ($http_if_none_match = '"$feeds_etag$feeds_encoding"') {{ return 304; }}
        add_header ETag '"$feeds_etag$feeds_encoding"';
        add_header Cache-Control "public, max-age=86400";
    }}
    location ~ ^/(index\\.html|feeds\\.opml|robots\\.txt|sitemaps/news\\.xml)$ {{  # undated documents: no Last-Modified
        if ($http_if_none_match = '"$feeds_etag$feeds_encoding"') {{ return 304; }}
        if_modified_since off;
        add_header ETag '"$feeds_etag$feeds_encoding"';
        add_header Cache-Control "public, max-age=300";
        add_header Last-Modified "";
    }}
    location /static/ {{
        etag on;
    }}
}}
"""


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    app = create_app(make_settings(database_url, api={"token": "s3cret"}, feeds={"default_limit": 2}))
    app.config["TESTING"] = True
    yield app
    app.extensions["feeds"].store.close()


@pytest.fixture
def built(client: FlaskClient, runner: Runner, tmp_path: Path) -> Path:
    rows = [
        article(id=f"b{n}", url=f"https://news.example.cn/{n}.html", title=f"第{n}篇", published=f"2024-04-0{n} 08:00:00",
                category=["热点", "国内"] if n % 2 else ["财经"], source="新华社" if n < 4 else "互联网")
        for n in range(1, 6)
    ]
    assert client.post("/api/articles", json=rows, headers=AUTH).status_code == 201
    result = runner.invoke("build", str(tmp_path / "site"), "--etags", str(tmp_path / "etags.map"))
    assert result.exit_code == 0, result.output
    return tmp_path / "site"


def written(site: Path) -> list[str]:
    return sorted("/" + path.relative_to(site).as_posix() for path in site.rglob("*") if path.is_file() and path.suffix != ".gz")


def url_of(path: str) -> str:
    return "/" if path == "/index.html" else path


def test_every_file_is_what_the_service_serves(client: FlaskClient, built: Path) -> None:
    files = written(built)
    for expected in ("/index.html", "/feeds.opml", "/feeds/all.rss", "/feeds/all.html", "/feeds/category/redian/guonei.rss",
                     "/feeds/source/xinhuashe.json", "/feeds/hot/daily.atom", "/feeds/archive/all/2.atom",
                     "/feeds/archive/category/redian/1.rss", "/feeds/archive/source/xinhuashe/1.json", "/static/feeds.css"):
        assert expected in files
    assert "/feeds/archive/all/3.rss" not in files  # five articles: two full pages of two
    assert not any(path.startswith("/feeds/archive/hot") for path in files)
    for path in files:
        response = client.get(url_of(path), headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200, path
        body = (built / path.lstrip("/")).read_bytes()
        assert body == response.data, path
        assert gzip.decompress((built / (path.lstrip("/") + ".gz")).read_bytes()) == body, path
        if response.last_modified:
            assert (built / path.lstrip("/")).stat().st_mtime == response.last_modified.timestamp(), path


def test_gz_siblings_of_feeds_are_the_service_gzip_bytes(client: FlaskClient, built: Path) -> None:
    for path in [path for path in written(built) if path.startswith("/feeds/") and not path.endswith(".html")]:
        response = client.get(path, headers={"Accept-Encoding": "gzip"})
        assert response.headers["Content-Encoding"] == "gzip"
        assert (built / (path.lstrip("/") + ".gz")).read_bytes() == response.data, path


def test_etag_map_names_each_file_with_the_service_etag(client: FlaskClient, built: Path) -> None:
    lines = (built.parent / "etags.map").read_text(encoding="utf-8").splitlines()
    tags = dict(line.rstrip(";").split(" ", 1) for line in lines)
    assert set(tags) == {path for path in written(built) if not path.startswith("/static/")}
    for path, tag in tags.items():
        assert client.get(url_of(path)).headers["ETag"] == tag


@pytest.fixture
def nginx(built: Path, tmp_path: Path) -> Iterator[int]:
    binary = debian_tool("nginx")
    port = free_port()
    runtime = tmp_path / "nginx"
    runtime.mkdir()
    temp_paths = " ".join(f"{kind}_temp_path {runtime};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    site = NGINX_SITE.format(root=built, etags=tmp_path / "etags.map", port=port)
    (runtime / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {runtime}/nginx.pid;\nerror_log {runtime}/error.log;\n"
        f"events {{}}\nhttp {{\naccess_log off;\n{temp_paths}\n{site}\n}}\n"
    )
    process = subprocess.Popen([binary, "-p", str(runtime), "-c", str(runtime / "nginx.conf")], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _get(port: int, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def test_nginx_serves_the_build_with_the_service_headers(client: FlaskClient, built: Path, nginx: int) -> None:
    for path in written(built):
        for encoding in ("identity", "gzip"):
            want = client.get(url_of(path), headers={"Accept-Encoding": encoding})
            got = _get(nginx, url_of(path), {"Accept-Encoding": encoding})
            assert got.status == 200, path
            body = got.body  # type: ignore[attr-defined]
            if got.getheader("Content-Encoding") != want.headers.get("Content-Encoding"):
                # The service compresses feeds only; nginx also sends the .gz of pages and assets.
                assert gzip.decompress(body) == want.data, path
                continue
            assert body == want.data, (path, encoding)
            if path.startswith("/static/"):  # Flask's own static-file headers: the bytes are what counts
                continue
            for header in COMPARED:
                assert got.getheader(header) == want.headers.get(header), (path, encoding, header)
        etag = client.get(url_of(path)).headers["ETag"] if not path.startswith("/static/") else None
        if etag:
            assert _get(nginx, url_of(path), {"If-None-Match": etag}).status == 304, path
            assert _get(nginx, url_of(path), {"If-None-Match": '"other"'}).status == 200, path
    dated = client.get("/feeds/all.rss").headers["Last-Modified"]
    assert _get(nginx, "/feeds/all.rss", {"If-Modified-Since": dated}).status == 304
    assert parsedate_to_datetime(dated)
