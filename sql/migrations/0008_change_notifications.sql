-- Live result streams (GET /results/stream) hear of each commit that changes what a client sees
-- of a result: an insert, or an update whose `writer` the visible-change trigger (0003, 0007)
-- set anew. The payload is constant so that PostgreSQL folds a transaction's notifications
-- into one; a listener then reads the changes by position (sql/queries.sql, changes_since), so
-- a lost notification delays nothing the next one does not bring.
CREATE FUNCTION results_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bgc_changes', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER results_inserted_notify
    AFTER INSERT ON results
    FOR EACH ROW
    EXECUTE FUNCTION results_notify_change();

CREATE TRIGGER results_changed_notify
    AFTER UPDATE ON results
    FOR EACH ROW
    WHEN (OLD.writer IS DISTINCT FROM NEW.writer)
    EXECUTE FUNCTION results_notify_change();
