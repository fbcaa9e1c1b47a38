-- The per-row copies of resource attributes go (their content is in `resources`).
ALTER TABLE spans DROP COLUMN resource_attributes;
ALTER TABLE logs DROP COLUMN resource_attributes;
ALTER TABLE metric_points DROP COLUMN resource_attributes;
