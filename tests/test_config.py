"""Settings: defaults, config.toml, environment; bad values stop start-up naming the key."""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from feeds.config import PartnerSettings, Settings, load_settings
from feeds.errors import ConfigError

ROOT = Path(__file__).parents[1]


def test_config_toml_documents_exactly_the_defaults():
    assert load_settings(ROOT / "config.toml", environ={}) == Settings()


def test_every_key_is_in_config_toml():
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    import dataclasses

    for section in dataclasses.fields(Settings):
        assert f"[{section.name}" in text
        if section.name == "partners":  # a table per partner, none by default: its keys are shown in an example
            assert all(f"\n# {key.name} = " in text for key in dataclasses.fields(PartnerSettings))
            continue
        for key in dataclasses.fields(section.type if not isinstance(section.type, str) else getattr(Settings(), section.name)):
            assert f"\n{key.name} = " in text or f"[{section.name}.{key.name}]" in text, f"{section.name}.{key.name}"


def test_file_from_environment_and_partial_keys(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('[site]\ntitle = "测试站"\n[feeds]\nmax_limit = 50\n', encoding="utf-8")
    settings = load_settings(environ={"FEEDS_CONFIG": str(path)})
    assert settings.site.title == "测试站" and settings.feeds.max_limit == 50
    assert settings.feeds.default_limit == 20 and settings.site.timezone == "Asia/Shanghai"


def test_environment_wins(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[database]\nurl = "sqlite:///file.db"\n', encoding="utf-8")
    settings = load_settings(path, environ={"FEEDS_DATABASE_URL": "sqlite:///env.db", "FEEDS_BASE_URL": "https://feeds.example.cn",
                                            "FEEDS_API_TOKEN": "t", "FEEDS_CACHE_URL": "redis://127.0.0.1:6379/0"})
    assert settings.database.url == "sqlite:///env.db"
    assert settings.site.base_url == "https://feeds.example.cn"
    assert settings.api.token == "t" and settings.cache.url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("text, message", [
    ("[site]\ntitel = 'x'\n", "site.titel: unknown key"),
    ("[nonsense]\n", "nonsense: unknown key"),
    ("[feeds]\nmax_limit = 'many'\n", "feeds.max_limit: expected a whole number"),
    ("[feeds]\nmax_limit = true\n", "feeds.max_limit: expected a whole number"),
    ("[site]\ntitle = 5\n", "site.title: expected a string"),
    ("[site]\nbase_url = 'localhost:8000'\n", "site.base_url: expected an http(s) URL"),
    ("[server]\nheader_timeout = 0\n", "server.header_timeout: must lie between 1 and 60 seconds"),
    ("[server]\nheader_timeout = 61\n", "server.header_timeout: must lie between 1 and 60 seconds"),
    ("[server]\nmax_head_bytes = 1000\n", "server.max_head_bytes: must be at least 8192"),
    ("[server]\ntls_certificate = 'cert.pem'\n", "server.tls_certificate and server.tls_key: set both"),
    ("[server]\ntls_certificate = 'nowhere.pem'\ntls_key = 'nowhere.key'\n", "server.tls_certificate: no such file"),
    ("[site]\ntimezone = 'Mars/Olympus'\n", "site.timezone: unknown timezone"),
    ("[database]\nurl = 'feeds.db'\n", "database.url: expected a SQLAlchemy URL"),
    ("[cache]\nurl = 'memcached://x'\n", "cache.url: expected redis://"),
    ("[feeds]\ndefault_limit = 0\n", "feeds.default_limit: must be at least 1"),
    ("[feeds]\ndefault_limit = 200\n", "feeds.default_limit: must not exceed feeds.max_limit"),
    ("[hot.windows]\n'日榜' = 24\n", "hot.windows.日榜: window names are used in URLs"),
    ("[hot.windows]\ndaily = 'x'\n", "hot.windows.daily: expected a whole number"),
    ("site = 5\n", "site: expected a table"),
    ("[site\n", "not valid TOML"),
])
def test_bad_values_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(path, environ={})


def test_cli_stops_with_the_message(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "bad.toml"
    path.write_text("[site]\ntitel = 'x'\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "feeds", "--config", str(path), "import", "-"], input="", capture_output=True,
                            text=True)
    assert result.returncode != 0
    assert "site.titel: unknown key" in result.stderr


def test_an_unset_base_url_is_where_feeds_serve_listens():
    def served_at(host: str, port: int, **site: str) -> str:
        return load_settings(overrides={"server": {"host": host, "port": port}, "site": site}, environ={"FEEDS_CONFIG": os.devnull}).base_url

    settings = load_settings(environ={"FEEDS_CONFIG": os.devnull})
    assert settings.site.base_url == "" and settings.base_url == "http://127.0.0.1:8000"
    assert served_at("127.0.0.1", 8765) == "http://127.0.0.1:8765"
    assert served_at("::1", 8765) == "http://[::1]:8765"
    assert served_at("0.0.0.0", 80) == f"http://{socket.getfqdn()}:80"
    assert served_at("0.0.0.0", 8765, base_url="https://feeds.example.cn/") == "https://feeds.example.cn"
