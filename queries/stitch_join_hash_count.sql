-- How many join hashes were written since $1 (the join window): what the stitcher's
-- filter of them is sized for (src/flows/join_filter.rs).
SELECT (SELECT count(*) FROM flow_traces WHERE updated_unix_nano >= $1)
     + (SELECT count(*) FROM flow_join_keys WHERE updated_unix_nano >= $1);
