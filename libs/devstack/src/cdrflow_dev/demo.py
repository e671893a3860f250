"""The demo tenant of contract §1 (DEMO / DEMO / demopass, extension 100, a small NA deck)."""

from __future__ import annotations

import httpx

DEMO_DECK = """prefix,destination,rate,increment,initial_increment,connect_fee
1,USA and Canada,0.0200,60,60,0
1613,Canada - 613 Ottawa,0.0150,60,60,0
1416,Canada - 416 Toronto,0.0150,60,60,0
1418,Canada - 418 Quebec City,0.0150,60,60,0
1212,USA - 212 New York,0.0120,6,30,0
1800,USA - Toll free,0,60,60,0
1900,USA - Premium,1.5000,60,60,0.25
"""

DEMO_ROUTE = """prefix,destination,rate,increment
1,NA termination,0.0060,6
1613,Ottawa termination,0.0052,6
1418,Quebec termination,0.0052,6
"""


def load_demo(rater_url: str, admin_token: str) -> None:
    """Idempotent: PUTs through the rater's admin API, as an operator would."""
    headers = {"authorization": f"Bearer {admin_token}"}
    base = f"{rater_url}/v1/admin/tenants/DEMO"
    with httpx.Client(headers=headers, timeout=30) as client:
        steps = [
            (
                "",
                {
                    "name": "Demo",
                    "timezone": "America/New_York",
                    "country": "US",
                    "currency": "USD",
                },
            ),
            ("/routes/demo-route", {"name": "Demo termination"}),
            ("/packages/demo", {"name": "Demo North America", "route": "demo-route"}),
            (
                "/api-accounts/DEMO",
                {"password": "demopass", "daily_limit": 1000, "default_package": "demo"},
            ),
            ("/extensions/100", {"package": "demo", "account": "100000_VoIP"}),
        ]
        for path, body in steps:
            client.put(base + path, json=body).raise_for_status()
        for path, deck in (
            ("/packages/demo/rates", DEMO_DECK),
            ("/routes/demo-route/rates", DEMO_ROUTE),
        ):
            client.put(
                base + path, content=deck, headers={"content-type": "text/csv"}
            ).raise_for_status()
