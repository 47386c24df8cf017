-- The content check: `storage_content_type` is now the type the bytes themselves show;
-- what the origin's Content-Type header said is kept beside it. Null for results stored before.
--
-- No change to the results_visible_change trigger (0003): like every storage_* column, this one
-- is only ever written by record_success, in the same UPDATE that changes `status` (and
-- `storage_key`), both of which the trigger already watches; so the row's writer moves with it.
ALTER TABLE results ADD COLUMN storage_declared_content_type text;
