-- Where each flow's time went, step by step (src/flows/analysis.rs `steps`): a service's
-- own time, a destination's queue wait, retry delay, a synchronous call. Written by the
-- stitcher with the flow; the chain page's tail attribution compares the steps of slow
-- and typical flows (queries/chain_breakdown.sql).
CREATE TABLE flow_steps (
    flow_id              VARCHAR NOT NULL,
    chain                VARCHAR NOT NULL,
    flow_start_unix_nano BIGINT  NOT NULL,
    kind                 VARCHAR NOT NULL,  -- service | queue_wait | retry_delay | call
    step                 VARCHAR NOT NULL,
    ms                   DOUBLE  NOT NULL
);
CREATE INDEX flow_steps_flow_id ON flow_steps (flow_id);
