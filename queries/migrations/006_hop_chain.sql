-- Each hop carries its flow's chain and start, so per-chain queue waits read flow_hops
-- alone instead of joining it with flows. Rows written before this migration get them
-- when the stitcher rewrites their flow (it recomputes every flow when it starts).
ALTER TABLE flow_hops ADD COLUMN chain VARCHAR;
ALTER TABLE flow_hops ADD COLUMN flow_start_unix_nano BIGINT;
