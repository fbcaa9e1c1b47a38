-- Alerting: rules (created in the UI/API; rules from the rules file live only in memory),
-- the state of each alert instance (one per rule and queue/chain), the history of
-- transitions, and webhook delivery outcomes. Instance state survives restarts so a
-- firing alert is not notified again.

CREATE TABLE alert_rules (
    id         VARCHAR NOT NULL,
    rule       VARCHAR NOT NULL,   -- the rule as JSON, in the API's shape
    created_unix_nano BIGINT NOT NULL,
    updated_unix_nano BIGINT NOT NULL
);

CREATE TABLE alert_instances (
    fingerprint        VARCHAR NOT NULL,
    rule_id            VARCHAR NOT NULL,
    labels             VARCHAR NOT NULL,  -- JSON object
    annotations        VARCHAR NOT NULL,  -- JSON object
    state              VARCHAR NOT NULL,  -- pending | firing
    value              DOUBLE,
    active_since_unix_nano BIGINT NOT NULL,
    firing_since_unix_nano BIGINT,
    page               VARCHAR NOT NULL   -- where the problem shows, relative to the UI root
);

CREATE TABLE alert_history (
    time_unix_nano BIGINT  NOT NULL,
    rule_id        VARCHAR NOT NULL,
    rule_name      VARCHAR NOT NULL,
    fingerprint    VARCHAR NOT NULL,
    transition     VARCHAR NOT NULL,  -- pending | firing | resolved | cancelled
    value          DOUBLE,
    labels         VARCHAR NOT NULL
);

CREATE TABLE alert_deliveries (
    time_unix_nano BIGINT  NOT NULL,
    receiver       VARCHAR NOT NULL,
    fingerprint    VARCHAR NOT NULL,
    status         VARCHAR NOT NULL,  -- firing | resolved
    attempts       INTEGER NOT NULL,
    outcome        VARCHAR NOT NULL,  -- delivered | failed | retrying
    error          VARCHAR
);
