"""Feeds and the OPML are readable by scripts on other sites (CORS), politely (validators exposed);
the API and /admin are not; and no page may be framed by another site."""
from __future__ import annotations

import pytest

from feeds import create_app
from tests.conftest import article, make_settings

PARTNER = "https://partner.example.com"
PREFLIGHT = {"Origin": PARTNER, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "if-none-match"}


@pytest.fixture
def loaded(client):
    client.post("/api/articles", json=article(), headers={"Authorization": "Bearer s3cret"})
    return client


@pytest.mark.parametrize("path", ["/feeds/all.json", "/feeds/hot/daily.rss", "/feeds/category/redian.atom", "/feeds.opml"])
def test_feeds_answer_scripts_from_any_origin(loaded, path):
    first = loaded.get(path, headers={"Origin": PARTNER})
    assert first.status_code == 200 and first.headers["Access-Control-Allow-Origin"] == "*"
    assert first.headers["Access-Control-Expose-Headers"] == "ETag, Last-Modified, Link"
    assert "Access-Control-Allow-Credentials" not in first.headers
    preflight = loaded.options(path, headers=PREFLIGHT)
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, HEAD"
    assert "if-none-match" in preflight.headers["Access-Control-Allow-Headers"].lower()
    again = loaded.get(path, headers={"Origin": PARTNER, "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("path", ["/api/articles", "/api/openapi.json", "/admin/stats", "/hub"])
def test_never_the_api_the_admin_or_the_hub(loaded, path):
    for response in (loaded.get(path, headers={"Origin": PARTNER}), loaded.options(path, headers=PREFLIGHT)):
        assert "Access-Control-Allow-Origin" not in response.headers


def test_a_list_of_origins_lets_only_those_read(sqlite_url):
    app = create_app(make_settings(sqlite_url, api={"token": "s3cret"}, cors={"allow_origins": [PARTNER]}))
    client = app.test_client()
    client.post("/api/articles", json=article(), headers={"Authorization": "Bearer s3cret"})
    allowed = client.get("/feeds/all.json", headers={"Origin": PARTNER})
    assert allowed.headers["Access-Control-Allow-Origin"] == PARTNER and "Origin" in allowed.headers.getlist("Vary")
    other = client.get("/feeds/all.json", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers and "Origin" in other.headers.getlist("Vary")
    assert "Access-Control-Allow-Methods" not in client.options("/feeds/all.json", headers={**PREFLIGHT, "Origin": "https://evil.example"}).headers
    app.extensions["feeds"].store.close()


@pytest.mark.parametrize("path", ["/", "/feeds/all.html", "/admin/stats"])
def test_no_page_may_be_framed(loaded, path):
    response = loaded.get(path, headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'" and response.headers["X-Frame-Options"] == "DENY"
