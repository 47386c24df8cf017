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

-- name: claim_due
-- Claims up to %(limit)s due queued rows for one worker process, oldest due first. Rows locked
-- by another claimer are skipped, never waited for.
WITH due AS (
    SELECT id FROM results
     WHERE status = 'queued' AND due_at <= clock_timestamp()
     ORDER BY due_at, id
     LIMIT %(limit)s
     FOR UPDATE SKIP LOCKED
)
UPDATE results AS r
   SET status = 'running',
       attempts = r.attempts + 1,
       started_at = coalesce(r.started_at, clock_timestamp()),
       lease_owner = %(owner)s,
       lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_seconds)s),
       updated_at = clock_timestamp()
  FROM due
 WHERE r.id = due.id
RETURNING r.id, r.job_id, r.url, r.source_url, r.object_path, r.attempts;

-- name: seconds_until_next_due
-- How long the dispatcher may sleep: until the earliest queued row is due (null: none queued).
SELECT greatest(0, extract(epoch FROM min(due_at) - clock_timestamp()))::float8 AS seconds
  FROM results
 WHERE status = 'queued';

-- name: extend_lease
-- Keeps a running attempt's lease; no row back means the attempt is no longer this worker's.
UPDATE results
   SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_seconds)s)
 WHERE id = %(id)s AND status = 'running'
   AND lease_owner = %(owner)s AND attempts = %(attempts)s
RETURNING cancel_requested;

-- name: record_success
UPDATE results
   SET status = 'succeeded',
       storage_bucket = %(bucket)s, storage_key = %(key)s, storage_size = %(size)s,
       storage_content_type = %(content_type)s, storage_sha256 = %(sha256)s,
       error_code = NULL, error_message = NULL,
       source_url = NULL, lease_owner = NULL, lease_expires_at = NULL,
       ended_at = clock_timestamp(), updated_at = clock_timestamp()
 WHERE id = %(id)s AND status = 'running'
   AND lease_owner = %(owner)s AND attempts = %(attempts)s
RETURNING id;

-- name: record_failure
UPDATE results
   SET status = 'failed',
       error_code = %(code)s, error_message = %(message)s,
       source_url = NULL, lease_owner = NULL, lease_expires_at = NULL,
       ended_at = clock_timestamp(), updated_at = clock_timestamp()
 WHERE id = %(id)s AND status = 'running'
   AND lease_owner = %(owner)s AND attempts = %(attempts)s
RETURNING id;

-- name: schedule_retry
UPDATE results
   SET status = 'queued',
       error_code = %(code)s, error_message = %(message)s,
       due_at = clock_timestamp() + make_interval(secs => %(delay_seconds)s),
       lease_owner = NULL, lease_expires_at = NULL, updated_at = clock_timestamp()
 WHERE id = %(id)s AND status = 'running'
   AND lease_owner = %(owner)s AND attempts = %(attempts)s
RETURNING id;

-- name: hand_back
-- A graceful shutdown interrupted the attempt: queued again at once, the attempt not spent.
UPDATE results
   SET status = 'queued', attempts = attempts - 1, due_at = clock_timestamp(),
       lease_owner = NULL, lease_expires_at = NULL, updated_at = clock_timestamp()
 WHERE id = %(id)s AND status = 'running'
   AND lease_owner = %(owner)s AND attempts = %(attempts)s
RETURNING id;

-- name: reap_expired_leases
-- Rows whose worker process died: queued again while attempts remain, failed after that.
-- The attempt that died counts: it started, and a result that kills its worker must end.
UPDATE results
   SET status = CASE WHEN attempts < %(max_attempts)s THEN 'queued' ELSE 'failed' END,
       due_at = clock_timestamp(),
       error_code = CASE WHEN attempts < %(max_attempts)s THEN error_code ELSE 'exhausted' END,
       error_message = CASE WHEN attempts < %(max_attempts)s THEN error_message
                            ELSE 'the worker running the last attempt stopped (lease expired)' END,
       ended_at = CASE WHEN attempts < %(max_attempts)s THEN NULL ELSE clock_timestamp() END,
       source_url = CASE WHEN attempts < %(max_attempts)s THEN source_url END,
       lease_owner = NULL, lease_expires_at = NULL, updated_at = clock_timestamp()
 WHERE status = 'running' AND lease_expires_at < clock_timestamp()
RETURNING id, job_id, status;
