"""Push URL policy: only public addresses unless private ones are allowed."""

from __future__ import annotations

import pytest

from cdr_notifier.urls import check_url, is_public, refusal, shown
from cdrmodel.errors import Unprocessable


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("fe80::1%eth0", False),
        # IPv6 forms that carry an IPv4 address are judged by it: Python 3.11 before 3.11.10
        # calls some of them global (CVE-2024-4032), and these machines run 3.11.7.
        ("::ffff:10.0.0.1", False),  # IPv4-mapped
        ("::127.0.0.1", False),  # IPv4-compatible (deprecated)
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b:1::a00:1", False),  # local-use NAT64 prefix (RFC 8215)
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo, client 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo, client 10.0.0.1
        ("::ffff:8.8.8.8", True),
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("0.0.0.0", False),
        ("not an ip", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(address) is public


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://localhost/x",
        "ftp://example.com/x",
        "http://:99999/x",
        "http://example.com:abc/x",
        "not a url",
    ],
)
async def test_refused_urls(url: str) -> None:
    with pytest.raises(Unprocessable):
        await check_url(url, allow_private=False)


async def test_private_targets_allowed_when_configured() -> None:
    await check_url("http://127.0.0.1:9000/hook", allow_private=True)


async def test_names_are_left_to_the_resolver_at_send_time() -> None:
    # resolve=False: a name is not looked up here (PublicResolver refuses it at connect).
    await check_url("http://crm.invalid/hook", allow_private=False, resolve=False)
    with pytest.raises(Unprocessable):
        await check_url("http://10.0.0.1/hook", allow_private=False, resolve=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://crm:s3cret-pw@10.1.2.3/hook",
        "ftp://crm:s3cret-pw@example.com/hook",
        "http://crm:s3cret-pw@[::1]:8080/hook",
    ],
)
async def test_a_refusal_never_quotes_the_urls_password(url: str) -> None:
    # The refusal is stored on the attempt row and logged when a breaker opens.
    why = refusal(url, allow_private=False)
    assert why is not None
    assert "s3cret-pw" not in why and "crm:***@" in why
    with pytest.raises(Unprocessable) as caught:
        await check_url(url, allow_private=False, resolve=False)
    assert "s3cret-pw" not in str(caught.value)


def test_shown_keeps_a_url_without_a_password() -> None:
    assert shown("https://crm.example/hook?a=1") == "https://crm.example/hook?a=1"
    assert shown("https://user@crm.example/hook") == "https://user@crm.example/hook"
    assert shown("https://user:pw@crm.example:8443/h") == "https://user:***@crm.example:8443/h"
