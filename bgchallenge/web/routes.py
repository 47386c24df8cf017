"""Every operation of the HTTP API, listed once: the app routes these, the OpenAPI document
describes these (and a test checks that the app has no other route). Also the limits the
routes apply and the document quotes."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BODY_BYTES = 64 * 1024
HEALTH_TIMEOUT_SECONDS = 2.0
# /health answers from a check at most this old (concurrent requests share one check).
HEALTH_MAX_AGE_SECONDS = 1.0
# Ids are PostgreSQL bigints from 1: a larger one would be sent as numeric and scan the table,
# so the route answers 404 for anything else before any query.
MAX_RESULT_ID = 2**63 - 1
# A path parameter's converter and the name the view function receives it by.
_PARAMETERS = {"id": (f"int(min=1, max={MAX_RESULT_ID})", "result_id")}


@dataclass(frozen=True)
class Operation:
    method: str  # upper case
    path: str  # as the document writes it: /results/{id}
    operation_id: str

    @property
    def rule(self) -> str:
        """The path as a Quart route rule: ``{id}`` becomes ``<int(...):result_id>``."""
        return re.sub(r"\{(\w+)\}", lambda m: "<{}:{}>".format(*_PARAMETERS[m[1]]), self.path)


# Served by every process (a worker process serves only these).
HEALTH = Operation("GET", "/health", "health")
METRICS = Operation("GET", "/metrics", "metrics")
OPENAPI = Operation("GET", "/openapi.json", "openapi")
DOCS = Operation("GET", "/docs", "docs")
# The API (web and all processes).
ENQUEUE = Operation("POST", "/results/enqueue", "enqueueResult")
LIST = Operation("GET", "/results/list", "listResults")
STREAM = Operation("GET", "/results/stream", "streamResults")
RESULT = Operation("GET", "/results/{id}", "getResult")
CANCEL = Operation("POST", "/results/{id}/cancel", "cancelResult")

OPERATIONS_SURFACE = (HEALTH, METRICS, OPENAPI, DOCS)
API = (ENQUEUE, LIST, STREAM, RESULT, CANCEL)
ALL = OPERATIONS_SURFACE + API
# Swagger UI's own files (from the swagger-ui-py wheel), served by Quart's static route.
DOCS_ASSETS_PATH = "/docs/assets"
