"""Push URL policy: refuse loopback, private and link-local targets unless allowed."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from cdrmodel.errors import Unprocessable


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def check_url(url: str, *, allow_private: bool) -> None:
    """Raises Unprocessable when the URL is malformed or resolves to a refused address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unprocessable(f"push URL must be http(s)://host/...: {url!r}")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM,
        )
    except socket.gaierror as exc:
        raise Unprocessable(f"push URL host {parts.hostname!r} does not resolve: {exc}") from None
    for info in infos:
        if _private(str(info[4][0])):
            raise Unprocessable(
                f"push URL {url!r} resolves to a loopback/private/link-local address "
                "(set CDR_ALLOW_PRIVATE_WEBHOOKS=true to allow)"
            )
