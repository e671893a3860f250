"""Push URL policy: refuse targets that are not public addresses unless allowed.

Checked twice: when a subscription is saved (a clear 422 early), and at connect time by
`PublicResolver`, which keeps only public addresses from each DNS answer, so a name that
re-resolves to 127.0.0.1 or 169.254.169.254 later (DNS rebinding) is still refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from cdrmodel.errors import Unprocessable

# NAT64 well-known prefix: the IPv4 address is in the last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # local-use (RFC 8215): never public
_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible (`::a.b.c.d`)


def _embedded(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo
    server and client), [] for none; None for a local-use NAT64 address (refused whatever it
    holds). Python 3.11 before 3.11.10 calls some of these forms global (CVE-2024-4032), so
    `is_global` on the IPv6 address alone is not enough: each is judged by what it carries."""
    if ip in _NAT64_LOCAL:
        return None
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _NAT64 or (ip in _COMPATIBLE and int(ip) > 1):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    return []


def _global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


def is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        carried = _embedded(ip)
        if carried is None:
            return False
        if carried:
            return all(_global(v4) for v4 in carried)
    return _global(ip)


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _port(scheme: str, port: int | None) -> int:
    return port or (443 if scheme == "https" else 80)


@lru_cache(maxsize=4096)
def endpoint_of(url: str) -> str:
    """What the per-endpoint limit and the breaker count by: scheme://host:port. Cached: the
    dispatcher asks for every claimed row."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{_port(parts.scheme, parts.port)}"


def shown(url: str) -> str:
    """`url` as messages may quote it: a password in its userinfo replaced. A refusal is
    stored on the attempt row and logged when it opens the endpoint's breaker."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{hostinfo}").geturl()


def _not_public(url: str) -> str:
    return (
        f"push URL {shown(url)!r} is not a public address (loopback, private, link-local and "
        "shared ranges are refused; set CDR_ALLOW_PRIVATE_WEBHOOKS=true to allow)"
    )


@lru_cache(maxsize=4096)
def refusal(url: str, *, allow_private: bool) -> str | None:
    """Why `url` is refused without asking DNS (malformed, not http(s), a literal address
    that is not public), else None. Cached: the dispatcher asks on every push."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as exc:
        return f"push URL is malformed: {exc}"
    if parts.scheme not in ("http", "https") or not host:
        return f"push URL must be http(s)://host/...: {shown(url)!r}"
    if not allow_private and _literal(host) and not is_public(host):
        return _not_public(url)
    return None


async def check_url(url: str, *, allow_private: bool, resolve: bool = True) -> None:
    """Raises Unprocessable when the URL is malformed or names a refused address; with
    `resolve`, a host name must resolve to at least one public address."""
    why = refusal(url, allow_private=allow_private)
    if why is not None:
        raise Unprocessable(why)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if allow_private or _literal(host) or not resolve:
        return
    port = _port(parts.scheme, parts.port)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unprocessable(f"push URL host {host!r} does not resolve: {exc}") from None
    if not any(is_public(str(info[4][0])) for info in infos):
        raise Unprocessable(_not_public(url))


class PublicResolver(ThreadedResolver):
    """aiohttp resolver that answers only public addresses."""

    async def resolve(
        self, host: str, port: int = 0, family: Any = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        public = [r for r in results if is_public(r["host"])]
        if not public:
            raise OSError(f"{host} resolves only to non-public addresses; push refused")
        return public
