-- A cancel answered 202 always ends `canceled`, and a result that is not `succeeded` keeps
-- nothing in the bucket, whatever happened to the processes that ran it.

-- When the bucket must be cleaned for this result (every multipart upload of its key aborted,
-- the key deleted): null when there is nothing to clean. Set in the same transaction as the
-- terminal state, so a process dying right after recording it loses no clean-up. The sweep
-- claims a due row by moving this forward (a lease: a crashed sweep is retried later) and
-- sets it to null when the bucket is clean.
ALTER TABLE results ADD COLUMN storage_cleanup_due_at timestamptz;

CREATE INDEX results_storage_cleanup ON results (storage_cleanup_due_at)
    WHERE storage_cleanup_due_at IS NOT NULL;

-- Any way a result that has been attempted ends `failed` or `canceled` (a worker's outcome,
-- the reaper, a cancel while queued between retries) may have left an object or an open
-- upload behind: an attempt can die at any point of its upload.
CREATE FUNCTION results_require_storage_cleanup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.storage_cleanup_due_at := coalesce(NEW.storage_cleanup_due_at, clock_timestamp());
    RETURN NEW;
END
$$;

CREATE TRIGGER results_ended_unsucceeded
    BEFORE UPDATE OF status ON results
    FOR EACH ROW
    WHEN (NEW.status IN ('failed', 'canceled') AND OLD.status IN ('queued', 'running')
          AND NEW.attempts > 0)
    EXECUTE FUNCTION results_require_storage_cleanup();

-- Results a cancel was requested for and that were queued again before this migration (the
-- old retry path kept the flag): they end now, as docs/http.md says.
UPDATE results
   SET status = 'canceled', canceled_at = clock_timestamp(), ended_at = clock_timestamp(),
       source_url = NULL, updated_at = clock_timestamp()
 WHERE status = 'queued' AND cancel_requested;

-- From now on no query may queue a result a cancel was requested for. (The update's deferred
-- trigger events must fire first: ALTER TABLE refuses a table with events pending.)
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE results ADD CONSTRAINT results_canceled_never_queued
    CHECK (status <> 'queued' OR NOT cancel_requested);

-- Dispatchers ignore the payload: a constant one lets PostgreSQL fold the notifications of one
-- transaction into one (an enqueue batch of 500 rows wakes each dispatcher once). The cancel
-- channel keeps the id: it says which attempt to stop.
CREATE OR REPLACE FUNCTION results_notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bgc_results', '');
    RETURN NULL;
END
$$;
