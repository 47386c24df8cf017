-- Completion callbacks (webhooks): an outbox in the results row itself.
--
-- A result enqueued with a callbackUrl carries its delivery obligation from the start
-- (callback_status 'pending'); the trigger below makes it due in the same transaction as the
-- terminal state, so a crash right after that commit delays the delivery, never loses it.
-- A delivery task claims due rows with FOR UPDATE SKIP LOCKED and moves callback_due_at
-- forward meanwhile (its lease, held by callback_lease_owner for attempt callback_attempts):
-- every outcome of a delivery is fenced on (owner, attempt), as the download attempts are.
ALTER TABLE results
    -- Shown to clients: the callback URL without query string and fragment.
    ADD COLUMN callback_url text,
    -- The URL as given (its query may be a credential): erased once delivered or failed.
    ADD COLUMN callback_target text,
    -- The webhook-id: the same on every attempt of one result, unique across services.
    ADD COLUMN callback_id text,
    ADD COLUMN callback_status text
        CHECK (callback_status IN ('pending', 'delivered', 'failed')),
    ADD COLUMN callback_attempts integer NOT NULL DEFAULT 0 CHECK (callback_attempts >= 0),
    ADD COLUMN callback_last_error text,
    ADD COLUMN callback_due_at timestamptz,
    ADD COLUMN callback_lease_owner text,
    ADD CONSTRAINT results_callback_whole CHECK (
        (callback_url IS NULL) = (callback_status IS NULL)
        AND (callback_url IS NULL) = (callback_id IS NULL)
    ),
    ADD CONSTRAINT results_callback_done_forgets_target CHECK (
        callback_status IS DISTINCT FROM 'delivered' AND callback_status IS DISTINCT FROM 'failed'
        OR (callback_target IS NULL AND callback_due_at IS NULL)
    );

-- The delivery task's claim and its "when is the next one due".
CREATE INDEX results_callback_due ON results (callback_due_at)
    WHERE callback_due_at IS NOT NULL;

CREATE FUNCTION results_callback_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.callback_due_at := clock_timestamp();
    RETURN NEW;
END
$$;

CREATE TRIGGER results_callback_on_end
    BEFORE UPDATE OF status ON results
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'canceled')
          AND OLD.status IN ('queued', 'running')
          AND NEW.callback_status = 'pending' AND NEW.callback_due_at IS NULL)
    EXECUTE FUNCTION results_callback_due();

-- A client sees the callback's state, so a change of it must change list ETags (migration
-- 0003): the trigger is re-created from 0007 with the callback columns added to its WHEN list.
DROP TRIGGER results_visible_change ON results;
CREATE TRIGGER results_visible_change
    BEFORE UPDATE ON results
    FOR EACH ROW
    WHEN ((OLD.status, OLD.attempts, OLD.error_code, OLD.error_message, OLD.storage_key,
           OLD.started_at, OLD.ended_at, OLD.canceled_at, OLD.updated_at,
           OLD.progress_received_bytes, OLD.progress_total_bytes,
           OLD.callback_status, OLD.callback_attempts, OLD.callback_last_error)
          IS DISTINCT FROM
          (NEW.status, NEW.attempts, NEW.error_code, NEW.error_message, NEW.storage_key,
           NEW.started_at, NEW.ended_at, NEW.canceled_at, NEW.updated_at,
           NEW.progress_received_bytes, NEW.progress_total_bytes,
           NEW.callback_status, NEW.callback_attempts, NEW.callback_last_error))
    EXECUTE FUNCTION results_set_writer();
