-- Every query the service runs, by name. Loaded once by bgchallenge/db/queries.py.
-- Parameters are psycopg's named placeholders.

-- name: ping
SELECT 1 AS ok;

-- name: enqueue_result
-- Inserts the result unless its identity exists; answers the new row (inserted = true) or the
-- existing one (inserted = false). The notify comes from the results_inserted_queued trigger.
-- When a concurrent insert of the same identity commits between the snapshot and the insert,
-- neither branch sees a row: the caller runs the statement again.
WITH inserted AS (
    INSERT INTO results (job_id, host, object_path, url, source_url)
    VALUES (%(job_id)s, %(host)s, %(object_path)s, %(url)s, %(source_url)s)
    ON CONFLICT ON CONSTRAINT results_identity DO NOTHING
    RETURNING *
)
SELECT true AS inserted, * FROM inserted
UNION ALL
SELECT false AS inserted, * FROM results
 WHERE job_id = %(job_id)s AND host = %(host)s AND object_path = %(object_path)s
   AND NOT EXISTS (SELECT FROM inserted);

-- name: get_result
SELECT * FROM results WHERE id = %(id)s;
