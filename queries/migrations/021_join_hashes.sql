-- Every join hash with the time its rows were written: a flow's traces
-- (`flow_traces.trace_key`) and its links, message ids and correlation ids
-- (`flow_join_keys.key`). One home for what the join filter is built from and what the
-- sorted runs are made of (src/flows/stitch/join_filter.rs, src/flows/stitch/join_runs.rs); filters
-- on `updated_unix_nano` reach both scans, whose zone maps skip older rows.
CREATE VIEW join_hashes AS
SELECT trace_key AS key, updated_unix_nano FROM flow_traces
UNION ALL
SELECT key, updated_unix_nano FROM flow_join_keys;
