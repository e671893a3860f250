"""The compat route's own query-string reader decodes exactly as parse_qsl does."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

from cdr_ingest.routes import _query

NAMES = st.sampled_from(["DatabaseID", "databaseid", "Duration", "x%41", "b+c", "%ZZ", "é", ""])


def _reference(raw: bytes) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        params[name.lower()] = value  # the last of a name, in any case, wins
    return params


@given(st.binary(max_size=80))
def test_any_bytes_decode_as_parse_qsl_decodes_them(raw: bytes) -> None:
    assert _query({"query_string": raw}) == _reference(raw)


@given(st.lists(st.tuples(NAMES, st.text(max_size=10)), max_size=8))
def test_pbx_like_queries_decode_as_parse_qsl_decodes_them(pairs: list[tuple[str, str]]) -> None:
    raw = "&".join(f"{name}={value}" for name, value in pairs).encode()
    assert _query({"query_string": raw}) == _reference(raw)


def test_escapes_plus_and_blank_values() -> None:
    raw = b"DatabaseID=DE%4DO&OriginatingNumber=%2B1613&AccountCode=a+b&ExternalID=&Flag"
    assert _query({"query_string": raw}) == {
        "databaseid": "DEMO",
        "originatingnumber": "+1613",
        "accountcode": "a b",
        "externalid": "",
        "flag": "",
    }
