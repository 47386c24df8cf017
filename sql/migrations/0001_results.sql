-- The results table: one row per remote image a client asked us to copy.
CREATE TABLE results (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id                text        NOT NULL CHECK (char_length(job_id) BETWEEN 1 AND 200),
    host                  text        NOT NULL,
    object_path           text        NOT NULL,
    -- Shown to clients: the URL without query string and fragment.
    url                   text        NOT NULL,
    -- The URL as given (a presigned query is a credential): erased once the result is terminal.
    source_url            text,
    status                text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    attempts              integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    error_code            text,
    error_message         text,
    storage_bucket        text,
    storage_key           text,
    storage_size          bigint,
    storage_content_type  text,
    storage_sha256        text,
    created_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at            timestamptz,
    ended_at              timestamptz,
    canceled_at           timestamptz,
    -- When a queued row may be claimed: now for new rows, later for scheduled retries.
    due_at                timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Held by the worker process running the row; when it passes, the row is taken up again.
    lease_owner           text,
    lease_expires_at      timestamptz,
    cancel_requested      boolean     NOT NULL DEFAULT false,
    CONSTRAINT results_identity UNIQUE (job_id, host, object_path),
    CONSTRAINT results_terminal_has_end CHECK (
        status NOT IN ('succeeded', 'failed', 'canceled') OR ended_at IS NOT NULL
    ),
    CONSTRAINT results_terminal_forgets_source CHECK (
        status NOT IN ('succeeded', 'failed', 'canceled') OR source_url IS NULL
    ),
    CONSTRAINT results_running_has_lease CHECK (
        status <> 'running' OR lease_expires_at IS NOT NULL
    )
);

-- Claiming: the due queued rows, oldest due first.
CREATE INDEX results_queued_due ON results (due_at, id) WHERE status = 'queued';
-- The reaper: running rows by lease expiry.
CREATE INDEX results_running_lease ON results (lease_expires_at) WHERE status = 'running';
-- Listing one job's results in id order.
CREATE INDEX results_job_id ON results (job_id, id);

-- Every row that becomes queued (inserted, retried, handed back) wakes the dispatchers, in the
-- same transaction: a rolled-back insert wakes nobody, a committed one is visible when woken.
CREATE FUNCTION results_notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bgc_results', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER results_inserted_queued
    AFTER INSERT ON results
    FOR EACH ROW WHEN (NEW.status = 'queued')
    EXECUTE FUNCTION results_notify_queued();

CREATE TRIGGER results_requeued
    AFTER UPDATE OF status ON results
    FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status <> 'queued')
    EXECUTE FUNCTION results_notify_queued();
