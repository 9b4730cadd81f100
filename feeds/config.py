"""Settings: built-in defaults, then config.toml, then a few environment variables.

The file is named by ``FEEDS_CONFIG``, else ``./config.toml`` when there is one.
Every key is declared below with its type and default; ``config.toml`` at the top
of the repository documents the same keys. An unknown key, a value of the wrong
type or an unusable value stops start-up with a ``ConfigError`` naming the key.
"""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
import socket
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from feeds.errors import ConfigError


@dataclass(frozen=True)
class SiteSettings:
    title: str = "融易新闻"
    link: str = "https://news.example.cn/"
    base_url: str = ""  # "": where feeds serve listens (Settings.base_url)
    timezone: str = "Asia/Shanghai"
    language: str = "zh-CN"
    guid_prefix: str = "tag:news.example.cn,2024:article:"
    icon: str = ""  # a square icon's URL (at least 144 px): RSS <image>, Atom <icon>, JSON Feed icon, the pages' icon
    logo: str = ""  # a wide logo's URL (twice as wide as tall): Atom <logo>, Feedly's webfeeds:logo


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///feeds.db"


@dataclass(frozen=True)
class FeedSettings:
    default_limit: int = 20
    max_limit: int = 100
    max_age: int = 300
    summary_length: int = 120


@dataclass(frozen=True)
class SlugSettings:
    categories: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    authors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelSettings:
    index_tags: int = 30
    index_authors: int = 30
    opml: bool = False


@dataclass(frozen=True)
class HotSettings:
    size: int = 10
    windows: dict[str, int] = field(default_factory=lambda: {"daily": 24, "weekly": 168})


@dataclass(frozen=True)
class ApiSettings:
    token: str = ""
    max_body_bytes: int = 5_000_000
    max_articles: int = 500
    max_title_chars: int = 500
    max_summary_chars: int = 5_000
    max_content_chars: int = 500_000


@dataclass(frozen=True)
class CacheSettings:
    url: str = ""
    ttl: int = 86_400
    hot_ttl: int = 60
    retry_after: int = 5
    recheck_seconds: int = 1


@dataclass(frozen=True)
class WebSubSettings:
    hubs: list[str] = field(default_factory=list)
    hub: bool = True
    lease_seconds: int = 864_000
    min_lease_seconds: int = 3_600
    max_lease_seconds: int = 2_592_000
    retry_seconds: int = 86_400
    allow_callbacks: list[str] = field(default_factory=list)
    max_subscriptions: int = 100_000
    max_per_host: int = 1_000
    concurrency: int = 16
    timeout: int = 5


@dataclass(frozen=True)
class StatsSettings:
    flush_seconds: int = 60
    retention_days: int = 90


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    threads: int = 1
    proxies: int = 0  # proxies in front that set X-Forwarded-For/-Proto/-Host, each appending its own hop
    header_timeout: int = 10  # seconds a request head may take to arrive, and a kept-alive connection may idle
    max_head_bytes: int = 65_536  # a request head larger than this is answered 431
    tls_certificate: str = ""  # PEM files: with both set, feeds serve speaks HTTPS (and HTTP/2) itself
    tls_key: str = ""


@dataclass(frozen=True)
class CorsSettings:
    allow_origins: list[str] = field(default_factory=lambda: ["*"])


@dataclass(frozen=True)
class EmbedSettings:
    link_target: str = "_blank"
    frame_ancestors: list[str] = field(default_factory=lambda: ["*"])
    refresh_seconds: int = 300


@dataclass(frozen=True)
class MetricsSettings:
    allow: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])


@dataclass(frozen=True)
class RobotsSettings:
    lines: list[str] = field(default_factory=list)  # added to /robots.txt as they are


@dataclass(frozen=True)
class IndexNowSettings:
    key: str = ""  # "": off
    endpoint: str = "https://api.indexnow.org/indexnow"


@dataclass(frozen=True)
class BaiduSettings:
    site: str = ""  # as registered with Baidu, e.g. "https://news.example.cn"
    token: str = ""  # "": off
    endpoint: str = "http://data.zz.baidu.com"


@dataclass(frozen=True)
class PushSettings:
    timeout: int = 10  # seconds a push to a search engine may take
    retry_seconds: int = 86_400  # a URL that keeps failing is given up after this long


@dataclass(frozen=True)
class PartnerSettings:
    keys: list[str] = field(default_factory=list)  # each at least 16 characters; two while one is being replaced
    profile: str = ""  # whose published rules the partner's feeds are checked against: msn, flipboard, smartnews, "" for none
    content: str = "full"  # or "summary": the items without their text
    limit: int = 50  # items a feed holds, and the most ?limit= may ask (up to 500)
    feeds: list[str] = field(default_factory=list)  # the feed paths it may read ("all", "category/redian"); empty: all


PARTNER_PROFILES = ("", "msn", "flipboard", "smartnews")
MIN_PARTNER_KEY = 16
MAX_PARTNER_LIMIT = 500


@dataclass(frozen=True)
class Settings:
    site: SiteSettings = field(default_factory=SiteSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    feeds: FeedSettings = field(default_factory=FeedSettings)
    slugs: SlugSettings = field(default_factory=SlugSettings)
    labels: LabelSettings = field(default_factory=LabelSettings)
    hot: HotSettings = field(default_factory=HotSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    websub: WebSubSettings = field(default_factory=WebSubSettings)
    stats: StatsSettings = field(default_factory=StatsSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    cors: CorsSettings = field(default_factory=CorsSettings)
    embed: EmbedSettings = field(default_factory=EmbedSettings)
    robots: RobotsSettings = field(default_factory=RobotsSettings)
    indexnow: IndexNowSettings = field(default_factory=IndexNowSettings)
    baidu: BaiduSettings = field(default_factory=BaiduSettings)
    push: PushSettings = field(default_factory=PushSettings)
    partners: dict[str, PartnerSettings] = field(default_factory=dict)

    @property
    def push_engines(self) -> tuple[str, ...]:
        """The search engines articles are pushed to: those with a key or token set."""
        return ("indexnow",) * bool(self.indexnow.key) + ("baidu",) * bool(self.baidu.token)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.site.timezone)

    @functools.cached_property  # asked for by every render; the machine's name is a lookup
    def base_url(self) -> str:
        """Where the feeds are reached from outside, without a trailing slash: ``site.base_url``, or when
        that is not set, the address ``feeds serve`` listens on (``server.host`` and ``server.port``)."""
        if self.site.base_url:
            return self.site.base_url.rstrip("/")
        server = self.server
        host = socket.getfqdn() if server.host in WILDCARD_HOSTS else server.host
        return f"{'https' if server.tls_certificate else 'http'}://{f'[{host}]' if ':' in host else host}:{server.port}"

WILDCARD_HOSTS = ("", "0.0.0.0", "::")  # every address of the machine: none of them names it to a reader


ENVIRONMENT = {
    "FEEDS_DATABASE_URL": ("database", "url"),
    "FEEDS_BASE_URL": ("site", "base_url"),
    "FEEDS_API_TOKEN": ("api", "token"),
    "FEEDS_CACHE_URL": ("cache", "url"),
}


def load_settings(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the settings. ``overrides`` (nested like the file) win over the file,
    and the environment wins over both."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    config_file = _config_file(path, environ)
    if config_file is not None:
        try:
            raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_file}: cannot read: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: not valid TOML: {exc}") from exc
    for section, values in (overrides or {}).items():
        if isinstance(values, Mapping) and isinstance(raw.get(section), dict):
            raw[section] = {**raw[section], **values}
        else:
            raw[section] = values
    for variable, (section, key) in ENVIRONMENT.items():
        if variable in environ:
            raw.setdefault(section, {})[key] = environ[variable]
    settings = _build(Settings, raw, "")
    _check(settings)
    return settings


def _config_file(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    if path is not None:
        return Path(path)
    if environ.get("FEEDS_CONFIG"):
        return Path(environ["FEEDS_CONFIG"])
    local = Path("config.toml")
    return local if local.is_file() else None


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a table, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{prefix}{key}: unknown key (known here: {known})")
    values = {}
    for name in fields:
        if name not in raw:
            continue
        hint = hints[name]
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw[name], key + ".")
        else:
            values[name] = _coerce(hint, raw[name], key)
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if typing.get_origin(hint) is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(item_type, item, f"{key}[{index}]") for index, item in enumerate(value)]
    if typing.get_origin(hint) is dict:
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return {_coerce(key_type, k, key): _coerce(value_type, v, f"{key}.{k}") for k, v in value.items()}
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            value = value.lower() in ("true", "1")
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported setting type {hint!r} for {key}")


def _check(settings: Settings) -> None:
    for key, url in (("site.link", settings.site.link), ("site.base_url", settings.site.base_url)):
        if key == "site.base_url" and not url:
            continue  # where feeds serve listens
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{key}: expected an http(s) URL, got {url!r}")
    try:
        ZoneInfo(settings.site.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"site.timezone: unknown timezone {settings.site.timezone!r}") from exc
    if "://" not in settings.database.url:
        raise ConfigError(f"database.url: expected a SQLAlchemy URL, got {settings.database.url!r}")
    optional = ("baidu.site", "site.icon", "site.logo")
    for key, url in (("indexnow.endpoint", settings.indexnow.endpoint), ("baidu.endpoint", settings.baidu.endpoint),
                     ("baidu.site", settings.baidu.site), ("site.icon", settings.site.icon), ("site.logo", settings.site.logo)):
        parts = urlsplit(url)
        if (url or key not in optional) and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise ConfigError(f"{key}: expected an http(s) URL, got {url!r}")
    if settings.indexnow.key and not re.fullmatch(r"[A-Za-z0-9-]{8,128}", settings.indexnow.key):
        raise ConfigError("indexnow.key: expected 8 to 128 characters of a-z, A-Z, 0-9 and '-'")
    if settings.baidu.token and not settings.baidu.site:
        raise ConfigError("baidu.site: set it to the site as registered with Baidu (e.g. https://news.example.cn) to push to Baidu")
    seen_keys: set[str] = set()
    for name, partner in settings.partners.items():
        where = f"partners.{name}"
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", name):
            raise ConfigError(f"{where}: a partner's name is lower-case letters, digits and '-' (it names its statistics)")
        if not partner.keys:
            raise ConfigError(f"{where}.keys: give the partner a key (at least {MIN_PARTNER_KEY} characters)")
        for index, key in enumerate(partner.keys):
            if len(key) < MIN_PARTNER_KEY or not re.fullmatch(r"[A-Za-z0-9_-]+", key):
                raise ConfigError(f"{where}.keys[{index}]: at least {MIN_PARTNER_KEY} characters of A-Z, a-z, 0-9, '_' and '-'")
            if key in seen_keys:
                raise ConfigError(f"{where}.keys[{index}]: the same key is given to another partner (or twice)")
            seen_keys.add(key)
        if partner.profile not in PARTNER_PROFILES:
            raise ConfigError(f"{where}.profile: expected one of msn, flipboard, smartnews or \"\", got {partner.profile!r}")
        if partner.content not in ("full", "summary"):
            raise ConfigError(f"{where}.content: expected \"full\" or \"summary\", got {partner.content!r}")
        if not 1 <= partner.limit <= MAX_PARTNER_LIMIT:
            raise ConfigError(f"{where}.limit: must lie between 1 and {MAX_PARTNER_LIMIT}, got {partner.limit}")
    for index, line in enumerate(settings.robots.lines):
        if "\n" in line or "\r" in line:
            raise ConfigError(f"robots.lines[{index}]: one line each, without line breaks")
    for index, hub in enumerate(settings.websub.hubs):
        parts = urlsplit(hub)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"websub.hubs[{index}]: expected an http(s) URL, got {hub!r}")
    for key, networks in (("metrics.allow", settings.metrics.allow), ("websub.allow_callbacks", settings.websub.allow_callbacks)):
        for index, address in enumerate(networks):
            try:
                ipaddress.ip_network(address, strict=False)
            except ValueError as exc:
                raise ConfigError(f"{key}[{index}]: expected an IP address or network, got {address!r}") from exc
    for index, origin in enumerate(settings.cors.allow_origins):
        parts = urlsplit(origin)
        if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query):
            raise ConfigError(f"cors.allow_origins[{index}]: expected * or an origin such as https://news.example.cn, got {origin!r}")
    if settings.embed.link_target not in ("_blank", "_top"):
        raise ConfigError(f"embed.link_target: expected \"_blank\" or \"_top\", got {settings.embed.link_target!r}")
    for index, source in enumerate(settings.embed.frame_ancestors):
        if not source or any(c.isspace() or c in ";," for c in source):
            raise ConfigError(f"embed.frame_ancestors[{index}]: expected one CSP source such as * or https://news.example.cn, got {source!r}")
    if settings.cache.url and urlsplit(settings.cache.url).scheme not in ("redis", "rediss", "memory"):
        raise ConfigError(f"cache.url: expected redis://, rediss:// or memory://, got {settings.cache.url!r}")
    positive = {
        "feeds.default_limit": settings.feeds.default_limit,
        "feeds.max_limit": settings.feeds.max_limit,
        "feeds.summary_length": settings.feeds.summary_length,
        "hot.size": settings.hot.size,
        "api.max_body_bytes": settings.api.max_body_bytes,
        "api.max_articles": settings.api.max_articles,
        "server.port": settings.server.port,
        "server.workers": settings.server.workers,
        "server.threads": settings.server.threads,
        "cache.ttl": settings.cache.ttl,
        "cache.hot_ttl": settings.cache.hot_ttl,
        "stats.flush_seconds": settings.stats.flush_seconds,
        "stats.retention_days": settings.stats.retention_days,
        "cache.retry_after": settings.cache.retry_after,
        "websub.min_lease_seconds": settings.websub.min_lease_seconds,
        "websub.retry_seconds": settings.websub.retry_seconds,
        "websub.max_subscriptions": settings.websub.max_subscriptions,
        "websub.max_per_host": settings.websub.max_per_host,
        "websub.concurrency": settings.websub.concurrency,
        "websub.timeout": settings.websub.timeout,
        "embed.refresh_seconds": settings.embed.refresh_seconds,
        "push.timeout": settings.push.timeout,
        "push.retry_seconds": settings.push.retry_seconds,
        **{f"hot.windows.{name}": hours for name, hours in settings.hot.windows.items()},
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")
    if settings.cache.recheck_seconds < 0:
        raise ConfigError(f"cache.recheck_seconds: must not be negative, got {settings.cache.recheck_seconds}")
    if not 1 <= settings.server.header_timeout <= 60:
        raise ConfigError(f"server.header_timeout: must lie between 1 and 60 seconds, got {settings.server.header_timeout}")
    if settings.server.max_head_bytes < 8192:
        raise ConfigError(f"server.max_head_bytes: must be at least 8192, got {settings.server.max_head_bytes}")
    if bool(settings.server.tls_certificate) != bool(settings.server.tls_key):
        raise ConfigError("server.tls_certificate and server.tls_key: set both (HTTPS) or neither (HTTP)")
    for key, pem in (("server.tls_certificate", settings.server.tls_certificate), ("server.tls_key", settings.server.tls_key)):
        if pem and not Path(pem).is_file():
            raise ConfigError(f"{key}: no such file: {pem!r}")
    if settings.server.proxies < 0:
        raise ConfigError(f"server.proxies: must not be negative, got {settings.server.proxies}")
    if settings.feeds.max_age < 0:
        raise ConfigError(f"feeds.max_age: must not be negative, got {settings.feeds.max_age}")
    websub = settings.websub
    if not websub.min_lease_seconds <= websub.lease_seconds <= websub.max_lease_seconds:
        raise ConfigError("websub.lease_seconds: must lie between websub.min_lease_seconds and websub.max_lease_seconds")
    if settings.feeds.default_limit > settings.feeds.max_limit:
        raise ConfigError("feeds.default_limit: must not exceed feeds.max_limit")
    for name in settings.hot.windows:
        if not name.isascii() or not name.replace("-", "").isalnum():
            raise ConfigError(f"hot.windows.{name}: window names are used in URLs; use ASCII letters, digits, '-'")
