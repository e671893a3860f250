"""Push URL policy: only public addresses unless private ones are allowed."""

from __future__ import annotations

import pytest

from cdr_notifier.urls import check_url, is_public
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
