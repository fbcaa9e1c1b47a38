-- Resource attributes stored once per resource and request instead of on every row: a
-- request whose resource carries a large attribute is not copied onto each of its spans.
-- Rows refer to their resource by `resource_id` (and were received in the same commit).
-- In three steps (009-011): DuckDB commits no update of a table altered in the same
-- transaction.
CREATE TABLE resources (
    resource_id BIGINT  NOT NULL,
    attributes  VARCHAR NOT NULL,
    commit_seq  BIGINT  NOT NULL
);
ALTER TABLE spans ADD COLUMN resource_id BIGINT;
ALTER TABLE logs ADD COLUMN resource_id BIGINT;
ALTER TABLE metric_points ADD COLUMN resource_id BIGINT;
