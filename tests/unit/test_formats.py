"""Push bodies, signatures and CRM acknowledgements (seed 003, Standard Webhooks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import xmlrpc.client
from urllib.parse import parse_qs

import orjson
import pytest

from cdr_notifier.formats import acknowledged, encode, new_secret, sign, valid_secret

RECORD = {
    "caller": "100",
    "target": "16138220000",
    "time": 1199189579,
    "price": 3,
    "total": "0.03000000",
    "cost": None,
    "rated": True,
    "IVR": [{"layer_id": 1, "Dtmf": 2}],
}


def test_json_body_is_the_record() -> None:
    body, content_type = encode("json", RECORD, xmlrpc_method="cdr.notify")
    assert content_type == "application/json"
    assert orjson.loads(body) == RECORD


def test_form_body_is_flat_with_nested_values_json_encoded() -> None:
    body, content_type = encode("form", RECORD, xmlrpc_method="cdr.notify")
    assert content_type == "application/x-www-form-urlencoded"
    fields = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    assert fields["caller"] == "100" and fields["price"] == "3"
    assert fields["rated"] == "true" and fields["cost"] == ""
    assert orjson.loads(fields["IVR"]) == RECORD["IVR"]


def test_xmlrpc_body_is_one_struct_and_big_ints_travel_as_strings() -> None:
    record = {**RECORD, "time": 2**31 + 5}  # after 2038 an epoch outgrows XML-RPC's int
    body, content_type = encode("xmlrpc", record, xmlrpc_method="crm.cdr")
    assert content_type == "text/xml"
    params, method = xmlrpc.client.loads(body.decode())
    assert method == "crm.cdr" and len(params) == 1
    assert params[0]["caller"] == "100" and params[0]["time"] == str(2**31 + 5)
    assert params[0]["price"] == 3 and params[0]["cost"] is None


def test_signature_follows_standard_webhooks() -> None:
    secret = new_secret()
    assert valid_secret(secret)
    signature = sign(secret, "msg_1", 1700000000, b'{"a":1}')
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, b'msg_1.1700000000.{"a":1}', hashlib.sha256).digest()
    assert signature == "v1," + base64.b64encode(digest).decode()


@pytest.mark.parametrize(
    "secret", ["short", "whsec_notbase64!!", "whsec_" + base64.b64encode(b"x" * 8).decode()]
)
def test_invalid_secrets_are_refused(secret: str) -> None:
    assert not valid_secret(secret)


@pytest.mark.parametrize(
    ("body", "content_type", "ok"),
    [
        (b"", "", True),
        (b"OK", "text/plain", True),
        (b"<html>thanks</html>", "text/html", True),
        (b'{"Err":0,"Errdesc":"OK"}', "application/json", True),
        (b'{"Err":2,"Errdesc":"Application error"}', "application/json", False),
        (b'{"status":"ok"}', "application/json", True),
        (b"Err=0&Errdesc=OK", "application/x-www-form-urlencoded", True),
        (b"Err=1&Errdesc=Parse", "application/x-www-form-urlencoded", False),
        (b"Err=1&Errdesc=Parse", "application/json", False),  # mislabelled still counts
        (
            xmlrpc.client.dumps(({"Err": 0, "Errdesc": "OK"},), methodresponse=True).encode(),
            "text/xml",
            True,
        ),
        (
            xmlrpc.client.dumps(({"Err": 1, "Errdesc": "no"},), methodresponse=True).encode(),
            "text/xml",
            False,
        ),
        (
            xmlrpc.client.dumps(xmlrpc.client.Fault(4, "boom"), methodresponse=True).encode(),
            "text/xml",
            False,
        ),
    ],
)
def test_acknowledgement(body: bytes, content_type: str, ok: bool) -> None:
    assert acknowledged(body, content_type)[0] is ok


LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<methodResponse><params><param><value><struct><member><name>Err</name>
<value><string>&lol3;</string></value></member></struct></value></param></params>
</methodResponse>"""


def test_an_xml_reply_with_entities_is_not_expanded_and_is_a_failure() -> None:
    # Read with defusedxml's parser: expat alone would expand the entities (billion laughs).
    ok, why = acknowledged(LAUGHS, "text/xml")
    assert ok is False
    assert why is not None and "EntitiesForbidden" in why
