"""How many examples the fuzz tier draws per operation (or per property).

`make test` draws 30: enough to keep the pinned findings found (tests/fuzz/test_edge_validation.py
holds each one as a plain test) at a quarter of the time. `make fuzz` draws 300 for a deep run;
CDRFLOW_FUZZ_EXAMPLES sets any other depth.
"""

from __future__ import annotations

import os

EXAMPLES = int(os.environ.get("CDRFLOW_FUZZ_EXAMPLES", "30"))
