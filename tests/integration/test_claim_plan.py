"""The claim's due-time condition bounds its index scans (a volatile clock_timestamp() cannot)."""

from __future__ import annotations

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
    scans = [
        node
        for node in _nodes(plan[0]["Plan"])
        if "Index Cond" in node and node["Index Name"] != "results_pkey"  # the update's join
    ]
    # One scan per side of the nulls of the expiry-ordered index, both checking the due time
    # on the index; the rows without an expiry are a range (IS NULL is an equality there).
    assert [node["Index Name"] for node in scans] == ["results_queued_expiry"] * 2, scans
    conditions = [node["Index Cond"] for node in scans]
    assert all("due_at <=" in condition for condition in conditions), conditions
    assert "url_expires_at IS NOT NULL" in conditions[0], conditions
    assert "url_expires_at IS NULL" in conditions[1], conditions
    assert not any("Sort" in node["Node Type"] for node in _nodes(plan[0]["Plan"]))


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node] + [n for child in node.get("Plans", []) for n in _nodes(child)]
