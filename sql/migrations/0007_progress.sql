-- Download progress on a result: the bytes the current (or last) attempt has received, and the
-- total the origin announced (its GET's Content-Length; null for a chunked body). Null until
-- an attempt's first byte arrives; each attempt overwrites it from its first write on. Written
-- with the lease extension (sql/queries.sql, extend_lease), at most once per
-- BGC_PROGRESS_SECONDS per download, and with the attempt's outcome.
ALTER TABLE results
    ADD COLUMN progress_received_bytes bigint,
    ADD COLUMN progress_total_bytes bigint;

-- A client sees progress, so a change of it must change list ETags (migration 0003): the
-- trigger is re-created with the progress columns in its WHEN list. A lease extension that
-- writes no new progress still changes nothing a client sees.
DROP TRIGGER results_visible_change ON results;
CREATE TRIGGER results_visible_change
    BEFORE UPDATE ON results
    FOR EACH ROW
    WHEN ((OLD.status, OLD.attempts, OLD.error_code, OLD.error_message, OLD.storage_key,
           OLD.started_at, OLD.ended_at, OLD.canceled_at, OLD.updated_at,
           OLD.progress_received_bytes, OLD.progress_total_bytes)
          IS DISTINCT FROM
          (NEW.status, NEW.attempts, NEW.error_code, NEW.error_message, NEW.storage_key,
           NEW.started_at, NEW.ended_at, NEW.canceled_at, NEW.updated_at,
           NEW.progress_received_bytes, NEW.progress_total_bytes))
    EXECUTE FUNCTION results_set_writer();
