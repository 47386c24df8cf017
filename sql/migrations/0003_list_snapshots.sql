-- List ETags from snapshots instead of change numbers: no row that every writer locks.
--
-- 0002 bumped a counter for scope '*' in every writing transaction; its row lock serialised
-- every write in the cluster through the commit's WAL flush. Instead, each row now records the
-- top-level transaction that last changed what a client sees of it (`writer`), and a list's
-- ETag carries the snapshot its page was read in (`pg_current_snapshot()`, same statement).
-- "Nothing this query could return changed since snapshot S" is then:
--
--     no row in the scope has a writer that is not visible in S
--
-- A row inserted or changed after S has a writer that committed after S (or was running at
-- S): not visible in S. A row changed by T1 and then by T2, both after S, has writer T2, which
-- committed after T1 and so after S as well. A row whose writer is visible in S is exactly the
-- row S saw. So the test holds whatever order transactions start and commit in. And it is
-- cheap: the writers S does not see are exactly those from its xmax on and those it lists as
-- running, so two indexes answer it in a few probes (sql/queries.sql, unchanged_since).
--
-- pg_current_xact_id() is the top-level transaction's id even inside a savepoint or a trigger,
-- and xid8 never wraps around.

-- The volatile default rewrites the table once: existing rows get this migration's xid, which
-- every later snapshot sees.
ALTER TABLE results ADD COLUMN writer xid8 NOT NULL DEFAULT pg_current_xact_id();

-- Only changes a client can see: a lease extension is not one (the same columns 0002 watched).
CREATE FUNCTION results_set_writer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.writer := pg_current_xact_id();
    RETURN NEW;
END
$$;

CREATE TRIGGER results_visible_change
    BEFORE UPDATE ON results
    FOR EACH ROW
    WHEN ((OLD.status, OLD.attempts, OLD.error_code, OLD.error_message, OLD.storage_key,
           OLD.started_at, OLD.ended_at, OLD.canceled_at, OLD.updated_at)
          IS DISTINCT FROM
          (NEW.status, NEW.attempts, NEW.error_code, NEW.error_message, NEW.storage_key,
           NEW.started_at, NEW.ended_at, NEW.canceled_at, NEW.updated_at))
    EXECUTE FUNCTION results_set_writer();

-- The 304 check of one job's lists, and of the lists of every result.
CREATE INDEX results_job_writer ON results (job_id, writer);
CREATE INDEX results_writer ON results (writer);

DROP TRIGGER results_inserted_changes ON results;
DROP TRIGGER results_updated_changes ON results;
DROP FUNCTION results_bump_change_numbers();
DROP TABLE result_changes;
