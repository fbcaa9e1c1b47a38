-- How many join hashes were written since $1 (the join window): what the stitcher's
-- filter of them is sized for (src/flows/stitch/join_filter.rs).
SELECT count(*) FROM join_hashes WHERE updated_unix_nano >= $1;
