"""The claim's due-time condition bounds an index scan (a volatile clock_timestamp() cannot)."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from bgchallenge.db.queries import load_queries


def test_claim_due_scans_the_queued_index_up_to_now(database_url: str) -> None:
    with psycopg.connect(database_url) as connection:
        connection.execute("SET enable_seqscan = off")
        (plan,) = connection.execute(
            "EXPLAIN (FORMAT JSON) " + load_queries()["claim_due"],
            {"limit": 10, "owner": "o", "lease_seconds": 30.0},
        ).fetchone() or (None,)
    text = json.dumps(plan)
    assert "results_queued_due" in text
    conditions = [node["Index Cond"] for node in _nodes(plan[0]["Plan"]) if "Index Cond" in node]
    assert any("due_at <=" in condition for condition in conditions), conditions


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node] + [n for child in node.get("Plans", []) for n in _nodes(child)]
