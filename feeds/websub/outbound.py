"""Requests to URLs that strangers gave the hub: callbacks are untrusted (SSRF).

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
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
USER_AGENT = "feeds-websub-hub/1 (+https://www.w3.org/TR/websub/)"


class Refused(Exception):
    """The URL may not be called: its scheme, or every address its host has."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # at most the bytes asked for


def networks(allowed: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(address, strict=False) for address in allowed)


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
        return Answer(response.status, response.read(read) if read else b"")
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer: {exc!r}") from exc
    finally:
        connection.close()


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
