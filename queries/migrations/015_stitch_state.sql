-- Stitching state on disk (src/flows/stitch/late_joins.rs). The stitcher
-- no longer replays stored spans on start: it resumes from `stitch_state`, and joins a
-- late span to a stored flow by looking the span's trace id, link targets, message id and
-- correlation id up in `flow_traces` and `flow_join_keys`. Keys are 64-bit hashes
-- (`trace_key`, `key`): a scan of one BIGINT column is a fraction of a scan of strings,
-- and no ART index (held wholly in memory by DuckDB) grows with the stored traces.
-- Every row of a flow carries the time it was written (`updated_unix_nano`), the order
-- in which rows are appended, so zone maps confine a lookup to the join window and
-- find a flow's rows by (flow_id, updated_unix_nano) without an index. The flow-id ART
-- indexes of 004 go: each held an entry per stored flow in memory (over 500 MB at 10
-- million spans, more than DuckDB's share of the memory budget).
--
-- Flows stored before this migration have no join keys, so they are recomputed: the
-- flow tables are emptied and a background restitch from the first commit rebuilds them
-- while new data keeps arriving (progress on /metrics and on every page).
DROP INDEX IF EXISTS flow_traces_trace_id;
DROP INDEX IF EXISTS flow_traces_flow_id;
DROP INDEX IF EXISTS flows_flow_id;
DROP INDEX IF EXISTS flow_hops_flow_id;
DROP INDEX IF EXISTS flow_retries_flow_id;
DROP INDEX IF EXISTS flow_dead_letters_flow_id;
ALTER TABLE flow_hops ADD COLUMN updated_unix_nano BIGINT;
ALTER TABLE flow_retries ADD COLUMN updated_unix_nano BIGINT;
ALTER TABLE flow_dead_letters ADD COLUMN updated_unix_nano BIGINT;
DROP TABLE flow_traces;
CREATE TABLE flow_traces (
    flow_id              VARCHAR NOT NULL,
    trace_id             VARCHAR NOT NULL,
    trace_key            BIGINT  NOT NULL,  -- join hash of the trace id
    flow_start_unix_nano BIGINT  NOT NULL,
    updated_unix_nano    BIGINT  NOT NULL
);

-- What else joins a flow's traces: links (kind 'link', value the linked trace id, key
-- its trace hash) and message and correlation ids still used for joining.
CREATE TABLE flow_join_keys (
    key                  BIGINT  NOT NULL,
    flow_id              VARCHAR NOT NULL,
    trace_id             VARCHAR NOT NULL,
    kind                 VARCHAR NOT NULL,  -- link | message_id | correlation_id
    value                VARCHAR NOT NULL,
    flow_start_unix_nano BIGINT  NOT NULL,
    updated_unix_nano    BIGINT  NOT NULL
);

-- name -> value: 'stitched_seq' (every commit up to it is stitched), 'restitch_to' (a
-- restitch is running until the watermark reaches it; 0: none), 'restitch_from'.
CREATE TABLE stitch_state (
    name  VARCHAR NOT NULL,
    value BIGINT  NOT NULL
);
INSERT INTO stitch_state VALUES
    ('stitched_seq', 0),
    ('restitch_from', 0),
    ('restitch_to', (SELECT coalesce(max(commit_seq), 0) FROM commits));

DELETE FROM flows;
DELETE FROM flow_hops;
DELETE FROM flow_retries;
DELETE FROM flow_dead_letters;
DELETE FROM flow_edge_slots;
