-- A cluster node's copies from the lake: which lake snapshots each local commit holds.
-- Retention deletes a copy's row with its commit, and the active stitcher deletes from
-- the lake the raw rows of the snapshots its file no longer holds. Empty on a single
-- process.
CREATE TABLE lake_pulls (
    commit_seq     BIGINT NOT NULL,
    first_snapshot BIGINT NOT NULL,
    last_snapshot  BIGINT NOT NULL
);
