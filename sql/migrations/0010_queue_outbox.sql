-- The message outbox of the broker transports (BGC_QUEUE=sqs or rabbitmq; unused, and empty,
-- with the default `postgres`). A statement that makes a result due (the enqueue, a retry, a
-- hand-back, the reaper) writes one row here in its own commit: the intent to send a message
-- "run result_id, no sooner than not_before". The process that committed sends it right after
-- the commit and deletes the row; a row a crash left behind is sent by any process's sweep
-- a few seconds after relay_after (each sweep moves relay_after on while it sends: its lease).
-- PostgreSQL stays the record of the result itself; a row is only a message not yet sent.
CREATE TABLE queue_outbox (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    result_id    bigint      NOT NULL,
    not_before   timestamptz NOT NULL DEFAULT clock_timestamp(),
    relay_after  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The sweep: rows left behind, by when they may be taken.
CREATE INDEX queue_outbox_relay_after ON queue_outbox (relay_after);
