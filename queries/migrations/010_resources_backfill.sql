-- Rows stored before 009 get their resource from their own resource_attributes.
INSERT INTO resources
SELECT (hash(resource_attributes) >> 1)::BIGINT, resource_attributes, commit_seq FROM spans GROUP BY ALL;
UPDATE spans SET resource_id = (hash(resource_attributes) >> 1)::BIGINT;
INSERT INTO resources
SELECT (hash(resource_attributes) >> 1)::BIGINT, resource_attributes, commit_seq FROM logs GROUP BY ALL;
UPDATE logs SET resource_id = (hash(resource_attributes) >> 1)::BIGINT;
INSERT INTO resources
SELECT (hash(resource_attributes) >> 1)::BIGINT, resource_attributes, commit_seq FROM metric_points GROUP BY ALL;
UPDATE metric_points SET resource_id = (hash(resource_attributes) >> 1)::BIGINT;
