-- The flow map (src/flows/edges.rs). Each flow's edges as cells (a call, publish or
-- consumption; a one-minute slot; a latency bucket; counts) are kept on its row, and
-- their sums in `flow_edge_slots`: the stitcher adds a flow's new cells and subtracts
-- the old ones whenever it rewrites the flow, so the map sums a few rows per edge and
-- minute. No index: rows are appended in roughly slot order, and the zone maps on
-- `slot_unix_nano` skip what a range does not cover. `commit_seq` is the commit of the
-- flow's last span when its cells were added, also on the row that cancels them, so
-- retention removes both together. Flows written before this migration get their cells
-- when the stitcher replays them on start.
ALTER TABLE flows ADD COLUMN edges VARCHAR;

CREATE TABLE flow_edge_slots (
    slot_unix_nano BIGINT   NOT NULL,
    chain          VARCHAR  NOT NULL,
    kind           VARCHAR  NOT NULL,  -- call | publish | consume | entry
    source         VARCHAR  NOT NULL,  -- service:NAME or destination:NAME ('' for entry)
    target         VARCHAR  NOT NULL,
    system         VARCHAR,            -- messaging system of the destination end
    latency_bucket SMALLINT,           -- eight per doubling of milliseconds; NULL: no latency
    n              BIGINT   NOT NULL,
    errors         BIGINT   NOT NULL,
    retries        BIGINT   NOT NULL,
    dead_letters   BIGINT   NOT NULL,
    commit_seq     BIGINT   NOT NULL
);
