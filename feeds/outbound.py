"""Requests to other servers, and when to try one again: the hub's callbacks, which strangers gave it
and which are untrusted (SSRF), and the endpoints in the config (other hubs, the search engines of
``feeds.reach``), which are trusted and may be anywhere (``ANYWHERE``).

One retry policy serves every push of the outbox (``Policy``): 429, 5xx and no answer are tried
again after 2, 4, 8… seconds (an hour at most, or the far end's Retry-After when longer) until
the channel's give-up time has passed since the first failure; any other 4xx is given up at once;
a push given up is logged.

A callback may name any host, and a host may resolve to anything, now or a second later
(DNS rebinding). So the address is checked where it is used: the host is resolved once,
every address is judged (loopback, private, link-local such as 169.254.169.254, multicast,
reserved and other non-global ranges are refused, unless ``websub.allow_callbacks`` names
them), and the connection goes to that very address, with the URL's host name only in
the Host header and for TLS. Redirects are never followed, and a response is read only as
far as it needs to be.
"""
from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from feeds.store.outbox import Pushed, Queued

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
USER_AGENT = "feeds-websub-hub/1 (+https://www.w3.org/TR/websub/)"
log = logging.getLogger("feeds.outbox")


class Refused(Exception):
    """The URL may not be called: its scheme, or every address its host has."""


LONGEST_PAUSE = 3600  # seconds: the longest wait before a failed request is tried again


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # at most the bytes asked for
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next try of something that failed ``attempts`` times before this one: 2, 4, 8…,
    an hour at most, or what the server's Retry-After asks when that is longer."""
    return max(retry_after or 0.0, float(min(2 ** (attempts + 1), LONGEST_PAUSE)))


def retry_after(answer: Answer) -> float | None:
    """The seconds an answer's Retry-After asks for (a number, or an HTTP date), if it has one."""
    value = answer.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()) if value else None
    except (TypeError, ValueError):
        return None


class Policy:
    """What a failed push becomes: tried again later, or given up once it has failed for ``give_up_after`` seconds."""

    def __init__(self, give_up_after: float):
        self.give_up_after = give_up_after

    def failed(self, item: Queued, now: datetime, what: str, error: str, wait: float | None = None, final: bool = False) -> Pushed:
        """``item``'s fate after ``error``: ``what`` names it in the log line of one given up."""
        now = max(now, datetime.now(timezone.utc))  # ``now`` is when the batch was claimed: the pause starts at the failure
        first = item.failing_since or now
        if final or (now - first).total_seconds() >= self.give_up_after:
            log.warning("%s: gave up %s after %d attempts: %s", item.channel, what, item.attempts + 1, error)
            return Pushed(item, "given_up", error=error)
        return Pushed(item, "failed", now + timedelta(seconds=backoff(item.attempts, wait)), error=error)

    def answered(self, items: Sequence[Queued], answer: Answer | Exception, now: datetime, what: str) -> list[Pushed] | None:
        """The fate of ``items`` when a request for them failed; None when it succeeded (2xx)."""
        if isinstance(answer, Exception):
            return [self.failed(item, now, f"telling {what} of {item.subject}", f"{what}: {answer}") for item in items]
        if 200 <= answer.status < 300:
            return None
        error = f"{what}: HTTP {answer.status} {answer.body[:300].decode('utf-8', 'replace')}".strip()
        return [self.failed(item, now, f"telling {what} of {item.subject}", error, retry_after(answer), self.final(answer.status))
                for item in items]

    @staticmethod
    def final(status: int) -> bool:
        """Whether a failed answer's status means no other try will do better: a 4xx but 429 (Too Many Requests)."""
        return 400 <= status < 500 and status != 429


def networks(allowed: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(address, strict=False) for address in allowed)


ANYWHERE = networks(["0.0.0.0/0", "::/0"])  # for the endpoints in the config, not given by strangers


def callable_address(address: str, allowed: Sequence[Network]) -> bool:
    """Whether a request may go to the IP ``address``: a global unicast address, or one ``allowed``."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed):
        return True
    return ip.is_global and not ip.is_multicast


def check_url(url: str, allowed: Sequence[Network]) -> None:
    """Refuse, before any lookup, what can never be called: another scheme, no host, or an
    address literal that is not callable."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("the callback must be an http or https URL")
    try:
        if parts.port == 0:  # one out of range raises
            raise ValueError("port 0")
        parts.hostname.encode("idna")
    except (ValueError, UnicodeError) as exc:
        raise Refused(f"the callback's address cannot be called: {exc}") from None
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        return  # a name: judged by the addresses it has when it is called
    if not callable_address(parts.hostname, allowed):
        raise Refused(f"the callback's address {parts.hostname} is not public")


def request(method: str, url: str, allowed: Sequence[Network], timeout: float, body: bytes | None = None,
            headers: dict[str, str] | None = None, read: int = 0) -> Answer:
    """Send one request to ``url`` at an address checked as it is connected to; read at most ``read``
    bytes of the answer. Raise ``Refused``, or ``OSError`` when no answer comes."""
    check_url(url, allowed)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [info[4][0] for info in found if callable_address(str(info[4][0]), allowed)]
    if not addresses:
        raise Refused(f"{host} has no public address")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = _PinnedHTTPS(host, port, addresses[0], timeout)
    else:
        connection = _PinnedHTTP(host, port, addresses[0], timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(method, target, body=body, headers={"User-Agent": USER_AGENT, **(headers or {})})
        response = connection.getresponse()
        return Answer(response.status, response.read(read) if read else b"",
                      {name.lower(): value for name, value in response.getheaders()})
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer: {exc!r}") from exc
    finally:
        connection.close()


def post(url: str, body: bytes, content_type: str, timeout: float, read: int = 0, user_agent: str = USER_AGENT) -> Answer | OSError:
    """POST ``body`` to an endpoint of the config (trusted: anywhere); its answer, or the error when none came."""
    try:
        return request("POST", url, ANYWHERE, timeout, body=body, read=read,
                       headers={"Content-Type": content_type, "User-Agent": user_agent})
    except OSError as exc:
        return exc


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
