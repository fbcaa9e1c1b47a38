-- Folds the additions and subtractions of flow_edge_slots into one row per cell, in slot
-- order (for the zone maps); run by the stitcher once the table has doubled since the
-- last time, so the cost per appended row stays constant.
CREATE TEMP TABLE flow_edge_slots_compacted AS
SELECT slot_unix_nano, chain, kind, source, target, system, latency_bucket,
       sum(n)::BIGINT, sum(errors)::BIGINT, sum(retries)::BIGINT, sum(dead_letters)::BIGINT, commit_seq
FROM flow_edge_slots
GROUP BY ALL
HAVING sum(n) <> 0 OR sum(errors) <> 0 OR sum(retries) <> 0 OR sum(dead_letters) <> 0;
DELETE FROM flow_edge_slots;
INSERT INTO flow_edge_slots SELECT * FROM flow_edge_slots_compacted ORDER BY slot_unix_nano;
DROP TABLE flow_edge_slots_compacted;
