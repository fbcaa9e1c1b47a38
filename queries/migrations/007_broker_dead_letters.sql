-- Dead letters moved by the broker (RabbitMQ dead-letter exchanges, SQS redrive) and one
-- name per queue.

-- The queue a broker dead-lettered the message from (RabbitMQ `x-death` queue), when the
-- consumer of the dead-letter queue recorded it.
ALTER TABLE spans ADD COLUMN dead_letter_source VARCHAR;

-- A dead-letter hop the broker made has no publish span: where the message was before.
ALTER TABLE flow_hops ADD COLUMN source_destination VARCHAR;
-- The attempt a retry repeats, so the timeline can number every attempt.
ALTER TABLE flow_retries ADD COLUMN previous_span_id VARCHAR;

-- Names under which one queue is seen: RabbitMQ publishes name an exchange (and routing
-- key) while consumers and depth metrics name the queue. Learnt by the stitcher from
-- publish -> consume pairs and from dead-letter records; the queue pages show one entry
-- per queue, fed by its aliases. Aliases from the config file (`[queue_aliases]`) are
-- rows with origin 'config' and system '' (any system), replaced at every start.
CREATE TABLE queue_aliases (
    system           VARCHAR NOT NULL,
    alias            VARCHAR NOT NULL,
    queue            VARCHAR NOT NULL,
    learnt_unix_nano BIGINT  NOT NULL,
    origin           VARCHAR NOT NULL DEFAULT 'learnt'
);

-- The span columns the stitcher reads (src/store/feed.rs SPAN_FACT_COLUMNS, which the
-- writer's in-memory feed keeps too), plus commit_seq: its reads of new spans and of
-- evicted traces select from this view.
CREATE VIEW span_facts AS
SELECT trace_id, span_id, parent_span_id, service_name, name, kind, start_unix_nano, end_unix_nano,
       status_code, status_message, messaging_system, messaging_operation, destination,
       message_id, correlation_id, attempt, dead_letter_evidence, dead_letter_source, commit_seq
FROM spans;
