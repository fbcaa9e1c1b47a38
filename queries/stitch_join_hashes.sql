-- The join hashes written in [$1, $2), the join window, for the stitcher's filter of
-- them (src/flows/join_filter.rs). Zone maps on `updated_unix_nano` skip the
-- rest of the table.
SELECT trace_key FROM flow_traces WHERE updated_unix_nano >= $1 AND updated_unix_nano < $2
UNION ALL
SELECT key FROM flow_join_keys WHERE updated_unix_nano >= $1 AND updated_unix_nano < $2;
