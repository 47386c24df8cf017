-- Presigned URLs: when the source URL stops working, read from its query at enqueue (null:
-- it names none). Set once at insert and never changed, so the results_visible_change
-- trigger (0003) need not watch it: the insert's writer already covers it.
ALTER TABLE results ADD COLUMN url_expires_at timestamptz;

-- Claiming: due queued rows earliest-expiring first (no expiry last). One index serves both
-- branches of claim_due, each bounded by the due condition where it can be: rows without an
-- expiry are one range (url_expires_at IS NULL, due_at <= now()); rows with one are read in
-- expiry order, due_at checked on the index tuple, and the scan stops where the nulls begin.
CREATE INDEX results_queued_expiry ON results (url_expires_at, due_at, id)
    WHERE status = 'queued';
