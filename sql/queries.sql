-- Every query the service runs, by name. Loaded once by bgchallenge/db/queries.py.
-- Parameters are psycopg's named placeholders; {fragment} stands for a fragment below.

-- fragment: result_columns
-- What a client sees of a result (domain/results.py Result.from_row): never source_url (a
-- presigned credential), nor the worker's lease, nor the callback's full URL.
id, job_id, url, object_path, status, attempts, error_code, error_message,
storage_bucket, storage_key, storage_size, storage_content_type, storage_sha256,
storage_declared_content_type,
created_at, updated_at, started_at, ended_at, canceled_at, url_expires_at,
progress_received_bytes, progress_total_bytes,
callback_url, callback_status, callback_attempts, callback_last_error

-- fragment: outbox_of_outcome
-- The tail of an outcome query written `WITH outcome AS (UPDATE ... RETURNING id, status,
-- due_at)`: a result queued again gets its message intent on a broker transport (%(outbox)s),
-- due when the result is. Answers the status recorded and the outbox row written, if any.
, outboxed AS (
    INSERT INTO queue_outbox (result_id, not_before)
    SELECT id, due_at FROM outcome WHERE status = 'queued' AND %(outbox)s::boolean
    RETURNING id, result_id, not_before
)
SELECT outcome.status, outboxed.id AS outbox_id, outboxed.not_before AS outbox_not_before
  FROM outcome LEFT JOIN outboxed ON true

-- name: ping
SELECT 1 AS ok;

-- name: get_result
SELECT {result_columns}
  FROM results WHERE id = %(id)s;

-- name: claim_due
-- Claims up to %(limit)s due queued rows for one worker process: earliest-expiring source URL
-- first, those without an expiry last (each by due time, then id). Rows locked by another
-- claimer are skipped, never waited for. now() (stable, unlike clock_timestamp()) bounds the
-- index scans (results_queued_expiry, migration 0006): one branch per side of the nulls, so
-- the rows without an expiry are a range up to now, and the second branch runs only when the
-- first found too few. A result a cancel was requested for is never claimed.
WITH due AS (
    SELECT id FROM (
        SELECT id FROM results
         WHERE status = 'queued' AND url_expires_at IS NOT NULL AND due_at <= now()
           AND NOT cancel_requested
         ORDER BY url_expires_at, due_at, id
         LIMIT %(limit)s
         FOR UPDATE SKIP LOCKED
    ) AS expiring
    UNION ALL
    SELECT id FROM (
        SELECT id FROM results
         WHERE status = 'queued' AND url_expires_at IS NULL AND due_at <= now()
           AND NOT cancel_requested
         ORDER BY url_expires_at, due_at, id
         LIMIT %(limit)s
         FOR UPDATE SKIP LOCKED
    ) AS lasting
    LIMIT %(limit)s
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
RETURNING r.id, r.job_id, r.url, r.source_url, r.object_path, r.attempts, r.url_expires_at;

-- name: seconds_until_next_due
-- How long the dispatcher may sleep: until the earliest queued row is due (null: none queued).
SELECT greatest(0, extract(epoch FROM min(due_at) - clock_timestamp()))::float8 AS seconds
  FROM results
 WHERE status = 'queued';

-- name: extend_lease
-- Keeps a running attempt's lease; no row back means the attempt is no longer this worker's.
-- Stores the attempt's download progress too when %(received)s is not null (migration 0007):
-- one fenced write for both. The outcome queries below store the final progress the same way.
UPDATE results
   SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_seconds)s),
       progress_received_bytes = coalesce(%(received)s::bigint, progress_received_bytes),
       progress_total_bytes = CASE WHEN %(received)s::bigint IS NULL THEN progress_total_bytes
                                   ELSE %(total)s::bigint END
 WHERE id = %(id)s AND status = 'running'
   AND lease_owner = %(owner)s AND attempts = %(attempts)s
RETURNING cancel_requested;

-- name: record_success
-- Every outcome query answers the status it recorded (no row: the attempt is no longer this
-- worker's). A result a cancel was requested for ends `canceled` whatever the attempt did; the
-- results_ended_unsucceeded trigger then records that its bucket must be cleaned.
UPDATE results
   SET status = CASE WHEN cancel_requested THEN 'canceled' ELSE 'succeeded' END,
       storage_bucket = CASE WHEN NOT cancel_requested THEN %(bucket)s::text END,
       storage_key = CASE WHEN NOT cancel_requested THEN %(key)s::text END,
       storage_size = CASE WHEN NOT cancel_requested THEN %(size)s::bigint END,
       storage_content_type = CASE WHEN NOT cancel_requested THEN %(content_type)s::text END,
       storage_sha256 = CASE WHEN NOT cancel_requested THEN %(sha256)s::text END,
       storage_declared_content_type =
           CASE WHEN NOT cancel_requested THEN %(declared_content_type)s::text END,
       error_code = CASE WHEN cancel_requested THEN error_code END,
       error_message = CASE WHEN cancel_requested THEN error_message END,
       canceled_at = CASE WHEN cancel_requested THEN clock_timestamp() END,
       source_url = NULL, lease_owner = NULL, lease_expires_at = NULL,
       progress_received_bytes = coalesce(%(received)s::bigint, progress_received_bytes),
       progress_total_bytes = CASE WHEN %(received)s::bigint IS NULL THEN progress_total_bytes
                                   ELSE %(total)s::bigint END,
       ended_at = clock_timestamp(), updated_at = clock_timestamp()
 WHERE id = %(id)s AND status = 'running'
   AND lease_owner = %(owner)s AND attempts = %(attempts)s
RETURNING status;

-- name: record_failure
UPDATE results
   SET status = CASE WHEN cancel_requested THEN 'canceled' ELSE 'failed' END,
       error_code = CASE WHEN cancel_requested THEN error_code ELSE %(code)s::text END,
       error_message = CASE WHEN cancel_requested THEN error_message ELSE %(message)s::text END,
       canceled_at = CASE WHEN cancel_requested THEN clock_timestamp() END,
       source_url = NULL, lease_owner = NULL, lease_expires_at = NULL,
       progress_received_bytes = coalesce(%(received)s::bigint, progress_received_bytes),
       progress_total_bytes = CASE WHEN %(received)s::bigint IS NULL THEN progress_total_bytes
                                   ELSE %(total)s::bigint END,
       ended_at = clock_timestamp(), updated_at = clock_timestamp()
 WHERE id = %(id)s AND status = 'running'
   AND lease_owner = %(owner)s AND attempts = %(attempts)s
RETURNING status;

-- name: schedule_retry
-- Canceled instead, never queued again, if a cancel was requested. On a broker transport
-- (%(outbox)s) the message intent for the retry, held back until the new due_at, is written to
-- the outbox in this same statement (the outbox_of_outcome fragment).
WITH outcome AS (
UPDATE results
   SET status = CASE WHEN cancel_requested THEN 'canceled' ELSE 'queued' END,
       error_code = CASE WHEN cancel_requested THEN error_code ELSE %(code)s::text END,
       error_message = CASE WHEN cancel_requested THEN error_message ELSE %(message)s::text END,
       due_at = clock_timestamp() + make_interval(secs => %(delay_seconds)s),
       canceled_at = CASE WHEN cancel_requested THEN clock_timestamp() END,
       ended_at = CASE WHEN cancel_requested THEN clock_timestamp() END,
       source_url = CASE WHEN cancel_requested THEN NULL ELSE source_url END,
       progress_received_bytes = coalesce(%(received)s::bigint, progress_received_bytes),
       progress_total_bytes = CASE WHEN %(received)s::bigint IS NULL THEN progress_total_bytes
                                   ELSE %(total)s::bigint END,
       lease_owner = NULL, lease_expires_at = NULL, updated_at = clock_timestamp()
 WHERE id = %(id)s AND status = 'running'
   AND lease_owner = %(owner)s AND attempts = %(attempts)s
RETURNING id, status, due_at
){outbox_of_outcome}

-- name: hand_back
-- A graceful shutdown interrupted the attempt: queued again at once, the attempt not spent;
-- canceled instead if a cancel was requested meanwhile. A new message intent when queued on a
-- broker transport, as for schedule_retry.
WITH outcome AS (
UPDATE results
   SET status = CASE WHEN cancel_requested THEN 'canceled' ELSE 'queued' END,
       attempts = attempts - 1, due_at = clock_timestamp(),
       canceled_at = CASE WHEN cancel_requested THEN clock_timestamp() END,
       ended_at = CASE WHEN cancel_requested THEN clock_timestamp() END,
       source_url = CASE WHEN cancel_requested THEN NULL ELSE source_url END,
       lease_owner = NULL, lease_expires_at = NULL, updated_at = clock_timestamp()
 WHERE id = %(id)s AND status = 'running'
   AND lease_owner = %(owner)s AND attempts = %(attempts)s
RETURNING id, status, due_at
){outbox_of_outcome}

-- name: claim_results
-- A broker transport's claim: the results its messages name (%(ids)s), claimed by id with the
-- same update as claim_due for those still due (queued, due by now, no cancel requested).
-- Answers one row per id: `claimed` and the claim's columns, or why not: `locked` (another
-- transaction holds the row: look again soon; skipped, never waited for, as claim_due does),
-- its status, how long until it is due (a message that came early) and until the lease of a
-- live attempt expires (a message of an attempt still running); no status: no such result.
WITH target AS (
    SELECT id, status, cancel_requested, due_at, lease_expires_at
      FROM results
     WHERE id = ANY(%(ids)s::bigint[])
     FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE results AS r
       SET status = 'running',
           attempts = r.attempts + 1,
           started_at = coalesce(r.started_at, clock_timestamp()),
           lease_owner = %(owner)s,
           lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_seconds)s),
           updated_at = clock_timestamp()
      FROM target AS t
     WHERE r.id = t.id AND t.status = 'queued' AND NOT t.cancel_requested
       AND t.due_at <= clock_timestamp()
    RETURNING r.id, r.job_id, r.url, r.source_url, r.object_path, r.attempts, r.url_expires_at
)
SELECT m.id AS result_id, claimed.id IS NOT NULL AS claimed,
       t.id IS NULL AND EXISTS (SELECT 1 FROM results AS e WHERE e.id = m.id) AS locked,
       t.status, t.cancel_requested,
       greatest(0, extract(epoch FROM t.due_at - clock_timestamp()))::float8 AS due_in,
       greatest(0, extract(epoch FROM t.lease_expires_at - clock_timestamp()))::float8
           AS lease_left,
       claimed.job_id, claimed.url, claimed.source_url, claimed.object_path, claimed.attempts,
       claimed.url_expires_at
  FROM unnest(%(ids)s::bigint[]) AS m(id)
  LEFT JOIN target AS t ON t.id = m.id
  LEFT JOIN claimed ON claimed.id = m.id;

-- name: reap_expired_leases
-- Rows whose worker process died: canceled if a cancel was requested, else queued again while
-- attempts remain, else failed. The attempt that died counts: it started, and a result that
-- kills its worker must end. A failed or canceled one gets its bucket cleaned by the sweep
-- (the results_ended_unsucceeded trigger records it). A queued one gets a new message intent on
-- a broker transport (%(outbox)s): the dead worker's message comes back too, after its
-- visibility timeout, but finds the result held by the new attempt or ended, and is dropped.
WITH expired AS (
    SELECT id,
           CASE WHEN cancel_requested THEN 'canceled'
                WHEN attempts < %(max_attempts)s THEN 'queued'
                ELSE 'failed' END AS next_status
      FROM results
     WHERE status = 'running' AND lease_expires_at < now()
     FOR UPDATE SKIP LOCKED
), reaped AS (
UPDATE results AS r
   SET status = e.next_status,
       due_at = clock_timestamp(),
       error_code = CASE e.next_status WHEN 'failed' THEN 'exhausted' ELSE r.error_code END,
       error_message = CASE e.next_status
                           WHEN 'failed'
                           THEN 'the worker running the last attempt stopped (lease expired)'
                           ELSE r.error_message END,
       canceled_at = CASE e.next_status WHEN 'canceled' THEN clock_timestamp() END,
       ended_at = CASE e.next_status WHEN 'queued' THEN NULL ELSE clock_timestamp() END,
       source_url = CASE e.next_status WHEN 'queued' THEN r.source_url END,
       lease_owner = NULL, lease_expires_at = NULL, updated_at = clock_timestamp()
  FROM expired AS e
 WHERE r.id = e.id
RETURNING r.id, r.job_id, r.status, r.due_at
), outboxed AS (
    INSERT INTO queue_outbox (result_id, not_before)
    SELECT id, due_at FROM reaped WHERE status = 'queued' AND %(outbox)s::boolean
    RETURNING id, result_id, not_before
)
SELECT reaped.id, reaped.job_id, reaped.status,
       outboxed.id AS outbox_id, outboxed.not_before AS outbox_not_before
  FROM reaped LEFT JOIN outboxed ON outboxed.result_id = reaped.id;

-- name: list_results
-- One page in id order, with the snapshot it is read in (same statement: pg_current_snapshot()
-- is the statement's own snapshot), which the ETag carries (migration 0003). Answers at least
-- one row; a row whose id is null stands for an empty page.
SELECT version.snapshot, page.*
  FROM (SELECT pg_current_snapshot()::text AS snapshot) AS version
  LEFT JOIN LATERAL (
        SELECT {result_columns}
          FROM results
         WHERE id > %(after_id)s
           AND (%(job_id)s::text IS NULL OR job_id = %(job_id)s::text)
           AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
         ORDER BY id
         LIMIT %(limit)s
  ) AS page ON true
 ORDER BY page.id;

-- name: cursor_key
SELECT key FROM service_keys WHERE name = 'cursor';

-- name: cancel
-- One statement (one round trip, the row locked only for its duration): the row as it is now
-- (FOR UPDATE waits for a concurrent writer and answers its committed version), then the one
-- change its status calls for. A queued result is canceled; a running one gets its cancel
-- request (the results_cancel_requested trigger notifies every worker process; the one holding
-- it cancels the attempt, and its lease extension sees the flag too, should the notification
-- be missed); any other is answered as it is. `was` is the status found. The updates test the
-- status found by `locked`, never their own: they scan the statement's snapshot, taken before
-- the lock wait, and a claim committed meanwhile (queued -> running) is invisible to it.
WITH locked AS (
    SELECT {result_columns} FROM results WHERE id = %(id)s FOR UPDATE
), canceled AS (
    UPDATE results
       SET status = 'canceled', canceled_at = clock_timestamp(), ended_at = clock_timestamp(),
           source_url = NULL, updated_at = clock_timestamp()
     WHERE id = %(id)s AND EXISTS (SELECT FROM locked WHERE locked.status = 'queued')
    RETURNING {result_columns}
), requested AS (
    UPDATE results SET cancel_requested = true
     WHERE id = %(id)s AND EXISTS (SELECT FROM locked WHERE locked.status = 'running')
    RETURNING {result_columns}
)
SELECT 'queued' AS was, * FROM canceled
UNION ALL
SELECT 'running' AS was, * FROM requested
UNION ALL
SELECT status AS was, * FROM locked WHERE status NOT IN ('queued', 'running');

-- name: record_canceled
UPDATE results
   SET status = 'canceled', canceled_at = clock_timestamp(), ended_at = clock_timestamp(),
       source_url = NULL, lease_owner = NULL, lease_expires_at = NULL,
       progress_received_bytes = coalesce(%(received)s::bigint, progress_received_bytes),
       progress_total_bytes = CASE WHEN %(received)s::bigint IS NULL THEN progress_total_bytes
                                   ELSE %(total)s::bigint END,
       updated_at = clock_timestamp()
 WHERE id = %(id)s AND status = 'running'
   AND lease_owner = %(owner)s AND attempts = %(attempts)s
RETURNING status;

-- name: claim_storage_cleanups
-- The sweep: up to %(limit)s results whose bucket clean-up is due, each put off by
-- %(lease_seconds)s meanwhile, so that other sweeps leave it alone and retry it then should
-- this one fail or die. Cleaning is idempotent: two sweeps on one result do no harm.
WITH due AS (
    SELECT id FROM results
     WHERE storage_cleanup_due_at <= now()
     ORDER BY storage_cleanup_due_at
     LIMIT %(limit)s
     FOR UPDATE SKIP LOCKED
)
UPDATE results AS r
   SET storage_cleanup_due_at = now() + make_interval(secs => %(lease_seconds)s)
  FROM due
 WHERE r.id = due.id
RETURNING r.id, r.job_id, r.object_path;

-- name: storage_cleaned
UPDATE results SET storage_cleanup_due_at = NULL
 WHERE id = %(id)s AND status IN ('failed', 'canceled');

-- name: require_storage_cleanup
-- An attempt whose outcome was not recorded (its lease was taken over) had stored an object:
-- if the result has ended without success meanwhile, that object must go. A result that is
-- queued or running again is left alone: its new attempt writes the same key.
UPDATE results SET storage_cleanup_due_at = now()
 WHERE id = %(id)s AND status IN ('failed', 'canceled')
RETURNING id;

-- name: queue_depth
-- For /metrics: how many results wait, how many of them are due now, how many run.
SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
       count(*) FILTER (WHERE status = 'queued' AND due_at <= now()) AS due,
       count(*) FILTER (WHERE status = 'running') AS running
  FROM results
 WHERE status IN ('queued', 'running');

-- name: enqueue_results
-- Group commit: many enqueue requests in one statement and one transaction. Inserts each
-- identity not yet stored (the first of repeats within the batch wins) and answers the new rows
-- (inserted = true) and the existing ones (inserted = false). An identity committed by another
-- transaction after this statement's snapshot is in neither set: the caller asks again.
-- Rows are inserted in identity order, so two batches holding the same identities wait for
-- each other instead of deadlocking. The notifies come from the results_inserted_queued trigger.
-- On a broker transport (%(outbox)s) each new row's message intent goes to the outbox in the
-- same statement (outbox_id, outbox_not_before: sent right after the commit).
WITH input AS (
    SELECT *
      FROM unnest(%(job_ids)s::text[], %(hosts)s::text[], %(object_paths)s::text[],
                  %(urls)s::text[], %(source_urls)s::text[], %(url_expires_at)s::timestamptz[],
                  %(callback_urls)s::text[], %(callback_targets)s::text[])
           WITH ORDINALITY AS i(job_id, host, object_path, url, source_url, url_expires_at,
                                callback_url, callback_target, position)
), inserted AS (
    INSERT INTO results (job_id, host, object_path, url, source_url, url_expires_at,
                         callback_url, callback_target, callback_id, callback_status)
    SELECT DISTINCT ON (job_id, host, object_path)
           job_id, host, object_path, url, source_url, url_expires_at,
           callback_url, callback_target,
           CASE WHEN callback_url IS NOT NULL
                THEN 'msg_' || replace(gen_random_uuid()::text, '-', '') END,
           CASE WHEN callback_url IS NOT NULL THEN 'pending' END
      FROM input ORDER BY job_id, host, object_path, position
    ON CONFLICT ON CONSTRAINT results_identity DO NOTHING
    RETURNING host, {result_columns}
), outboxed AS (
    INSERT INTO queue_outbox (result_id)
    SELECT id FROM inserted WHERE %(outbox)s::boolean
    RETURNING id, result_id, not_before
)
SELECT true AS inserted, outboxed.id AS outbox_id, outboxed.not_before AS outbox_not_before,
       inserted.*
  FROM inserted LEFT JOIN outboxed ON outboxed.result_id = inserted.id
UNION ALL
SELECT false AS inserted, NULL::bigint, NULL::timestamptz, host, {result_columns}
  FROM results
  JOIN (SELECT DISTINCT job_id, host, object_path FROM input) AS i
 USING (job_id, host, object_path);

-- name: unchanged_since
-- Many 304 checks at once (conditional lists arriving together share one statement): for each
-- (job or every job, snapshot), whether no row in that scope has a writer the snapshot does not
-- see (migration 0003). Not seen are exactly the writers from the snapshot's xmax on and those
-- it lists as running (xip, a bounded list: see domain/listing.py): the scope's newest writer
-- (for every job, max(): one probe at the end of the writer index, whatever the planner
-- guesses; for one job, an index range from xmax: only rows written since the snapshot) and a
-- few index probes. Neither depends on how old the oldest running transaction is.
SELECT c.position,
       CASE WHEN c.job_id IS NULL
            THEN coalesce((SELECT max(r.writer) FROM results AS r)
                          < pg_snapshot_xmax(c.snapshot), true)
             AND NOT EXISTS (SELECT 1 FROM pg_snapshot_xip(c.snapshot) AS x(xid)
                              WHERE EXISTS (SELECT 1 FROM results AS r WHERE r.writer = x.xid))
            ELSE NOT EXISTS (SELECT 1 FROM results AS r
                              WHERE r.job_id = c.job_id
                                AND r.writer >= pg_snapshot_xmax(c.snapshot))
             AND NOT EXISTS (SELECT 1 FROM pg_snapshot_xip(c.snapshot) AS x(xid)
                              WHERE EXISTS (SELECT 1 FROM results AS r
                                             WHERE r.job_id = c.job_id AND r.writer = x.xid))
       END AS unchanged
  FROM unnest(%(job_ids)s::text[], %(snapshots)s::pg_snapshot[])
       WITH ORDINALITY AS c(job_id, snapshot, position);

-- name: claim_callbacks
-- The delivery task (migration 0009): up to %(limit)s due deliveries, each leased to
-- %(owner)s for %(lease_seconds)s as attempt callback_attempts + 1; rows other claimers hold
-- are skipped. A row whose last attempt's process died with %(max_attempts)s attempts spent
-- ends `failed` here instead (callback_status then answers which).
WITH due AS (
    SELECT id FROM results
     WHERE callback_due_at <= now()
     ORDER BY callback_due_at
     LIMIT %(limit)s
     FOR UPDATE SKIP LOCKED
), spent AS (
    SELECT r.id, r.callback_attempts >= %(max_attempts)s AS spent
      FROM results AS r JOIN due ON r.id = due.id
)
UPDATE results AS r
   SET callback_status = CASE WHEN s.spent THEN 'failed' ELSE 'pending' END,
       callback_attempts = CASE WHEN s.spent THEN r.callback_attempts
                                ELSE r.callback_attempts + 1 END,
       callback_last_error = CASE WHEN s.spent
                                  THEN 'the process delivering the last attempt stopped'
                                  ELSE r.callback_last_error END,
       callback_target = CASE WHEN s.spent THEN NULL ELSE r.callback_target END,
       callback_lease_owner = CASE WHEN s.spent THEN NULL ELSE %(owner)s::text END,
       callback_due_at = CASE WHEN s.spent THEN NULL
                              ELSE clock_timestamp() + make_interval(secs => %(lease_seconds)s)
                         END
  FROM spent AS s
 WHERE r.id = s.id
RETURNING r.id, r.job_id, r.callback_target, r.callback_id, r.callback_attempts,
          r.callback_status;

-- name: seconds_until_next_callback
SELECT greatest(0, extract(epoch FROM min(callback_due_at) - clock_timestamp()))::float8
       AS seconds
  FROM results
 WHERE callback_due_at IS NOT NULL;

-- name: callback_delivered
-- Fenced on (owner, attempt), like every outcome: a delivery whose lease was taken over
-- records nothing. The URL as given is erased: it is needed no more.
UPDATE results
   SET callback_status = 'delivered', callback_target = NULL, callback_due_at = NULL,
       callback_lease_owner = NULL
 WHERE id = %(id)s AND callback_status = 'pending'
   AND callback_lease_owner = %(owner)s AND callback_attempts = %(attempts)s
RETURNING callback_status;

-- name: callback_hand_back
-- A graceful shutdown interrupted the attempt: due again at once, the attempt not spent.
UPDATE results
   SET callback_attempts = callback_attempts - 1, callback_due_at = clock_timestamp(),
       callback_lease_owner = NULL
 WHERE id = %(id)s AND callback_status = 'pending'
   AND callback_lease_owner = %(owner)s AND callback_attempts = %(attempts)s
RETURNING callback_status;

-- name: callback_not_delivered
-- Retried after %(delay_seconds)s, or `failed` (the URL erased) when that is null.
UPDATE results
   SET callback_status = CASE WHEN %(delay_seconds)s::float8 IS NULL THEN 'failed'
                              ELSE 'pending' END,
       callback_target = CASE WHEN %(delay_seconds)s::float8 IS NULL THEN NULL
                              ELSE callback_target END,
       callback_due_at = clock_timestamp()
                         + make_interval(secs => %(delay_seconds)s::float8),
       callback_last_error = %(error)s::text,
       callback_lease_owner = NULL
 WHERE id = %(id)s AND callback_status = 'pending'
   AND callback_lease_owner = %(owner)s AND callback_attempts = %(attempts)s
RETURNING callback_status;

-- name: changes_since
-- The live stream's changes (GET /results/stream): the rows of one job (or of every job) whose
-- writer the position %(since)s does not see (migration 0003: its xmax on, and its xip list,
-- passed as an array as well so that the planner probes the writer index for each entry),
-- less those a resumed event id says were sent already (writer seen by %(sent)s and
-- (writer, id) up to the cursor), with the statement's own snapshot: the next position. Each
-- branch is an index range or a few index probes on writer, never a scan of the table.
-- Answers at least one row; a row whose id is null stands for no change.
SELECT version.snapshot, changed.*
  FROM (SELECT pg_current_snapshot()::text AS snapshot) AS version
  LEFT JOIN LATERAL (
        SELECT {result_columns}, r.writer::text AS writer
          FROM (SELECT * FROM results
                 WHERE writer >= pg_snapshot_xmax(%(since)s::pg_snapshot)
                   AND (%(job_id)s::text IS NULL OR job_id = %(job_id)s::text)
                UNION ALL
                SELECT * FROM results
                 WHERE writer = ANY (%(since_xip)s::text[]::xid8[])
                   AND (%(job_id)s::text IS NULL OR job_id = %(job_id)s::text)
               ) AS r
         WHERE (%(sent)s::pg_snapshot IS NULL
                OR NOT (pg_visible_in_snapshot(r.writer, %(sent)s::pg_snapshot)
                        AND (r.writer, r.id) <= (%(sent_writer)s::xid8, %(sent_id)s::bigint)))
  ) AS changed ON true
 ORDER BY changed.writer::xid8, changed.id;

-- name: outbox_sweep
-- A relay's sweep (migration 0010): up to %(limit)s message intents a crash left behind (not
-- sent within %(grace_seconds)s of relay_after, by the process that wrote them), due within
-- %(horizon_seconds)s (the longest delay the broker applies), each put off by
-- %(lease_seconds)s meanwhile so that other sweeps leave it alone.
WITH due AS (
    SELECT id FROM queue_outbox
     WHERE relay_after <= now() - make_interval(secs => %(grace_seconds)s)
       AND not_before <= now() + make_interval(secs => %(horizon_seconds)s)
     ORDER BY relay_after
     LIMIT %(limit)s
     FOR UPDATE SKIP LOCKED
)
UPDATE queue_outbox AS o
   SET relay_after = clock_timestamp() + make_interval(secs => %(lease_seconds)s)
  FROM due
 WHERE o.id = due.id
RETURNING o.id, o.result_id, o.not_before;

-- name: outbox_sent
-- The broker accepted these messages: their intents are done.
DELETE FROM queue_outbox WHERE id = ANY(%(ids)s::bigint[]);

-- name: current_snapshot
SELECT pg_current_snapshot()::text AS snapshot;
