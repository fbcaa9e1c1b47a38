-- Retention goes by when data was received, not by the timestamps exporters put in it
-- (a span dated 1970 is not old, one dated next year is not young).

-- When each group commit happened; rows carry the commit's `commit_seq`. The writer adds
-- a row per commit; data stored before this migration counts as received when the
-- writer first starts on it.
CREATE TABLE commits (
    commit_seq          BIGINT NOT NULL,
    committed_unix_nano BIGINT NOT NULL
);

-- The latest commit holding a span of the flow: the flow leaves with its last span.
ALTER TABLE flows ADD COLUMN last_commit_seq BIGINT;

-- A flow with more spans than --max-flow-spans is analysed on its earliest spans.
ALTER TABLE flows ADD COLUMN truncated BOOLEAN;
