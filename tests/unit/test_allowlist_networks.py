"""API-account allowlists: entries normalised (or refused naming them) and client addresses
judged against them, IPv4-mapped IPv6 as IPv4. Pure, no I/O."""

from __future__ import annotations

import ipaddress

import pytest

from cdrmodel.principals import Principal, client_address, normalise_networks, parse_network


@pytest.mark.parametrize(
    ("entry", "stored"),
    [
        ("192.0.2.0/24", "192.0.2.0/24"),
        (" 192.0.2.77/24 ", "192.0.2.0/24"),  # host bits cleared
        ("198.51.100.7", "198.51.100.7/32"),
        ("10.0.0.0/255.0.0.0", "10.0.0.0/8"),
        ("2001:DB8:0:0::1/48", "2001:db8::/48"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("::ffff:192.0.2.0/120", "192.0.2.0/24"),  # IPv4-mapped: judged as IPv4
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("::/0", "::/0"),
    ],
)
def test_allowlist_entries_are_normalised(entry: str, stored: str) -> None:
    assert str(parse_network(entry)) == stored


@pytest.mark.parametrize(
    "entry", ["", "10.0.0.0/33", "10.0.0.300/8", "example.net", "fe80::1%eth0/64", "2001:db8::/129"]
)
def test_a_bad_allowlist_entry_names_itself(entry: str) -> None:
    with pytest.raises(ValueError, match="network") as raised:
        normalise_networks(["192.0.2.0/24", entry])
    assert repr(entry) in str(raised.value)


def test_duplicates_are_dropped_in_order() -> None:
    assert normalise_networks(["10.1.0.0/16", "192.0.2.9/24", "10.1.2.3/16"]) == [
        "10.1.0.0/16",
        "192.0.2.0/24",
    ]


def _principal(*networks: str) -> Principal:
    nets = tuple(parse_network(n) for n in networks)
    return Principal("DB", "ACC", "", None, None, "UTC", "US", "USD", allowed_networks=nets)


@pytest.mark.parametrize(
    ("client", "allowed"),
    [
        ("192.0.2.10", True),
        ("::ffff:192.0.2.10", True),  # a dual-stack socket's IPv4 client
        ("192.0.3.10", False),
        ("::ffff:192.0.3.10", False),
        ("2001:db8:0:1::5", True),
        ("fe80::1%eth0", False),
        ("2001:db9::5", False),
        ("::192.0.2.10", False),  # IPv4-compatible (deprecated), not mapped: an IPv6 address
        (None, False),
        ("testclient", False),  # not an IP: cannot be shown to be inside
    ],
)
def test_reads_are_allowed_only_from_inside_the_list(client: str | None, allowed: bool) -> None:
    assert _principal("192.0.2.0/24", "2001:db8::/48").reads_allowed_from(client) is allowed


def test_no_list_is_anywhere_and_an_empty_list_nowhere() -> None:
    anywhere = Principal("DB", "ACC", "", None, None, "UTC", "US", "USD")
    assert anywhere.reads_allowed_from(None) and anywhere.reads_allowed_from("203.0.113.1")
    assert not _principal().reads_allowed_from("203.0.113.1")


def test_client_address_unmaps_ipv4_mapped_addresses() -> None:
    assert client_address("::ffff:10.0.0.1") == ipaddress.IPv4Address("10.0.0.1")
    assert client_address("2001:db8::1") == ipaddress.IPv6Address("2001:db8::1")
    assert client_address("") is None
