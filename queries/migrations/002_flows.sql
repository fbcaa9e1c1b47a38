-- Flows, written by the background stitcher (src/flows/stitch/). A flow's rows in
-- every flow_* table are replaced together whenever the flow changes (new spans, merges).
-- flow_id is the trace id of the flow's entry-point span.

CREATE TABLE flows (
    flow_id           VARCHAR NOT NULL,
    chain             VARCHAR NOT NULL,
    root_service      VARCHAR NOT NULL,
    root_name         VARCHAR NOT NULL,
    path              VARCHAR NOT NULL,   -- JSON array: services and destinations in order
    services          VARCHAR NOT NULL,   -- JSON array
    start_unix_nano   BIGINT  NOT NULL,
    end_unix_nano     BIGINT  NOT NULL,
    duration_ms       DOUBLE  NOT NULL,
    span_count        INTEGER NOT NULL,
    trace_count       INTEGER NOT NULL,
    error             BOOLEAN NOT NULL,
    hops              INTEGER NOT NULL,
    retries           INTEGER NOT NULL,
    dead_letters      INTEGER NOT NULL,
    queue_wait_ms     DOUBLE  NOT NULL,
    service_ms        DOUBLE  NOT NULL,
    retry_delay_ms    DOUBLE  NOT NULL,
    clock_skew_hops   INTEGER NOT NULL,
    updated_unix_nano BIGINT  NOT NULL
);

CREATE TABLE flow_traces (
    flow_id  VARCHAR NOT NULL,
    trace_id VARCHAR NOT NULL
);

CREATE TABLE flow_hops (
    flow_id            VARCHAR NOT NULL,
    hop_index          INTEGER NOT NULL,
    system             VARCHAR,
    destination        VARCHAR,
    producer_trace_id  VARCHAR,
    producer_span_id   VARCHAR,
    producer_service   VARCHAR,
    consumer_span_ids  VARCHAR NOT NULL,  -- JSON array
    consumer_service   VARCHAR,
    sent_unix_nano     BIGINT  NOT NULL,
    queue_wait_ms      DOUBLE  NOT NULL,
    clock_skew         BOOLEAN NOT NULL,
    dead_letter        BOOLEAN NOT NULL
);

CREATE TABLE flow_retries (
    flow_id        VARCHAR NOT NULL,
    time_unix_nano BIGINT  NOT NULL,
    service        VARCHAR NOT NULL,
    destination    VARCHAR,
    span_id        VARCHAR NOT NULL,
    attempt        INTEGER NOT NULL,
    delay_ms       DOUBLE  NOT NULL
);

CREATE TABLE flow_dead_letters (
    flow_id            VARCHAR NOT NULL,
    time_unix_nano     BIGINT  NOT NULL,
    destination        VARCHAR NOT NULL,
    source_destination VARCHAR,
    message_id         VARCHAR,
    correlation_id     VARCHAR,
    error              VARCHAR,
    span_id            VARCHAR NOT NULL
);

-- Message or correlation ids shared by too many traces to identify one operation.
CREATE TABLE ignored_join_keys (
    kind                VARCHAR NOT NULL,
    value               VARCHAR NOT NULL,
    traces              BIGINT  NOT NULL,
    detected_unix_nano  BIGINT  NOT NULL
);
