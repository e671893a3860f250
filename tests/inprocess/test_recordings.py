"""Recording URLs end to end in process: sent by every submission path, stored in
`cdr.recording_url`, shown as `record` in the record (queries and pushes) and served by
`GET /v1/cdrs/{cdr_id}/recording` to the CDR's own tenant only; a bad one refused at ingest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from tests.helpers import Receiver, Tenant, wait_for
from tests.inprocess.batch import codes, post, record
from tests.inprocess.conftest import Pipeline

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pbx"
BASE = "https://rec.example.net/CallsHistory/PlayRecord/"
ASTERISK_LINE = (FIXTURES / "asterisk_17_userfield.csv").read_bytes().splitlines()[0]


def _freeswitch_body(url: str) -> bytes:
    cdr = json.loads((FIXTURES / "freeswitch_busy.json").read_bytes())
    cdr["variables"]["recording_url"] = quote(url, safe="")  # mod_json_cdr encodes values
    return json.dumps(cdr).encode()


async def _recording(pipeline: Pipeline, tenant: Tenant, cdr_id: str) -> Any:
    return await pipeline.notifier.get(
        f"/v1/cdrs/{cdr_id}/recording", auth=(tenant.login, tenant.password)
    )


async def test_a_recording_url_sent_by_each_path_is_stored_pushed_and_served(
    pipeline: Pipeline, tenant: Tenant, receiver: Receiver
) -> None:
    await pipeline.subscribe(tenant, receiver.url)
    sent: dict[str, str] = {}  # cdr_id or external id -> the URL sent with it
    # Seed 000, GET (Record) and POST form (RecordingURL, the alias): ids by ExternalID.
    url = BASE + "compat-get?id=1&sig=a%2Bb"
    assert await pipeline.submit(tenant, ExternalID="get-1", Record=url) == "0"
    sent["get-1"] = url
    form = tenant.submit_params(ExternalID="post-1", RecordingURL=BASE + "compat-post")
    resp = await pipeline.ingest.post("/api_submitcdr.aspx", data=form)
    assert resp.text == "0"
    sent["post-1"] = BASE + "compat-post"
    # POST /v1/cdrs: contract names (recording_url), seed 003 names (record), `extra.record`.
    seed = {"caller": "100", "target": "16135550100", "time": 1595960350, "duration": 11}
    body = [
        record(1, recording_url=BASE + "native"),
        {**seed, "ivruniqueid": "seed-1", "record": BASE + "seed003", "type": "Extension Outgoing"},
        record(2, extra={"record": BASE + "native-extra"}),
    ]
    resp = await post(pipeline.ingest, tenant, "/v1/cdrs", body)
    assert codes(resp) == [0, 0, 0]
    ids = [r["id"] for r in resp.json()["results"]]
    sent.update(zip(ids, [BASE + "native", BASE + "seed003", BASE + "native-extra"], strict=True))
    # The PBX adapters: a FreeSWITCH channel variable, an Asterisk userfield.
    resp = await post(
        pipeline.ingest,
        tenant,
        "/v1/pbx/freeswitch",
        content=_freeswitch_body(BASE + "fs/a%20b.wav"),
        headers={"content-type": "application/json"},
    )
    assert codes(resp) == [0]
    sent[resp.json()["results"][0]["id"]] = BASE + "fs/a%20b.wav"
    line = ASTERISK_LINE.replace(b'"campaign=spring"', f'"{BASE}asterisk"'.encode())
    resp = await post(
        pipeline.ingest,
        tenant,
        "/v1/pbx/asterisk",
        content=line,
        headers={"content-type": "text/csv"},
    )
    assert codes(resp) == [0]
    sent[resp.json()["results"][0]["id"]] = BASE + "asterisk"

    stored = await pipeline.wait_stored(tenant, len(sent))
    by_key = {r["cdr_id"]: r for r in stored} | {r["external_id"]: r for r in stored}
    for key, url in sent.items():
        rec = by_key[key]
        assert rec["record"] == url, (key, rec)
        resp = await _recording(pipeline, tenant, rec["cdr_id"])
        assert resp.status_code == 302, resp.text
        assert resp.headers["location"] == url
        assert resp.headers["cache-control"] == "private, no-store"
        assert resp.json() == {"cdr_id": rec["cdr_id"], "record": url}
    assert not any("recording_url" in r for r in stored)
    rows = await pipeline.sql(
        "SELECT cdr_id::text AS id, recording_url, extra FROM cdr WHERE database_id = $1",
        tenant.database_id,
    )
    assert sorted(r["recording_url"] for r in rows) == sorted(sent.values())
    assert not any("record" in orjson.loads(r["extra"]) for r in rows)  # kept once, not twice

    # The events carried it: each push (seed 003's shape) has the same `record`.
    await wait_for(lambda: len(receiver.requests) >= len(sent), what="every push", timeout=30)
    pushed = {orjson.loads(b)["cdr_id"]: orjson.loads(b)["record"] for _, b in receiver.requests}
    assert pushed == {r["id"]: r["recording_url"] for r in rows}


async def test_a_bad_recording_url_is_refused_at_ingest_and_nothing_stored(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    assert await pipeline.submit(tenant, ExternalID="bad-1", Record="ftp://rec.example.net/x") == (
        "50422"
    )
    assert await pipeline.submit(tenant, ExternalID="bad-2", RecordingURL="not a url") == "50422"
    resp = await post(
        pipeline.ingest,
        tenant,
        "/v1/cdrs",
        [
            record(1, record="javascript:alert(1)"),
            record(2, recording_url=BASE + "x" * 2100),
            record(3, recording_url=BASE + "a", record=BASE + "b"),
            record(4, record=["https://rec.example.net/"]),
        ],
    )
    assert codes(resp) == [50422] * 4
    messages = [r["message"] for r in resp.json()["results"]]
    assert "must be an http:// or https:// URL" in messages[0]
    assert "the limit is 2048" in messages[1] and "differ" in messages[2]
    resp = await post(
        pipeline.ingest,
        tenant,
        "/v1/pbx/freeswitch",
        content=_freeswitch_body("/var/lib/freeswitch/recordings/x.wav"),
        headers={"content-type": "application/json"},
    )
    assert codes(resp) == [50422]
    assert "variables.recording_url" in resp.json()["results"][0]["message"]
    # A good record after them, on the tenant's one partition: once it is stored, the refused
    # ones would have been too, had any of them been produced.
    assert await pipeline.submit(tenant, ExternalID="good", Record=BASE + "good") == "0"
    (stored,) = await pipeline.wait_stored(tenant, 1)
    assert stored["external_id"] == "good"
    rows = await pipeline.sql(
        "SELECT count(*) AS n FROM cdr WHERE database_id = $1", tenant.database_id
    )
    assert rows[0]["n"] == 1


async def test_the_recording_endpoint_is_404_unless_the_cdr_is_the_tenants_and_has_one(
    pipeline: Pipeline, tenant: Tenant
) -> None:
    other = await pipeline.tenant()
    assert await pipeline.submit(tenant, ExternalID="with", Record=BASE + "mine") == "0"
    assert await pipeline.submit(tenant, ExternalID="without") == "0"
    stored = {r["external_id"]: r["cdr_id"] for r in await pipeline.wait_stored(tenant, 2)}
    assert (await _recording(pipeline, tenant, stored["with"])).status_code == 302
    # Another tenant's account: not found, exactly like an id that does not exist.
    resp = await _recording(pipeline, other, stored["with"])
    assert resp.status_code == 404
    assert resp.json()["message"] == f"no CDR '{stored['with']}' in tenant {other.database_id}"
    assert "location" not in resp.headers and "mine" not in resp.text
    resp = await _recording(pipeline, tenant, "0193c4d2-0000-7000-8000-000000000000")
    assert resp.status_code == 404 and "no CDR" in resp.json()["message"]
    resp = await _recording(pipeline, tenant, "not-a-uuid")
    assert resp.status_code == 404 and "no CDR" in resp.json()["message"]
    resp = await _recording(pipeline, tenant, stored["without"])
    assert resp.status_code == 404
    assert resp.json()["message"] == f"CDR {stored['without']} has no recording"
    # Without credentials, or with wrong ones: 401, as every query.
    resp = await pipeline.notifier.get(f"/v1/cdrs/{stored['with']}/recording")
    assert resp.status_code == 401 and resp.json()["code"] == 50443
    resp = await pipeline.notifier.get(
        f"/v1/cdrs/{stored['with']}/recording", auth=(tenant.login, "wrong")
    )
    assert resp.status_code == 401 and resp.json()["code"] == 50390
