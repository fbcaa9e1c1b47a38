-- Resource attributes stored once per resource and request instead of on every row: a
-- request whose resource carries a large attribute is not copied onto each of its spans.
-- Rows refer to their resource by `resource_id` (and were received in the same commit).
CREATE TABLE resources (
    resource_id BIGINT  NOT NULL,
    attributes  VARCHAR NOT NULL,
    commit_seq  BIGINT  NOT NULL
);

ALTER TABLE spans ADD COLUMN resource_id BIGINT;
INSERT INTO resources
SELECT (hash(resource_attributes) >> 1)::BIGINT, resource_attributes, commit_seq FROM spans GROUP BY ALL;
UPDATE spans SET resource_id = (hash(resource_attributes) >> 1)::BIGINT;
ALTER TABLE spans DROP COLUMN resource_attributes;

ALTER TABLE logs ADD COLUMN resource_id BIGINT;
INSERT INTO resources
SELECT (hash(resource_attributes) >> 1)::BIGINT, resource_attributes, commit_seq FROM logs GROUP BY ALL;
UPDATE logs SET resource_id = (hash(resource_attributes) >> 1)::BIGINT;
ALTER TABLE logs DROP COLUMN resource_attributes;

ALTER TABLE metric_points ADD COLUMN resource_id BIGINT;
INSERT INTO resources
SELECT (hash(resource_attributes) >> 1)::BIGINT, resource_attributes, commit_seq FROM metric_points GROUP BY ALL;
UPDATE metric_points SET resource_id = (hash(resource_attributes) >> 1)::BIGINT;
ALTER TABLE metric_points DROP COLUMN resource_attributes;
