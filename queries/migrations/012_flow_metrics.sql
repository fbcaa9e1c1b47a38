-- Prometheus counters and histograms of flows (GET /metrics/flows), accumulated as flows
-- settle, so they only grow: across scrapes, restarts and retention deletes.

-- One row per series: metric name, rendered label set, value.
CREATE TABLE export_counters (
    metric VARCHAR NOT NULL,
    labels VARCHAR NOT NULL,
    value  DOUBLE  NOT NULL,
    PRIMARY KEY (metric, labels)
);

-- The label value each chain or destination is exported under: its own name for the
-- first N seen (the cardinality cap), `other` after that; fixed once given, so every
-- series stays monotonic.
CREATE TABLE export_labels (
    kind  VARCHAR NOT NULL,  -- chain | destination
    name  VARCHAR NOT NULL,
    label VARCHAR NOT NULL,
    PRIMARY KEY (kind, name)
);

-- How far the roll-up got: flows by their last commit, queue counts by commit.
CREATE TABLE export_progress (
    name       VARCHAR NOT NULL PRIMARY KEY,
    commit_seq BIGINT  NOT NULL
);
