-- Raw OTLP signals as received. Times are unix nanoseconds; ids are lower-case hex;
-- attribute columns hold JSON objects (query them with DuckDB's json functions, e.g.
-- `attributes::JSON->>'http.route'`). `commit_seq` numbers the group commit a row arrived
-- in: background stages (flow stitching) read "everything after the last seq I saw".

CREATE TABLE spans (
    trace_id             VARCHAR NOT NULL,
    span_id              VARCHAR NOT NULL,
    parent_span_id       VARCHAR,
    trace_state          VARCHAR,
    service_name         VARCHAR NOT NULL,
    scope_name           VARCHAR,
    name                 VARCHAR NOT NULL,
    kind                 VARCHAR NOT NULL,
    start_unix_nano      BIGINT  NOT NULL,
    end_unix_nano        BIGINT  NOT NULL,
    status_code          VARCHAR NOT NULL,
    status_message       VARCHAR,
    attributes           VARCHAR NOT NULL,
    resource_attributes  VARCHAR NOT NULL,
    events               VARCHAR,
    link_count           INTEGER NOT NULL,
    messaging_system     VARCHAR,
    messaging_operation  VARCHAR,
    destination          VARCHAR,
    message_id           VARCHAR,
    correlation_id       VARCHAR,
    consumer_group       VARCHAR,
    partition_id         VARCHAR,
    batch_message_count  BIGINT,
    attempt              INTEGER,
    dead_letter_evidence BOOLEAN NOT NULL,
    commit_seq           BIGINT  NOT NULL
);

CREATE TABLE span_links (
    trace_id             VARCHAR NOT NULL,
    span_id              VARCHAR NOT NULL,
    linked_trace_id      VARCHAR NOT NULL,
    linked_span_id       VARCHAR NOT NULL,
    attributes           VARCHAR NOT NULL,
    message_id           VARCHAR,
    span_start_unix_nano BIGINT  NOT NULL,
    commit_seq           BIGINT  NOT NULL
);

CREATE TABLE logs (
    time_unix_nano          BIGINT  NOT NULL,
    observed_time_unix_nano BIGINT  NOT NULL,
    service_name            VARCHAR NOT NULL,
    severity_number         INTEGER NOT NULL,
    severity_text           VARCHAR,
    body                    VARCHAR,
    event_name              VARCHAR,
    trace_id                VARCHAR,
    span_id                 VARCHAR,
    attributes              VARCHAR NOT NULL,
    resource_attributes     VARCHAR NOT NULL,
    correlation_id          VARCHAR,
    message_id              VARCHAR,
    commit_seq              BIGINT  NOT NULL
);

CREATE TABLE metric_points (
    time_unix_nano       BIGINT  NOT NULL,
    start_time_unix_nano BIGINT,
    service_name         VARCHAR NOT NULL,
    metric_name          VARCHAR NOT NULL,
    unit                 VARCHAR,
    metric_type          VARCHAR NOT NULL,
    value                DOUBLE,
    count                BIGINT,
    sum                  DOUBLE,
    min                  DOUBLE,
    max                  DOUBLE,
    buckets              VARCHAR,
    is_monotonic         BOOLEAN,
    temporality          VARCHAR,
    attributes           VARCHAR NOT NULL,
    resource_attributes  VARCHAR NOT NULL,
    messaging_system     VARCHAR,
    destination          VARCHAR,
    commit_seq           BIGINT  NOT NULL
);
