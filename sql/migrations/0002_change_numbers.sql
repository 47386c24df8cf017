-- Change numbers for list ETags, right by construction.
--
-- Every transaction that inserts a result or changes what a client can see of one bumps, at its
-- COMMIT (a deferred constraint trigger), the counter of scope '*' and of scope 'job:<jobId>'.
-- The row lock on '*' serialises the bumps, so the numbers follow commit order: a snapshot that
-- sees number N sees every transaction numbered up to N and none after. A list query reads its
-- scope's number in the same statement as its page, so (query, number) names exactly the data
-- returned, and any later change gives a larger number — never a stale 304, even when
-- transactions commit out of timestamp order.
CREATE TABLE result_changes (
    scope       text   PRIMARY KEY,
    change_no   bigint NOT NULL,
    -- the transaction that bumped it last: one bump per transaction and scope
    last_xid    xid8   NOT NULL
);

CREATE FUNCTION results_bump_change_numbers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- '*' first, always: it serialises writers, so the per-job rows never deadlock.
    INSERT INTO result_changes AS c (scope, change_no, last_xid)
    VALUES ('*', 1, pg_current_xact_id())
    ON CONFLICT (scope) DO UPDATE
        SET change_no = c.change_no + 1, last_xid = excluded.last_xid
        WHERE c.last_xid <> excluded.last_xid;
    INSERT INTO result_changes AS c (scope, change_no, last_xid)
    VALUES ('job:' || NEW.job_id, 1, pg_current_xact_id())
    ON CONFLICT (scope) DO UPDATE
        SET change_no = c.change_no + 1, last_xid = excluded.last_xid
        WHERE c.last_xid <> excluded.last_xid;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER results_inserted_changes
    AFTER INSERT ON results
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION results_bump_change_numbers();

-- Only changes a client can see: a lease extension is not one.
CREATE CONSTRAINT TRIGGER results_updated_changes
    AFTER UPDATE ON results
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN ((OLD.status, OLD.attempts, OLD.error_code, OLD.error_message, OLD.storage_key,
           OLD.started_at, OLD.ended_at, OLD.canceled_at, OLD.updated_at)
          IS DISTINCT FROM
          (NEW.status, NEW.attempts, NEW.error_code, NEW.error_message, NEW.storage_key,
           NEW.started_at, NEW.ended_at, NEW.canceled_at, NEW.updated_at))
    EXECUTE FUNCTION results_bump_change_numbers();

-- Listing: by status within the id order.
CREATE INDEX results_status_id ON results (status, id);

-- The key that signs list cursors, shared by every process on this database.
CREATE TABLE service_keys (
    name  text PRIMARY KEY,
    key   text NOT NULL
);
INSERT INTO service_keys (name, key)
VALUES ('cursor', md5(random()::text || clock_timestamp()::text) || md5(random()::text));

-- A cancel requested for a running result reaches the process holding it, in the same
-- transaction as the flag.
CREATE FUNCTION results_notify_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bgc_cancels', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER results_cancel_requested
    AFTER UPDATE OF cancel_requested ON results
    FOR EACH ROW WHEN (NEW.cancel_requested AND NOT OLD.cancel_requested)
    EXECUTE FUNCTION results_notify_cancel();
